//! NTCB: the Navtelecom envelope and the fixed-layout records of its binary formats.
//!
//! ```text
//! envelope: "@NTC"  receiver:u32 LE  sender:u32 LE  n:u16 LE  data_xor:u8  header_xor:u8  data[n]
//!           (header_xor: XOR of the 15 bytes before it; data_xor: XOR of the data)
//! *>T  format record                  answered *<T index:u32
//! *>A  count:u8 (format record)*count answered *<A count
//! ```
//! A record's format (its first byte, or a little-endian u16 when that byte is 0) fixes
//! its layout: F1.0, F2.0, F3.0, F4.0, F5.0, F5.1, F5.2 and F6.0, laid out in
//! [`record`].

use crate::attrs::Attr;
use crate::kit::{self, Parsed};
use crate::out::Out;
use crate::position::{AttrValue, IoKey, IoValue};
use crate::time::UtcMillis;

/// The envelope's length before the data.
pub const HEADER_LEN: usize = 16;
/// The prefix devices send (any four bytes are taken and echoed).
pub const PREFIX: &[u8; 4] = b"@NTC";

/// XOR of every byte.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// An envelope's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The prefix as sent (`@NTC`).
    pub prefix: [u8; 4],
    /// Who the message is for.
    pub receiver: u32,
    /// Who sent it.
    pub sender: u32,
    /// The data's length.
    pub len: u16,
    /// XOR of the data.
    pub data_xor: u8,
    /// XOR of the header's first 15 bytes.
    pub header_xor: u8,
}

/// Reads the header at the front of `buf` (at least [`HEADER_LEN`] bytes).
pub fn header(buf: &[u8]) -> Header {
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    Header {
        prefix: [buf[0], buf[1], buf[2], buf[3]],
        receiver: word(4),
        sender: word(8),
        len: u16::from_le_bytes([buf[12], buf[13]]),
        data_xor: buf[14],
        header_xor: buf[15],
    }
}

/// A whole envelope around `data`.
pub fn envelope(prefix: &[u8; 4], receiver: u32, sender: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&receiver.to_le_bytes());
    out.extend_from_slice(&sender.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.push(xor(data));
    out.push(xor(&out));
    out.extend_from_slice(data);
    out
}

/// Record formats.
pub mod format {
    /// F1.0.
    pub const F10: u16 = 0x01;
    /// F2.0.
    pub const F20: u16 = 0x02;
    /// F3.0.
    pub const F30: u16 = 0x03;
    /// F4.0.
    pub const F40: u16 = 0x04;
    /// F5.0.
    pub const F50: u16 = 0x05;
    /// F5.1.
    pub const F51: u16 = 0x15;
    /// F5.2.
    pub const F52: u16 = 0x25;
    /// F6.0.
    pub const F60: u16 = 0x06;
}

use format::*;

fn any(format: u16, of: &[u16]) -> bool {
    of.contains(&format)
}

const DIN: [Attr; 8] = [Attr::Din1, Attr::Din2, Attr::Din3, Attr::Din4, Attr::Din5, Attr::Din6, Attr::Din7, Attr::Din8];
const DOUT: [Attr; 4] = [Attr::Dout1, Attr::Dout2, Attr::Dout3, Attr::Dout4];
const TEMP: [Attr; 4] = [Attr::Temp1, Attr::Temp2, Attr::Temp3, Attr::Temp4];

/// Bits of `value` as the attributes `attrs`, bit 0 first.
fn bits(out: &mut Out<'_>, attrs: &[Attr], value: u64) {
    for (bit, attr) in attrs.iter().enumerate() {
        out.attr(*attr, AttrValue::Bool(value & (1 << bit) != 0));
    }
}

/// A temperature sensor's reading: -128 says there is no sensor.
fn temperature(out: &mut Out<'_>, attr: Attr, key: &'static str, value: i8) {
    out.io_value(IoKey::Static(key), IoValue::Int(i64::from(value)));
    if value != i8::MIN {
        out.attr(attr, AttrValue::Int(i64::from(value)));
    }
}

/// A little-endian 32-bit float as the decimal the device meant: the shortest decimal
/// that reads back as the same float (47.5964, not 47.59640121459961); `None` for a NaN
/// or an infinity, which no measurement is.
pub fn float(bytes: &[u8]) -> Option<f64> {
    let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    value.is_finite().then(|| shortest(value))
}

