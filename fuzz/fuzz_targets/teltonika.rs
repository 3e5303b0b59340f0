//! Fuzzes the Teltonika framer, record decoder and session state machine.

#![no_main]

mod session;

libfuzzer_sys::fuzz_target!(|input: &[u8]| session::fuzz_session(fleetgate_codecs::Protocol::Teltonika, input));
