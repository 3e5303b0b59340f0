//! The JT/T 808 bodies other than the location itself: batches, heartbeats with battery
//! data, terminal attributes, driver identity, acceleration, transparent data, and the
//! messages kept whole.

use bytes::Bytes;

use crate::attrs::Attr;
use crate::kit::{self, Parsed, be_u8, be_u16, take};
use crate::out::Out;
use crate::position::{AttrValue, Batch};

use super::location::{self, Models, bcd_time, csq_to_signal, trim};

/// True when the message becomes positions.
pub fn is_position(id: u16, body: &[u8]) -> bool {
    match id {
        0x0200 | 0x0201 | 0x0704 | 0x0210 | 0x0107 | 0x0702 | 0x2070 => true,
        0x0002 => body.len() >= 3,
        // Transparent data: a driver key text (0x40) or an OBD sentence (0x41).
        0x0900 => matches!(body.first(), Some(0x40 | 0x41)),
        _ => false,
    }
}

/// Decodes a position message into `batch` (whose raw bytes `raw` holds `body`).
pub fn positions<'c>(
    batch: &mut Batch,
    raw: &'c Bytes,
    id: u16,
    body: &'c [u8],
    offset: i32,
    models: Models,
) -> Parsed<'c, ()> {
    let mark = batch.mark();
    let result = match id {
        0x0200 => location::location(&mut Out::new(batch, raw), body, offset, models),
        0x0201 => {
            let (rest, _) = be_u16(body)?;
            location::location(&mut Out::new(batch, raw), rest, offset, models)
        }
        0x0704 => batch_of(batch, raw, body, offset, models),
        0x0210 => batch_2(batch, raw, body, offset, models),
        0x0002 => {
            let mut out = Out::new(batch, raw);
            let (rest, (level, signal, status)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8), body)?;
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(level)));
            out.io("rssi", u64::from(signal));
            if let Some(signal) = csq_to_signal(signal) {
                out.attr(Attr::GsmSignal, AttrValue::Int(signal));
            }
            out.io("status", u64::from(status));
            out.rest(rest);
            Ok((&rest[rest.len()..], ()))
        }
        0x0107 => attributes(&mut Out::new(batch, raw), body),
        0x0702 => driver_identity(&mut Out::new(batch, raw), body, offset),
        0x2070 => {
            let mut out = Out::new(batch, raw);
            out.io_bytes("acceleration", body);
            Ok((&body[body.len()..], ()))
        }
        0x0900 => transparent(&mut Out::new(batch, raw), body),
        _ => Ok((body, ())),
    };
    if result.is_err() {
        batch.rollback(mark);
    }
    result
}

/// 0x0704: count, type (1: blind-area data, sent late), then locations of length u16.
fn batch_of<'c>(batch: &mut Batch, raw: &'c Bytes, body: &'c [u8], offset: i32, models: Models) -> Parsed<'c, ()> {
    let (mut rest, (count, kind)) = nom::Parser::parse_complete(&mut (be_u16, be_u8), body)?;
    for _ in 0..count {
        let (after, length) = be_u16(rest)?;
        let (after, item) = take(usize::from(length))(after)?;
        let mut out = Out::new(batch, raw);
        out.io("archive", u64::from(kind));
        location::location(&mut out, item, offset, models)?;
        rest = after;
    }
    if !rest.is_empty() {
        return kit::invalid(rest, format!("{} bytes after the {count} locations the batch declares", rest.len()));
    }
    Ok((rest, ()))
}

/// 0x0210 (vendor): seven bytes of battery level and time, or locations of length u8.
fn batch_2<'c>(batch: &mut Batch, raw: &'c Bytes, body: &'c [u8], offset: i32, models: Models) -> Parsed<'c, ()> {
    if body.len() == 7 {
        let mut out = Out::new(batch, raw);
        out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(body[0])));
        let time: [u8; 6] = body[1..7].try_into().unwrap_or_default();
        match bcd_time(time, offset) {
            Ok(time) => out.set_time(time),
            Err(why) => return kit::invalid(&body[1..], why),
        }
        return Ok((&body[7..], ()));
    }
    let mut rest = body;
    while !rest.is_empty() {
        let (after, length) = be_u8(rest)?;
        let (after, item) = take(usize::from(length))(after)?;
        location::location(&mut Out::new(batch, raw), item, offset, models)?;
        rest = after;
    }
    Ok((rest, ()))
}

