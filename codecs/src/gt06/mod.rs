//! GT06 (Concox and its many clones): binary frames over TCP.
//!
//! Framing, CRC and the WiFi form without CRC are in [`frame`]; the blocks messages are
//! built from in [`fields`]; the layouts of the messages that carry a position in
//! [`records`].
//!
//! | device sends | protocol number | becomes | answer |
//! |---|---|---|---|
//! | login: IMEI (BCD), type, time zone and language | 0x01 | login | `78 78 05 01 serial crc 0D 0A` |
//! | GPS, GPS and cell, alarms | 0x10 0x11 0x12 0x16 0x1A 0x22 0x26 0x27 0x2D 0x37 0xA0 ... | position | the same with its protocol number |
//! | status, heartbeat | 0x13 0x23 | position without a fix | the same |
//! | cells, WiFi | 0x17 0x18 0x19 0x24 0x28 0x2C 0x2E 0x69 0xA1 0xA2 0xF3 | position without coordinates | the same (WiFi without CRC: `78 78 00 type time 0D 0A`) |
//! | information, OBD, alarm | 0x94 0x8C 0x95 | position | 0x95 only (0x34, 0x38 and the SR411 0x24 go unanswered too) |
//! | modules (extended) | 0x70 | position | `78 78 05 70 serial ...` (answers to extended frames are basic frames, except 0x32 and 0x33) |
//! | command answer | 0x15, 0x21 (extended) | message answering the command | 0x15 only |
//! | time request | 0x8A | keep-alive | the time, UTC (when the gateway gave the session a clock) |
//! | anything else with a sound CRC | | message, kept whole | basic frames: the standard answer |
//!
//! Commands go to the device as 0x80: `78 78 len 80 cmdlen flag:u32 text serial crc 0D
//! 0A`; the device answers with 0x15 or 0x21.
//!
//! Device time is the device's local time: UTC unless the device's registration sets an
//! offset ([`DeviceSettings::utc_offset_minutes`]) or its login announces one (bits 4-15
//! of the time zone word, hhmm in decimal; bit 3 set for west of Greenwich). WiFi reports
//! carry UTC.
//!
//! When the session refuses and when it gives up:
//! - A frame whose CRC or declared length is wrong, or whose content is shorter than its
//!   layout, is refused: no position, no answer (the device sends it again), and the
//!   stream goes on with the next frame.
//! - Bytes that start no frame, a declared length over the limit, or data before the
//!   login (except in `decode`) leave no way on: the connection closes.

pub mod encode;
mod fields;
mod frame;
mod records;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::kit::{self, Reason};
use crate::position::Batch;
use crate::protocol::{DatagramError, DeviceMessage, DeviceSettings, Event, Fatal, Session, SessionOptions};
use crate::registry::{self, Passwords, ProtocolSpec, Transports};
use crate::time::UtcMillis;

use fields::Out;
use frame::Scan;
use records::Models;

/// The codec name in contract 1.
pub const NAME: &str = "gt06";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "GT06 (Concox and clones: GPS, cells, WiFi, status, alarms, OBD; 0x80 commands)",
    default_port: 5023,
    transports: Transports { tcp: true, udp: false },
    text: false,
    limits: &["max_frame_len"],
    session: |options| Box::new(Gt06Session::new(options)),
    identifier: registry::is_imei,
    identifier_rule: registry::IMEI_RULE,
    passwords: Passwords::None,
    device: || Box::new(encode::Device::default()),
};

/// Protocol numbers with a meaning of their own to the session.
pub mod kind {
    /// Login.
    pub const LOGIN: u8 = 0x01;
    /// A command's answer (basic frame).
    pub const STRING: u8 = 0x15;
    /// A command's answer (extended frame).
    pub const STRING_INFO: u8 = 0x21;
    /// Address request.
    pub const ADDRESS_REQUEST: u8 = 0x2A;
    /// Modules (extended), answered in a basic frame.
    pub const MODULAR: u8 = 0x70;
    /// A command to the device.
    pub const COMMAND: u8 = 0x80;
    /// Time request.
    pub const TIME_REQUEST: u8 = 0x8A;
    /// Address answer.
    pub const ADDRESS_RESPONSE: u8 = 0x97;
    /// Serial port passthrough (extended).
    pub const SERIAL: u8 = 0x9B;
}

