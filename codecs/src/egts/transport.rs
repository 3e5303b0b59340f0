//! The EGTS transport layer: one packet is a header with its own CRC-8, then the
//! service frame data with its CRC-16. Every field is little-endian.
//!
//! ```text
//! PRV:u8 (1)  SKID:u8  flags:u8  HL:u8 (11, or 16 with routing)  HE:u8  FDL:u16  PID:u16  PT:u8
//! [PRA:u16 RCA:u16 TTL:u8]   when flags bit 5 (RTE) is set
//! HCS:u8                     CRC-8 (poly 0x31, init 0xFF) of the header before it
//! SFRD[FDL]  SFRCS:u16       CRC-16/CCITT (poly 0x1021, init 0xFFFF) of SFRD, when FDL > 0
//! flags: PRF bits 7-6, RTE bit 5, ENA bits 4-3 (encryption), CMP bit 2, PR bits 1-0 (priority)
//! ```

use crate::kit::{self, Parsed};

/// The protocol version this layer reads.
pub const VERSION: u8 = 0x01;
/// Header length without routing.
pub const HEADER_LEN: usize = 11;
/// Header length with routing.
pub const ROUTED_HEADER_LEN: usize = 16;

/// Packet types.
pub mod packet_type {
    /// A response to a packet, with records of its own.
    pub const RESPONSE: u8 = 0;
    /// Application data.
    pub const APPDATA: u8 = 1;
    /// Signed application data.
    pub const SIGNED_APPDATA: u8 = 2;
}

/// The CRC-8 of a header (polynomial 0x31, initial 0xFF).
pub use crate::kit::crc8;

/// CRC-16/CCITT of the service frame data: polynomial 0x1021, initial 0xFFFF.
pub fn crc16(data: &[u8]) -> u16 {
    const CRC: crc::Crc<u16, crc::Table<16>> = crc::Crc::<u16, crc::Table<16>>::new(&crc::CRC_16_IBM_3740);
    CRC.checksum(data)
}

/// A packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Security key id.
    pub skid: u8,
    /// The flags byte (PRF, RTE, ENA, CMP, PR).
    pub flags: u8,
    /// Header length: 11, or 16 with routing.
    pub len: u8,
    /// Header encoding (0).
    pub encoding: u8,
    /// Service frame data length.
    pub data_len: u16,
    /// Packet identifier.
    pub id: u16,
    /// Packet type.
    pub kind: u8,
    /// Routing: sender address, recipient address, time to live.
    pub route: Option<(u16, u16, u8)>,
}

impl Header {
    /// Encryption bits (0: none).
    pub fn encryption(&self) -> u8 {
        (self.flags >> 3) & 0x03
    }

    /// The compressed bit.
    pub fn compressed(&self) -> bool {
        self.flags & 0x04 != 0
    }

    /// The packet's length on the wire: header, data and, when there is data, its CRC.
    pub fn packet_len(&self) -> usize {
        usize::from(self.len) + usize::from(self.data_len) + if self.data_len > 0 { 2 } else { 0 }
    }
}

/// Why a header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs yet.
    Incomplete,
    /// The version byte is not 1: the standard's `EGTS_PC_UNS_PROTOCOL`.
    Version(u8),
    /// The header length is neither 11 nor 16 (`EGTS_PC_INC_HEADERFORM`).
    Length(u8),
    /// The header checksum does not match (`EGTS_PC_HEADERCRC_ERROR`).
    Checksum {
        /// What the header says.
        sent: u8,
        /// What its bytes give.
        computed: u8,
    },
}

