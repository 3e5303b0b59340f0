//! Reading the gateway's JetStream messages (the format `fleetgate_gateway::stream`
//! writes) into what the processor stores. Anything that does not read is a poison
//! message: the caller sends it to the dead-letter subject with the reason.

use fleetgate_codecs::time::UtcMillis;
use serde::Deserialize;
use serde_json::value::RawValue;

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
    pub tenant_id: i64,
    /// The device's row id.
    pub device_id: i64,
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

impl Position {
    /// True when this fix may move the vehicle on the live map: valid, with possible
    /// coordinates, and not further ahead of `now` than the tolerance.
    pub fn is_live_fix(&self, latest_allowed: UtcMillis) -> bool {
        self.valid && self.fix_time <= latest_allowed && self.coordinates.is_some_and(possible_coordinates)
    }
}

/// WGS 84 range, and not the 0/0 that devices without a fix often send.
fn possible_coordinates((lat, lon): (f64, f64)) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) && !(lat == 0.0 && lon == 0.0)
}

/// A non-position message.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceMessage {
    /// Owner of the device.
    pub tenant_id: i64,
    /// The device's row id.
    pub device_id: i64,
    /// `command_response`, `text`, ...
    pub kind: String,
    /// Gateway receive time (RFC 3339).
    pub received: String,
    /// Time the device put on the message, if any.
    #[serde(default)]
    pub time: Option<String>,
    /// The payload as hex.
    pub hex: String,
    /// The payload as text, when it is UTF-8.
    #[serde(default)]
    pub text: Option<String>,
    /// The command this answers.
    #[serde(default)]
    pub command_id: Option<String>,
}

/// A connection status change.
#[derive(Debug, Clone)]
pub struct Status {
    /// Owner of the device.
    pub tenant_id: i64,
    /// The device's row id.
    pub device_id: i64,
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
    tenant_id: i64,
    device_id: i64,
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

#[derive(Deserialize)]
struct StatusMessage<'a> {
    tenant_id: i64,
    device_id: i64,
    online: bool,
    time: &'a str,
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
                time: parse_time("time", status.time)?,
            }))
        }
        _ => Err(PoisonError::Subject(subject.to_owned())),
    }
}

/// The token after the prefix: `pos`, `msg`, `status` (or anything else).
pub fn subject_kind<'s>(prefix: &str, subject: &'s str) -> Option<&'s str> {
    subject.strip_prefix(prefix)?.strip_prefix('.')?.split('.').next()
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
        let far_future = UtcMillis(i64::MAX);
        assert!(positions[0].is_live_fix(far_future));
        assert!(!positions[1].is_live_fix(far_future));
        assert!(!positions[0].is_live_fix(UtcMillis(0)), "a fix after the allowed time is not live");
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
    fn impossible_coordinates_never_live() {
        let mut position = match parse("fg", "fg.pos.1.7", POSITIONS.as_bytes()) {
            Ok(Incoming::Positions(mut p)) => p.remove(0),
            _ => panic!("not positions"),
        };
        for coordinates in [(91.0, 0.0), (0.0, 181.0), (0.0, 0.0), (f64::NAN, 1.0)] {
            position.coordinates = Some(coordinates);
            assert!(!position.is_live_fix(UtcMillis(i64::MAX)), "{coordinates:?}");
        }
    }
}
