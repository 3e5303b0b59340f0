//! Navtelecom (Smart, Signal and the rest): NTCB envelopes and FLEX records over TCP.
//!
//! The NTCB envelope and its binary record formats are in [`ntcb`]; FLEX negotiation
//! and records in [`flex`].
//!
//! | device sends | becomes | answer |
//! |---|---|---|
//! | `*>S:IMEI` (NTCB) | login | `*<S` |
//! | `*>FLEX` protocol, versions, field bitfield (NTCB) | the connection's record layout | `*<FLEX B0` and the versions accepted (FLEX 1.0 and 2.0; anything else is offered 2.0) |
//! | `*>T` one record, `*>A` count and records (NTCB, formats F1.0-F6.0) | positions | `*<T` + index, `*<A` + count |
//! | `~A` count and records, `~T` event index and a record, `~C` a record (FLEX, CRC-8) | positions | `~A` + count, `~T` + event index, `~C` + record index, each with its CRC-8 |
//! | `*@...` (NTCB) | message answering the command | (none) |
//! | an empty NTCB envelope, `0x7F` | keep-alive | (none) |
//!
//! Answers to NTCB messages are envelopes addressed back (receiver and sender swapped).
//! A message whose data checksum (NTCB: XOR; FLEX: CRC-8) does not match, or whose
//! records run past its end, is refused unanswered so the device sends it again. An
//! NTCB header whose checksum does not match, a byte that starts no message, a FLEX
//! message before the negotiation (its length cannot be known) and the FLEX 2.0 extra
//! packages `~E`/`~X` (no capture shows their layout) close the connection.
//!
//! Commands go to the device as NTCB `*!` text (`*!SETOUT 1Y`; the `*!` is added when
//! missing); its `*@` answer is stored with the command.

pub mod encode;
pub mod flex;
pub mod ntcb;

use std::cell::Cell;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::kit;
use crate::out::Out;
use crate::position::Batch;
use crate::protocol::{DatagramError, DeviceMessage, Event, Fatal, Session, SessionOptions};
use crate::registry::{self, Passwords, ProtocolSpec, Transports};

/// The codec name in contract 1.
pub const NAME: &str = "navtelecom";

/// The registry entry.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "Navtelecom NTCB and FLEX 1.0/2.0 (Smart, Signal; *! commands)",
    default_port: 5019,
    transports: Transports { tcp: true, udp: false },
    text: false,
    limits: &["max_frame_len"],
    session: |options| Box::new(NavtelecomSession::new(options)),
    identifier: registry::is_imei,
    identifier_rule: registry::IMEI_RULE,
    passwords: Passwords::None,
    device: || Box::new(encode::Device::default()),
};

/// FLEX keep-alive byte.
pub const KEEP_ALIVE: u8 = 0x7F;

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Not enough bytes to decide yet.
    Incomplete,
    /// An NTCB envelope of `len` bytes.
    Ntcb {
        /// Header and data.
        len: usize,
    },
    /// A FLEX message of `len` bytes.
    Flex {
        /// Type, body and CRC-8.
        len: usize,
    },
    /// The FLEX keep-alive byte.
    KeepAlive,
}

