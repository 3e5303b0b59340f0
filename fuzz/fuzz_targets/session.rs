//! The body shared by every protocol's fuzz target: the input is split into chunks at a
//! size the first byte chooses and fed to a session as a TCP stream (with and without
//! the decode command's anonymous mode), then decoded as one UDP datagram. Any panic,
//! hang or unbounded buffer growth is a bug.

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::{Event, Protocol, SessionOptions};

pub fn fuzz_session(protocol: Protocol, input: &[u8]) {
    let Some((&split_seed, data)) = input.split_first() else {
        return;
    };
    for allow_anonymous in [false, true] {
        // Small limits so the fuzzer reaches them.
        let options = SessionOptions { allow_anonymous, max_line_len: 512, max_binary_len: 512, ..SessionOptions::default() };
        let bound = options.max_buffered();
        let mut session = protocol.session(options);
        // As the gateway runs a session: with a clock (time requests, Galileosky's
        // compressed records); as `fleetgate decode` runs one: without.
        if !allow_anonymous {
            session.clock(fleetgate_codecs::UtcMillis(1_782_864_000_000));
        }
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
            assert!(buffer.len() <= bound + chunk);
        }
        assert!(session.offset() <= data.len() as u64);
    }
    let mut session = protocol.session(SessionOptions::default());
    if let Ok(events) = session.decode_datagram(Bytes::copy_from_slice(data)) {
        for event in events {
            if let Event::Positions { batch, .. } = event {
                for position in batch.iter() {
                    assert!(serde_json::to_string(&position).is_ok());
                }
            }
        }
    }
}
