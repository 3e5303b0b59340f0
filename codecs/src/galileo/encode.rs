//! Encoding what a Galileosky terminal sends (head packets, records, command answers)
//! and the server's commands, with the [`Device`] side the registry hands the
//! simulator, the benches and the tests.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use super::{header, packet, tags};
use crate::device::{Answer, DeviceSide, Report};

/// The body of a head packet: hardware and firmware version, IMEI, device id.
pub fn head(imei: &str, device_id: u16) -> Vec<u8> {
    let mut body = vec![0x01, 0x82, 0x02, 0x17, tags::IMEI];
    body.extend_from_slice(format!("{imei:0>15}").as_bytes().get(..15).unwrap_or_default());
    body.push(tags::DEVICE_ID);
    body.extend_from_slice(&device_id.to_le_bytes());
    body
}

/// One record for a report: record number, time, coordinates with satellites, speed and
/// course, altitude, HDOP, supply voltage, inputs (input 1 = ignition), odometer, and
/// the CAN fuel level.
pub fn record(report: &Report, number: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.push(tags::RECORD);
    out.extend_from_slice(&number.to_le_bytes());
    out.push(0x20);
    out.extend_from_slice(&((report.time_ms / 1000) as u32).to_le_bytes());
    out.push(0x30);
    out.push(report.satellites.min(15));
    out.extend_from_slice(&((report.lat * 1e6).round() as i32).to_le_bytes());
    out.extend_from_slice(&((report.lon * 1e6).round() as i32).to_le_bytes());
    out.push(0x33);
    out.extend_from_slice(&((report.speed * 10.0).round() as u16).to_le_bytes());
    out.extend_from_slice(&((report.course * 10.0).round() as u16 % 3600).to_le_bytes());
    out.push(0x34);
    out.extend_from_slice(&(report.altitude.round() as i16).to_le_bytes());
    out.extend_from_slice(&[0x35, 9]);
    out.push(0x41);
    out.extend_from_slice(&((report.power_v * 1000.0).round() as u16).to_le_bytes());
    out.push(0x46);
    out.extend_from_slice(&u16::from(report.ignition).to_le_bytes());
    out.push(0xD4);
    out.extend_from_slice(&(report.odometer_m.max(0.0) as u32).to_le_bytes());
    out.extend_from_slice(&[0xC1, (report.fuel_percent / 0.4).round().clamp(0.0, 255.0) as u8, 130, 0, 0]);
    out
}

/// A command: IMEI, device id, command number and text, as the server sends it.
pub fn command(imei: &str, device_id: u16, number: u32, text: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(30 + text.len());
    body.push(tags::IMEI);
    body.extend_from_slice(imei.as_bytes());
    body.push(tags::DEVICE_ID);
    body.extend_from_slice(&device_id.to_le_bytes());
    body.push(tags::COMMAND_NUMBER);
    body.extend_from_slice(&number.to_le_bytes());
    body.push(tags::COMMAND_TEXT);
    body.push(text.len() as u8);
    body.extend_from_slice(text);
    packet(header::MAIN, &body, false)
}

/// A device's answer to command `number`.
pub fn command_answer(imei: &str, device_id: u16, number: u32, text: &[u8]) -> Vec<u8> {
    command(imei, device_id, number, text)
}

/// A Galileosky terminal as the simulator and tests drive it: a head packet, then one
/// main packet of records per call; every packet is answered `02` + its checksum.
#[derive(Debug, Default)]
pub struct Device {
    /// Send data as archived (black-box) packets.
    pub archive: bool,
    record: u16,
    /// Checksums of packets sent and not answered, with their reports (`None`: the
    /// head packet).
    in_flight: VecDeque<(u16, Option<usize>)>,
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        self.in_flight.clear();
        let packet = packet(header::MAIN, &head(identifier, 1), false);
        self.in_flight.push_back((crc_of(&packet), None));
        packet
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let mut body = Vec::with_capacity(reports.len() * 48);
        for report in reports {
            self.record = self.record.wrapping_add(1);
            body.extend_from_slice(&record(report, self.record));
        }
        let packet = packet(header::MAIN, &body, self.archive);
        self.in_flight.push_back((crc_of(&packet), Some(reports.len())));
        packet
    }

    fn answers_refusals(&self) -> bool {
        false
    }

    fn time_resolution_ms(&self) -> i64 {
        1000
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        let Some(&first) = buffer.first() else { return Ok(None) };
        match first {
            header::ANSWER | header::PHOTO if buffer.len() < 3 => Ok(None),
            header::ANSWER => {
                let crc = u16::from_le_bytes([buffer[1], buffer[2]]);
                buffer.advance(3);
                let Some(at) = self.in_flight.iter().position(|(sent, _)| *sent == crc) else {
                    return Ok(Some(Answer::Other));
                };
                let answered = self.in_flight.remove(at).and_then(|(_, reports)| reports);
                Ok(Some(match answered {
                    None => Answer::LoginAccepted,
                    Some(reports) => Answer::Accepted(reports),
                }))
            }
            header::MAIN => {
                // A command: read it whole and go on.
                match super::scan(buffer, 4096)? {
                    super::Scan::Packet { len, .. } => {
                        buffer.advance(len);
                        Ok(Some(Answer::Other))
                    }
                    super::Scan::Incomplete => Ok(None),
                }
            }
            other => Err(format!("answer byte 0x{other:02X}")),
        }
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        reply.len() == 3 && reply[0] == header::ANSWER
    }
}

fn crc_of(packet: &[u8]) -> u16 {
    let end = packet.len() - 2;
    u16::from_le_bytes([packet[end], packet[end + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_command_is_the_documented_packet() {
        let packet = command("123456789012345", 0, 0, b"status");
        let expected = "01200003313233343536373839303132333435040000e000000000e1067374617475731f64";
        assert_eq!(crate::hex::HexDisplay(&packet).to_string(), expected);
    }
}
