//! The GT06 messages that carry a position: their layouts, by protocol number and, where
//! firmware families differ, by content length or the device's registered model.
//!
//! Every such message becomes one position: with coordinates when it has a GPS block,
//! without them (cells, WiFi, sensors) when it has not; its time is the GPS or record time,
//! or the receive time when the message has none (status, heartbeat, information).
//! Content the layout does not cover is kept whole in `io.extra`; content shorter than
//! the layout refuses the frame.

use crate::attrs::Attr;
use crate::kit::{self, Parsed, be_i16, be_i32, be_u8, be_u16, be_u32, le_u32, take};
use crate::position::AttrValue;
use crate::protocol::DeviceSettings;

use super::fields::{Cell, CellLayout, Family, Out, bcd_time, cell, counted, gps, gps_jc400, sized_cell, status, time};

/// Turns a check of decoded values into a parser failure at `at`.
fn check(at: &[u8], result: Result<(), String>) -> Parsed<'_, ()> {
    match result {
        Ok(()) => Ok((at, ())),
        Err(why) => kit::invalid(at, why),
    }
}

/// The model families whose layouts differ where the frame cannot tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Models {
    /// NT20, VL100, XT40: 0x22 carries a header, device time and engine hours.
    pub nt: bool,
    /// LW models: 0x13 ends with the supply voltage.
    pub lw: bool,
    /// SeeWorld: the 0x13 alarm byte is the supply voltage.
    pub seeworld: bool,
    /// R11: 0x13 carries the supply voltage where the level goes.
    pub r11: bool,
    /// QH302R: 0x12 starts with the IMEI.
    pub qh302r: bool,
    /// VL103 and its kin: their own alarm codes, and 0x36 is a location.
    pub vl: bool,
}

impl Models {
    /// The families of a registered model.
    pub fn of(settings: &DeviceSettings) -> Self {
        let model = settings.model.as_deref().unwrap_or_default().to_ascii_uppercase();
        Models {
            nt: matches!(model.as_str(), "NT20" | "VL100" | "XT40"),
            lw: model.starts_with("LW"),
            seeworld: model == "SEEWORLD",
            r11: model == "R11",
            qh302r: model == "QH302R",
            vl: matches!(model.as_str(), "VL103" | "LL303" | "VL512" | "G18"),
        }
    }

    /// The alarm code table.
    pub fn family(self) -> Family {
        if self.lw {
            Family::Lw
        } else if self.seeworld {
            Family::SeeWorld
        } else if self.vl {
            Family::Vl
        } else {
            Family::Standard
        }
    }
}

/// True when messages of this protocol number carry a position (of the frame form).
pub fn is_position(kind: u8, extended: bool) -> bool {
    match kind {
        0x10 | 0x11 | 0x12 | 0x13 | 0x16 | 0x17 | 0x18 | 0x19 | 0x1A | 0x1E | 0x22 | 0x23 | 0x24 | 0x25 | 0x26
        | 0x27 | 0x28 | 0x2A | 0x2C | 0x2D | 0x2E | 0x31 | 0x32 | 0x33 | 0x37 | 0x38 | 0x61 | 0x69 | 0x70 | 0x8C
        | 0x94 | 0x95 | 0xA0 | 0xA1 | 0xA2 | 0xA3 | 0xA4 | 0xA5 | 0xA7 | 0xF1 | 0xF2 | 0xF3 => true,
        0x34 | 0x36 => !extended,
        _ => false,
    }
}

