//! Encoding what a Teltonika device sends: the handshake and AVL packets over TCP and
//! UDP, and the [`Device`] side the registry hands the simulator, the benches and the
//! tests. The gateway itself only encodes replies and commands.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CODEC_8E, CODEC_16, crc16_arc};
use crate::device::{Answer, DeviceSide, Report};

/// The value of one IO element; its variant picks the group it is sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoElement {
    /// 1-byte group.
    U8(u8),
    /// 2-byte group.
    U16(u16),
    /// 4-byte group.
    U32(u32),
    /// 8-byte group.
    U64(u64),
    /// Variable-length group (codec 8E only).
    Bytes(Vec<u8>),
}

/// One AVL record as a device builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// 0 low, 1 high, 2 panic.
    pub priority: u8,
    /// Longitude in 1e-7 degrees.
    pub lon: i32,
    /// Latitude in 1e-7 degrees.
    pub lat: i32,
    /// Metres.
    pub altitude: i16,
    /// Degrees.
    pub course: u16,
    /// Satellites in use.
    pub satellites: u8,
    /// km/h.
    pub speed: u16,
    /// The IO id that triggered the record.
    pub event_io: u16,
    /// Codec 16 generation type.
    pub generation: u8,
    /// IO elements, sent grouped by size in this order within each group.
    pub io: Vec<(u16, IoElement)>,
}

/// The IMEI handshake.
pub fn handshake(imei: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + imei.len());
    out.put_u16(imei.len() as u16);
    out.put_slice(imei.as_bytes());
    out.freeze()
}

fn put_width(out: &mut BytesMut, value: u16, wide: bool) {
    if wide { out.put_u16(value) } else { out.put_u8(value as u8) }
}

/// The AVL data field (codec id through the trailing count) of `records`.
///
/// Codec 8 and 16 carry 1-byte ids (8) or counts (8, 16): values that do not fit are
/// truncated, as a device would never send them. Variable-length elements are only
/// sent with codec 8E and skipped otherwise.
pub fn avl_data(codec: u8, records: &[Record]) -> Vec<u8> {
    let wide = codec == CODEC_8E;
    let wide_ids = codec == CODEC_8E || codec == CODEC_16;
    let mut out = BytesMut::new();
    out.put_u8(codec);
    out.put_u8(records.len() as u8);
    for record in records {
        out.put_u64(record.time_ms);
        out.put_u8(record.priority);
        out.put_i32(record.lon);
        out.put_i32(record.lat);
        out.put_i16(record.altitude);
        out.put_u16(record.course);
        out.put_u8(record.satellites);
        out.put_u16(record.speed);
        put_width(&mut out, record.event_io, wide_ids);
        if codec == CODEC_16 {
            out.put_u8(record.generation);
        }
        let fixed = |size: usize| {
            record.io.iter().filter(move |(_, v)| {
                matches!(
                    (size, v),
                    (1, IoElement::U8(_)) | (2, IoElement::U16(_)) | (4, IoElement::U32(_)) | (8, IoElement::U64(_))
                )
            })
        };
        let variable: Vec<_> = record.io.iter().filter(|(_, v)| matches!(v, IoElement::Bytes(_))).collect();
        let total =
            [1, 2, 4, 8].iter().map(|&s| fixed(s).count()).sum::<usize>() + if wide { variable.len() } else { 0 };
        put_width(&mut out, total as u16, wide);
        for size in [1usize, 2, 4, 8] {
            put_width(&mut out, fixed(size).count() as u16, wide);
            for (id, value) in fixed(size) {
                put_width(&mut out, *id, wide_ids);
                match value {
                    IoElement::U8(v) => out.put_u8(*v),
                    IoElement::U16(v) => out.put_u16(*v),
                    IoElement::U32(v) => out.put_u32(*v),
                    IoElement::U64(v) => out.put_u64(*v),
                    IoElement::Bytes(_) => {}
                }
            }
        }
        if wide {
            out.put_u16(variable.len() as u16);
            for (id, value) in variable {
                if let IoElement::Bytes(bytes) = value {
                    out.put_u16(*id);
                    out.put_u16(bytes.len() as u16);
                    out.put_slice(bytes);
                }
            }
        }
    }
    out.put_u8(records.len() as u8);
    out.to_vec()
}

