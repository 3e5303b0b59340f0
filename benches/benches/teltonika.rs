//! Teltonika decoding throughput: fleetgate's codec against nom-teltonika 0.3 on the
//! same frames in one run.
//!
//! Frames of codec 8, 8E and 16 with 1, 10 and as many records as fit the default
//! 1280-byte limit, each record a typical FMB record (17 IO elements; 8E adds a 7-byte
//! variable element), so
//! 10 records still fit the limit. Both sides go from the packet bytes to owned values with the CRC
//! checked: nom-teltonika's `take_frame(..).evaluate()`, and fleetgate's
//! `decode_avl_packet` into normalized positions (with `attrs` mapped), once into a
//! fresh batch per frame and once into a reused one; and the gateway's own path: the
//! session framing the bytes from its connection buffer, with the batch handed back.
//!
//! `cargo bench -p fleetgate-benches --bench teltonika`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetgate_benches::teltonika_frame;
use fleetgate_codecs::teltonika::encode::handshake;
use fleetgate_codecs::teltonika::{self, CODEC_8, CODEC_8E, CODEC_16};
use fleetgate_codecs::{Batch, Event, Protocol, SessionOptions};

fn decode(c: &mut Criterion) {
    for (codec, codec_name) in [(CODEC_8, "8"), (CODEC_8E, "8E"), (CODEC_16, "16")] {
        let mut group = c.benchmark_group(format!("teltonika_codec{codec_name}"));
        for records in [Some(1), Some(10), None] {
            let (frame, n_records) = teltonika_frame(codec, records);
            let label = match records {
                Some(n) => n.to_string(),
                None => format!("full_{n_records}"),
            };
            group.throughput(Throughput::Elements(n_records as u64));
            let bytes = Bytes::from(frame.clone());
            check_both_decode(&frame, &bytes, n_records);

            group.bench_with_input(BenchmarkId::new("nom_teltonika_evaluate", &label), &frame, |b, frame| {
                b.iter(|| {
                    let mut input = black_box(&frame[..]);
                    let frame = nom_teltonika::decoder::take_frame(&mut input).map(|view| view.evaluate());
                    black_box(frame.is_ok())
                })
            });
            group.bench_with_input(BenchmarkId::new("fleetgate_fresh_batch", &label), &bytes, |b, bytes| {
                b.iter(|| {
                    let mut batch = Batch::new(teltonika::NAME, None, Bytes::new());
                    let n = teltonika::decode_avl_packet(black_box(bytes), &mut batch);
                    black_box((n.is_ok(), batch))
                })
            });
            let mut batch = Batch::new(teltonika::NAME, None, Bytes::new());
            group.bench_with_input(BenchmarkId::new("fleetgate_reused_batch", &label), &bytes, |b, bytes| {
                b.iter(|| {
                    let n = teltonika::decode_avl_packet(black_box(bytes), &mut batch);
                    black_box(n.is_ok())
                })
            });
            // The gateway's own path: bytes appended to the connection buffer, framed and
            // decoded by the session, the batch handed back after publishing.
            let mut session = Protocol::TELTONIKA.session(SessionOptions::default());
            let mut buffer = BytesMut::from(&handshake("356307042441013")[..]);
            let _ = session.decode(&mut buffer);
            group.bench_with_input(BenchmarkId::new("fleetgate_session", &label), &frame, |b, frame| {
                b.iter(|| {
                    buffer.extend_from_slice(black_box(frame));
                    match session.decode(&mut buffer) {
                        Ok(Some(Event::Positions { batch, .. })) => session.recycle(batch),
                        other => panic!("bench frame not decoded: {other:?}"),
                    }
                })
            });
        }
        group.finish();
    }
}

/// Both sides must accept the frame with every record, or the comparison is void.
fn check_both_decode(frame: &[u8], bytes: &Bytes, n_records: usize) {
    let mut input = frame;
    match nom_teltonika::decoder::take_frame(&mut input).map(|view| view.evaluate()) {
        Ok(nom_teltonika::protocol::Frame::Avl(packet)) => assert_eq!(packet.records().len(), n_records),
        other => panic!("nom-teltonika refused the bench frame: {other:?}"),
    }
    let mut batch = Batch::new(teltonika::NAME, None, Bytes::new());
    match teltonika::decode_avl_packet(bytes, &mut batch) {
        Ok(n) => assert_eq!(usize::from(n), n_records),
        Err(error) => panic!("fleetgate refused the bench frame: {error:?}"),
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