/// Decodes the content of a position message (`is_position`) into `out`.
pub fn decode<'c>(out: &mut Out, kind: u8, content: &'c [u8], extended: bool, models: Models) -> Parsed<'c, ()> {
    let len = content.len();
    let c = content;
    let rest = match kind {
        0x10 | 0x1A | 0x1E => {
            let (rest, g) = gps(c)?;
            check(rest, out.gps(g))?.0
        }
        0x11 => gps_cell(out, c, CellLayout { wide_mnc: true, lac: 2, cid: 4 })?,
        0x12 => gps_lbs_1(out, c, models)?,
        0x13 => status_message(out, c, models)?,
        0x16 | 0x26 | 0x27 => gps_lbs_status(out, kind, c, models)?,
        0x17 => {
            // GPS, cell, RFID card, card validity (the WiFi form of 0x17 has no CRC and
            // is decoded by `wifi`).
            let rest = gps_cell(out, c, CellLayout::STANDARD)?;
            let (rest, card) = take(8)(rest)?;
            out.io_bytes("rfid", card);
            let (rest, validity) = be_u8(rest)?;
            out.io("rfid_valid", u64::from(validity));
            driver_hex(out, card);
            rest
        }
        0x18 | 0x28 | 0x2E | 0x2C => lbs_multiple(out, c, CellLayout::STANDARD, kind == 0x18 || kind == 0x2C)?,
        0x19 if len >= 18 => {
            // Space10X multi-cell report: time, then cells.
            let (rest, t) = time(c)?;
            let (rest, _) = check(rest, out.time(t))?;
            let (rest, serving) = cell(CellLayout::STANDARD)(rest)?;
            out.cell(serving);
            rest
        }
        0x19 => cell_status(out, c, CellLayout::STANDARD)?,
        0x22 | 0x25 if models.nt => nt_location(out, c)?,
        0x22 if len == 42 => seeworld_location(out, c)?,
        0x22 | 0x2D | 0x31 | 0x37 | 0xA0 => gps_lbs_acc(out, kind, c)?,
        0x23 => heartbeat(out, c)?,
        0x24 if len == 41 => {
            // SR411 mini: GPS, cell, ACC, supply and battery voltage.
            let rest = gps_cell(out, c, CellLayout::STANDARD)?;
            let (rest, (acc, power, battery)) = nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u16), rest)?;
            out.attr(Attr::Ignition, AttrValue::Bool(acc > 0));
            out.volts(Attr::PowerVoltage, "power", power);
            out.volts(Attr::BatteryVoltage, "battery", battery);
            rest
        }
        0x24 if len == 44 => {
            // Wanway S20: time, timing advance, MCC, MNC, counted cells.
            let (rest, t) = time(c)?;
            let (rest, _) = check(rest, out.time(t))?;
            let (rest, advance) = be_u8(rest)?;
            out.io("timing_advance", u64::from(advance));
            cell_list(out, rest, CellLayout::STANDARD, None)?.0
        }
        0x24 => lbs_multiple(out, c, CellLayout::STANDARD, false)?,
        0x2A => {
            // Address request: GPS, the phone number to answer, language.
            let (rest, g) = gps(c)?;
            let (rest, _) = check(rest, out.gps(g))?;
            let (rest, phone) = take(21.min(rest.len().saturating_sub(2)))(rest)?;
            let phone = trim_zeros(phone);
            out.io_text("phone", phone);
            rest
        }
        0x32 | 0x33 if extended => az735(out, kind, c)?,
        0x32 | 0x33 => {
            // SL4X: GPS, then a layout of its own; kept whole after the fix.
            let (rest, g) = gps(c)?;
            check(rest, out.gps(g))?.0
        }
        0x34 => x1_gps(out, c)?,
        0x36 if models.vl => vl_location(out, c)?,
        0x36 => status_modules(out, c)?,
        0x38 => gps_lbs_8(out, c)?,
        0x61 => {
            // iButton reader: IMEI, GPS, cell, key.
            let (rest, imei) = take(8)(c)?;
            out.io_bytes("imei", imei);
            let rest = gps_cell(out, rest, CellLayout::CID32)?;
            let (rest, (high, low)) = nom::Parser::parse_complete(&mut (be_u32, be_u16), rest)?;
            let key = (u64::from(high) << 16) | u64::from(low);
            out.io("ibutton", key);
            out.attr(Attr::DriverId, AttrValue::Decimal(key));
            rest
        }
        0x69 => {
            // WiFi with CRC: decoded like the form without it, less the answer.
            wifi(out, c, usize::MAX)?.1
        }
        0x70 => modular(out, c)?,
        0x8C => obd(out, c)?,
        0x94 => information(out, c, extended)?,
        0x95 => alarm(out, c, extended)?,
        0xA1 => lbs_multiple(out, c, CellLayout::LTE, false)?,
        0xA2 if len == 59 => lw4g_location(out, c)?,
        0xA2 => lbs_multiple(out, c, CellLayout::LTE, true)?,
        0xA3 if len <= 7 => {
            // SeeWorld status: the status block less its language.
            let (rest, (info, level, gsm, code)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8, be_u8), c)?;
            out.info(info, false);
            out.level(level);
            out.gsm(gsm);
            out.alarm(code);
            rest
        }
        0xA3 if len < 26 => c,
        0xA3 => gps_cell(out, c, CellLayout::STANDARD)?,
        0xA4 => {
            // Multi-fence alarm: GPS, sized cell, status block, fence number.
            let (rest, g) = gps(c)?;
            let (rest, _) = check(rest, out.gps(g))?;
            let (rest, serving) = sized_cell(3)(rest)?;
            if let Some(serving) = serving {
                out.cell(serving);
            }
            let (rest, s) = status(rest)?;
            out.status(s);
            let (rest, fence) = be_u8(rest)?;
            out.io("geofence", u64::from(fence));
            rest
        }
        // LBS alarm: a 4G cell and the status block.
        0xA5 => cell_status(out, c, CellLayout::LTE)?,
        0xA7 => {
            // LBS address request: a 4G cell, the phone number, language.
            let (rest, serving) = cell(CellLayout::LTE)(c)?;
            out.cell(serving);
            rest
        }
        0xF1 => {
            // Time, then modules of id u16, length u8.
            let (rest, seconds) = be_u32(c)?;
            out.epoch_time(seconds);
            modules_u8(out, rest, |out, id, value| {
                if id == 0x0005 && value.len() == 2 {
                    out.volts(Attr::PowerVoltage, "power", u16::from_be_bytes([value[0], value[1]]));
                    true
                } else {
                    false
                }
            })?
        }
        0xF2 => {
            // Peripheral status: time, then status blocks of their own framing.
            let (rest, seconds) = be_u32(c)?;
            out.epoch_time(seconds);
            rest
        }
        0xF3 => {
            // WiFi: time, count, then per access point two reserved bytes and the MAC.
            let (rest, t) = time(c)?;
            let (rest, _) = check(rest, out.utc_time(t))?;
            let (rest, n) = be_u8(rest)?;
            let (rest, points) = take(8 * usize::from(n))(rest)?;
            out.io("wifi_count", u64::from(n));
            out.io_bytes("wifi", points);
            rest
        }
        _ => c,
    };
    out.rest(rest);
    Ok((&content[len..], ()))
}

/// The WiFi report without serial and CRC (frame form `Scan::Wifi`); `access_points` is
/// the count its length byte carries (`usize::MAX` with a CRC: then the count is not
/// known and the content is kept whole after the time).
pub fn wifi<'c>(out: &mut Out, content: &'c [u8], access_points: usize) -> Parsed<'c, &'c [u8]> {
    let (rest, t) = bcd_time(content)?;
    let (rest, _) = check(rest, out.utc_time(t))?;
    if access_points == usize::MAX {
        return Ok((rest, rest));
    }
    let (rest, points) = take(7 * access_points)(rest)?;
    out.io("wifi_count", access_points as u64);
    if !points.is_empty() {
        out.io_bytes("wifi", points);
    }
    let (rest, cells) = be_u8(rest)?;
    let (rest, (mcc, mnc)) = nom::Parser::parse_complete(&mut (be_u16, be_u8), rest)?;
    let (rest, list) = take(5 * usize::from(cells))(rest)?;
    if let Some(first) = list.get(..5) {
        out.cell(Cell {
            mcc,
            mnc: u16::from(mnc),
            lac: u32::from(u16::from_be_bytes([first[0], first[1]])),
            cid: u64::from(u16::from_be_bytes([first[2], first[3]])),
        });
        out.io("rssi", u64::from(first[4]));
    }
    if list.len() > 5 {
        out.io_bytes("cells", &list[5..]);
    }
    Ok((rest, rest))
}

fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

/// A driver key sent as bytes (all zero: no key), as hex.
fn driver_hex(out: &mut Out, key: &[u8]) {
    if key.iter().any(|&b| b != 0) {
        out.io_bytes("driver", key);
        out.attr_hex(Attr::DriverId, key);
    }
}

/// A serving cell, then the status block.
fn cell_status<'c>(out: &mut Out, c: &'c [u8], layout: CellLayout) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, serving) = cell(layout)(c)?;
    out.cell(serving);
    let (rest, s) = status(rest)?;
    out.status(s);
    Ok(rest)
}

/// GPS, then a serving cell.
fn gps_cell<'c>(out: &mut Out, c: &'c [u8], layout: CellLayout) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, g) = gps(c)?;
    let (rest, _) = check(rest, out.gps(g))?;
    let (rest, serving) = cell(layout)(rest)?;
    out.cell(serving);
    Ok(rest)
}