/// Reads the header at the front of `buf`, its checksum checked.
pub fn header(buf: &[u8]) -> Result<Header, HeaderError> {
    let (Some(&version), Some(&len)) = (buf.first(), buf.get(3)) else { return Err(HeaderError::Incomplete) };
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    if usize::from(len) != HEADER_LEN && usize::from(len) != ROUTED_HEADER_LEN {
        return Err(HeaderError::Length(len));
    }
    let Some(bytes) = buf.get(..usize::from(len)) else { return Err(HeaderError::Incomplete) };
    let (covered, &[sent]) = bytes.split_at(bytes.len() - 1) else { return Err(HeaderError::Incomplete) };
    let computed = crc8(covered);
    if sent != computed {
        return Err(HeaderError::Checksum { sent, computed });
    }
    let word = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let flags = bytes[2];
    let routed = flags & 0x20 != 0;
    if routed != (usize::from(len) == ROUTED_HEADER_LEN) {
        return Err(HeaderError::Length(len));
    }
    Ok(Header {
        skid: bytes[1],
        flags,
        len,
        encoding: bytes[4],
        data_len: word(5),
        id: word(7),
        kind: bytes[9],
        route: routed.then(|| (word(10), word(12), bytes[14])),
    })
}

/// The service frame data of a whole packet whose header is `header`, its CRC-16
/// checked.
pub fn data<'a>(packet: &'a [u8], header: &Header) -> Parsed<'a, &'a [u8]> {
    let body = &packet[usize::from(header.len)..];
    if header.data_len == 0 {
        return Ok((body, &body[..0]));
    }
    kit::checksummed(usize::from(header.data_len), kit::le_u16, |data| u64::from(crc16(data)))(body)
}

/// A whole packet: header (routing left out), `data` and its CRC.
pub fn packet(id: u16, kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + 2);
    out.extend_from_slice(&[VERSION, 0, 0x00, HEADER_LEN as u8, 0]);
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.push(kind);
    out.push(crc8(&out));
    if !data.is_empty() {
        out.extend_from_slice(data);
        out.extend_from_slice(&crc16(data).to_le_bytes());
    }
    out
}

/// Every packet of the captured payloads in `fixtures/egts_captures.txt`: its header and
/// its service frame data (checksums checked), for the layers' tests.
#[cfg(test)]
pub(crate) fn captured_packets() -> Vec<(String, Header, Vec<u8>)> {
    let captures = include_str!("../../../fixtures/egts_captures.txt");
    let mut packets = Vec::new();
    for line in captures.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bytes = crate::hex::decode(line.as_bytes()).unwrap_or_default();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let read = header(rest).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            let (_, data) = data(rest, &read).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(data.len(), usize::from(read.data_len));
            packets.push((line.to_owned(), read, data.to_vec()));
            rest = &rest[read.packet_len()..];
        }
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_response_reads_and_builds_back() {
        let documented = crate::hex::decode(b"0100030B0003008900004A15380033E8").unwrap_or_default();
        let read = header(&documented).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((read.len, read.data_len, read.id, read.kind), (11, 3, 137, packet_type::RESPONSE));
        assert_eq!(read.flags & 0x03, 3, "priority 3");
        assert_eq!(read.packet_len(), documented.len());
        assert_eq!(data(&documented, &read).map(|(_, d)| d.to_vec()), Ok(vec![0x15, 0x38, 0x00]));
        let mut damaged = documented.clone();
        damaged[13] ^= 1;
        assert!(data(&damaged, &read).is_err());
        damaged[4] ^= 1;
        assert!(matches!(header(&damaged), Err(HeaderError::Checksum { sent: 0x4A, .. })));
        // Built again (priority 0 where the document's packet has 3), it reads the same.
        let built = packet(137, packet_type::RESPONSE, &[0x15, 0x38, 0x00]);
        assert_eq!(built[5..10], documented[5..10]);
        assert_eq!(built[11..], documented[11..]);
        assert_eq!(header(&built).map(|h| h.packet_len()), Ok(built.len()));
        assert_eq!(crc8(b"123456789"), 0xF7);
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn every_captured_packet_has_sound_checksums() {
        // Traccar's EGTS captures, one payload of one packet or more each.
        assert!(captured_packets().len() >= 19);
    }
}
