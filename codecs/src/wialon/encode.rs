//! Encoding what a Wialon IPS device sends: login, short and extended data, black box,
//! ping and driver messages, in 1.1 or 2.0, and the [`Device`] side the registry hands
//! the simulator, the benches and the tests.

use std::fmt::Write;

use bytes::BytesMut;

use super::Version;
use crate::device::{Answer, DeviceSide, Report};
use crate::teltonika::crc16_arc;

/// A typed additional parameter (`NAME:TYPE:VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Type 1.
    Int(i64),
    /// Type 2.
    Double(f64),
    /// Type 3; must not contain `,` `;` `|` or line ends.
    Text(String),
}

/// One record as a device builds it. `None` fields are sent as `NA`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Seconds since the Unix epoch (UTC).
    pub time_s: Option<i64>,
    /// Degrees, south negative.
    pub lat: Option<f64>,
    /// Degrees, west negative.
    pub lon: Option<f64>,
    /// km/h.
    pub speed: Option<f64>,
    /// Degrees.
    pub course: Option<f64>,
    /// Metres.
    pub altitude: Option<f64>,
    /// Satellites in use.
    pub satellites: Option<u16>,
    /// Extended data only (ignored by short data).
    pub hdop: Option<f64>,
    /// Input bits.
    pub inputs: Option<u32>,
    /// Output bits.
    pub outputs: Option<u32>,
    /// Analog inputs.
    pub adc: Vec<f64>,
    /// iButton key.
    pub ibutton: Option<String>,
    /// Additional parameters.
    pub params: Vec<(String, Param)>,
}

fn na<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "NA".to_owned(), ToString::to_string)
}

fn civil(time_s: i64) -> (String, String) {
    let text = crate::time::UtcMillis(time_s * 1000).to_string();
    // YYYY-MM-DDTHH:MM:SSZ
    let date = format!("{}{}{}", &text[8..10], &text[5..7], &text[2..4]);
    let time = format!("{}{}{}", &text[11..13], &text[14..16], &text[17..19]);
    (date, time)
}

/// `DDMM.MMMMMM;N` from degrees (six decimals of minutes, about 2 cm).
fn coordinate(degrees: Option<f64>, width: usize, positive: char, negative: char) -> String {
    let Some(degrees) = degrees else {
        return "NA;NA".to_owned();
    };
    let hemisphere = if degrees < 0.0 { negative } else { positive };
    let magnitude = degrees.abs();
    let whole = magnitude.trunc();
    let minutes = (magnitude - whole) * 60.0;
    format!("{:0width$}{:09.6};{hemisphere}", whole as u32, minutes, width = width)
}

fn short_fields(record: &Record) -> String {
    let (date, time) = record.time_s.map(civil).unwrap_or_else(|| ("NA".into(), "NA".into()));
    format!(
        "{date};{time};{};{};{};{};{};{}",
        coordinate(record.lat, 2, 'N', 'S'),
        coordinate(record.lon, 3, 'E', 'W'),
        na(&record.speed),
        na(&record.course),
        na(&record.altitude),
        na(&record.satellites)
    )
}

fn extended_fields(record: &Record) -> String {
    let mut out = short_fields(record);
    let adc: Vec<String> = record.adc.iter().map(f64::to_string).collect();
    let adc = if adc.is_empty() { "NA".to_owned() } else { adc.join(",") };
    let _ = write!(
        out,
        ";{};{};{};{adc};{};",
        na(&record.hdop),
        na(&record.inputs),
        na(&record.outputs),
        record.ibutton.clone().unwrap_or_else(|| "NA".into())
    );
    let params: Vec<String> = record
        .params
        .iter()
        .map(|(name, value)| match value {
            Param::Int(v) => format!("{name}:1:{v}"),
            Param::Double(v) => format!("{name}:2:{v}"),
            Param::Text(v) => format!("{name}:3:{v}"),
        })
        .collect();
    out.push_str(if params.is_empty() { "NA" } else { "" });
    out.push_str(&params.join(","));
    out
}

fn line(kind: &str, text: &str, separator: char, version: Version) -> String {
    match version {
        Version::V1_1 => format!("#{kind}#{text}\r\n"),
        Version::V2_0 => {
            let covered = format!("{text}{separator}");
            format!("#{kind}#{covered}{:04X}\r\n", crc16_arc(covered.as_bytes()))
        }
    }
}

/// `#L#`.
pub fn login(imei: &str, password: Option<&str>, version: Version) -> String {
    let password = password.unwrap_or("NA");
    match version {
        Version::V1_1 => format!("#L#{imei};{password}\r\n"),
        Version::V2_0 => line("L", &format!("2.0;{imei};{password}"), ';', version),
    }
}

