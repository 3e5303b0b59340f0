//! JT/T 808 (2013 and 2019): the Chinese national standard spoken by trackers, dashcams
//! and ADAS units, over TCP.
//!
//! Framing, escapes, the check code and the header are in [`frame`]; the location body
//! and its additional items in [`location`]; the other bodies in [`messages`].
//!
//! | terminal sends | id | becomes | platform answers |
//! |---|---|---|---|
//! | register | 0x0100 | login | 0x8100: result 0 and the auth code (4: unknown terminal) |
//! | authenticate | 0x0102 | login | 0x8001 result 0 (1: refused) |
//! | heartbeat, logout, time zone sync | 0x0002 0x0003 0x1007 | keep-alive (a heartbeat with battery data: position) | 0x8001 |
//! | location, location query answer | 0x0200 0x0201 | position | 0x8001 |
//! | batch of locations | 0x0704 | positions (type 1, blind-area data: `io.archive` 1) | 0x8001 |
//! | vendor batch | 0x0210 | positions | 0x8001 |
//! | JointTech vendor locations | 0x5501 0x5502 | message, kept whole (layout undocumented) | 0x4401 when asked |
//! | attributes, driver identity, transparent data, acceleration | 0x0107 0x0702 0x0900 0x2070 | position without a fix | 0x8001 |
//! | general response, parameters, text answer | 0x0001 0x0104 0x1300 | message answering the command it names | (none) |
//! | time sync request | 0x0109 | keep-alive | 0x8109 with the UTC time (when the gateway gave the session a clock) |
//! | anything else | | message, kept whole | 0x8001 |
//!
//! Every frame carries the terminal phone number, which identifies the device (its
//! digits without leading zeros): the first frame of a connection logs the device in
//! whatever its id. A refused frame (check code, escape, declared length) is answered
//! 0x8001 with result 2 when its header can be read, so the terminal resends. Subpackages
//! (attribute bit 13) are reassembled, bounded by [`MAX_PACKAGES`] and the frame limit
//! times [`MAX_PACKAGES`]; each piece is answered as it arrives (terminals wait for it),
//! the message itself once it is stored.
//!
//! Commands go to the terminal as 0x8300 text (flag 1) for text, or as the message id
//! and body given in hex (`8105F0`: terminal control 0xF0, which most terminals take as
//! engine cut; `8105F1` restores); the terminal answers 0x0001 naming the command's
//! serial.
//!
//! Times are the device's local time: UTC+8 as the standard says, unless the device's
//! registration sets another offset.

pub mod encode;
mod frame;
pub mod location;
mod messages;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::kit;
use crate::position::Batch;
use crate::protocol::{DatagramError, DeviceMessage, DeviceSettings, Event, Fatal, Session, SessionOptions};
use crate::registry::{Passwords, ProtocolSpec, Transports};
use crate::time::UtcMillis;

pub use frame::{escape, identifier, unescape, xor};

/// The codec name in contract 1.
pub const NAME: &str = "jt808";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "JT/T 808-2013/2019 (trackers, dashcams, ADAS; 0x8105 and 0x8300 commands)",
    default_port: 5015,
    transports: Transports { tcp: true, udp: false },
    text: false,
    limits: &["max_frame_len"],
    session: |options| Box::new(Jt808Session::new(options)),
    identifier: |identifier| {
        !identifier.is_empty()
            && identifier.len() <= 20
            && !identifier.starts_with('0')
            && identifier.bytes().all(|b| b.is_ascii_digit())
    },
    identifier_rule: "the terminal phone number: up to 20 digits without leading zeros",
    passwords: Passwords::None,
    device: || Box::new(encode::Device::default()),
};

/// Pieces of one subpackaged message at most.
pub const MAX_PACKAGES: u16 = 256;

