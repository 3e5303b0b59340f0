//! Wialon IPS 1.1 and 2.0: the open text protocol of most CIS trackers, phone apps and
//! retranslators.
//!
//! TCP: one packet per line, `#TYPE#body\r\n` (a bare `\n` is accepted too). UDP: one
//! packet per datagram, prefixed with the identifier: `IMEI#TYPE#body` (1.1) or
//! `2.0;IMEI#TYPE#body` (2.0). In 2.0 the body ends with a CRC-16/ARC of the text after
//! `#TYPE#` up to and including the last separator, written as hex (read leniently: any
//! case, any padding, an optional `0x`).
//!
//! | device sends | answer | codes |
//! |---|---|---|
//! | `#L#` login | `#AL#` | 1 ok, 0 refused, 01 wrong password, 10 checksum |
//! | `#SD#` short data | `#ASD#` | 1 ok, -1 structure, 0 time, 10 coordinates, 11 speed/course/altitude, 12 satellites, 13 checksum |
//! | `#D#` extended data | `#AD#` | as `#ASD#`, plus 12 hdop, 13 inputs/outputs, 14 adc, 15 params, 16 checksum |
//! | `#B#` black box | `#AB#n` | n records accepted; `#AB#` for a bad checksum |
//! | `#P#` ping | `#AP#` | |
//! | `#M#` message to the dispatcher | `#AM#` | 1 ok, 0 refused, 01 checksum |
//! | `#I#` image part + binary | `#AI#` | `ind;1` part ok, `1` last part, `0` refused, `ind;01` checksum |
//! | `#IT#` tachograph file info | `#AIT#` | 1 ok, 0 refused, 01 checksum |
//! | `#T#` tachograph file part + binary | `#AT#` | `ind;1` part ok, `1` last part, `ind;0` refused, `ind;01` checksum |
//!
//! `#US#` (firmware) and `#UC#` (configuration) travel from the server to the device; a
//! device sending one is refused. Lines longer than the limit are refused and discarded
//! up to the next line end without being buffered.

pub mod encode;
mod record;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::kit::text;
use crate::position::Batch;
use crate::protocol::{DatagramError, DeviceMessage, Event, Fatal, Session, SessionOptions};
use crate::registry::{Passwords, ProtocolSpec, Transports, any_identifier};
use crate::teltonika::crc16_arc;

use record::{EXTENDED_FIELDS, RecordError, SHORT_FIELDS, code, decode_record};

/// The codec name in contract 1.
pub const NAME: &str = "wialon";

/// The answer to a login with a wrong password (the gateway sends it when the registry
/// holds a password for the device and it differs).
pub const WRONG_PASSWORD: &[u8] = b"#AL#01\r\n";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "Wialon IPS 1.1 and 2.0 (trackers, phone apps, retranslators)",
    default_port: 5039,
    transports: Transports { tcp: true, udp: true },
    text: true,
    limits: &["max_line_len", "max_binary_len"],
    session: |options| Box::new(WialonSession::new(options)),
    identifier: any_identifier,
    identifier_rule: "any identifier",
    passwords: Passwords::Checked { wrong_password: WRONG_PASSWORD },
    device: || Box::new(encode::Device::default()),
};

/// The protocol version a device announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 1.1: no checksums.
    V1_1,
    /// 2.0: CRC-16 on every packet.
    V2_0,
}

fn answer(kind: &str, code: &str) -> Bytes {
    Bytes::from(format!("#{kind}#{code}\r\n"))
}

/// Reads a checksum field leniently (any case, any zero padding, an optional `0x`);
/// `None` when it is not hex of at most 16 bits.
pub fn parse_crc(field: &str) -> Option<u16> {
    let digits = field.trim();
    let digits = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")).unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    if significant.len() > 4 {
        return None;
    }
    u16::from_str_radix(significant, 16).ok()
}

/// Checks a 2.0 body `text...;CRC`: the CRC covers everything before the CRC field.
/// Returns the text before the separator that precedes the CRC.
fn check_crc(body: &str, separator: char) -> Result<&str, String> {
    let Some(cut) = body.rfind(separator) else {
        return Err("no checksum field".into());
    };
    let (covered, field) = (&body[..=cut], &body[cut + 1..]);
    let Some(sent) = parse_crc(field) else {
        return Err(format!("checksum field {field:?} is not hex"));
    };
    let computed = crc16_arc(covered.as_bytes());
    if sent != computed {
        return Err(format!("crc mismatch: packet says {sent:04X}, text gives {computed:04X}"));
    }
    Ok(&body[..cut])
}

