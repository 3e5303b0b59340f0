//! UTC timestamps as milliseconds since the Unix epoch, and their RFC 3339 form.
//!
//! Codecs never read the clock; they only convert what a device sent. Contract 1 writes
//! times as `2019-06-10T10:04:46Z`, with a fraction only when it is not zero.

use std::fmt;

/// The latest instant we accept from a device: 9999-12-31T23:59:59.999Z. Anything later
/// cannot be written in RFC 3339 and only comes from a corrupted or nonsensical field.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Milliseconds since 1970-01-01T00:00:00Z, formatted as RFC 3339 by `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcMillis(pub i64);

impl UtcMillis {
    /// Builds a time from a Gregorian UTC date and time of day, for codecs whose devices
    /// send calendar fields (Wialon IPS, GT06). `None` when a field is out of range.
    pub fn from_civil(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        let ms = seconds.checked_mul(1000)?;
        (0..=MAX_TIME_MS).contains(&ms).then_some(UtcMillis(ms))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The Gregorian date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl UtcMillis {
    /// The UTC calendar date and time of day of this instant, to the second: year,
    /// month, day, hour, minute, second (for encoders of calendar-field protocols).
    pub fn civil(self) -> (i64, u32, u32, u32, u32, u32) {
        let (year, month, day) = civil_from_days(self.0.div_euclid(86_400_000));
        let second_of_day = self.0.rem_euclid(86_400_000) / 1000;
        let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
        (year, month, day, hour as u32, minute as u32, second as u32)
    }

    /// The UTC calendar year and month (1-12) of this instant.
    pub fn year_month(self) -> (i64, u32) {
        let (year, month, _) = civil_from_days(self.0.div_euclid(86_400_000));
        (year, month)
    }

    /// Parses an RFC 3339 timestamp (`2019-06-10T10:04:46Z`, `...46.123+02:00`; `t`, `z`
    /// and a space for `T` accepted as the RFC allows). Digits of the fraction beyond
    /// milliseconds are truncated. `None` when the text is not such a timestamp or lies
    /// outside 0000-01-01..=9999-12-31.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b[range].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
        };
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        let mut at = 19;
        let mut millis = 0i64;
        if b[at] == b'.' {
            at += 1;
            let start = at;
            while at < b.len() && b[at].is_ascii_digit() {
                if at - start < 3 {
                    millis = millis * 10 + i64::from(b[at] - b'0');
                }
                at += 1;
            }
            if at == start {
                return None;
            }
            for _ in (at - start)..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match b.get(at..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let two = |a: u8, b: u8| {
                    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + (b - b'0')))
                };
                let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
            }
            _ => return None,
        };
        // A leap second (…:60) is read as the last millisecond-free second before it.
        let second = second.min(59);
        let local = UtcMillis::from_civil(i64::from(year), month, day, hour, minute, second)?;
        let ms = local.0 + millis - offset_minutes * 60_000;
        (0..=MAX_TIME_MS).contains(&ms).then_some(UtcMillis(ms))
    }
}

impl fmt::Display for UtcMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let seconds = ms_of_day / 1000;
        let millis = ms_of_day % 1000;
        write!(f, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)?;
        if millis != 0 {
            write!(f, ".{millis:03}")?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_without_fraction() {
        assert_eq!(UtcMillis(1_560_161_086_000).to_string(), "2019-06-10T10:04:46Z");
        assert_eq!(UtcMillis(0).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn formats_milliseconds_when_present() {
        assert_eq!(UtcMillis(1_560_161_086_123).to_string(), "2019-06-10T10:04:46.123Z");
        assert_eq!(UtcMillis(MAX_TIME_MS).to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 1_560_161_086_000, 1_560_161_086_123, MAX_TIME_MS] {
            assert_eq!(UtcMillis::parse_rfc3339(&UtcMillis(ms).to_string()), Some(UtcMillis(ms)));
        }
        assert_eq!(UtcMillis::parse_rfc3339("2019-06-10T12:04:46.1+02:00"), Some(UtcMillis(1_560_161_086_100)));
        assert_eq!(UtcMillis::parse_rfc3339("2019-06-10t05:04:46.123456-05:00"), Some(UtcMillis(1_560_161_086_123)));
        for bad in [
            "",
            "2019-06-10",
            "2019-06-10T10:04:46",
            "2019-13-10T10:04:46Z",
            "2019-06-10T10:04:46.Z",
            "2019-06-10T10:04:46+2:00",
            "2019-06-10T10:04:46Zjunk",
            "20x9-06-10T10:04:46Z",
            "2019-02-30T00:00:00Z",
        ] {
            assert_eq!(UtcMillis::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip_over_leap_years() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(UtcMillis::from_civil(2013, 4, 27, 20, 56, 1), Some(UtcMillis(1_367_096_161_000)));
        assert_eq!(UtcMillis::from_civil(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(
            UtcMillis::from_civil(2024, 2, 29, 0, 0, 0).map(|t| t.to_string()).as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        let time = UtcMillis(1_367_096_161_999);
        assert_eq!(time.civil(), (2013, 4, 27, 20, 56, 1));
        assert_eq!(UtcMillis(-1000).civil(), (1969, 12, 31, 23, 59, 59));
    }
}
