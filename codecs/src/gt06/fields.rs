//! The blocks GT06 messages are built from, as nom parsers, and [`Out`], which writes what
//! they hold into the position being decoded.
//!
//! | block | bytes | holds |
//! |---|---|---|
//! | time | 6 | YY MM DD hh mm ss, binary, in the device's clock |
//! | GPS | 18 | time, GPS info (low nibble: satellites), latitude and longitude (u32, 1/1,800,000 degree), speed (km/h), course and status (u16) |
//! | cell | 8..15 | MCC (u16; bit 15: the MNC takes two bytes), MNC, LAC (u16, or u32 on 4G), cell id (u24, u32, or u64 on 4G) |
//! | status | 5 | terminal info, voltage level (0-6), GSM signal (0-4), alarm code, language |
//!
//! The course and status word: bits 0-9 course, bit 10 set for north latitude, bit 11 set
//! for west longitude, bit 12 the fix is valid, bit 14 set when bit 15 carries ACC.
//!
//! The terminal info byte: bit 0 armed (defence), bit 1 ACC (ignition), bit 2 charging,
//! bits 3-5 an alarm (1 vibration, 2 power cut, 3 low battery, 4 SOS, 6 geofence, 7
//! removing), bit 6 GPS tracking on, bit 7 oil and electricity cut.

use bytes::Bytes;

use crate::attrs::Attr;
pub use crate::kit::counted;
use crate::kit::{self, Parsed, be_u8, be_u16, be_u32, coordinates, take};
use crate::position::{AttrValue, Batch};
use crate::time::UtcMillis;

/// The six time bytes as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil(pub [u8; 6]);

/// Six binary time bytes.
pub fn time(input: &[u8]) -> Parsed<'_, Civil> {
    kit::array::<6>(input).map(|(rest, bytes)| (rest, Civil(bytes)))
}

/// Six BCD time bytes (WiFi reports), as their binary equivalent.
pub fn bcd_time(input: &[u8]) -> Parsed<'_, Civil> {
    let (rest, bytes) = kit::array::<6>(input)?;
    let mut civil = [0u8; 6];
    for (value, byte) in civil.iter_mut().zip(bytes) {
        if byte >> 4 > 9 || byte & 0x0F > 9 {
            return kit::invalid(input, format!("BCD time byte 0x{byte:02X} holds a nibble over 9"));
        }
        *value = (byte >> 4) * 10 + (byte & 0x0F);
    }
    Ok((rest, Civil(civil)))
}

impl Civil {
    /// The instant, for a clock `offset_minutes` east of UTC; `Ok(None)` for the all-zero
    /// time devices send before they ever had one, `Err` for a date that does not exist.
    pub fn instant(self, offset_minutes: i32) -> Result<Option<UtcMillis>, String> {
        let [year, month, day, hour, minute, second] = self.0;
        if self.0 == [0; 6] {
            return Ok(None);
        }
        let local = UtcMillis::from_civil(
            2000 + i64::from(year),
            u32::from(month),
            u32::from(day),
            u32::from(hour),
            u32::from(minute),
            u32::from(second),
        )
        .ok_or_else(|| {
            format!("time 20{year:02}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} is not a calendar time")
        })?;
        Ok(Some(UtcMillis(local.0 - i64::from(offset_minutes) * 60_000)))
    }
}

/// The GPS block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gps {
    /// Fix time.
    pub time: Civil,
    /// Satellites in use (the low nibble of the GPS info byte).
    pub satellites: u8,
    /// 1/1,800,000 degree, unsigned.
    pub lat: u32,
    /// 1/1,800,000 degree, unsigned.
    pub lon: u32,
    /// km/h.
    pub speed: u16,
    /// Course and status word.
    pub flags: u16,
}

/// The 18-byte GPS block.
pub fn gps(input: &[u8]) -> Parsed<'_, Gps> {
    let (rest, (time, info, lat, lon, speed, flags)) =
        nom::Parser::parse_complete(&mut (time, be_u8, be_u32, be_u32, be_u8, be_u16), input)?;
    Ok((rest, Gps { time, satellites: info & 0x0F, lat, lon, speed: u16::from(speed), flags }))
}

/// The GPS block of JC400 alarms: satellites, coordinates, then the status word before a
/// two-byte speed.
pub fn gps_jc400(input: &[u8]) -> Parsed<'_, Gps> {
    let (rest, (time, info, lat, lon, flags, speed)) =
        nom::Parser::parse_complete(&mut (time, be_u8, be_u32, be_u32, be_u16, be_u16), input)?;
    Ok((rest, Gps { time, satellites: info & 0x0F, lat, lon, speed, flags }))
}

/// A serving cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location area code.
    pub lac: u32,
    /// Cell id.
    pub cid: u64,
}

/// How wide a message's cell fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellLayout {
    /// The MNC always takes two bytes (else only when MCC bit 15 says so).
    pub wide_mnc: bool,
    /// Bytes of the LAC: 2 or 4.
    pub lac: usize,
    /// Bytes of the cell id: 3, 4 or 8.
    pub cid: usize,
}

