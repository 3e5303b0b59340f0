//! The normalized position (contract 1 in DESIGN.md) in a compact form.
//!
//! A codec decodes one frame into one [`Batch`]: the fixes of the frame plus two flat
//! arrays holding every IO element and every well-known attribute of all its records.
//! Variable-length values (byte strings, text, Wialon parameter names) are spans into
//! the frame's own bytes, which the batch keeps alive. Decoding a frame therefore costs
//! a handful of allocations whatever it holds, none per element, and a batch can be
//! cleared and reused. JSON exists only at the edges, through [`PositionRef`]'s
//! `Serialize`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::attrs::Attr;
pub use crate::hex::HexDisplay;
use crate::time::UtcMillis;

/// A byte range inside [`Batch::raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Number of bytes.
    pub len: u32,
}

impl Span {
    /// The span covering `range`; frames are bounded far below 4 GiB.
    pub fn new(range: Range<usize>) -> Self {
        Span { start: range.start as u32, len: (range.end - range.start) as u32 }
    }

    fn range(self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// How the protocol names an IO element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKey {
    /// A numeric id (Teltonika), written as a decimal string in JSON.
    Id(u16),
    /// A name taken from the frame (Wialon IPS parameters), valid UTF-8.
    Name(Span),
    /// A fixed name for a field the protocol defines (Wialon IPS `hdop`, `adc1`).
    Static(&'static str),
}

/// The raw value of an IO element, as the device sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IoValue {
    /// An unsigned integer.
    Uint(u64),
    /// A signed integer (for protocols that declare one).
    Int(i64),
    /// A floating-point number (for protocols that declare one).
    Float(f64),
    /// A variable-length byte string, written as lowercase hex.
    Bytes(Span),
    /// Text, valid UTF-8.
    Text(Span),
}

/// One IO element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IoEntry {
    /// The protocol's name for the element.
    pub key: IoKey,
    /// Its raw value.
    pub value: IoValue,
}

/// The value of a well-known attribute, in the unit the vocabulary documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// One of a fixed set of names (alarm kinds).
    Name(&'static str),
    /// A 64-bit identifier written as 16 uppercase hex digits (iButton keys).
    Hex64(u64),
    /// Bytes of the frame written as uppercase hex (RFID keys of other lengths, ICCIDs
    /// sent as BCD).
    HexBytes(Span),
    /// An identifier written as decimal text (key numbers sent as integers).
    Decimal(u64),
    /// Binary-coded decimal bytes of the frame written as their digits, padding nibbles
    /// (F) left out (ICCIDs).
    Digits(Span),
    /// Text taken from the frame, valid UTF-8.
    Text(Span),
}

/// One well-known attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttrEntry {
    /// Which attribute.
    pub attr: Attr,
    /// Its value.
    pub value: AttrValue,
}

/// The fix part of one position: what every record has, without its IO and attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// GNSS fix time (or record time when there is no fix); `None` when the device sent
    /// none (Wialon `NA`), in which case the gateway's receive time stands in for it.
    pub time: Option<UtcMillis>,
    /// Latitude and longitude in WGS 84 degrees; `None` when the record has no coordinates.
    pub coordinates: Option<(f64, f64)>,
    /// Metres above sea level, when sent.
    pub altitude: Option<f64>,
    /// km/h, when sent.
    pub speed: Option<f64>,
    /// Degrees, 0..359, when sent.
    pub course: Option<f64>,
    /// Satellites in use, when sent.
    pub satellites: Option<u16>,
    /// The device's own fix validity.
    pub valid: bool,
    io_start: u32,
    attrs_start: u32,
}

impl Fix {
    /// A fix without coordinates, marked invalid; codecs fill in what they have.
    pub fn at(time: UtcMillis) -> Self {
        Self::untimed(Some(time))
    }

    /// A fix whose time may be missing; see [`Fix::time`].
    pub fn untimed(time: Option<UtcMillis>) -> Self {
        Fix {
            time,
            coordinates: None,
            altitude: None,
            speed: None,
            course: None,
            satellites: None,
            valid: false,
            io_start: 0,
            attrs_start: 0,
        }
    }
}

