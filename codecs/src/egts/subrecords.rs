//! EGTS subrecords: AUTH's terminal identity and TELEDATA's position and sensor data,
//! written into the shared vocabulary. Every field is little-endian.
//!
//! | subrecord | SRT | layout | becomes |
//! |---|---|---|---|
//! | `EGTS_SR_TERM_IDENTITY` | 1 | TID:u32 flags:u8 [HDID:u16] [IMEI:15] [IMSI:16] [LNGC:3] [NID:3] [BS:u16] [MSISDN:15] | the login |
//! | `EGTS_SR_POS_DATA` | 16 | NTM:u32 LAT:u32 LONG:u32 FLG:u8 SPD:u16 DIR:u8 ODM:u24 DIN:u8 SRC:u8 [ALT:u24] [SRCD:i16] | fix, `odometer`, `din1`..`din8`, `io.source`, `io.archive` (FLG bit 3, black box) |
//! | `EGTS_SR_EXT_POS_DATA` | 17 | flags:u8 [VDOP:u16] [HDOP:u16] [PDOP:u16] [SAT:u8 NS:u16] | `hdop`, `pdop`, satellites |
//! | `EGTS_SR_AD_SENSORS_DATA` | 18 | DIOE:u8 DOUT:u8 ASFE:u8 ADIO:u8 per DIOE bit, ANS:u24 per ASFE bit | `dout1`..`dout4`, `ain1`..`ain8` (mV) |
//! | `EGTS_SR_COUNTERS_DATA` | 19 | CFE:u8 CN:u24 per CFE bit | `io.counter1`.. |
//! | `EGTS_SR_STATE_DATA` | 21 | ST:u8 MPSV:u8 BBV:u8 IBV:u8 flags:u8 | `power_voltage`, `battery_voltage` (0.1 V) |
//! | `EGTS_SR_ABS_AN_SENS_DATA` | 24 | ASN:u8 ASV:u24 | `io.ans<N>` |
//! | `EGTS_SR_LIQUID_LEVEL_SENSOR` | 27 | flags:u8 MADDR:u16 LLSD:u32 (or the rest, raw, with RDF) | `io.lls<N>` |
//!
//! POS_DATA's time counts seconds from 2010-01-01 00:00:00 UTC; its latitude and longitude
//! are the magnitude over 90 (180) degrees scaled to u32, the hemispheres in FLG bits 5
//! and 6; speed is bits 0-13 of SPD in 0.1 km/h, the course DIR plus bit 15 of SPD as its
//! ninth bit; altitude (FLG bit 7) is negative when SPD bit 14 is set.

use crate::attrs::Attr;
use crate::kit::{self, Parsed};
use crate::out::Out;
use crate::position::{AttrValue, IoKey, IoValue};
use crate::time::UtcMillis;

/// Subrecord types.
pub mod srt {
    /// Record response.
    pub const RECORD_RESPONSE: u8 = 0;
    /// Terminal identity.
    pub const TERM_IDENTITY: u8 = 1;
    /// Module data.
    pub const MODULE_DATA: u8 = 2;
    /// Vehicle data.
    pub const VEHICLE_DATA: u8 = 3;
    /// Result code.
    pub const RESULT_CODE: u8 = 9;
    /// Position.
    pub const POS_DATA: u8 = 16;
    /// Extended position.
    pub const EXT_POS_DATA: u8 = 17;
    /// Digital and analog sensors.
    pub const AD_SENSORS_DATA: u8 = 18;
    /// Counters.
    pub const COUNTERS_DATA: u8 = 19;
    /// State.
    pub const STATE_DATA: u8 = 21;
    /// One analog sensor.
    pub const ABS_AN_SENS_DATA: u8 = 24;
    /// Fuel level sensor.
    pub const LIQUID_LEVEL_SENSOR: u8 = 27;
}

/// 2010-01-01 00:00:00 UTC, seconds since 1970: where EGTS times count from.
pub const EPOCH_2010: i64 = 1_262_304_000;

/// What a terminal says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermIdentity<'a> {
    /// Terminal id.
    pub terminal: u32,
    /// The flags byte.
    pub flags: u8,
    /// IMEI, when IMEIE is set.
    pub imei: Option<&'a [u8]>,
    /// IMSI, when IMSIE is set.
    pub imsi: Option<&'a [u8]>,
}

