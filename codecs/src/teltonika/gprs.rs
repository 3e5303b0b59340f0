//! GPRS messages: codec 12 commands and responses, codec 13 device messages, codec 14
//! commands addressed by IMEI (with ACK/nACK), codec 15 device messages, decoded with
//! the kit's nom parsers; and the encoder for the commands the gateway sends.

use bytes::{BufMut, Bytes, BytesMut};

use nom::Parser;
use nom::combinator::cond;

use super::crc16_arc;
use crate::kit::{self, be_u8, be_u32, offset, position_of, take};
use crate::protocol::DeviceMessage;
use crate::time::UtcMillis;

/// Codec 12: commands and their responses.
pub const CODEC_12: u8 = 0x0C;
/// Codec 13: device messages with a timestamp.
pub const CODEC_13: u8 = 0x0D;
/// Codec 14: commands addressed by IMEI.
pub const CODEC_14: u8 = 0x0E;
/// Codec 15: device messages with a timestamp and IMEI.
pub const CODEC_15: u8 = 0x0F;

/// Message type of a command (server to device, or a codec 13 device message).
pub const TYPE_COMMAND: u8 = 0x05;
/// Message type of a response (device to server).
pub const TYPE_RESPONSE: u8 = 0x06;
/// Camera data message type.
pub const TYPE_CAMERA: u8 = 0x0D;
/// Codec 14 nACK: the IMEI in the command is not this device's.
pub const TYPE_NACK: u8 = 0x11;

/// Why a GPRS packet was refused, with the offset (within the frame) of the failing field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GprsError {
    pub at: usize,
    pub message: String,
}

/// IMEI as 8 bytes of hex digits (`0352093081452251`), written without the leading zero.
fn imei_from_bcd(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.strip_prefix('0').map(str::to_owned).unwrap_or(hex)
}

fn kind_of(codec: u8, message_type: u8) -> &'static str {
    match (codec, message_type) {
        (CODEC_12, TYPE_COMMAND) => "codec12_command",
        (CODEC_12, TYPE_RESPONSE) => "codec12_response",
        (CODEC_12, TYPE_CAMERA) => "codec12_camera",
        (CODEC_12, _) => "codec12_other",
        (CODEC_13, _) => "codec13_message",
        (CODEC_14, TYPE_COMMAND) => "codec14_command",
        (CODEC_14, TYPE_RESPONSE) => "codec14_ack",
        (CODEC_14, TYPE_NACK) => "codec14_nack",
        (CODEC_14, _) => "codec14_other",
        _ => "codec15_message",
    }
}

/// Decodes the GPRS packet `frame[start..end]` (codec id through the trailing quantity).
pub(crate) fn decode_gprs(frame: &Bytes, start: usize, end: usize) -> Result<Vec<DeviceMessage>, GprsError> {
    let data = &frame[..end];
    let error = |rest: &[u8], message: String| GprsError { at: offset(data, rest), message };
    let short = |rest: &[u8]| error(rest, "GPRS packet shorter than its fields".into());
    let Ok((mut input, (codec, quantity))) = (be_u8, be_u8).parse_complete(&data[start..]) else {
        return Err(short(&data[data.len().min(start + 1)..]));
    };
    if quantity == 0 {
        return Err(GprsError { at: start + 1, message: "message quantity is 0".into() });
    }
    let with_time = codec == CODEC_13 || codec == CODEC_15;
    let with_imei = codec == CODEC_14 || codec == CODEC_15;
    let mut messages = Vec::with_capacity(usize::from(quantity));
    for _ in 0..quantity {
        let (after_type, message_type) = be_u8(input).map_err(|e| short(kit::failure(e).rest))?;
        let (body_start, size) = be_u32(after_type).map_err(|e| short(kit::failure(e).rest))?;
        let size = size as usize;
        let left = body_start.len().saturating_sub(1);
        if size > left {
            return Err(error(after_type, format!("message size {size} exceeds the {left} bytes left")));
        }
        let (rest, body) = take(size)(body_start).map_err(|e| short(kit::failure(e).rest))?;
        let (payload, (time, device)) =
            (cond(with_time, be_u32), cond(with_imei, take(8))).parse_complete(body).map_err(|e| {
                let e = kit::failure(e);
                let field = if with_time && e.rest.len() == body.len() { "timestamp" } else { "IMEI" };
                error(e.rest, format!("message too short for its {field}"))
            })?;
        let kind = kind_of(codec, message_type);
        messages.push(DeviceMessage {
            kind,
            answers_command: matches!(kind, "codec12_response" | "codec14_ack" | "codec14_nack"),
            time: time.map(|seconds| UtcMillis(i64::from(seconds) * 1000)),
            device: device.map(imei_from_bcd),
            payload: frame.slice(position_of(data, payload)..offset(data, rest)),
        });
        input = rest;
    }
    match input {
        [q] if *q == quantity => Ok(messages),
        [q, ..] if *q != quantity => {
            Err(error(input, format!("message quantity mismatch: header says {quantity}, trailer says {q}")))
        }
        [_, more @ ..] => Err(error(more, format!("{} unexpected bytes after the messages", more.len()))),
        [] => Err(error(input, "messages run into the trailing quantity".into())),
    }
}

fn frame_packet(codec: u8, message_type: u8, body: &[&[u8]]) -> Bytes {
    let size: usize = body.iter().map(|part| part.len()).sum();
    let data_len = 1 + 1 + 1 + 4 + size + 1;
    let mut out = BytesMut::with_capacity(8 + data_len + 4);
    out.put_u32(0);
    out.put_u32(data_len as u32);
    out.put_u8(codec);
    out.put_u8(1);
    out.put_u8(message_type);
    out.put_u32(size as u32);
    for part in body {
        out.put_slice(part);
    }
    out.put_u8(1);
    let crc = crc16_arc(&out[8..]);
    out.put_u32(u32::from(crc));
    out.freeze()
}

/// A codec 12 command frame carrying `command` (text such as `getinfo`, or binary).
pub fn encode_command(command: &[u8]) -> Bytes {
    frame_packet(CODEC_12, TYPE_COMMAND, &[command])
}

/// A codec 14 command frame: executed only by the device whose IMEI it names.
/// `None` when `imei` is not 1 to 16 decimal digits.
pub fn encode_command_for_imei(imei: &str, command: &[u8]) -> Option<Bytes> {
    if imei.is_empty() || imei.len() > 16 || !imei.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{imei:0>16}");
    let mut bcd = [0u8; 8];
    for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
        bcd[i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    Some(frame_packet(CODEC_14, TYPE_COMMAND, &[&bcd, command]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::hex::decode(s.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn encodes_the_documented_getinfo_command() {
        assert_eq!(encode_command(b"getinfo").to_vec(), hex("000000000000000F0C010500000007676574696E666F0100004312"));
    }

    #[test]
    fn encodes_a_binary_command() {
        assert_eq!(
            encode_command(&hex("03030000000185e8")).to_vec(),
            hex("00000000000000100c01050000000803030000000185e8010000da8b")
        );
    }

    #[test]
    fn encodes_the_documented_codec14_command() {
        assert_eq!(
            encode_command_for_imei("352093081452251", b"getver").map(|b| b.to_vec()),
            Some(hex("00000000000000160E01050000000E0352093081452251676574766572010000D2C1"))
        );
        assert_eq!(encode_command_for_imei("35x", b"getver"), None);
    }
}
