//! Which device identifiers fleetgate accepts: what the API registers and what the
//! gateway auto-registers. A protocol may be narrower (see its descriptor in
//! `fleetgate_codecs::registry`), never wider.

/// Longest identifier.
pub const MAX_LEN: usize = 64;

/// True for 1-64 ASCII letters, digits, `-` or `_`.
pub fn is_valid(identifier: &str) -> bool {
    (1..=MAX_LEN).contains(&identifier.len())
        && identifier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The rule in words, for error messages.
pub const RULE: &str = "1-64 letters, digits, '-' or '_'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imeis_phones_and_names_pass_the_rest_does_not() {
        for ok in ["356307042441013", "013912345678", "truck-7_b", &"x".repeat(64)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "a b", "a;b", "ä", &"x".repeat(65)] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
