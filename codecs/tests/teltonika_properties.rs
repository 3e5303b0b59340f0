//! Property tests: random records encoded with the test encoder decode back to the same
//! values; any split of the stream decodes the same; any corrupted byte is refused;
//! random bytes never panic or loop.

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::teltonika::encode::{IoElement, Record, avl_packet, handshake, udp_datagram};
use fleetgate_codecs::teltonika::{CODEC_8, CODEC_8E, CODEC_16};
use fleetgate_codecs::transcript::{run_stream, run_stream_in_chunks};
use fleetgate_codecs::{Event, IoKey, IoValue, Protocol, SessionOptions};
use proptest::prelude::*;

const IMEI: &str = "356307042441013";

fn io_element(codec: u8) -> impl Strategy<Value = (u16, IoElement)> {
    let id = if codec == CODEC_8 { (0u16..=255).boxed() } else { any::<u16>().boxed() };
    let value = prop_oneof![
        any::<u8>().prop_map(IoElement::U8),
        any::<u16>().prop_map(IoElement::U16),
        any::<u32>().prop_map(IoElement::U32),
        any::<u64>().prop_map(IoElement::U64),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(IoElement::Bytes),
    ];
    (id, value).prop_filter("variable-length values exist only in codec 8E", move |(_, v)| {
        codec == CODEC_8E || !matches!(v, IoElement::Bytes(_))
    })
}

fn record(codec: u8) -> impl Strategy<Value = Record> {
    let event_io = if codec == CODEC_8 { (0u16..=255).boxed() } else { any::<u16>().boxed() };
    (
        0u64..=253_402_300_799_999,
        0u8..=2,
        -1_800_000_000i32..=1_800_000_000,
        -900_000_000i32..=900_000_000,
        any::<i16>(),
        0u16..360,
        any::<u8>(),
        any::<u16>(),
        event_io,
        0u8..=7,
        proptest::collection::vec(io_element(codec), 0..12),
    )
        .prop_map(
            |(time_ms, priority, lon, lat, altitude, course, satellites, speed, event_io, generation, io)| Record {
                time_ms,
                priority,
                lon,
                lat,
                altitude,
                course,
                satellites,
                speed,
                event_io,
                generation,
                io,
            },
        )
}

fn codec_and_records() -> impl Strategy<Value = (u8, Vec<Record>)> {
    prop_oneof![Just(CODEC_8), Just(CODEC_8E), Just(CODEC_16)]
        .prop_flat_map(|codec| (Just(codec), proptest::collection::vec(record(codec), 1..6)))
}

fn options() -> SessionOptions {
    SessionOptions { max_avl_len: 64 * 1024, ..SessionOptions::default() }
}

/// The IO elements in the order the encoder sends them: grouped by size.
fn wire_order(record: &Record) -> Vec<(u16, IoElement)> {
    let rank = |v: &IoElement| match v {
        IoElement::U8(_) => 0,
        IoElement::U16(_) => 1,
        IoElement::U32(_) => 2,
        IoElement::U64(_) => 3,
        IoElement::Bytes(_) => 4,
    };
    let mut io = record.io.clone();
    io.sort_by_key(|(_, v)| rank(v));
    io
}

