//! The data-driven fixture test: every built-in protocol's captures under
//! `fixtures/<protocol>/` pass the conformance kit (`fleetgate_codecs::conformance`):
//! their `.expect` transcripts (regenerate with `UPDATE_EXPECT=1` after reviewing the
//! change), their documented facts, and decoding fed one byte at a time and cut at every
//! offset. Then every protocol's device side round-trips random sessions.

use std::path::Path;

use fleetgate_codecs::Protocol;
use fleetgate_codecs::conformance::{check_device_side, check_fixtures};

#[test]
fn every_protocol_passes_its_fixtures() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for protocol in Protocol::built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(protocol.name());
        failures.extend(check_fixtures(protocol, &dir, update));
    }
    assert!(failures.is_empty(), "{} fixture failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_protocol_decodes_what_its_devices_send() {
    let failures: Vec<String> = Protocol::built_in().flat_map(|protocol| check_device_side(protocol, 200)).collect();
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
