//! The fields of Wialon IPS short (`#SD#`) and extended (`#D#`) data, shared by the
//! black box (`#B#`), decoded into a [`Batch`] or refused with the answer code that
//! names the failing field.

use nom::Parser;
use nom::bytes::complete::take_till;
use nom::character::complete::char;
use nom::combinator::rest;
use nom::sequence::terminated;

use crate::attrs::Attr;
use crate::kit::text;
use crate::position::{AttrValue, Batch, Fix, IoKey, IoValue, Span};
use crate::time::UtcMillis;

/// Answer codes shared by `#ASD#` and `#AD#` (the spec numbers them the same way).
pub(crate) mod code {
    pub const STRUCTURE: &str = "-1";
    pub const TIME: &str = "0";
    pub const ACCEPTED: &str = "1";
    pub const COORDINATES: &str = "10";
    pub const SPEED_COURSE_ALTITUDE: &str = "11";
    pub const SATELLITES_HDOP: &str = "12";
    pub const INPUTS_OUTPUTS: &str = "13";
    pub const ADC: &str = "14";
    pub const PARAMS: &str = "15";
}

/// A refused record: the answer code and what was wrong, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: String) -> RecordError {
    RecordError { code, message }
}

/// Fields of a short data record.
pub(crate) const SHORT_FIELDS: usize = 10;
/// Fields of an extended data record.
pub(crate) const EXTENDED_FIELDS: usize = 16;

/// `adcN` names for `io`, so the ADC list needs no allocation; longer lists are refused.
const ADC_NAMES: [&str; 16] = [
    "adc1", "adc2", "adc3", "adc4", "adc5", "adc6", "adc7", "adc8", "adc9", "adc10", "adc11", "adc12", "adc13",
    "adc14", "adc15", "adc16",
];
const ANALOG_ATTRS: [Attr; 8] =
    [Attr::Ain1, Attr::Ain2, Attr::Ain3, Attr::Ain4, Attr::Ain5, Attr::Ain6, Attr::Ain7, Attr::Ain8];
const INPUT_ATTRS: [Attr; 8] =
    [Attr::Din1, Attr::Din2, Attr::Din3, Attr::Din4, Attr::Din5, Attr::Din6, Attr::Din7, Attr::Din8];
const OUTPUT_ATTRS: [Attr; 4] = [Attr::Dout1, Attr::Dout2, Attr::Dout3, Attr::Dout4];

/// `NA` and the empty string both mean "not sent".
fn absent(field: &str) -> bool {
    field.is_empty() || field == "NA"
}

/// The byte range of `part` (a sub-slice of `line`) within `line`.
pub(crate) fn span_of(line: &str, part: &str) -> Span {
    let start = part.as_ptr() as usize - line.as_ptr() as usize;
    Span::new(start..start + part.len())
}

/// `DDMMYY` and `HHMMSS[.fraction]`, UTC; `Ok(None)` when both are `NA`.
fn parse_time(date: &str, time: &str) -> Result<Option<UtcMillis>, RecordError> {
    if absent(date) && absent(time) {
        return Ok(None);
    }
    let bad = || refuse(code::TIME, format!("date {date:?} / time {time:?} is not DDMMYY / HHMMSS"));
    let two = || text::digits(2);
    let (Ok(("", (day, month, year))), Ok(("", ((hour, minute, second), fraction)))) =
        ((two(), two(), two()).parse(date), ((two(), two(), two()), text::fraction).parse(time))
    else {
        return Err(bad());
    };
    let base = UtcMillis::from_civil(2000 + i64::from(year), month, day, hour, minute, second).ok_or_else(bad)?;
    // Milliseconds from the first three fraction digits (the 2.1 spec allows nanoseconds).
    let millis =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0i64, |ms, d| ms * 10 + i64::from(d - b'0'));
    Ok(Some(UtcMillis(base.0 + millis)))
}

