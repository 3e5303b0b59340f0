//! One EGTS terminal connection: packets in, logins and positions out, every APPDATA
//! packet answered with an `EGTS_PT_RESPONSE` naming it and one record response per
//! record (sent by the gateway once the positions are stored).
//!
//! - The login is the AUTH service's `EGTS_SR_TERM_IDENTITY`: the identifier is the IMEI
//!   when the terminal sends one (IMEIE), else its terminal id in decimal. Accepted, it is
//!   answered with the response and `EGTS_SR_RESULT_CODE` 0; refused, with result code
//!   151 (`EGTS_PC_AUTH_DENIED`).
//! - A TELEDATA record is one position, from all its subrecords ([`super::subrecords`]).
//! - A packet whose data checksum fails is answered `EGTS_PC_DATACRC_ERROR` (138) and
//!   no record response; one whose header checksum fails is answered
//!   `EGTS_PC_HEADERCRC_ERROR` (137) and the connection closes (its lengths cannot be
//!   trusted, so there is no next packet to find). A version or header length the
//!   standard does not have closes it at once; an encrypted or compressed packet is
//!   answered `EGTS_PC_UNS_PROTOCOL` (128).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::records::{self, Record, service};
use super::subrecords::{self, srt};
use super::transport::{self, HeaderError, packet_type};
use crate::kit;
use crate::out::Out;
use crate::position::Batch;
use crate::protocol::{DatagramError, Event, Fatal, Session, SessionOptions};

/// The codec name in contract 1.
pub const NAME: &str = "egts";

/// Processing results (`EGTS_PC_*`).
pub mod result {
    /// Done.
    pub const OK: u8 = 0;
    /// Unsupported protocol (version, encryption, compression).
    pub const UNS_PROTOCOL: u8 = 128;
    /// The header checksum does not match.
    pub const HEADERCRC_ERROR: u8 = 137;
    /// The data checksum does not match.
    pub const DATACRC_ERROR: u8 = 138;
    /// The data is not what its type says.
    pub const INC_DATAFORM: u8 = 132;
    /// Authorisation refused.
    pub const AUTH_DENIED: u8 = 151;
}

/// One service record of an answer: a record response (or a result code) in a record of
/// the service it answers.
fn answer_record(number: u16, service: u8, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut sub = vec![kind];
    sub.extend_from_slice(&(body.len() as u16).to_le_bytes());
    sub.extend_from_slice(body);
    let mut out = Vec::with_capacity(7 + sub.len());
    out.extend_from_slice(&(sub.len() as u16).to_le_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    // SSOD: the record comes from the platform.
    out.push(0x80);
    out.extend_from_slice(&[service, service]);
    out.extend_from_slice(&sub);
    out
}

/// The decoding state of one EGTS connection.
#[derive(Debug)]
pub struct EgtsSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    offset: u64,
    /// Packet ids and record numbers of the platform's packets.
    packet_id: Cell<u16>,
    record_number: Cell<u16>,
    /// A header checksum failed and was answered: the stream ends here.
    broken: Option<String>,
    pending: VecDeque<Event>,
    spare: Option<Batch>,
}

impl EgtsSession {
    /// A session that has seen nothing yet.
    pub fn new(options: SessionOptions) -> Self {
        EgtsSession {
            options,
            device: None,
            offset: 0,
            packet_id: Cell::new(0),
            record_number: Cell::new(0),
            broken: None,
            pending: VecDeque::new(),
            spare: None,
        }
    }

    fn next(counter: &Cell<u16>) -> u16 {
        let value = counter.get();
        counter.set(value.wrapping_add(1));
        value
    }

    /// `EGTS_PT_RESPONSE` to packet `answered` with `result`, then `records`.
    fn response(&self, answered: u16, result: u8, records: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(3 + records.len());
        data.extend_from_slice(&answered.to_le_bytes());
        data.push(result);
        data.extend_from_slice(records);
        transport::packet(Self::next(&self.packet_id), packet_type::RESPONSE, &data)
    }

