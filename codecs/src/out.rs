//! Writing one position of a frame into a [`Batch`]: the fix first, then attributes in the
//! shared vocabulary and raw values in `io`, with text and byte values as spans of the
//! frame (no copies). Binary codecs whose records are built field by field (GT06, JT/T
//! 808) decode through it.

use bytes::Bytes;

use crate::attrs::Attr;
use crate::kit;
use crate::position::{AttrValue, Batch, Fix, IoKey, IoValue, Span};
use crate::time::UtcMillis;

/// `io` keys of values a protocol names by a byte id (JT/T 808 items, Galileosky tags):
/// `"0x00"` to `"0xFF"`.
pub static HEX_IDS: [&str; 256] = [
    "0x00", "0x01", "0x02", "0x03", "0x04", "0x05", "0x06", "0x07", "0x08", "0x09", "0x0A", "0x0B", "0x0C", "0x0D",
    "0x0E", "0x0F", "0x10", "0x11", "0x12", "0x13", "0x14", "0x15", "0x16", "0x17", "0x18", "0x19", "0x1A", "0x1B",
    "0x1C", "0x1D", "0x1E", "0x1F", "0x20", "0x21", "0x22", "0x23", "0x24", "0x25", "0x26", "0x27", "0x28", "0x29",
    "0x2A", "0x2B", "0x2C", "0x2D", "0x2E", "0x2F", "0x30", "0x31", "0x32", "0x33", "0x34", "0x35", "0x36", "0x37",
    "0x38", "0x39", "0x3A", "0x3B", "0x3C", "0x3D", "0x3E", "0x3F", "0x40", "0x41", "0x42", "0x43", "0x44", "0x45",
    "0x46", "0x47", "0x48", "0x49", "0x4A", "0x4B", "0x4C", "0x4D", "0x4E", "0x4F", "0x50", "0x51", "0x52", "0x53",
    "0x54", "0x55", "0x56", "0x57", "0x58", "0x59", "0x5A", "0x5B", "0x5C", "0x5D", "0x5E", "0x5F", "0x60", "0x61",
    "0x62", "0x63", "0x64", "0x65", "0x66", "0x67", "0x68", "0x69", "0x6A", "0x6B", "0x6C", "0x6D", "0x6E", "0x6F",
    "0x70", "0x71", "0x72", "0x73", "0x74", "0x75", "0x76", "0x77", "0x78", "0x79", "0x7A", "0x7B", "0x7C", "0x7D",
    "0x7E", "0x7F", "0x80", "0x81", "0x82", "0x83", "0x84", "0x85", "0x86", "0x87", "0x88", "0x89", "0x8A", "0x8B",
    "0x8C", "0x8D", "0x8E", "0x8F", "0x90", "0x91", "0x92", "0x93", "0x94", "0x95", "0x96", "0x97", "0x98", "0x99",
    "0x9A", "0x9B", "0x9C", "0x9D", "0x9E", "0x9F", "0xA0", "0xA1", "0xA2", "0xA3", "0xA4", "0xA5", "0xA6", "0xA7",
    "0xA8", "0xA9", "0xAA", "0xAB", "0xAC", "0xAD", "0xAE", "0xAF", "0xB0", "0xB1", "0xB2", "0xB3", "0xB4", "0xB5",
    "0xB6", "0xB7", "0xB8", "0xB9", "0xBA", "0xBB", "0xBC", "0xBD", "0xBE", "0xBF", "0xC0", "0xC1", "0xC2", "0xC3",
    "0xC4", "0xC5", "0xC6", "0xC7", "0xC8", "0xC9", "0xCA", "0xCB", "0xCC", "0xCD", "0xCE", "0xCF", "0xD0", "0xD1",
    "0xD2", "0xD3", "0xD4", "0xD5", "0xD6", "0xD7", "0xD8", "0xD9", "0xDA", "0xDB", "0xDC", "0xDD", "0xDE", "0xDF",
    "0xE0", "0xE1", "0xE2", "0xE3", "0xE4", "0xE5", "0xE6", "0xE7", "0xE8", "0xE9", "0xEA", "0xEB", "0xEC", "0xED",
    "0xEE", "0xEF", "0xF0", "0xF1", "0xF2", "0xF3", "0xF4", "0xF5", "0xF6", "0xF7", "0xF8", "0xF9", "0xFA", "0xFB",
    "0xFC", "0xFD", "0xFE", "0xFF",
];

/// One position being written; created with [`Out::new`], finished when dropped.
pub struct Out<'b> {
    batch: &'b mut Batch,
    frame: &'b Bytes,
}