/// 0x12, by content length: 26 standard; 28 Benway (an IO mask); 30 with the odometer; 31
/// VXT01 (status, supply voltage); 36 WeTrust (odometer, card); 38 S5 (status, supply
/// voltage, oil, temperature, odometer); 108 and more GT06E (odometer, card). A QH302R
/// (registered model) puts its IMEI first.
fn gps_lbs_1<'c>(out: &mut Out, c: &'c [u8], models: Models) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let c = if models.qh302r {
        let (rest, imei) = take(8)(c)?;
        out.io_bytes("imei", imei);
        rest
    } else {
        c
    };
    let len = c.len();
    let rest = gps_cell(out, c, CellLayout::STANDARD)?;
    Ok(match len {
        28 => {
            let (rest, mask) = be_u16(rest)?;
            out.io("io_mask", u64::from(mask));
            out.attr(Attr::Ignition, AttrValue::Bool(mask & 0x8000 != 0));
            out.attr(Attr::Din2, AttrValue::Bool(mask & 0x4000 != 0));
            if mask & 0x1000 != 0 {
                let value = f64::from(mask & 0x01FF);
                out.attr(Attr::Temp1, AttrValue::Float(if mask & 0x0200 != 0 { -value } else { value }));
            } else if mask & 0x2000 == 0 {
                out.attr(Attr::Ain1, AttrValue::Float(f64::from(mask & 0x03FF) / 10.0));
            }
            rest
        }
        30 => {
            let (rest, odometer) = be_u32(rest)?;
            odometer_m(out, u64::from(odometer));
            rest
        }
        31 => {
            let (rest, (info, power, gsm, extension)) =
                nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u8, be_u8), rest)?;
            out.info(info, true);
            out.volts(Attr::PowerVoltage, "power", power);
            out.gsm(gsm);
            out.io("alarm_extension", u64::from(extension));
            rest
        }
        36 => {
            let (rest, odometer) = be_u32(rest)?;
            odometer_m(out, u64::from(odometer));
            let (rest, card) = counted(rest)?;
            card_id(out, card);
            let (rest, (alarm, card_status, driving)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u16), rest)?;
            if alarm > 0 {
                out.set_alarm("general");
            }
            out.io("card_status", u64::from(card_status));
            out.io("driving_time", u64::from(driving));
            rest
        }
        38 => {
            let (rest, (info, power, gsm, code, oil, temperature, odometer)) =
                nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u8, be_u8, be_u16, be_u8, be_u32), rest)?;
            out.info(info, false);
            out.volts(Attr::PowerVoltage, "power", power);
            out.gsm(gsm);
            out.alarm(code);
            out.io("oil", u64::from(oil));
            let degrees = f64::from(temperature & 0x7F);
            out.io("temperature", u64::from(temperature));
            out.attr(Attr::Temp1, AttrValue::Float(if temperature & 0x80 != 0 { -degrees } else { degrees }));
            odometer_m(out, u64::from(odometer) * 10);
            rest
        }
        108.. => {
            let (rest, odometer) = be_u32(rest)?;
            odometer_m(out, u64::from(odometer));
            let (rest, card) = counted(rest)?;
            card_id(out, card);
            let (rest, (alarm, swiped)) = nom::Parser::parse_complete(&mut (be_u8, be_u8), rest)?;
            out.io("card_alarm", u64::from(alarm));
            out.io("card_swiped", u64::from(swiped));
            rest
        }
        _ => rest,
    })
}

fn odometer_m(out: &mut Out, metres: u64) {
    out.io("odometer", metres);
    out.attr(Attr::Odometer, AttrValue::Int(metres as i64));
}

/// A driver card number sent as text: trimmed, kept when not blank.
fn card_id(out: &mut Out, card: &[u8]) {
    let start = card.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(card.len());
    let end = card.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    let trimmed = &card[start..end];
    if !trimmed.is_empty() {
        out.io_text("card", trimmed);
        out.attr_text(Attr::DriverId, trimmed);
    }
}

/// 0x16, 0x26, 0x27: GPS, sized cell, status block; 0x27 adds the geofence number. By
/// content length: 31 VXT01 (unsized cell, status, supply voltage); 33 SeeWorld (cell id
/// u32). Eight bytes after the status block are a driver key (VL103).
fn gps_lbs_status<'c>(
    out: &mut Out,
    kind: u8,
    c: &'c [u8],
    models: Models,
) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let len = c.len();
    if kind == 0x16 && len == 31 {
        let rest = gps_cell(out, c, CellLayout::STANDARD)?;
        let (rest, (info, power, gsm, extension)) =
            nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u8, be_u8), rest)?;
        out.info(info, true);
        out.volts(Attr::PowerVoltage, "power", power);
        out.gsm(gsm);
        out.io("alarm_extension", u64::from(extension));
        return Ok(rest);
    }
    let cid = if len == 33 || models.seeworld { 4 } else { 3 };
    let (rest, g) = gps(c)?;
    let (rest, _) = check(rest, out.gps(g))?;
    let (rest, serving) = sized_cell(cid)(rest)?;
    let rest = match serving {
        Some(serving) => {
            out.cell(serving);
            rest
        }
        // No cell, yet a zero-filled block of neighbour cells may follow.
        None if rest.len() >= 45 + 5 && rest[9..45].iter().all(|&b| b == 0) => &rest[45..],
        None => rest,
    };
    let (rest, s) = status(rest)?;
    out.status(s);
    let rest = if kind == 0x27 {
        let (rest, fence) = be_u8(rest)?;
        out.io("geofence", u64::from(fence));
        rest
    } else {
        rest
    };
    if rest.len() == 8 {
        driver_hex(out, rest);
        return Ok(&rest[8..]);
    }
    Ok(rest)
}