/// A binary block announced by an `#I#` or `#T#` header and still being received.
#[derive(Debug)]
struct PendingBinary {
    kind: BinaryKind,
    len: usize,
    index: u32,
    last: bool,
    crc: Option<u16>,
    header_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryKind {
    Image,
    Tachograph,
}

/// The decoding state of one Wialon IPS connection (or one UDP peer).
#[derive(Debug)]
pub struct WialonSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    version: Option<Version>,
    offset: u64,
    pending: VecDeque<Event>,
    binary: Option<PendingBinary>,
    /// Discarding the rest of an over-long line.
    discarding: bool,
    /// Parts announced by the last `#IT#`, to recognise the last `#T#`.
    tachograph_parts: Option<u32>,
    /// A batch handed back by the caller, decoded into next.
    spare: Option<Batch>,
}

impl WialonSession {
    /// A session that has not seen the login yet.
    pub fn new(options: SessionOptions) -> Self {
        WialonSession {
            options,
            device: None,
            version: None,
            offset: 0,
            pending: VecDeque::new(),
            binary: None,
            discarding: false,
            tachograph_parts: None,
            spare: None,
        }
    }

    /// The protocol version from the login, once seen.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) -> Bytes {
        self.offset += n as u64;
        src.split_to(n).freeze()
    }

    fn refused(offset: u64, error: String, reply: Option<Bytes>) -> Event {
        Event::Refused { offset, error, reply }
    }

    /// Handles one complete line (without its line end) that started at `offset`.
    fn packet(&mut self, raw: Bytes, offset: u64, udp: bool) -> Result<Option<Event>, Fatal> {
        let Ok(line) = std::str::from_utf8(&raw) else {
            return Ok(Some(Self::refused(offset, "packet is not UTF-8 text".into(), None)));
        };
        let Ok((body, kind)) = text::packet_type(line) else {
            let shown: String = line.chars().take(16).collect();
            return Ok(Some(Self::refused(offset, format!("not a Wialon IPS packet: {shown:?}"), None)));
        };
        let body_at = 2 + kind.len();
        if kind == "L" {
            return Ok(Some(self.login(body, offset)));
        }
        if self.device.is_none() && !self.options.allow_anonymous && !udp {
            return Err(Fatal { offset, error: format!("#{kind}# packet before the login") });
        }
        let event = match kind {
            "SD" | "D" => self.data(kind, &raw, line, body_at, offset),
            "B" => self.black_box(&raw, line, body_at, offset),
            "P" => Event::KeepAlive { reply: Some(answer("AP", "")) },
            "M" => self.driver_message(&raw, body, body_at, offset),
            "I" | "T" if udp => Self::refused(offset, format!("#{kind}# with a binary part over UDP"), None),
            "I" => return self.image_header(body, offset),
            "IT" => self.tachograph_info(body, offset),
            "T" => return self.tachograph_header(body, offset),
            "US" | "UC" => Self::refused(
                offset,
                format!("#{kind}# travels from the server to the device, not the other way"),
                None,
            ),
            other => Self::refused(offset, format!("unknown packet type #{other}#"), None),
        };
        Ok(Some(event))
    }

    fn login(&mut self, body: &str, offset: u64) -> Event {
        let fields: Vec<&str> = text::fields(body, ';');
        let (version, device, password) = match fields.as_slice() {
            ["2.0", ..] => match check_crc(body, ';') {
                Err(error) => return Self::refused(offset, format!("login: {error}"), Some(answer("AL", "10"))),
                Ok(_) if fields.len() != 4 => {
                    return Self::refused(
                        offset,
                        format!("login has {} fields, 2.0 has 4 (2.0;imei;password;crc)", fields.len()),
                        Some(answer("AL", "0")),
                    );
                }
                Ok(_) => (Version::V2_0, fields[1], fields[2]),
            },
            [device, password] => (Version::V1_1, *device, *password),
            _ => {
                return Self::refused(
                    offset,
                    format!("login has {} fields (1.1: imei;password, 2.0: 2.0;imei;password;crc)", fields.len()),
                    Some(answer("AL", "0")),
                );
            }
        };
        if device.is_empty() || device.len() > 64 || device.chars().any(|c| c.is_control() || c == '#') {
            return Self::refused(
                offset,
                format!("login identifier {device:?} is not usable"),
                Some(answer("AL", "0")),
            );
        }
        self.version = Some(version);
        self.device = Some(Arc::from(device));
        Event::Login {
            device: device.to_owned(),
            password: (!password.is_empty() && password != "NA").then(|| password.to_owned()),
            accept: answer("AL", "1"),
            reject: answer("AL", "0"),
        }
    }

    fn new_batch(&mut self, raw: &Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), raw.clone()),
            None => Batch::new(NAME, self.device.clone(), raw.clone()),
        }
    }

    /// `#SD#` and `#D#`: one record, with a CRC field in 2.0.
    fn data(&mut self, kind: &str, raw: &Bytes, line: &str, body_at: usize, offset: u64) -> Event {
        let answer_kind = if kind == "SD" { "ASD" } else { "AD" };
        let (plain, crc_code) = if kind == "SD" { (SHORT_FIELDS, "13") } else { (EXTENDED_FIELDS, "16") };
        let body = &line[body_at..];
        let mut fields: Vec<&str> = text::fields(body, ';');
        // A 2.0 device appends the CRC as one more field; the field count tells, whatever
        // the login said, because some devices log in as 1.1 and checksum anyway.
        if fields.len() == plain && self.version == Some(Version::V2_0) {
            let error = format!("#{kind}#: a 2.0 packet without its checksum field");
            return Self::refused(offset, error, Some(answer(answer_kind, crc_code)));
        }
        if fields.len() == plain + 1 {
            if let Err(error) = check_crc(body, ';') {
                return Self::refused(offset, format!("#{kind}#: {error}"), Some(answer(answer_kind, crc_code)));
            }
            fields.pop();
        }
        let mut batch = self.new_batch(raw);
        match decode_record(line, &fields, &mut batch) {
            Ok(()) => Event::Positions {
                batch,
                ack: answer(answer_kind, code::ACCEPTED),
                nack: Some(answer(answer_kind, code::STRUCTURE)),
            },
            Err(RecordError { code, message }) => {
                Self::refused(offset, format!("#{kind}#: {message}"), Some(answer(answer_kind, code)))
            }
        }
    }

    /// `#B#rec|rec|...[|crc]`: every sound record is kept; the answer counts them.
    fn black_box(&mut self, raw: &Bytes, line: &str, body_at: usize, offset: u64) -> Event {
        let body = &line[body_at..];
        // In 2.0 the last `|`-separated part is the CRC alone (no `;` in it).
        let last = body.rsplit('|').next().unwrap_or("");
        let has_crc = body.contains('|') && !last.contains(';') && !last.is_empty();
        if !has_crc && self.version == Some(Version::V2_0) {
            return Self::refused(offset, "#B#: a 2.0 packet without its checksum".into(), Some(answer("AB", "")));
        }
        let records_text = if has_crc {
            match check_crc(body, '|') {
                Ok(text) => text,
                Err(error) => return Self::refused(offset, format!("#B#: {error}"), Some(answer("AB", ""))),
            }
        } else {
            body.trim_end_matches('|')
        };
        let mut batch = self.new_batch(raw);
        let mut accepted = 0u32;
        let mut errors = Vec::new();
        for (i, record) in text::fields(records_text, '|').into_iter().enumerate() {
            let fields: Vec<&str> = text::fields(record, ';');
            match decode_record(line, &fields, &mut batch) {
                Ok(()) => accepted += 1,
                Err(error) => errors.push(format!("record {}: {}", i + 1, error.message)),
            }
        }
        let ack = answer("AB", &accepted.to_string());
        if !errors.is_empty() {
            let error = format!("#B#: {}", errors.join("; "));
            if accepted == 0 {
                return Self::refused(offset, error, Some(ack));
            }
            // The sound records still go through; the error is reported after them.
            self.pending.push_back(Self::refused(offset, error, None));
        }
        Event::Positions { batch, ack, nack: Some(answer("AB", "0")) }
    }

    fn driver_message(&mut self, raw: &Bytes, body: &str, body_at: usize, offset: u64) -> Event {
        let text = if self.version == Some(Version::V2_0) {
            match check_crc(body, ';') {
                Ok(text) => text,
                Err(error) => return Self::refused(offset, format!("#M#: {error}"), Some(answer("AM", "01"))),
            }
        } else {
            body
        };
        if text.is_empty() {
            return Self::refused(offset, "#M#: empty message".into(), Some(answer("AM", "0")));
        }
        let message = DeviceMessage {
            kind: "wialon_driver_message",
            answers_command: false,
            time: None,
            device: None,
            payload: raw.slice(body_at..body_at + text.len()),
        };
        Event::Message { message, reply: Some(answer("AM", "1")) }
    }

    /// `#I#sz;ind;count;date;time;name[;crc]`, then `sz` bytes of image.
    fn image_header(&mut self, body: &str, offset: u64) -> Result<Option<Event>, Fatal> {
        let fields: Vec<&str> = text::fields(body, ';');
        if fields.len() < 6 {
            let error = format!("#I#: {} fields, expected sz;ind;count;date;time;name[;crc]", fields.len());
            return Ok(Some(Self::refused(offset, error, Some(answer("AI", "0")))));
        }
        let (size, index, count) = (fields[0].parse::<usize>(), fields[1].parse::<u32>(), fields[2].parse::<u32>());
        let (Ok(size), Ok(index), Ok(count)) = (size, index, count) else {
            let error =
                format!("#I#: size {:?}, index {:?} or count {:?} is not a number", fields[0], fields[1], fields[2]);
            return Ok(Some(Self::refused(offset, error, Some(answer("AI", "0")))));
        };
        self.expect_binary(PendingBinary {
            kind: BinaryKind::Image,
            len: size,
            index,
            last: index + 1 >= count,
            crc: fields.get(6).and_then(|f| parse_crc(f)),
            header_offset: offset,
        })
    }

    /// `#IT#date;time;driver;code;count;crc`: announces a tachograph file of `count` parts.
    fn tachograph_info(&mut self, body: &str, offset: u64) -> Event {
        let text = match check_crc(body, ';') {
            Ok(text) => text,
            Err(error) => return Self::refused(offset, format!("#IT#: {error}"), Some(answer("AIT", "01"))),
        };
        let fields: Vec<&str> = text::fields(text, ';');
        match fields.as_slice() {
            [_, _, _, _, count] if count.parse::<u32>().is_ok() => {
                self.tachograph_parts = count.parse().ok();
                let message = DeviceMessage {
                    kind: "wialon_tachograph_info",
                    answers_command: false,
                    time: None,
                    device: None,
                    payload: Bytes::from(text.to_owned()),
                };
                Event::Message { message, reply: Some(answer("AIT", "1")) }
            }
            _ => Self::refused(
                offset,
                format!("#IT#: {text:?} is not date;time;driver;code;count"),
                Some(answer("AIT", "0")),
            ),
        }
    }

    /// `#T#code;sz;ind;crc`, then `sz` bytes of the file part.
    fn tachograph_header(&mut self, body: &str, offset: u64) -> Result<Option<Event>, Fatal> {
        let fields: Vec<&str> = text::fields(body, ';');
        let index = fields.get(2).and_then(|f| f.parse::<u32>().ok());
        let size = fields.get(1).and_then(|f| f.parse::<usize>().ok());
        let (Some(index), Some(size), 4) = (index, size, fields.len()) else {
            let index = fields.get(2).copied().unwrap_or("0");
            let error = format!("#T#: {body:?} is not code;sz;ind;crc");
            return Ok(Some(Self::refused(offset, error, Some(answer("AT", &format!("{index};0"))))));
        };
        let last = self.tachograph_parts.is_some_and(|parts| index + 1 >= parts);
        self.expect_binary(PendingBinary {
            kind: BinaryKind::Tachograph,
            len: size,
            index,
            last,
            crc: parse_crc(fields[3]),
            header_offset: offset,
        })
    }

    fn expect_binary(&mut self, pending: PendingBinary) -> Result<Option<Event>, Fatal> {
        if pending.len > self.options.max_binary_len {
            // The binary part follows at once; it cannot be skipped without trusting the
            // size it lies about, so the connection closes.
            return Err(Fatal {
                offset: pending.header_offset,
                error: format!(
                    "binary part of {} bytes exceeds the limit {}",
                    pending.len, self.options.max_binary_len
                ),
            });
        }
        self.binary = Some(pending);
        Ok(None)
    }

    fn finish_binary(&mut self, pending: PendingBinary, data: Bytes) -> Event {
        let (answer_kind, kind) = match pending.kind {
            BinaryKind::Image => ("AI", "wialon_image_part"),
            BinaryKind::Tachograph => ("AT", "wialon_tachograph_part"),
        };
        if let Some(sent) = pending.crc {
            let computed = crc16_arc(&data);
            if sent != computed && self.version == Some(Version::V2_0) {
                return Self::refused(
                    pending.header_offset,
                    format!(
                        "#{}# part {}: crc mismatch: header says {sent:04X}, data gives {computed:04X}",
                        &answer_kind[1..],
                        pending.index
                    ),
                    Some(answer(answer_kind, &format!("{};01", pending.index))),
                );
            }
        }
        let code = if pending.last { "1".to_owned() } else { format!("{};1", pending.index) };
        let message = DeviceMessage { kind, answers_command: false, time: None, device: None, payload: data };
        Event::Message { message, reply: Some(answer(answer_kind, &code)) }
    }

    fn decode_line(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if let Some(pending) = self.binary.take() {
                if src.len() < pending.len {
                    src.reserve(pending.len - src.len());
                    self.binary = Some(pending);
                    return Ok(None);
                }
                let data = self.consume(src, pending.len);
                return Ok(Some(self.finish_binary(pending, data)));
            }
            let newline = src.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(at) => {
                        self.consume(src, at + 1);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        let n = src.len();
                        self.consume(src, n);
                        return Ok(None);
                    }
                }
            }
            let limit = self.options.max_line_len;
            let too_long = match newline {
                Some(at) => at > limit,
                None => src.len() > limit,
            };
            if too_long {
                let start = self.offset;
                let kind: String = src.iter().take(4).map(|&b| char::from(b)).collect();
                let reply = match kind.as_str() {
                    k if k.starts_with("#D#") => Some(answer("AD", code::STRUCTURE)),
                    k if k.starts_with("#SD#") => Some(answer("ASD", code::STRUCTURE)),
                    k if k.starts_with("#B#") => Some(answer("AB", "0")),
                    _ => None,
                };
                match newline {
                    Some(at) => {
                        self.consume(src, at + 1);
                    }
                    None => {
                        let n = src.len();
                        self.consume(src, n);
                        self.discarding = true;
                    }
                }
                return Ok(Some(Self::refused(start, format!("line longer than the limit of {limit} bytes"), reply)));
            }
            let Some(at) = newline else {
                return Ok(None);
            };
            let start = self.offset;
            let mut line = self.consume(src, at + 1);
            let end = if line.ends_with(b"\r\n") { line.len() - 2 } else { line.len() - 1 };
            line.truncate(end);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.packet(line, start, false)? {
                Some(event) => return Ok(Some(event)),
                None => continue,
            }
        }
    }
}