/// `DDMM.MMMM` (or `DDDMM.MMMM`) and a hemisphere letter, to signed degrees. The minutes
/// are split off as text, so minutes with many digits keep their precision.
fn parse_coordinate(value: &str, hemisphere: &str, max_degrees: f64) -> Option<f64> {
    let (_, (whole, fraction)) = text::decimal(value).ok()?;
    if whole.len() < 3 {
        return None;
    }
    let (degrees, minutes_whole) = whole.split_at(whole.len() - 2);
    let degrees: f64 = degrees.parse().ok()?;
    let minutes: f64 = if fraction.is_empty() {
        minutes_whole.parse().ok()?
    } else {
        format!("{minutes_whole}.{fraction}").parse().ok()?
    };
    // Minutes of 60 and more are out of spec, yet some devices send them (5364.0167);
    // decoding by the protocol's formula keeps their data rather than refusing it.
    let magnitude = degrees + minutes / 60.0;
    let signed = match hemisphere {
        "N" | "E" => magnitude,
        "S" | "W" => -magnitude,
        _ => return None,
    };
    (magnitude <= max_degrees).then_some(signed)
}

fn parse_number(field: &str, code: &'static str, name: &str) -> Result<Option<f64>, RecordError> {
    if absent(field) {
        return Ok(None);
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(refuse(code, format!("{name} {field:?} is not a number"))),
    }
}

fn parse_integer(field: &str, code: &'static str, name: &str) -> Result<Option<i64>, RecordError> {
    if absent(field) {
        return Ok(None);
    }
    field.parse::<i64>().map(Some).map_err(|_| refuse(code, format!("{name} {field:?} is not an integer")))
}

/// Decodes one record (`fields` split on `;`, without the CRC) of `line` into `batch`.
/// `fields.len()` must be [`SHORT_FIELDS`] or [`EXTENDED_FIELDS`].
pub(crate) fn decode_record(line: &str, fields: &[&str], batch: &mut Batch) -> Result<(), RecordError> {
    let extended = match fields.len() {
        SHORT_FIELDS => false,
        EXTENDED_FIELDS => true,
        n => {
            return Err(refuse(
                code::STRUCTURE,
                format!("{n} fields; short data has {SHORT_FIELDS}, extended data {EXTENDED_FIELDS}"),
            ));
        }
    };
    let time = parse_time(fields[0], fields[1])?;
    let coordinates = match fields[2..6].iter().all(|f| absent(f)) {
        true => None,
        false => {
            let lat = parse_coordinate(fields[2], fields[3], 90.0);
            let lon = parse_coordinate(fields[4], fields[5], 180.0);
            match (lat, lon) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                _ => {
                    return Err(refuse(
                        code::COORDINATES,
                        format!(
                            "coordinates {:?};{:?};{:?};{:?} are not DDMM.MM;N|S;DDDMM.MM;E|W",
                            fields[2], fields[3], fields[4], fields[5]
                        ),
                    ));
                }
            }
        }
    };
    let speed = parse_number(fields[6], code::SPEED_COURSE_ALTITUDE, "speed")?;
    let course = parse_number(fields[7], code::SPEED_COURSE_ALTITUDE, "course")?;
    let altitude = parse_number(fields[8], code::SPEED_COURSE_ALTITUDE, "altitude")?;
    let satellites = parse_integer(fields[9], code::SATELLITES_HDOP, "satellites")?;
    let satellites = match satellites.map(u16::try_from) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(refuse(code::SATELLITES_HDOP, format!("satellites {:?} out of range", fields[9]))),
    };

    let mut fix = Fix::untimed(time);
    fix.coordinates = coordinates;
    fix.speed = speed;
    fix.course = course;
    fix.altitude = altitude;
    fix.satellites = satellites;
    // The protocol has no validity flag: a fix needs its time and coordinates, and a
    // device that counts zero satellites says it has none.
    fix.valid = time.is_some() && coordinates.is_some() && satellites != Some(0);
    let mark = batch.mark();
    batch.push_fix(fix);
    if extended {
        if let Err(error) = decode_extended(line, &fields[10..], batch) {
            batch.rollback(mark);
            return Err(error);
        }
    }
    Ok(())
}

