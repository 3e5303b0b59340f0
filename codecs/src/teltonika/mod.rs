//! Teltonika FMx: the IMEI handshake, AVL data (codecs 7, 8, 8E, 16) and GPRS messages
//! (codecs 12, 13, 14, 15), over a TCP stream or UDP datagrams.
//!
//! TCP stream:
//! ```text
//! handshake:  len:u16 (non-zero)  imei:ascii[len]            -> 01 accept / 00 reject
//! keep-alive: FF                                              -> (nothing)
//! packet:     00000000  len:u32  data[len]  crc:u32           -> AVL: record count, u32 BE
//!             data = codec:u8  count:u8  records...  count:u8    GPRS: (nothing)
//! ```
//! The CRC is CRC-16/ARC over `data`. The declared length is checked against a limit
//! before any of the body is buffered.
//!
//! When the session refuses and when it gives up:
//! - A packet whose envelope holds (zero preamble, length within limits) but whose CRC,
//!   counts or records are wrong is *refused*: skipped whole, answered `00000000` (zero
//!   records accepted, so the device resends), and the stream goes on with the next byte.
//! - A non-zero preamble, a declared length below the minimum or above the limit, an
//!   implausible handshake, or data before the handshake (except in `decode`, see
//!   [`SessionOptions::allow_anonymous`]) leave no trustworthy frame boundary: the
//!   error is [`Fatal`] and the connection closes. Nothing was acknowledged, so the
//!   device resends after reconnecting.
//! - A length that claims more than arrives is indistinguishable from a slow device: the
//!   session waits, bounded by the limit; the gateway's idle timeout ends the wait.

mod avl;
pub mod encode;
mod gprs;
mod io_map;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use nom::Parser;
use nom::combinator::verify;

use crate::kit::{self, Reason, be_u8, be_u16, be_u32, checksummed, length_checked, offset, take};
use crate::position::Batch;
use crate::protocol::{DatagramError, Event, Fatal, Session, SessionOptions};
use crate::registry::{Passwords, ProtocolSpec, Transports};

pub use avl::{CODEC_7, CODEC_8, CODEC_8E, CODEC_16, GH3000_CELL_ID, GH3000_LAC_ID};
pub use gprs::{CODEC_12, CODEC_13, CODEC_14, CODEC_15, encode_command, encode_command_for_imei};

/// The codec name in contract 1.
pub const NAME: &str = "teltonika";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "Teltonika FMx (codecs 7, 8, 8E, 16; 12-15 messages and commands)",
    default_port: 5027,
    transports: Transports { tcp: true, udp: true },
    text: false,
    limits: &["max_avl_len", "max_gprs_len"],
    session: |options| Box::new(TeltonikaSession::new(options)),
    identifier: |identifier| identifier.len() <= MAX_IMEI_LEN && identifier.bytes().all(|b| b.is_ascii_alphanumeric()),
    identifier_rule: "the IMEI: at most 32 letters or digits",
    passwords: Passwords::None,
    device: || Box::new(encode::Device::default()),
};

/// Longest identifier accepted in the handshake; real IMEIs have 15 digits.
pub const MAX_IMEI_LEN: usize = 32;

/// Smallest data field: codec id, count, count.
const MIN_DATA_LEN: u32 = 3;

/// CRC-16/ARC (poly 0x8005 reflected, init 0), the checksum of TCP packets.
pub fn crc16_arc(data: &[u8]) -> u16 {
    // Slicing-by-16 tables: on one-record frames the checksum is a large share of the
    // decoding time (a hand-written slicing-by-8 measured slower, see BENCHMARKS.md).
    const ARC: crc::Crc<u16, crc::Table<16>> = crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_ARC);
    ARC.checksum(data)
}

/// Every possible record count as its 4-byte answer, so acknowledging allocates nothing.
static RECORD_ACKS: [[u8; 4]; 256] = {
    let mut acks = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        acks[n] = (n as u32).to_be_bytes();
        n += 1;
    }
    acks
};