/// Where a batch stood, so a codec can roll back a record it could not finish.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    fixes: usize,
    io: usize,
    attrs: usize,
}

/// The positions decoded from one frame of one device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The identifier the device sent (IMEI, terminal id); `None` only in `decode` when
    /// data arrives before any login.
    pub device: Option<Arc<str>>,
    /// Codec name, as in contract 1.
    pub protocol: &'static str,
    /// Gateway receive time; `None` in the decode command.
    pub received: Option<UtcMillis>,
    raw: Bytes,
    fixes: Vec<Fix>,
    io: Vec<IoEntry>,
    attrs: Vec<AttrEntry>,
}

impl Batch {
    /// An empty batch whose spans refer into `raw`.
    pub fn new(protocol: &'static str, device: Option<Arc<str>>, raw: Bytes) -> Self {
        Batch { device, protocol, received: None, raw, fixes: Vec::new(), io: Vec::new(), attrs: Vec::new() }
    }

    /// Empties the batch for the next frame, keeping its allocations.
    pub fn reset(&mut self, raw: Bytes) {
        self.raw = raw;
        self.received = None;
        self.fixes.clear();
        self.io.clear();
        self.attrs.clear();
    }

    /// The batch emptied for another frame of `device`, keeping its allocations.
    pub fn reuse(mut self, device: Option<Arc<str>>, raw: Bytes) -> Self {
        self.device = device;
        self.reset(raw);
        self
    }

    /// The frame bytes the spans refer to.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.fixes.len()
    }

    /// True when the frame held no positions.
    pub fn is_empty(&self) -> bool {
        self.fixes.is_empty()
    }

    /// Reserves room for `positions` more positions and `elements` more IO elements and
    /// attributes each, so a frame decodes without growing the arrays step by step.
    pub fn reserve(&mut self, positions: usize, elements: usize) {
        self.fixes.reserve(positions);
        self.io.reserve(elements);
        self.attrs.reserve(elements);
    }

    /// Starts a new position; the IO elements and attributes pushed next belong to it.
    pub fn push_fix(&mut self, mut fix: Fix) {
        fix.io_start = self.io.len() as u32;
        fix.attrs_start = self.attrs.len() as u32;
        self.fixes.push(fix);
    }

    /// The position being built, to complete fields decoded after its IO (validity).
    pub fn last_fix_mut(&mut self) -> Option<&mut Fix> {
        self.fixes.last_mut()
    }

    /// Adds a raw IO element to the current position.
    pub fn push_io(&mut self, key: IoKey, value: IoValue) {
        self.io.push(IoEntry { key, value });
    }

    /// Adds a well-known attribute to the current position.
    pub fn push_attr(&mut self, attr: Attr, value: AttrValue) {
        self.attrs.push(AttrEntry { attr, value });
    }

    /// Sets a well-known attribute of the current position, replacing the value an earlier
    /// field of the same record gave it (protocols that carry one value in two places).
    pub fn set_attr(&mut self, attr: Attr, value: AttrValue) {
        let start = self.fixes.last().map_or(0, |fix| fix.attrs_start as usize);
        match self.attrs[start..].iter_mut().find(|entry| entry.attr == attr) {
            Some(entry) => entry.value = value,
            None => self.attrs.push(AttrEntry { attr, value }),
        }
    }

    /// Remembers the current end, for [`Batch::rollback`].
    pub fn mark(&self) -> Mark {
        Mark { fixes: self.fixes.len(), io: self.io.len(), attrs: self.attrs.len() }
    }

    /// Drops everything pushed since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.fixes.truncate(mark.fixes);
        self.io.truncate(mark.io);
        self.attrs.truncate(mark.attrs);
    }

    /// The positions, in the order the device sent them.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PositionRef<'_>> + '_ {
        (0..self.fixes.len()).map(move |i| self.get(i))
    }

    /// One position by index.
    ///
    /// # Panics
    /// When `index >= self.len()`.
    pub fn get(&self, index: usize) -> PositionRef<'_> {
        let fix = &self.fixes[index];
        let next = self.fixes.get(index + 1);
        let io_end = next.map_or(self.io.len(), |n| n.io_start as usize);
        let attrs_end = next.map_or(self.attrs.len(), |n| n.attrs_start as usize);
        PositionRef {
            batch: self,
            fix,
            io: &self.io[fix.io_start as usize..io_end],
            attrs: &self.attrs[fix.attrs_start as usize..attrs_end],
        }
    }

    fn bytes(&self, span: Span) -> &[u8] {
        self.raw.get(span.range()).unwrap_or_default()
    }

    fn text(&self, span: Span) -> &str {
        // Codecs only make text spans over validated UTF-8; an empty string is the safe
        // answer should that ever be broken.
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }
}

