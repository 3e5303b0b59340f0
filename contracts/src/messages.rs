//! The messages that travel between the roles over NATS, each with its one serializer
//! (the sending role calls it) and its one parser (the receiving role calls it):
//!
//! | subject | message | written by | read by |
//! |---|---|---|---|
//! | `P.pos.{tenant}.{device}` | positions of one frame ([`encode_positions`], [`parse_positions`]) | gateway | processor |
//! | `P.msg.{tenant}.{device}` | [`DeviceMessage`] | gateway | processor |
//! | `P.status.{tenant}.{device}` | [`StatusMessage`] | gateway | processor |
//! | `P.cmd.{tenant}.{device}` | [`CommandMessage`] | API | gateway |
//! | `P.live.{tenant}.{device}` | a position, contract 1 with `received` | processor | API |
//! | `P.event.{tenant}.{device}` | [`EventMessage`] | processor | API |
//! | `P.registry` | a device identifier whose registration changed | API | gateway |
//!
//! Anything the processor cannot read is a poison message ([`PoisonError`]): it goes to
//! the dead-letter subject with the reason.

use bytes::Bytes;
use fleetgate_codecs::hex::HexDisplay;
use fleetgate_codecs::{Batch, UtcMillis};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{DeviceId, TenantId};

/// What one stream message carries.
#[derive(Debug)]
pub enum Incoming {
    /// The positions of one frame.
    Positions(Vec<Position>),
    /// A non-position message (command answer, text).
    Message(DeviceMessage),
    /// The device came online or went offline.
    Status(Status),
}

/// One position, with its contract 1 JSON kept as sent for live state.
#[derive(Debug, Clone)]
pub struct Position {
    /// Owner of the device.
    pub tenant_id: TenantId,
    /// The device's row id.
    pub device_id: DeviceId,
    /// GNSS fix time (the receive time when the device sent none).
    pub fix_time: UtcMillis,
    /// Gateway receive time.
    pub received: UtcMillis,
    /// Latitude and longitude, when the record has coordinates.
    pub coordinates: Option<(f64, f64)>,
    /// Metres.
    pub altitude: Option<f64>,
    /// km/h.
    pub speed: Option<f64>,
    /// Degrees.
    pub course: Option<f64>,
    /// Satellites in use.
    pub satellites: Option<i32>,
    /// The device's own fix validity.
    pub valid: bool,
    /// `attrs` as JSON text (`{}` when absent).
    pub attrs: String,
    /// `io` as JSON text (`{}` when absent).
    pub io: String,
    /// The whole position as the gateway wrote it.
    pub json: String,
}

/// A non-position message from a device (a command answer, a driver's text, a part of
/// an image), stored as the device sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceMessage {
    /// Owner of the device.
    pub tenant_id: TenantId,
    /// The device's row id.
    pub device_id: DeviceId,
    /// The identifier the device logged in with.
    #[serde(default)]
    pub device: String,
    /// The codec's kind (`codec12_response`, `wialon_driver_message`, ...).
    pub kind: String,
    /// Gateway receive time (RFC 3339).
    pub received: String,
    /// The payload as hex.
    pub hex: String,
    /// Time the device put on the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The payload as text, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The command this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

impl DeviceMessage {
    /// The message of a device's `payload`, received at `received`.
    pub fn new(
        (tenant_id, device_id): (TenantId, DeviceId),
        device: &str,
        message: &fleetgate_codecs::DeviceMessage,
        received: UtcMillis,
        command_id: Option<&str>,
    ) -> Self {
        DeviceMessage {
            tenant_id,
            device_id,
            device: device.to_owned(),
            kind: message.kind.to_owned(),
            received: received.to_string(),
            hex: HexDisplay(&message.payload).to_string(),
            time: message.time.map(|t| t.to_string()),
            text: std::str::from_utf8(&message.payload).ok().map(str::to_owned),
            command_id: command_id.map(str::to_owned),
        }
    }

