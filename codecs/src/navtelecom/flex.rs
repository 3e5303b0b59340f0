//! FLEX: the records whose layout the device announces in `*>FLEX`.
//!
//! The negotiation names a protocol and structure version (0x0A FLEX 1.0, 0x14 FLEX 2.0)
//! and a bitfield: bit `i` (the most significant bit of the first byte is field 0) says
//! whether field `i` is in every record. The fields follow one another in field order,
//! each of the size in [`FIELD_SIZES`]; a record is their concatenation, so the
//! negotiated bitfield is the only way to find where a record ends.
//!
//! | field (from 0) | value | becomes |
//! |---|---|---|
//! | 0, 1, 2 | record index u32, event code u16, event time u32 | `io` |
//! | 3 | armed state: bit 0 armed, bit 1 alarm | `armed`, `alarm` general |
//! | 7 | navigation: bit 1 valid fix, bits 2-7 satellites | fix |
//! | 8 | time u32, seconds since 1970 UTC | fix time |
//! | 9, 10 | latitude, longitude i32 in 1/600000 degree | fix |
//! | 11 | altitude i32 in 0.1 m | fix |
//! | 12, 13 | speed f32 km/h, course u16 degrees | fix |
//! | 14, 15 | odometer, trip distance f32 km | `odometer`, `trip_odometer` (m) |
//! | 18, 19 | supply, battery u16 mV | `power_voltage`, `battery_voltage` |
//! | 20..27 | analog inputs u16 mV | `ain1`..`ain8` |
//! | 28 | inputs 1-8 | `din1`..`din8` |
//! | 30 | outputs 1-8 | `dout1`..`dout4` |
//! | 36 | engine hours u32 seconds | `engine_hours` |
//! | 44..47 | temperatures i8 °C (-128: no sensor) | `temp1`..`temp4` |
//! | 68 | CAN speed u8 km/h | `obd_speed` |
//! | 70 | HDOP, PDOP u8 in 0.1 (FLEX 2.0) | `hdop`, `pdop` |
//!
//! Every field is also kept raw in `io` under its number counted from 1, as
//! Navtelecom's documents count them (`"19"`: the supply voltage in mV): integers of 1, 2
//! and 4 bytes as numbers (floats as numbers), longer fields as hex. CAN fields (fuel,
//! mileage, axle loads) stay raw: their scales vary by CAN profile.

use crate::attrs::Attr;
use crate::kit::{self, Parsed};
use crate::out::Out;
use crate::position::{AttrValue, IoKey, IoValue};

/// The size in bytes of each FLEX 1.0 (fields 0-68) and FLEX 2.0 (69-121) field.
pub const FIELD_SIZES: [u8; 122] = [
    4, 2, 4, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 2, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 4, 4, 2, 2, 4, 2,
    2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 4, 2, 1, 4, 2, 2, 2, 2, 2, 1, 1, 1, 2, 4, 2, 1, // FLEX 2.0:
    8, 2, 1, 16, 4, 2, 4, 37, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 6, 12, 24, 48, 1, 1, 1, 1, 4, 4, 1, 4, 2,
    6, 2, 6, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 1,
];

/// FLEX 1.0's version byte.
pub const FLEX_10: u8 = 0x0A;
/// FLEX 2.0's version byte.
pub const FLEX_20: u8 = 0x14;

/// Fields whose value is a 32-bit float.
const FLOATS: [usize; 3] = [12, 14, 15];
/// Fields whose value is signed.
const SIGNED: [usize; 11] = [9, 10, 11, 44, 45, 46, 47, 48, 49, 50, 51];

/// A negotiated record layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The protocol version the server accepted.
    pub version: u8,
    /// The structure version the server accepted.
    pub structure: u8,
    /// The fields in every record, in order.
    pub fields: Vec<u8>,
    /// Bytes per record.
    pub size: usize,
}

/// What a `*>FLEX` negotiation (its data after `*>FLEX`) comes to: the layout the
/// session decodes with and the versions it answers with, or why it cannot be read.
pub fn negotiate(data: &[u8]) -> Result<Layout, String> {
    let [0xB0, version, structure, count, bitfield @ ..] = data else {
        return Err(format!("FLEX negotiation of {} bytes without protocol byte 0xB0 and versions", data.len()));
    };
    let count = usize::from(*count);
    if bitfield.len() < count.div_ceil(8) {
        return Err(format!("FLEX bitfield of {count} fields in {} bytes", bitfield.len()));
    }
    let known = [FLEX_10, FLEX_20];
    let (version, structure) =
        if known.contains(version) && known.contains(structure) { (*version, *structure) } else { (FLEX_20, FLEX_20) };
    let set = |i: usize| bitfield[i / 8] & (0x80 >> (i % 8)) != 0;
    // Fields past FLEX 2.0's have no size we know: the answer offers FLEX 2.0, whose
    // devices send none of them.
    let fields: Vec<u8> = (0..count.min(FIELD_SIZES.len())).filter(|&i| set(i)).map(|i| i as u8).collect();
    let size = fields.iter().map(|&i| usize::from(FIELD_SIZES[usize::from(i)])).sum();
    Ok(Layout { version, structure, fields, size })
}

/// The bitfield of `fields` as a device sends it, `count` fields long.
pub fn bitfield(fields: &[u8], count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count.div_ceil(8)];
    for &field in fields {
        bytes[usize::from(field) / 8] |= 0x80 >> (field % 8);
    }
    bytes
}

/// The CRC-8 of a FLEX message and of an EGTS header (polynomial 0x31, initial 0xFF).
pub use crate::kit::crc8;

/// Field names: their numbers from 1, as Navtelecom's documents count them.
fn key(field: usize) -> IoKey {
    IoKey::Id(field as u16 + 1)
}

