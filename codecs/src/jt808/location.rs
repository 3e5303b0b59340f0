//! The JT/T 808 location: the 28-byte basic information, then additional items (id u8,
//! length u8, value), standard and vendor.
//!
//! ```text
//! alarm:u32  status:u32  lat:u32  lon:u32  (1e-6 degree)  altitude:u16 (m)  speed:u16 (0.1 km/h)
//! course:u16  time:BCD[6] (YYMMDDhhmmss, the device's clock: UTC+8 unless registered otherwise)
//! ```
//! Status: bit 0 ACC, 1 fix valid, 2 south, 3 west, 10 oil circuit cut, 11 electric
//! circuit cut; the door of MV810G and MV710G units is bit 16 (the standard's door bits
//! are read by no other terminal, as too many use them otherwise; the word is in
//! `io.status`). Alarm bits,
//! named by priority (the first set names `alarm`; the whole word stays in `io.alarm`):
//! 0 SOS, 29 collision, 30 rollover, 8 main power off, 7 main power low, 1 overspeed, 2
//! fatigue, 26 vehicle stolen, 28 illegal displacement, 31 illegal door opening, 16 and
//! 17 tampering, 15 vibration, 18 low battery (the last four vendors' use of bits the
//! standard reserves), 5 antenna cut, 19 parking overtime, 20 area, 21 route.
//!
//! Every additional item is kept raw in `io` under its id (`"0x01"`, with integers of 1,
//! 2 and 4 bytes as numbers and the rest as hex); the items below are also read into the
//! vocabulary. Standard: 0x01 mileage (0.1 km), 0x02 fuel (0.1 l), 0x03 tachograph speed
//! (0.1 km/h), 0x06 carriage temperature (2 bytes; one byte: battery level), 0x2A IO
//! status (sleep), 0x2B analog inputs (AD0 low word, AD1 high, 0.01 V), 0x30 signal (CSQ
//! 0-31), 0x31 satellites. Vendor items as devices in the field send them: see
//! [`vendor_item`].

use crate::attrs::Attr;
use crate::kit::{self, Parsed, be_u16, be_u32};
use crate::out::Out;
use crate::position::{AttrValue, IoKey, IoValue};
use crate::time::UtcMillis;

/// The basic information block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basic {
    /// Alarm flags.
    pub alarm: u32,
    /// Status flags.
    pub status: u32,
    /// 1e-6 degree, unsigned.
    pub lat: u32,
    /// 1e-6 degree, unsigned.
    pub lon: u32,
    /// Metres.
    pub altitude: u16,
    /// 0.1 km/h.
    pub speed: u16,
    /// Degrees.
    pub course: u16,
    /// BCD YYMMDDhhmmss.
    pub time: [u8; 6],
}

/// The 28-byte basic information.
pub fn basic(input: &[u8]) -> Parsed<'_, Basic> {
    let (rest, (alarm, status, lat, lon, altitude, speed, course, time)) = nom::Parser::parse_complete(
        &mut (be_u32, be_u32, be_u32, be_u32, be_u16, be_u16, be_u16, kit::array::<6>),
        input,
    )?;
    Ok((rest, Basic { alarm, status, lat, lon, altitude, speed, course, time }))
}

/// BCD YYMMDDhhmmss in a clock `offset_minutes` east of UTC; `Ok(None)` for all zeros.
pub fn bcd_time(time: [u8; 6], offset_minutes: i32) -> Result<Option<UtcMillis>, String> {
    if time == [0; 6] {
        return Ok(None);
    }
    let mut fields = [0u32; 6];
    for (field, byte) in fields.iter_mut().zip(time) {
        if byte >> 4 > 9 || byte & 0x0F > 9 {
            return Err(format!("time byte 0x{byte:02X} is not BCD"));
        }
        *field = u32::from(byte >> 4) * 10 + u32::from(byte & 0x0F);
    }
    let [year, month, day, hour, minute, second] = fields;
    let local = UtcMillis::from_civil(2000 + i64::from(year), month, day, hour, minute, second).ok_or_else(|| {
        format!("time 20{year:02}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} is not a calendar time")
    })?;
    Ok(Some(UtcMillis(local.0 - i64::from(offset_minutes) * 60_000)))
}

