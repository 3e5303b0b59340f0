//! Encoding what a JT/T 808 terminal sends: messages with the 2013 or 2019 header,
//! locations and batches, and the [`Device`] side the registry hands the simulator, the
//! benches and the tests.

use bytes::{Buf, BytesMut};

use super::{Terminal, escape, frame, id, result, xor};
use crate::device::{Answer, DeviceSide, Report};
use crate::time::UtcMillis;

/// The terminal phone number of an identifier: its digits as BCD, zero-padded to 12
/// digits (2013) or 20 (2019).
pub fn phone(identifier: &str, version_2019: bool) -> Vec<u8> {
    let width = if version_2019 { 20 } else { 12 };
    let digits = format!("{identifier:0>width$}");
    let digit = |b: u8| b.wrapping_sub(b'0') & 0x0F;
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| (digit(pair[0]) << 4) | digit(pair.get(1).copied().unwrap_or(b'0')))
        .collect()
}

/// A terminal message: header (subpackage fields when `package` is given), body, check
/// code, escaped.
pub fn message(terminal: &Terminal, id: u16, serial: u16, package: Option<(u16, u16)>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(21 + body.len());
    out.extend_from_slice(&id.to_be_bytes());
    let mut attributes = body.len() as u16 & 0x03FF;
    if terminal.version.is_some() {
        attributes |= 0x4000;
    }
    if package.is_some() {
        attributes |= 0x2000;
    }
    out.extend_from_slice(&attributes.to_be_bytes());
    if let Some(version) = terminal.version {
        out.push(version);
    }
    out.extend_from_slice(&terminal.phone);
    out.extend_from_slice(&serial.to_be_bytes());
    if let Some((total, index)) = package {
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&index.to_be_bytes());
    }
    out.extend_from_slice(body);
    out.push(xor(&out));
    escape(&out)
}

/// BCD of a time in a clock `offset_minutes` east of UTC.
pub fn bcd_time(time_ms: i64, offset_minutes: i32) -> [u8; 6] {
    let (year, month, day, hour, minute, second) = UtcMillis(time_ms + i64::from(offset_minutes) * 60_000).civil();
    let bcd = |v: u32| (((v / 10) as u8) << 4) | (v % 10) as u8;
    [bcd((year - 2000) as u32), bcd(month), bcd(day), bcd(hour), bcd(minute), bcd(second)]
}

/// A location body for a report: alarm flags, status (ACC, valid fix, hemispheres), the
/// fix in the device's clock, and items: mileage (0x01), signal (0x30), satellites
/// (0x31), supply voltage (0xE1, 0.1 V).
pub fn location_body(report: &Report, alarm: u32, offset_minutes: i32) -> Vec<u8> {
    let mut body = Vec::with_capacity(48);
    let mut status = 0x02u32;
    if report.ignition {
        status |= 0x01;
    }
    if report.lat < 0.0 {
        status |= 0x04;
    }
    if report.lon < 0.0 {
        status |= 0x08;
    }
    body.extend_from_slice(&alarm.to_be_bytes());
    body.extend_from_slice(&status.to_be_bytes());
    body.extend_from_slice(&((report.lat.abs() * 1e6).round() as u32).to_be_bytes());
    body.extend_from_slice(&((report.lon.abs() * 1e6).round() as u32).to_be_bytes());
    body.extend_from_slice(&(report.altitude.round() as i16).to_be_bytes());
    body.extend_from_slice(&((report.speed * 10.0).round() as u16).to_be_bytes());
    body.extend_from_slice(&((report.course.round() as u16) % 360).to_be_bytes());
    body.extend_from_slice(&bcd_time(report.time_ms, offset_minutes));
    body.extend_from_slice(&[0x01, 4]);
    body.extend_from_slice(&((report.odometer_m / 100.0).max(0.0) as u32).to_be_bytes());
    body.extend_from_slice(&[0x30, 1, 25, 0x31, 1, report.satellites]);
    body.extend_from_slice(&[0xE1, 2]);
    body.extend_from_slice(&((report.power_v * 10.0).round() as u16).to_be_bytes());
    body
}

/// A 0x0704 body: the locations as one batch (`blind_area`: sent late from memory).
pub fn batch_body(reports: &[Report], blind_area: bool, offset_minutes: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(reports.len() as u16).to_be_bytes());
    body.push(u8::from(blind_area));
    for report in reports {
        let item = location_body(report, 0, offset_minutes);
        body.extend_from_slice(&(item.len() as u16).to_be_bytes());
        body.extend_from_slice(&item);
    }
    body
}