/// CRC-16/X-25 (the ITU CRC), the checksum of every frame.
pub fn crc_x25(data: &[u8]) -> u16 {
    const X25: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);
    X25.checksum(data)
}

/// A frame from the server: `78 78` (or `79 79` when `extended`), length, protocol
/// number, `content`, serial, CRC, stop bytes.
pub fn server_frame(kind: u8, content: &[u8], serial: u16, extended: bool) -> Bytes {
    let length = 1 + content.len() + 4;
    let mut out = BytesMut::with_capacity(length + 6);
    if extended {
        out.put_slice(&frame::EXTENDED);
        out.put_u16(length as u16);
    } else {
        out.put_slice(&frame::BASIC);
        out.put_u8(length as u8);
    }
    out.put_u8(kind);
    out.put_slice(content);
    out.put_u16(serial);
    let crc = crc_x25(&out[2..]);
    out.put_u16(crc);
    out.put_slice(&frame::STOP);
    out.freeze()
}

/// The standard answer: the protocol number and serial echoed.
pub fn response(kind: u8, serial: u16) -> Bytes {
    server_frame(kind, &[], serial, false)
}

/// A text command to the device (0x80), with server flag 0.
pub fn encode_command(text: &[u8], serial: u16) -> Bytes {
    let mut content = Vec::with_capacity(5 + text.len());
    content.push((4 + text.len()).min(255) as u8);
    content.extend_from_slice(&[0, 0, 0, 0]);
    content.extend_from_slice(text);
    server_frame(kind::COMMAND, &content, serial, content.len() + 5 > 255)
}

/// The identifier in a login: 8 BCD bytes whose first digit pads the 15-digit IMEI.
fn login_identifier(imei: &[u8]) -> Result<String, String> {
    let (_, digits) = kit::bcd(8)(imei).map_err(|e| match kit::failure(e).reason {
        Reason::Invalid(why) => format!("login IMEI: {why}"),
        _ => "login shorter than its IMEI".to_owned(),
    })?;
    Ok(digits[1..].to_owned())
}

/// Minutes east of UTC from a login's time zone word.
fn login_offset(word: u16) -> i32 {
    let hhmm = i32::from(word >> 4);
    let minutes = hhmm / 100 * 60 + hhmm % 100;
    if word & 0x08 != 0 { -minutes } else { minutes }
}

/// The decoding state of one GT06 connection.
#[derive(Debug)]
pub struct Gt06Session {
    options: SessionOptions,
    settings: DeviceSettings,
    models: Models,
    device: Option<Arc<str>>,
    /// The offset the login announced, in minutes east of UTC.
    login_offset: Option<i32>,
    /// Bytes consumed from the stream so far.
    offset: u64,
    /// The time the gateway gave, for time requests.
    now: Option<UtcMillis>,
    /// A batch handed back by the caller, decoded into next.
    spare: Option<Batch>,
}

impl Gt06Session {
    /// A session that has not seen the login yet.
    pub fn new(options: SessionOptions) -> Self {
        let settings = options.device.clone();
        Gt06Session {
            models: Models::of(&settings),
            settings,
            options,
            device: None,
            login_offset: None,
            offset: 0,
            now: None,
            spare: None,
        }
    }

    /// Minutes east of UTC of the device's clock: its registration's, else its login's.
    fn utc_offset(&self) -> i32 {
        self.settings.utc_offset_minutes.or(self.login_offset).unwrap_or(0)
    }

