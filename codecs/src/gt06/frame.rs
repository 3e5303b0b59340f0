//! GT06 framing: where a frame ends in the stream, and whether it holds together.
//!
//! ```text
//! basic:     78 78  len:u8   type  content  serial:u16  crc:u16  0D 0A    len = 1 + content + 4
//! extended:  79 79  len:u16  type  content  serial:u16  crc:u16  0D 0A    len = 1 + content + 4
//! WiFi:      78 78  n:u8     type (17 or 69)  time:BCD[6]  n x (mac[6] rssi)
//!                   cells:u8  mcc:u16  mnc:u8  cells x (lac:u16 cid:u16 rssi)  0D 0A
//! ```
//! The CRC is CRC-16/X-25 over `len` through `serial`. Some WiFi reporters (types 0x17 and
//! 0x69) put the number of access points where the length goes and send neither serial
//! nor CRC; such a frame is taken only when its own structure ends exactly at `0D 0A`.
//!
//! A frame whose declared length does not end at `0D 0A` is refused, and the stream
//! resumes after the next `0D 0A` (the device gets no answer and resends). Bytes that do
//! not start a frame, or a declared length over the limit, leave nothing to resume from.

use super::crc_x25;

/// Start bytes of a basic frame (1-byte length).
pub const BASIC: [u8; 2] = [0x78, 0x78];
/// Start bytes of an extended frame (2-byte length).
pub const EXTENDED: [u8; 2] = [0x79, 0x79];
/// Stop bytes.
pub const STOP: [u8; 2] = [0x0D, 0x0A];

/// The smallest declared length: type, serial, CRC.
pub const MIN_LEN: usize = 5;

/// What the front of the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Not enough bytes to decide yet.
    Incomplete,
    /// A whole frame of this many bytes whose length, stop bytes and CRC hold.
    Frame {
        /// Bytes from the start bytes through the stop bytes.
        len: usize,
        /// A 0x7979 frame.
        extended: bool,
    },
    /// A whole WiFi frame without serial and CRC (see the module docs).
    Wifi {
        /// Bytes from the start bytes through the stop bytes.
        len: usize,
    },
    /// A frame to refuse and skip: `skip` bytes, then the stream goes on.
    Refused {
        /// Bytes to drop.
        skip: usize,
        /// What was wrong, with values.
        error: String,
    },
    /// No frame can start here; the connection must close.
    Broken(String),
}

/// WiFi reporters that may send the frame without serial and CRC.
fn may_be_wifi(kind: u8) -> bool {
    matches!(kind, 0x17 | 0x69)
}

/// Finds the frame at the front of `buf`; `limit` bounds the declared length.
pub fn scan(buf: &[u8], limit: usize) -> Scan {
    if buf.len() < 2 {
        return match buf.first() {
            Some(&first) if first != 0x78 && first != 0x79 => not_a_start(buf),
            _ => Scan::Incomplete,
        };
    }
    let extended = match [buf[0], buf[1]] {
        BASIC => false,
        EXTENDED => true,
        _ => return not_a_start(buf),
    };
    let header = if extended { 4 } else { 3 };
    if buf.len() < header + 1 {
        return Scan::Incomplete;
    }
    let declared = if extended { usize::from(u16::from_be_bytes([buf[2], buf[3]])) } else { usize::from(buf[2]) };
    let kind = buf[header];
    if declared > limit {
        return Scan::Broken(format!("declared length {declared} exceeds the limit {limit}"));
    }
    let total = header + declared + 2;
    if buf.len() < total {
        return Scan::Incomplete;
    }
    let stops = buf[total - 2..total] == STOP;
    let mut crc_error = None;
    if stops && declared >= MIN_LEN {
        let body = &buf[2..total - 4];
        let sent = u16::from_be_bytes([buf[total - 4], buf[total - 3]]);
        let computed = crc_x25(body);
        if sent == computed {
            return Scan::Frame { len: total, extended };
        }
        crc_error = Some(format!(
            "crc mismatch: frame says 0x{sent:04X}, data gives 0x{computed:04X} (type 0x{kind:02X}, {total} bytes)"
        ));
    }
    // A frame that ends at its stop bytes is one, whatever its CRC; only a length that
    // leads nowhere may be a WiFi report's count of access points.
    if may_be_wifi(kind) && !extended && crc_error.is_none() {
        match wifi_len(buf) {
            Some(Some(len)) => return Scan::Wifi { len },
            Some(None) => return Scan::Incomplete,
            None => {}
        }
    }
    if let Some(error) = crc_error {
        return Scan::Refused { skip: total, error };
    }
    if stops {
        let error = format!("declared length {declared} is below the minimum {MIN_LEN} (type 0x{kind:02X})");
        return Scan::Refused { skip: total, error };
    }
    let error = format!("declared length {declared} does not end at the stop bytes (type 0x{kind:02X})");
    resync(buf, header, limit, error)
}