/// Message ids.
pub mod id {
    /// Terminal general response.
    pub const TERMINAL_RESPONSE: u16 = 0x0001;
    /// Heartbeat.
    pub const HEARTBEAT: u16 = 0x0002;
    /// Logout.
    pub const LOGOUT: u16 = 0x0003;
    /// Parameter query response.
    pub const PARAMETERS: u16 = 0x0104;
    /// Register.
    pub const REGISTER: u16 = 0x0100;
    /// Authenticate.
    pub const AUTHENTICATE: u16 = 0x0102;
    /// Time sync request.
    pub const TIME_REQUEST: u16 = 0x0109;
    /// Location.
    pub const LOCATION: u16 = 0x0200;
    /// Location batch.
    pub const BATCH: u16 = 0x0704;
    /// Text answer (vendor).
    pub const TEXT_ANSWER: u16 = 0x1300;
    /// Time zone sync (vendor).
    pub const TIMEZONE: u16 = 0x1007;
    /// Platform general response.
    pub const GENERAL_RESPONSE: u16 = 0x8001;
    /// Short-serial general response (vendor).
    pub const GENERAL_RESPONSE_2: u16 = 0x4401;
    /// Register response.
    pub const REGISTER_RESPONSE: u16 = 0x8100;
    /// Time sync response.
    pub const TIME_RESPONSE: u16 = 0x8109;
    /// Text message to the terminal.
    pub const TEXT: u16 = 0x8300;
    /// Terminal control.
    pub const CONTROL: u16 = 0x8105;
}

/// Results of a platform general response.
pub mod result {
    /// Accepted.
    pub const OK: u8 = 0;
    /// Failed (the data could not be stored; the login was refused).
    pub const FAILED: u8 = 1;
    /// The message was wrong (check code, length).
    pub const MESSAGE_ERROR: u8 = 2;
    /// Not supported (an encrypted body).
    pub const NOT_SUPPORTED: u8 = 3;
    /// Register response: no such terminal.
    pub const NO_SUCH_TERMINAL: u8 = 4;
}

/// How the terminal writes its header: answers are addressed the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// The phone number bytes, as sent.
    pub phone: Vec<u8>,
    /// The 2019 protocol version, when it uses the 2019 header.
    pub version: Option<u8>,
}

/// A whole message from the platform: header (with `serial`), body, check code,
/// escaped and delimited.
pub fn platform_message(terminal: &Terminal, id: u16, serial: u16, body: &[u8]) -> Bytes {
    let mut message = Vec::with_capacity(17 + body.len());
    message.extend_from_slice(&id.to_be_bytes());
    let mut attributes = (body.len() as u16) & 0x03FF;
    if terminal.version.is_some() {
        attributes |= 0x4000;
    }
    message.extend_from_slice(&attributes.to_be_bytes());
    if let Some(version) = terminal.version {
        message.push(version);
    }
    message.extend_from_slice(&terminal.phone);
    if id == id::GENERAL_RESPONSE_2 {
        message.push(serial as u8);
    } else {
        message.extend_from_slice(&serial.to_be_bytes());
    }
    message.extend_from_slice(body);
    message.push(xor(&message));
    Bytes::from(escape(&message))
}

/// The body of a platform general response.
pub fn general_response_body(serial: u16, answered: u16, result: u8) -> [u8; 5] {
    let [s1, s2] = serial.to_be_bytes();
    let [i1, i2] = answered.to_be_bytes();
    [s1, s2, i1, i2, result]
}

/// Subpackages of one message being collected.
#[derive(Debug)]
struct Reassembly {
    id: u16,
    total: u16,
    pieces: Vec<Option<Vec<u8>>>,
    bytes: usize,
}

/// The decoding state of one JT/T 808 connection.
#[derive(Debug)]
pub struct Jt808Session {
    options: SessionOptions,
    settings: DeviceSettings,
    device: Option<Arc<str>>,
    terminal: Option<Terminal>,
    /// Bytes consumed from the stream so far.
    offset: u64,
    /// The platform's message serial.
    serial: Cell<u16>,
    /// Commands sent and not answered: (serial, message id).
    commands: RefCell<VecDeque<(u16, u16)>>,
    /// Events of a frame that produced several (the login a data frame implies).
    pending: VecDeque<Event>,
    reassembly: Option<Reassembly>,
    /// The time the gateway gave, for time requests.
    now: Option<UtcMillis>,
    spare: Option<Batch>,
}

impl Jt808Session {
    /// A session that has seen nothing yet.
    pub fn new(options: SessionOptions) -> Self {
        Jt808Session {
            settings: options.device.clone(),
            options,
            device: None,
            terminal: None,
            offset: 0,
            serial: Cell::new(0),
            commands: RefCell::new(VecDeque::new()),
            pending: VecDeque::new(),
            reassembly: None,
            now: None,
            spare: None,
        }
    }

    /// Minutes east of UTC of the device's clock: its registration's, else UTC+8.
    fn utc_offset(&self) -> i32 {
        self.settings.utc_offset_minutes.unwrap_or(8 * 60)
    }

    fn next_serial(&self) -> u16 {
        let serial = self.serial.get();
        self.serial.set(serial.wrapping_add(1));
        serial
    }