impl Session for WialonSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        self.decode_line(src)
    }

    /// `[2.0;]IMEI#TYPE#body[\r\n]`: the identifier travels with every datagram.
    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let error = |offset: usize, error: String| DatagramError { offset, error };
        let text = std::str::from_utf8(&datagram).map_err(|_| error(0, "datagram is not UTF-8 text".into()))?;
        let trimmed_len = text.trim_end_matches(['\r', '\n']).len();
        let Some(hash) = text.find('#') else {
            return Err(error(0, "datagram has no IMEI# prefix".into()));
        };
        let prefix = &text[..hash];
        let (version, device) = match prefix.split_once(';') {
            Some(("2.0", device)) => (Version::V2_0, device),
            Some((other, _)) => return Err(error(0, format!("unknown protocol version {other:?}"))),
            None => (Version::V1_1, prefix),
        };
        if device.is_empty() || device.chars().any(|c| c.is_control()) {
            return Err(error(0, format!("identifier {device:?} is not usable")));
        }
        let mut events = Vec::new();
        if self.device.as_deref() != Some(device) {
            self.device = Some(Arc::from(device));
            events.push(Event::Login {
                device: device.to_owned(),
                password: None,
                accept: Bytes::new(),
                reject: Bytes::new(),
            });
        }
        self.version = Some(version);
        let packet = datagram.slice(hash..trimmed_len);
        let offset = self.offset;
        match self.packet(packet, offset, true) {
            Ok(Some(event)) => events.push(event),
            Ok(None) => {}
            Err(fatal) => return Err(error(hash, fatal.error)),
        }
        events.extend(self.pending.drain(..));
        Ok(events)
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        // A text message in the version the device logged in with; no answer follows.
        let text = std::str::from_utf8(payload).ok()?;
        command::message(text, self.version.unwrap_or(Version::V1_1)).map(|bytes| (bytes, false))
    }

    fn recycle(&mut self, batch: Batch) {
        // Let go of the line now, so the connection buffer it came from can be reused.
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }
}