/// 0x13 status (heartbeat), by content length: 5 the status block (an LW model ends with
/// its supply voltage instead of alarm and language; SeeWorld sends the supply voltage in
/// volts as the alarm byte; R11 sends it where the level goes); 14 OBD6; 16 with battery
/// level, supply voltage and temperature.
fn status_message<'c>(out: &mut Out, c: &'c [u8], models: Models) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    Ok(match c.len() {
        14 => {
            let (rest, (info, signal, code, language, level, mode, power, _, working)) = nom::Parser::parse_complete(
                &mut (be_u8, be_u16, be_u8, be_u8, be_u8, be_u8, be_u16, be_u8, be_u16),
                c,
            )?;
            out.info(info, false);
            out.satellites(((signal >> 10) & 0x1F) + ((signal >> 5) & 0x1F));
            out.io("signal", u64::from(signal));
            out.alarm(code);
            out.io("language", u64::from(language));
            out.io("battery_level", u64::from(level));
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(level)));
            out.io("mode", u64::from(mode));
            out.volts(Attr::PowerVoltage, "power", power);
            out.io("working_time", u64::from(working));
            let (rest, temperature) = be_i16(rest)?;
            out.io("temperature", temperature as u16 as u64);
            if mode == 4 {
                out.attr(Attr::Temp1, AttrValue::Float(f64::from(temperature) / 10.0));
            }
            rest
        }
        16 => {
            let (rest, (info, satellites, code, language, level, mode, voltage, _, times, working, temperature)) =
                nom::Parser::parse_complete(
                    &mut (be_u8, be_u16, be_u8, be_u8, be_u8, be_u8, be_u16, be_u8, be_u16, be_u16, be_u16),
                    c,
                )?;
            out.info(info, false);
            out.io("satellites", u64::from(satellites));
            out.alarm(code);
            out.io("language", u64::from(language));
            out.io("battery_level", u64::from(level));
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(level)));
            out.io("mode", u64::from(mode));
            out.io("working_voltage", u64::from(voltage));
            out.io("working_times", u64::from(times));
            out.io("working_time", u64::from(working));
            out.io("temperature", u64::from(temperature));
            let degrees = f64::from(temperature & 0x7FFF) / 10.0;
            out.attr(Attr::Temp1, AttrValue::Float(if temperature & 0x8000 != 0 { degrees } else { -degrees }));
            rest
        }
        _ if models.lw => {
            let (rest, (info, level, gsm, power)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8, be_u16), c)?;
            out.info(info, false);
            out.level(level);
            out.gsm(gsm);
            out.io("power", u64::from(power));
            out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(power & 0x0FFF) / 10.0));
            rest
        }
        _ if models.r11 => {
            let (rest, (info, power, gsm, code)) = nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u8, be_u8), c)?;
            out.info(info, false);
            out.volts(Attr::PowerVoltage, "power", power);
            out.gsm(gsm);
            out.alarm(code);
            rest
        }
        _ => {
            let (rest, s) = status(c)?;
            if models.seeworld {
                out.info(s.info, false);
                out.level(s.level);
                out.gsm(s.gsm);
                out.io("power", u64::from(s.alarm));
                out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(s.alarm)));
                out.io("language", u64::from(s.language));
            } else {
                out.status(s);
            }
            rest
        }
    })
}

/// 0x23 heartbeat: terminal info (bit 0 armed, bit 1 ACC, bit 2 charging), battery
/// voltage, GSM signal, language.
fn heartbeat<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (mut rest, info) = be_u8(c)?;
    out.io("status", u64::from(info));
    out.attr(Attr::Armed, AttrValue::Bool(info & 0x01 != 0));
    out.attr(Attr::Ignition, AttrValue::Bool(info & 0x02 != 0));
    out.attr(Attr::Charging, AttrValue::Bool(info & 0x04 != 0));
    if rest.len() >= 2 {
        let (after, battery) = be_u16(rest)?;
        out.volts(Attr::BatteryVoltage, "battery", battery);
        rest = after;
    }
    if !rest.is_empty() {
        let (after, gsm) = be_u8(rest)?;
        out.gsm(gsm);
        rest = after;
    }
    if rest.len() == 2 {
        let (after, language) = be_u16(rest)?;
        out.io("language", u64::from(language));
        rest = after;
    }
    Ok(rest)
}

/// 0x22, 0x2D, 0x31, 0x37, 0xA0: GPS, cell, then ACC, upload reason and re-upload flag
/// when present; 0x37 and later firmware add modules (id u16, length u8). 0x31 of SL4X
/// units (37 bytes) and 0xA0 carry a 4G cell.
fn gps_lbs_acc<'c>(out: &mut Out, kind: u8, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let layout = match kind {
        0xA0 => CellLayout::LTE,
        0x31 if c.len() == 37 => CellLayout { wide_mnc: true, lac: 2, cid: 8 },
        _ => CellLayout::STANDARD,
    };
    let mut rest = gps_cell(out, c, layout)?;
    if rest.len() >= 3 {
        let (after, (acc, reason, reupload)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8), rest)?;
        out.attr(Attr::Ignition, AttrValue::Bool(acc > 0));
        out.io("event", u64::from(reason));
        out.io("archive", u64::from(reupload));
        rest = after;
    }
    if kind == 0x31 && rest.len() == 2 {
        let (after, altitude) = be_i16(rest)?;
        out.altitude(f64::from(altitude));
        rest = after;
    }
    if kind == 0x37 {
        rest = modules_u8(out, rest, known_module)?;
    } else if rest.len() == 4 {
        let (after, odometer) = be_u32(rest)?;
        odometer_m(out, u64::from(odometer));
        rest = after;
    }
    Ok(rest)
}

/// Modules of id u16, length u8, value: the supply voltage (0x27), odometer (0x2E) and
/// accuracy (0x3B) are read; each module is kept as `module_<id>`.
fn known_module(out: &mut Out, id: u16, value: &[u8]) -> bool {
    match (id, value.len()) {
        (0x0027, 2) => out.volts(Attr::PowerVoltage, "power", u16::from_be_bytes([value[0], value[1]])),
        (0x002E, 4) => odometer_m(out, u64::from(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))),
        (0x003B, 2) => out.io("accuracy", u64::from(u16::from_be_bytes([value[0], value[1]]))),
        _ => return false,
    }
    true
}

/// Modules of id u16, length u8, value, to the end; `read` takes those it knows, the
/// rest are kept raw (`modules`).
fn modules_u8<'c>(
    out: &mut Out,
    mut rest: &'c [u8],
    read: impl Fn(&mut Out, u16, &[u8]) -> bool,
) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let start = rest;
    let mut unknown = false;
    while !rest.is_empty() {
        let (after, id) = be_u16(rest)?;
        let (after, value) = counted(after)?;
        unknown |= !read(out, id, value);
        rest = after;
    }
    if unknown {
        out.io_bytes("modules", start);
    }
    Ok(rest)
}

