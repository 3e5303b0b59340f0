//! Hex text: how captures are written (`fleetgate decode --hex`, fixtures), how byte
//! values appear in JSON, and one way commands are queued.

use std::fmt;

/// Lowercase hex of a byte string, written without allocating.
pub struct HexDisplay<'a>(pub &'a [u8]);

impl fmt::Display for HexDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// `{:X}`: the same in uppercase.
impl fmt::UpperHex for HexDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Why hex text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is neither a hex digit nor whitespace.
    #[error("not a hex digit {found:?} at input offset {offset}")]
    NotHex {
        /// Offset of the character in the text.
        offset: usize,
        /// The character.
        found: char,
    },
    /// The digits do not pair up into bytes.
    #[error("hex input has an odd number of digits ({0})")]
    OddLength(usize),
}

/// Bytes from hex text in either case; ASCII whitespace anywhere is ignored.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, HexError> {
    let mut digits = Vec::with_capacity(text.len());
    for (offset, &b) in text.iter().enumerate() {
        if b.is_ascii_whitespace() {
            continue;
        }
        match (b as char).to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => return Err(HexError::NotHex { offset, found: b as char }),
        }
    }
    if digits.len() % 2 != 0 {
        return Err(HexError::OddLength(digits.len()));
    }
    Ok(digits.chunks(2).map(|pair| pair[0] << 4 | pair[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(decode(b"00 0f\nA1ff"), Ok(vec![0x00, 0x0F, 0xA1, 0xFF]));
        assert_eq!(HexDisplay(&[0x00, 0x0F, 0xA1]).to_string(), "000fa1");
        assert_eq!(decode(b"00 0G"), Err(HexError::NotHex { offset: 4, found: 'G' }));
        assert_eq!(decode(b"abc"), Err(HexError::OddLength(3)));
    }
}