    /// The JSON payload.
    pub fn encode(&self) -> Bytes {
        // Serializing our own type into memory cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A device came online or went offline (best effort: a lost one is corrected by the
/// next).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusMessage {
    /// Owner of the device.
    pub tenant_id: TenantId,
    /// The device's row id.
    pub device_id: DeviceId,
    /// The identifier.
    #[serde(default)]
    pub device: String,
    /// Online (true) or offline.
    pub online: bool,
    /// When the gateway saw it (RFC 3339).
    pub time: String,
}

impl StatusMessage {
    /// The JSON payload.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A command queued for a device: exactly one of `text` and `hex` (the bytes before the
/// protocol's framing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// The id the caller gave it; the device's answer is stored with it.
    pub id: String,
    /// Text to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Bytes to send, as lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl CommandMessage {
    /// The JSON payload.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a queued command: its id and the bytes to send.
    pub fn parse(data: &[u8]) -> Result<(String, Bytes), String> {
        let message: CommandMessage = serde_json::from_slice(data).map_err(|e| format!("command is not JSON: {e}"))?;
        let payload = match (message.text, message.hex) {
            (Some(text), None) => Bytes::from(text),
            (None, Some(hex)) => {
                Bytes::from(fleetgate_codecs::hex::decode(hex.as_bytes()).map_err(|e| format!("command hex: {e}"))?)
            }
            _ => return Err("a command needs exactly one of \"text\" and \"hex\"".into()),
        };
        if payload.is_empty() {
            return Err("empty command".into());
        }
        Ok((message.id, payload))
    }
}

/// An event the processor derived (`P.event...`, and the API's `/v1/events` items): its
/// JSON is made by the statement that stores the event (`store::events`), so what the
/// live stream pushes is exactly what the history holds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventMessage {
    /// The device.
    pub device_id: DeviceId,
    /// When (RFC 3339).
    pub time: String,
    /// `ignition_on`, `geofence_enter`, `online`, ...
    pub kind: String,
    /// Where, when known.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Where, when known.
    #[serde(default)]
    pub lon: Option<f64>,
    /// What the kind adds (speed and limit, voltage, geofence, ...).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A connection status change, as the processor stores it.
#[derive(Debug, Clone)]
pub struct Status {
    /// Owner of the device.
    pub tenant_id: TenantId,
    /// The device's row id.
    pub device_id: DeviceId,
    /// Online (true) or offline.
    pub online: bool,
    /// When the gateway saw it.
    pub time: UtcMillis,
}

/// Why a message is poison.
#[derive(Debug, thiserror::Error)]
pub enum PoisonError {
    /// Not the JSON the gateway writes.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// A time that is not RFC 3339.
    #[error("{field} is not an RFC 3339 time: {value:?}")]
    Time {
        /// Which field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// A subject this processor does not handle.
    #[error("unexpected subject {0:?}")]
    Subject(String),
}

fn parse_time(field: &'static str, value: &str) -> Result<UtcMillis, PoisonError> {
    UtcMillis::parse_rfc3339(value).ok_or_else(|| PoisonError::Time { field, value: value.to_owned() })
}

#[derive(Deserialize)]
struct PositionsMessage<'a> {
    tenant_id: TenantId,
    device_id: DeviceId,
    #[serde(borrow)]
    positions: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct PositionFields<'a> {
    #[serde(borrow)]
    time: Option<&'a str>,
    received: &'a str,
    lat: Option<f64>,
    lon: Option<f64>,
    altitude: Option<f64>,
    speed: Option<f64>,
    course: Option<f64>,
    satellites: Option<i32>,
    valid: bool,
    #[serde(borrow)]
    attrs: Option<&'a RawValue>,
    #[serde(borrow)]
    io: Option<&'a RawValue>,
}

/// Reads a message by the kind its subject names (`P.pos...`, `P.msg...`, `P.status...`).
pub fn parse(prefix: &str, subject: &str, payload: &[u8]) -> Result<Incoming, PoisonError> {
    let kind = subject_kind(prefix, subject).ok_or_else(|| PoisonError::Subject(subject.to_owned()))?;
    match kind {
        "pos" => parse_positions(payload).map(Incoming::Positions),
        "msg" => {
            let message: DeviceMessage = serde_json::from_slice(payload)?;
            parse_time("received", &message.received)?;
            if let Some(time) = &message.time {
                parse_time("time", time)?;
            }
            Ok(Incoming::Message(message))
        }
        "status" => {
            let status: StatusMessage = serde_json::from_slice(payload)?;
            Ok(Incoming::Status(Status {
                tenant_id: status.tenant_id,
                device_id: status.device_id,
                online: status.online,
                time: parse_time("time", &status.time)?,
            }))
        }
        _ => Err(PoisonError::Subject(subject.to_owned())),
    }
}

/// The token after the prefix: `pos`, `msg`, `status` (or anything else).
pub fn subject_kind<'s>(prefix: &str, subject: &'s str) -> Option<&'s str> {
    subject.strip_prefix(prefix)?.strip_prefix('.')?.split('.').next()
}