/// NT20, VL100 and XT40 0x22 (and XT40 0x25): location source, IMEI, device time, GPS,
/// sized cell, terminal info, supply voltage, battery, GSM signal, alarm, language, then
/// (0x22) odometer and engine minutes, three bytes each.
fn nt_location<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, source) = be_u8(c)?;
    out.io("source", u64::from(source));
    let (rest, imei) = take(8)(rest)?;
    out.io_bytes("imei", imei);
    let (rest, _device_time) = time(rest)?;
    let (rest, g) = gps(rest)?;
    let (rest, _) = check(rest, out.gps(g))?;
    let (rest, serving) = sized_cell(3)(rest)?;
    if let Some(serving) = serving {
        out.cell(serving);
    }
    if c.len() != 55 {
        // XT40 0x25: the rest is its own; a driver key framed by STX and ETX ends it.
        let end = rest.len();
        if end >= 2 && rest[end - 1] == 0x03 {
            if let Some(start) = rest.iter().rposition(|&b| b == 0x02) {
                out.io_bytes("status_block", &rest[..start]);
                driver_hex(out, &rest[start..]);
                return Ok(&rest[end..]);
            }
        }
        return Ok(rest);
    }
    let (rest, (info, power, battery, gsm, code, language)) =
        nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u8, be_u8, be_u8, be_u8), rest)?;
    out.info(info, false);
    out.volts(Attr::PowerVoltage, "power", power);
    out.io("battery", u64::from(battery));
    out.attr(Attr::BatteryVoltage, AttrValue::Float(f64::from(battery) / 10.0));
    out.gsm(gsm);
    out.alarm(code);
    out.io("language", u64::from(language));
    let (rest, odometer) = take(3)(rest)?;
    odometer_m(out, u64::from(u32::from_be_bytes([0, odometer[0], odometer[1], odometer[2]])));
    let (rest, minutes) = take(3)(rest)?;
    let minutes = u32::from_be_bytes([0, minutes[0], minutes[1], minutes[2]]);
    out.io("engine_minutes", u64::from(minutes));
    out.attr(Attr::EngineHours, AttrValue::Float(f64::from(minutes) / 60.0));
    Ok(rest)
}

/// SeeWorld 0x22 (42 bytes): GPS, cell with a u32 id, ACC, reporting mode,
/// re-upload flag, odometer, travel time, temperature (hundredths, bit 15 the sign),
/// humidity (hundredths).
fn seeworld_location<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let rest = gps_cell(out, c, CellLayout::CID32)?;
    let (rest, (acc, mode, reupload, odometer, travel, temperature, humidity)) =
        nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8, be_u32, be_u32, be_u16, be_u16), rest)?;
    out.attr(Attr::Ignition, AttrValue::Bool(acc > 0));
    out.io("mode", u64::from(mode));
    out.io("archive", u64::from(reupload));
    odometer_m(out, u64::from(odometer));
    out.io("travel_time", u64::from(travel));
    out.io("temperature", u64::from(temperature));
    let degrees = f64::from(temperature & 0x7FFF) / 100.0;
    out.attr(Attr::Temp1, AttrValue::Float(if temperature & 0x8000 != 0 { -degrees } else { degrees }));
    out.io("humidity", u64::from(humidity));
    out.attr(Attr::Humidity, AttrValue::Float(f64::from(humidity) / 100.0));
    Ok(rest)
}

/// VL103 0x36: GPS, cell with a u32 id, a status run whose tenth byte is the battery in
/// tenths of a volt, and a driver key in the last eight bytes.
fn vl_location<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let rest = gps_cell(out, c, CellLayout::CID32)?;
    let (rest, block) = take(rest.len().saturating_sub(8))(rest)?;
    out.io_bytes("status_block", block);
    if let Some(&battery) = block.get(9) {
        out.attr(Attr::BatteryVoltage, AttrValue::Float(f64::from(battery) / 10.0));
    }
    let (rest, key) = take(rest.len())(rest)?;
    driver_hex(out, key);
    Ok(rest)
}

/// 0x36 of Jimi 4G units: the status block, then modules of id u16, length u8: battery
/// voltage (0x18), startup status (0x32), battery level (0x6A).
fn status_modules<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, s) = status(c)?;
    out.status(s);
    modules_u8(out, rest, |out, id, value| match (id, value.len()) {
        (0x0018, 2) => {
            out.volts(Attr::BatteryVoltage, "battery", u16::from_be_bytes([value[0], value[1]]));
            true
        }
        (0x0032, 1) => {
            out.io("startup_status", u64::from(value[0]));
            true
        }
        (0x006A, 1) => {
            out.io("battery_level", u64::from(value[0]));
            out.attr(Attr::BatteryLevel, AttrValue::Int(i64::from(value[0])));
            true
        }
        _ => false,
    })
}

/// 0x38: GPS, upload mode, re-upload flag, a typed cell (type 3 and up: 4G, with a u16
/// signal), then modules.
fn gps_lbs_8<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, g) = gps(c)?;
    let (rest, _) = check(rest, out.gps(g))?;
    let (rest, (mode, reupload, cell_type)) = nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8), rest)?;
    out.io("mode", u64::from(mode));
    out.io("archive", u64::from(reupload));
    let layout = if cell_type >= 3 { CellLayout::LTE } else { CellLayout::STANDARD };
    let (rest, serving) = cell(layout)(rest)?;
    out.cell(serving);
    let (rest, rssi) = if cell_type >= 3 { be_u16(rest)? } else { be_u8(rest).map(|(r, v)| (r, u16::from(v)))? };
    out.io("rssi", u64::from(rssi));
    modules_u8(out, rest, known_module)
}

/// LW4G 0xA2 (59 bytes): GPS, 4G cell, network, status, supply voltage, level, GSM,
/// alarm, language, odometer, working seconds, terminal id, inputs.
fn lw4g_location<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let rest = gps_cell(out, c, CellLayout::LTE)?;
    let (rest, (network, info, power, level, gsm, code, language)) =
        nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u16, be_u8, be_u8, be_u8, be_u8), rest)?;
    out.io("network", u64::from(network));
    out.info(info, false);
    out.volts(Attr::PowerVoltage, "power", power);
    out.level(level);
    out.gsm(gsm);
    out.alarm(code);
    out.io("language", u64::from(language));
    let (rest, (odometer, seconds)) = nom::Parser::parse_complete(&mut (be_u32, be_u32), rest)?;
    odometer_m(out, u64::from(odometer));
    out.io("working_seconds", u64::from(seconds));
    out.attr(Attr::EngineHours, AttrValue::Float(f64::from(seconds) / 3600.0));
    let (rest, terminal) = take(8)(rest)?;
    out.io_bytes("terminal_id", terminal);
    let (rest, inputs) = be_u16(rest)?;
    out.io("inputs", u64::from(inputs));
    Ok(rest)
}