/// The shortest decimal that reads back as `value`, as an f64: the closest decimal of
/// 1, 2, ... significant digits that rounds to the same f32 (nine always do). No
/// allocation for the magnitudes devices send: formatting and parsing text cost more
/// than the rest of a record (BENCHMARKS.md).
fn shortest(value: f32) -> f64 {
    let wide = f64::from(value);
    if wide == 0.0 {
        return wide;
    }
    let magnitude = wide.abs().log10().floor() as i32;
    for digits in 1..=9 {
        let scale = digits - 1 - magnitude;
        // Powers of ten up to 10^22 are exact in f64, so the division rounds once.
        let rounded = match scale {
            0..=22 => (wide * 10f64.powi(scale)).round() / 10f64.powi(scale),
            -22..0 => (wide / 10f64.powi(-scale)).round() * 10f64.powi(-scale),
            // Beyond the exact powers (no speed or distance is): through text.
            _ => return value.to_string().parse().unwrap_or(wide),
        };
        if rounded as f32 == value {
            return rounded;
        }
    }
    wide
}

/// One record of a binary format, written into `out`; the record's index (for the
/// `*<T` answer).
pub fn record<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, u32> {
    let (rest, first) = kit::be_u8(input)?;
    let (rest, format) = if first == 0 { kit::le_u16(input)? } else { (rest, u16::from(first)) };
    if !any(format, &[F10, F20, F30, F40, F50, F51, F52, F60]) {
        return kit::invalid(input, format!("record format 0x{format:02X} is none of F1.0-F6.0"));
    }
    out.io("format", u64::from(format));
    let (rest, (index, event, _event_time)) =
        nom::Parser::parse_complete(&mut (kit::le_u32, kit::le_u16, kit::array::<6>), rest)?;
    out.io("index", u64::from(index));
    out.io("event", u64::from(event));
    let (mut rest, [armed, status, rssi]) = kit::array::<3>(rest)?;
    out.io("armed", u64::from(armed));
    out.io("status", u64::from(status));
    out.io("rssi", u64::from(rssi));
    let (armed_bit, alarm_bit) =
        if format == F60 { (armed & 1 != 0, armed & 2 != 0) } else { (armed & 0x7F != 0, armed & 0x80 != 0) };
    out.attr(Attr::Armed, AttrValue::Bool(armed_bit));
    if alarm_bit {
        out.set_alarm("general");
    }
    if any(format, &[F10, F20, F30]) {
        let (r, outputs) = kit::le_u16(rest)?;
        out.io("outputs", u64::from(outputs));
        bits(out, &DOUT, u64::from(outputs));
        rest = r;
    } else if any(format, &[F50, F51, F52]) {
        let (r, field) = kit::be_u8(rest)?;
        out.io("outputs", u64::from(field & 0x03));
        bits(out, &DOUT[..2], u64::from(field));
        out.satellites(u16::from(field >> 2));
        rest = r;
    } else {
        let (r, outputs) = kit::be_u8(rest)?;
        out.io("outputs", u64::from(outputs & 0x0F));
        bits(out, &DOUT, u64::from(outputs));
        rest = r;
    }
    if any(format, &[F10, F20, F30, F40]) {
        let (r, inputs) = kit::le_u16(rest)?;
        out.io("inputs", u64::from(inputs));
        // F4.0 packs counters into the upper bits: only four are plain inputs.
        bits(out, if format == F40 { &DIN[..4] } else { &DIN }, u64::from(inputs));
        rest = r;
    } else {
        let (r, inputs) = kit::be_u8(rest)?;
        out.io("inputs", u64::from(inputs));
        bits(out, &DIN, u64::from(inputs));
        rest = r;
    }
    let (mut rest, (power, battery)) = nom::Parser::parse_complete(&mut (kit::le_u16, kit::le_u16), rest)?;
    out.io("power", u64::from(power));
    out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(power) / 1000.0));
    out.io("battery", u64::from(battery));
    out.attr(Attr::BatteryVoltage, AttrValue::Float(f64::from(battery) / 1000.0));
    if any(format, &[F10, F20, F30]) {
        let (r, temp) = kit::le_i16(rest)?;
        out.io_value(IoKey::Static("temp"), IoValue::Int(i64::from(temp)));
        out.attr(Attr::Temp1, AttrValue::Int(i64::from(temp)));
        rest = r;
    }
    if any(format, &[F10, F20, F50, F51, F52, F60]) {
        let (r, (ain1, ain2)) = nom::Parser::parse_complete(&mut (kit::le_u16, kit::le_u16), rest)?;
        out.io("ain1", u64::from(ain1));
        out.io("ain2", u64::from(ain2));
        rest = r;
        if format == F60 {
            let (r, ain3) = kit::le_u16(rest)?;
            out.io("ain3", u64::from(ain3));
            rest = r;
        }
    }
    if any(format, &[F20, F50, F51, F52, F60]) {
        let (r, (counter1, counter2)) = nom::Parser::parse_complete(&mut (kit::le_u32, kit::le_u32), rest)?;
        out.io("counter1", u64::from(counter1));
        out.io("counter2", u64::from(counter2));
        rest = r;
    }
    if format == F60 {
        // Fuel level sensors (28 bytes, kept whole), four temperatures, axle load, rpm.
        let (r, fuel) = kit::take(28)(rest)?;
        out.io_bytes("fuel_sensors", fuel);
        let (r, temps) = kit::array::<4>(r)?;
        for (i, (attr, key)) in TEMP.iter().zip(["temp1", "temp2", "temp3", "temp4"]).enumerate() {
            temperature(out, *attr, key, temps[i] as i8);
        }
        let (r, (axle, rpm)) = nom::Parser::parse_complete(&mut (kit::le_i32, kit::le_u16), r)?;
        out.io_value(IoKey::Static("axle_load"), IoValue::Int(i64::from(axle)));
        out.io("rpm", u64::from(rpm));
        out.attr(Attr::Rpm, AttrValue::Int(i64::from(rpm)));
        rest = r;
    }
    if any(format, &[F20, F50, F51, F52, F60]) {
        let (r, navigation) = kit::be_u8(rest)?;
        out.fix().valid = navigation & 0x02 != 0;
        if format == F60 {
            out.satellites(u16::from(navigation >> 2));
        }
        // Hour, minute, second, day, month from 0, year of the century.
        let (r, [hour, minute, second, day, month, year]) = kit::array::<6>(r)?;
        let time = UtcMillis::from_civil(
            2000 + i64::from(year),
            u32::from(month) + 1,
            u32::from(day),
            u32::from(hour),
            u32::from(minute),
            u32::from(second),
        );
        out.set_time(time);
        let r = if format == F60 {
            let (r, (lat, lon, altitude)) =
                nom::Parser::parse_complete(&mut (kit::le_i32, kit::le_i32, kit::le_i32), r)?;
            out.fix().coordinates = Some((f64::from(lat) / 600_000.0, f64::from(lon) / 600_000.0));
            out.altitude(f64::from(altitude) / 10.0);
            r
        } else {
            // Radians, as 32-bit floats.
            let (r, (lat, lon)) = nom::Parser::parse_complete(&mut (kit::array::<4>, kit::array::<4>), r)?;
            if let (Some(lat), Some(lon)) = (float(&lat), float(&lon)) {
                out.fix().coordinates = Some((lat.to_degrees(), lon.to_degrees()));
            }
            r
        };
        let (r, (speed, course, odometer, distance, _segments)) = nom::Parser::parse_complete(
            &mut (kit::array::<4>, kit::le_u16, kit::array::<4>, kit::array::<4>, kit::array::<4>),
            r,
        )?;
        out.fix().speed = float(&speed);
        out.fix().course = Some(f64::from(course));
        if let Some(km) = float(&odometer) {
            out.attr(Attr::Odometer, AttrValue::Float((km * 1000.0).round()));
        }
        if let Some(km) = float(&distance) {
            out.attr(Attr::TripOdometer, AttrValue::Float((km * 1000.0).round()));
        }
        rest = r;
    }
    if any(format, &[F51, F52]) {
        let (r, other) = kit::take(15)(rest)?;
        out.io_bytes("sensors", other);
        rest = r;
    }
    if any(format, &[F40, F52]) {
        let (r, temps) = kit::array::<4>(rest)?;
        for (i, (attr, key)) in TEMP.iter().zip(["temp1", "temp2", "temp3", "temp4"]).enumerate() {
            temperature(out, *attr, key, temps[i] as i8);
        }
        rest = r;
    }
    Ok((rest, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_the_decimals_devices_meant() {
        for value in [47.5964f32, 0.1, 1e-7, 286.7991, 3.4e38, -12.5, 1.0, 100.0, 16_777_216.0, 2.5e-3] {
            let expected: f64 = value.to_string().parse().unwrap_or_default();
            assert_eq!(shortest(value), expected, "{value}");
        }
        // Every float whose bits step through the range reads as its shortest decimal.
        for bits in (0u32..0x7F80_0000).step_by(7_919) {
            let value = f32::from_bits(bits);
            let expected: f64 = value.to_string().parse().unwrap_or_default();
            assert_eq!(shortest(value), expected, "{value:e} ({bits:#x})");
        }
    }

    #[test]
    fn envelopes_carry_both_checksums() {
        let message = envelope(PREFIX, 1, 123, b"*>S:861785005205079");
        assert_eq!(
            crate::hex::HexDisplay(&message).to_string(),
            "404e5443010000007b000000130044342a3e533a383631373835303035323035303739"
        );
        let read = header(&message);
        assert_eq!((read.receiver, read.sender, read.len), (1, 123, 19));
        assert_eq!(read.header_xor, xor(&message[..15]));
    }
}