    fn reply(&self, terminal: &Terminal, id: u16, body: &[u8]) -> Bytes {
        platform_message(terminal, id, self.next_serial(), body)
    }

    fn general(&self, terminal: &Terminal, header: &frame::Header, result: u8) -> Bytes {
        self.reply(terminal, id::GENERAL_RESPONSE, &general_response_body(header.serial, header.id, result))
    }

    fn batch(&mut self, raw: Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), raw),
            None => Batch::new(NAME, self.device.clone(), raw),
        }
    }

    /// A frame between delimiters.
    fn frame(&mut self, start: u64, frame: &[u8]) -> Event {
        let message = match frame::unescape(frame) {
            Ok(message) => message,
            Err(error) => return Event::Refused { offset: start, error, reply: None },
        };
        let refuse = |error: String| Event::Refused { offset: start, error, reply: None };
        let Some((&check, covered)) = message.split_last() else {
            return refuse("empty message".into());
        };
        let (rest_len, header) = match frame::header(covered) {
            Ok((rest, header)) => (rest.len(), header),
            Err(_) => return refuse(format!("message of {} bytes is shorter than its header", message.len())),
        };
        let terminal = Terminal { phone: header.phone.clone(), version: header.version };
        let body_at = covered.len() - rest_len;
        let computed = xor(covered);
        if computed != check {
            return Event::Refused {
                offset: start,
                error: format!(
                    "check code mismatch: frame says 0x{check:02X}, data gives 0x{computed:02X} (message 0x{:04X})",
                    header.id
                ),
                reply: Some(self.general(&terminal, &header, result::MESSAGE_ERROR)),
            };
        }
        if header.body_len() != rest_len {
            return Event::Refused {
                offset: start,
                error: format!(
                    "declared body length {} but the message carries {rest_len} (message 0x{:04X})",
                    header.body_len(),
                    header.id
                ),
                reply: Some(self.general(&terminal, &header, result::MESSAGE_ERROR)),
            };
        }
        // Vendor locations 0x5501 and 0x5502 use those bits for something of their own.
        if header.encryption() != 0 && !matches!(header.id, 0x5501 | 0x5502) {
            return Event::Refused {
                offset: start,
                error: format!("encrypted body (method {}) of message 0x{:04X}", header.encryption(), header.id),
                reply: Some(self.general(&terminal, &header, result::NOT_SUPPORTED)),
            };
        }
        let message = Bytes::from(message);
        let body = message.slice(body_at..message.len() - 1);
        let identifier = frame::identifier(&header.phone);
        let known = self.device.as_deref() == Some(identifier.as_str());
        self.terminal = Some(terminal.clone());
        if !known {
            self.device = Some(Arc::from(identifier.as_str()));
            let (accept, reject) = match header.id {
                id::REGISTER => (self.register_answer(&terminal, &header, &identifier, result::OK), {
                    self.register_answer(&terminal, &header, &identifier, result::NO_SUCH_TERMINAL)
                }),
                id::AUTHENTICATE => {
                    (self.general(&terminal, &header, result::OK), self.general(&terminal, &header, result::FAILED))
                }
                _ => {
                    // Any other first message implies the login; the message follows it.
                    let event = self.message(start, &terminal, &header, message, body);
                    self.pending.push_back(event);
                    (Bytes::new(), Bytes::new())
                }
            };
            return Event::Login { device: identifier, password: None, accept, reject };
        }
        self.message(start, &terminal, &header, message, body)
    }

    fn register_answer(&self, terminal: &Terminal, header: &frame::Header, code: &str, result: u8) -> Bytes {
        let mut body = Vec::with_capacity(3 + code.len());
        body.extend_from_slice(&header.serial.to_be_bytes());
        body.push(result);
        if result == result::OK {
            // The auth code the terminal presents from now on: its own identifier.
            body.extend_from_slice(code.as_bytes());
        }
        self.reply(terminal, id::REGISTER_RESPONSE, &body)
    }

    /// A whole message (a subpackage is collected first).
    fn message(
        &mut self,
        start: u64,
        terminal: &Terminal,
        header: &frame::Header,
        message: Bytes,
        body: Bytes,
    ) -> Event {
        if let Some((total, index)) = header.package {
            return match self.collect(header.id, total, index, &body) {
                Err(error) => Event::Refused {
                    offset: start,
                    error,
                    reply: Some(self.general(terminal, header, result::MESSAGE_ERROR)),
                },
                Ok(None) => Event::KeepAlive { reply: Some(self.general(terminal, header, result::OK)) },
                Ok(Some(whole)) => {
                    let whole = Bytes::from(whole);
                    self.dispatch(start, terminal, header, whole.clone(), whole)
                }
            };
        }
        self.dispatch(start, terminal, header, message, body)
    }

    /// Adds a piece; the whole body once every piece is there.
    fn collect(&mut self, id: u16, total: u16, index: u16, piece: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if total == 0 || total > MAX_PACKAGES || index == 0 || index > total {
            return Err(format!("subpackage {index} of {total} (at most {MAX_PACKAGES} pieces)"));
        }
        let limit = self.options.max_frame_len * usize::from(MAX_PACKAGES);
        let same = self.reassembly.as_ref().is_some_and(|r| r.id == id && r.total == total);
        if !same {
            // A new message replaces one left unfinished (its terminal gave up on it).
            self.reassembly = Some(Reassembly { id, total, pieces: vec![None; usize::from(total)], bytes: 0 });
        }
        let Some(reassembly) = self.reassembly.as_mut() else { return Ok(None) };
        let slot = &mut reassembly.pieces[usize::from(index) - 1];
        reassembly.bytes = reassembly.bytes - slot.as_ref().map_or(0, Vec::len) + piece.len();
        if reassembly.bytes > limit {
            self.reassembly = None;
            return Err(format!("subpackaged message 0x{id:04X} exceeds {limit} bytes"));
        }
        *slot = Some(piece.to_vec());
        if reassembly.pieces.iter().any(Option::is_none) {
            return Ok(None);
        }
        let whole = self.reassembly.take().map(|r| r.pieces.into_iter().flatten().flatten().collect());
        Ok(whole)
    }

    /// What a whole message becomes.
    fn dispatch(&mut self, start: u64, terminal: &Terminal, header: &frame::Header, raw: Bytes, body: Bytes) -> Event {
        let ok = || self.general(terminal, header, result::OK);
        match header.id {
            id::REGISTER => Event::KeepAlive {
                reply: Some(self.register_answer(terminal, header, self.device.as_deref().unwrap_or_default(), 0)),
            },
            id::AUTHENTICATE | id::LOGOUT | id::TIMEZONE => Event::KeepAlive { reply: Some(ok()) },
            id::HEARTBEAT if body.len() < 3 => Event::KeepAlive { reply: Some(ok()) },
            id::TIME_REQUEST => Event::KeepAlive { reply: self.now.map(|now| self.time_answer(terminal, now)) },
            id::TERMINAL_RESPONSE | id::PARAMETERS | id::TEXT_ANSWER => {
                let answered = messages::answered_serial(header.id, &body);
                let answers_command = match answered {
                    Some((serial, _)) => {
                        let mut commands = self.commands.borrow_mut();
                        let found = commands.iter().position(|(s, _)| *s == serial);
                        found.map(|at| commands.remove(at)).is_some()
                    }
                    None => self.commands.borrow_mut().pop_front().is_some(),
                };
                let kind = match header.id {
                    id::TERMINAL_RESPONSE => "jt808_response",
                    id::PARAMETERS => "jt808_parameters",
                    _ => "jt808_text",
                };
                let payload = match header.id {
                    id::TEXT_ANSWER => Bytes::from(messages::utf16be(body.get(2..).unwrap_or_default()).into_bytes()),
                    _ => body,
                };
                self.message_event(kind, answers_command, payload, None)
            }
            _ if messages::is_position(header.id, &body) => {
                let ack = ok();
                let nack = Some(self.general(terminal, header, result::FAILED));
                let mut batch = self.batch(raw.clone());
                let offset = self.utc_offset();
                let models = location::Models::of(&self.settings);
                match messages::positions(&mut batch, &raw, header.id, &body, offset, models) {
                    Ok(_) if batch.is_empty() => {
                        self.recycle(batch);
                        self.message_event("jt808_message", false, raw, Some(ack))
                    }
                    Ok(_) => Event::Positions { batch, ack, nack },
                    Err(error) => {
                        let error = kit::failure(error);
                        let at = kit::offset(&raw, error.rest);
                        let why = error.reason.words("body");
                        self.recycle(batch);
                        Event::Refused {
                            offset: start,
                            error: format!("message 0x{:04X}: {why} (at message offset {at})", header.id),
                            reply: Some(self.general(terminal, header, result::MESSAGE_ERROR)),
                        }
                    }
                }
            }
            _ => {
                let reply = match header.id {
                    // Vendor locations ask for a short answer with attribute bit 15.
                    0x5501 | 0x5502 if header.attributes & 0x8000 != 0 => Some(self.reply(
                        terminal,
                        id::GENERAL_RESPONSE_2,
                        &[(header.id >> 8) as u8, header.id as u8, result::OK],
                    )),
                    0x5501 | 0x5502 => None,
                    _ => Some(ok()),
                };
                let (kind, payload) = messages::kept(header.id, raw, &body);
                self.message_event(kind, false, payload, reply)
            }
        }
    }

    fn message_event(&self, kind: &'static str, answers_command: bool, payload: Bytes, reply: Option<Bytes>) -> Event {
        let message = DeviceMessage {
            kind,
            answers_command,
            time: None,
            device: self.device.as_deref().map(String::from),
            payload,
        };
        Event::Message { message, reply }
    }

    /// 0x8109: year u16, month, day, hour, minute, second, result.
    fn time_answer(&self, terminal: &Terminal, now: UtcMillis) -> Bytes {
        let (year, month, day, hour, minute, second) = now.civil();
        let mut body = Vec::with_capacity(8);
        body.extend_from_slice(&(year as u16).to_be_bytes());
        body.extend_from_slice(&[month as u8, day as u8, hour as u8, minute as u8, second as u8, result::OK]);
        self.reply(terminal, id::TIME_RESPONSE, &body)
    }

    /// A vendor text sentence `(...)`: kept as a message; `BASE,2` asks for the time,
    /// answered with the sentence whose `TIME` is the UTC time as `yyyyMMddHHmmss`.
    fn sentence(&mut self, text: Bytes) -> Event {
        let sentence = String::from_utf8_lossy(&text).into_owned();
        let reply = match self.now {
            Some(now) if sentence.contains("BASE,2") => {
                let (y, mo, d, h, mi, s) = now.civil();
                let time = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
                Some(Bytes::from(sentence.replace("TIME", &time)))
            }
            _ => None,
        };
        if self.device.is_none() && !self.options.allow_anonymous {
            return Event::Refused {
                offset: self.offset,
                error: "text sentence before any message".into(),
                reply: None,
            };
        }
        self.message_event("jt808_sentence", true, text, reply)
    }
}