/// Finds the message at the front of `buf`, FLEX messages laid out by `layout`; `Err`
/// says why the stream cannot go on.
pub fn scan(buf: &[u8], layout: Option<&flex::Layout>, limit: usize) -> Result<Scan, String> {
    let Some(&first) = buf.first() else { return Ok(Scan::Incomplete) };
    match first {
        b'@' => {
            if buf.len() < ntcb::HEADER_LEN {
                return Ok(Scan::Incomplete);
            }
            let header = ntcb::header(buf);
            let computed = ntcb::xor(&buf[..15]);
            if header.header_xor != computed {
                return Err(format!(
                    "NTCB header checksum: header says 0x{:02X}, its bytes give 0x{computed:02X}",
                    header.header_xor
                ));
            }
            let len = usize::from(header.len);
            if len > limit {
                return Err(format!("declared NTCB data length {len} exceeds the limit {limit}"));
            }
            let len = ntcb::HEADER_LEN + len;
            Ok(if buf.len() < len { Scan::Incomplete } else { Scan::Ntcb { len } })
        }
        KEEP_ALIVE => Ok(Scan::KeepAlive),
        b'~' => {
            let Some(&kind) = buf.get(1) else { return Ok(Scan::Incomplete) };
            let Some(layout) = layout else {
                return Err(format!(
                    "FLEX message ~{} before the FLEX negotiation: its length is unknown",
                    kind as char
                ));
            };
            let len = match kind {
                b'A' => {
                    let Some(&count) = buf.get(2) else { return Ok(Scan::Incomplete) };
                    3 + usize::from(count) * layout.size + 1
                }
                b'T' => 2 + 4 + layout.size + 1,
                b'C' => 2 + layout.size + 1,
                other => {
                    return Err(format!("FLEX message ~{} is not decoded: its layout is unknown", other as char));
                }
            };
            // No limit to check: a layout is at most 403 bytes a record (every field of
            // FLEX 2.0), so a message is at most 255 of them, 102,769 bytes.
            Ok(if buf.len() < len { Scan::Incomplete } else { Scan::Flex { len } })
        }
        other => Err(format!("byte 0x{other:02X} starts no NTCB (@) or FLEX (~) message")),
    }
}

/// A FLEX answer: `data` and its CRC-8.
pub fn flex_answer(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.extend_from_slice(data);
    out.push(flex::crc8(data));
    Bytes::from(out)
}

fn failure_words(frame: &[u8], error: nom::Err<kit::Error<'_>>) -> String {
    let error = kit::failure(error);
    let at = kit::offset(frame, error.rest);
    format!("{} (at message offset {at})", error.reason.words("message"))
}

/// The decoding state of one Navtelecom connection.
#[derive(Debug)]
pub struct NavtelecomSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    /// The envelope prefix, the server's id and the device's, as the device sent them.
    prefix: [u8; 4],
    server_id: u32,
    device_id: u32,
    /// The FLEX layout, once negotiated (shared, so a message borrows none of the session).
    layout: Option<Arc<flex::Layout>>,
    offset: u64,
    /// Commands sent and not answered (an answer names none, so they are only counted).
    commands: Cell<usize>,
    spare: Option<Batch>,
}

impl NavtelecomSession {
    /// A session that has seen nothing yet.
    pub fn new(options: SessionOptions) -> Self {
        NavtelecomSession {
            options,
            device: None,
            prefix: *ntcb::PREFIX,
            server_id: 0,
            device_id: 0,
            layout: None,
            offset: 0,
            commands: Cell::new(0),
            spare: None,
        }
    }