/// The alarm bits in priority order and the alarm each names (bits 15-18 are reserved
/// by the standard; vendors use them as named here).
const ALARM_BITS: [(u32, &str); 18] = [
    (0, "sos"),
    (29, "crash"),
    (30, "crash"),
    (8, "power_cut"),
    (7, "low_power"),
    (1, "overspeed"),
    (2, "fatigue"),
    (26, "general"),
    (28, "tow"),
    (31, "door"),
    (16, "tampering"),
    (17, "tampering"),
    (15, "vibration"),
    (18, "low_battery"),
    (5, "jamming"),
    (19, "idle"),
    (20, "geofence"),
    (21, "geofence"),
];

/// What the device's registered model changes in its locations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Models {
    /// MV810G and MV710G: the door is status bit 16, and alarm bit 16 of item 0x57.
    pub door_bit_16: bool,
}

impl Models {
    /// The families of a registered model.
    pub fn of(settings: &crate::protocol::DeviceSettings) -> Self {
        Models { door_bit_16: settings.model_is(&["MV810G", "MV710G"]) }
    }
}

/// Writes the basic information: time, fix, ACC, circuit cuts, door, alarm.
pub fn write_basic(out: &mut Out, basic: &Basic, offset_minutes: i32, models: Models) -> Result<(), String> {
    let time = bcd_time(basic.time, offset_minutes)?;
    out.set_time(time);
    let valid = basic.status & 0x02 != 0;
    let fix = out.fix();
    fix.valid = valid;
    if basic.lat != 0 || basic.lon != 0 || valid {
        fix.coordinates = Some((
            kit::coordinates::from_1e6(basic.lat, basic.status & 0x04 != 0),
            kit::coordinates::from_1e6(basic.lon, basic.status & 0x08 != 0),
        ));
    }
    fix.altitude = Some(f64::from(basic.altitude as i16));
    fix.speed = Some(f64::from(basic.speed) / 10.0);
    fix.course = Some(f64::from(basic.course));
    out.io("alarm", u64::from(basic.alarm));
    out.io("status", u64::from(basic.status));
    out.attr(Attr::Ignition, AttrValue::Bool(basic.status & 0x01 != 0));
    out.attr(Attr::Blocked, AttrValue::Bool(basic.status & 0x0C00 != 0));
    // The standard's door bits (13-17) are used otherwise by too many terminals to read
    // them as doors; the models that wire a door say where.
    if models.door_bit_16 {
        out.attr(Attr::Door, AttrValue::Bool(basic.status & 0x0001_0000 != 0));
    }
    if let Some((_, name)) = ALARM_BITS.iter().find(|(bit, _)| basic.alarm & (1 << bit) != 0) {
        out.set_alarm(name);
    }
    Ok(())
}

/// One location body (basic information and items) into `out`; the items that do not
/// parse as items are kept whole in `io.extra`.
pub fn location<'c>(out: &mut Out, body: &'c [u8], offset_minutes: i32, models: Models) -> Parsed<'c, ()> {
    let (rest, basic) = basic(body)?;
    if let Err(why) = write_basic(out, &basic, offset_minutes, models) {
        return kit::invalid(body, why);
    }
    items(out, rest, models);
    Ok((&rest[rest.len()..], ()))
}

