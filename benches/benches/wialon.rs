//! Wialon IPS decoding throughput through the session, as the gateway reads a stream:
//! `#SD#` and `#D#` lines (with typical parameters) in 1.1 and 2.0, and a `#B#` black
//! box of 10 records, in packets per second.
//!
//! `cargo bench -p fleetgate-benches --bench wialon`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetgate_benches::wialon_record;
use fleetgate_codecs::wialon::Version;
use fleetgate_codecs::wialon::encode::{black_box as black_box_packet, extended_data, login, short_data};
use fleetgate_codecs::{Event, Protocol, SessionOptions};

const PACKETS: usize = 100;

fn stream(version: Version, packet: impl Fn(u32) -> String) -> Vec<u8> {
    let mut text = login("356307042441013", None, version);
    for i in 0..PACKETS as u32 {
        text.push_str(&packet(i));
    }
    text.into_bytes()
}

/// Decodes the whole stream; returns the number of positions as a check.
fn decode_stream(input: &[u8]) -> usize {
    let mut session = Protocol::WIALON.session(SessionOptions::default());
    let mut buffer = BytesMut::from(input);
    let mut positions = 0;
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        if let Event::Positions { batch, .. } = event {
            positions += batch.len();
        }
    }
    positions
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("wialon");
    group.throughput(Throughput::Elements(PACKETS as u64));
    for (version, name) in [(Version::V1_1, "1.1"), (Version::V2_0, "2.0")] {
        let inputs = [
            ("SD", stream(version, |i| short_data(&wialon_record(i), version)), PACKETS),
            ("D", stream(version, |i| extended_data(&wialon_record(i), version)), PACKETS),
            (
                "B_10_records",
                stream(version, |i| {
                    let records: Vec<_> = (0..10).map(|j| wialon_record(i * 10 + j)).collect();
                    black_box_packet(&records, version)
                }),
                PACKETS * 10,
            ),
        ];
        for (kind, input, expected) in inputs {
            assert_eq!(decode_stream(&input), expected, "{kind} {name} must decode completely");
            group.bench_with_input(BenchmarkId::new(kind, name), &input, |b, input| {
                b.iter(|| black_box(decode_stream(black_box(input))))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
