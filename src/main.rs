//! The `fleetgate` command: one binary whose subcommands run each role.
//!
//! `decode` works offline on captures (and traffic exports); `migrate` prepares Postgres
//! and the JetStream streams; `gateway` runs the device-facing role, `processor` the
//! writer of history and live state, `api` the REST API; `serve` runs every role in one
//! process; `reprocess` decodes a device's archived frames again; `admin` holds the
//! platform operator's tasks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetgate::{decode, reprocess, roles, simulate};

#[derive(Parser)]
#[command(name = "fleetgate", version, about = "Telematics gateway: tracker protocols in, normalized positions out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every server role takes.
#[derive(clap::Args)]
struct ServerArgs {
    /// Configuration file (TOML); defaults apply when absent. See docs/CONFIGURATION.md.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Decode what one device sent on one connection and print JSON Lines (contract 2).
    Decode(decode::DecodeArgs),
    /// Apply the Postgres migrations and create or update the JetStream stream.
    Migrate(ServerArgs),
    /// Run the gateway: device listeners, acknowledgement after JetStream stores.
    Gateway(ServerArgs),
    /// Run the processor: history in Postgres and live state in Redis from the stream.
    Processor(ServerArgs),
    /// Run the REST API and live stream (port 8080 by default).
    Api(ServerArgs),
    /// Run every role in one process.
    Serve(ServerArgs),
    /// Decode a device's archived frames again with this build's codecs and replace the
    /// history rows that changed.
    Reprocess {
        #[command(flatten)]
        args: reprocess::ReprocessArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Simulate tracker devices driving routes against a gateway.
    Simulate(simulate::SimulateArgs),
    /// Platform operator tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a tenant and its first admin API key; prints `{"tenant_id", "api_key"}`.
    CreateTenant {
        /// The company's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Migrate(args) => roles::run(roles::Role::Migrate, args.config),
        Command::Gateway(args) => roles::run(roles::Role::Gateway, args.config),
        Command::Processor(args) => roles::run(roles::Role::Processor, args.config),
        Command::Api(args) => roles::run(roles::Role::Api, args.config),
        Command::Serve(args) => roles::run(roles::Role::Serve, args.config),
        Command::Reprocess { args, server } => roles::run(roles::Role::Reprocess(args), server.config),
        Command::Simulate(args) => simulate::run(args),
        Command::Admin(AdminCommand::CreateTenant { name, server }) => {
            roles::run(roles::Role::CreateTenant { name }, server.config)
        }
    }
}