/// 0x0107 terminal attributes (2013 layout): type, manufacturer, model, terminal id,
/// ICCID (BCD), hardware and firmware versions.
fn attributes<'c>(out: &mut Out, body: &'c [u8]) -> Parsed<'c, ()> {
    let (rest, (kind, maker, model, terminal, iccid)) =
        nom::Parser::parse_complete(&mut (be_u16, take(5), take(20), take(7), take(10)), body)?;
    out.io("terminal_type", u64::from(kind));
    out.io_text("manufacturer", trim(maker));
    out.io_text("model", trim(model));
    out.io_text("terminal_id", trim(terminal));
    out.io_bytes("iccid", iccid);
    out.attr_digits(Attr::Iccid, iccid);
    let mut rest = rest;
    for name in ["hardware_version", "firmware_version"] {
        let Ok((after, version)) = kit::counted(rest) else { break };
        out.io_text(name, version);
        rest = after;
    }
    out.rest(rest);
    Ok((&rest[rest.len()..], ()))
}

/// 0x0702 driver identity: card state (1 inserted), time, read result, name, license
/// number (20 characters), issuing agency, validity.
fn driver_identity<'c>(out: &mut Out, body: &'c [u8], offset: i32) -> Parsed<'c, ()> {
    let (rest, (state, time)) = nom::Parser::parse_complete(&mut (be_u8, kit::array::<6>), body)?;
    out.io("card_state", u64::from(state));
    match bcd_time(time, offset) {
        Ok(time) => out.set_time(time),
        Err(why) => return kit::invalid(&body[1..], why),
    }
    if state != 1 || rest.is_empty() {
        out.rest(rest);
        return Ok((&rest[rest.len()..], ()));
    }
    let (rest, result) = be_u8(rest)?;
    out.io("card_result", u64::from(result));
    let (rest, name) = kit::counted(rest)?;
    out.io_text("driver_name", name);
    let (rest, license) = take(20)(rest)?;
    let license = trim(license);
    out.io_text("license", license);
    out.attr_text(Attr::DriverId, license);
    let (rest, agency) = kit::counted(rest)?;
    out.io_text("agency", agency);
    out.rest(rest);
    Ok((&rest[rest.len()..], ()))
}

/// 0x0900 transparent data: 0x40 a text (`GTSL|...|key|...` carries a driver key in its
/// fifth field), 0x41 an `$OBD-RT` sentence (supply voltage, rpm, speed, throttle, load,
/// coolant, consumption, trip and total distance, trip and total fuel used).
fn transparent<'c>(out: &mut Out, body: &'c [u8]) -> Parsed<'c, ()> {
    let (rest, kind) = be_u8(body)?;
    let text = trim(rest);
    if kind == 0x40 {
        out.io_text("data", text);
    }
    if kind == 0x40 {
        if text.starts_with(b"GTSL")
            && let Some(key) = text.split(|&b| b == b'|').nth(4)
        {
            out.attr_text(Attr::DriverId, key);
        }
    } else {
        location::obd_sentence(out, text);
    }
    Ok((&rest[rest.len()..], ()))
}

/// The serial (and message id) of the command an answer names.
pub fn answered_serial(id: u16, body: &[u8]) -> Option<(u16, u16)> {
    let serial = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    match id {
        super::id::TERMINAL_RESPONSE => Some((serial, u16::from_be_bytes([*body.get(2)?, *body.get(3)?]))),
        _ => Some((serial, 0)),
    }
}

/// UTF-16BE text as UTF-8 (unpaired surrogates replaced), trailing controls dropped.
pub fn utf16be(bytes: &[u8]) -> String {
    let units = bytes.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let text: String = char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    text.trim_end_matches(|c: char| c.is_control() || c.is_whitespace()).to_owned()
}

/// The kind and payload of a message kept whole: the whole message, or for a text
/// report (0x6006) its text.
pub fn kept(id: u16, raw: Bytes, body: &Bytes) -> (&'static str, Bytes) {
    if id == 0x6006 && body.len() > 1 {
        return ("jt808_text", body.slice(1..));
    }
    let kind = match id {
        0x0701 => "jt808_waybill",
        0x0800 | 0x0801 => "jt808_multimedia",
        0x0900 => "jt808_transparent",
        0x5501 | 0x5502 => "jt808_vendor_location",
        0x6006 => "jt808_text",
        _ => "jt808_message",
    };
    (kind, raw)
}
