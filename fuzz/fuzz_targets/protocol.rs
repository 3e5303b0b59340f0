//! Fuzzes one protocol of the registry: its framer, record decoder and session state
//! machine, fed in chunks as a TCP stream and whole as a UDP datagram (see `session.rs`).
//! The protocol is `FLEETGATE_FUZZ_PROTOCOL` (a registry name); unset, the input's first
//! byte picks one, so one run covers them all.
//!
//! `FLEETGATE_FUZZ_PROTOCOL=wialon cargo +nightly fuzz run protocol corpus/wialon`

#![no_main]

mod session;

use std::sync::OnceLock;

use fleetgate_codecs::Protocol;

fn chosen() -> Option<Protocol> {
    static CHOSEN: OnceLock<Option<Protocol>> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let name = std::env::var("FLEETGATE_FUZZ_PROTOCOL").ok()?;
        Some(Protocol::from_name(&name).unwrap_or_else(|| panic!("unknown protocol {name:?} ({})", Protocol::names())))
    })
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    match chosen() {
        Some(protocol) => session::fuzz_session(protocol, input),
        None => {
            let Some((&pick, rest)) = input.split_first() else { return };
            let protocols = Protocol::all();
            session::fuzz_session(protocols[usize::from(pick) % protocols.len()], rest);
        }
    }
});