/// `#SD#`.
pub fn short_data(record: &Record, version: Version) -> String {
    line("SD", &short_fields(record), ';', version)
}

/// `#D#`.
pub fn extended_data(record: &Record, version: Version) -> String {
    line("D", &extended_fields(record), ';', version)
}

/// `#B#`, every record as extended data.
pub fn black_box(records: &[Record], version: Version) -> String {
    let text: Vec<String> = records.iter().map(extended_fields).collect();
    line("B", &text.join("|"), '|', version)
}

/// `#P#`.
pub fn ping() -> String {
    "#P#\r\n".to_owned()
}

/// The same packet as a UDP datagram, with its identifier prefix.
pub fn datagram(imei: &str, packet: &str, version: Version) -> String {
    let packet = packet.trim_end_matches("\r\n");
    match version {
        Version::V1_1 => format!("{imei}{packet}"),
        Version::V2_0 => format!("2.0;{imei}{packet}"),
    }
}

/// A Wialon IPS 2.0 device as the simulator and tests drive it: a login, `#D#` for one
/// report and `#B#` for several, each answered with a line.
#[derive(Debug, Default)]
pub struct Device {
    /// Reports in the frame waiting for its answer.
    in_flight: usize,
}

/// The record a typical Wialon IPS tracker sends for a report: the fix, HDOP, the
/// ignition as input 1, the supply voltage as the first ADC, and the parameters `ign`,
/// `fuel` (%) and `odo` (km).
pub fn record_of(report: &Report) -> Record {
    Record {
        time_s: Some(report.time_ms.div_euclid(1000)),
        lat: Some(report.lat),
        lon: Some(report.lon),
        speed: Some((report.speed * 10.0).round() / 10.0),
        course: Some(report.course.round()),
        altitude: Some(report.altitude.round()),
        satellites: Some(u16::from(report.satellites)),
        hdop: Some(0.8),
        inputs: Some(u32::from(report.ignition)),
        outputs: Some(0),
        adc: vec![report.power_v],
        ibutton: None,
        params: vec![
            ("ign".into(), Param::Int(i64::from(report.ignition))),
            ("fuel".into(), Param::Double((report.fuel_percent * 10.0).round() / 10.0)),
            ("odo".into(), Param::Double((report.odometer_m / 100.0).round() / 10.0)),
        ],
    }
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        login(identifier, None, Version::V2_0).into_bytes()
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        self.in_flight = reports.len();
        let records: Vec<Record> = reports.iter().map(record_of).collect();
        let line = match records.as_slice() {
            [one] => extended_data(one, Version::V2_0),
            _ => black_box(&records, Version::V2_0),
        };
        line.into_bytes()
    }

    fn corrupt(&self, frames: &mut Vec<u8>) {
        // Change the checksum's first hex digit (the checksum follows the last `;` or `|`).
        let text = String::from_utf8_lossy(frames);
        let at = text.trim_end().rfind([';', '|']).map_or(0, |i| i + 1);
        if let Some(digit) = frames.get_mut(at) {
            *digit = if *digit == b'0' { b'1' } else { b'0' };
        }
    }

    fn time_resolution_ms(&self) -> i64 {
        1000
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        let text = String::from_utf8_lossy(reply);
        let Some((kind, code)) = text.trim_end().strip_prefix('#').and_then(|rest| rest.split_once('#')) else {
            return false;
        };
        match kind {
            "AL" | "AP" => false,
            "AB" => code.parse::<u32>().is_ok_and(|n| n > 0),
            _ => code == "1",
        }
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        let Some(end) = buffer.iter().position(|&b| b == b'\n') else { return Ok(None) };
        let line = buffer.split_to(end + 1);
        let line = std::str::from_utf8(&line).map_err(|_| "answer is not text".to_owned())?.trim_end();
        let Some((kind, code)) = line.strip_prefix('#').and_then(|rest| rest.split_once('#')) else {
            return Err(format!("not a Wialon IPS answer: {line:?}"));
        };
        Ok(Some(match kind {
            "AL" if code == "1" => Answer::LoginAccepted,
            "AL" => Answer::LoginRefused,
            "AB" => Answer::Accepted(code.parse().unwrap_or(0)),
            "AD" | "ASD" if code == "1" => Answer::Accepted(self.in_flight),
            "AD" | "ASD" => Answer::Accepted(0),
            _ => Answer::Other,
        }))
    }
}
