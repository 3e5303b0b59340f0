//! Galileosky: binary tag packets over TCP, from the Russian market's fleet trackers.
//!
//! ```text
//! packet:  header:u8  length:u16 LE  body  crc:u16 LE        (CRC-16/MODBUS of header, length, body)
//! 0x01     main packet: length bits 0-14, bit 15 = archived (black-box) data; body = tags
//! 0x07     photo/file part: part number u8, data; answered 07 + crc
//! 0x08     compressed records: a minimal data set and chosen tags each ([`compressed`])
//! ```
//! The tags, their lengths and meanings, and how records divide are in [`tags`].
//!
//! | device sends | becomes | answer |
//! |---|---|---|
//! | head packet: hardware, firmware, IMEI (0x03), device id (0x04) | login | `02` + the packet's crc |
//! | main packet of records (each cut at its record number 0x10, or where a tag repeats) | positions (`io.archive` 1 for archived data) | `02` + crc, once stored |
//! | a packet of only IMEI, device id, command number (0xE0) and text (0xE1) | message answering the command | `02` + crc |
//! | photo part | message `galileo_photo` (part number and data) | `07` + crc |
//! | compressed records | positions (dated by the gateway's clock) | `02` + crc, once stored |
//! | an Iridium SBD message (`01 len:u16 BE`, elements `01 00 1C` header, `03` location, `02` tags) | login by the header's IMEI, a position | none |
//!
//! A packet whose checksum does not match, whose tags run past its end, or that holds a
//! tag missing from the table is refused without an answer, so the device sends it
//! again; the stream goes on at the next packet. A header byte that starts no packet,
//! or a declared length over the limit, closes the connection (the protocol has no
//! marker to find the next packet by).
//!
//! Commands go to the device as a 0x01 packet with its IMEI, device id, a command
//! number (0xE0) and the text (0xE1); the device answers with the number and its
//! answer text.

pub mod compressed;
pub mod encode;
pub mod tags;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::kit;
use crate::out::Out;
use crate::position::Batch;
use crate::protocol::{DatagramError, DeviceMessage, Event, Fatal, Session, SessionOptions};
use crate::registry::{self, Passwords, ProtocolSpec, Transports, is_imei};
use crate::time::UtcMillis;

/// The codec name in contract 1.
pub const NAME: &str = "galileo";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "Galileosky (head and main packets of tags, archive, photos, Iridium; 0xE0/0xE1 commands)",
    default_port: 5034,
    transports: Transports { tcp: true, udp: false },
    text: false,
    limits: &["max_frame_len"],
    session: |options| Box::new(GalileoSession::new(options)),
    identifier: is_imei,
    identifier_rule: registry::IMEI_RULE,
    passwords: Passwords::None,
    device: || Box::new(encode::Device::default()),
};

/// Packet headers.
pub mod header {
    /// Head and main packets, commands.
    pub const MAIN: u8 = 0x01;
    /// The server's answer to a main packet.
    pub const ANSWER: u8 = 0x02;
    /// A photo or file part (and its answer).
    pub const PHOTO: u8 = 0x07;
    /// Compressed records.
    pub const COMPRESSED: u8 = 0x08;
}

/// CRC-16/MODBUS, the checksum of every packet.
pub fn crc16(data: &[u8]) -> u16 {
    // Sixteen tables: packets of records run to a kilobyte (BENCHMARKS.md).
    const MODBUS: crc::Crc<u16, crc::Table<16>> = crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_MODBUS);
    MODBUS.checksum(data)
}

/// A whole packet: header, length (with the archive bit), body, checksum.
pub fn packet(header: u8, body: &[u8], archive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(header);
    let length = (body.len() as u16 & 0x7FFF) | if archive { 0x8000 } else { 0 };
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Not enough bytes to decide yet.
    Incomplete,
    /// A packet of `len` bytes of this kind.
    Packet {
        /// Bytes, header through checksum.
        len: usize,
        /// Which packet.
        kind: Kind,
    },
}

/// The kinds of packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Head, main or command packet.
    Main,
    /// Photo or file part.
    Photo,
    /// Compressed records.
    Compressed,
    /// An Iridium SBD message relayed by the Iridium gateway.
    Iridium,
}

/// The Iridium MO header element that follows an Iridium message's length.
const IRIDIUM_HEADER: [u8; 3] = [0x01, 0x00, 0x1C];