/// LBS reports: time, MCC, MNC, seven cells (LAC, cell id, signal), timing advance;
/// `with_wifi`: then a counted list of access points (MAC, signal).
fn lbs_multiple<'c>(
    out: &mut Out,
    c: &'c [u8],
    layout: CellLayout,
    with_wifi: bool,
) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, t) = time(c)?;
    let (rest, _) = check(rest, out.time(t))?;
    let (rest, _) = cell_list(out, rest, layout, Some(7))?;
    let (rest, advance) = be_u8(rest)?;
    out.io("timing_advance", u64::from(advance));
    if !with_wifi || rest.is_empty() {
        return Ok(rest);
    }
    let (rest, n) = be_u8(rest)?;
    let (rest, points) = take(7 * usize::from(n))(rest)?;
    out.io("wifi_count", u64::from(n));
    if !points.is_empty() {
        out.io_bytes("wifi", points);
    }
    Ok(rest)
}

/// MCC, MNC, then `count` cells (or a count byte first) of LAC, cell id, signal: the
/// first is the serving cell, the others are kept raw (`cells`).
fn cell_list<'c>(
    out: &mut Out,
    c: &'c [u8],
    layout: CellLayout,
    count: Option<usize>,
) -> Result<(&'c [u8], ()), nom::Err<kit::Error<'c>>> {
    let (rest, mcc) = be_u16(c)?;
    let (rest, mnc) = if mcc & 0x8000 != 0 { be_u16(rest)? } else { be_u8(rest).map(|(r, v)| (r, u16::from(v)))? };
    let (rest, count) = match count {
        Some(n) => (rest, n),
        None => be_u8(rest).map(|(r, n)| (r, usize::from(n)))?,
    };
    let size = layout.lac + layout.cid + 1;
    let (rest, list) = take(size * count)(rest)?;
    if let Some(first) = list.get(..size) {
        let (_, signal) = be_u8(&first[size - 1..])?;
        let (after, lac) = kit::be_uint(layout.lac)(first)?;
        let cid = match layout.cid {
            3 => u64::from(u32::from_be_bytes([0, after[0], after[1], after[2]])),
            n => kit::be_uint(n)(after)?.1,
        };
        if lac > 0 || cid > 0 {
            out.cell(Cell { mcc: mcc & 0x7FFF, mnc, lac: lac as u32, cid });
            out.io("rssi", u64::from(signal));
        }
    }
    if list.len() > size && list[size..].iter().any(|&b| b != 0) {
        out.io_bytes("cells", &list[size..]);
    }
    Ok((rest, ()))
}

/// AZ735 (extended 0x32 location, 0x33 alarm): GPS behind a length byte (0: none, just
/// the time), a sized cell and its signal, counted extra cells and access points, a
/// status byte (0x33: A0 armed, A1 disarmed, A2/A3 low battery, A4 general, A5 door),
/// and a counted reserved part.
fn az735<'c>(out: &mut Out, kind: u8, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, t) = time(c)?;
    let (rest, gps_len) = be_u8(rest)?;
    let rest = if gps_len == 0 {
        check(rest, out.time(t))?.0
    } else {
        let (rest, (info, lat, lon, speed, flags)) =
            nom::Parser::parse_complete(&mut (be_u8, be_u32, be_u32, be_u8, be_u16), rest)?;
        let fix = super::fields::Gps { time: t, satellites: info & 0x0F, lat, lon, speed: u16::from(speed), flags };
        check(rest, out.gps(fix))?.0
    };
    let (rest, serving) = sized_cell(3)(rest)?;
    let rest = match serving {
        Some(serving) => {
            out.cell(serving);
            let (rest, rssi) = be_u8(rest)?;
            out.io("rssi", u64::from(rssi));
            rest
        }
        None => rest,
    };
    let (rest, cells) = counted(rest)?;
    if !cells.is_empty() {
        out.io_bytes("cells", cells);
    }
    let (rest, points) = counted(rest)?;
    if !points.is_empty() {
        out.io_bytes("wifi", points);
    }
    let (rest, state) = be_u8(rest)?;
    out.io("status", u64::from(state));
    if kind == 0x33 {
        match state {
            0xA0 => out.attr(Attr::Armed, AttrValue::Bool(true)),
            0xA1 => out.attr(Attr::Armed, AttrValue::Bool(false)),
            0xA2 | 0xA3 => out.set_alarm("low_battery"),
            0xA4 => out.set_alarm("general"),
            0xA5 => out.set_alarm("door"),
            _ => {}
        }
    }
    let (rest, reserved) = counted(rest)?;
    if !reserved.is_empty() {
        out.io_bytes("reserved", reserved);
    }
    Ok(rest)
}

/// X1 0x34: data and alarm word, GPS, terminal info, odometer, cell (u32 id), driver,
/// battery and supply voltage, port info, inputs, outputs, then analog inputs (as many
/// as port info bits 20-23 say), hundredths of a volt.
fn x1_gps<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, word) = be_u32(c)?;
    out.io("alarm_word", u64::from(word));
    let (rest, g) = gps(rest)?;
    let (rest, _) = check(rest, out.gps(g))?;
    let (rest, (terminal, odometer)) = nom::Parser::parse_complete(&mut (be_u16, be_u32), rest)?;
    out.io("terminal_info", u64::from(terminal));
    odometer_m(out, u64::from(odometer));
    let (rest, serving) = cell(CellLayout::CID32)(rest)?;
    out.cell(serving);
    let (rest, (driver, battery, power, ports, inputs, outputs)) =
        nom::Parser::parse_complete(&mut (be_u32, be_u16, be_u16, be_u32, be_u8, be_u8), rest)?;
    if driver > 0 {
        out.io("driver", u64::from(driver));
    }
    out.volts(Attr::BatteryVoltage, "battery", battery);
    out.volts(Attr::PowerVoltage, "power", power);
    out.io("ports", u64::from(ports));
    out.io("inputs", u64::from(inputs));
    out.io("outputs", u64::from(outputs));
    let mut rest = rest;
    const AIN: [Attr; 8] =
        [Attr::Ain1, Attr::Ain2, Attr::Ain3, Attr::Ain4, Attr::Ain5, Attr::Ain6, Attr::Ain7, Attr::Ain8];
    const AIN_IO: [&str; 8] = ["adc1", "adc2", "adc3", "adc4", "adc5", "adc6", "adc7", "adc8"];
    let analog = ((ports >> 20) & 0x0F) as usize;
    for i in 0..analog.min(8) {
        let (after, value) = be_u16(rest)?;
        out.volts(AIN[i], AIN_IO[i], value);
        rest = after;
    }
    Ok(rest)
}

