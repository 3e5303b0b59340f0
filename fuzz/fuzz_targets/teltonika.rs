//! Fuzzes the Teltonika framer, decoder and session state machine: the input is split
//! into chunks at offsets the fuzzer chooses and fed as a TCP stream, then decoded as
//! one UDP datagram. Any panic, hang or unbounded growth is a bug.

#![no_main]

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::{Event, Protocol, SessionOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split_seed, data)) = input.split_first() else {
        return;
    };
    for allow_anonymous in [false, true] {
        let options = SessionOptions { allow_anonymous, ..SessionOptions::default() };
        let mut session = Protocol::Teltonika.session(options.clone());
        let mut buffer = BytesMut::new();
        let chunk = usize::from(split_seed % 32) + 1;
        'stream: for piece in data.chunks(chunk) {
            buffer.extend_from_slice(piece);
            loop {
                match session.decode(&mut buffer) {
                    Ok(Some(Event::Positions { batch, .. })) => {
                        // Serializing walks every span; it must stay inside the frame.
                        for position in batch.iter() {
                            assert!(serde_json::to_string(&position).is_ok());
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
            // The buffer never holds more than one bounded frame plus one chunk.
            assert!(buffer.len() <= options.max_gprs_len as usize + 12 + chunk);
        }
        assert!(session.offset() <= data.len() as u64);
    }
    let mut session = Protocol::Teltonika.session(SessionOptions::default());
    let _ = session.decode_datagram(Bytes::copy_from_slice(data));
});