/// Finds the packet at the front of `buf`; `Err` says why the stream cannot go on.
pub fn scan(buf: &[u8], limit: usize) -> Result<Scan, String> {
    let Some(&first) = buf.first() else { return Ok(Scan::Incomplete) };
    let kind = match first {
        header::MAIN => Kind::Main,
        header::PHOTO => Kind::Photo,
        header::COMPRESSED => Kind::Compressed,
        other => return Err(format!("byte 0x{other:02X} starts no Galileosky packet (0x01, 0x07 or 0x08)")),
    };
    if buf.len() < 3 {
        return Ok(Scan::Incomplete);
    }
    let (lo, hi) = (buf[1], buf[2]);
    let declared = u16::from_le_bytes([lo, hi]);
    let mut body = usize::from(if kind == Kind::Photo { declared } else { declared & 0x7FFF });
    let mut kind = kind;
    // An Iridium message has a big-endian length and no checksum; its first element
    // tells it apart (no main packet starts with hardware version 0 and tag 0x1C).
    if kind == Kind::Main && body > 0 {
        match buf.get(3..6) {
            None => return Ok(Scan::Incomplete),
            Some(element) if element == IRIDIUM_HEADER => {
                kind = Kind::Iridium;
                body = usize::from(u16::from_be_bytes([lo, hi]));
            }
            Some(_) => {}
        }
    }
    if body > limit {
        return Err(format!("declared packet length {body} exceeds the limit {limit}"));
    }
    let len = 3 + body + if kind == Kind::Iridium { 0 } else { 2 };
    Ok(if buf.len() < len { Scan::Incomplete } else { Scan::Packet { len, kind } })
}

/// A refusal's words for a parser's failure at `rest` of `frame`.
fn failure_words(frame: &[u8], error: nom::Err<kit::Error<'_>>) -> String {
    let error = kit::failure(error);
    let at = kit::offset(frame, error.rest);
    format!("{} (at packet offset {at})", error.reason.words("packet"))
}

/// One tag of a packet: the tag and where its value is in the packet.
#[derive(Debug, Clone, Copy)]
struct TagAt {
    tag: u8,
    start: usize,
    len: usize,
}

/// What Iridium records fall back on: the message's time and coarse location.
#[derive(Debug, Clone, Copy)]
struct Fallback {
    time: UtcMillis,
    location: Option<((f64, f64), u32)>,
    /// The message's sequence number at the Iridium gateway.
    momsn: u16,
}

/// Writes the records of `tags` (values in `frame`) into `batch`: each record cut where
/// [`tags::Seen`] says; a record of only head and command tags is no position.
fn write_records(batch: &mut Batch, frame: &Bytes, tags: &[TagAt], archive: bool, fallback: Option<Fallback>) {
    let mut i = 0;
    while i < tags.len() {
        let mark = batch.mark();
        let mut seen = tags::Seen::default();
        let mut out = Out::new(batch, frame);
        while let Some(&TagAt { tag, start, len }) = tags.get(i) {
            if seen.starts_record(tag) {
                break;
            }
            seen.add(tag);
            tags::write(&mut out, tag, &frame[start..start + len]);
            i += 1;
        }
        if !seen.has_data() {
            batch.rollback(mark);
            continue;
        }
        if archive {
            out.io("archive", 1);
        }
        if let Some(fallback) = fallback {
            apply(&mut out, fallback);
        }
    }
}

/// Gives an Iridium record the message's time and location where it has none.
fn apply(out: &mut Out<'_>, fallback: Fallback) {
    out.io("momsn", u64::from(fallback.momsn));
    if out.fix().time.is_none() {
        out.set_time(Some(fallback.time));
    }
    if let Some((coordinates, cep_km)) = fallback.location {
        if out.fix().coordinates.is_none() {
            // A satellite-derived estimate within `cep_km`: no GNSS fix.
            out.fix().coordinates = Some(coordinates);
            out.io("cep_radius_km", u64::from(cep_km));
        }
    }
}

/// Why a packet's identity is not the connection's.
#[derive(Debug)]
enum NotIdentified {
    /// Another device's packet: refused, the connection goes on.
    Refuse(String),
    /// No identity to go on with: the connection closes.
    Close(String),
}

impl NotIdentified {
    fn outcome(self, offset: u64) -> Result<Event, Fatal> {
        match self {
            NotIdentified::Refuse(error) => Ok(Event::Refused { offset, error, reply: None }),
            NotIdentified::Close(error) => Err(Fatal { offset, error }),
        }
    }
}