/// The additional items of a location, to the end of `rest`.
pub fn items(out: &mut Out, mut rest: &[u8], models: Models) {
    while rest.len() >= 2 {
        let (id, len) = (rest[0], usize::from(rest[1]));
        let Some(value) = rest.get(2..2 + len) else { break };
        let raw = match len {
            1 => IoValue::Uint(u64::from(value[0])),
            2 => IoValue::Uint(u64::from(u16::from_be_bytes([value[0], value[1]]))),
            4 => IoValue::Uint(u64::from(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))),
            _ => IoValue::Bytes(out.span(value)),
        };
        out.io_value(IoKey::Static(crate::out::HEX_IDS[usize::from(id)]), raw);
        item(out, id, value, models);
        rest = &rest[2 + len..];
    }
    out.rest(rest);
}

fn u16_at(value: &[u8], at: usize) -> Option<u16> {
    value.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(value: &[u8], at: usize) -> Option<u32> {
    value.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn float(out: &mut Out, attr: Attr, value: Option<f64>) {
    if let Some(value) = value {
        out.attr(attr, AttrValue::Float(value));
    }
}

/// Sign and magnitude in 15 bits, tenths.
fn signed_tenths(word: u16) -> f64 {
    let magnitude = f64::from(word & 0x7FFF) / 10.0;
    if word & 0x8000 != 0 { -magnitude } else { magnitude }
}

/// The signal strength as CSQ (0-31) on the vocabulary's 0-5 scale (99: unknown).
pub fn csq_to_signal(csq: u8) -> Option<i64> {
    (csq <= 31).then(|| (i64::from(csq) * 5 + 15) / 31)
}

/// One item into the vocabulary.
fn item(out: &mut Out, id: u8, v: &[u8], models: Models) {
    let len = v.len();
    match (id, len) {
        (0x01, 4) => {
            let m = u64::from(u32_at(v, 0).unwrap_or(0)) * 100;
            out.attr(Attr::Odometer, AttrValue::Int(m as i64));
        }
        (0x02, 2) => {
            let fuel = u16_at(v, 0).unwrap_or(0);
            if fuel & 0x8000 != 0 {
                out.attr(Attr::FuelLevel, AttrValue::Float(f64::from(fuel & 0x7FFF)));
            } else {
                out.attr(Attr::FuelLitres, AttrValue::Float(f64::from(fuel) / 10.0));
            }
        }
        (0x03, 2) => float(out, Attr::ObdSpeed, u16_at(v, 0).map(|s| f64::from(s) / 10.0)),
        (0x06, 1) => out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[0]))),
        (0x06, 2) => float(out, Attr::Temp1, u16_at(v, 0).map(|t| f64::from(t as i16) / 10.0)),
        (0x2A, 2) => {
            let io = u16_at(v, 0).unwrap_or(0);
            let mode = if io & 0x01 != 0 {
                2
            } else if io & 0x02 != 0 {
                1
            } else {
                0
            };
            out.attr(Attr::SleepMode, AttrValue::Int(mode));
        }
        (0x2B, 4) => {
            float(out, Attr::Ain1, u16_at(v, 2).map(|a| f64::from(a) / 100.0));
            float(out, Attr::Ain2, u16_at(v, 0).map(|a| f64::from(a) / 100.0));
        }
        (0x30, 1) => {
            if let Some(signal) = csq_to_signal(v[0]) {
                out.attr(Attr::GsmSignal, AttrValue::Int(signal));
            }
        }
        (0x31, 1) => out.satellites(u16::from(v[0])),
        _ => vendor_item(out, id, v, models),
    }
}