/// A complete TCP AVL packet: preamble, length, data, CRC.
pub fn avl_packet(codec: u8, records: &[Record]) -> Bytes {
    let data = avl_data(codec, records);
    let mut out = BytesMut::with_capacity(12 + data.len());
    out.put_u32(0);
    out.put_u32(data.len() as u32);
    out.put_slice(&data);
    out.put_u32(u32::from(crc16_arc(&data)));
    out.freeze()
}

/// A complete UDP datagram with its packet ids and IMEI.
pub fn udp_datagram(packet_id: u16, avl_packet_id: u8, imei: &str, codec: u8, records: &[Record]) -> Bytes {
    let data = avl_data(codec, records);
    let mut out = BytesMut::with_capacity(8 + imei.len() + data.len());
    out.put_u16((6 + imei.len() + data.len()) as u16);
    out.put_u16(packet_id);
    out.put_u8(0x01);
    out.put_u8(avl_packet_id);
    out.put_u16(imei.len() as u16);
    out.put_slice(imei.as_bytes());
    out.put_slice(&data);
    out.freeze()
}

/// A Teltonika FMB device as the simulator and tests drive it: the IMEI handshake, codec
/// 8E packets of typical FMB records, answers of one byte (login) or four (records).
#[derive(Debug, Default)]
pub struct Device {
    logged_in: bool,
}

/// The record an FMB device sends for a report: ignition (239), movement (240), GSM
/// signal (21), GNSS status (69), external and battery voltage (66, 67), speed (24),
/// fuel level % (89) and total odometer (16).
pub fn record_of(report: &Report) -> Record {
    Record {
        time_ms: report.time_ms as u64,
        priority: 0,
        lon: (report.lon * 1e7).round() as i32,
        lat: (report.lat * 1e7).round() as i32,
        altitude: report.altitude.round() as i16,
        course: report.course.round() as u16 % 360,
        satellites: report.satellites,
        speed: report.speed.round() as u16,
        event_io: 0,
        generation: 0,
        io: vec![
            (239, IoElement::U8(u8::from(report.ignition))),
            (240, IoElement::U8(u8::from(report.speed > 3.0))),
            (21, IoElement::U8(4)),
            (69, IoElement::U8(1)),
            (66, IoElement::U16((report.power_v * 1000.0) as u16)),
            (67, IoElement::U16(4100)),
            (24, IoElement::U16(report.speed.round() as u16)),
            (89, IoElement::U8(report.fuel_percent.round() as u8)),
            (16, IoElement::U32(report.odometer_m as u32)),
        ],
    }
}

impl DeviceSide for Device {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        self.logged_in = false;
        handshake(identifier).to_vec()
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let records: Vec<Record> = reports.iter().map(record_of).collect();
        avl_packet(CODEC_8E, &records).to_vec()
    }

    fn corrupt(&self, frames: &mut Vec<u8>) {
        // The last byte is the CRC's.
        if let Some(last) = frames.last_mut() {
            *last ^= 0xFF;
        }
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        match reply {
            // A record count (TCP), or a UDP ack that echoes the packet ids and counts.
            [_, _, _, _] => reply.iter().any(|&b| b != 0),
            [0x00, 0x05, _, _, 0x01, _, count] => *count > 0,
            _ => false,
        }
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        if !self.logged_in {
            let Some(&answer) = buffer.first() else { return Ok(None) };
            buffer.advance(1);
            return Ok(Some(match answer {
                1 => {
                    self.logged_in = true;
                    Answer::LoginAccepted
                }
                _ => Answer::LoginRefused,
            }));
        }
        if buffer.len() < 4 {
            return Ok(None);
        }
        let count = buffer.get_u32();
        Ok(Some(Answer::Accepted(count as usize)))
    }
}
