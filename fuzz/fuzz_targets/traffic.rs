//! Fuzzes the traffic export reader (`fleetgate decode` of a `GET /v1/devices/{id}/traffic`
//! page, and what `fleetgate reprocess` groups its frames with): any input is an error or
//! connections whose frames run through a session without panicking.

#![no_main]

use bytes::BytesMut;
use fleetgate_codecs::traffic::read_export;
use fleetgate_codecs::{Protocol, SessionOptions};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Ok(export) = read_export(input) else { return };
    for connection in &export.connections {
        assert!(connection.frames.windows(2).all(|w| (w[0].time, w[0].id) <= (w[1].time, w[1].id)), "in order");
        for protocol in Protocol::all() {
            let options = SessionOptions { allow_anonymous: true, ..SessionOptions::default() };
            let mut session = protocol.session(options);
            let mut buffer = BytesMut::new();
            for frame in &connection.frames {
                buffer.extend_from_slice(&frame.bytes);
                while let Ok(Some(_)) = session.decode(&mut buffer) {}
            }
        }
    }
});