/// Vendor items as devices in the field send them (the ids are the vendors'; an id one
/// vendor uses otherwise is read by its length where lengths tell them apart):
///
/// | id | length | value |
/// |---|---|---|
/// | 0x51 | 2, 16 | temperatures, sign and magnitude in tenths (`temp1`...) |
/// | 0x56 | 2 | battery level in tens of percent, reserved |
/// | 0x57 | 8 | harsh driving alarms (bits 8-10 of the first word) |
/// | 0x60 | 2+ | event code; 0x61-0x66 with a lock id and an 8-character driver key |
/// | 0x69 | 2 | battery voltage, 0.01 V |
/// | 0x80 | 1+ | OBD extension items (id u8, length u8): 0x81 rpm, 0x82 voltage (0.1 V), 0x83 load, 0x84 coolant (-40), 0x89 throttle, 0x8B VIN, 0xA0 fault codes |
/// | 0x82 | 2 | supply voltage, 0.1 V |
/// | 0xAC | 4 | odometer, m |
/// | 0xBC | any | driver name |
/// | 0xBD | any | driver key |
/// | 0xCC | 20 | ICCID |
/// | 0xD0 | 4 | user status, bit 3 vibration |
/// | 0xD3 | 2 | supply voltage, 0.1 V |
/// | 0xD4, 0xE1, 0xE9 | 1 | battery level (FF: charging); 0xE1 of 2: supply voltage (0.1 V) |
/// | 0xD5 | 2 | battery voltage, 0.01 V |
/// | 0xDA | 3 | string cut count, device status (bit 2 motion) |
/// | 0xE2 | 4 | fuel, 0.1 l |
/// | 0xE3 | 6 | reserved, battery level, battery voltage (0.01 V) |
/// | 0xE4 | 2 | charge state (0: charging), battery level |
/// | 0xE5 | 1 | motion |
/// | 0xE7 | 8 | alarms: bit 0 vibration, bits 1-3 SOS |
/// | 0xEB | any | cells; or a time zone text; or sub-items (length u16, id u16): 0x0001 fuel 1 (0.1), 0x0023 fuel 2 (text), 0x002D voltage (mV: 6 bytes supply, else battery), 0x0089 alarms (bit 0 clear: power off, bit 12 clear: removing), 0x00B2 ICCID, 0x00C5 alarms (bit 6 clear: vibration; bits 23-24 motion), 0x00CE supply (0.01 V), 0x00A8 and 0x00E1 battery level |
/// | 0xEE | 6 | signal, supply and battery voltage (mV), satellites |
/// | 0xF1 | 4 | supply voltage, mV |
/// | 0x33 | 16+ | an e-lock status sentence (`*M00...`): battery, 0.01 V |
/// | 0xE6 | 7+ | an `$OBD-RT` sentence (see [`obd_sentence`]) |
/// | 0xF6 | 8 | IMEI (BCD); other lengths: event, sensor mask, light, temperature (0.1 °C), humidity (0.1 %) |
/// | 0xF8 | 19+ | working mode, IMEI, ICCID (AOVX units) |
/// | 0xF7 | 2 | humidity (0.1 %); 4+: battery voltage (mV), state (2, 3: charging), level |
/// | 0xF8 | 2 | temperature 2, 0.1 °C above -50 |
/// | 0xFC | 1 | geofence |
/// | 0xFE | 1, 2 | battery level; supply voltage (0.1 V) |
fn vendor_item(out: &mut Out, id: u8, v: &[u8], models: Models) {
    let len = v.len();
    match (id, len) {
        (0x51, 2 | 16) => {
            const TEMPS: [Attr; 4] = [Attr::Temp1, Attr::Temp2, Attr::Temp3, Attr::Temp4];
            for (i, attr) in TEMPS.iter().enumerate() {
                match u16_at(v, 2 * i) {
                    Some(0xFFFF) | None => {}
                    Some(word) => out.attr(*attr, AttrValue::Float(signed_tenths(word))),
                }
            }
        }
        (0x56, 2) => out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[0]) * 10)),
        (0x33, 16..) if v.starts_with(b"*M00") => {
            // An e-lock's status sentence: characters 10-12 are its battery in 0.01 V.
            let volts = std::str::from_utf8(&v[10..13]).ok().and_then(|t| t.parse::<u16>().ok());
            float(out, Attr::BatteryVoltage, volts.map(|v| f64::from(v) / 100.0));
        }
        (0x57, 8) => {
            let alarm = u16_at(v, 0).unwrap_or(0);
            for (bit, name) in [(8, "harsh_acceleration"), (9, "harsh_braking"), (10, "harsh_cornering")] {
                if alarm & (1 << bit) != 0 {
                    out.set_alarm(name);
                }
            }
            if models.door_bit_16 && u32_at(v, 4).unwrap_or(0) & 0x0001_0000 != 0 {
                out.set_alarm("door");
            }
        }
        (0x60, 2..) => {
            let event = u16_at(v, 0).unwrap_or(0);
            out.io("event", u64::from(event));
            if (0x61..=0x66).contains(&event)
                && let Some(key) = v.get(8..16)
            {
                out.attr_text(Attr::DriverId, key);
            }
        }
        (0x69, 2) => float(out, Attr::BatteryVoltage, u16_at(v, 0).map(|b| f64::from(b) / 100.0)),
        (0x80, 1..) => obd_extension(out, &v[1..]),
        (0x82 | 0xD3, 2) => float(out, Attr::PowerVoltage, u16_at(v, 0).map(|p| f64::from(p) / 10.0)),
        (0xAC, 4) => out.attr(Attr::Odometer, AttrValue::Int(i64::from(u32_at(v, 0).unwrap_or(0)))),
        (0xBC, _) => out.io_text("driver_name", trim(v)),
        (0xBD, _) => out.attr_text(Attr::DriverId, trim(v)),
        (0xCC, 20) => out.attr_text(Attr::Iccid, trim(v)),
        (0xD0, 4) if u32_at(v, 0).unwrap_or(0) & 0x08 != 0 => out.set_alarm("vibration"),
        (0xD4 | 0xE1 | 0xE9, 1) => {
            if v[0] == 0xFF {
                out.attr(Attr::Charging, AttrValue::Bool(true));
            } else {
                out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[0])));
            }
        }
        (0xE1, 2) => float(out, Attr::PowerVoltage, u16_at(v, 0).map(|p| f64::from(p) / 10.0)),
        (0xD5, 2) => float(out, Attr::BatteryVoltage, u16_at(v, 0).map(|b| f64::from(b) / 100.0)),
        (0xDA, 3) => out.attr(Attr::Motion, AttrValue::Bool(v[2] & 0x04 != 0)),
        (0xE2, 4) => float(out, Attr::FuelLitres, u32_at(v, 0).map(|f| f64::from(f) / 10.0)),
        (0xE3, 6) => {
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[1])));
            float(out, Attr::BatteryVoltage, u16_at(v, 2).map(|b| f64::from(b) / 100.0));
        }
        (0xE4, 2) => {
            if v[0] == 0 {
                out.attr(Attr::Charging, AttrValue::Bool(true));
            }
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[1])));
        }
        (0xE5, 1) => out.attr(Attr::Motion, AttrValue::Bool(v[0] == 1)),
        (0xE6, 7..) if v.starts_with(b"$OBD-RT") => obd_sentence(out, v),
        (0xE7, 8) => {
            let alarm = u16_at(v, 0).unwrap_or(0);
            if alarm & 0x01 != 0 {
                out.set_alarm("vibration");
            }
            if alarm & 0x0E != 0 {
                out.set_alarm("sos");
            }
        }
        (0xEB, _) => extended_eb(out, v),
        (0xEE, 6) => {
            if let Some(signal) = csq_to_signal(v[0]) {
                out.attr(Attr::GsmSignal, AttrValue::Int(signal));
            }
            float(out, Attr::PowerVoltage, u16_at(v, 1).map(|p| f64::from(p) / 1000.0));
            float(out, Attr::BatteryVoltage, u16_at(v, 3).map(|b| f64::from(b) / 1000.0));
            out.satellites(u16::from(v[5]));
        }
        (0xF1, 4) => float(out, Attr::PowerVoltage, u32_at(v, 0).map(|p| f64::from(p) / 1000.0)),
        (0xF6, 8) => out.io_bytes("imei", v),
        (0xF6, 3..) if len != 8 => {
            // Event, then a mask of sensors: light (bit 0), temperature (1), humidity (2).
            let (event, mask) = (v[0], v[1]);
            out.io("event", u64::from(event));
            let mut at = 2;
            if mask & 0x01 != 0 {
                at += 2;
            }
            if mask & 0x02 != 0 {
                float(out, Attr::Temp1, u16_at(v, at).map(|t| f64::from(t as i16) / 10.0));
                at += 2;
            }
            if mask & 0x04 != 0 {
                float(out, Attr::Humidity, u16_at(v, at).map(|h| f64::from(h as i16) / 10.0));
            }
        }
        (0xF7, 2) => float(out, Attr::Humidity, u16_at(v, 0).map(|h| f64::from(h) / 10.0)),
        (0xF7, 4..) => {
            float(out, Attr::BatteryVoltage, u32_at(v, 0).map(|b| f64::from(b) / 1000.0));
            if matches!(v.get(4), Some(2 | 3)) {
                out.attr(Attr::Charging, AttrValue::Bool(true));
            }
            if let Some(&level) = v.get(5) {
                out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(level)));
            }
        }
        (0xF8, 2) => float(out, Attr::Temp2, u16_at(v, 0).map(|t| f64::from(t) / 10.0 - 50.0)),
        (0xF8, 19..) => {
            // AOVX units: working mode, IMEI, ICCID (hex digits), model.
            out.io_bytes("imei", &v[1..9]);
            out.attr_hex(Attr::Iccid, &v[9..19]);
        }
        (0xFC, 1) => out.io("geofence", u64::from(v[0])),
        (0xFE, 1) => out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(v[0]))),
        (0xFE, 2) => float(out, Attr::PowerVoltage, u16_at(v, 0).map(|p| f64::from(p) / 10.0)),
        _ => {}
    }
}

