//! Fuzzes the hand-written parsers of client input: RFC 3339 times (every `from`, `to`
//! and device time) and hex (command bytes, archived frames). Whatever parses must write
//! back to text that parses to the same value.

#![no_main]

use fleetgate_codecs::hex::{self, HexDisplay};
use fleetgate_codecs::time::UtcMillis;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        if let Some(time) = UtcMillis::parse_rfc3339(text) {
            let written = time.to_string();
            assert_eq!(UtcMillis::parse_rfc3339(&written), Some(time), "{text:?} -> {written}");
        }
    }
    if let Ok(bytes) = hex::decode(input) {
        let written = HexDisplay(&bytes).to_string();
        assert_eq!(hex::decode(written.as_bytes()).ok(), Some(bytes));
    }
});
