//! JT/T 808 framing: `7E`, the escaped message, `7E`.
//!
//! ```text
//! message:  header  body  check:u8                 (check = XOR of header and body)
//! header:   id:u16  attributes:u16  [version:u8]  phone:BCD[6 or 10]  serial:u16  [total:u16 index:u16]
//! attributes: bits 0-9 body length, 10-12 encryption, 13 subpackage, 14 2019 version flag
//! escapes:  7D 02 -> 7E, 7D 01 -> 7D
//! ```
//! The 2019 header adds the protocol version and a 10-byte phone number. Some vendor
//! devices send text sentences in parentheses on the same connection (`(id,1,001,...)`).
//! Bytes outside any frame (what follows a delimiter a device failed to escape) are
//! refused up to the next delimiter, where the stream picks up again.

use crate::kit::{self, Parsed, be_u8, be_u16};

/// The frame delimiter.
pub const FLAG: u8 = 0x7E;
/// The escape byte.
pub const ESCAPE: u8 = 0x7D;

/// What the front of the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Not enough bytes to decide yet.
    Incomplete,
    /// An escaped message between delimiters: `len` bytes from the opening `7E` through
    /// the closing one.
    Frame {
        /// Bytes including both delimiters.
        len: usize,
    },
    /// A text sentence in parentheses, `len` bytes.
    Sentence {
        /// Bytes including the parentheses.
        len: usize,
    },
    /// A delimiter with nothing after it before the next: skip it.
    Empty,
    /// Bytes that start no frame (the rest of a frame whose delimiter came early): skip
    /// them up to the next delimiter, refused.
    Garbage {
        /// Bytes to skip.
        skip: usize,
        /// What was wrong.
        error: String,
    },
    /// No frame can start here; the connection must close.
    Broken(String),
}

/// Finds the frame at the front of `buf`; `limit` bounds the unescaped message.
pub fn scan(buf: &[u8], limit: usize) -> Scan {
    let Some(&first) = buf.first() else { return Scan::Incomplete };
    // An escaped message is at most twice its length, plus the delimiters.
    let bound = 2 * limit + 2;
    match first {
        FLAG => match buf[1..].iter().position(|&b| b == FLAG) {
            Some(0) => Scan::Empty,
            Some(at) => Scan::Frame { len: at + 2 },
            None if buf.len() <= bound => Scan::Incomplete,
            None => Scan::Broken(format!("no closing 7E within {bound} bytes")),
        },
        b'(' => match buf.iter().position(|&b| b == b')') {
            Some(at) => Scan::Sentence { len: at + 1 },
            None if buf.len() <= limit => Scan::Incomplete,
            None => Scan::Broken(format!("no closing parenthesis within {limit} bytes")),
        },
        other => match buf.iter().position(|&b| b == FLAG) {
            Some(at) => Scan::Garbage { skip: at, error: format!("{at} bytes from 0x{other:02X} on start no frame") },
            None if buf.len() <= bound => Scan::Incomplete,
            None => Scan::Broken(format!("bad start byte 0x{other:02X} and no 7E within {bound} bytes")),
        },
    }
}

/// The message between the delimiters of `frame`, unescaped; `Err` names an escape no
/// device may send.
pub fn unescape(frame: &[u8]) -> Result<Vec<u8>, String> {
    let inner = &frame[1..frame.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().enumerate();
    while let Some((at, &b)) = bytes.next() {
        if b != ESCAPE {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some((_, 0x01)) => out.push(ESCAPE),
            Some((_, 0x02)) => out.push(FLAG),
            Some((_, &other)) => {
                return Err(format!("escape 7D {other:02X} at offset {} is not 7D 01 or 7D 02", at + 1));
            }
            None => return Err("the message ends inside an escape".into()),
        }
    }
    Ok(out)
}

/// Escapes a message and wraps it in delimiters.
pub fn escape(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 4);
    out.push(FLAG);
    for &b in message {
        match b {
            FLAG => out.extend_from_slice(&[ESCAPE, 0x02]),
            ESCAPE => out.extend_from_slice(&[ESCAPE, 0x01]),
            b => out.push(b),
        }
    }
    out.push(FLAG);
    out
}

/// XOR of every byte: the check code.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// A message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Message id.
    pub id: u16,
    /// The attributes word.
    pub attributes: u16,
    /// The 2019 protocol version, when the header is the 2019 one.
    pub version: Option<u8>,
    /// The terminal phone number as sent (6 or 10 BCD bytes).
    pub phone: Vec<u8>,
    /// Message serial number.
    pub serial: u16,
    /// Subpackage: (total, index from 1).
    pub package: Option<(u16, u16)>,
}

