//! Galileosky tags: the length of each tag's value, how a packet's tags divide into
//! records, and what each tag means in the shared vocabulary.
//!
//! A packet is a run of `tag value` pairs without lengths: the table ([`length`]) is the
//! only way to find where a value ends, so a tag missing from it ends the packet's
//! decoding (the packet is refused; skipping it would misread every tag after it).
//! Three tags carry their own length: 0xE1 and 0xEA (one byte), 0xFE (two bytes,
//! little-endian).
//!
//! Every integer is little-endian. What becomes of each tag:
//!
//! | tag | value | becomes |
//! |---|---|---|
//! | 0x01 0x02 | hardware, firmware version | `io` |
//! | 0x03 | IMEI, 15 ASCII digits | the device's identifier |
//! | 0x04 | device id u16 | `io` (commands are addressed with it) |
//! | 0x10 | record number u16 | `io`; starts a record |
//! | 0x20 | time u32, seconds since 1970 UTC | fix time |
//! | 0x30 | validity (high nibble, 0 = valid) and satellites (low nibble); latitude, longitude i32 in 1e-6 degrees | fix |
//! | 0x33 | speed u16 in 0.1 km/h, course u16 in 0.1 degrees | fix |
//! | 0x34 | altitude i16, metres | fix |
//! | 0x35 | HDOP u8 in 0.1 | `hdop` |
//! | 0x41 0x42 | supply, battery voltage u16 mV | `power_voltage`, `battery_voltage` |
//! | 0x45 | outputs u16, bit 0 = output 1 | `dout1`..`dout4` |
//! | 0x46 | inputs u16, bit 0 = input 1 | `din1`..`din8` |
//! | 0x50..0x57 | analog inputs u16 mV | `ain1`..`ain8` |
//! | 0x70..0x73 | temperature sensors: id u8, i8 °C (-128: no sensor) | `temp1`..`temp4` |
//! | 0x90 | iButton key u32 | `driver_id` (decimal) |
//! | 0xC0 | CAN total fuel used u32 in 0.5 l | `fuel_used` |
//! | 0xC1 | CAN fuel level u8 in 0.4 %, coolant u8 °C + 40, rpm u16 in 0.125 | `fuel_level`, `coolant_temp`, `rpm` |
//! | 0xD4 | GPS odometer u32, metres | `odometer` |
//! | 0xE0 0xE1 | command number u32, command answer text | `io` (a packet of only these answers a command) |
//!
//! Every other tag (status 0x40, fuel level sensors 0x60..0x6F in raw counts, CAN
//! registers, user data, extended tags 0xFE) is kept raw in `io` under its id
//! (`"0x40"`): integers of up to 4 bytes as numbers, longer values as hex.

use crate::attrs::Attr;
use crate::kit::{self, Parsed};
use crate::out::{HEX_IDS, Out};
use crate::position::{AttrValue, IoKey, IoValue};
use crate::time::UtcMillis;

/// How long a tag's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// This many bytes.
    Fixed(u8),
    /// A one-byte length, then that many bytes.
    Counted8,
    /// A two-byte little-endian length, then that many bytes.
    Counted16,
    /// Not a tag of the protocol.
    Unknown,
}

/// The length of every tag's value (see the module's table).
pub const fn length(tag: u8) -> Length {
    match tag {
        0x01 | 0x02 | 0x35 | 0x43 | 0x88..=0x8C | 0xA0..=0xAF | 0xC4..=0xD2 | 0xD5 => Length::Fixed(1),
        0x04 | 0x10 | 0x34 | 0x40..=0x42 | 0x45 | 0x46 | 0x48 | 0x50..=0x59 | 0x60..=0x62 | 0x70..=0x77 => {
            Length::Fixed(2)
        }
        0xB0..=0xB9 | 0xD6..=0xDA => Length::Fixed(2),
        0x5D | 0x63..=0x6F | 0xFA => Length::Fixed(3),
        0x20 | 0x33 | 0x44 | 0x47 | 0x5A | 0x90 | 0xC0..=0xC3 | 0xD3 | 0xD4 | 0xDB..=0xE0 | 0xE2..=0xE9 => {
            Length::Fixed(4)
        }
        0xF0..=0xF9 => Length::Fixed(4),
        0x5B => Length::Fixed(7),
        0xFD => Length::Fixed(8),
        0x30 => Length::Fixed(9),
        0x03 => Length::Fixed(15),
        0x5C => Length::Fixed(68),
        0xE1 | 0xEA => Length::Counted8,
        0xFE => Length::Counted16,
        _ => Length::Unknown,
    }
}

