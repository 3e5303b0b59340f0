//! Encoding what a Navtelecom terminal sends (the handshake, the FLEX negotiation, FLEX
//! records of any layout) and the [`Device`] side the registry hands the simulator, the
//! benches and the tests.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::flex::{self, FIELD_SIZES, FLEX_10};
use super::ntcb;
use crate::device::{Answer, DeviceSide, Report};

/// The fields the simulated terminal announces: index, event, event time, navigation
/// state, time, coordinates, altitude, speed, course, odometer, supply and battery
/// voltage, inputs (input 1 = ignition), outputs.
pub const DEVICE_FIELDS: [u8; 15] = [0, 1, 2, 7, 8, 9, 10, 11, 12, 13, 14, 18, 19, 28, 30];

/// The handshake envelope.
pub fn handshake(imei: &str, device_id: u32) -> Vec<u8> {
    ntcb::envelope(ntcb::PREFIX, 1, device_id, format!("*>S:{imei}").as_bytes())
}

/// The negotiation envelope announcing `fields` of FLEX `version` (`count` fields).
pub fn negotiation(device_id: u32, version: u8, fields: &[u8], count: u8) -> Vec<u8> {
    let mut data = b"*>FLEX".to_vec();
    data.extend_from_slice(&[0xB0, version, version, count]);
    data.extend_from_slice(&flex::bitfield(fields, usize::from(count)));
    ntcb::envelope(ntcb::PREFIX, 1, device_id, &data)
}

/// One record of the fields `fields` for a report: the fields the report has are its
/// values, the rest a pattern from the field number.
pub fn record(fields: &[u8], report: &Report, index: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for &field in fields {
        let size = usize::from(FIELD_SIZES[usize::from(field)]);
        let start = out.len();
        match field {
            0 => out.extend_from_slice(&index.to_le_bytes()),
            1 => out.extend_from_slice(&0x1205u16.to_le_bytes()),
            2 | 8 => out.extend_from_slice(&((report.time_ms / 1000) as u32).to_le_bytes()),
            3 => out.push(0),
            7 => out.push((report.satellites.min(63) << 2) | 0x02),
            9 => out.extend_from_slice(&((report.lat * 600_000.0).round() as i32).to_le_bytes()),
            10 => out.extend_from_slice(&((report.lon * 600_000.0).round() as i32).to_le_bytes()),
            11 => out.extend_from_slice(&((report.altitude * 10.0).round() as i32).to_le_bytes()),
            12 => out.extend_from_slice(&(report.speed as f32).to_le_bytes()),
            13 => out.extend_from_slice(&((report.course.round() as u16) % 360).to_le_bytes()),
            14 => out.extend_from_slice(&((report.odometer_m / 1000.0) as f32).to_le_bytes()),
            18 => out.extend_from_slice(&((report.power_v * 1000.0).round() as u16).to_le_bytes()),
            28 => out.push(u8::from(report.ignition)),
            _ => out.extend((0..size).map(|i| field.wrapping_add(i as u8))),
        }
        debug_assert_eq!(out.len() - start, size, "field {field}");
    }
    out
}

/// A FLEX message: `data` and its CRC-8.
pub fn flex_message(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.push(flex::crc8(data));
    out
}

/// `~A`: the records of `reports`.
pub fn archive(fields: &[u8], reports: &[Report], first_index: u32) -> Vec<u8> {
    let mut data = vec![b'~', b'A', reports.len() as u8];
    for (i, report) in reports.iter().enumerate() {
        data.extend(record(fields, report, first_index + i as u32));
    }
    flex_message(&data)
}

/// `~T`: one record with its event index.
pub fn current(fields: &[u8], report: &Report, index: u32) -> Vec<u8> {
    let mut data = vec![b'~', b'T'];
    data.extend_from_slice(&index.to_le_bytes());
    data.extend(record(fields, report, index));
    flex_message(&data)
}

/// What the device waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// `*<S`, then `*<FLEX`.
    Handshake,
    /// `~A` for this many records.
    Archive(usize),
    /// `~T` naming this index.
    Current(u32),
}

/// A Navtelecom terminal as the simulator and tests drive it: the handshake and a FLEX
/// 1.0 negotiation of [`DEVICE_FIELDS`], then one report as `~T` and several as `~A`.
#[derive(Debug, Default)]
pub struct Device {
    index: u32,
    in_flight: VecDeque<Awaited>,
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        self.in_flight.clear();
        self.in_flight.push_back(Awaited::Handshake);
        let mut bytes = handshake(identifier, 0);
        bytes.extend(negotiation(0, FLEX_10, &DEVICE_FIELDS, 69));
        bytes
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let first = self.index;
        self.index = self.index.wrapping_add(reports.len() as u32);
        match reports {
            [one] => {
                self.in_flight.push_back(Awaited::Current(first));
                current(&DEVICE_FIELDS, one, first)
            }
            many => {
                self.in_flight.push_back(Awaited::Archive(many.len()));
                archive(&DEVICE_FIELDS, many, first)
            }
        }
    }

    fn answers_refusals(&self) -> bool {
        false
    }

    fn time_resolution_ms(&self) -> i64 {
        1000
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        match buffer.first() {
            None => Ok(None),
            Some(b'@') => {
                if buffer.len() < ntcb::HEADER_LEN {
                    return Ok(None);
                }
                let len = ntcb::HEADER_LEN + usize::from(ntcb::header(buffer).len);
                if buffer.len() < len {
                    return Ok(None);
                }
                let envelope = buffer.split_to(len);
                let data = &envelope[ntcb::HEADER_LEN..];
                if data.starts_with(b"*<FLEX") && self.in_flight.front() == Some(&Awaited::Handshake) {
                    self.in_flight.pop_front();
                    return Ok(Some(Answer::LoginAccepted));
                }
                Ok(Some(Answer::Other))
            }
            Some(b'~') => {
                let len = match buffer.get(1) {
                    Some(b'A') => 4,
                    Some(b'T' | b'C') => 7,
                    Some(other) => return Err(format!("FLEX answer ~{}", *other as char)),
                    None => return Ok(None),
                };
                if buffer.len() < len {
                    return Ok(None);
                }
                let answer = buffer.split_to(len);
                if flex::crc8(&answer[..len - 1]) != answer[len - 1] {
                    return Err("FLEX answer with a wrong CRC-8".into());
                }
                let answered = match answer[1] {
                    b'A' => Awaited::Archive(usize::from(answer[2])),
                    _ => Awaited::Current(u32::from_le_bytes([answer[2], answer[3], answer[4], answer[5]])),
                };
                match self.in_flight.iter().position(|awaited| *awaited == answered) {
                    Some(at) => {
                        self.in_flight.remove(at);
                        Ok(Some(Answer::Accepted(match answered {
                            Awaited::Archive(count) => count,
                            _ => 1,
                        })))
                    }
                    None => Ok(Some(Answer::Other)),
                }
            }
            Some(other) => {
                let other = *other;
                buffer.advance(1);
                Err(format!("answer byte 0x{other:02X}"))
            }
        }
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        if reply.starts_with(b"~") {
            return true;
        }
        let data = reply.get(ntcb::HEADER_LEN..).unwrap_or_default();
        data.starts_with(b"*<T") || data.starts_with(b"*<A")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_envelope_is_the_documented_one() {
        let command = ntcb::envelope(ntcb::PREFIX, 0, 1, b"*!SETOUT 1Y");
        assert_eq!(
            crate::hex::HexDisplay(&command).to_string(),
            "404e544300000000010000000b004f5c2a215345544f5554203159"
        );
    }
}