impl CellLayout {
    /// 2G/3G: LAC u16, cell id u24.
    pub const STANDARD: CellLayout = CellLayout { wide_mnc: false, lac: 2, cid: 3 };
    /// LAC u16, cell id u32.
    pub const CID32: CellLayout = CellLayout { wide_mnc: false, lac: 2, cid: 4 };
    /// 4G: LAC u32, cell id u64.
    pub const LTE: CellLayout = CellLayout { wide_mnc: false, lac: 4, cid: 8 };
}

/// A serving cell of `layout`.
pub fn cell(layout: CellLayout) -> impl Fn(&[u8]) -> Parsed<'_, Cell> {
    move |input: &[u8]| {
        let (rest, mcc) = be_u16(input)?;
        let (rest, mnc) = if layout.wide_mnc || mcc & 0x8000 != 0 {
            be_u16(rest)?
        } else {
            be_u8(rest).map(|(r, v)| (r, u16::from(v)))?
        };
        let (rest, lac) = kit::be_uint(layout.lac)(rest)?;
        let (rest, cid) = match layout.cid {
            3 => take(3)(rest).map(|(r, b)| (r, u64::from(u32::from_be_bytes([0, b[0], b[1], b[2]]))))?,
            size => kit::be_uint(size)(rest)?,
        };
        Ok((rest, Cell { mcc: mcc & 0x7FFF, mnc, lac: lac as u32, cid }))
    }
}

/// A cell preceded by its length byte, which counts itself (some firmware counts one
/// less): 0 for no cell. A 4G cell (LAC u32, cell id u64) is told by that length; bytes
/// the length covers beyond the cell are skipped. `cid` is the width of a 2G/3G cell id.
pub fn sized_cell(cid: usize) -> impl Fn(&[u8]) -> Parsed<'_, Option<Cell>> {
    move |input: &[u8]| {
        let (rest, length) = be_u8(input)?;
        if length == 0 {
            return Ok((rest, None));
        }
        let covered = usize::from(length).saturating_sub(1);
        let lte = covered >= 15 && covered < 15 + cid;
        let layout = if lte { CellLayout::LTE } else { CellLayout { wide_mnc: false, lac: 2, cid } };
        let (after, found) = cell(layout)(rest)?;
        let used = rest.len() - after.len();
        let (after, _) = take(covered.saturating_sub(used))(after)?;
        Ok((after, Some(found)))
    }
}

/// The five-byte status block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Terminal info byte.
    pub info: u8,
    /// Voltage level 0-6, or a percentage above 6.
    pub level: u8,
    /// GSM signal 0-4.
    pub gsm: u8,
    /// Alarm code.
    pub alarm: u8,
    /// Language.
    pub language: u8,
}

/// The status block.
pub fn status(input: &[u8]) -> Parsed<'_, Status> {
    let (rest, (info, level, gsm, alarm, language)) =
        nom::Parser::parse_complete(&mut (be_u8, be_u8, be_u8, be_u8, be_u8), input)?;
    Ok((rest, Status { info, level, gsm, alarm, language }))
}

/// Which alarm code table a device follows: most devices share one, some model families
/// reuse codes for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Concox and most clones.
    #[default]
    Standard,
    /// LW models (LW4G).
    Lw,
    /// SeeWorld.
    SeeWorld,
    /// VL103, LL303, VL512, G18.
    Vl,
}

/// The alarm an alarm code names, by the device's model family.
pub fn alarm_name(code: u8, family: Family) -> Option<&'static str> {
    Some(match code {
        0x01 => "sos",
        0x02 => "power_cut",
        0x03 => "vibration",
        0x04 => "geofence_enter",
        0x05 => "geofence_exit",
        0x06 => "overspeed",
        0x09 if family == Family::Vl => "tow",
        0x09 => "vibration",
        0x0C | 0x13 | 0x25 => "tampering",
        0x0E | 0x0F => "low_battery",
        0x11 => "power_off",
        0x14 => "door",
        0x18 if family == Family::Lw => "crash",
        0x18 => "removing",
        0x19 if family == Family::Lw => "harsh_acceleration",
        0x19 => "low_battery",
        0x1A | 0x27 => "harsh_braking",
        0x1B | 0x2A | 0x2B | 0x2E => "harsh_cornering",
        0x23 => "fall",
        0x26 => "harsh_acceleration",
        0x28 if family == Family::SeeWorld => "harsh_cornering",
        0x28 => "harsh_braking",
        0x29 if family == Family::SeeWorld => "crash",
        0x29 => "harsh_acceleration",
        0x2C => "crash",
        0x30 if family == Family::Vl => "harsh_braking",
        0x30 => "jamming",
        _ => return None,
    })
}

/// Writes one GT06 position: [`crate::out::Out`] plus the device's clock and alarm
/// table, and the GT06 blocks.
pub struct Out<'b> {
    out: crate::out::Out<'b>,
    /// Minutes east of UTC of the device's clock.
    pub offset_minutes: i32,
    /// The device's alarm code table.
    pub family: Family,
}

impl<'b> std::ops::Deref for Out<'b> {
    type Target = crate::out::Out<'b>;