/// Encoders for what the server sends to a device.
pub mod command {
    use bytes::Bytes;

    use super::{Version, crc16_arc};

    fn with_crc(kind: &str, text: &str, version: Version) -> Bytes {
        match version {
            Version::V1_1 => Bytes::from(format!("#{kind}#{text}\r\n")),
            Version::V2_0 => {
                let covered = format!("{text};");
                Bytes::from(format!("#{kind}#{covered}{:04X}\r\n", crc16_arc(covered.as_bytes())))
            }
        }
    }

    /// A text message to the driver (`#M#`); devices also take configuration commands
    /// this way. `None` when the text would break the line framing.
    pub fn message(text: &str, version: Version) -> Option<Bytes> {
        if text.is_empty() || text.contains(['\r', '\n']) {
            return None;
        }
        Some(with_crc("M", text, version))
    }

    fn upload(kind: &str, data: &[u8], version: Version) -> Bytes {
        let header = match version {
            Version::V1_1 => format!("#{kind}#{}\r\n", data.len()),
            Version::V2_0 => format!("#{kind}#{};{:04X}\r\n", data.len(), crc16_arc(data)),
        };
        let mut out = header.into_bytes();
        out.extend_from_slice(data);
        Bytes::from(out)
    }

    /// A firmware upload (`#US#size[;crc]` and the binary).
    pub fn firmware(data: &[u8], version: Version) -> Bytes {
        upload("US", data, version)
    }

