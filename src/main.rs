//! The `fleetgate` command: one binary whose subcommands run each role.
//!
//! Today it decodes captures (`fleetgate decode`); the gateway, processor, API and
//! simulator subcommands arrive with their issues.

mod decode;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fleetgate", version, about = "Telematics gateway: tracker protocols in, normalized positions out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode what one device sent on one connection and print JSON Lines (contract 2).
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => decode::run(args),
    }
}