    /// The response to a packet whose records are all answered `result`.
    fn records_answer(&self, answered: u16, records: &[Record<'_>], result: u8) -> Vec<u8> {
        let mut body = Vec::new();
        for record in records {
            let [low, high] = record.number.to_le_bytes();
            body.extend(answer_record(
                Self::next(&self.record_number),
                record.source,
                srt::RECORD_RESPONSE,
                &[low, high, result],
            ));
        }
        self.response(answered, result::OK, &body)
    }

    /// The result code packet that ends an authorisation.
    fn result_code(&self, code: u8) -> Vec<u8> {
        let record = answer_record(Self::next(&self.record_number), service::AUTH, srt::RESULT_CODE, &[code]);
        transport::packet(Self::next(&self.packet_id), packet_type::APPDATA, &record)
    }

    fn batch(&mut self, raw: Bytes) -> Batch {
        match self.spare.take() {
            Some(spare) => spare.reuse(self.device.clone(), raw),
            None => Batch::new(NAME, self.device.clone(), raw),
        }
    }

    fn packet(&mut self, start: u64, packet: Bytes, header: transport::Header) -> Result<Event, Fatal> {
        let refuse = |this: &Self, error: String, code: u8| Event::Refused {
            offset: start,
            error,
            reply: Some(Bytes::from(this.response(header.id, code, &[]))),
        };
        let data = match transport::data(&packet, &header) {
            Ok((_, data)) => data,
            Err(error) => {
                let words = match kit::failure(error).reason {
                    kit::Reason::Checksum { sent, computed } => {
                        format!("data checksum: packet says 0x{sent:04X}, data gives 0x{computed:04X}")
                    }
                    reason => reason.words("packet"),
                };
                return Ok(refuse(self, words, result::DATACRC_ERROR));
            }
        };
        if header.encryption() != 0 || header.compressed() {
            return Ok(refuse(self, "encrypted or compressed packet".into(), result::UNS_PROTOCOL));
        }
        let data = packet.slice_ref(data);
        match header.kind {
            packet_type::APPDATA => self.appdata(start, &packet, header, &data),
            // A terminal's response to the platform's packet: nothing to store.
            _ => Ok(Event::KeepAlive { reply: None }),
        }
    }

    fn appdata(&mut self, start: u64, packet: &Bytes, header: transport::Header, data: &[u8]) -> Result<Event, Fatal> {
        let found = match records::all(data) {
            Ok((_, found)) => found,
            Err(error) => {
                let error = kit::failure(error);
                return Ok(Event::Refused {
                    offset: start,
                    error: format!(
                        "records: {} (at data offset {})",
                        error.reason.words("data"),
                        kit::offset(data, error.rest)
                    ),
                    reply: Some(Bytes::from(self.response(header.id, result::INC_DATAFORM, &[]))),
                });
            }
        };
        let ack = Bytes::from(self.records_answer(header.id, &found, result::OK));
        // The login, when an AUTH record identifies the terminal.
        for record in found.iter().filter(|r| r.recipient == service::AUTH || r.source == service::AUTH) {
            let Ok((_, subs)) = records::subrecords(record.data) else { continue };
            for (kind, sub) in subs {
                if kind != srt::TERM_IDENTITY {
                    continue;
                }
                let Ok((_, identity)) = subrecords::term_identity(sub) else { continue };
                let identifier = match identity.imei {
                    Some(imei) if imei.iter().all(u8::is_ascii_digit) => String::from_utf8_lossy(imei).into_owned(),
                    _ => identity.terminal.to_string(),
                };
                self.device = Some(Arc::from(identifier.as_str()));
                let mut accept = ack.to_vec();
                accept.extend(self.result_code(result::OK));
                let mut reject = ack.to_vec();
                reject.extend(self.result_code(result::AUTH_DENIED));
                return Ok(Event::Login {
                    device: identifier,
                    password: None,
                    accept: Bytes::from(accept),
                    reject: Bytes::from(reject),
                });
            }
        }
        if self.device.is_none() && !self.options.allow_anonymous {
            return Err(Fatal { offset: start, error: "data before the terminal identified itself".into() });
        }
        let mut batch = self.batch(packet.clone());
        for record in found.iter().filter(|r| r.recipient == service::TELEDATA || r.source == service::TELEDATA) {
            let Ok((_, subs)) = records::subrecords(record.data) else { continue };
            let mark = batch.mark();
            let mut out = Out::new(&mut batch, packet);
            let mut any = false;
            for (kind, sub) in subs {
                match subrecords::teledata(&mut out, kind, sub) {
                    Ok(position_data) => any |= position_data,
                    Err(error) => {
                        let error = kit::failure(error);
                        self.recycle(batch);
                        return Ok(Event::Refused {
                            offset: start,
                            error: format!(
                                "record {} subrecord {kind}: {}",
                                record.number,
                                error.reason.words("subrecord")
                            ),
                            reply: Some(Bytes::from(self.response(header.id, result::INC_DATAFORM, &[]))),
                        });
                    }
                }
            }
            if !any {
                batch.rollback(mark);
                continue;
            }
            // Sensor data without a position of its own: the record's time, when it has one.
            if let (None, Some(time)) = (out.fix().time, record.time) {
                out.set_time(Some(crate::time::UtcMillis((subrecords::EPOCH_2010 + i64::from(time)) * 1000)));
            }
        }
        if batch.is_empty() {
            self.recycle(batch);
            return Ok(Event::KeepAlive { reply: Some(ack) });
        }
        Ok(Event::Positions { batch, ack, nack: None })
    }
}

impl Session for EgtsSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        let start = self.offset;
        if let Some(error) = &self.broken {
            return Err(Fatal { offset: start, error: error.clone() });
        }
        let header = match transport::header(src) {
            Ok(header) => header,
            Err(HeaderError::Incomplete) => return Ok(None),
            Err(HeaderError::Checksum { sent, computed }) => {
                let error = format!("header checksum: header says 0x{sent:02X}, its bytes give 0x{computed:02X}");
                // Its packet id as sent, since nothing else names the packet.
                let id = src.get(7..9).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
                self.broken = Some(format!("{error}: the stream's lengths cannot be trusted"));
                let reply = Some(Bytes::from(self.response(id, result::HEADERCRC_ERROR, &[])));
                return Ok(Some(Event::Refused { offset: start, error, reply }));
            }
            Err(other) => return Err(Fatal { offset: start, error: format!("no EGTS packet: {other:?}") }),
        };
        if usize::from(header.data_len) > self.options.max_frame_len {
            let limit = self.options.max_frame_len;
            return Err(Fatal {
                offset: start,
                error: format!("declared data length {} exceeds the limit {limit}", header.data_len),
            });
        }
        let len = header.packet_len();
        if src.len() < len {
            return Ok(None);
        }
        self.offset += len as u64;
        let packet = src.split_to(len).freeze();
        self.packet(start, packet, header).map(Some)
    }

    fn decode_datagram(&mut self, datagram: Bytes) -> Result<Vec<Event>, DatagramError> {
        let _ = datagram;
        Err(DatagramError { offset: 0, error: "EGTS has no UDP transport here".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn recycle(&mut self, batch: Batch) {
        self.spare = Some(batch.reuse(None, Bytes::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Event> {
        let mut session = EgtsSession::new(SessionOptions::default());
        let mut buffer = BytesMut::from(bytes);
        std::iter::from_fn(|| session.decode(&mut buffer).ok().flatten()).collect()
    }

    /// The (answered packet id, result) of a response, and its record responses.
    fn read_response(reply: &[u8]) -> (u16, u8, Vec<(u16, u8)>) {
        let header = transport::header(reply).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(header.kind, packet_type::RESPONSE);
        let (_, data) = transport::data(reply, &header).unwrap_or_else(|e| panic!("{e:?}"));
        let (answered, result) = (u16::from_le_bytes([data[0], data[1]]), data[2]);
        let (_, found) = records::all(&data[3..]).unwrap_or_else(|e| panic!("{e:?}"));
        let confirmed = found
            .iter()
            .flat_map(|r| records::subrecords(r.data).map(|(_, s)| s).unwrap_or_default())
            .filter(|(kind, _)| *kind == srt::RECORD_RESPONSE)
            .map(|(_, body)| (u16::from_le_bytes([body[0], body[1]]), body[2]))
            .collect();
        (answered, result, confirmed)
    }

    #[test]
    fn the_documented_identity_logs_in_and_is_answered_with_its_record() {
        let login =
            crate::hex::decode(b"0100030B001300860001B608005F0099020000000101010500B0090200100DCE").unwrap_or_default();
        let events = decode(&login);
        let [Event::Login { device, accept, reject, .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(device, "133552");
        assert_eq!(read_response(accept), (134, result::OK, vec![(95, result::OK)]));
        // Then the result code: 0 accepted, 151 refused.
        let code = |reply: &[u8]| {
            let first = transport::header(reply).map(|h| h.packet_len()).unwrap_or_default();
            let rest = &reply[first..];
            let header = transport::header(rest).unwrap_or_else(|e| panic!("{e:?}"));
            let (_, data) = transport::data(rest, &header).unwrap_or_else(|e| panic!("{e:?}"));
            let (_, found) = records::all(data).unwrap_or_else(|e| panic!("{e:?}"));
            let (_, subs) = records::subrecords(found[0].data).unwrap_or_else(|e| panic!("{e:?}"));
            (subs[0].0, subs[0].1[0])
        };
        assert_eq!(code(accept), (srt::RESULT_CODE, result::OK));
        assert_eq!(code(reject), (srt::RESULT_CODE, result::AUTH_DENIED));
    }

    #[test]
    fn captured_teledata_becomes_positions_each_record_answered() {
        let mut positions = 0;
        for (line, header, _) in transport::captured_packets() {
            if header.kind != packet_type::APPDATA {
                continue;
            }
            let bytes = crate::hex::decode(line.as_bytes()).unwrap_or_default();
            let mut session = EgtsSession::new(SessionOptions { allow_anonymous: true, ..SessionOptions::default() });
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Some(event)) = session.decode(&mut buffer) {
                match event {
                    Event::Positions { batch, ack, .. } => {
                        positions += batch.len();
                        let (_, result, confirmed) = read_response(&ack);
                        assert_eq!(result, result::OK);
                        assert!(confirmed.iter().all(|(_, r)| *r == result::OK) && !confirmed.is_empty(), "{line}");
                        for position in batch.iter() {
                            assert!(position.fix.time.is_some(), "{line}");
                        }
                    }
                    Event::Refused { error, .. } => panic!("{line}: {error}"),
                    _ => {}
                }
            }
        }
        assert!(positions >= 12, "{positions}");
    }

    #[test]
    fn checksum_failures_are_answered_with_their_codes() {
        let mut login =
            crate::hex::decode(b"0100030B001300860001B608005F0099020000000101010500B0090200100DCE").unwrap_or_default();
        let last = login.len() - 1;
        login[last] ^= 1;
        let events = decode(&login);
        let [Event::Refused { reply: Some(reply), .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(read_response(reply), (134, result::DATACRC_ERROR, vec![]));
        login[last] ^= 1;
        login[10] ^= 1;
        let mut session = EgtsSession::new(SessionOptions::default());
        let mut buffer = BytesMut::from(&login[..]);
        let Ok(Some(Event::Refused { reply: Some(reply), .. })) = session.decode(&mut buffer) else {
            panic!("refused")
        };
        assert_eq!(read_response(&reply).1, result::HEADERCRC_ERROR);
        assert!(session.decode(&mut buffer).is_err(), "the stream ends after a bad header");
    }
}