/// `EGTS_SR_TERM_IDENTITY`.
pub fn term_identity(input: &[u8]) -> Parsed<'_, TermIdentity<'_>> {
    let (rest, (terminal, flags)) = nom::Parser::parse_complete(&mut (kit::le_u32, kit::be_u8), input)?;
    let field = |rest, bit: u8, len: usize| -> Parsed<'_, Option<&[u8]>> {
        if flags & (1 << bit) != 0 { kit::take(len)(rest).map(|(r, v)| (r, Some(v))) } else { Ok((rest, None)) }
    };
    let (rest, _hdid) = field(rest, 0, 2)?;
    let (rest, imei) = field(rest, 1, 15)?;
    let (rest, imsi) = field(rest, 2, 16)?;
    let (rest, _language) = field(rest, 3, 3)?;
    let (rest, _network) = field(rest, 5, 3)?;
    let (rest, _buffer) = field(rest, 6, 2)?;
    let (rest, _msisdn) = field(rest, 7, 15)?;
    Ok((rest, TermIdentity { terminal, flags, imei, imsi }))
}

fn le24(bytes: &[u8]) -> u32 {
    u32::from(bytes[0]) | (u32::from(bytes[1]) << 8) | (u32::from(bytes[2]) << 16)
}

const DIN: [Attr; 8] = [Attr::Din1, Attr::Din2, Attr::Din3, Attr::Din4, Attr::Din5, Attr::Din6, Attr::Din7, Attr::Din8];
const AIN: [Attr; 8] = [Attr::Ain1, Attr::Ain2, Attr::Ain3, Attr::Ain4, Attr::Ain5, Attr::Ain6, Attr::Ain7, Attr::Ain8];
const DOUT: [Attr; 4] = [Attr::Dout1, Attr::Dout2, Attr::Dout3, Attr::Dout4];
const COUNTERS: [&str; 8] =
    ["counter1", "counter2", "counter3", "counter4", "counter5", "counter6", "counter7", "counter8"];
const ADIO: [&str; 8] = ["adio1", "adio2", "adio3", "adio4", "adio5", "adio6", "adio7", "adio8"];

/// `EGTS_SR_POS_DATA`.
pub fn pos_data<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (rest, (time, lat, lon, flags, speed, direction)) = nom::Parser::parse_complete(
        &mut (kit::le_u32, kit::le_u32, kit::le_u32, kit::be_u8, kit::le_u16, kit::be_u8),
        input,
    )?;
    let (rest, (odometer, inputs, source)) =
        nom::Parser::parse_complete(&mut (kit::array::<3>, kit::be_u8, kit::be_u8), rest)?;
    out.set_time(Some(UtcMillis((EPOCH_2010 + i64::from(time)) * 1000)));
    let degrees = |raw: u32, span: f64, negative: bool| {
        let value = f64::from(raw) * span / f64::from(u32::MAX);
        if negative { -value } else { value }
    };
    let fix = out.fix();
    fix.valid = flags & 0x01 != 0;
    fix.coordinates = Some((degrees(lat, 90.0, flags & 0x20 != 0), degrees(lon, 180.0, flags & 0x40 != 0)));
    fix.speed = Some(f64::from(speed & 0x3FFF) / 10.0);
    fix.course = Some(f64::from(u16::from(direction) | ((speed >> 15) << 8)));
    out.attr(Attr::Odometer, AttrValue::Float(f64::from(le24(&odometer)) * 100.0));
    out.io("din", u64::from(inputs));
    for (bit, attr) in DIN.iter().enumerate() {
        out.attr(*attr, AttrValue::Bool(inputs & (1 << bit) != 0));
    }
    out.io("source", u64::from(source));
    if flags & 0x08 != 0 {
        // Sent late from the black box, as the other protocols mark it.
        out.io("archive", 1);
    }
    let mut rest = rest;
    if flags & 0x80 != 0 {
        let (after, altitude) = kit::array::<3>(rest)?;
        let metres = f64::from(le24(&altitude));
        out.altitude(if speed & 0x4000 != 0 { -metres } else { metres });
        rest = after;
    }
    // Source data (SRCD) follows when the source needs it: kept raw.
    if !rest.is_empty() {
        out.io_bytes("source_data", rest);
    }
    Ok((&rest[rest.len()..], ()))
}