fn decode_one_packet(packet: Bytes) -> Vec<Event> {
    let mut session = Protocol::TELTONIKA.session(options());
    let mut buffer = BytesMut::from(&handshake(IMEI)[..]);
    buffer.extend_from_slice(&packet);
    let mut events = Vec::new();
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        events.push(event);
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn encoded_records_decode_to_the_same_values((codec, records) in codec_and_records()) {
        let events = decode_one_packet(avl_packet(codec, &records));
        let Some(Event::Positions { batch, ack, .. }) = events.get(1) else {
            return Err(TestCaseError::fail(format!("no positions: {events:?}")));
        };
        prop_assert_eq!(&ack[..], &(records.len() as u32).to_be_bytes()[..]);
        prop_assert_eq!(batch.len(), records.len());
        for (position, record) in batch.iter().zip(&records) {
            let fix = position.fix;
            prop_assert_eq!(fix.time.map(|t| t.0), Some(record.time_ms as i64));
            prop_assert_eq!(fix.coordinates, Some((f64::from(record.lat) / 1e7, f64::from(record.lon) / 1e7)));
            prop_assert_eq!(fix.altitude, Some(f64::from(record.altitude)));
            prop_assert_eq!(fix.course, Some(f64::from(record.course)));
            prop_assert_eq!(fix.speed, Some(f64::from(record.speed)));
            prop_assert_eq!(fix.satellites, Some(u16::from(record.satellites)));
            let expected = wire_order(record);
            prop_assert_eq!(position.io().len(), expected.len());
            for (entry, (id, value)) in position.io().iter().zip(&expected) {
                prop_assert_eq!(entry.key, IoKey::Id(*id));
                match (entry.value, value) {
                    (IoValue::Uint(v), IoElement::U8(e)) => prop_assert_eq!(v, u64::from(*e)),
                    (IoValue::Uint(v), IoElement::U16(e)) => prop_assert_eq!(v, u64::from(*e)),
                    (IoValue::Uint(v), IoElement::U32(e)) => prop_assert_eq!(v, u64::from(*e)),
                    (IoValue::Uint(v), IoElement::U64(e)) => prop_assert_eq!(v, *e),
                    (IoValue::Bytes(span), IoElement::Bytes(e)) => prop_assert_eq!(position.bytes(span), &e[..]),
                    (actual, expected) => prop_assert!(false, "{actual:?} for {expected:?}"),
                }
            }
        }
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same(
        (codec, records) in codec_and_records(),
        chunk in 1usize..64,
    ) {
        let mut stream = handshake(IMEI).to_vec();
        stream.extend_from_slice(&avl_packet(codec, &records));
        stream.push(0xFF);
        stream.extend_from_slice(&avl_packet(codec, &records[..1]));
        let whole = run_stream(Protocol::TELTONIKA, &stream, options());
        let split = run_stream_in_chunks(Protocol::TELTONIKA, &stream, chunk, options());
        prop_assert!(whole.completed);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn a_corrupted_data_byte_is_refused_without_a_positive_ack(
        (codec, records) in codec_and_records(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut packet = avl_packet(codec, &records).to_vec();
        // Any byte of the data field or the CRC; the length and preamble are framing.
        let at = 8 + position.index(packet.len() - 8);
        packet[at] ^= flip;
        let events = decode_one_packet(Bytes::from(packet));
        prop_assert!(events.iter().all(|e| !matches!(e, Event::Positions { .. })), "{events:?}");
        // Refused, answered "nothing accepted" (or nothing at all when the corrupted
        // codec byte now claims a command response).
        prop_assert!(
            events.iter().any(|e| matches!(e, Event::Refused { reply: None, .. })
                || matches!(e, Event::Refused { reply: Some(r), .. } if r[..] == [0, 0, 0, 0])),
            "{events:?}"
        );
    }

    #[test]
    fn random_bytes_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for anonymous in [false, true] {
            let mut session = Protocol::TELTONIKA.session(SessionOptions { allow_anonymous: anonymous, ..options() });
            let mut buffer = BytesMut::from(&bytes[..]);
            // Every event consumes bytes (or drains a queue filled by consumed bytes), so
            // the loop ends; the bound only turns a regression into a failure.
            for _ in 0..=bytes.len() + 8 {
                match session.decode(&mut buffer) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert!(session.offset() <= bytes.len() as u64);
            let _ = session.decode_datagram(Bytes::from(bytes.clone()));
        }
    }

    #[test]
    fn udp_datagrams_decode_and_ack_their_ids(
        (codec, records) in codec_and_records(),
        packet_id in any::<u16>(),
        avl_packet_id in any::<u8>(),
    ) {
        let datagram = udp_datagram(packet_id, avl_packet_id, IMEI, codec, &records);
        let mut session = Protocol::TELTONIKA.session(options());
        let events = session.decode_datagram(datagram).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(Event::Positions { batch, ack, .. }) = events.last() else {
            return Err(TestCaseError::fail(format!("{events:?}")));
        };
        prop_assert_eq!(batch.len(), records.len());
        let [hi, lo] = packet_id.to_be_bytes();
        prop_assert_eq!(&ack[..], &[0, 5, hi, lo, 1, avl_packet_id, records.len() as u8][..]);
    }
}