/// Text without the spaces and control characters around it.
pub fn trim(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|&b| b > b' ').unwrap_or(text.len());
    let end = text.iter().rposition(|&b| b > b' ').map_or(start, |i| i + 1);
    &text[start..end]
}

/// An `$OBD-RT` sentence: `$OBD-RT,voltage,rpm,speed,throttle,load,coolant,
/// consumption now, average, trip distance, total distance, trip fuel, total fuel used`.
pub fn obd_sentence(out: &mut Out, text: &[u8]) {
    out.io_text("obd", text);
    let fields: Vec<&[u8]> = text.split(|&b| b == b',').collect();
    let number =
        |i: usize| fields.get(i).and_then(|f| std::str::from_utf8(f).ok()).and_then(|f| f.trim().parse::<f64>().ok());
    for (i, attr) in [
        (1, Attr::PowerVoltage),
        (2, Attr::Rpm),
        (3, Attr::ObdSpeed),
        (4, Attr::Throttle),
        (5, Attr::EngineLoad),
        (6, Attr::CoolantTemp),
        (12, Attr::FuelUsed),
    ] {
        if let Some(value) = number(i) {
            out.attr(attr, AttrValue::Float(value));
        }
    }
}

/// The OBD extension of item 0x80: sub-items of id u8, length u8.
fn obd_extension(out: &mut Out, mut rest: &[u8]) {
    while rest.len() >= 2 {
        let (id, len) = (rest[0], usize::from(rest[1]));
        let Some(v) = rest.get(2..2 + len) else { break };
        match (id, len) {
            (0x81, 2) => float(out, Attr::Rpm, u16_at(v, 0).map(f64::from)),
            (0x82, 2) => float(out, Attr::PowerVoltage, u16_at(v, 0).map(|p| f64::from(p) / 10.0)),
            (0x83, 1) => out.attr(Attr::EngineLoad, AttrValue::Float(f64::from(v[0]))),
            (0x84, 1) => out.attr(Attr::CoolantTemp, AttrValue::Float(f64::from(v[0]) - 40.0)),
            (0x89, 1) => out.attr(Attr::Throttle, AttrValue::Float(f64::from(v[0]))),
            (0x8B, 17) => out.io_text("vin", v),
            (0xA0, _) => out.io_text("dtcs", v),
            _ => {}
        }
        rest = &rest[2 + len..];
    }
}