/// `EGTS_SR_EXT_POS_DATA`.
pub fn ext_pos_data<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (mut rest, flags) = kit::be_u8(input)?;
    for (bit, attr) in [(0, None), (1, Some(Attr::Hdop)), (2, Some(Attr::Pdop))] {
        if flags & (1 << bit) != 0 {
            let (after, dop) = kit::le_u16(rest)?;
            if let Some(attr) = attr {
                out.attr(attr, AttrValue::Float(f64::from(dop) / 100.0));
            } else {
                out.io("vdop", u64::from(dop));
            }
            rest = after;
        }
    }
    if flags & 0x08 != 0 {
        let (after, (satellites, systems)) = nom::Parser::parse_complete(&mut (kit::be_u8, kit::le_u16), rest)?;
        out.satellites(u16::from(satellites));
        out.io("navigation_systems", u64::from(systems));
        rest = after;
    }
    Ok((rest, ()))
}

/// `EGTS_SR_AD_SENSORS_DATA`.
pub fn ad_sensors<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (mut rest, (dioe, outputs, asfe)) =
        nom::Parser::parse_complete(&mut (kit::be_u8, kit::be_u8, kit::be_u8), input)?;
    out.io("dout", u64::from(outputs));
    for (bit, attr) in DOUT.iter().enumerate() {
        out.attr(*attr, AttrValue::Bool(outputs & (1 << bit) != 0));
    }
    for (bit, key) in ADIO.iter().enumerate() {
        if dioe & (1 << bit) != 0 {
            let (after, value) = kit::be_u8(rest)?;
            out.io(key, u64::from(value));
            rest = after;
        }
    }
    for (bit, attr) in AIN.iter().enumerate() {
        if asfe & (1 << bit) != 0 {
            let (after, value) = kit::array::<3>(rest)?;
            out.attr(*attr, AttrValue::Float(f64::from(le24(&value)) / 1000.0));
            rest = after;
        }
    }
    Ok((rest, ()))
}

/// `EGTS_SR_COUNTERS_DATA`.
pub fn counters<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (mut rest, cfe) = kit::be_u8(input)?;
    for (bit, key) in COUNTERS.iter().enumerate() {
        if cfe & (1 << bit) != 0 {
            let (after, value) = kit::array::<3>(rest)?;
            out.io(key, u64::from(le24(&value)));
            rest = after;
        }
    }
    Ok((rest, ()))
}

/// `EGTS_SR_STATE_DATA`.
pub fn state<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (rest, [state, main, backup, internal, flags]) = kit::array::<5>(input)?;
    out.io("state", u64::from(state));
    out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(main) / 10.0));
    // The backup battery when it is in use, else the internal one.
    let battery = if flags & 0x01 != 0 { backup } else { internal };
    out.attr(Attr::BatteryVoltage, AttrValue::Float(f64::from(battery) / 10.0));
    out.io("state_flags", u64::from(flags));
    Ok((rest, ()))
}

/// `EGTS_SR_ABS_AN_SENS_DATA`: one analog sensor, kept raw by its number.
pub fn abs_analog<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (rest, (number, value)) = nom::Parser::parse_complete(&mut (kit::be_u8, kit::array::<3>), input)?;
    out.io_value(IoKey::Static(ANS[usize::from(number) % ANS.len()]), IoValue::Uint(u64::from(le24(&value))));
    Ok((rest, ()))
}

/// `EGTS_SR_LIQUID_LEVEL_SENSOR`: one fuel level sensor, its reading raw (calibration
/// tables turn it into litres).
pub fn liquid_level<'a>(out: &mut Out<'_>, input: &'a [u8]) -> Parsed<'a, ()> {
    let (rest, (flags, _address)) = nom::Parser::parse_complete(&mut (kit::be_u8, kit::le_u16), input)?;
    let key = LLS[usize::from(flags & 0x07)];
    if flags & 0x08 != 0 {
        // Raw data of the sensor's own: kept whole.
        out.io_bytes(key, rest);
        return Ok((&rest[rest.len()..], ()));
    }
    let (rest, level) = kit::le_u32(rest)?;
    if flags & 0x40 == 0 {
        out.io(key, u64::from(level));
    }
    Ok((rest, ()))
}

