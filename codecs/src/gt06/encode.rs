//! Encoding what a GT06 device sends: login, locations (0x22, in both frame forms),
//! heartbeats (0x13), and the [`Device`] side the registry hands the simulator, the
//! benches and the tests. The gateway itself only encodes answers and commands.

use bytes::{Buf, BytesMut};

use super::{crc_x25, frame, kind, server_frame};
use crate::device::{Answer, DeviceSide, Report};
use crate::time::UtcMillis;

/// A frame as a device builds it: basic (`78 78`) or extended (`79 79`).
pub fn device_frame(kind: u8, content: &[u8], serial: u16, extended: bool) -> Vec<u8> {
    server_frame(kind, content, serial, extended).to_vec()
}

/// The login: the IMEI as 8 BCD bytes (a leading 0 pads it to 16 digits), the type
/// identifier, and the time zone word for `offset_minutes` east of UTC.
pub fn login(imei: &str, offset_minutes: i32, serial: u16) -> Vec<u8> {
    let digits: Vec<u8> = format!("{imei:0>16}").bytes().map(|b| b.wrapping_sub(b'0') & 0x0F).collect();
    let mut content: Vec<u8> =
        digits.chunks(2).map(|pair| (pair[0] << 4) | pair.get(1).copied().unwrap_or(0)).collect();
    content.truncate(8);
    content.extend_from_slice(&[0x36, 0x08]);
    let hhmm = (offset_minutes.abs() / 60 * 100 + offset_minutes.abs() % 60) as u16;
    let word = (hhmm << 4) | if offset_minutes < 0 { 0x08 } else { 0x00 } | 0x02;
    content.extend_from_slice(&word.to_be_bytes());
    device_frame(kind::LOGIN, &content, serial, false)
}

/// The GPS block of a report, its time written in a clock `offset_minutes` east of UTC.
pub fn gps_block(report: &Report, offset_minutes: i32) -> [u8; 18] {
    let local = UtcMillis(report.time_ms + i64::from(offset_minutes) * 60_000);
    let (year, month, day, hour, minute, second) = local.civil();
    let mut block = [0u8; 18];
    block[..6].copy_from_slice(&[(year - 2000) as u8, month as u8, day as u8, hour as u8, minute as u8, second as u8]);
    block[6] = 0xC0 | report.satellites.min(15);
    let lat = (report.lat.abs() * 1_800_000.0).round() as u32;
    let lon = (report.lon.abs() * 1_800_000.0).round() as u32;
    block[7..11].copy_from_slice(&lat.to_be_bytes());
    block[11..15].copy_from_slice(&lon.to_be_bytes());
    block[15] = report.speed.round().clamp(0.0, 255.0) as u8;
    let mut flags = (report.course.round() as u16 % 360) | 0x1000;
    if report.lat >= 0.0 {
        flags |= 0x0400;
    }
    if report.lon < 0.0 {
        flags |= 0x0800;
    }
    block[16..18].copy_from_slice(&flags.to_be_bytes());
    block
}

/// A 0x22 location: GPS, a cell, ACC, upload reason, re-upload flag and the odometer.
pub fn location(report: &Report, serial: u16, extended: bool) -> Vec<u8> {
    let mut content = gps_block(report, 0).to_vec();
    content.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0x71]);
    content.extend_from_slice(&[u8::from(report.ignition), 0x00, 0x00]);
    content.extend_from_slice(&(report.odometer_m.max(0.0) as u32).to_be_bytes());
    device_frame(0x22, &content, serial, extended)
}

/// A 0x16 alarm: GPS, a sized cell, the status block with alarm `code` (0x01 SOS, 0x02
/// power cut, 0x06 overspeed, ...).
pub fn alarm(report: &Report, code: u8, serial: u16) -> Vec<u8> {
    let mut content = gps_block(report, 0).to_vec();
    content.extend_from_slice(&[0x09, 0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0x71]);
    let info = 0x44 | if report.ignition { 0x02 } else { 0x00 };
    content.extend_from_slice(&[info, 0x06, 0x04, code, 0x02]);
    device_frame(0x16, &content, serial, false)
}

/// A 0x13 heartbeat: terminal info (ACC, charging), voltage level, GSM signal, no
/// alarm, language.
pub fn heartbeat(ignition: bool, level: u8, gsm: u8, serial: u16) -> Vec<u8> {
    let info = 0x44 | if ignition { 0x02 } else { 0x00 };
    device_frame(0x13, &[info, level, gsm, 0x00, 0x02], serial, false)
}

/// A GT06 tracker as the simulator and tests drive it: the login, then one 0x22 frame
/// per report, alternating the basic and extended forms; each frame is answered with its
/// protocol number and serial.
#[derive(Debug, Default)]
pub struct Device {
    serial: u16,
    /// Lengths of the frames of the last [`DeviceSide::data`].
    frames: Vec<usize>,
}

impl Device {
    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        let serial = self.next_serial();
        login(identifier, 0, serial)
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let mut out = Vec::new();
        self.frames.clear();
        for report in reports {
            let serial = self.next_serial();
            let frame = location(report, serial, serial % 2 == 0);
            self.frames.push(frame.len());
            out.extend(frame);
        }
        out
    }

    fn corrupt(&self, frames: &mut Vec<u8>) {
        // Every frame's CRC: the two bytes before its stop bytes.
        let mut end = 0;
        for len in &self.frames {
            end += len;
            if let Some(byte) = frames.get_mut(end - 3) {
                *byte ^= 0xFF;
            }
        }
    }

    fn time_resolution_ms(&self) -> i64 {
        1000
    }

    fn answers_refusals(&self) -> bool {
        false
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        if buffer.len() < 3 {
            return Ok(None);
        }
        let len = match [buffer[0], buffer[1]] {
            frame::BASIC => usize::from(buffer[2]) + 5,
            frame::EXTENDED if buffer.len() >= 4 => usize::from(u16::from_be_bytes([buffer[2], buffer[3]])) + 6,
            frame::EXTENDED => return Ok(None),
            other => return Err(format!("answer starts with {other:02X?}")),
        };
        if buffer.len() < len {
            return Ok(None);
        }
        let answer = buffer.split_to(len);
        if answer[len - 2..] != frame::STOP {
            return Err(format!("answer of {len} bytes does not end with 0D0A"));
        }
        let header = if answer[0] == 0x79 { 4 } else { 3 };
        if answer.len() >= header + 7 {
            let sent = u16::from_be_bytes([answer[len - 4], answer[len - 3]]);
            if crc_x25(&answer[2..len - 4]) != sent {
                return Err("answer with a wrong CRC".into());
            }
        }
        let mut kind_byte = &answer[header..];
        Ok(Some(match kind_byte.get_u8() {
            kind::LOGIN => Answer::LoginAccepted,
            0x22 => Answer::Accepted(1),
            _ => Answer::Other,
        }))
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        // The server answers nothing it refused: any answer but the login's says the data
        // was taken.
        let kind = match reply {
            [0x78, 0x78, _, kind, ..] | [0x79, 0x79, _, _, kind, ..] => *kind,
            _ => return false,
        };
        reply.ends_with(&frame::STOP) && kind != kind::LOGIN
    }
}