/// A JT/T 808 terminal as the simulator and tests drive it: it authenticates (0x0102),
/// then sends one report as 0x0200 and several as a 0x0704 batch, in UTC+8 as the
/// standard says; each message is answered 0x8001 naming its serial.
#[derive(Debug, Default)]
pub struct Device {
    /// Use the 2019 header.
    pub version_2019: bool,
    terminal: Option<Terminal>,
    serial: u16,
    /// Messages sent and not answered: (serial, reports).
    in_flight: Vec<(u16, usize)>,
}

impl Device {
    /// A terminal with the 2019 header.
    pub fn version_2019() -> Self {
        Device { version_2019: true, ..Device::default() }
    }

    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }

    fn terminal(&self) -> Terminal {
        self.terminal.clone().unwrap_or(Terminal { phone: vec![0; 6], version: None })
    }
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        // A phone number of more than 12 digits needs the 2019 header.
        self.version_2019 |= identifier.len() > 12;
        let terminal =
            Terminal { phone: phone(identifier, self.version_2019), version: self.version_2019.then_some(1) };
        self.terminal = Some(terminal.clone());
        let serial = self.next_serial();
        self.in_flight.clear();
        let body: Vec<u8> = if self.version_2019 {
            let code = identifier.as_bytes();
            let mut body = vec![code.len() as u8];
            body.extend_from_slice(code);
            body.extend_from_slice(format!("{identifier:0>15}").as_bytes().get(..15).unwrap_or_default());
            body.extend_from_slice(&[b' '; 20]);
            body
        } else {
            identifier.as_bytes().to_vec()
        };
        message(&terminal, id::AUTHENTICATE, serial, None, &body)
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let terminal = self.terminal();
        let serial = self.next_serial();
        self.in_flight.push((serial, reports.len()));
        match reports {
            [one] => message(&terminal, id::LOCATION, serial, None, &location_body(one, 0, 8 * 60)),
            many => message(&terminal, id::BATCH, serial, None, &batch_body(many, false, 8 * 60)),
        }
    }

    fn corrupt(&self, frames: &mut Vec<u8>) {
        // The last message's check code changed. It may be escaped itself (a check code
        // of 7D or 7E goes as two bytes), so the message is unescaped, changed and
        // escaped again: flipping a raw byte could make an escape no terminal sends,
        // which a server refuses without the answer the device waits for.
        let Some(start) = frames[..frames.len().saturating_sub(1)].iter().rposition(|&b| b == frame::FLAG) else {
            return;
        };
        let Ok(mut message) = frame::unescape(&frames[start..]) else { return };
        if let Some(check) = message.last_mut() {
            *check ^= 0x01;
        }
        frames.truncate(start);
        frames.extend(escape(&message));
    }

    fn time_resolution_ms(&self) -> i64 {
        1000
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        let len = match frame::scan(buffer, 4096) {
            frame::Scan::Incomplete => return Ok(None),
            frame::Scan::Frame { len } => len,
            frame::Scan::Empty | frame::Scan::Garbage { .. } => {
                buffer.advance(1);
                return Ok(Some(Answer::Other));
            }
            other => return Err(format!("answer {other:?}")),
        };
        let framed = buffer.split_to(len);
        let message = frame::unescape(&framed)?;
        let (&check, covered) = message.split_last().ok_or("empty answer")?;
        if xor(covered) != check {
            return Err("answer with a wrong check code".into());
        }
        let (body, header) = frame::header(covered).map_err(|_| "answer shorter than its header".to_owned())?;
        Ok(Some(match (header.id, body) {
            (id::GENERAL_RESPONSE, [s1, s2, i1, i2, outcome, ..]) => {
                let (serial, answered) = (u16::from_be_bytes([*s1, *s2]), u16::from_be_bytes([*i1, *i2]));
                match answered {
                    id::AUTHENTICATE if *outcome == result::OK => Answer::LoginAccepted,
                    id::AUTHENTICATE => Answer::LoginRefused,
                    _ => match self.in_flight.iter().position(|(s, _)| *s == serial) {
                        Some(at) => {
                            let (_, reports) = self.in_flight.remove(at);
                            Answer::Accepted(if *outcome == result::OK { reports } else { 0 })
                        }
                        None => Answer::Other,
                    },
                }
            }
            (id::REGISTER_RESPONSE, [_, _, outcome, ..]) if *outcome == result::OK => Answer::LoginAccepted,
            (id::REGISTER_RESPONSE, _) => Answer::LoginRefused,
            _ => Answer::Other,
        }))
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        let Ok(message) = frame::unescape(reply) else { return false };
        let Some((_, covered)) = message.split_last() else { return false };
        match frame::header(covered) {
            Ok(([_, _, i1, i2, outcome, ..], header)) if header.id == id::GENERAL_RESPONSE => {
                let answered = u16::from_be_bytes([*i1, *i2]);
                *outcome == result::OK && !matches!(answered, id::AUTHENTICATE | id::REGISTER)
            }
            _ => false,
        }
    }
}
