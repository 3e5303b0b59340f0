//! EGTS service records: what an APPDATA packet's data (and a RESPONSE's, after its
//! packet id and result) is made of. Every field is little-endian.
//!
//! ```text
//! record:    RL:u16  RN:u16  RFL:u8  [OID:u32] [EVID:u32] [TM:u32]  SST:u8  RST:u8  RD[RL]
//! RFL:       SSOD bit 7, RSOD bit 6, GRP bit 5, RPP bits 4-3, TMFE bit 2, EVFE bit 1, OBFE bit 0
//! subrecord: SRT:u8  SRL:u16  SRD[SRL]                       (RD is a run of them)
//! ```

use crate::kit::{self, Parsed};

/// One service record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record number (answered in the record response).
    pub number: u16,
    /// The flags byte.
    pub flags: u8,
    /// Object id (the terminal), when OBFE is set.
    pub object: Option<u32>,
    /// Event id, when EVFE is set.
    pub event: Option<u32>,
    /// Record time, seconds since 2010-01-01 UTC, when TMFE is set.
    pub time: Option<u32>,
    /// Source service type.
    pub source: u8,
    /// Recipient service type.
    pub recipient: u8,
    /// The record's data: its subrecords.
    pub data: &'a [u8],
}

/// Service types.
pub mod service {
    /// Authentication.
    pub const AUTH: u8 = 1;
    /// Telematic data.
    pub const TELEDATA: u8 = 2;
    /// Commands.
    pub const COMMANDS: u8 = 4;
}

/// One record at the front of the input.
pub fn record(input: &[u8]) -> Parsed<'_, Record<'_>> {
    let (rest, (len, number, flags)) = nom::Parser::parse_complete(&mut (kit::le_u16, kit::le_u16, kit::be_u8), input)?;
    let optional =
        |rest, present: bool| if present { kit::le_u32(rest).map(|(r, v)| (r, Some(v))) } else { Ok((rest, None)) };
    let (rest, object) = optional(rest, flags & 0x01 != 0)?;
    let (rest, event) = optional(rest, flags & 0x02 != 0)?;
    let (rest, time) = optional(rest, flags & 0x04 != 0)?;
    let (rest, (source, recipient)) = nom::Parser::parse_complete(&mut (kit::be_u8, kit::be_u8), rest)?;
    let (rest, data) = kit::take(usize::from(len))(rest)?;
    Ok((rest, Record { number, flags, object, event, time, source, recipient, data }))
}

/// Every record of `input`, to its end.
pub fn all(mut input: &[u8]) -> Parsed<'_, Vec<Record<'_>>> {
    let mut records = Vec::new();
    while !input.is_empty() {
        let (rest, record) = record(input)?;
        records.push(record);
        input = rest;
    }
    Ok((input, records))
}

/// One subrecord at the front of a record's data: its type and data.
pub fn subrecord(input: &[u8]) -> Parsed<'_, (u8, &[u8])> {
    let (rest, (kind, len)) = nom::Parser::parse_complete(&mut (kit::be_u8, kit::le_u16), input)?;
    let (rest, data) = kit::take(usize::from(len))(rest)?;
    Ok((rest, (kind, data)))
}

/// Every subrecord of a record's data, to its end.
pub fn subrecords(mut input: &[u8]) -> Parsed<'_, Vec<(u8, &[u8])>> {
    let mut found = Vec::new();
    while !input.is_empty() {
        let (rest, sub) = subrecord(input)?;
        found.push(sub);
        input = rest;
    }
    Ok((input, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egts::transport::{self, packet_type};

    #[test]
    fn the_documented_appdata_record_reads() {
        let documented =
            crate::hex::decode(b"0100030B001300860001B608005F0099020000000101010500B0090200100DCE").unwrap_or_default();
        let header = transport::header(&documented).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(header.kind, packet_type::APPDATA);
        let (_, data) = transport::data(&documented, &header).unwrap_or_else(|e| panic!("{e:?}"));
        let (_, records) = all(data).unwrap_or_else(|e| panic!("{e:?}"));
        let [record] = records[..] else { panic!("{records:?}") };
        assert_eq!((record.number, record.flags, record.object), (95, 0x99, Some(2)));
        assert_eq!((record.source, record.recipient, record.data.len()), (service::AUTH, service::AUTH, 8));
        let (_, subs) = subrecords(record.data).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn every_captured_record_and_subrecord_reads_to_its_end() {
        let mut records = 0;
        for (line, header, data) in transport::captured_packets() {
            // A response starts with the packet id it answers and the result.
            let data = if header.kind == packet_type::RESPONSE { &data[3..] } else { &data[..] };
            let (_, found) = all(data).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            for record in &found {
                subrecords(record.data).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            }
            records += found.len();
        }
        assert!(records >= 19, "{records}");
    }
}