/// Item 0xEB: neighbour cells (MCC above 200, then 5-byte cells), a time zone as text,
/// or sub-items of length u16 (counting the id), id u16.
fn extended_eb(out: &mut Out, v: &[u8]) {
    let len = v.len();
    if u16_at(v, 0).is_some_and(|mcc| mcc > 200) && len >= 3 && (len - 3) % 5 == 0 {
        out.io_bytes("cells", v);
        return;
    }
    if !v.is_empty() && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        out.io_text("timezone", v);
        return;
    }
    let mut rest = v;
    while rest.len() >= 4 {
        let Some(sub_len) = u16_at(rest, 0).map(usize::from) else { break };
        let Some(sub) = rest.get(2..2 + sub_len) else { break };
        if sub.len() < 2 {
            break;
        }
        let (kind, value) = (u16::from_be_bytes([sub[0], sub[1]]), &sub[2..]);
        match (kind, value.len()) {
            (0x0001, 3) => float(out, Attr::FuelLevel, u16_at(value, 0).map(|f| f64::from(f) / 10.0)),
            (0x0023, _) => out.io_text("fuel2", value),
            (0x002D, 4) => float(out, Attr::PowerVoltage, u32_at(value, 0).map(|p| f64::from(p) / 1000.0)),
            (0x002D, 2) => float(out, Attr::BatteryVoltage, u16_at(value, 0).map(|b| f64::from(b) / 1000.0)),
            (0x0089, 4) => {
                let alarm = u32_at(value, 0).unwrap_or(0);
                if alarm & 0x0001 == 0 {
                    out.set_alarm("power_off");
                }
                if alarm & 0x1000 == 0 {
                    out.set_alarm("removing");
                }
            }
            (0x00B2, 10) if value.iter().any(|&b| b != 0) => out.attr_digits(Attr::Iccid, value),
            (0x00C5, 4) => {
                let alarm = u32_at(value, 0).unwrap_or(0);
                if alarm & 0x40 == 0 {
                    out.set_alarm("vibration");
                }
                match (alarm >> 23) & 0x03 {
                    0 => out.attr(Attr::Motion, AttrValue::Bool(true)),
                    1 => out.attr(Attr::Motion, AttrValue::Bool(false)),
                    _ => {}
                }
            }
            (0x00CE, 2) => float(out, Attr::PowerVoltage, u16_at(value, 0).map(|p| f64::from(p) / 100.0)),
            (0x00A8 | 0x00E1, 1) => out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(value[0]))),
            _ => {}
        }
        rest = &rest[2 + sub_len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_bcd_in_the_devices_clock() {
        let time = [0x25, 0x04, 0x02, 0x16, 0x36, 0x26];
        assert_eq!(bcd_time(time, 480).map(|t| t.map(|t| t.to_string())), Ok(Some("2025-04-02T08:36:26Z".into())));
        assert_eq!(bcd_time([0; 6], 480), Ok(None));
        assert!(bcd_time([0x25, 0x13, 0x01, 0, 0, 0], 0).is_err());
        assert!(bcd_time([0x25, 0x1A, 0x01, 0, 0, 0], 0).is_err());
    }

    #[test]
    fn signal_strength_scale() {
        assert_eq!(csq_to_signal(0), Some(0));
        assert_eq!(csq_to_signal(31), Some(5));
        assert_eq!(csq_to_signal(15), Some(2));
        assert_eq!(csq_to_signal(99), None);
    }
}