/// hdop; inputs; outputs; adc; ibutton; params
fn decode_extended(line: &str, fields: &[&str], batch: &mut Batch) -> Result<(), RecordError> {
    if let Some(hdop) = parse_number(fields[0], code::SATELLITES_HDOP, "hdop")? {
        batch.push_io(IoKey::Static("hdop"), IoValue::Float(hdop));
        batch.push_attr(Attr::Hdop, AttrValue::Float(hdop));
    }
    for (field, name, attrs) in [(fields[1], "inputs", &INPUT_ATTRS[..]), (fields[2], "outputs", &OUTPUT_ATTRS[..])] {
        let Some(bits) = parse_integer(field, code::INPUTS_OUTPUTS, name)? else {
            continue;
        };
        if bits < 0 {
            return Err(refuse(code::INPUTS_OUTPUTS, format!("{name} {field:?} is negative")));
        }
        batch.push_io(IoKey::Static(name), IoValue::Uint(bits as u64));
        for (bit, attr) in attrs.iter().enumerate() {
            batch.push_attr(*attr, AttrValue::Bool(bits & (1 << bit) != 0));
        }
    }
    if !absent(fields[3]) {
        let values: Vec<&str> = text::fields(fields[3], ',');
        if values.len() > ADC_NAMES.len() {
            return Err(refuse(code::ADC, format!("{} ADC values, at most {}", values.len(), ADC_NAMES.len())));
        }
        for (i, value) in values.iter().enumerate() {
            let Some(volts) = parse_number(value.trim(), code::ADC, ADC_NAMES[i])? else {
                continue;
            };
            batch.push_io(IoKey::Static(ADC_NAMES[i]), IoValue::Float(volts));
            if let Some(attr) = ANALOG_ATTRS.get(i) {
                batch.push_attr(*attr, AttrValue::Float(volts));
            }
        }
    }
    if !absent(fields[4]) {
        let span = span_of(line, fields[4]);
        batch.push_io(IoKey::Static("ibutton"), IoValue::Text(span));
        batch.push_attr(Attr::DriverId, AttrValue::Text(span));
    }
    if !absent(fields[5]) {
        for param in text::fields(fields[5], ',').into_iter().filter(|p| !p.is_empty()) {
            decode_param(line, param, batch)?;
        }
    }
    Ok(())
}

/// `NAME:TYPE:VALUE`, TYPE 1 integer, 2 double, 3 string.
fn decode_param(line: &str, param: &str, batch: &mut Batch) -> Result<(), RecordError> {
    let field = || terminated(take_till(|c| c == ':'), char::<&str, nom::error::Error<&str>>(':'));
    let Ok((_, (name, kind, value))) = (field(), field(), rest).parse(param) else {
        return Err(refuse(code::PARAMS, format!("parameter {param:?} is not NAME:TYPE:VALUE")));
    };
    if name.is_empty() {
        return Err(refuse(code::PARAMS, format!("parameter {param:?} has no name")));
    }
    let key = IoKey::Name(span_of(line, name));
    let value = match kind {
        "1" => value
            .parse::<i64>()
            .map(IoValue::Int)
            .map_err(|_| refuse(code::PARAMS, format!("parameter {name}: {value:?} is not an integer (type 1)")))?,
        "2" => match value.parse::<f64>() {
            Ok(v) if v.is_finite() => IoValue::Float(v),
            _ => return Err(refuse(code::PARAMS, format!("parameter {name}: {value:?} is not a number (type 2)"))),
        },
        "3" => IoValue::Text(span_of(line, value)),
        other => return Err(refuse(code::PARAMS, format!("parameter {name}: unknown type {other:?} (1, 2 or 3)"))),
    };
    batch.push_io(key, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_keep_many_digit_minutes() {
        assert_eq!(parse_coordinate("5544.6025", "N", 90.0), Some(55.0 + 44.6025 / 60.0));
        assert_eq!(parse_coordinate("03739.6834", "E", 180.0), Some(37.0 + 39.6834 / 60.0));
        assert_eq!(parse_coordinate("0756.0930", "S", 90.0), Some(-(7.0 + 56.093 / 60.0)));
        assert_eq!(parse_coordinate("5429.681944502211763", "N", 90.0), Some(54.0 + 29.681944502211763 / 60.0));
        assert_eq!(parse_coordinate("9130.0", "N", 90.0), None);
        assert_eq!(parse_coordinate("5364.0167", "N", 90.0), Some(53.0 + 64.0167 / 60.0));
        assert_eq!(parse_coordinate("55x4.0", "N", 90.0), None);
        assert_eq!(parse_coordinate("5544.0", "Q", 90.0), None);
    }

    #[test]
    fn times_with_fractions_and_errors() {
        assert_eq!(parse_time("270413", "205601"), Ok(Some(UtcMillis(1_367_096_161_000))));
        assert_eq!(parse_time("270413", "205601.25"), Ok(Some(UtcMillis(1_367_096_161_250))));
        assert_eq!(parse_time("NA", "NA"), Ok(None));
        assert_eq!(parse_time("320413", "205601").map_err(|e| e.code), Err(code::TIME));
        assert_eq!(parse_time("270413", "NA").map_err(|e| e.code), Err(code::TIME));
    }
}