/// The payload of a positions message: the device's ids once, then the frame's
/// positions as contract 1 (with `received`).
pub fn encode_positions(tenant_id: TenantId, device_id: DeviceId, batch: &Batch) -> Bytes {
    struct Positions<'a>(&'a Batch);
    impl Serialize for Positions<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for position in self.0.iter() {
                seq.serialize_element(&position)?;
            }
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct Message<'a> {
        tenant_id: TenantId,
        device_id: DeviceId,
        positions: Positions<'a>,
    }
    let message = Message { tenant_id, device_id, positions: Positions(batch) };
    // Serializing our own types into memory cannot fail.
    Bytes::from(serde_json::to_vec(&message).unwrap_or_default())
}

/// Reads a positions message (`P.pos...`): the frame's positions with their JSON.
pub fn parse_positions(payload: &[u8]) -> Result<Vec<Position>, PoisonError> {
    let message: PositionsMessage = serde_json::from_slice(payload)?;
    let mut positions = Vec::with_capacity(message.positions.len());
    for raw in message.positions {
        let fields: PositionFields = serde_json::from_str(raw.get())?;
        let received = parse_time("received", fields.received)?;
        let fix_time = match fields.time {
            Some(time) => parse_time("time", time)?,
            None => received,
        };
        positions.push(Position {
            tenant_id: message.tenant_id,
            device_id: message.device_id,
            fix_time,
            received,
            coordinates: fields.lat.zip(fields.lon),
            altitude: fields.altitude,
            speed: fields.speed,
            course: fields.course,
            satellites: fields.satellites,
            valid: fields.valid,
            attrs: fields.attrs.map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned()),
            io: fields.io.map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned()),
            json: raw.get().to_owned(),
        });
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSITIONS: &str = r#"{"tenant_id":1,"device_id":7,"positions":[
        {"device":"356307042441013","protocol":"teltonika","time":"2019-06-10T10:04:46Z",
         "received":"2026-11-25T16:00:00.123Z","lat":54.6962,"lon":25.2694,"speed":52,"valid":true,
         "attrs":{"ignition":true},"io":{"239":1}},
        {"device":"356307042441013","protocol":"teltonika","received":"2026-11-25T16:00:00.123Z","valid":false}]}"#;

    #[test]
    fn reads_positions_and_keeps_their_json() -> Result<(), PoisonError> {
        let Incoming::Positions(positions) = parse("fg", "fg.pos.1.7", POSITIONS.as_bytes())? else {
            panic!("not positions");
        };
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[0].fix_time.to_string(), "2019-06-10T10:04:46Z");
        assert_eq!(positions[0].attrs, r#"{"ignition":true}"#);
        assert!(positions[0].json.starts_with(r#"{"device":"356307042441013""#));
        // Without a device time the receive time stands in, and there is no fix.
        assert_eq!(positions[1].fix_time, positions[1].received);
        assert_eq!(positions[1].io, "{}");
        assert_eq!(positions[1].coordinates, None);
        Ok(())
    }

    #[test]
    fn poison_has_a_reason() {
        let reason = |subject: &str, payload: &str| match parse("fg", subject, payload.as_bytes()) {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        };
        assert!(reason("fg.pos.1.7", "{").starts_with("malformed message"));
        assert!(
            reason(
                "fg.pos.1.7",
                r#"{"tenant_id":1,"device_id":7,"positions":[{"received":"yesterday","valid":true}]}"#
            )
            .contains("received is not an RFC 3339 time")
        );
        assert!(reason("fg.other.1.7", "{}").starts_with("unexpected subject"));
        assert!(
            reason("fg.status.1.7", r#"{"tenant_id":1,"device_id":7,"online":"yes","time":"x"}"#)
                .starts_with("malformed message")
        );
    }

    #[test]
    fn what_the_gateway_writes_the_processor_reads() -> Result<(), PoisonError> {
        let mut batch = Batch::new("teltonika", Some("356307042441013".into()), Bytes::new());
        let mut fix = fleetgate_codecs::Fix::at(UtcMillis(1_560_161_086_000));
        fix.coordinates = Some((54.6962, 25.2694));
        fix.valid = true;
        batch.push_fix(fix);
        batch.received = Some(UtcMillis(1_764_086_400_123));
        let payload = encode_positions(TenantId(1), DeviceId(7), &batch);
        assert!(payload.starts_with(br#"{"tenant_id":1,"device_id":7,"positions":[{"device":"356307042441013""#));
        let Incoming::Positions(positions) = parse("fg", "fg.pos.1.7", &payload)? else { panic!("not positions") };
        assert_eq!(positions[0].coordinates, Some((54.6962, 25.2694)));
        assert_eq!(positions[0].received, UtcMillis(1_764_086_400_123));

        let message = fleetgate_codecs::DeviceMessage {
            kind: "codec12_response",
            answers_command: true,
            time: None,
            device: None,
            payload: Bytes::from_static(b"ok"),
        };
        let sent = DeviceMessage::new((TenantId(1), DeviceId(7)), "3563", &message, UtcMillis(0), Some("cmd_1"));
        assert_eq!(
            sent.encode(),
            r#"{"tenant_id":1,"device_id":7,"device":"3563","kind":"codec12_response","received":"1970-01-01T00:00:00Z","hex":"6f6b","text":"ok","command_id":"cmd_1"}"#
        );
        let Incoming::Message(read) = parse("fg", "fg.msg.1.7", &sent.encode())? else { panic!("not a message") };
        assert_eq!(read, sent);

        let status = StatusMessage {
            tenant_id: TenantId(1),
            device_id: DeviceId(7),
            device: "3563".into(),
            online: true,
            time: "2026-11-25T16:00:00Z".into(),
        };
        assert_eq!(
            status.encode(),
            r#"{"tenant_id":1,"device_id":7,"device":"3563","online":true,"time":"2026-11-25T16:00:00Z"}"#
        );
        let Incoming::Status(read) = parse("fg", "fg.status.1.7", &status.encode())? else { panic!("not a status") };
        assert!(read.online && read.device_id == DeviceId(7));
        Ok(())
    }

    #[test]
    fn commands_are_text_or_hex() {
        let text = CommandMessage { id: "c1".into(), text: Some("getinfo".into()), hex: None };
        assert_eq!(text.encode(), r#"{"id":"c1","text":"getinfo"}"#);
        assert_eq!(CommandMessage::parse(&text.encode()), Ok(("c1".into(), Bytes::from_static(b"getinfo"))));
        assert_eq!(
            CommandMessage::parse(br#"{"id":"c2","hex":"0a0B"}"#),
            Ok(("c2".into(), Bytes::from_static(&[10, 11])))
        );
        assert!(CommandMessage::parse(br#"{"id":"c3"}"#).is_err());
        assert!(CommandMessage::parse(br#"{"id":"c4","text":"a","hex":"0a"}"#).is_err());
        assert!(CommandMessage::parse(br#"{"id":"c5","text":""}"#).is_err());
        assert!(CommandMessage::parse(br#"{"id":"c6","hex":"zz"}"#).is_err());
    }
}