/// The reply to a data packet: the number of records accepted, 4 bytes big-endian.
pub fn records_ack(n_records: u32) -> Bytes {
    match RECORD_ACKS.get(n_records as usize) {
        Some(ack) => Bytes::from_static(ack),
        None => Bytes::copy_from_slice(&n_records.to_be_bytes()),
    }
}

const ACCEPT: &[u8] = &[0x01];
const REJECT: &[u8] = &[0x00];
const NOTHING_ACCEPTED: &[u8] = &[0, 0, 0, 0];

fn is_avl_codec(codec: u8) -> bool {
    matches!(codec, CODEC_7 | CODEC_8 | CODEC_8E | CODEC_16)
}

fn is_gprs_codec(codec: u8) -> bool {
    matches!(codec, CODEC_12 | CODEC_13 | CODEC_14 | CODEC_15)
}

/// Why a packet was refused: what, and the offset (within the packet) of the failing field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketError {
    /// Offset of the failing field from the start of the packet.
    pub offset: usize,
    /// What was wrong, with values.
    pub message: String,
}

/// Checks the CRC of a complete TCP packet (preamble, length, data, CRC).
fn check_crc(frame: &[u8]) -> Result<(), PacketError> {
    let crc = |data: &[u8]| u64::from(crc16_arc(data));
    let Err(error) = checksummed(frame.len() - 12, be_u32, crc).parse_complete(&frame[8..]) else {
        return Ok(());
    };
    let message = match kit::failure(error).reason {
        Reason::Checksum { sent, computed } => format!(
            "crc mismatch: frame says 0x{sent:04X}, data gives 0x{computed:04X} (codec 0x{:02X}, {} bytes)",
            frame[8],
            frame.len()
        ),
        _ => format!("packet of {} bytes is too short", frame.len()),
    };
    Err(PacketError { offset: 0, message })
}

/// Decodes one complete TCP AVL packet (preamble through CRC, framed and length-checked
/// by the session) into `batch`, and returns its record count, which is also the ack.
pub fn decode_avl_packet(frame: &Bytes, batch: &mut Batch) -> Result<u8, PacketError> {
    if frame.len() < 8 + MIN_DATA_LEN as usize + 4 {
        return Err(PacketError { offset: 0, message: format!("packet of {} bytes is too short", frame.len()) });
    }
    check_crc(frame)?;
    decode_checked_avl_packet(frame, batch)
}

/// [`decode_avl_packet`] for a packet whose CRC was already checked.
fn decode_checked_avl_packet(frame: &Bytes, batch: &mut Batch) -> Result<u8, PacketError> {
    batch.reset(frame.clone());
    let codec = frame[8];
    avl::decode_avl(frame, 8, frame.len() - 4, batch)
        .map_err(|error| PacketError { offset: error.at, message: format!("{} (codec 0x{codec:02X})", error.message) })
}

/// The decoding state of one Teltonika connection (or one UDP peer).
#[derive(Debug)]
pub struct TeltonikaSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    /// Bytes consumed from the stream so far.
    offset: u64,
    /// Further events of a frame that produced several (GPRS packets with many messages).
    pending: VecDeque<Event>,
    /// A batch handed back by the caller, decoded into next.
    spare: Option<Batch>,
}

impl TeltonikaSession {
    /// A session that has not seen the handshake yet.
    pub fn new(options: SessionOptions) -> Self {
        TeltonikaSession { options, device: None, offset: 0, pending: VecDeque::new(), spare: None }
    }

    /// The device identifier from the handshake, once seen.
    pub fn device(&self) -> Option<&Arc<str>> {
        self.device.as_ref()
    }

    fn fatal(&self, at: u64, error: String) -> Fatal {
        Fatal { offset: at, error }
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) -> Bytes {
        self.offset += n as u64;
        src.split_to(n).freeze()
    }