/// IMEI.
pub const IMEI: u8 = 0x03;
/// Device id.
pub const DEVICE_ID: u8 = 0x04;
/// Record number: starts a record.
pub const RECORD: u8 = 0x10;
/// Command number.
pub const COMMAND_NUMBER: u8 = 0xE0;
/// Command text (to the device) or its answer (from it).
pub const COMMAND_TEXT: u8 = 0xE1;

/// Tags of the head packet (who the device is), which belong to no record of their own.
pub fn is_head(tag: u8) -> bool {
    matches!(tag, 0x01 | 0x02 | IMEI | DEVICE_ID)
}

/// One tag and its value (without its length field, for the counted ones).
pub fn tag(input: &[u8]) -> Parsed<'_, (u8, &[u8])> {
    let (rest, tag) = kit::be_u8(input)?;
    match value(tag)(rest) {
        Ok((rest, value)) => Ok((rest, (tag, value))),
        // Name the tag's own offset: its value's length is what is unknown.
        Err(nom::Err::Error(kit::Error { reason: kit::Reason::Invalid(why), .. })) => kit::invalid(input, why),
        Err(error) => Err(error),
    }
}

/// The value of `tag` at the front of the input (compressed records list their tags
/// apart from the values).
pub fn value(tag: u8) -> impl Fn(&[u8]) -> Parsed<'_, &[u8]> {
    move |input: &[u8]| match length(tag) {
        Length::Fixed(n) => kit::take(usize::from(n))(input),
        Length::Counted8 => kit::counted(input),
        Length::Counted16 => {
            let (rest, n) = kit::le_u16(input)?;
            kit::take(usize::from(n))(rest)
        }
        Length::Unknown => {
            kit::invalid(input, format!("unknown tag 0x{tag:02X}: its length is not in the protocol's table"))
        }
    }
}

/// Which tags a record has seen, to find where the next one starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    bits: [u64; 4],
    data: bool,
}

impl Seen {
    /// True when `tag` starts a new record after what was seen: the tag repeats, or it
    /// is the record number and the record already holds data.
    pub fn starts_record(&self, tag: u8) -> bool {
        let repeated = self.bits[usize::from(tag >> 6)] & (1 << (tag & 63)) != 0;
        repeated || (tag == RECORD && self.data)
    }

    /// Notes `tag`.
    pub fn add(&mut self, tag: u8) {
        self.bits[usize::from(tag >> 6)] |= 1 << (tag & 63);
        self.data |= !is_head(tag) && !matches!(tag, COMMAND_NUMBER | COMMAND_TEXT);
    }

    /// True when the record holds more than who the device is and a command answer.
    pub fn has_data(&self) -> bool {
        self.data
    }
}

