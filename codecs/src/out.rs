//! Writing one position of a frame into a [`Batch`]: the fix first, then attributes in the
//! shared vocabulary and raw values in `io`, with text and byte values as spans of the
//! frame (no copies). Binary codecs whose records are built field by field (GT06, JT/T
//! 808) decode through it.

use bytes::Bytes;

use crate::attrs::Attr;
use crate::kit;
use crate::position::{AttrValue, Batch, Fix, IoKey, IoValue, Span};
use crate::time::UtcMillis;

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
