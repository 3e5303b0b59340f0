//! Compressed packets (header 0x08): records of a 10-byte minimal data set and the tags
//! the device chose to add.
//!
//! ```text
//! record:  minimal:[u8; 10]  count:u8  tag:u8 * count  (the tags' values, in that order)
//! minimal: bits from the most significant of the first byte:
//!          1 unused, 25 seconds since the start of the year (UTC), 1 invalid fix,
//!          22 longitude (360 * v / 2^22 - 180), 21 latitude (180 * v / 2^21 - 90), 1 alarm
//! ```
//! The time names no year: it is the year of the clock the gateway gives the session,
//! or the one before when that puts the record more than a day ahead of the clock (a
//! record from late December read in January). Without a clock (`fleetgate decode`) a
//! compressed packet cannot be read and is refused.

use crate::kit::{self, Parsed};
use crate::out::Out;
use crate::time::UtcMillis;

use super::tags;

/// The minimal data set of one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimal {
    /// Seconds since the start of the year.
    pub seconds: u32,
    /// The fix is valid.
    pub valid: bool,
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    /// The device raised an alarm.
    pub alarm: bool,
}

/// Reads the 80 bits of a minimal data set.
pub fn minimal(bytes: [u8; 10]) -> Minimal {
    let bits = u128::from_be_bytes({
        let mut wide = [0u8; 16];
        wide[..10].copy_from_slice(&bytes);
        wide
    });
    // Bit `from` counted from the most significant of the 80, `len` bits.
    let field = |from: u32, len: u32| ((bits >> (128 - from - len)) & ((1u128 << len) - 1)) as u32;
    Minimal {
        seconds: field(1, 25),
        valid: field(26, 1) == 0,
        lon: 360.0 * f64::from(field(27, 22)) / 4_194_304.0 - 180.0,
        lat: 180.0 * f64::from(field(49, 21)) / 2_097_152.0 - 90.0,
        alarm: field(70, 1) != 0,
    }
}

/// The minimal data set of a record, as a device writes it.
pub fn encode_minimal(seconds: u32, valid: bool, lat: f64, lon: f64, alarm: bool) -> [u8; 10] {
    let lon = (((lon + 180.0) / 360.0 * 4_194_304.0).round() as u128).min((1 << 22) - 1);
    let lat = (((lat + 90.0) / 180.0 * 2_097_152.0).round() as u128).min((1 << 21) - 1);
    let bits = (u128::from(seconds & 0x01FF_FFFF) << (128 - 26))
        | (u128::from(!valid) << (128 - 27))
        | (lon << (128 - 49))
        | (lat << (128 - 70))
        | (u128::from(alarm) << (128 - 71));
    let mut out = [0u8; 10];
    out.copy_from_slice(&bits.to_be_bytes()[..10]);
    out
}

/// The start of the year that puts `seconds` into it, from the clock `now`.
pub fn year_start(seconds: u32, now: UtcMillis) -> UtcMillis {
    let (year, ..) = now.civil();
    let start = |year: i64| UtcMillis::from_civil(year, 1, 1, 0, 0, 0).unwrap_or(UtcMillis(0));
    let this_year = start(year);
    if this_year.0 + i64::from(seconds) * 1000 > now.0 + 86_400_000 { start(year - 1) } else { this_year }
}

/// One compressed record written into `out`; `now` resolves its year.
pub fn record<'a>(out: &mut Out<'_>, input: &'a [u8], now: UtcMillis) -> Parsed<'a, ()> {
    let (rest, bytes) = kit::array::<10>(input)?;
    let minimal = minimal(bytes);
    out.set_time(Some(UtcMillis(year_start(minimal.seconds, now).0 + i64::from(minimal.seconds) * 1000)));
    let fix = out.fix();
    fix.valid = minimal.valid;
    fix.coordinates = Some((minimal.lat, minimal.lon));
    if minimal.alarm {
        out.set_alarm("general");
    }
    let (rest, ids) = kit::counted(rest)?;
    let mut rest = rest;
    for &tag in ids {
        let (after, value) = tags::value(tag)(rest)?;
        tags::write(out, tag, value);
        rest = after;
    }
    Ok((rest, ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_data_set_round_trips_within_its_resolution() {
        let bytes = encode_minimal(31_535_999, true, 55.75, 37.61, true);
        let read = minimal(bytes);
        assert_eq!((read.seconds, read.valid, read.alarm), (31_535_999, true, true));
        assert!((read.lat - 55.75).abs() < 180.0 / 2_097_152.0 && (read.lon - 37.61).abs() < 360.0 / 4_194_304.0);
        let read = minimal(encode_minimal(0, false, -90.0, -180.0, false));
        assert_eq!((read.seconds, read.valid, read.lat, read.lon), (0, false, -90.0, -180.0));
    }

    #[test]
    fn a_record_from_late_december_read_in_january_is_of_last_year() {
        let now = UtcMillis::from_civil(2026, 1, 2, 10, 0, 0).unwrap_or(UtcMillis(0));
        let december_31 = 364 * 86_400;
        assert_eq!(year_start(december_31, now), UtcMillis::from_civil(2025, 1, 1, 0, 0, 0).unwrap_or(UtcMillis(0)));
        assert_eq!(year_start(86_400, now), UtcMillis::from_civil(2026, 1, 1, 0, 0, 0).unwrap_or(UtcMillis(0)));
    }
}
