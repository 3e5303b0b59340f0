//! Contract 2: a whole capture of one connection run through a session with no network,
//! rendered as JSON Lines (`login`, `position`, `reply`, `message`, `keepalive`, `error`).
//!
//! `fleetgate decode` prints this; the fixture tests compare it with the expected files.
//! The session logic is the gateway's own; only registry checks and storage are absent
//! (every login is accepted, every frame is acknowledged as soon as it decodes).

use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::hex::HexDisplay;
use crate::protocol::{Event, Fatal, Session, SessionOptions};
use crate::registry::Protocol;

/// The outcome of running a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// One JSON object per line, in stream order.
    pub lines: Vec<String>,
    /// False when the stream had to be abandoned (a fatal error or a frame cut short).
    pub completed: bool,
}

fn hex_string(bytes: &[u8]) -> String {
    HexDisplay(bytes).to_string()
}

fn reply_line(reply: &Bytes, text_protocol: bool) -> Option<String> {
    if reply.is_empty() {
        return None;
    }
    let mut line = json!({"event": "reply", "hex": hex_string(reply)});
    if text_protocol {
        line["text"] = json!(String::from_utf8_lossy(reply));
    }
    Some(line.to_string())
}

/// Appends the JSON lines of one event.
pub fn render_event(event: &Event, text_protocol: bool, lines: &mut Vec<String>) {
    match event {
        Event::Login { device, accept, .. } => {
            lines.push(json!({"event": "login", "device": device}).to_string());
            lines.extend(reply_line(accept, text_protocol));
        }
        Event::Positions { batch, ack, .. } => {
            for position in batch.iter() {
                // The position is contract 1 as is; prefix the event name without
                // re-ordering its fields.
                let body = serde_json::to_string(&position).unwrap_or_else(|_| "{}".into());
                let rest = body.strip_prefix('{').unwrap_or(&body);
                let separator = if rest == "}" { "" } else { "," };
                lines.push(format!("{{\"event\":\"position\"{separator}{rest}"));
            }
            lines.extend(reply_line(ack, text_protocol));
        }
        Event::KeepAlive { reply } => {
            lines.push(json!({"event": "keepalive"}).to_string());
            if let Some(reply) = reply {
                lines.extend(reply_line(reply, text_protocol));
            }
        }
        Event::Message { message, reply } => {
            let mut line = json!({"event": "message", "kind": message.kind});
            if let Some(time) = message.time {
                line["time"] = json!(time.to_string());
            }
            if let Some(device) = &message.device {
                line["device"] = json!(device);
            }
            if let Ok(text) = std::str::from_utf8(&message.payload) {
                line["text"] = json!(text);
            }
            line["hex"] = json!(hex_string(&message.payload));
            lines.push(line.to_string());
            if let Some(reply) = reply {
                lines.extend(reply_line(reply, text_protocol));
            }
        }
        Event::Refused { offset, error, reply } => {
            lines.push(json!({"event": "error", "offset": offset, "error": error}).to_string());
            if let Some(reply) = reply {
                lines.extend(reply_line(reply, text_protocol));
            }
        }
    }
}

fn error_line(offset: u64, error: &str) -> String {
    json!({"event": "error", "offset": offset, "error": error}).to_string()
}

/// Runs a TCP capture through a session, as the gateway would read it.
pub fn run_stream(protocol: Protocol, input: &[u8], options: SessionOptions) -> Transcript {
    run_stream_in_chunks(protocol, input, input.len().max(1), options)
}

/// Feeds `input` to `session` `chunk` bytes at a time, as a connection receives it, and
/// hands each event to `on_event`; returns how many bytes were left undecoded (a frame
/// the input ends inside), or the error that broke the stream.
pub fn feed(
    session: &mut dyn Session,
    input: &[u8],
    chunk: usize,
    mut on_event: impl FnMut(Event),
) -> Result<usize, Fatal> {
    let mut buffer = BytesMut::new();
    for piece in input.chunks(chunk.max(1)) {
        buffer.extend_from_slice(piece);
        while let Some(event) = session.decode(&mut buffer)? {
            on_event(event);
        }
    }
    Ok(buffer.len())
}

/// Runs a TCP capture arriving `chunk` bytes at a time; the transcript must not depend
/// on how the network split the stream.
pub fn run_stream_in_chunks(protocol: Protocol, input: &[u8], chunk: usize, options: SessionOptions) -> Transcript {
    let mut session = protocol.session(options);
    let mut lines = Vec::new();
    let fed = feed(session.as_mut(), input, chunk, |event| render_event(&event, protocol.is_text(), &mut lines));
    match fed {
        Err(fatal) => {
            lines.push(error_line(fatal.offset, &fatal.error));
            Transcript { lines, completed: false }
        }
        Ok(0) => Transcript { lines, completed: true },
        Ok(left) => {
            let offset = session.offset();
            let error = format!("{STREAM_ENDED}: {left} bytes at offset {offset} never completed one");
            lines.push(error_line(offset, &error));
            Transcript { lines, completed: false }
        }
    }
}

/// The start of the error reported when the capture ends inside a frame.
pub const STREAM_ENDED: &str = "stream ended inside a frame";

/// Runs UDP datagrams, in order, through one session (one peer).
pub fn run_datagrams(protocol: Protocol, datagrams: &[Vec<u8>], options: SessionOptions) -> Transcript {
    let mut session = protocol.session(options);
    let mut lines = Vec::new();
    for datagram in datagrams {
        match session.decode_datagram(Bytes::copy_from_slice(datagram)) {
            Ok(events) => events.iter().for_each(|event| render_event(event, protocol.is_text(), &mut lines)),
            // A bad datagram is refused on its own; the next one is independent.
            Err(error) => lines.push(error_line(error.offset as u64, &error.error)),
        }
    }
    Transcript { lines, completed: true }
}
