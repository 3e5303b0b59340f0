//! Decoding throughput of every protocol of the registry, through its session as the
//! gateway reads a stream: a login, then 100 frames of 1 report and 100 frames of 10
//! reports built by the protocol's own device side (the simulator's), in records per
//! second (frames per second: that over the records per frame). New protocols appear
//! here without a line of their own.
//!
//! `cargo bench -p fleetgate-benches --bench protocols`

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetgate_codecs::conformance::report_of;
use fleetgate_codecs::{Event, Protocol, SessionOptions};

const FRAMES: usize = 100;

/// A login and `FRAMES` frames of `per_frame` reports each, as one stream.
fn stream(protocol: Protocol, per_frame: usize) -> Vec<u8> {
    let mut side = protocol.device();
    let resolution = side.time_resolution_ms().max(1);
    let mut bytes = side.login("359000000000001");
    for frame in 0..FRAMES {
        let reports: Vec<_> = (0..per_frame)
            .map(|i| {
                let mut report = report_of(0);
                report.time_ms += ((frame * per_frame + i) as i64) * resolution.max(1000);
                report
            })
            .collect();
        bytes.extend(side.data(&reports));
    }
    bytes
}

/// Decodes the whole stream; returns the number of positions as a check.
fn decode_stream(protocol: Protocol, input: &[u8]) -> usize {
    let mut session = protocol.session(SessionOptions::default());
    let mut buffer = BytesMut::from(input);
    let mut positions = 0;
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        if let Event::Positions { batch, .. } = event {
            positions += batch.len();
            session.recycle(batch);
        }
    }
    positions
}

fn decode(c: &mut Criterion) {
    for protocol in Protocol::built_in() {
        let mut group = c.benchmark_group(format!("protocols/{protocol}"));
        for per_frame in [1, 10] {
            let input = stream(protocol, per_frame);
            assert_eq!(decode_stream(protocol, &input), FRAMES * per_frame, "{protocol} must decode completely");
            // Records per second; frames per second are that over `per_frame`.
            group.throughput(Throughput::Elements((FRAMES * per_frame) as u64));
            group.bench_with_input(BenchmarkId::new("records", per_frame), &input, |b, input| {
                b.iter(|| black_box(decode_stream(protocol, black_box(input))))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
