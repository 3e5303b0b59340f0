//! Property tests of the Galileosky codec against an encoder written here, apart from
//! the codec's own: random sessions (a head packet, then live and archived main packets
//! of records with random sensor tags, fixed and counted) decode to the exact values
//! sent, every packet answered `02` + its own checksum; any split of the stream decodes
//! the same; a corrupted packet is refused without an answer while the next still
//! decodes; random bytes never panic or loop. Iridium messages, commands and their
//! answers are checked too.

use std::collections::BTreeMap;

use bytes::BytesMut;
use fleetgate_codecs::attrs::Attr;
use fleetgate_codecs::conformance::{check_any_bytes, events_of};
use fleetgate_codecs::galileo::encode::command;
use fleetgate_codecs::galileo::tags::{Length, length};
use fleetgate_codecs::out::HEX_IDS;
use fleetgate_codecs::transcript::{run_stream, run_stream_in_chunks};
use fleetgate_codecs::{AttrValue, Event, IoKey, IoValue, PositionRef, Protocol, SessionOptions};
use proptest::prelude::*;

const IMEI: &str = "868204001549087";

/// CRC-16/MODBUS, written out bit by bit.
fn modbus(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

fn packet(body: &[u8], archive: bool) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(&((body.len() as u16) | if archive { 0x8000 } else { 0 }).to_le_bytes());
    out.extend_from_slice(body);
    let crc = modbus(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn answer_of(packet: &[u8]) -> Vec<u8> {
    vec![0x02, packet[packet.len() - 2], packet[packet.len() - 1]]
}

fn head(device_id: u16) -> Vec<u8> {
    let mut body = vec![0x01, 0x11, 0x02, 0xE6, 0x03];
    body.extend_from_slice(IMEI.as_bytes());
    body.push(0x04);
    body.extend_from_slice(&device_id.to_le_bytes());
    body
}

#[derive(Debug, Clone)]
struct Record {
    number: u16,
    time: u32,
    validity: u8,
    satellites: u8,
    lat: i32,
    lon: i32,
    speed: u16,
    course: u16,
    altitude: i16,
    /// Sensor tags and their values, each tag once.
    sensors: BTreeMap<u8, Vec<u8>>,
}

/// Tags a record may carry besides its fix, the head's and the command's.
fn sensor_tags() -> Vec<u8> {
    (0u8..=255)
        .filter(|&tag| length(tag) != Length::Unknown)
        .filter(|tag| ![0x01, 0x02, 0x03, 0x04, 0x10, 0x20, 0x30, 0x33, 0x34, 0xE0, 0xE1].contains(tag))
        .collect()
}

fn sensor() -> impl Strategy<Value = (u8, Vec<u8>)> {
    proptest::sample::select(sensor_tags()).prop_flat_map(|tag| {
        let size = match length(tag) {
            Length::Fixed(n) => usize::from(n)..usize::from(n) + 1,
            _ => 0..40,
        };
        (Just(tag), proptest::collection::vec(any::<u8>(), size))
    })
}

fn record() -> impl Strategy<Value = Record> {
    (
        (any::<u16>(), 946_684_800u32..4_102_444_799, 0u8..3, 0u8..16),
        (-90_000_000i32..=90_000_000, -180_000_000i32..=180_000_000),
        (0u16..3000, 0u16..3600, any::<i16>()),
        proptest::collection::vec(sensor(), 0..12),
    )
        .prop_map(|((number, time, validity, satellites), (lat, lon), (speed, course, altitude), sensors)| {
            Record {
                number,
                time,
                validity,
                satellites,
                lat,
                lon,
                speed,
                course,
                altitude,
                sensors: sensors.into_iter().collect(),
            }
        })
}

fn encode_record(record: &Record) -> Vec<u8> {
    let mut out = vec![0x10];
    out.extend_from_slice(&record.number.to_le_bytes());
    out.push(0x20);
    out.extend_from_slice(&record.time.to_le_bytes());
    out.push(0x30);
    out.push((record.validity << 4) | record.satellites);
    out.extend_from_slice(&record.lat.to_le_bytes());
    out.extend_from_slice(&record.lon.to_le_bytes());
    out.push(0x33);
    out.extend_from_slice(&record.speed.to_le_bytes());
    out.extend_from_slice(&record.course.to_le_bytes());
    out.push(0x34);
    out.extend_from_slice(&record.altitude.to_le_bytes());
    for (&tag, value) in &record.sensors {
        out.push(tag);
        match length(tag) {
            Length::Counted8 => out.push(value.len() as u8),
            Length::Counted16 => out.extend_from_slice(&(value.len() as u16).to_le_bytes()),
            _ => {}
        }
        out.extend_from_slice(value);
    }
    out
}

fn decode(bytes: &[u8], options: SessionOptions) -> Vec<Event> {
    events_of(Protocol::GALILEO, bytes, options)
}

fn io(position: &PositionRef<'_>, name: &'static str) -> Option<IoValue> {
    position.io().iter().find(|e| e.key == IoKey::Static(name)).map(|e| e.value)
}

fn le(value: &[u8]) -> u64 {
    value.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Every value of `record` is in `position`, exactly.
fn check(position: &PositionRef<'_>, record: &Record, archive: bool) -> Result<(), TestCaseError> {
    let fix = position.fix;
    prop_assert_eq!(fix.time.map(|t| t.0), Some(i64::from(record.time) * 1000));
    let (lat, lon) = fix.coordinates.unwrap_or((f64::NAN, f64::NAN));
    prop_assert!((lat * 1e6 - f64::from(record.lat)).abs() < 1e-3, "lat {} sent {}", lat, record.lat);
    prop_assert!((lon * 1e6 - f64::from(record.lon)).abs() < 1e-3, "lon {} sent {}", lon, record.lon);
    prop_assert_eq!(fix.valid, record.validity == 0);
    prop_assert_eq!(fix.satellites, Some(u16::from(record.satellites)));
    prop_assert_eq!(fix.speed, Some(f64::from(record.speed) / 10.0));
    prop_assert_eq!(fix.course, Some(f64::from(record.course) / 10.0));
    prop_assert_eq!(fix.altitude, Some(f64::from(record.altitude)));
    prop_assert_eq!(io(position, "0x10"), Some(IoValue::Uint(u64::from(record.number))));
    prop_assert_eq!(io(position, "archive"), archive.then_some(IoValue::Uint(1)));
    for (&tag, value) in &record.sensors {
        let raw = io(position, HEX_IDS[usize::from(tag)]);
        match raw {
            Some(IoValue::Bytes(span)) => prop_assert_eq!(position.bytes(span), &value[..], "tag 0x{:02X}", tag),
            Some(IoValue::Int(v)) => prop_assert_eq!(v, i64::from(value[0] as i8)),
            Some(IoValue::Uint(v)) => prop_assert_eq!(v, le(value), "tag 0x{:02X}", tag),
            other => prop_assert!(false, "tag 0x{:02X} kept as {:?}", tag, other),
        }
        let volts = |mv: u64| Some(AttrValue::Float(mv as f64 / 1000.0));
        match tag {
            0x41 => prop_assert_eq!(position.attr(Attr::PowerVoltage), volts(le(value))),
            0x42 => prop_assert_eq!(position.attr(Attr::BatteryVoltage), volts(le(value))),
            0x46 => {
                prop_assert_eq!(position.attr(Attr::Din1), Some(AttrValue::Bool(value[0] & 1 != 0)));
                prop_assert_eq!(position.attr(Attr::Din8), Some(AttrValue::Bool(value[0] & 0x80 != 0)));
            }
            0x45 => prop_assert_eq!(position.attr(Attr::Dout2), Some(AttrValue::Bool(value[0] & 2 != 0))),
            0x53 => prop_assert_eq!(position.attr(Attr::Ain4), volts(le(value))),
            0x71 => {
                let expected = (value[1] != 0x80).then_some(AttrValue::Int(i64::from(value[1] as i8)));
                prop_assert_eq!(position.attr(Attr::Temp2), expected);
            }
            0x90 => {
                let expected = (le(value) != 0).then_some(AttrValue::Decimal(le(value)));
                prop_assert_eq!(position.attr(Attr::DriverId), expected);
            }
            0xC0 => prop_assert_eq!(position.attr(Attr::FuelUsed), Some(AttrValue::Float(le(value) as f64 / 2.0))),
            0xC1 => {
                prop_assert_eq!(position.attr(Attr::FuelLevel), Some(AttrValue::Float(f64::from(value[0]) * 0.4)));
                prop_assert_eq!(position.attr(Attr::CoolantTemp), Some(AttrValue::Int(i64::from(value[1]) - 40)));
            }
            0xD4 => prop_assert_eq!(position.attr(Attr::Odometer), Some(AttrValue::Float(le(value) as f64))),
            _ => {}
        }
    }
    Ok(())
}

fn packets() -> impl Strategy<Value = Vec<(Vec<Record>, bool)>> {
    proptest::collection::vec((proptest::collection::vec(record(), 1..4), any::<bool>()), 1..5)
}

fn stream(device_id: u16, packets: &[(Vec<Record>, bool)]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let head = packet(&head(device_id), false);
    let mut bytes = head.clone();
    let mut sent = vec![head];
    for (records, archive) in packets {
        let body: Vec<u8> = records.iter().flat_map(encode_record).collect();
        let packet = packet(&body, *archive);
        bytes.extend(&packet);
        sent.push(packet);
    }
    (bytes, sent)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sessions_decode_to_the_values_sent_and_every_packet_is_answered(
        device_id in any::<u16>(),
        packets in packets(),
    ) {
        let (bytes, sent) = stream(device_id, &packets);
        let events = decode(&bytes, SessionOptions::default());
        let Some(Event::Login { device, accept, .. }) = events.first() else {
            return Err(TestCaseError::fail(format!("no login: {events:?}")));
        };
        prop_assert_eq!(device.as_str(), IMEI);
        prop_assert_eq!(&accept[..], &answer_of(&sent[0])[..]);
        prop_assert_eq!(events.len(), packets.len() + 1);
        for ((event, (records, archive)), packet) in events[1..].iter().zip(&packets).zip(&sent[1..]) {
            let Event::Positions { batch, ack, nack } = event else {
                return Err(TestCaseError::fail(format!("{event:?}")));
            };
            prop_assert_eq!(&ack[..], &answer_of(packet)[..]);
            prop_assert!(nack.is_none());
            prop_assert_eq!(batch.len(), records.len());
            for (position, record) in batch.iter().zip(records) {
                check(&position, record, *archive)?;
            }
        }
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same(packets in packets(), chunk in 1usize..64) {
        let (bytes, _) = stream(7, &packets);
        let whole = run_stream(Protocol::GALILEO, &bytes, SessionOptions::default());
        prop_assert!(whole.completed);
        prop_assert_eq!(whole.clone(), run_stream_in_chunks(Protocol::GALILEO, &bytes, chunk, SessionOptions::default()));
    }

    #[test]
    fn a_corrupted_packet_is_refused_unanswered_and_the_next_still_decodes(
        first in record(),
        next in record(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut stream = packet(&head(1), false);
        let mut corrupted = packet(&encode_record(&first), false);
        // Any byte after the length (a damaged length moves the next packet's start,
        // which the checksum cannot tell).
        let at = 3 + position.index(corrupted.len() - 3);
        corrupted[at] ^= flip;
        stream.extend(&corrupted);
        let intact = packet(&encode_record(&next), true);
        stream.extend(&intact);
        let events = decode(&stream, SessionOptions::default());
        prop_assert_eq!(events.len(), 3, "{:?}", events);
        prop_assert!(matches!(&events[1], Event::Refused { reply: None, .. }), "{:?}", events[1]);
        let Event::Positions { batch, ack, .. } = &events[2] else {
            return Err(TestCaseError::fail(format!("{:?}", events[2])));
        };
        prop_assert_eq!(&ack[..], &answer_of(&intact)[..]);
        check(&batch.get(0), &next, true)?;
    }

    #[test]
    fn random_bytes_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..600), framed in any::<bool>()) {
        let mut input = if framed { packet(&head(1), false) } else { Vec::new() };
        if framed {
            let len = bytes.len() as u16;
            input.push(0x01);
            input.extend_from_slice(&len.to_le_bytes());
        }
        input.extend(&bytes);
        check_any_bytes(Protocol::GALILEO, &input).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn an_unknown_tag_refuses_the_packet_and_data_before_the_head_closes() {
    let mut stream = packet(&head(1), false);
    stream.extend(packet(&[0x10, 1, 0, 0x00, 5], false));
    let events = decode(&stream, SessionOptions::default());
    let Some(Event::Refused { error, reply: None, .. }) = events.get(1) else { panic!("{events:?}") };
    assert!(error.contains("unknown tag 0x00") && error.contains("offset 6"), "{error}");

    let mut session = Protocol::GALILEO.session(SessionOptions::default());
    let mut buffer = BytesMut::from(&packet(&[0x10, 1, 0], false)[..]);
    let fatal = session.decode(&mut buffer).expect_err("data before the head packet");
    assert!(fatal.error.contains("head packet"), "{fatal}");
}

#[test]
fn a_packet_of_another_imei_is_refused() {
    let mut stream = packet(&head(1), false);
    let mut other = vec![0x03];
    other.extend_from_slice(b"111111111111111");
    other.extend_from_slice(&[0x10, 1, 0, 0x20, 0, 0, 0, 0x60]);
    stream.extend(packet(&other, false));
    let events = decode(&stream, SessionOptions::default());
    assert!(matches!(&events[1], Event::Refused { reply: None, error, .. } if error.contains("111111111111111")));
}

#[test]
fn commands_carry_the_head_packets_identity_and_answers_are_matched_by_number() {
    let mut session = Protocol::GALILEO.session(SessionOptions::default());
    assert!(session.command(b"status").is_none(), "no command before the head packet");
    let mut buffer = BytesMut::from(&packet(&head(0x0032), false)[..]);
    while let Ok(Some(_)) = session.decode(&mut buffer) {}
    let (first, answered) = session.command(b"status").unwrap_or_default();
    assert!(answered);
    assert_eq!(&first[..], &command(IMEI, 0x0032, 0, b"status")[..]);
    let (second, _) = session.command(b"Out 0,1").unwrap_or_default();
    assert_eq!(&second[..], &command(IMEI, 0x0032, 1, b"Out 0,1")[..]);
    // The device answers the second command, then one nobody sent.
    let answer = |number: u32, text: &[u8]| {
        let mut body = vec![0x03];
        body.extend_from_slice(IMEI.as_bytes());
        body.extend_from_slice(&[0x04, 0x32, 0x00, 0xE0]);
        body.extend_from_slice(&number.to_le_bytes());
        body.push(0xE1);
        body.push(text.len() as u8);
        body.extend_from_slice(text);
        packet(&body, false)
    };
    let mut matched = Vec::new();
    for (number, text) in [(1, &b"OUT(0..1) = 1"[..]), (77, b"?"), (0, b"Dev50=1")] {
        let sent = answer(number, text);
        let mut buffer = BytesMut::from(&sent[..]);
        while let Ok(Some(event)) = session.decode(&mut buffer) {
            let Event::Message { message, reply } = event else { panic!("{event:?}") };
            assert_eq!(&message.payload[..], text);
            assert_eq!(reply.as_deref(), Some(&answer_of(&sent)[..]));
            matched.push(message.answers_command);
        }
    }
    assert_eq!(matched, [true, true, false]);
}

#[test]
fn an_iridium_message_logs_in_and_is_a_position_without_an_answer() {
    // MO header: CDR reference, IMEI, status, MOMSN, MTMSN, time.
    let mut header = vec![0x01, 0x00, 0x1C, 0, 0, 0, 9];
    header.extend_from_slice(b"300234069604590");
    header.extend_from_slice(&[0, 0x00, 0x12, 0x00, 0x00]);
    header.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    // Location: south and west, 33° 44.028', 70° 43.189', CEP 5 km.
    let mut location = vec![0x03, 0x00, 0x0B, 0x03, 33];
    location.extend_from_slice(&44_028u16.to_be_bytes());
    location.push(70);
    location.extend_from_slice(&43_189u16.to_be_bytes());
    location.extend_from_slice(&5u32.to_be_bytes());
    // Payload: the supply voltage only (time and coordinates from the header).
    let payload = [0x02, 0x00, 0x03, 0x41, 0x10, 0x27];
    let elements: Vec<u8> = [header, location, payload.to_vec()].concat();
    let mut message = vec![0x01];
    message.extend_from_slice(&(elements.len() as u16).to_be_bytes());
    message.extend(elements);
    let events = decode(&message, SessionOptions::default());
    let [Event::Login { device, accept, .. }, Event::Positions { batch, ack, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(device, "300234069604590");
    assert!(accept.is_empty() && ack.is_empty(), "the Iridium gateway gets no answer");
    let position = batch.get(0);
    assert_eq!(position.fix.time.map(|t| t.0), Some(1_700_000_000_000));
    let (lat, lon) = position.fix.coordinates.unwrap_or_default();
    assert!((lat + 33.0 + 44.028 / 60.0).abs() < 1e-9 && (lon + 70.0 + 43.189 / 60.0).abs() < 1e-9);
    assert!(!position.fix.valid);
    assert_eq!(position.attr(Attr::PowerVoltage), Some(AttrValue::Float(10.0)));
    assert_eq!(io(&position, "cep_radius_km"), Some(IoValue::Uint(5)));
}

/// The minimal data set, bit by bit as the protocol lays it out.
fn minimal(seconds: u32, valid: bool, lat_units: u32, lon_units: u32, alarm: bool) -> [u8; 10] {
    let fields = [
        (0u64, 1),
        (u64::from(seconds), 25),
        (u64::from(!valid), 1),
        (u64::from(lon_units), 22),
        (u64::from(lat_units), 21),
        (u64::from(alarm), 1),
        (0, 9),
    ];
    let mut bits = Vec::with_capacity(80);
    for (value, len) in fields {
        for bit in (0..len).rev() {
            bits.push((value >> bit) & 1 == 1);
        }
    }
    let mut out = [0u8; 10];
    for (i, bit) in bits.iter().enumerate() {
        if *bit {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

fn compressed_packet(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
    let crc = modbus(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn compressed_records_are_dated_by_the_gateways_clock(
        records in proptest::collection::vec(
            (0u32..15_638_400, any::<bool>(), 0u32..(1 << 21), 0u32..(1 << 22), any::<bool>(), proptest::collection::vec(sensor(), 0..4)),
            1..4,
        ),
    ) {
        // 2026-07-01: every record time of the first half of 2026 is this year's.
        let now = fleetgate_codecs::UtcMillis(1_782_864_000_000);
        let year_start = 1_767_225_600_000i64;
        let mut body = Vec::new();
        let mut expected = Vec::new();
        for (seconds, valid, lat, lon, alarm, sensors) in &records {
            let sensors: BTreeMap<u8, Vec<u8>> = sensors.iter().cloned().collect();
            body.extend_from_slice(&minimal(*seconds, *valid, *lat, *lon, *alarm));
            body.push(sensors.len() as u8);
            body.extend(sensors.keys());
            for (&tag, value) in &sensors {
                match length(tag) {
                    Length::Counted8 => body.push(value.len() as u8),
                    Length::Counted16 => body.extend_from_slice(&(value.len() as u16).to_le_bytes()),
                    _ => {}
                }
                body.extend_from_slice(value);
            }
            expected.push((*seconds, *valid, *lat, *lon, *alarm, sensors));
        }
        let mut stream = packet(&head(1), false);
        let sent = compressed_packet(&body);
        stream.extend(&sent);
        let mut session = Protocol::GALILEO.session(SessionOptions::default());
        session.clock(now);
        let mut buffer = BytesMut::from(&stream[..]);
        let mut events = Vec::new();
        while let Ok(Some(event)) = session.decode(&mut buffer) {
            events.push(event);
        }
        let Some(Event::Positions { batch, ack, .. }) = events.get(1) else {
            return Err(TestCaseError::fail(format!("{events:?}")));
        };
        prop_assert_eq!(&ack[..], &answer_of(&sent)[..]);
        prop_assert_eq!(batch.len(), expected.len());
        for (position, (seconds, valid, lat, lon, alarm, sensors)) in batch.iter().zip(&expected) {
            prop_assert_eq!(position.fix.time.map(|t| t.0), Some(year_start + i64::from(*seconds) * 1000));
            prop_assert_eq!(position.fix.valid, *valid);
            let (read_lat, read_lon) = position.fix.coordinates.unwrap_or_default();
            prop_assert_eq!(read_lat, 180.0 * f64::from(*lat) / 2_097_152.0 - 90.0);
            prop_assert_eq!(read_lon, 360.0 * f64::from(*lon) / 4_194_304.0 - 180.0);
            prop_assert_eq!(position.attr(Attr::Alarm).is_some(), *alarm);
            for (&tag, value) in sensors {
                let raw = io(&position, HEX_IDS[usize::from(tag)]);
                match raw {
                    Some(IoValue::Bytes(span)) => prop_assert_eq!(position.bytes(span), &value[..]),
                    Some(IoValue::Int(v)) => prop_assert_eq!(v, i64::from(value[0] as i8)),
                    Some(IoValue::Uint(v)) => prop_assert_eq!(v, le(value), "tag 0x{:02X}", tag),
                    other => prop_assert!(false, "tag 0x{:02X} kept as {:?}", tag, other),
                }
            }
        }
    }
}

#[test]
fn a_compressed_packet_without_a_clock_is_refused_unanswered() {
    let mut body = minimal(100, true, 1 << 20, 1 << 21, false).to_vec();
    body.push(0);
    let mut stream = packet(&head(1), false);
    stream.extend(compressed_packet(&body));
    let events = decode(&stream, SessionOptions::default());
    let Some(Event::Refused { error, reply: None, .. }) = events.get(1) else { panic!("{events:?}") };
    assert!(error.contains("no clock"), "{error}");
}
