//! `fleetgate decode PROTOCOL [--hex] [--udp] [--model M] [--utc-offset +HH:MM] [FILE]`:
//! contract 2 (the two settings are what a device's registration would give its session).
//!
//! Reads the capture (a file or standard input), runs the protocol's session over it
//! with no network, and prints one JSON object per line. A traffic export (pages of
//! `GET /v1/devices/{id}/traffic`, recognised by its leading `{`) is decoded too: each
//! archived connection's inbound frames in arrival order, as that connection's capture. Exit status 0 when the input
//! was consumed, 1 when the stream had to be abandoned, 2 when the input could not be
//! read at all.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use fleetgate_codecs::transcript::{Transcript, run_datagrams, run_stream};
use fleetgate_codecs::{Protocol, SessionOptions};
use fleetgate_codecs::{hex, traffic};

/// Options of `fleetgate decode`.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Protocol name (teltonika, wialon, ...: any of the registry).
    pub protocol: String,
    /// The input is hex text; whitespace is ignored.
    #[arg(long)]
    pub hex: bool,
    /// One UDP datagram per input line (binary protocols need --hex).
    #[arg(long)]
    pub udp: bool,
    /// The device model, as its registration would say (GT06 firmware families the
    /// frames cannot tell apart: VL103, NT20, LW4G-4B, ...).
    #[arg(long)]
    pub model: Option<String>,
    /// The offset of the device's clock from UTC (`+03:00`), as its registration would
    /// say, for devices set to local time.
    #[arg(long, value_parser = parse_offset, allow_hyphen_values = true)]
    pub utc_offset: Option<i32>,
    /// Capture file; standard input when absent.
    pub file: Option<PathBuf>,
}

fn parse_offset(text: &str) -> Result<i32, String> {
    fleetgate_codecs::protocol::parse_utc_offset(text)
        .ok_or_else(|| format!("{text:?} is not a UTC offset like +03:00 (UTC-12:00 to UTC+14:00)"))
}

fn read_input(args: &DecodeArgs) -> anyhow::Result<Vec<u8>> {
    let mut input = Vec::new();
    match &args.file {
        Some(path) => input = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            std::io::stdin().read_to_end(&mut input).context("cannot read standard input")?;
        }
    }
    Ok(input)
}

/// The transcripts of a traffic export's connections, one after another.
fn export_transcript(protocol: Protocol, input: &[u8], options: SessionOptions) -> anyhow::Result<Transcript> {
    let export = traffic::read_export(input).map_err(anyhow::Error::msg)?;
    if let Some(named) = export.protocol.as_deref().filter(|named| *named != protocol.name()) {
        bail!("the traffic export is of protocol {named}, not {}", protocol.name());
    }
    let mut all = Transcript { lines: Vec::new(), completed: true };
    for connection in export.connections {
        if let Some(frame) = connection.frames.iter().find(|f| f.truncated) {
            bail!("frame {} of connection {} was archived truncated and cannot be decoded", frame.id, connection.id);
        }
        let frames = connection.frames.into_iter().map(|f| f.bytes);
        let transcript = if connection.udp {
            run_datagrams(protocol, &frames.collect::<Vec<_>>(), options.clone())
        } else {
            run_stream(protocol, &frames.flatten().collect::<Vec<_>>(), options.clone())
        };
        all.lines.extend(transcript.lines);
        all.completed &= transcript.completed;
    }
    Ok(all)
}

/// The transcript of `input` (a capture or a traffic export) as `args` say to read it.
pub fn transcript(protocol: Protocol, args: &DecodeArgs, input: &[u8]) -> anyhow::Result<Transcript> {
    let mut options = SessionOptions { allow_anonymous: true, ..SessionOptions::default() };
    options.device.model = args.model.as_deref().map(Into::into);
    options.device.utc_offset_minutes = args.utc_offset;
    if !args.hex && traffic::is_export(input) {
        return export_transcript(protocol, input, options);
    }
    if args.udp {
        if !args.hex && !protocol.is_text() {
            bail!("--udp with the binary protocol {} needs --hex (one datagram per line)", protocol.name());
        }
        let datagrams = input
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| if args.hex { Ok(hex::decode(line)?) } else { Ok(line.to_vec()) })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(run_datagrams(protocol, &datagrams, options));
    }
    let bytes = if args.hex { hex::decode(input)? } else { input.to_vec() };
    Ok(run_stream(protocol, &bytes, options))
}

/// Runs `fleetgate decode`: prints the transcript; exit status as contract 2 says.
pub fn run(args: DecodeArgs) -> ExitCode {
    let result = Protocol::from_name(&args.protocol)
        .with_context(|| format!("unknown protocol {:?} (known: {})", args.protocol, Protocol::names()))
        .and_then(|protocol| Ok((protocol, read_input(&args)?)))
        .and_then(|(protocol, input)| transcript(protocol, &args, &input));
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(transcript) => {
            for line in &transcript.lines {
                if writeln!(stdout, "{line}").is_err() {
                    return ExitCode::from(2);
                }
            }
            if transcript.completed { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(error) => {
            let line = serde_json::json!({"event": "error", "offset": 0, "error": format!("{error:#}")});
            let _ = writeln!(stdout, "{line}");
            eprintln!("fleetgate decode: {error:#}");
            ExitCode::from(2)
        }
    }
}