    fn batch(&mut self, frame: &Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), frame.clone()),
            None => Batch::new(NAME, self.device.clone(), frame.clone()),
        }
    }

    fn login(&mut self, start: u64, content: &[u8], serial: u16) -> Event {
        let device = match login_identifier(content) {
            Ok(device) => device,
            Err(error) => return Event::Refused { offset: start + 4, error, reply: None },
        };
        if content.len() >= 12 {
            self.login_offset = Some(login_offset(u16::from_be_bytes([content[10], content[11]])));
        }
        self.device = Some(Arc::from(device.as_str()));
        Event::Login { device, password: None, accept: response(kind::LOGIN, serial), reject: Bytes::new() }
    }

    /// A frame whose length, stop bytes and CRC hold.
    fn frame(&mut self, start: u64, frame: Bytes, extended: bool) -> Result<Event, Fatal> {
        let header = if extended { 4 } else { 3 };
        let kind = frame[header];
        let end = frame.len() - 6;
        let serial = u16::from_be_bytes([frame[end], frame[end + 1]]);
        let content = &frame[header + 1..end];
        if kind == kind::LOGIN {
            return Ok(self.login(start, content, serial));
        }
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(Fatal { offset: start, error: format!("type 0x{kind:02X} frame before the login") });
        }
        let answer = (!extended).then(|| response(kind, serial));
        let event = match kind {
            kind::STRING if !extended => self.text_answer(start, content, answer),
            kind::STRING_INFO if extended => self.text_answer(start, content, None),
            kind::SERIAL if extended => {
                let data = content.get(1..).unwrap_or_default();
                self.message("gt06_serial", false, Bytes::copy_from_slice(data), None)
            }
            kind::TIME_REQUEST => Event::KeepAlive { reply: self.now.map(time_answer) },
            kind::COMMAND..=0x82 => self.message("gt06_message", false, frame.clone(), None),
            _ if records::is_position(kind, extended) => {
                let ack = match kind {
                    kind::ADDRESS_REQUEST => address_answer(),
                    0x32 | 0x33 if extended => server_frame(kind, &[], serial, true),
                    // Information, OBD, X1 locations, SR411 reports and 0x38 go unanswered.
                    0x94 | 0x8C | 0x38 => Bytes::new(),
                    0x34 if !extended => Bytes::new(),
                    0x24 if content.len() == 41 => Bytes::new(),
                    _ => response(kind, serial),
                };
                self.position(start, &frame, kind, header + 1..end, extended, ack, None)
            }
            _ => self.message("gt06_message", false, frame.clone(), answer),
        };
        Ok(event)
    }

    fn message(&self, kind: &'static str, answers_command: bool, payload: Bytes, reply: Option<Bytes>) -> Event {
        let message = DeviceMessage {
            kind,
            answers_command,
            time: None,
            device: self.device.as_deref().map(String::from),
            payload,
        };
        Event::Message { message, reply }
    }

    /// A command's answer: 0x15 `length flag:u32 text [language:u16]`, or 0x21 `flag:u32
    /// encoding text` (encoding 1 ASCII, else UTF-16BE).
    fn text_answer(&self, start: u64, content: &[u8], reply: Option<Bytes>) -> Event {
        let text: Option<Vec<u8>> = if reply.is_some() {
            // Some firmware leaves the length at 0 and pads the text with zeros.
            let declared = usize::from(content.first().copied().unwrap_or(0));
            let end = if declared >= 4 && declared < content.len() { 1 + declared } else { content.len() };
            content.get(5..end).map(|text| {
                let text = if declared < 4 { trim_padding(text) } else { text };
                text.to_vec()
            })
        } else {
            match content.get(4) {
                Some(1) => Some(content[5..].to_vec()),
                Some(_) => Some(utf16be(&content[5..]).into_bytes()),
                None => None,
            }
        };
        match text {
            Some(text) => self.message("gt06_text", true, Bytes::from(text), reply),
            None => {
                Event::Refused { offset: start, error: "command answer shorter than its header".into(), reply: None }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn position(
        &mut self,
        start: u64,
        frame: &Bytes,
        kind: u8,
        content: std::ops::Range<usize>,
        extended: bool,
        ack: Bytes,
        wifi_points: Option<usize>,
    ) -> Event {
        let mut batch = self.batch(frame);
        let offset = self.utc_offset();
        let family = self.models.family();
        let result = {
            let mut out = Out::new(&mut batch, frame, offset, family);
            let content = &frame[content.clone()];
            match wifi_points {
                Some(points) => records::wifi(&mut out, content, points).map(|(_, rest)| out.rest(rest)),
                None => records::decode(&mut out, kind, content, extended, self.models).map(|_| ()),
            }
        };
        match result {
            Ok(()) => Event::Positions { batch, ack, nack: None },
            Err(error) => {
                let error = kit::failure(error);
                let at = kit::offset(frame, error.rest);
                let why = error.reason.words("content");
                self.recycle(batch);
                Event::Refused {
                    offset: start + at as u64,
                    error: format!("type 0x{kind:02X}: {why} (frame at offset {start}, {} bytes)", frame.len()),
                    reply: None,
                }
            }
        }
    }
}

/// Text padded with zeros (and spaces) at its end, without them.
fn trim_padding(text: &[u8]) -> &[u8] {
    let end = text.iter().rposition(|&b| b != 0 && b != b' ').map_or(0, |i| i + 1);
    &text[..end]
}

/// UTF-16BE text as UTF-8 (an odd last byte and unpaired surrogates are replaced).
fn utf16be(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// The answer to a time request: the UTC time, binary, serial 0.
fn time_answer(now: UtcMillis) -> Bytes {
    let (year, month, day, hour, minute, second) = now.civil();
    let content = [(year - 2000) as u8, month as u8, day as u8, hour as u8, minute as u8, second as u8];
    server_frame(kind::TIME_REQUEST, &content, 0, false)
}

/// The answer to an address request: no address known (`NA&&NA&&0##`), extended frame.
fn address_answer() -> Bytes {
    const NO_ADDRESS: &[u8] = b"NA&&NA&&0##";
    let mut content = Vec::with_capacity(5 + NO_ADDRESS.len());
    content.push(NO_ADDRESS.len() as u8);
    content.extend_from_slice(&[0, 0, 0, 0]);
    content.extend_from_slice(NO_ADDRESS);
    server_frame(kind::ADDRESS_RESPONSE, &content, 0, true)
}

/// The answer to a WiFi report without CRC: its type and time echoed.
fn wifi_answer(kind: u8, time: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(12);
    out.put_slice(&frame::BASIC);
    out.put_u8(0);
    out.put_u8(kind);
    out.put_slice(time);
    out.put_slice(&frame::STOP);
    out.freeze()
}

impl Session for Gt06Session {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        let start = self.offset;
        match frame::scan(src, self.options.max_frame_len) {
            Scan::Incomplete => Ok(None),
            Scan::Broken(error) => Err(Fatal { offset: start, error }),
            Scan::Refused { skip, error } => {
                self.offset += skip as u64;
                let _ = src.split_to(skip);
                Ok(Some(Event::Refused { offset: start, error, reply: None }))
            }
            Scan::Frame { len, extended } => {
                self.offset += len as u64;
                let frame = src.split_to(len).freeze();
                self.frame(start, frame, extended).map(Some)
            }
            Scan::Wifi { len } => {
                self.offset += len as u64;
                let frame = src.split_to(len).freeze();
                let kind = frame[3];
                if self.device.is_none() && !self.options.allow_anonymous {
                    return Err(Fatal { offset: start, error: format!("type 0x{kind:02X} frame before the login") });
                }
                let ack = wifi_answer(kind, &frame[4..10]);
                let points = usize::from(frame[2]);
                Ok(Some(self.position(start, &frame, kind, 4..len - 2, false, ack, Some(points))))
            }
        }
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let _ = datagram;
        Err(DatagramError { offset: 0, error: "GT06 has no UDP transport".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        // The 0x80 content holds at most 255 bytes behind its length byte.
        (payload.len() <= 250).then(|| (encode_command(payload, 0), true))
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }

    fn configure(&mut self, settings: &DeviceSettings) {
        self.models = Models::of(settings);
        self.settings = settings.clone();
    }

    fn clock(&mut self, now: UtcMillis) {
        self.now = Some(now);
    }
}