    /// A configuration upload (`#UC#size[;crc]` and the binary).
    pub fn configuration(data: &[u8], version: Version) -> Bytes {
        upload("UC", data, version)
    }

    /// A request for a photo (`#QI#`).
    pub fn request_image() -> Bytes {
        Bytes::from_static(b"#QI#\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], options: SessionOptions) -> (Vec<Event>, Option<Fatal>, BytesMut) {
        let mut session = WialonSession::new(options);
        let mut buffer = BytesMut::from(input);
        let mut events = Vec::new();
        loop {
            match session.decode(&mut buffer) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => return (events, None, buffer),
                Err(fatal) => return (events, Some(fatal), buffer),
            }
        }
    }

    fn replies(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Login { accept, .. } => Some(accept.clone()),
                Event::Positions { ack, .. } => Some(ack.clone()),
                Event::Refused { reply, .. } | Event::KeepAlive { reply } | Event::Message { reply, .. } => {
                    reply.clone()
                }
            })
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .collect()
    }

    #[test]
    fn crc_fields_are_read_leniently() {
        for text in ["E335", "e335", "0xE335", "0XE335", "00E335", " E335"] {
            assert_eq!(parse_crc(text), Some(0xE335), "{text}");
        }
        assert_eq!(parse_crc("9b0"), Some(0x09B0));
        assert_eq!(parse_crc("0"), Some(0));
        assert_eq!(parse_crc("1E335"), None);
        assert_eq!(parse_crc("NA"), None);
        assert_eq!(parse_crc(""), None);
    }

    #[test]
    fn an_over_long_line_is_refused_and_discarded_without_buffering() {
        let options = SessionOptions { max_line_len: 32, ..SessionOptions::default() };
        let mut session = WialonSession::new(options);
        let mut buffer = BytesMut::from(&b"#L#356307042441013;NA\r\n"[..]);
        assert!(matches!(session.decode(&mut buffer), Ok(Some(Event::Login { .. }))));
        // 100 bytes of one line arrive in pieces; none of it stays buffered.
        buffer.extend_from_slice(b"#D#");
        buffer.extend_from_slice(&[b'1'; 40]);
        let refused = session.decode(&mut buffer);
        assert!(
            matches!(&refused, Ok(Some(Event::Refused { reply: Some(r), .. })) if r[..] == b"#AD#-1\r\n"[..]),
            "{refused:?}"
        );
        assert!(buffer.is_empty());
        buffer.extend_from_slice(&[b'2'; 60]);
        assert!(matches!(session.decode(&mut buffer), Ok(None)));
        assert!(buffer.is_empty());
        // The rest of the long line ends; the next packet decodes normally.
        buffer.extend_from_slice(b"333\r\n#P#\r\n");
        assert!(matches!(session.decode(&mut buffer), Ok(Some(Event::KeepAlive { .. }))));
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_complete_line_over_the_limit_is_refused_too() {
        let options = SessionOptions { max_line_len: 16, allow_anonymous: true, ..SessionOptions::default() };
        let (events, fatal, _) = run(b"#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n#P#\r\n", options);
        assert_eq!(fatal, None);
        assert_eq!(replies(&events), ["#ASD#-1\r\n", "#AP#\r\n"]);
    }

    #[test]
    fn data_before_login_closes_a_gateway_session() {
        let (events, fatal, _) = run(b"#SD#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA\r\n", SessionOptions::default());
        assert!(events.is_empty());
        assert!(fatal.is_some_and(|f| f.error.contains("before the login")));
    }

    #[test]
    fn an_oversized_binary_part_closes_the_connection() {
        let options = SessionOptions { max_binary_len: 8, ..SessionOptions::default() };
        let (events, fatal, _) = run(b"#L#1;NA\r\n#I#9999999;0;1;270413;205601;a.jpg\r\nxx", options);
        assert_eq!(replies(&events), ["#AL#1\r\n"]);
        assert!(fatal.is_some_and(|f| f.error.contains("exceeds the limit 8")));
    }

    #[test]
    fn a_binary_part_may_contain_line_ends() {
        let (events, fatal, _) =
            run(b"#L#1;NA\r\n#I#4;0;1;270413;205601;a.jpg\r\n\r\n\n#\r\n#P#\r\n", SessionOptions::default());
        assert_eq!(fatal, None);
        assert_eq!(replies(&events), ["#AL#1\r\n", "#AI#1\r\n", "#AP#\r\n"]);
        assert!(
            events.iter().any(|e| matches!(e, Event::Message { message, .. } if message.payload[..] == b"\r\n\n#"[..]))
        );
    }

    #[test]
    fn login_answers() {
        let (events, _, _) = run(b"#L#only\r\n#L#2.0;1;NA\r\n#L#;NA\r\n", SessionOptions::default());
        assert_eq!(replies(&events), ["#AL#0\r\n", "#AL#10\r\n", "#AL#0\r\n"]);
        let (events, _, _) = run(b"#L#123;secret\r\n", SessionOptions::default());
        assert!(matches!(&events[0], Event::Login { password: Some(p), .. } if p == "secret"));
    }

    #[test]
    fn commands_to_the_device() {
        assert_eq!(command::message("hello", Version::V1_1).as_deref(), Some(&b"#M#hello\r\n"[..]));
        let signed = command::message("hello", Version::V2_0).unwrap_or_default();
        let text = std::str::from_utf8(&signed).unwrap_or_default();
        assert!(text.starts_with("#M#hello;") && text.ends_with("\r\n"));
        assert_eq!(check_crc(text.trim_start_matches("#M#").trim_end(), ';'), Ok("hello"));
        assert_eq!(command::message("two\r\nlines", Version::V1_1), None);
        let firmware = command::firmware(b"BIN", Version::V2_0);
        assert_eq!(&firmware[..], format!("#US#3;{:04X}\r\nBIN", crc16_arc(b"BIN")).as_bytes());
        assert_eq!(&command::configuration(b"CFG", Version::V1_1)[..], b"#UC#3\r\nCFG");
    }
}