/// 0x70 modules (id u16, length u16): ICCID (0x03), satellites (0x09), visible
/// satellites (0x0A), cell (0x11), battery (0x18), HDOP (0x28), record index (0x29),
/// inputs (0x2A: door, tamper), boot reason (0x2B), odometer little-endian (0x2E), GPS
/// (0x33), event (0x34), BLE tag (0x7F); the others are kept raw.
fn modular<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let mut rest = c;
    let mut unknown = false;
    while !rest.is_empty() {
        let (after, (id, length)) = nom::Parser::parse_complete(&mut (be_u16, be_u16), rest)?;
        let (after, value) = take(usize::from(length))(after)?;
        rest = after;
        let v = value;
        match (id, v.len()) {
            (0x03, 10) => {
                out.io_bytes("iccid", v);
                out.attr_digits(Attr::Iccid, v);
            }
            (0x09, 1) => out.satellites(u16::from(v[0])),
            (0x0A, 1) => out.io("satellites_visible", u64::from(v[0])),
            (0x11, 10) => {
                let (tail, (mcc, mnc, lac)) = nom::Parser::parse_complete(&mut (be_u16, be_u16, be_u16), v)?;
                let cid = u64::from(u32::from_be_bytes([0, tail[0], tail[1], tail[2]]));
                if cid > 0 {
                    out.cell(Cell { mcc, mnc, lac: u32::from(lac), cid });
                    out.io("rssi", u64::from(tail[3]));
                }
            }
            (0x18, 2) => out.volts(Attr::BatteryVoltage, "battery", u16::from_be_bytes([v[0], v[1]])),
            (0x28, 1) => {
                out.io("hdop", u64::from(v[0]));
                out.attr(Attr::Hdop, AttrValue::Float(f64::from(v[0]) / 10.0));
            }
            (0x29, 4) => out.io("index", u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
            (0x2A, 1) => {
                out.io("inputs", u64::from(v[0]));
                out.attr(Attr::Door, AttrValue::Bool(v[0] & 0x0F > 0));
            }
            (0x2B, 1) => out.io("boot_reason", u64::from(v[0])),
            (0x2E, 4) => odometer_m(out, u64::from(le_u32(v)?.1)),
            (0x33, 18) => {
                // Time (seconds since the epoch, 0 for none), satellites, altitude, then
                // the GPS block's coordinates, speed and status word.
                let (_, (seconds, satellites, altitude, lat, lon, speed, flags)) =
                    nom::Parser::parse_complete(&mut (be_u32, be_u8, be_i16, be_u32, be_u32, be_u8, be_u16), v)?;
                let time = super::fields::Civil([0; 6]);
                out.located(super::fields::Gps { time, satellites, lat, lon, speed: u16::from(speed), flags });
                if seconds > 0 {
                    out.epoch_time(seconds);
                }
                out.altitude(f64::from(altitude));
            }
            (0x34, 6..) => {
                let code = v[0];
                out.io("event", u64::from(code));
                let name = match code {
                    0x10 => Some("door"),
                    0x12 => Some("removing"),
                    0x14 => Some("geofence_enter"),
                    0x15 => Some("geofence_exit"),
                    0x16 => Some("temperature"),
                    0x1A => Some("low_battery"),
                    0x1B => Some("overspeed"),
                    0x1C => Some("power_on"),
                    0x1D => Some("power_off"),
                    0x20 => Some("vibration"),
                    0x21 => Some("power_cut"),
                    0x23 => Some("tampering"),
                    _ => None,
                };
                if let Some(name) = name {
                    out.set_alarm(name);
                }
            }
            (0x7F, 14) => {
                out.io_bytes("tag1_id", &v[..6]);
                out.io("tag1_battery", u64::from(u16::from_be_bytes([v[6], v[7]])));
                out.io("tag1_battery_level", u64::from(v[8]));
                out.io("tag1_temp", u64::from(u16::from_be_bytes([v[9], v[10]])));
                out.io("tag1_humidity", u64::from(u16::from_be_bytes([v[11], v[12]])));
                out.io("tag1_status", u64::from(v[13]));
            }
            _ => unknown = true,
        }
    }
    if unknown {
        out.io_bytes("modules", c);
    }
    Ok(rest)
}

/// 0x8C OBD: time, ACC, then `id=value` pairs (hex values) and a 12-byte tail.
/// Parameter ids (the first two hex digits): 28 odometer (0.01 km), 2B fuel level (0.01
/// %), 2D coolant (0.01 °C), 35 speed (0.01 km/h), 36 rpm (0.01), 47 fuel used (0.01 l),
/// 49 engine hours (0.01 h), 4A VIN.
fn obd<'c>(out: &mut Out, c: &'c [u8]) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let (rest, t) = time(c)?;
    let (rest, _) = check(rest, out.time(t))?;
    let (rest, acc) = be_u8(rest)?;
    out.attr(Attr::Ignition, AttrValue::Bool(acc > 0));
    let (tail, text) = take(rest.len().saturating_sub(12))(rest)?;
    for pair in text.split(|&b| b == b',') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
        let (key, value) = (&pair[..eq], &pair[eq + 1..]);
        if key.is_empty() || !key.is_ascii() || !value.is_ascii() {
            continue;
        }
        out.io_named_text(key, value);
        let id = key.get(..2).and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| u8::from_str_radix(k, 16).ok());
        let number = std::str::from_utf8(value).ok().and_then(|v| u64::from_str_radix(v, 16).ok());
        let (Some(id), Some(number)) = (id, number) else { continue };
        let hundredths = number as f64 / 100.0;
        match id {
            0x28 => out.attr(Attr::Odometer, AttrValue::Float(hundredths * 1000.0)),
            0x2B => out.attr(Attr::FuelLevel, AttrValue::Float(hundredths)),
            0x2D => out.attr(Attr::CoolantTemp, AttrValue::Float(hundredths)),
            0x35 => out.attr(Attr::ObdSpeed, AttrValue::Float(hundredths)),
            0x36 => out.attr(Attr::Rpm, AttrValue::Float(hundredths)),
            0x47 => out.attr(Attr::FuelUsed, AttrValue::Float(hundredths)),
            0x49 => out.attr(Attr::EngineHours, AttrValue::Float(hundredths)),
            _ => {}
        }
    }
    Ok(tail)
}

