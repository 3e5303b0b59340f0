//! Property tests of the Navtelecom codec against an encoder written here, apart from
//! the codec's own: random sessions (the handshake, a FLEX 1.0 or 2.0 negotiation of a
//! random bitfield, then `~A` and `~T` messages of records laid out by it) decode to the
//! exact values sent, each message answered as the protocol says; any split of the
//! stream decodes the same; a corrupted message is refused unanswered while the next
//! still decodes; random bytes never panic or loop. Commands and their answers too.

use bytes::BytesMut;
use fleetgate_codecs::attrs::Attr;
use fleetgate_codecs::conformance::{check_any_bytes, events_of};
use fleetgate_codecs::navtelecom::flex::FIELD_SIZES;
use fleetgate_codecs::transcript::{run_stream, run_stream_in_chunks};
use fleetgate_codecs::{AttrValue, Event, IoKey, IoValue, PositionRef, Protocol, SessionOptions};
use proptest::prelude::*;

const IMEI: &str = "866795031410689";

fn xor(data: &[u8]) -> u8 {
    data.iter().fold(0, |a, b| a ^ b)
}

fn envelope(receiver: u32, sender: u32, data: &[u8]) -> Vec<u8> {
    let mut out = b"@NTC".to_vec();
    out.extend_from_slice(&receiver.to_le_bytes());
    out.extend_from_slice(&sender.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.push(xor(data));
    out.push(xor(&out));
    out.extend_from_slice(data);
    out
}

/// CRC-8, polynomial 0x31, initial 0xFF, bit by bit.
fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0xFFu8;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 { (crc << 1) ^ 0x31 } else { crc << 1 };
        }
    }
    crc
}

fn with_crc(mut data: Vec<u8>) -> Vec<u8> {
    data.push(crc8(&data));
    data
}

/// A negotiated layout: the FLEX version and its fields.
#[derive(Debug, Clone)]
struct Layout {
    version: u8,
    fields: Vec<usize>,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![Just((0x0Au8, 69usize)), Just((0x14, 122))].prop_flat_map(|(version, count)| {
        proptest::collection::btree_set(0..count, 1..30)
            .prop_map(move |fields| Layout { version, fields: fields.into_iter().collect() })
    })
}

/// One record: each field's bytes, with a sane time and finite floats.
fn record(layout: &Layout) -> Vec<BoxedStrategy<Vec<u8>>> {
    let fields = layout.fields.clone();
    let values: Vec<BoxedStrategy<Vec<u8>>> = fields
        .iter()
        .map(|&field| match field {
            8 => (946_684_800u32..4_102_444_799).prop_map(|t| t.to_le_bytes().to_vec()).boxed(),
            12 | 14 | 15 => (0u32..100_000).prop_map(|v| (v as f32 / 8.0).to_le_bytes().to_vec()).boxed(),
            9 => (-54_000_000i32..=54_000_000).prop_map(|v| v.to_le_bytes().to_vec()).boxed(),
            10 => (-108_000_000i32..=108_000_000).prop_map(|v| v.to_le_bytes().to_vec()).boxed(),
            field => {
                let size = usize::from(FIELD_SIZES[field]);
                proptest::collection::vec(any::<u8>(), size..size + 1).boxed()
            }
        })
        .collect();
    values
}

fn negotiation(layout: &Layout) -> Vec<u8> {
    let count = if layout.version == 0x0A { 69 } else { 122 };
    let mut bits = vec![0u8; count / 8 + usize::from(count % 8 != 0)];
    for &field in &layout.fields {
        bits[field / 8] |= 0x80 >> (field % 8);
    }
    let mut data = b"*>FLEX".to_vec();
    data.extend_from_slice(&[0xB0, layout.version, layout.version, count as u8]);
    data.extend(bits);
    envelope(1, 7, &data)
}

#[derive(Debug, Clone)]
enum Message {
    Archive(Vec<Vec<Vec<u8>>>),
    Current(u32, Vec<Vec<u8>>),
}

fn encode(message: &Message) -> Vec<u8> {
    match message {
        Message::Archive(records) => {
            let mut data = vec![b'~', b'A', records.len() as u8];
            data.extend(records.iter().flatten().flatten());
            with_crc(data)
        }
        Message::Current(index, record) => {
            let mut data = vec![b'~', b'T'];
            data.extend_from_slice(&index.to_le_bytes());
            data.extend(record.iter().flatten());
            with_crc(data)
        }
    }
}

fn answer(message: &Message) -> Vec<u8> {
    match message {
        Message::Archive(records) => with_crc(vec![b'~', b'A', records.len() as u8]),
        Message::Current(index, _) => {
            let mut data = vec![b'~', b'T'];
            data.extend_from_slice(&index.to_le_bytes());
            with_crc(data)
        }
    }
}

