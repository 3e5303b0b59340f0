//! What every codec has in common: the session trait the gateway and `fleetgate decode`
//! drive, the events a session produces, and the limits a session honours. Which
//! protocols exist is [`crate::registry`].
//!
//! The contract is tokio-util's decoder contract, widened by one case: `Ok(None)` means
//! "need more bytes", `Ok(Some(event))` is one event (possibly [`Event::Refused`], a frame
//! that was skipped while the stream stays usable), and `Err(Fatal)` means the stream can
//! no longer be framed and the connection must close.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::position::Batch;
use crate::time::UtcMillis;

/// Bytes the gateway may send back to the device.
pub type Reply = Bytes;

/// One thing a session recognised in the device's stream.
#[derive(Debug)]
pub enum Event {
    /// The device identified itself. The gateway answers `accept` when the identifier is
    /// registered and `reject` (then closes) otherwise.
    Login {
        /// The identifier the device sent.
        device: String,
        /// The password the device sent, where the protocol has one (Wialon IPS).
        password: Option<String>,
        /// The protocol's positive answer.
        accept: Reply,
        /// The protocol's refusal.
        reject: Reply,
    },
    /// Positions decoded from one frame. `ack` goes to the device only once they are
    /// stored; `nack` (where the protocol has one) when storing failed.
    Positions {
        /// The positions.
        batch: Batch,
        /// The positive acknowledgement.
        ack: Reply,
        /// The negative answer, when the protocol has one.
        nack: Option<Reply>,
    },
    /// A keep-alive; `reply` is sent when the protocol expects one.
    KeepAlive {
        /// The answer, if any.
        reply: Option<Reply>,
    },
    /// A message that is not a position: a command response, a text from the device.
    /// `reply` is the protocol's answer, sent once the message is stored.
    Message {
        /// The message.
        message: DeviceMessage,
        /// The answer, if the protocol has one.
        reply: Option<Reply>,
    },
    /// A frame refused and skipped; the stream stays in sync. The device gets `reply`
    /// (never a positive acknowledgement), so it resends.
    Refused {
        /// Offset of the refused frame in the stream.
        offset: u64,
        /// What was wrong, with values.
        error: String,
        /// The non-positive answer, when the protocol has one.
        reply: Option<Reply>,
    },
}

/// A non-position message from a device, such as a command response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    /// Protocol-specific kind, e.g. `codec12_response`.
    pub kind: &'static str,
    /// True when this is the device's answer to a command the server sent it (the
    /// command then leaves its queue).
    pub answers_command: bool,
    /// Time the device put on the message, milliseconds since the epoch, if any.
    pub time: Option<crate::time::UtcMillis>,
    /// The identifier carried inside the message, if any (codec 14/15 IMEI).
    pub device: Option<String>,
    /// The message body as sent.
    pub payload: Bytes,
}

/// The stream can no longer be framed; the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (stream offset {offset})")]
pub struct Fatal {
    /// Offset in the stream where framing failed.
    pub offset: u64,
    /// What was wrong, with values.
    pub error: String,
}

/// A refused UDP datagram: UDP has no stream to break, so every failure is per datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} (datagram offset {offset})")]
pub struct DatagramError {
    /// Offset in the datagram where decoding failed.
    pub offset: usize,
    /// What was wrong, with values.
    pub error: String,
}

/// One device connection's decoding state for one protocol.
pub trait Session: Send {
    /// Decodes the next event from the front of `src`, consuming its bytes.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal>;

    /// Decodes one UDP datagram into its events (login, positions with their ack).
    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError>;

    /// Total bytes consumed from the stream so far (for error offsets).
    fn offset(&self) -> u64;

    /// Frames a command for this device (text or binary, as the caller queued it), and
    /// says whether the device answers it with a message. `None` when the protocol or
    /// the payload cannot carry it.
    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        let _ = payload;
        None
    }

    /// Hands back a batch the caller is done with, so the next frame decodes into its
    /// allocations instead of new ones.
    fn recycle(&mut self, batch: Batch) {
        let _ = batch;
    }

    /// Applies what the platform knows about the device that just logged in (its clock's
    /// time zone, its model), for protocols whose frames do not say. The gateway calls it
    /// once the login is accepted; the session starts from [`SessionOptions::device`].
    fn configure(&mut self, settings: &DeviceSettings) {
        let _ = settings;
    }

    /// The current time, for protocols whose answers carry it (a GT06 time request). The
    /// gateway tells it before each decode; `fleetgate decode` never does, so a capture's
    /// transcript does not depend on when it ran (such a request then goes unanswered).
    fn clock(&mut self, now: UtcMillis) {
        let _ = now;
    }
}