/// 0x94 information, by subtype: 00 analog input 1 (0.01 V); 04 `KEY=value;` status
/// text; 05 door and input (after an optional time); 0A IMEI, IMSI and ICCID; 0B network
/// (one byte: 4G or 2G) or supply voltage (two bytes, 0.01 V); 0D fuel sensor text
/// (`!AIOIL,...`, after an optional time); 1B a driver key, or an RFID reader's text; 1E
/// temperature and humidity (tenths). A basic frame carries the supply voltage alone.
fn information<'c>(out: &mut Out, c: &'c [u8], extended: bool) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    if !extended {
        let (rest, power) = be_i16(c)?;
        out.io("power", power as u16 as u64);
        out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(power) / 100.0));
        return Ok(rest);
    }
    let (rest, subtype) = be_u8(c)?;
    out.io("info_type", u64::from(subtype));
    Ok(match subtype {
        0x00 => {
            let (rest, adc) = be_u16(rest)?;
            out.volts(Attr::Ain1, "adc1", adc);
            rest
        }
        0x04 => {
            out.io_text("status_text", rest);
            for pair in rest.split(|&b| b == b';') {
                if let Some(iccid) = pair.strip_prefix(b"ICCID=") {
                    out.attr_text(Attr::Iccid, iccid);
                }
            }
            &rest[rest.len()..]
        }
        0x05 => {
            let rest = if rest.len() >= 7 {
                let (rest, t) = time(rest)?;
                check(rest, out.time(t))?.0
            } else {
                rest
            };
            let (rest, flags) = be_u8(rest)?;
            out.io("door_flags", u64::from(flags));
            out.attr(Attr::Door, AttrValue::Bool(flags & 0x01 != 0));
            out.attr(Attr::Din1, AttrValue::Bool(flags & 0x04 != 0));
            rest
        }
        0x0A => {
            let (rest, (imei, imsi, iccid)) = nom::Parser::parse_complete(&mut (take(8), take(8), take(10)), rest)?;
            out.io_bytes("imei", imei);
            out.io_bytes("imsi", imsi);
            out.io_bytes("iccid", iccid);
            out.attr_digits(Attr::Iccid, iccid);
            rest
        }
        0x0B if rest.len() == 1 => {
            out.io("network", u64::from(rest[0]));
            &rest[1..]
        }
        0x0B if rest.len() == 2 => {
            let (rest, power) = be_u16(rest)?;
            out.volts(Attr::PowerVoltage, "power", power);
            rest
        }
        0x0D => {
            let rest = if rest.first() != Some(&b'!') && rest.len() > 6 {
                let (rest, t) = time(rest)?;
                check(rest, out.time(t))?.0
            } else {
                rest
            };
            out.io_text("fuel_sensor", rest);
            let fields: Vec<&[u8]> = rest.split(|&b| b == b',').collect();
            if fields.first() == Some(&&b"!AIOIL"[..]) {
                if let Some(temperature) = fields.get(3).and_then(|f| number(f)) {
                    out.attr(Attr::Temp1, AttrValue::Float(temperature));
                }
            }
            &rest[rest.len()..]
        }
        0x1B if rest.first().is_some_and(u8::is_ascii_alphabetic) => {
            let end = rest.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
            out.io_text("serial", &rest[..end]);
            &rest[rest.len()..]
        }
        0x1B => {
            let (rest, (_, _, key, _, _)) =
                nom::Parser::parse_complete(&mut (be_u8, be_u8, take(4), be_u8, be_u8), rest)?;
            driver_hex(out, key);
            rest
        }
        0x1E => {
            let (rest, (temperature, humidity)) = nom::Parser::parse_complete(&mut (be_i32, be_i32), rest)?;
            out.attr(Attr::Temp1, AttrValue::Float(f64::from(temperature) / 10.0));
            out.attr(Attr::Humidity, AttrValue::Float(f64::from(humidity) / 10.0));
            out.io("temperature", temperature as u32 as u64);
            out.io("humidity", humidity as u32 as u64);
            rest
        }
        _ => rest,
    })
}

fn number(field: &[u8]) -> Option<f64> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

/// 0x95 alarm: a basic frame carries time and alarm code; an extended one GPS without
/// satellites and speed, or (JC400, marked FFFF) a version, its own GPS block and the
/// supply voltage, then event code, event data and the names of recorded video files.
fn alarm<'c>(out: &mut Out, c: &'c [u8], extended: bool) -> Result<&'c [u8], nom::Err<kit::Error<'c>>> {
    let jc400 = c.starts_with(&[0xFF, 0xFF]);
    let long = c.len() > 7;
    let rest = if jc400 {
        let (rest, (_, version)) = nom::Parser::parse_complete(&mut (be_u16, be_u8), c)?;
        out.io("version", u64::from(version));
        let (rest, g) = gps_jc400(rest)?;
        let (rest, _) = check(rest, out.gps(g))?;
        let (rest, power) = be_u16(rest)?;
        out.io("power", u64::from(power));
        out.attr(Attr::PowerVoltage, AttrValue::Float(f64::from(power) / 10.0));
        rest
    } else if long {
        let (rest, (t, lat, lon, flags)) = nom::Parser::parse_complete(&mut (time, be_u32, be_u32, be_u16), c)?;
        let fix = super::fields::Gps { time: t, satellites: 0, lat, lon, speed: 0, flags };
        let (rest, _) = check(rest, out.gps(fix))?;
        rest
    } else {
        let (rest, t) = time(c)?;
        check(rest, out.time(t))?.0
    };
    let _ = extended;
    let (rest, code) = be_u8(rest)?;
    out.io("event", u64::from(code));
    let name = match code {
        0x01 if long => Some("sos"),
        0x01 => Some("general"),
        0x0E => Some("low_power"),
        0x76 => Some("temperature"),
        0x80 => Some("vibration"),
        0x87 => Some("overspeed"),
        0x88 => Some("power_cut"),
        0x90 => Some("harsh_acceleration"),
        0x91 => Some("harsh_braking"),
        0x92 => Some("harsh_cornering"),
        0x93 => Some("crash"),
        _ if !long => Some("general"),
        _ => None,
    };
    if let Some(name) = name {
        out.set_alarm(name);
    }
    if rest.len() >= 2 && long {
        let (after, data) = be_u16(rest)?;
        out.io("event_data", u64::from(data));
        if !after.is_empty() {
            out.io_text("event_files", after);
        }
        return Ok(&after[after.len()..]);
    }
    Ok(rest)
}