    fn decode_handshake(&mut self, src: &mut BytesMut, len: usize) -> Result<Option<Event>, Fatal> {
        if len > MAX_IMEI_LEN {
            return Err(self.fatal(self.offset, format!("implausible IMEI length {len} (at most {MAX_IMEI_LEN})")));
        }
        if src.len() < 2 + len {
            return Ok(None);
        }
        let imei = &src[2..2 + len];
        if let Some(bad) = imei.iter().position(|b| !b.is_ascii_alphanumeric()) {
            return Err(self.fatal(
                self.offset + 2 + bad as u64,
                format!("IMEI byte 0x{:02X} at position {bad} is not a digit", imei[bad]),
            ));
        }
        let device = String::from_utf8_lossy(imei).into_owned();
        self.consume(src, 2 + len);
        self.device = Some(Arc::from(device.as_str()));
        Ok(Some(Event::Login {
            device,
            password: None,
            accept: Bytes::from_static(ACCEPT),
            reject: Bytes::from_static(REJECT),
        }))
    }

    fn decode_packet(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        let start = self.offset;
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(self.fatal(start, "data packet before the IMEI handshake".into()));
        }
        if src.len() < 9 {
            return Ok(None);
        }
        // The length's limit depends on the codec, which follows it.
        let codec = src[8];
        let limit = if is_gprs_codec(codec) { self.options.max_gprs_len } else { self.options.max_avl_len };
        let preamble = verify(be_u32, |preamble| *preamble == 0);
        let header = (preamble, length_checked(be_u32, limit as usize, "data length")).parse_complete(&src[..8]);
        let data_len = match header.map_err(kit::failure) {
            Ok((_, (_, data_len))) => data_len,
            Err(kit::Error { reason: Reason::Invalid(message), .. }) => {
                return Err(self.fatal(start + 4, format!("{message} for codec 0x{codec:02X}")));
            }
            Err(_) => return Err(self.fatal(start, format!("bad preamble {:02X?} (expected 00000000)", &src[..4]))),
        };
        if data_len < MIN_DATA_LEN as usize {
            return Err(
                self.fatal(start + 4, format!("declared data length {data_len} is below the minimum {MIN_DATA_LEN}"))
            );
        }
        let frame_len = 8 + data_len + 4;
        if src.len() < frame_len {
            // Reserve once for the whole frame now that its size is known and bounded.
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        let frame = self.consume(src, frame_len);
        if let Err(error) = check_crc(&frame) {
            // With a bad CRC even the codec byte is suspect: answer "nothing accepted"
            // unless the packet claims to be a command response, which has no answer.
            let reply = (!is_gprs_codec(codec)).then(|| Bytes::from_static(NOTHING_ACCEPTED));
            return Ok(Some(Event::Refused { offset: start, error: error.message, reply }));
        }
        if is_avl_codec(codec) {
            let mut batch = match self.spare.take() {
                Some(spare) => spare.reuse(self.device.clone(), Bytes::new()),
                None => Batch::new(NAME, self.device.clone(), Bytes::new()),
            };
            // The CRC was checked just above, for every codec.
            return Ok(Some(match decode_checked_avl_packet(&frame, &mut batch) {
                Ok(n_records) => Event::Positions {
                    batch,
                    ack: records_ack(u32::from(n_records)),
                    nack: Some(Bytes::from_static(NOTHING_ACCEPTED)),
                },
                Err(error) => Event::Refused {
                    offset: start + error.offset as u64,
                    error: format!("{}, packet at offset {start}", error.message),
                    reply: Some(Bytes::from_static(NOTHING_ACCEPTED)),
                },
            }));
        }
        let data_end = frame.len() - 4;
        if is_gprs_codec(codec) {
            return Ok(Some(match gprs::decode_gprs(&frame, 8, data_end) {
                Ok(messages) => {
                    let mut events = messages.into_iter().map(|message| Event::Message { message, reply: None });
                    let first = events.next();
                    self.pending.extend(events);
                    match first {
                        Some(event) => event,
                        None => return Ok(None),
                    }
                }
                Err(error) => Event::Refused {
                    offset: start + error.at as u64,
                    error: format!("{} (codec 0x{codec:02X} packet at offset {start})", error.message),
                    reply: None,
                },
            }));
        }
        Ok(Some(Event::Refused { offset: start + 8, error: format!("unsupported codec 0x{codec:02X}"), reply: None }))
    }
}