/// The decoding state of one Galileosky connection.
#[derive(Debug)]
pub struct GalileoSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    /// The device id of the head packet (0x04), which commands carry.
    device_id: u16,
    offset: u64,
    /// The content of a packet whose login came first.
    pending: Option<Event>,
    /// The last command number sent.
    command_number: Cell<u32>,
    /// Command numbers sent and not answered.
    commands: RefCell<VecDeque<u32>>,
    /// The tags of the packet being decoded (kept for its allocation).
    tags: Vec<TagAt>,
    /// The time the gateway gave, which dates compressed records.
    now: Option<UtcMillis>,
    spare: Option<Batch>,
}

impl GalileoSession {
    /// A session that has seen nothing yet.
    pub fn new(options: SessionOptions) -> Self {
        GalileoSession {
            options,
            device: None,
            device_id: 0,
            offset: 0,
            pending: None,
            command_number: Cell::new(0),
            commands: RefCell::new(VecDeque::new()),
            tags: Vec::new(),
            now: None,
            spare: None,
        }
    }

    fn batch(&mut self, raw: Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), raw),
            None => Batch::new(NAME, self.device.clone(), raw),
        }
    }

    /// Reads the tags of `frame[from..to]` into `self.tags`; the refusal's words when a
    /// tag is unknown or runs past the end.
    fn read_tags(&mut self, frame: &[u8], from: usize, to: usize) -> Result<(), String> {
        self.tags.clear();
        let mut rest = &frame[from..to];
        while !rest.is_empty() {
            match tags::tag(rest) {
                Ok((after, (tag, value))) => {
                    self.tags.push(TagAt { tag, start: kit::position_of(frame, value), len: value.len() });
                    rest = after;
                }
                Err(error) => return Err(failure_words(&frame[..to], error)),
            }
        }
        Ok(())
    }

    /// Takes the identity a packet carries: `Ok(true)` when it logs the device in.
    fn identify(&mut self, imei: Option<&[u8]>) -> Result<bool, NotIdentified> {
        match (imei, &self.device) {
            (Some(imei), known) => {
                let imei = String::from_utf8_lossy(imei).into_owned();
                match known {
                    Some(device) if **device == *imei => Ok(false),
                    Some(device) => {
                        Err(NotIdentified::Refuse(format!("packet of IMEI {imei:?} on the connection of {device}")))
                    }
                    None if !is_imei(&imei) => {
                        Err(NotIdentified::Close(format!("IMEI tag 0x03 holds {imei:?}, not 15 digits")))
                    }
                    None => {
                        self.device = Some(Arc::from(imei.as_str()));
                        Ok(true)
                    }
                }
            }
            (None, None) if !self.options.allow_anonymous => {
                Err(NotIdentified::Close("data before the head packet (IMEI tag 0x03)".into()))
            }
            (None, _) => Ok(false),
        }
    }

    /// The login event of a packet that logs the device in; the packet's own event
    /// waits behind it, answered once stored (a head packet alone: answered at once).
    fn login(&mut self, event: Event) -> Event {
        let device = self.device.as_deref().unwrap_or_default().to_owned();
        match event {
            Event::KeepAlive { reply } => {
                Event::Login { device, password: None, accept: reply.unwrap_or_default(), reject: Bytes::new() }
            }
            event => {
                self.pending = Some(event);
                Event::Login { device, password: None, accept: Bytes::new(), reject: Bytes::new() }
            }
        }
    }

    fn main_packet(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        let end = frame.len() - 2;
        let archive = frame[2] & 0x80 != 0;
        let answer = Bytes::from(vec![header::ANSWER, frame[end], frame[end + 1]]);
        if let Err(error) = self.read_tags(&frame, 3, end) {
            return Ok(Event::Refused { offset: start, error, reply: None });
        }
        let find = |tags: &[TagAt], wanted: u8| tags.iter().find(|t| t.tag == wanted).copied();
        let imei = find(&self.tags, tags::IMEI).map(|t| &frame[t.start..t.start + t.len]);
        let logs_in = match self.identify(imei) {
            Ok(logs_in) => logs_in,
            Err(not) => return not.outcome(start),
        };
        if let Some(id) = find(&self.tags, tags::DEVICE_ID) {
            self.device_id = u16::from_le_bytes([frame[id.start], frame[id.start + 1]]);
        }
        let mut batch = self.batch(frame.clone());
        let tags = std::mem::take(&mut self.tags);
        write_records(&mut batch, &frame, &tags, archive, None);
        let text = find(&tags, tags::COMMAND_TEXT);
        let number = find(&tags, tags::COMMAND_NUMBER);
        self.tags = tags;
        let event = if !batch.is_empty() {
            Event::Positions { batch, ack: answer, nack: None }
        } else {
            self.recycle(batch);
            match text {
                Some(text) => {
                    let number = number.map(|n| {
                        u32::from_le_bytes([frame[n.start], frame[n.start + 1], frame[n.start + 2], frame[n.start + 3]])
                    });
                    let payload = frame.slice(text.start..text.start + text.len);
                    self.answer(number, payload, answer)
                }
                None => Event::KeepAlive { reply: Some(answer) },
            }
        };
        Ok(if logs_in { self.login(event) } else { event })
    }

    /// A command's answer: it answers the command whose number it carries.
    fn answer(&self, number: Option<u32>, payload: Bytes, reply: Bytes) -> Event {
        let mut commands = self.commands.borrow_mut();
        let answered = match number.and_then(|n| commands.iter().position(|&sent| sent == n)) {
            Some(at) => commands.remove(at),
            None => commands.pop_front(),
        };
        let message = DeviceMessage {
            kind: "galileo_answer",
            answers_command: answered.is_some(),
            time: None,
            device: self.device.as_deref().map(String::from),
            payload,
        };
        Event::Message { message, reply: Some(reply) }
    }

    fn photo(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(Fatal { offset: start, error: "photo packet before the head packet".into() });
        }
        let end = frame.len() - 2;
        let reply = Bytes::from(vec![header::PHOTO, frame[end], frame[end + 1]]);
        let message = DeviceMessage {
            kind: "galileo_photo",
            answers_command: false,
            time: None,
            device: self.device.as_deref().map(String::from),
            payload: frame.slice(3..end),
        };
        Ok(Event::Message { message, reply: Some(reply) })
    }

    /// Compressed records ([`compressed`]), their year from the gateway's clock.
    fn compressed_packet(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(Fatal { offset: start, error: "compressed packet before the head packet".into() });
        }
        let Some(now) = self.now else {
            let error = "compressed packet (0x08): its times count from the start of a year it does not name, and \
                         there is no clock to tell the year (fleetgate decode has none)";
            return Ok(Event::Refused { offset: start, error: error.into(), reply: None });
        };
        let end = frame.len() - 2;
        let archive = frame[2] & 0x80 != 0;
        let answer = Bytes::from(vec![header::ANSWER, frame[end], frame[end + 1]]);
        let mut batch = self.batch(frame.clone());
        let mut rest = &frame[3..end];
        while !rest.is_empty() {
            let mut out = Out::new(&mut batch, &frame);
            match compressed::record(&mut out, rest, now) {
                Ok((after, ())) => {
                    if archive {
                        out.io("archive", 1);
                    }
                    rest = after;
                }
                Err(error) => {
                    let error = failure_words(&frame[..end], error);
                    self.recycle(batch);
                    return Ok(Event::Refused { offset: start, error, reply: None });
                }
            }
        }
        if batch.is_empty() {
            self.recycle(batch);
            return Ok(Event::KeepAlive { reply: Some(answer) });
        }
        Ok(Event::Positions { batch, ack: answer, nack: None })
    }

    /// An Iridium SBD message: elements `id:u8 len:u16 BE value`.
    fn iridium(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        let refuse = |error: String| Ok(Event::Refused { offset: start, error, reply: None });
        let mut rest = &frame[3..];
        let (mut header, mut location, mut payload) = (None, None, None);
        while !rest.is_empty() {
            let element = nom::Parser::parse_complete(&mut (kit::be_u8, kit::be_u16), rest)
                .and_then(|(after, (id, len))| kit::take(usize::from(len))(after).map(|(after, v)| (after, (id, v))));
            match element {
                Ok((after, (id, value))) => {
                    match id {
                        0x01 => header = Some(value),
                        0x02 => payload = Some(value),
                        0x03 => location = Some(value),
                        _ => {}
                    }
                    rest = after;
                }
                Err(error) => return refuse(format!("Iridium message: {}", failure_words(&frame, error))),
            }
        }
        // The MO header: CDR reference u32, IMEI, session status, MOMSN, MTMSN, time u32.
        let Some(header) = header.filter(|h| h.len() == 28) else {
            return refuse("Iridium message without its 28-byte MO header".into());
        };
        let imei = &header[4..19];
        let momsn = u16::from_be_bytes([header[20], header[21]]);
        let time = UtcMillis(i64::from(u32::from_be_bytes([header[24], header[25], header[26], header[27]])) * 1000);
        // The location: flags (bit 1 south, bit 0 west), degrees and thousandths of
        // minutes of each, the CEP radius in km.
        let location = match location {
            Some(l) if l.len() == 11 => {
                let degrees = |d: u8, m: [u8; 2]| f64::from(d) + f64::from(u16::from_be_bytes(m)) / 60_000.0;
                let lat = degrees(l[1], [l[2], l[3]]);
                let lon = degrees(l[4], [l[5], l[6]]);
                let lat = if l[0] & 0x02 != 0 { -lat } else { lat };
                let lon = if l[0] & 0x01 != 0 { -lon } else { lon };
                Some(((lat, lon), u32::from_be_bytes([l[7], l[8], l[9], l[10]])))
            }
            Some(l) => return refuse(format!("Iridium location element of {} bytes, not 11", l.len())),
            None => None,
        };
        let payload_range = payload.map(|p| {
            let from = kit::position_of(&frame, p);
            (from, from + p.len())
        });
        if let Some((from, to)) = payload_range {
            if let Err(error) = self.read_tags(&frame, from, to) {
                return refuse(format!("Iridium payload: {error}"));
            }
        } else {
            self.tags.clear();
        }
        let logs_in = match self.identify(Some(imei)) {
            Ok(logs_in) => logs_in,
            Err(not) => return not.outcome(start),
        };
        let mut batch = self.batch(frame.clone());
        let tags = std::mem::take(&mut self.tags);
        let fallback = Fallback { time, location, momsn };
        write_records(&mut batch, &frame, &tags, false, Some(fallback));
        self.tags = tags;
        if batch.is_empty() && location.is_some() {
            let mut out = Out::new(&mut batch, &frame);
            apply(&mut out, fallback);
        }
        // The Iridium gateway expects no answer to a mobile-originated message.
        let event = if batch.is_empty() {
            self.recycle(batch);
            Event::KeepAlive { reply: None }
        } else {
            Event::Positions { batch, ack: Bytes::new(), nack: None }
        };
        Ok(if logs_in { self.login(event) } else { event })
    }

    fn packet(&mut self, start: u64, frame: Bytes, kind: Kind) -> Result<Event, Fatal> {
        if kind != Kind::Iridium {
            let end = frame.len() - 2;
            let sent = u16::from_le_bytes([frame[end], frame[end + 1]]);
            let computed = crc16(&frame[..end]);
            if sent != computed {
                return Ok(Event::Refused {
                    offset: start,
                    error: format!("checksum mismatch: packet says 0x{sent:04X}, data gives 0x{computed:04X}"),
                    reply: None,
                });
            }
        }
        match kind {
            Kind::Main => self.main_packet(start, frame),
            Kind::Photo => self.photo(start, frame),
            Kind::Iridium => self.iridium(start, frame),
            Kind::Compressed => self.compressed_packet(start, frame),
        }
    }
}