const AIN: [Attr; 8] = [Attr::Ain1, Attr::Ain2, Attr::Ain3, Attr::Ain4, Attr::Ain5, Attr::Ain6, Attr::Ain7, Attr::Ain8];
const DIN: [Attr; 8] = [Attr::Din1, Attr::Din2, Attr::Din3, Attr::Din4, Attr::Din5, Attr::Din6, Attr::Din7, Attr::Din8];
const DOUT: [Attr; 4] = [Attr::Dout1, Attr::Dout2, Attr::Dout3, Attr::Dout4];
const TEMP: [Attr; 4] = [Attr::Temp1, Attr::Temp2, Attr::Temp3, Attr::Temp4];

/// One record laid out by `layout`, written into `out`; its index (field 0) when it
/// has one.
pub fn record<'a>(out: &mut Out<'_>, layout: &Layout, mut input: &'a [u8]) -> Parsed<'a, Option<u32>> {
    let mut index = None;
    for &field in &layout.fields {
        let field = usize::from(field);
        let (rest, value) = kit::take(usize::from(FIELD_SIZES[field]))(input)?;
        input = rest;
        let unsigned = value.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let float = || super::ntcb::float(value);
        let signed = match value.len() {
            1 => i64::from(value[0] as i8),
            2 => i64::from(i16::from_le_bytes([value[0], value[1]])),
            _ => i64::from(unsigned as u32 as i32),
        };
        match value.len() {
            _ if FLOATS.contains(&field) => match float() {
                Some(number) => out.io_value(key(field), IoValue::Float(number)),
                None => {
                    let span = out.span(value);
                    out.io_value(key(field), IoValue::Bytes(span));
                }
            },
            _ if SIGNED.contains(&field) => out.io_value(key(field), IoValue::Int(signed)),
            1 | 2 | 4 => out.io_value(key(field), IoValue::Uint(unsigned)),
            _ => {
                let span = out.span(value);
                out.io_value(key(field), IoValue::Bytes(span));
            }
        }
        match field {
            0 => index = Some(unsigned as u32),
            3 => {
                out.attr(Attr::Armed, AttrValue::Bool(unsigned & 1 != 0));
                if unsigned & 2 != 0 {
                    out.set_alarm("general");
                }
            }
            7 => {
                out.fix().valid = unsigned & 0x02 != 0;
                out.satellites((unsigned >> 2) as u16);
            }
            8 => out.epoch_time(unsigned as u32),
            9 | 10 => {
                let degrees = signed as f64 / 600_000.0;
                let fix = out.fix();
                let (lat, lon) = fix.coordinates.unwrap_or((0.0, 0.0));
                fix.coordinates = Some(if field == 9 { (degrees, lon) } else { (lat, degrees) });
            }
            11 => out.altitude(signed as f64 / 10.0),
            12 => out.fix().speed = float(),
            13 => out.fix().course = Some(unsigned as f64),
            14 | 15 => {
                if let Some(km) = float() {
                    let attr = if field == 14 { Attr::Odometer } else { Attr::TripOdometer };
                    out.attr(attr, AttrValue::Float((km * 1000.0).round()));
                }
            }
            18 => out.attr(Attr::PowerVoltage, AttrValue::Float(unsigned as f64 / 1000.0)),
            19 => out.attr(Attr::BatteryVoltage, AttrValue::Float(unsigned as f64 / 1000.0)),
            20..=27 => out.attr(AIN[field - 20], AttrValue::Float(unsigned as f64 / 1000.0)),
            28 => {
                for (bit, attr) in DIN.iter().enumerate() {
                    out.attr(*attr, AttrValue::Bool(unsigned & (1 << bit) != 0));
                }
            }
            30 => {
                for (bit, attr) in DOUT.iter().enumerate() {
                    out.attr(*attr, AttrValue::Bool(unsigned & (1 << bit) != 0));
                }
            }
            36 => out.attr(Attr::EngineHours, AttrValue::Float(unsigned as f64 / 3600.0)),
            44..=47 if signed != -128 => out.attr(TEMP[field - 44], AttrValue::Int(signed)),
            68 => out.attr(Attr::ObdSpeed, AttrValue::Int(signed & 0xFF)),
            70 => {
                out.attr(Attr::Hdop, AttrValue::Float(f64::from(value[0]) / 10.0));
                out.attr(Attr::Pdop, AttrValue::Float(f64::from(value[1]) / 10.0));
            }
            _ => {}
        }
    }
    Ok((input, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_negotiation_gives_its_layout() {
        // Traccar's FLEX 1.0 capture: 69 fields announced, 73 bytes a record.
        let data = [0xB0, 0x0A, 0x0A, 0x45, 0xFF, 0xFF, 0x30, 0x0A, 0x08, 0x08, 0x0F, 0x83, 0x88];
        let layout = negotiate(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((layout.version, layout.structure, layout.size), (0x0A, 0x0A, 73));
        assert_eq!(bitfield(&layout.fields, 69), data[4..]);
        // Versions the server does not know are answered with FLEX 2.0.
        let unknown = negotiate(&[0xB0, 0x1E, 0x1E, 0x08, 0x80]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((unknown.version, unknown.structure, unknown.fields), (0x14, 0x14, vec![0]));
        assert!(negotiate(&[0xB1, 0x0A, 0x0A, 0x08, 0x80]).is_err());
        assert!(negotiate(&[0xB0, 0x0A, 0x0A, 0x45, 0xFF]).is_err());
        assert_eq!(crc8(b"123456789"), 0xF7);
        // What bounds a FLEX message (the session checks no other limit for them).
        assert_eq!(FIELD_SIZES.iter().map(|&s| usize::from(s)).sum::<usize>(), 403);
    }
}