/// Bytes that start no frame: the first two must be 7878 or 7979.
fn not_a_start(buf: &[u8]) -> Scan {
    let shown = &buf[..buf.len().min(2)];
    Scan::Broken(format!("bad start bytes {shown:02X?} (expected 7878 or 7979)"))
}

/// After a frame whose length lies, the stream resumes after the next stop bytes.
fn resync(buf: &[u8], from: usize, limit: usize, error: String) -> Scan {
    match buf[from..].windows(2).position(|w| w == STOP) {
        Some(at) => Scan::Refused { skip: from + at + 2, error },
        None if buf.len() <= limit + 6 => Scan::Incomplete,
        None => Scan::Broken(format!("{error}, and no stop bytes follow within {limit} bytes")),
    }
}

/// The length of a WiFi frame without serial and CRC at the front of `buf`:
/// `Some(Some(len))` when its structure ends at the stop bytes, `Some(None)` when more
/// bytes are needed to tell, `None` when it is not one.
fn wifi_len(buf: &[u8]) -> Option<Option<usize>> {
    let Some(time) = buf.get(4..10) else { return Some(None) };
    if !time.iter().all(|b| b >> 4 <= 9 && b & 0x0F <= 9) {
        return None;
    }
    let access_points = usize::from(buf[2]);
    let cells_at = 4 + 6 + 7 * access_points;
    let Some(&cells) = buf.get(cells_at) else { return Some(None) };
    let total = cells_at + 1 + 3 + 5 * usize::from(cells) + 2;
    if buf.len() < total {
        return Some(None);
    }
    (buf[total - 2..total] == STOP).then_some(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    fn bytes(text: &str) -> Vec<u8> {
        hex::decode(text.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn finds_basic_and_extended_frames() {
        let login = bytes("78780d01086471700328358100093f040d0a");
        assert_eq!(scan(&login, 1024), Scan::Frame { len: 18, extended: false });
        for cut in 0..login.len() {
            assert_eq!(scan(&login[..cut], 1024), Scan::Incomplete, "cut at {cut}");
        }
        let info = bytes("79790008940b02e3048614200d0a");
        assert_eq!(scan(&info, 1024), Scan::Frame { len: 14, extended: true });
    }

    #[test]
    fn refuses_a_wrong_crc_and_a_lying_length() {
        let mut login = bytes("78780d01086471700328358100093f040d0a");
        login[15] ^= 0xFF;
        assert!(matches!(scan(&login, 1024), Scan::Refused { skip: 18, .. }));
        // Says 8 bytes, carries 10: refused up to its stop bytes.
        let status = bytes("787808134606020002044dc5050d0a");
        assert!(matches!(scan(&status, 1024), Scan::Refused { skip: 15, .. }));
        // Says 1: below the minimum, yet it ends at its stop bytes.
        assert!(matches!(scan(&bytes("787801080d0a"), 1024), Scan::Refused { skip: 6, .. }));
    }

    #[test]
    fn takes_a_wifi_frame_by_its_structure() {
        let wifi = bytes("787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a");
        assert_eq!(scan(&wifi, 1024), Scan::Wifi { len: wifi.len() });
        for cut in 0..wifi.len() {
            assert_eq!(scan(&wifi[..cut], 1024), Scan::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn gives_up_on_what_starts_no_frame() {
        assert!(matches!(scan(b"GET / HTTP/1.1", 1024), Scan::Broken(_)));
        assert!(matches!(scan(&[0x00], 1024), Scan::Broken(_)));
        assert!(matches!(scan(&bytes("7979ffff01"), 1024), Scan::Broken(_)));
    }
}
