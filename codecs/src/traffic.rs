//! A device's archived traffic as the streams it sent: the export format of the API's
//! `GET /v1/devices/{id}/traffic` (pages of `{"protocol", "frames": [...]}`, newest
//! first, or single frame objects, one JSON value after another) read back into its
//! connections, each with its inbound frames in the order they arrived.
//!
//! `fleetgate decode` runs each connection through a session like a capture; `fleetgate
//! reprocess` builds the same connections from the archive in Postgres.

use serde::Deserialize;

use crate::hex;
use crate::time::UtcMillis;

/// One archived inbound frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFrame {
    /// The archive's id (stream sequence): orders frames received in one millisecond.
    pub id: i64,
    /// Receive time.
    pub time: UtcMillis,
    /// The bytes as received.
    pub bytes: Vec<u8>,
    /// True when the archive kept only the first bytes (the frame cannot be decoded).
    pub truncated: bool,
}

/// The frames of one connection (or UDP peer session), in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The archive's connection id.
    pub id: String,
    /// A UDP peer: every frame is a datagram on its own.
    pub udp: bool,
    /// Inbound frames, oldest first.
    pub frames: Vec<ArchivedFrame>,
}

/// Groups frames into connections: each connection's frames sorted by receive time and
/// id (duplicates, as from overlapping pages, dropped), connections in the order of their
/// first frame.
pub fn group(frames: impl IntoIterator<Item = (String, bool, ArchivedFrame)>) -> Vec<Connection> {
    let mut connections: Vec<Connection> = Vec::new();
    for (id, udp, frame) in frames {
        match connections.iter_mut().find(|c| c.id == id) {
            Some(connection) => connection.frames.push(frame),
            None => connections.push(Connection { id, udp, frames: vec![frame] }),
        }
    }
    for connection in &mut connections {
        connection.frames.sort_by_key(|f| (f.time, f.id));
        connection.frames.dedup_by_key(|f| f.id);
    }
    connections.sort_by_key(|c| c.frames.first().map(|f| (f.time, f.id)));
    connections
}

/// True when `input` is a traffic export rather than a capture: its first non-blank
/// byte is `{`, which starts no frame of any protocol we speak.
pub fn is_export(input: &[u8]) -> bool {
    input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[derive(Deserialize)]
struct ExportFrame {
    #[serde(default)]
    id: i64,
    time: String,
    #[serde(default = "inbound")]
    direction: String,
    #[serde(default)]
    transport: String,
    #[serde(default)]
    connection: String,
    hex: String,
    #[serde(default)]
    truncated: bool,
}

fn inbound() -> String {
    "in".into()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExportValue {
    Page { protocol: Option<String>, frames: Vec<ExportFrame> },
    Frame(ExportFrame),
}

/// An export read back: the protocol it names (if any) and its connections.
#[derive(Debug)]
pub struct Export {
    /// The `protocol` of its pages.
    pub protocol: Option<String>,
    /// The inbound traffic, per connection.
    pub connections: Vec<Connection>,
}

/// Reads an export: one or more pages (or frame objects), in any order.
pub fn read_export(input: &[u8]) -> Result<Export, String> {
    let mut protocol = None;
    let mut frames = Vec::new();
    for (index, value) in serde_json::Deserializer::from_slice(input).into_iter::<ExportValue>().enumerate() {
        let value = value.map_err(|e| format!("traffic export value {}: {e}", index + 1))?;
        let page = match value {
            ExportValue::Page { protocol: named, frames } => {
                if let Some(named) = named {
                    if protocol.as_ref().is_some_and(|p| *p != named) {
                        return Err(format!("the export mixes protocols {} and {named}", protocol.unwrap_or_default()));
                    }
                    protocol = Some(named);
                }
                frames
            }
            ExportValue::Frame(frame) => vec![frame],
        };
        for frame in page.into_iter().filter(|f| f.direction == "in") {
            let time = UtcMillis::parse_rfc3339(&frame.time)
                .ok_or_else(|| format!("frame {}: time {:?} is not RFC 3339", frame.id, frame.time))?;
            let bytes = hex::decode(frame.hex.as_bytes()).map_err(|e| format!("frame {}: {e}", frame.id))?;
            let archived = ArchivedFrame { id: frame.id, time, bytes, truncated: frame.truncated };
            frames.push((frame.connection, frame.transport == "udp", archived));
        }
    }
    Ok(Export { protocol, connections: group(frames) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_connections_oldest_first() {
        let export = br#"
            {"protocol": "wialon", "frames": [
              {"id": 4, "time": "2026-11-25T10:00:03.000Z", "direction": "in", "transport": "tcp", "connection": "b", "hex": "34"},
              {"id": 3, "time": "2026-11-25T10:00:02.000Z", "direction": "out", "transport": "tcp", "connection": "a", "hex": "ff"},
              {"id": 2, "time": "2026-11-25T10:00:01.000Z", "direction": "in", "transport": "tcp", "connection": "a", "hex": "32"}
            ], "next": "1"}
            {"protocol": "wialon", "frames": [
              {"id": 2, "time": "2026-11-25T10:00:01.000Z", "direction": "in", "transport": "tcp", "connection": "a", "hex": "32"},
              {"id": 1, "time": "2026-11-25T10:00:01.000Z", "direction": "in", "transport": "tcp", "connection": "a", "hex": "31"}
            ], "next": null}"#;
        assert!(is_export(export));
        let export = read_export(export).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(export.protocol.as_deref(), Some("wialon"));
        let streams: Vec<(String, Vec<u8>)> = export
            .connections
            .iter()
            .map(|c| (c.id.clone(), c.frames.iter().flat_map(|f| f.bytes.clone()).collect()))
            .collect();
        assert_eq!(streams, [("a".to_owned(), b"12".to_vec()), ("b".to_owned(), b"4".to_vec())]);
    }

    #[test]
    fn bad_exports_say_what_is_wrong() {
        assert!(!is_export(b"#L#2.0;1;NA;E335\r\n"));
        assert!(
            read_export(br#"{"frames": [{"time": "yesterday", "hex": "00"}]}"#).is_err_and(|e| e.contains("RFC 3339"))
        );
        assert!(read_export(br#"{"frames": [{"time": "2026-11-25T10:00:00Z", "hex": "0g"}]}"#).is_err());
        assert!(read_export(br#"{"protocol": "a", "frames": []} {"protocol": "b", "frames": []}"#).is_err());
    }
}