/// What the platform knows about one device that changes how its frames read: set on the
/// device's registration (API), handed to its session at login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSettings {
    /// Minutes east of UTC of the device's clock, for devices set to local time; `None`:
    /// as the protocol says (UTC, or what the device announced at login).
    pub utc_offset_minutes: Option<i32>,
    /// The device model as registered (`VL103`, `NT20`), for protocols whose layouts
    /// vary by model where the frame cannot tell (GT06).
    pub model: Option<Arc<str>>,
}

impl DeviceSettings {
    /// True when the registered model is one of `models` (any case).
    pub fn model_is(&self, models: &[&str]) -> bool {
        self.model.as_deref().is_some_and(|model| models.iter().any(|m| m.eq_ignore_ascii_case(model)))
    }
}

/// Parses a UTC offset as written in a device's registration: `+03:00`, `-05:30`,
/// `+0300`, `+3`, `UTC`, `Z`; minutes east of UTC, or `None` when it is not one.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") || text.eq_ignore_ascii_case("gmt") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let all_digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    // Real zones run from UTC-12:00 to UTC+14:00.
    (hours <= 14 && minutes < 60 && hours * 60 + minutes <= 14 * 60).then_some(sign * (hours * 60 + minutes))
}

/// Writes minutes east of UTC as `+03:00`.
pub fn format_utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// Per-session settings; every limit here is checked before buffering.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Accept data before the device identified itself (only `fleetgate decode` does, so
    /// an integrator can decode a lone captured frame).
    pub allow_anonymous: bool,
    /// Teltonika: maximum declared data length of an AVL packet.
    pub max_avl_len: u32,
    /// Teltonika: maximum declared data length of a codec 12/13/14/15 packet (command
    /// responses and camera data are larger than positions).
    pub max_gprs_len: u32,
    /// Text protocols: longest line; a longer one is refused and discarded unbuffered.
    pub max_line_len: usize,
    /// Text protocols: largest binary part (Wialon images, tachograph files).
    pub max_binary_len: usize,
    /// Binary protocols with one length per frame (GT06, JT/T 808): the largest frame.
    /// A longer declared length closes the connection before anything is buffered.
    pub max_frame_len: usize,
    /// The device's settings until the gateway knows who logged in ([`Session::configure`]);
    /// `fleetgate decode --model/--utc-offset` sets them.
    pub device: DeviceSettings,
}

impl SessionOptions {
    /// The most a session may keep buffered under these limits (every limit's frame and
    /// its envelope): a bound for tests and fuzzing, not a limit of its own.
    pub fn max_buffered(&self) -> usize {
        self.max_avl_len as usize
            + self.max_gprs_len as usize
            + self.max_line_len
            + self.max_binary_len
            + self.max_frame_len
            + 64
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            allow_anonymous: false,
            max_avl_len: 1280,
            max_gprs_len: 16 * 1024,
            max_line_len: 64 * 1024,
            max_binary_len: 64 * 1024,
            max_frame_len: 16 * 1024,
            device: DeviceSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_read_as_registrations_write_them() {
        for (text, minutes) in [
            ("+03:00", Some(180)),
            ("-05:30", Some(-330)),
            ("+0545", Some(345)),
            ("+8", Some(480)),
            ("UTC", Some(0)),
            ("z", Some(0)),
            ("+14:00", Some(840)),
            ("+14:30", None),
            ("03:00", None),
            ("+3:75", None),
            ("Europe/Vilnius", None),
            ("", None),
        ] {
            assert_eq!(parse_utc_offset(text), minutes, "{text}");
        }
        assert_eq!(format_utc_offset(-330), "-05:30");
        assert_eq!(format_utc_offset(180), "+03:00");
    }
}