/// A view of one position of a batch: contract 1 when serialized.
#[derive(Debug, Clone, Copy)]
pub struct PositionRef<'a> {
    batch: &'a Batch,
    /// The fix fields.
    pub fix: &'a Fix,
    io: &'a [IoEntry],
    attrs: &'a [AttrEntry],
}

impl<'a> PositionRef<'a> {
    /// The raw IO elements.
    pub fn io(&self) -> &'a [IoEntry] {
        self.io
    }

    /// The well-known attributes.
    pub fn attrs(&self) -> &'a [AttrEntry] {
        self.attrs
    }

    /// The value of one attribute, if the record had it.
    pub fn attr(&self, attr: Attr) -> Option<AttrValue> {
        self.attrs.iter().find(|a| a.attr == attr).map(|a| a.value)
    }

    /// The bytes of a span of this position's frame.
    pub fn bytes(&self, span: Span) -> &'a [u8] {
        self.batch.bytes(span)
    }

    /// The text of a span of this position's frame.
    pub fn text(&self, span: Span) -> &'a str {
        self.batch.text(span)
    }
}

/// Writes a number as a JSON integer when it has no fraction, so that integral values
/// from integer protocol fields (speed 52, altitude 110) stay integers on the wire.
struct Number(f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 9.0e15 { s.serialize_i64(v as i64) } else { s.serialize_f64(v) }
    }
}

struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}", HexDisplay(self.0)))
    }
}

struct IoMap<'a>(PositionRef<'a>);

impl Serialize for IoMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let position = self.0;
        let mut map = s.serialize_map(Some(position.io.len()))?;
        let mut id_text = [0u8; 5];
        for entry in position.io {
            match entry.key {
                IoKey::Id(id) => map.serialize_key(format_u16(&mut id_text, id))?,
                IoKey::Name(span) => map.serialize_key(position.text(span))?,
                IoKey::Static(name) => map.serialize_key(name)?,
            }
            match entry.value {
                IoValue::Uint(v) => map.serialize_value(&v)?,
                IoValue::Int(v) => map.serialize_value(&v)?,
                IoValue::Float(v) => map.serialize_value(&v)?,
                IoValue::Bytes(span) => map.serialize_value(&Hex(position.bytes(span)))?,
                IoValue::Text(span) => map.serialize_value(position.text(span))?,
            }
        }
        map.end()
    }
}

/// The digits of BCD bytes; nibbles over 9 (padding) are left out.
fn bcd_digits(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .filter(|&nibble| nibble <= 9)
        .map(|nibble| char::from(b'0' + nibble))
        .collect()
}

/// Decimal text of an IO id without allocating.
fn format_u16(buf: &mut [u8; 5], mut value: u16) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

struct AttrMap<'a>(PositionRef<'a>);

impl Serialize for AttrMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let position = self.0;
        let mut map = s.serialize_map(Some(position.attrs.len()))?;
        for entry in position.attrs {
            map.serialize_key(entry.attr.name())?;
            match entry.value {
                AttrValue::Bool(v) => map.serialize_value(&v)?,
                AttrValue::Int(v) => map.serialize_value(&v)?,
                AttrValue::Float(v) => map.serialize_value(&v)?,
                AttrValue::Name(v) => map.serialize_value(v)?,
                AttrValue::Hex64(v) => map.serialize_value(&format_args!("{v:016X}").to_string())?,
                AttrValue::HexBytes(span) => {
                    map.serialize_value(&format_args!("{:X}", HexDisplay(position.bytes(span))).to_string())?
                }
                AttrValue::Decimal(v) => map.serialize_value(&v.to_string())?,
                AttrValue::Digits(span) => map.serialize_value(&bcd_digits(position.bytes(span)))?,
                AttrValue::Text(span) => map.serialize_value(position.text(span))?,
            }
        }
        map.end()
    }
}