impl Session for GalileoSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        if let Some(event) = self.pending.take() {
            return Ok(Some(event));
        }
        let start = self.offset;
        match scan(src, self.options.max_frame_len) {
            Err(error) => Err(Fatal { offset: start, error }),
            Ok(Scan::Incomplete) => Ok(None),
            Ok(Scan::Packet { len, kind }) => {
                self.offset += len as u64;
                let frame = src.split_to(len).freeze();
                self.packet(start, frame, kind).map(Some)
            }
        }
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let _ = datagram;
        Err(DatagramError { offset: 0, error: "Galileosky has no UDP transport".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        let imei = self.device.as_deref().filter(|imei| is_imei(imei))?;
        if payload.is_empty() || payload.len() > 255 {
            return None;
        }
        let number = self.command_number.get();
        self.command_number.set(number.wrapping_add(1));
        let mut commands = self.commands.borrow_mut();
        if commands.len() >= 16 {
            commands.pop_front();
        }
        commands.push_back(number);
        Some((Bytes::from(encode::command(imei, self.device_id, number, payload)), true))
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }

    fn clock(&mut self, now: UtcMillis) {
        self.now = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_found_by_their_length() {
        let main = packet(header::MAIN, &[0x10, 1, 0], true);
        assert_eq!(scan(&main, 64), Ok(Scan::Packet { len: 8, kind: Kind::Main }));
        assert_eq!(scan(&main[..5], 64), Ok(Scan::Incomplete));
        assert_eq!(scan(&main[..2], 64), Ok(Scan::Incomplete));
        assert!(scan(&[0x05, 0, 0], 64).is_err());
        assert!(scan(&packet(header::MAIN, &[0x10; 100], false), 64).is_err());
        let iridium = [0x01, 0x00, 0x03, 0x01, 0x00, 0x1C];
        assert_eq!(scan(&iridium, 64), Ok(Scan::Packet { len: 6, kind: Kind::Iridium }));
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }
}
