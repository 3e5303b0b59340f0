//! The raw frame archive's record: one frame a device sent (or one command the gateway
//! sent it), as it went over the wire, with what became of it and the reply. The gateway
//! writes records in batches (one JSON object per line) to `P.raw.records` in the stream
//! `{stream}_RAW`; the processor indexes them into `device_frames`; the API's traffic
//! export is made of the same fields and `fleetgate decode` reads it back.

use std::borrow::Cow;

use fleetgate_codecs::UtcMillis;
use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, TenantId};

/// Records per batch at most: the index keys a record by its batch's stream sequence
/// times this plus its line.
pub const BATCH_RECORDS: usize = 65_536;

/// The archive record on the wire. The fixed words borrow: a record is made for every
/// frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Owner of the device; absent for an unregistered device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// The device's row id; absent for an unregistered device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// The identifier the device sent, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Codec name.
    pub protocol: Cow<'static, str>,
    /// `tcp` or `udp`.
    pub transport: Cow<'static, str>,
    /// The connection (TCP) or peer session (UDP) the frame belongs to, unique per gateway
    /// run: frames of one connection form one stream for the codec.
    pub connection: String,
    /// `in` (from the device) or `out` (a command to it).
    pub direction: Cow<'static, str>,
    /// Receive or send time, RFC 3339 with milliseconds ([`format_time`]).
    pub time: String,
    /// The bytes, lowercase hex.
    pub hex: String,
    /// Their full count (more than `hex` holds when `truncated`).
    pub size: usize,
    /// True when only the first bytes are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// What became of the frame: `login`, `login_refused`, `positions`, `not_stored`,
    /// `message`, `keepalive`, `refused`, `fatal`, `incomplete` or `command`.
    pub outcome: Cow<'static, str>,
    /// Positions decoded from the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<usize>,
    /// A message's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Stream offset of a refused or fatal frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Why the frame was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The gateway's answer, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// RFC 3339 with milliseconds always written, so records sort as text too.
pub fn format_time(time: UtcMillis) -> String {
    let text = time.to_string();
    match text.strip_suffix('Z') {
        Some(base) if !base.contains('.') => format!("{base}.000Z"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_always_have_milliseconds() {
        assert_eq!(format_time(UtcMillis(1_000)), "1970-01-01T00:00:01.000Z");
        assert_eq!(format_time(UtcMillis(1_234)), "1970-01-01T00:00:01.234Z");
    }
}
