//! Teltonika IO ids with a well-known meaning, mapped to the shared vocabulary.
//!
//! The raw element always lands in `io`; this only adds the normalized `attrs`. Ids whose
//! meaning depends on the device family follow the FMB/FMC/FMM family (the current line,
//! most of the installed base); older families keep their values in `io` only. Meanings
//! and scales come from Teltonika's AVL id tables as summarised in
//! `shared/vectors/traccar/teltonika_io_map.json`.

use crate::attrs::Attr;
use crate::position::{AttrValue, Batch};

#[inline]
fn flag(value: u64) -> AttrValue {
    AttrValue::Bool(value > 0)
}

#[inline]
fn scaled(value: f64, divisor: f64) -> AttrValue {
    AttrValue::Float(value / divisor)
}

fn alarm(batch: &mut Batch, name: &'static str) {
    batch.push_attr(Attr::Alarm, AttrValue::Name(name));
}

/// Adds the attribute of one IO element of codecs 8, 8E and 16, if it has one.
#[inline]
pub(crate) fn map_io(id: u16, value: u64, batch: &mut Batch) {
    let (attr, attr_value) = match id {
        1 => (Attr::Din1, flag(value)),
        2 => (Attr::Din2, flag(value)),
        3 => (Attr::Din3, flag(value)),
        4 => (Attr::Din4, flag(value)),
        9 => (Attr::Ain1, scaled(value as f64, 1000.0)),
        10 => (Attr::Ain2, scaled(value as f64, 1000.0)),
        16 => (Attr::Odometer, AttrValue::Int(value as i64)),
        17 => (Attr::AxisX, AttrValue::Int(i64::from(value as u16 as i16))),
        18 => (Attr::AxisY, AttrValue::Int(i64::from(value as u16 as i16))),
        19 => (Attr::AxisZ, AttrValue::Int(i64::from(value as u16 as i16))),
        21 => (Attr::GsmSignal, AttrValue::Int(value as i64)),
        31 => (Attr::EngineLoad, AttrValue::Int(value as i64)),
        32 => (Attr::CoolantTemp, AttrValue::Int(i64::from(value as u8 as i8))),
        36 | 85 => (Attr::Rpm, AttrValue::Int(value as i64)),
        66 => (Attr::PowerVoltage, scaled(value as f64, 1000.0)),
        67 => (Attr::BatteryVoltage, scaled(value as f64, 1000.0)),
        68 => (Attr::BatteryCurrent, scaled(value as f64, 1000.0)),
        72 => (Attr::Temp1, scaled(f64::from(value as u32 as i32), 10.0)),
        73 => (Attr::Temp2, scaled(f64::from(value as u32 as i32), 10.0)),
        74 => (Attr::Temp3, scaled(f64::from(value as u32 as i32), 10.0)),
        75 => (Attr::Temp4, scaled(f64::from(value as u32 as i32), 10.0)),
        // iButton keys arrive byte-reversed; 0 means no key is attached.
        78 if value != 0 => (Attr::DriverId, AttrValue::Hex64(value.swap_bytes())),
        81 => (Attr::ObdSpeed, AttrValue::Int(value as i64)),
        82 => (Attr::Throttle, AttrValue::Int(value as i64)),
        83 => (Attr::FuelUsed, scaled(value as f64, 10.0)),
        84 => (Attr::FuelLitres, scaled(value as f64, 10.0)),
        89 => (Attr::FuelLevel, AttrValue::Int(value as i64)),
        113 => (Attr::BatteryLevel, AttrValue::Int(value as i64)),
        115 => (Attr::EngineTemp, scaled(f64::from(value as u16 as i16), 10.0)),
        179 => (Attr::Dout1, flag(value)),
        180 => (Attr::Dout2, flag(value)),
        181 => (Attr::Pdop, scaled(value as f64, 10.0)),
        182 => (Attr::Hdop, scaled(value as f64, 10.0)),
        199 => (Attr::TripOdometer, AttrValue::Int(value as i64)),
        200 => (Attr::SleepMode, AttrValue::Int(value as i64)),
        239 => (Attr::Ignition, flag(value)),
        240 => (Attr::Motion, flag(value)),
        241 => (Attr::Operator, AttrValue::Int(value as i64)),
        662 => (Attr::Door, flag(value)),
        236 if value > 0 => return alarm(batch, "general"),
        246 if value > 0 => return alarm(batch, "tow"),
        247 if value > 0 => return alarm(batch, "crash"),
        249 if value == 1 => return alarm(batch, "jamming"),
        251 if value > 0 => return alarm(batch, "idle"),
        252 if value == 1 => return alarm(batch, "power_cut"),
        253 => {
            return match value {
                1 => alarm(batch, "harsh_acceleration"),
                2 => alarm(batch, "harsh_braking"),
                3 => alarm(batch, "harsh_cornering"),
                _ => {}
            };
        }
        _ => return,
    };
    batch.push_attr(attr, attr_value);
}

/// Adds the attribute of one IO element of the GH3000 codec 7, whose ids differ.
pub(crate) fn map_gh3000_io(id: u16, value: u64, batch: &mut Batch) {
    let (attr, attr_value) = match id {
        1 => (Attr::BatteryLevel, AttrValue::Int(value as i64)),
        20 => (Attr::Hdop, scaled(value as f64, 10.0)),
        22 => (Attr::Pdop, scaled(value as f64, 10.0)),
        67 => (Attr::BatteryVoltage, scaled(value as f64, 1000.0)),
        240 => (Attr::Motion, flag(value)),
        222 if value == 1 => return alarm(batch, "sos"),
        _ => return,
    };
    batch.push_attr(attr, attr_value);
}