impl Session for Jt808Session {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        loop {
            let start = self.offset;
            match frame::scan(src, self.options.max_frame_len) {
                frame::Scan::Incomplete => return Ok(None),
                frame::Scan::Broken(error) => return Err(Fatal { offset: start, error }),
                frame::Scan::Garbage { skip, error } => {
                    self.offset += skip as u64;
                    let _ = src.split_to(skip);
                    return Ok(Some(Event::Refused { offset: start, error, reply: None }));
                }
                frame::Scan::Empty => {
                    // Back-to-back delimiters: the second opens the next frame.
                    self.offset += 1;
                    let _ = src.split_to(1);
                }
                frame::Scan::Sentence { len } => {
                    self.offset += len as u64;
                    let text = src.split_to(len).freeze();
                    return Ok(Some(self.sentence(text)));
                }
                frame::Scan::Frame { len } => {
                    self.offset += len as u64;
                    let frame = src.split_to(len).freeze();
                    return Ok(Some(self.frame(start, &frame)));
                }
            }
        }
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let _ = datagram;
        Err(DatagramError { offset: 0, error: "JT/T 808 has no UDP transport".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        let terminal = self.terminal.as_ref()?;
        let printable = !payload.is_empty() && payload.iter().all(|b| (0x20..0x7F).contains(b));
        let (id, body) = if printable {
            let mut body = Vec::with_capacity(1 + payload.len());
            body.push(0x01);
            body.extend_from_slice(payload);
            (id::TEXT, body)
        } else if payload.len() >= 2 {
            (u16::from_be_bytes([payload[0], payload[1]]), payload[2..].to_vec())
        } else {
            return None;
        };
        if body.len() > 0x03FF {
            return None;
        }
        let serial = self.next_serial();
        let mut commands = self.commands.borrow_mut();
        if commands.len() >= 16 {
            commands.pop_front();
        }
        commands.push_back((serial, id));
        Some((platform_message(terminal, id, serial, &body), true))
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }

    fn configure(&mut self, settings: &DeviceSettings) {
        self.settings = settings.clone();
    }

    fn clock(&mut self, now: UtcMillis) {
        self.now = Some(now);
    }
}