fn session() -> impl Strategy<Value = (Layout, Vec<Message>)> {
    layout().prop_flat_map(|layout| {
        let message = prop_oneof![
            proptest::collection::vec(record(&layout), 1..4).prop_map(Message::Archive),
            (any::<u32>(), record(&layout)).prop_map(|(i, r)| Message::Current(i, r)),
        ];
        (Just(layout), proptest::collection::vec(message, 1..4))
    })
}

fn stream(layout: &Layout, messages: &[Message]) -> Vec<u8> {
    let mut bytes = envelope(1, 7, format!("*>S:{IMEI}").as_bytes());
    bytes.extend(negotiation(layout));
    for message in messages {
        bytes.extend(encode(message));
    }
    bytes
}

fn decode(bytes: &[u8]) -> Vec<Event> {
    events_of(Protocol::NAVTELECOM, bytes, SessionOptions::default())
}

fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn float(bytes: &[u8]) -> f64 {
    let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    value.to_string().parse().unwrap_or_default()
}

/// Every field of `record` is in `position`, raw and where the vocabulary has it.
fn check(position: &PositionRef<'_>, layout: &Layout, record: &[Vec<u8>]) -> Result<(), TestCaseError> {
    for (&field, value) in layout.fields.iter().zip(record) {
        let raw = position.io().iter().find(|e| e.key == IoKey::Id(field as u16 + 1)).map(|e| e.value);
        match raw {
            Some(IoValue::Uint(v)) => prop_assert_eq!(v, le(value), "field {}", field),
            Some(IoValue::Int(v)) => {
                let expected = match value.len() {
                    1 => i64::from(value[0] as i8),
                    _ => i64::from(le(value) as u32 as i32),
                };
                prop_assert_eq!(v, expected, "field {}", field);
            }
            Some(IoValue::Float(v)) => prop_assert_eq!(v, float(value), "field {}", field),
            Some(IoValue::Bytes(span)) => prop_assert_eq!(position.bytes(span), &value[..], "field {}", field),
            other => prop_assert!(false, "field {} kept as {:?}", field, other),
        }
        let fix = position.fix;
        match field {
            7 => {
                prop_assert_eq!(fix.valid, value[0] & 2 != 0);
                prop_assert_eq!(fix.satellites, Some(u16::from(value[0] >> 2)));
            }
            8 => prop_assert_eq!(fix.time.map(|t| t.0), Some(le(value) as i64 * 1000)),
            9 => prop_assert_eq!(fix.coordinates.map(|c| c.0), Some(f64::from(le(value) as u32 as i32) / 600_000.0)),
            10 => prop_assert_eq!(fix.coordinates.map(|c| c.1), Some(f64::from(le(value) as u32 as i32) / 600_000.0)),
            11 => prop_assert_eq!(fix.altitude, Some(f64::from(le(value) as u32 as i32) / 10.0)),
            12 => prop_assert_eq!(fix.speed, Some(float(value))),
            13 => prop_assert_eq!(fix.course, Some(le(value) as f64)),
            14 => {
                prop_assert_eq!(position.attr(Attr::Odometer), Some(AttrValue::Float((float(value) * 1000.0).round())))
            }
            18 => prop_assert_eq!(position.attr(Attr::PowerVoltage), Some(AttrValue::Float(le(value) as f64 / 1000.0))),
            21 => prop_assert_eq!(position.attr(Attr::Ain2), Some(AttrValue::Float(le(value) as f64 / 1000.0))),
            28 => prop_assert_eq!(position.attr(Attr::Din3), Some(AttrValue::Bool(value[0] & 4 != 0))),
            30 => prop_assert_eq!(position.attr(Attr::Dout1), Some(AttrValue::Bool(value[0] & 1 != 0))),
            45 => {
                let expected = (value[0] != 0x80).then_some(AttrValue::Int(i64::from(value[0] as i8)));
                prop_assert_eq!(position.attr(Attr::Temp2), expected);
            }
            70 => prop_assert_eq!(position.attr(Attr::Pdop), Some(AttrValue::Float(f64::from(value[1]) / 10.0))),
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sessions_decode_to_the_values_sent_and_every_message_is_answered((layout, messages) in session()) {
        let events = decode(&stream(&layout, &messages));
        let [Event::Login { device, accept, .. }, Event::KeepAlive { reply: Some(negotiated) }, rest @ ..] = &events[..] else {
            return Err(TestCaseError::fail(format!("no login and negotiation: {events:?}")));
        };
        prop_assert_eq!(device.as_str(), IMEI);
        prop_assert_eq!(&accept[..], &envelope(7, 1, b"*<S")[..]);
        let mut expected = b"*<FLEX\xB0".to_vec();
        expected.extend_from_slice(&[layout.version, layout.version]);
        prop_assert_eq!(&negotiated[..], &envelope(7, 1, &expected)[..]);
        prop_assert_eq!(rest.len(), messages.len());
        for (event, message) in rest.iter().zip(&messages) {
            let Event::Positions { batch, ack, .. } = event else {
                return Err(TestCaseError::fail(format!("{event:?}")));
            };
            prop_assert_eq!(&ack[..], &answer(message)[..]);
            let records: Vec<&Vec<Vec<u8>>> = match message {
                Message::Archive(records) => records.iter().collect(),
                Message::Current(_, record) => vec![record],
            };
            prop_assert_eq!(batch.len(), records.len());
            for (position, record) in batch.iter().zip(records) {
                check(&position, &layout, record)?;
            }
        }
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same((layout, messages) in session(), chunk in 1usize..64) {
        let bytes = stream(&layout, &messages);
        let whole = run_stream(Protocol::NAVTELECOM, &bytes, SessionOptions::default());
        prop_assert!(whole.completed);
        prop_assert_eq!(whole.clone(), run_stream_in_chunks(Protocol::NAVTELECOM, &bytes, chunk, SessionOptions::default()));
    }

    #[test]
    fn a_corrupted_message_is_refused_unanswered_and_the_next_still_decodes(
        (layout, messages) in session(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = stream(&layout, &[]);
        let mut corrupted = encode(&messages[0]);
        // Past the type and count, which the length depends on.
        let at = 3 + position.index(corrupted.len() - 3);
        corrupted[at] ^= flip;
        bytes.extend(corrupted);
        let intact = &messages[messages.len() - 1];
        bytes.extend(encode(intact));
        let events = decode(&bytes);
        prop_assert_eq!(events.len(), 4, "{:?}", events);
        prop_assert!(matches!(&events[2], Event::Refused { reply: None, .. }), "{:?}", events[2]);
        let Event::Positions { ack, .. } = &events[3] else {
            return Err(TestCaseError::fail(format!("{:?}", events[3])));
        };
        prop_assert_eq!(&ack[..], &answer(intact)[..]);
    }

    #[test]
    fn random_bytes_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..600), negotiated in any::<bool>()) {
        let mut input = Vec::new();
        if negotiated {
            input = stream(&Layout { version: 0x14, fields: vec![0, 8, 9, 10, 76] }, &[]);
            input.push(b'~');
        }
        input.extend(&bytes);
        check_any_bytes(Protocol::NAVTELECOM, &input).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn flex_before_the_negotiation_and_data_before_the_handshake_close_the_connection() {
    let mut session = Protocol::NAVTELECOM.session(SessionOptions::default());
    let mut buffer = BytesMut::from(&envelope(1, 7, format!("*>S:{IMEI}").as_bytes())[..]);
    assert!(matches!(session.decode(&mut buffer), Ok(Some(Event::Login { .. }))));
    buffer.extend_from_slice(&with_crc(b"~A\x01\x00\x00".to_vec()));
    let fatal = session.decode(&mut buffer).expect_err("no layout");
    assert!(fatal.error.contains("before the FLEX negotiation"), "{fatal}");

    let mut session = Protocol::NAVTELECOM.session(SessionOptions::default());
    let mut buffer = BytesMut::from(&negotiation(&Layout { version: 0x0A, fields: vec![0] })[..]);
    let fatal = session.decode(&mut buffer).expect_err("no handshake");
    assert!(fatal.error.contains("*>S"), "{fatal}");
}

#[test]
fn a_flex_3_negotiation_is_offered_flex_2() {
    let mut data = b"*>FLEX".to_vec();
    data.extend_from_slice(&[0xB0, 0x1E, 0x1E, 0xFF]);
    data.extend_from_slice(&[0xFF; 32]);
    let mut bytes = envelope(1, 7, format!("*>S:{IMEI}").as_bytes());
    bytes.extend(envelope(1, 7, &data));
    let events = decode(&bytes);
    let Some(Event::KeepAlive { reply: Some(reply) }) = events.get(1) else { panic!("{events:?}") };
    assert_eq!(&reply[..], &envelope(7, 1, b"*<FLEX\xB0\x14\x14")[..]);
}

#[test]
fn commands_are_star_bang_text_and_star_at_answers_them() {
    let mut session = Protocol::NAVTELECOM.session(SessionOptions::default());
    assert!(session.command(b"*!SETOUT 1Y").is_none(), "no command before the handshake");
    let mut buffer = BytesMut::from(&envelope(1, 7, format!("*>S:{IMEI}").as_bytes())[..]);
    while let Ok(Some(_)) = session.decode(&mut buffer) {}
    let (command, answered) = session.command(b"SETOUT 1Y").unwrap_or_default();
    assert!(answered);
    assert_eq!(&command[..], &envelope(7, 1, b"*!SETOUT 1Y")[..]);
    let mut buffer = BytesMut::from(&envelope(1, 7, b"*@SETOUT 1Y OK")[..]);
    buffer.extend_from_slice(&envelope(1, 7, b"*@SETOUT 2Y OK"));
    let mut answers = Vec::new();
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        let Event::Message { message, reply: None } = event else { panic!("{event:?}") };
        answers.push((message.kind, message.answers_command));
    }
    assert_eq!(answers, [("navtelecom_answer", true), ("navtelecom_answer", false)]);
}