    fn batch(&mut self, raw: Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), raw),
            None => Batch::new(NAME, self.device.clone(), raw),
        }
    }

    /// An NTCB envelope to the device.
    fn envelope(&self, data: &[u8]) -> Bytes {
        Bytes::from(ntcb::envelope(&self.prefix, self.device_id, self.server_id, data))
    }

    fn require_login(&self, start: u64, what: &str) -> Result<(), Fatal> {
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(Fatal { offset: start, error: format!("{what} before the handshake *>S") });
        }
        Ok(())
    }

    fn ntcb(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        let header = ntcb::header(&frame);
        let data = frame.slice(ntcb::HEADER_LEN..);
        let computed = ntcb::xor(&data);
        if computed != header.data_xor {
            return Ok(Event::Refused {
                offset: start,
                error: format!(
                    "NTCB data checksum: header says 0x{:02X}, data gives 0x{computed:02X}",
                    header.data_xor
                ),
                reply: None,
            });
        }
        self.prefix = header.prefix;
        self.server_id = header.receiver;
        self.device_id = header.sender;
        if data.is_empty() {
            return Ok(Event::KeepAlive { reply: None });
        }
        match data.get(..3).unwrap_or(&data) {
            b"*>S" => Ok(self.handshake(start, &data)),
            b"*>F" => {
                self.require_login(start, "FLEX negotiation")?;
                let negotiated =
                    data.strip_prefix(b"*>FLEX").ok_or_else(|| "not *>FLEX".to_owned()).and_then(flex::negotiate);
                match negotiated {
                    Ok(layout) => {
                        let answer = [b'*', b'<', b'F', b'L', b'E', b'X', 0xB0, layout.version, layout.structure];
                        self.layout = Some(Arc::new(layout));
                        Ok(Event::KeepAlive { reply: Some(self.envelope(&answer)) })
                    }
                    Err(error) => Ok(Event::Refused { offset: start, error, reply: None }),
                }
            }
            b"*>T" | b"*>A" => {
                self.require_login(start, "data")?;
                Ok(self.ntcb_records(start, frame, data))
            }
            [b'*', b'@', ..] => {
                self.require_login(start, "an answer")?;
                let waiting = self.commands.get();
                self.commands.set(waiting.saturating_sub(1));
                let answered = waiting > 0;
                Ok(self.message("navtelecom_answer", answered, data))
            }
            _ => {
                self.require_login(start, "a message")?;
                Ok(self.message("navtelecom_message", false, data))
            }
        }
    }

    fn handshake(&mut self, start: u64, data: &[u8]) -> Event {
        let identifier = String::from_utf8_lossy(data[3..].strip_prefix(b":").unwrap_or(&data[3..])).trim().to_owned();
        let accept = self.envelope(b"*<S");
        match self.device.as_deref() {
            Some(known) if known == identifier => Event::KeepAlive { reply: Some(accept) },
            Some(known) => Event::Refused {
                offset: start,
                error: format!("handshake of {identifier:?} on the connection of {known}"),
                reply: None,
            },
            None => {
                self.device = Some(Arc::from(identifier.as_str()));
                Event::Login { device: identifier, password: None, accept, reject: Bytes::new() }
            }
        }
    }

    fn message(&self, kind: &'static str, answers_command: bool, payload: Bytes) -> Event {
        let message = DeviceMessage {
            kind,
            answers_command,
            time: None,
            device: self.device.as_deref().map(String::from),
            payload,
        };
        Event::Message { message, reply: None }
    }

    /// `*>T` and `*>A`: records of the binary formats.
    fn ntcb_records(&mut self, start: u64, frame: Bytes, data: Bytes) -> Event {
        let single = data.starts_with(b"*>T");
        let mut batch = self.batch(frame.clone());
        let body = &frame[ntcb::HEADER_LEN + 3..];
        let decoded = if single {
            let mut out = Out::new(&mut batch, &frame);
            ntcb::record(&mut out, body).map(|(rest, index)| (rest, index, 1))
        } else {
            kit::be_u8(body).and_then(|(mut rest, count)| {
                for _ in 0..count {
                    let mut out = Out::new(&mut batch, &frame);
                    rest = ntcb::record(&mut out, rest)?.0;
                }
                Ok((rest, 0, count))
            })
        };
        match decoded {
            Ok((_, index, count)) => {
                let mut answer = Vec::with_capacity(7);
                if single {
                    answer.extend_from_slice(b"*<T");
                    answer.extend_from_slice(&index.to_le_bytes());
                } else {
                    answer.extend_from_slice(b"*<A");
                    answer.push(count);
                }
                Event::Positions { batch, ack: self.envelope(&answer), nack: None }
            }
            Err(error) => {
                self.recycle(batch);
                Event::Refused { offset: start, error: failure_words(&frame, error), reply: None }
            }
        }
    }

    fn flex(&mut self, start: u64, frame: Bytes) -> Result<Event, Fatal> {
        self.require_login(start, "FLEX data")?;
        let end = frame.len() - 1;
        let computed = flex::crc8(&frame[..end]);
        if computed != frame[end] {
            return Ok(Event::Refused {
                offset: start,
                error: format!("FLEX CRC-8: message says 0x{:02X}, data gives 0x{computed:02X}", frame[end]),
                reply: None,
            });
        }
        let Some(layout) = self.layout.clone() else {
            return Err(Fatal { offset: start, error: "FLEX message before the FLEX negotiation".into() });
        };
        let kind = frame[1];
        let mut batch = self.batch(frame.clone());
        let records = &frame[..end];
        let decoded = match kind {
            b'A' => {
                let count = records[2];
                let mut rest = &records[3..];
                let mut failed = None;
                for _ in 0..count {
                    let mut out = Out::new(&mut batch, &frame);
                    match flex::record(&mut out, &layout, rest) {
                        Ok((after, _)) => rest = after,
                        Err(error) => {
                            failed = Some(failure_words(&frame, error));
                            break;
                        }
                    }
                }
                failed.map_or_else(|| Ok(flex_answer(&[b'~', b'A', count])), Err)
            }
            _ => {
                let (body, event_index) = if kind == b'T' {
                    (&records[6..], Some(u32::from_le_bytes([records[2], records[3], records[4], records[5]])))
                } else {
                    (&records[2..], None)
                };
                let mut out = Out::new(&mut batch, &frame);
                match flex::record(&mut out, &layout, body) {
                    Ok((_, index)) => {
                        let index = event_index.or(index).unwrap_or(0).to_le_bytes();
                        Ok(flex_answer(&[b'~', kind, index[0], index[1], index[2], index[3]]))
                    }
                    Err(error) => Err(failure_words(&frame, error)),
                }
            }
        };
        Ok(match decoded {
            Ok(ack) => Event::Positions { batch, ack, nack: None },
            Err(error) => {
                self.recycle(batch);
                Event::Refused { offset: start, error, reply: None }
            }
        })
    }
}