impl Session for TeltonikaSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        if first == 0xFF {
            self.offset += 1;
            src.advance(1);
            return Ok(Some(Event::KeepAlive { reply: None }));
        }
        if src.len() < 2 {
            return Ok(None);
        }
        match u16::from_be_bytes([src[0], src[1]]) {
            0 => self.decode_packet(src),
            len => self.decode_handshake(src, usize::from(len)),
        }
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        decode_udp(self, datagram)
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        // Codec 12; the device answers with a codec 12 response.
        Some((encode_command(payload), true))
    }

    fn recycle(&mut self, batch: Batch) {
        // Let go of the frame now, so the connection buffer it came from is unique again
        // and its space can be reused for the next read.
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }
}

/// UDP datagram:
/// ```text
/// len:u16  packet_id:u16  01  avl_packet_id:u8  imei_len:u16  imei  codec count records count
/// ```
/// UDP has no CRC, so the length must match the datagram exactly. The ack echoes the
/// packet id: `0005 <packet_id> 01 <avl_packet_id> <count>`.
fn decode_udp(session: &mut TeltonikaSession, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
    let error = |offset: usize, error: String| DatagramError { offset, error };
    let header = (be_u16, kit::array::<2>, be_u8, be_u8, be_u16).parse_complete(&datagram[..]);
    let Ok((rest, (declared, packet_id, _, avl_packet_id, imei_len))) = header else {
        return Err(error(0, format!("datagram of {} bytes is shorter than the UDP header", datagram.len())));
    };
    if usize::from(declared) != datagram.len() - 2 {
        return Err(error(0, format!("length field says {declared} bytes, datagram carries {}", datagram.len() - 2)));
    }
    let imei_len = usize::from(imei_len);
    if imei_len == 0 || imei_len > MAX_IMEI_LEN || rest.len() < imei_len + 3 {
        return Err(error(6, format!("implausible IMEI length {imei_len}")));
    }
    let (data, imei) =
        take(imei_len)(rest).map_err(|e| error(offset(&datagram, kit::failure(e).rest), String::new()))?;
    if let Some(bad) = imei.iter().position(|b| !b.is_ascii_alphanumeric()) {
        return Err(error(8 + bad, format!("IMEI byte 0x{:02X} is not a digit", imei[bad])));
    }
    let device = String::from_utf8_lossy(imei).into_owned();
    let data_start = offset(&datagram, data);
    let codec = data[0];
    if !is_avl_codec(codec) {
        return Err(error(data_start, format!("unsupported codec 0x{codec:02X} over UDP")));
    }
    let mut events = Vec::with_capacity(2);
    if session.device.as_deref() != Some(device.as_str()) {
        session.device = Some(Arc::from(device.as_str()));
        events.push(Event::Login { device, password: None, accept: Bytes::new(), reject: Bytes::new() });
    }
    let mut batch = Batch::new(NAME, session.device.clone(), datagram.clone());
    let n_records = avl::decode_avl(&datagram, data_start, datagram.len(), &mut batch)
        .map_err(|e| error(e.at, format!("{} (codec 0x{codec:02X})", e.message)))?;
    let ack = Bytes::from(vec![0x00, 0x05, packet_id[0], packet_id[1], 0x01, avl_packet_id, n_records]);
    events.push(Event::Positions { batch, ack, nack: None });
    Ok(events)
}