impl Header {
    /// Declared body length.
    pub fn body_len(&self) -> usize {
        usize::from(self.attributes & 0x03FF)
    }

    /// The encryption bits (0: none).
    pub fn encryption(&self) -> u16 {
        (self.attributes >> 10) & 0x07
    }
}

/// The header of an unescaped message. Vendor location messages 0x5501 and 0x5502 carry
/// a one-byte serial.
pub fn header(input: &[u8]) -> Parsed<'_, Header> {
    let (rest, (id, attributes)) = nom::Parser::parse_complete(&mut (be_u16, be_u16), input)?;
    let (rest, version) = if attributes & 0x4000 != 0 { be_u8(rest).map(|(r, v)| (r, Some(v)))? } else { (rest, None) };
    let (rest, phone) = kit::take(if version.is_some() { 10 } else { 6 })(rest)?;
    let (rest, serial) =
        if matches!(id, 0x5501 | 0x5502) { be_u8(rest).map(|(r, v)| (r, u16::from(v)))? } else { be_u16(rest)? };
    let (rest, package) = if attributes & 0x2000 != 0 {
        nom::Parser::parse_complete(&mut (be_u16, be_u16), rest).map(|(r, p)| (r, Some(p)))?
    } else {
        (rest, None)
    };
    Ok((rest, Header { id, attributes, version, phone: phone.to_vec(), serial, package }))
}

/// The identifier of a terminal phone number: its digits without leading zeros; a
/// number some vendors send in binary (nibbles over 9) is their IMEI (the 48-bit value
/// and its Luhn check digit).
pub fn identifier(phone: &[u8]) -> String {
    let bcd = phone.iter().all(|b| b >> 4 <= 9 && b & 0x0F <= 9);
    if bcd {
        let digits: String = crate::hex::HexDisplay(phone).to_string();
        let trimmed = digits.trim_start_matches('0');
        return if trimmed.is_empty() { "0".into() } else { trimmed.into() };
    }
    let value = phone.iter().take(6).fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    format!("{value}{}", luhn(value))
}

/// The Luhn check digit of a number.
fn luhn(value: u64) -> u64 {
    let digits: Vec<u64> = value.to_string().bytes().map(|b| u64::from(b - b'0')).collect();
    let sum: u64 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 0 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    (10 - sum % 10) % 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_between_delimiters() {
        assert_eq!(scan(&[0x7E, 1, 2, 0x7E, 0x7E], 64), Scan::Frame { len: 4 });
        assert_eq!(scan(&[0x7E, 0x7E, 1], 64), Scan::Empty);
        assert_eq!(scan(&[0x7E, 1, 2], 64), Scan::Incomplete);
        assert_eq!(scan(b"(1,2,3)", 64), Scan::Sentence { len: 7 });
        assert_eq!(scan(b"GET /", 64), Scan::Incomplete);
        assert!(matches!(scan(&[b'x'; 200], 64), Scan::Broken(_)));
        assert!(matches!(scan(&[0x19, 0x20, 0x7E, 1, 0x7E], 64), Scan::Garbage { skip: 2, .. }));
        let unterminated: Vec<u8> = std::iter::once(0x7E).chain([1u8; 200]).collect();
        assert!(matches!(scan(&unterminated, 64), Scan::Broken(_)));
    }

    #[test]
    fn escapes_round_trip_and_bad_escapes_are_named() {
        let message = [0x7E, 0x7D, 0x01, 0x02, 0x30];
        let framed = escape(&message);
        assert_eq!(framed, [0x7E, 0x7D, 0x02, 0x7D, 0x01, 0x01, 0x02, 0x30, 0x7E]);
        assert_eq!(unescape(&framed), Ok(message.to_vec()));
        assert!(unescape(&[0x7E, 0x7D, 0x03, 0x7E]).is_err());
        assert!(unescape(&[0x7E, 0x30, 0x7D, 0x7E]).is_err());
    }

    #[test]
    fn identifiers_from_phone_numbers() {
        assert_eq!(identifier(&[0x01, 0x20, 0x76, 0x46, 0x32, 0x79]), "12076463279");
        assert_eq!(identifier(&[0, 0, 0x08, 0x66, 0x49, 0x60, 0x77, 0x58, 0x21, 0x64]), "866496077582164");
        // Binary: the IMEI and its check digit.
        assert_eq!(identifier(&[0x4E, 0xB6, 0xFB, 0x4A, 0xFD, 0x9E]), "865478070102068");
    }
}