    fn deref(&self) -> &Self::Target {
        &self.out
    }
}

impl std::ops::DerefMut for Out<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.out
    }
}

impl<'b> Out<'b> {
    /// Starts a position without time or coordinates.
    pub fn new(batch: &'b mut Batch, frame: &'b Bytes, offset_minutes: i32, family: Family) -> Self {
        Out { out: crate::out::Out::new(batch, frame), offset_minutes, family }
    }

    /// The position's time, from time bytes in the device's clock.
    pub fn time(&mut self, civil: Civil) -> Result<(), String> {
        let time = civil.instant(self.offset_minutes)?;
        self.set_time(time);
        Ok(())
    }

    /// The position's time, already UTC.
    pub fn utc_time(&mut self, civil: Civil) -> Result<(), String> {
        let time = civil.instant(0)?;
        self.set_time(time);
        Ok(())
    }

    /// The GPS block: time, then what [`Out::located`] reads.
    pub fn gps(&mut self, gps: Gps) -> Result<(), String> {
        self.time(gps.time)?;
        self.located(gps);
        Ok(())
    }

    /// A GPS block but its time: coordinates, speed, course, satellites, validity, and
    /// ACC when the status word carries it.
    pub fn located(&mut self, gps: Gps) {
        let valid = gps.flags & 0x1000 != 0;
        let fix = self.fix();
        fix.valid = valid;
        // A receiver that never had a fix sends zeros: no coordinates, not (0, 0).
        if gps.lat != 0 || gps.lon != 0 || valid {
            let north = gps.flags & 0x0400 != 0;
            let west = gps.flags & 0x0800 != 0;
            fix.coordinates =
                Some((coordinates::from_half_ms(gps.lat, !north), coordinates::from_half_ms(gps.lon, west)));
        }
        fix.speed = Some(f64::from(gps.speed));
        fix.course = Some(f64::from(gps.flags & 0x03FF));
        fix.satellites = Some(u16::from(gps.satellites));
        self.io("course_status", u64::from(gps.flags));
        if gps.flags & 0x4000 != 0 {
            self.attr(Attr::Ignition, AttrValue::Bool(gps.flags & 0x8000 != 0));
        }
    }

    /// The serving cell, as `mcc`, `mnc`, `lac`, `cid` and the `operator` attribute.
    pub fn cell(&mut self, cell: Cell) {
        self.io("mcc", u64::from(cell.mcc));
        self.io("mnc", u64::from(cell.mnc));
        self.io("lac", u64::from(cell.lac));
        self.io("cid", cell.cid);
        if cell.mcc > 0 {
            let scale = if cell.mnc >= 100 { 1000 } else { 100 };
            self.attr(Attr::Operator, AttrValue::Int(i64::from(cell.mcc) * scale + i64::from(cell.mnc)));
        }
    }

    /// The terminal info byte (see the module docs).
    pub fn info(&mut self, info: u8, overspeed_for_seven: bool) {
        self.io("status", u64::from(info));
        self.attr(Attr::Armed, AttrValue::Bool(info & 0x01 != 0));
        self.attr(Attr::Ignition, AttrValue::Bool(info & 0x02 != 0));
        self.attr(Attr::Charging, AttrValue::Bool(info & 0x04 != 0));
        self.attr(Attr::Blocked, AttrValue::Bool(info & 0x80 != 0));
        let alarm = match (info >> 3) & 0x07 {
            1 => Some("vibration"),
            2 => Some("power_cut"),
            3 => Some("low_battery"),
            4 => Some("sos"),
            6 => Some("geofence"),
            7 if overspeed_for_seven => Some("overspeed"),
            7 => Some("removing"),
            _ => None,
        };
        if let Some(alarm) = alarm {
            self.attr(Attr::Alarm, AttrValue::Name(alarm));
        }
    }

    /// A voltage level: 0-6 as sixths of a full battery, or a percentage up to 100.
    pub fn level(&mut self, level: u8) {
        self.io("voltage_level", u64::from(level));
        let percent = match level {
            0..=6 => i64::from(level) * 100 / 6,
            7..=100 => i64::from(level),
            _ => return,
        };
        self.attr(Attr::BatteryLevel, AttrValue::Int(percent));
    }

    /// The GSM signal, 0 (none) to 4 (strong), rescaled to the vocabulary's 0-5.
    pub fn gsm(&mut self, gsm: u8) {
        self.io("gsm", u64::from(gsm));
        if gsm <= 4 {
            self.attr(Attr::GsmSignal, AttrValue::Int((i64::from(gsm) * 5 + 2) / 4));
        }
    }

    /// An alarm code: kept as `event`, named in `alarm` when the table knows it.
    pub fn alarm(&mut self, code: u8) {
        self.io("event", u64::from(code));
        if let Some(name) = alarm_name(code, self.family) {
            self.set_alarm(name);
        }
    }

    /// The status block.
    pub fn status(&mut self, status: Status) {
        self.info(status.info, false);
        self.level(status.level);
        self.gsm(status.gsm);
        self.alarm(status.alarm);
        self.io("language", u64::from(status.language));
    }
}