impl<'b> Out<'b> {
    /// Starts a position without time or coordinates (the gateway's receive time stands
    /// in for a missing time). `frame` must be the batch's raw bytes: spans index it.
    pub fn new(batch: &'b mut Batch, frame: &'b Bytes) -> Self {
        batch.push_fix(Fix::untimed(None));
        Out { batch, frame }
    }

    /// The fix being written.
    pub fn fix(&mut self) -> &mut Fix {
        // `new` pushed the fix this writer fills.
        self.batch.last_fix_mut().expect("Out::new pushed a fix")
    }

    /// Sets the position's time.
    pub fn set_time(&mut self, time: Option<UtcMillis>) {
        self.fix().time = time;
    }

    /// The position's time as seconds since the epoch.
    pub fn epoch_time(&mut self, seconds: u32) {
        self.set_time(Some(UtcMillis(i64::from(seconds) * 1000)));
    }

    /// Sets the altitude, in metres.
    pub fn altitude(&mut self, metres: f64) {
        self.fix().altitude = Some(metres);
    }

    /// Sets the satellites in use.
    pub fn satellites(&mut self, satellites: u16) {
        self.fix().satellites = Some(satellites);
    }

    /// A raw unsigned value.
    pub fn io(&mut self, name: &'static str, value: u64) {
        self.batch.push_io(IoKey::Static(name), IoValue::Uint(value));
    }

    /// A raw value under any key.
    pub fn io_value(&mut self, key: IoKey, value: IoValue) {
        self.batch.push_io(key, value);
    }

    /// A raw byte string of the frame.
    pub fn io_bytes(&mut self, name: &'static str, part: &[u8]) {
        let span = self.span(part);
        self.batch.push_io(IoKey::Static(name), IoValue::Bytes(span));
    }

    /// A raw text of the frame (kept as hex when it is not UTF-8).
    pub fn io_text(&mut self, name: &'static str, part: &[u8]) {
        let value = self.text_value(part);
        self.batch.push_io(IoKey::Static(name), value);
    }

    /// A raw value named by text of the frame (OBD parameter ids).
    pub fn io_named_text(&mut self, name: &[u8], value: &[u8]) {
        let (key, value) = (self.span(name), self.span(value));
        self.batch.push_io(IoKey::Name(key), IoValue::Text(value));
    }

    /// Text of the frame as an io value: text when UTF-8, else its bytes.
    pub fn text_value(&self, part: &[u8]) -> IoValue {
        let span = self.span(part);
        if std::str::from_utf8(part).is_ok() { IoValue::Text(span) } else { IoValue::Bytes(span) }
    }

    /// A well-known attribute (a later field's value replaces an earlier one's: some
    /// protocols carry one value in two places).
    pub fn attr(&mut self, attr: Attr, value: AttrValue) {
        self.batch.set_attr(attr, value);
    }

    /// A well-known attribute whose value is text of the frame (dropped when not UTF-8).
    pub fn attr_text(&mut self, attr: Attr, part: &[u8]) {
        if std::str::from_utf8(part).is_ok() {
            let span = self.span(part);
            self.batch.set_attr(attr, AttrValue::Text(span));
        }
    }

    /// A well-known attribute whose value is bytes of the frame, as uppercase hex.
    pub fn attr_hex(&mut self, attr: Attr, part: &[u8]) {
        let span = self.span(part);
        self.batch.set_attr(attr, AttrValue::HexBytes(span));
    }

    /// A well-known attribute whose value is BCD bytes of the frame, as digits.
    pub fn attr_digits(&mut self, attr: Attr, part: &[u8]) {
        let span = self.span(part);
        self.batch.set_attr(attr, AttrValue::Digits(span));
    }

    /// Volts from hundredths, kept raw as `name` too.
    pub fn volts(&mut self, attr: Attr, name: &'static str, hundredths: u16) {
        self.io(name, u64::from(hundredths));
        self.attr(attr, AttrValue::Float(f64::from(hundredths) / 100.0));
    }

    /// Names the alarm (replacing one an earlier field set).
    pub fn set_alarm(&mut self, name: &'static str) {
        self.attr(Attr::Alarm, AttrValue::Name(name));
    }

    /// Bytes left after the layout: kept whole, so nothing the device sent is lost.
    pub fn rest(&mut self, rest: &[u8]) {
        if !rest.is_empty() {
            self.io_bytes("extra", rest);
        }
    }

    /// The span of `part`, a slice of the frame.
    pub fn span(&self, part: &[u8]) -> Span {
        let start = kit::position_of(self.frame, part);
        Span::new(start..start + part.len())
    }
}

#[cfg(test)]
mod tests {
    use super::HEX_IDS;

    #[test]
    fn every_byte_id_has_its_name() {
        for (id, name) in HEX_IDS.iter().enumerate() {
            assert_eq!(*name, format!("0x{id:02X}"));
        }
    }
}