fn le(value: &[u8]) -> u64 {
    value.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn le_u16(value: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([value[at], value[at + 1]])
}

/// Writes one tag of a record (the IMEI excepted: it is the device, not a value).
pub fn write(out: &mut Out<'_>, tag: u8, value: &[u8]) {
    let key = IoKey::Static(HEX_IDS[usize::from(tag)]);
    match tag {
        IMEI => {}
        0x20 => out.epoch_time(le(value) as u32),
        0x30 => {
            let flags = value[0];
            let lat = i32::from_le_bytes([value[1], value[2], value[3], value[4]]);
            let lon = i32::from_le_bytes([value[5], value[6], value[7], value[8]]);
            let fix = out.fix();
            fix.valid = flags >> 4 == 0;
            fix.satellites = Some(u16::from(flags & 0x0F));
            fix.coordinates = Some((kit::coordinates::from_1e6(lat.unsigned_abs(), lat < 0), {
                kit::coordinates::from_1e6(lon.unsigned_abs(), lon < 0)
            }));
            // The validity code says more than valid or not (2: coordinates from cells).
            out.io_value(key, IoValue::Uint(u64::from(flags >> 4)));
        }
        0x33 => {
            let fix = out.fix();
            fix.speed = Some(f64::from(le_u16(value, 0)) / 10.0);
            fix.course = Some(f64::from(le_u16(value, 2)) / 10.0);
        }
        0x34 => out.altitude(f64::from(i16::from_le_bytes([value[0], value[1]]))),
        0x43 => out.io_value(key, IoValue::Int(i64::from(value[0] as i8))),
        0xE1 => out.io_text(HEX_IDS[usize::from(tag)], value),
        _ if value.len() > 4 => out.io_bytes(HEX_IDS[usize::from(tag)], value),
        _ => {
            let raw = le(value);
            out.io_value(key, IoValue::Uint(raw));
            vocabulary(out, tag, value, raw);
        }
    }
}

/// The shared vocabulary's values of a tag already kept raw.
fn vocabulary(out: &mut Out<'_>, tag: u8, value: &[u8], raw: u64) {
    let volts = |mv: u64| AttrValue::Float(mv as f64 / 1000.0);
    match tag {
        0x35 => out.attr(Attr::Hdop, AttrValue::Float(raw as f64 / 10.0)),
        0x41 => out.attr(Attr::PowerVoltage, volts(raw)),
        0x42 => out.attr(Attr::BatteryVoltage, volts(raw)),
        0x45 => {
            for (bit, attr) in [Attr::Dout1, Attr::Dout2, Attr::Dout3, Attr::Dout4].into_iter().enumerate() {
                out.attr(attr, AttrValue::Bool(raw & (1 << bit) != 0));
            }
        }
        0x46 => {
            let inputs =
                [Attr::Din1, Attr::Din2, Attr::Din3, Attr::Din4, Attr::Din5, Attr::Din6, Attr::Din7, Attr::Din8];
            for (bit, attr) in inputs.into_iter().enumerate() {
                out.attr(attr, AttrValue::Bool(raw & (1 << bit) != 0));
            }
        }
        0x50..=0x57 => {
            const AIN: [Attr; 8] =
                [Attr::Ain1, Attr::Ain2, Attr::Ain3, Attr::Ain4, Attr::Ain5, Attr::Ain6, Attr::Ain7, Attr::Ain8];
            out.attr(AIN[usize::from(tag - 0x50)], volts(raw));
        }
        0x70..=0x73 => {
            const TEMP: [Attr; 4] = [Attr::Temp1, Attr::Temp2, Attr::Temp3, Attr::Temp4];
            let celsius = value[1] as i8;
            if celsius != i8::MIN {
                out.attr(TEMP[usize::from(tag - 0x70)], AttrValue::Int(i64::from(celsius)));
            }
        }
        0x90 if raw != 0 => out.attr(Attr::DriverId, AttrValue::Decimal(raw)),
        0xC0 => out.attr(Attr::FuelUsed, AttrValue::Float(raw as f64 / 2.0)),
        0xC1 => {
            out.attr(Attr::FuelLevel, AttrValue::Float(f64::from(value[0]) * 0.4));
            out.attr(Attr::CoolantTemp, AttrValue::Int(i64::from(value[1]) - 40));
            out.attr(Attr::Rpm, AttrValue::Float(f64::from(le_u16(value, 2)) * 0.125));
        }
        0xD4 => out.attr(Attr::Odometer, AttrValue::Float(raw as f64)),
        _ => {}
    }
}

/// A record's time as the device sent it, for the fallback of Iridium records.
pub fn time(value: &[u8]) -> UtcMillis {
    UtcMillis(le(value) as i64 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_fixed_and_counted_tags() {
        assert_eq!(tag(&[0x20, 1, 2, 3, 4, 9]), Ok((&[9][..], (0x20, &[1, 2, 3, 4][..]))));
        assert_eq!(tag(&[0xE1, 2, b'o', b'k']), Ok((&[][..], (0xE1, &b"ok"[..]))));
        assert_eq!(tag(&[0xFE, 3, 0, 1, 2, 3]), Ok((&[][..], (0xFE, &[1, 2, 3][..]))));
        assert_eq!(tag(&[0x89, 7]), Ok((&[][..], (0x89, &[7][..]))));
        let unknown = tag(&[0x00, 1]).map_err(kit::failure).expect_err("no length");
        assert!(matches!(unknown.reason, kit::Reason::Invalid(ref why) if why.contains("0x00")));
        assert!(tag(&[0x30, 1, 2]).is_err());
    }

    #[test]
    fn records_start_at_a_repeat_or_a_record_number_after_data() {
        let mut seen = Seen::default();
        for head in [0x01, 0x02, 0x03, 0x04] {
            assert!(!seen.starts_record(head));
            seen.add(head);
        }
        // The head packet's tags go with the first record.
        assert!(!seen.starts_record(RECORD));
        seen.add(RECORD);
        seen.add(0x20);
        assert!(seen.starts_record(0x20));
        assert!(seen.starts_record(RECORD));
        assert!(!seen.starts_record(0x30));
        assert!(seen.has_data());
    }
}