impl Serialize for PositionRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fix = self.fix;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("device", &self.batch.device.as_deref())?;
        map.serialize_entry("protocol", self.batch.protocol)?;
        // A device that sent no time gets the receive time, as its protocol specifies;
        // without either (the decode command) the field is left out.
        if let Some(time) = fix.time.or(self.batch.received) {
            map.serialize_entry("time", &time.to_string())?;
        }
        if let Some(received) = self.batch.received {
            map.serialize_entry("received", &received.to_string())?;
        }
        if let Some((lat, lon)) = fix.coordinates {
            map.serialize_entry("lat", &lat)?;
            map.serialize_entry("lon", &lon)?;
        }
        if let Some(altitude) = fix.altitude {
            map.serialize_entry("altitude", &Number(altitude))?;
        }
        if let Some(speed) = fix.speed {
            map.serialize_entry("speed", &Number(speed))?;
        }
        if let Some(course) = fix.course {
            map.serialize_entry("course", &Number(course))?;
        }
        if let Some(satellites) = fix.satellites {
            map.serialize_entry("satellites", &satellites)?;
        }
        map.serialize_entry("valid", &fix.valid)?;
        map.serialize_entry("attrs", &AttrMap(*self))?;
        map.serialize_entry("io", &IoMap(*self))?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_contract_one() {
        let raw = Bytes::from_static(b"\x0a\x1bname");
        let mut batch = Batch::new("teltonika", Some(Arc::from("356307042441013")), raw);
        let mut fix = Fix::at(UtcMillis(1_560_161_086_000));
        fix.coordinates = Some((54.6962, 25.2694));
        fix.altitude = Some(110.0);
        fix.speed = Some(52.0);
        fix.course = Some(90.0);
        fix.satellites = Some(7);
        fix.valid = true;
        batch.push_fix(fix);
        batch.push_attr(Attr::Ignition, AttrValue::Bool(true));
        batch.push_attr(Attr::DriverId, AttrValue::Hex64(0x0102));
        batch.push_io(IoKey::Id(239), IoValue::Uint(1));
        batch.push_io(IoKey::Id(10007), IoValue::Bytes(Span::new(0..2)));
        batch.push_io(IoKey::Name(Span::new(2..6)), IoValue::Float(1.5));
        batch.push_fix(Fix::at(UtcMillis(1_560_161_086_500)));
        let json: Vec<String> = batch.iter().map(|p| serde_json::to_string(&p).unwrap_or_default()).collect();
        assert_eq!(
            json[0],
            r#"{"device":"356307042441013","protocol":"teltonika","time":"2019-06-10T10:04:46Z","lat":54.6962,"lon":25.2694,"altitude":110,"speed":52,"course":90,"satellites":7,"valid":true,"attrs":{"ignition":true,"driver_id":"0000000000000102"},"io":{"239":1,"10007":"0a1b","name":1.5}}"#
        );
        assert_eq!(
            json[1],
            r#"{"device":"356307042441013","protocol":"teltonika","time":"2019-06-10T10:04:46.500Z","valid":false,"attrs":{},"io":{}}"#
        );
    }

    #[test]
    fn rollback_drops_a_partial_record() {
        let mut batch = Batch::new("teltonika", None, Bytes::new());
        batch.push_fix(Fix::at(UtcMillis(0)));
        batch.push_io(IoKey::Id(1), IoValue::Uint(1));
        let mark = batch.mark();
        batch.push_fix(Fix::at(UtcMillis(1)));
        batch.push_io(IoKey::Id(2), IoValue::Uint(2));
        batch.rollback(mark);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.get(0).io().len(), 1);
    }

    #[test]
    fn formats_every_u16() {
        let mut buf = [0u8; 5];
        for v in [0u16, 7, 10, 239, 10007, u16::MAX] {
            assert_eq!(format_u16(&mut buf, v), v.to_string());
        }
    }
}