const ANS: [&str; 8] = ["ans0", "ans1", "ans2", "ans3", "ans4", "ans5", "ans6", "ans7"];
const LLS: [&str; 8] = ["lls0", "lls1", "lls2", "lls3", "lls4", "lls5", "lls6", "lls7"];

/// A TELEDATA subrecord into the position being written; other types are no position
/// data (`Ok(false)`).
/// Bytes past a subrecord's layout are kept whole (`io.extra`), so nothing is lost.
pub fn teledata<'a>(out: &mut Out<'_>, kind: u8, input: &'a [u8]) -> Result<bool, nom::Err<kit::Error<'a>>> {
    let (rest, ()) = match kind {
        srt::POS_DATA => pos_data(out, input)?,
        srt::EXT_POS_DATA => ext_pos_data(out, input)?,
        srt::AD_SENSORS_DATA => ad_sensors(out, input)?,
        srt::COUNTERS_DATA => counters(out, input)?,
        srt::STATE_DATA => state(out, input)?,
        srt::ABS_AN_SENS_DATA => abs_analog(out, input)?,
        srt::LIQUID_LEVEL_SENSOR => liquid_level(out, input)?,
        _ => return Ok(false),
    };
    out.rest(rest);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egts::{records, transport};
    use crate::position::Batch;
    use bytes::Bytes;

    #[test]
    fn the_documented_position_reads() {
        let frame = Bytes::from(crate::hex::decode(b"559102106F1C059E7AB53C3501D0872C0100000000").unwrap_or_default());
        let mut batch = Batch::new("egts", None, frame.clone());
        let mut out = Out::new(&mut batch, &frame);
        assert!(pos_data(&mut out, &frame).is_ok());
        let position = batch.get(0);
        assert_eq!(position.fix.time.map(|t| t.to_string()), Some("2018-07-06T20:08:53Z".into()));
        let (lat, lon) = position.fix.coordinates.unwrap_or_default();
        assert!((lat - 55.55389399769574).abs() < 1e-9 && (lon - 37.43236696287812).abs() < 1e-9, "{lat} {lon}");
        assert_eq!((position.fix.speed, position.fix.course, position.fix.valid), (Some(200.0), Some(300.0), true));
        assert_eq!(position.attr(Attr::Odometer), Some(AttrValue::Float(100.0)));
    }

    #[test]
    fn the_documented_identity_reads() {
        let (_, identity) = term_identity(&[0xB0, 0x09, 0x02, 0x00, 0x10]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((identity.terminal, identity.flags, identity.imei), (133_552, 0x10, None));
    }

    #[test]
    fn every_captured_subrecord_reads_to_its_end() {
        let mut positions = 0;
        for (line, header, data) in transport::captured_packets() {
            if header.kind != transport::packet_type::APPDATA {
                continue;
            }
            let frame = Bytes::from(data);
            let (_, found) = records::all(&frame).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            for record in found {
                let (_, subs) = records::subrecords(record.data).unwrap_or_else(|e| panic!("{line}: {e:?}"));
                let mut batch = Batch::new("egts", None, frame.clone());
                let mut out = Out::new(&mut batch, &frame);
                for (kind, sub) in subs {
                    if kind == srt::TERM_IDENTITY {
                        term_identity(sub).unwrap_or_else(|e| panic!("{line}: {e:?}"));
                    } else if teledata(&mut out, kind, sub).unwrap_or_else(|e| panic!("{line} {kind}: {e:?}")) {
                        positions += usize::from(kind == srt::POS_DATA);
                    }
                }
                let extra = batch.iter().flat_map(|p| p.io().iter()).any(|e| e.key == IoKey::Static("extra"));
                assert!(!extra, "{line}: bytes past a subrecord's layout");
            }
        }
        assert!(positions >= 12, "{positions}");
    }
}