impl Session for NavtelecomSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        let start = self.offset;
        let scanned = scan(src, self.layout.as_deref(), self.options.max_frame_len);
        match scanned.map_err(|error| Fatal { offset: start, error })? {
            Scan::Incomplete => Ok(None),
            Scan::KeepAlive => {
                self.offset += 1;
                let _ = src.split_to(1);
                Ok(Some(Event::KeepAlive { reply: None }))
            }
            Scan::Ntcb { len } => {
                self.offset += len as u64;
                let frame = src.split_to(len).freeze();
                self.ntcb(start, frame).map(Some)
            }
            Scan::Flex { len } => {
                self.offset += len as u64;
                let frame = src.split_to(len).freeze();
                self.flex(start, frame).map(Some)
            }
        }
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let _ = datagram;
        Err(DatagramError { offset: 0, error: "Navtelecom has no UDP transport".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        self.device.as_ref()?;
        if payload.is_empty() || payload.len() > 1024 {
            return None;
        }
        let mut text = Vec::with_capacity(payload.len() + 2);
        if !payload.starts_with(b"*!") {
            text.extend_from_slice(b"*!");
        }
        text.extend_from_slice(payload);
        self.commands.set((self.commands.get() + 1).min(16));
        Some((self.envelope(&text), true))
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_by_envelope_and_layout() {
        let handshake = ntcb::envelope(ntcb::PREFIX, 1, 0, b"*>S:866795031410689");
        assert_eq!(scan(&handshake, None, 1024), Ok(Scan::Ntcb { len: handshake.len() }));
        assert_eq!(scan(&handshake[..10], None, 1024), Ok(Scan::Incomplete));
        let mut damaged = handshake.clone();
        damaged[15] ^= 1;
        assert!(scan(&damaged, None, 1024).is_err());
        assert!(scan(b"~A\x01", None, 1024).is_err(), "no layout yet");
        let layout = flex::Layout { version: 0x0A, structure: 0x0A, fields: vec![0, 8], size: 8 };
        assert_eq!(scan(b"~A\x02", Some(&layout), 1024), Ok(Scan::Incomplete));
        assert_eq!(scan(&[b'~', b'A', 2, 0, 0], Some(&layout), 1024), Ok(Scan::Incomplete));
        assert_eq!(
            scan(
                &[0u8; 20]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| match i {
                        0 => b'~',
                        1 => b'A',
                        2 => 2,
                        _ => *b,
                    })
                    .collect::<Vec<_>>(),
                Some(&layout),
                1024
            ),
            Ok(Scan::Flex { len: 20 })
        );
        assert_eq!(scan(&[0x7F], None, 1024), Ok(Scan::KeepAlive));
        assert!(scan(b"~E", Some(&layout), 1024).is_err());
        assert!(scan(b"GET /", None, 1024).is_err());
    }
}
