//! Property tests of the JT/T 808 codec against the device-side encoder: random sessions
//! (2013 and 2019 headers, register or authenticate, single locations and batches,
//! heartbeats, subpackaged batches) decode to the exact values sent and every message
//! is answered 0x8001 naming its serial; any split of the stream decodes the same; a
//! corrupted message is refused with a non-zero result while the next still decodes;
//! random bytes never panic or loop. Commands are framed and their answers matched.

use bytes::BytesMut;
use fleetgate_codecs::attrs::Attr;
use fleetgate_codecs::conformance::{check_any_bytes, events_of};
use fleetgate_codecs::device::Report;
use fleetgate_codecs::jt808::encode::{batch_body, location_body, message, phone};
use fleetgate_codecs::jt808::{Terminal, general_response_body, id, unescape};
use fleetgate_codecs::transcript::{run_stream, run_stream_in_chunks};
use fleetgate_codecs::{AttrValue, Event, Protocol, SessionOptions};
use proptest::prelude::*;

const PHONE: &str = "13912345678";

#[derive(Debug, Clone)]
enum Frame {
    Location(Report),
    Batch(Vec<Report>, bool),
    Heartbeat,
    /// A batch sent in this many subpackages.
    Pieces(Vec<Report>, u16),
}

fn report() -> impl Strategy<Value = Report> {
    (
        946_684_800i64..4_102_444_799,
        -89.0f64..89.0,
        -179.0f64..179.0,
        0u16..2500,
        0u16..360,
        -500i16..5000,
        0u8..=30,
        any::<bool>(),
        0u32..400_000_000,
    )
        .prop_map(|(seconds, lat, lon, speed, course, altitude, satellites, ignition, odometer)| Report {
            time_ms: seconds * 1000,
            lat,
            lon,
            speed: f64::from(speed) / 10.0,
            course: f64::from(course),
            altitude: f64::from(altitude),
            satellites,
            ignition,
            fuel_percent: 0.0,
            odometer_m: f64::from(odometer) * 100.0,
            power_v: 12.5,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        report().prop_map(Frame::Location),
        (proptest::collection::vec(report(), 1..5), any::<bool>()).prop_map(|(r, blind)| Frame::Batch(r, blind)),
        Just(Frame::Heartbeat),
        (proptest::collection::vec(report(), 2..6), 2u16..4).prop_map(|(r, n)| Frame::Pieces(r, n)),
    ]
}

fn terminal(version_2019: bool) -> Terminal {
    Terminal { phone: phone(PHONE, version_2019), version: version_2019.then_some(1) }
}

/// The frames' bytes, and per frame the serials the platform must answer.
fn encode(terminal: &Terminal, register: bool, frames: &[Frame]) -> (Vec<u8>, Vec<Vec<u16>>) {
    let mut serial = 1u16;
    let mut bytes = if register {
        let mut body = vec![0, 44, 1, 47];
        body.extend_from_slice(&[b'M'; 5]);
        body.extend_from_slice(&[b'T'; 20]);
        body.extend_from_slice(&[b'1'; 7]);
        body.extend_from_slice(&[1, b'A', b'B']);
        message(terminal, id::REGISTER, serial, None, &body)
    } else {
        message(terminal, id::AUTHENTICATE, serial, None, PHONE.as_bytes())
    };
    let mut serials = Vec::new();
    for frame in frames {
        serial += 1;
        match frame {
            Frame::Location(report) => {
                bytes.extend(message(terminal, id::LOCATION, serial, None, &location_body(report, 0, 480)));
                serials.push(vec![serial]);
            }
            Frame::Batch(reports, blind) => {
                bytes.extend(message(terminal, id::BATCH, serial, None, &batch_body(reports, *blind, 480)));
                serials.push(vec![serial]);
            }
            Frame::Heartbeat => {
                bytes.extend(message(terminal, id::HEARTBEAT, serial, None, &[]));
                serials.push(vec![serial]);
            }
            Frame::Pieces(reports, n) => {
                let body = batch_body(reports, false, 480);
                let size = body.len().div_ceil(usize::from(*n));
                let mut answered = Vec::new();
                for (i, piece) in body.chunks(size).enumerate() {
                    let total = body.chunks(size).count() as u16;
                    bytes.extend(message(terminal, id::BATCH, serial, Some((total, i as u16 + 1)), piece));
                    answered.push(serial);
                    serial += 1;
                }
                serial -= 1;
                serials.push(answered);
            }
        }
    }
    (bytes, serials)
}

fn decode(bytes: &[u8], options: SessionOptions) -> Vec<Event> {
    events_of(Protocol::JT808, bytes, options)
}

/// The (serial, id, result) of a platform general response.
fn general(reply: &[u8]) -> Option<(u16, u16, u8)> {
    let message = unescape(reply).ok()?;
    if u16::from_be_bytes([message[0], message[1]]) != id::GENERAL_RESPONSE {
        return None;
    }
    let body = &message[message.len() - 6..message.len() - 1];
    Some((u16::from_be_bytes([body[0], body[1]]), u16::from_be_bytes([body[2], body[3]]), body[4]))
}

fn reply_of(event: &Event) -> Option<&bytes::Bytes> {
    match event {
        Event::Login { accept, .. } => Some(accept),
        Event::Positions { ack, .. } => Some(ack),
        Event::KeepAlive { reply } | Event::Message { reply, .. } | Event::Refused { reply, .. } => reply.as_ref(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sessions_decode_to_the_values_sent_and_every_message_is_answered(
        version_2019 in any::<bool>(),
        register in any::<bool>(),
        frames in proptest::collection::vec(frame(), 1..6),
    ) {
        let terminal = terminal(version_2019);
        let (bytes, serials) = encode(&terminal, register, &frames);
        let events = decode(&bytes, SessionOptions::default());
        let Some(Event::Login { device, accept, .. }) = events.first() else {
            return Err(TestCaseError::fail(format!("no login: {events:?}")));
        };
        prop_assert_eq!(device.as_str(), PHONE);
        let answered = unescape(accept).map_err(TestCaseError::fail)?;
        let expected_id = if register { id::REGISTER_RESPONSE } else { id::GENERAL_RESPONSE };
        prop_assert_eq!(u16::from_be_bytes([answered[0], answered[1]]), expected_id);
        let mut events = events[1..].iter();
        for (frame, frame_serials) in frames.iter().zip(&serials) {
            // Pieces before the last are answered as they come.
            for serial in &frame_serials[..frame_serials.len() - 1] {
                let event = events.next();
                let reply = event.and_then(reply_of).and_then(|r| general(r));
                prop_assert_eq!(reply, Some((*serial, id::BATCH, 0)), "{:?}", event);
            }
            let event = events.next().ok_or_else(|| TestCaseError::fail("events missing"))?;
            let last = *frame_serials.last().unwrap_or(&0);
            let sent: Vec<Report> = match frame {
                Frame::Location(report) => vec![*report],
                Frame::Batch(reports, _) | Frame::Pieces(reports, _) => reports.clone(),
                Frame::Heartbeat => {
                    prop_assert!(matches!(event, Event::KeepAlive { .. }), "{:?}", event);
                    prop_assert_eq!(reply_of(event).and_then(|r| general(r)), Some((last, id::HEARTBEAT, 0)));
                    continue;
                }
            };
            let Event::Positions { batch, ack, nack } = event else {
                return Err(TestCaseError::fail(format!("{frame:?} gave {event:?}")));
            };
            let message_id = if matches!(frame, Frame::Location(_)) { id::LOCATION } else { id::BATCH };
            prop_assert_eq!(general(ack), Some((last, message_id, 0)));
            prop_assert_eq!(nack.as_ref().and_then(|n| general(n)), Some((last, message_id, 1)));
            prop_assert_eq!(batch.len(), sent.len());
            for (position, report) in batch.iter().zip(&sent) {
                let fix = position.fix;
                prop_assert_eq!(fix.time.map(|t| t.0), Some(report.time_ms));
                let (lat, lon) = fix.coordinates.unwrap_or((f64::NAN, f64::NAN));
                prop_assert!((lat - report.lat).abs() <= 0.6e-6 && (lon - report.lon).abs() <= 0.6e-6);
                prop_assert_eq!(fix.speed, Some(report.speed));
                prop_assert_eq!(fix.course, Some(report.course));
                prop_assert_eq!(fix.altitude, Some(report.altitude));
                prop_assert_eq!(fix.satellites, Some(u16::from(report.satellites)));
                prop_assert_eq!(position.attr(Attr::Ignition), Some(AttrValue::Bool(report.ignition)));
                prop_assert_eq!(position.attr(Attr::Odometer), Some(AttrValue::Int(report.odometer_m as i64)));
            }
            if let Frame::Batch(_, blind) = frame {
                let archive = batch.iter().next().and_then(|p| p.io().iter().find(|e| e.key == fleetgate_codecs::IoKey::Static("archive")).map(|e| e.value));
                prop_assert_eq!(archive, Some(fleetgate_codecs::IoValue::Uint(u64::from(*blind))));
            }
        }
        prop_assert!(events.next().is_none());
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same(
        version_2019 in any::<bool>(),
        frames in proptest::collection::vec(frame(), 1..5),
        chunk in 1usize..64,
    ) {
        let (bytes, _) = encode(&terminal(version_2019), false, &frames);
        let whole = run_stream(Protocol::JT808, &bytes, SessionOptions::default());
        prop_assert!(whole.completed);
        prop_assert_eq!(whole.clone(), run_stream_in_chunks(Protocol::JT808, &bytes, chunk, SessionOptions::default()));
    }

    #[test]
    fn a_corrupted_message_is_refused_and_the_next_still_decodes(
        version_2019 in any::<bool>(),
        first in report(),
        next in report(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let terminal = terminal(version_2019);
        let mut stream = message(&terminal, id::AUTHENTICATE, 1, None, PHONE.as_bytes());
        let mut corrupted = message(&terminal, id::LOCATION, 2, None, &location_body(&first, 0, 480));
        // Any byte between the delimiters; a flip that makes a delimiter or an escape is
        // framing damage, which the stream survives too.
        let at = 1 + position.index(corrupted.len() - 2);
        corrupted[at] ^= flip;
        stream.extend(&corrupted);
        stream.extend(message(&terminal, id::LOCATION, 3, None, &location_body(&next, 0, 480)));
        let events = decode(&stream, SessionOptions::default());
        let positions: Vec<_> = events.iter().filter_map(|e| match e {
            Event::Positions { batch, ack, .. } => Some((batch, ack)),
            _ => None,
        }).collect();
        prop_assert!(events.iter().any(|e| matches!(e, Event::Refused { .. })), "{:?}", events);
        for event in &events {
            if let Event::Refused { reply: Some(reply), .. } = event {
                let answer = general(reply);
                prop_assert!(answer.is_none_or(|(_, _, result)| result != 0), "{:?}", answer);
            }
        }
        // The intact message after it decodes, answered by its serial.
        let last = positions.last().ok_or_else(|| TestCaseError::fail(format!("{events:?}")))?;
        prop_assert_eq!(general(last.1).map(|(s, _, r)| (s, r)), Some((3, 0)));
        prop_assert_eq!(last.0.get(0).fix.time.map(|t| t.0), Some(next.time_ms));
    }

    #[test]
    fn random_bytes_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..600), framed in any::<bool>()) {
        let mut input = if framed { vec![0x7E, 0x02, 0x00] } else { Vec::new() };
        input.extend(&bytes);
        check_any_bytes(Protocol::JT808, &input).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn commands_go_as_text_or_as_given_and_their_answers_are_matched() {
    let terminal = terminal(false);
    let mut session = Protocol::JT808.session(SessionOptions::default());
    // No command before the terminal is known.
    assert!(session.command(b"STATUS#").is_none());
    let mut buffer = BytesMut::from(&message(&terminal, id::AUTHENTICATE, 1, None, b"code")[..]);
    while let Ok(Some(_)) = session.decode(&mut buffer) {}
    let (text, answered) = session.command(b"STATUS#").unwrap_or_default();
    assert!(answered);
    let text = unescape(&text).unwrap_or_default();
    assert_eq!(u16::from_be_bytes([text[0], text[1]]), id::TEXT);
    assert_eq!(&text[12..text.len() - 1], b"\x01STATUS#");
    let text_serial = u16::from_be_bytes([text[10], text[11]]);
    let (control, _) = session.command(&[0x81, 0x05, 0xF0]).unwrap_or_default();
    let control = unescape(&control).unwrap_or_default();
    assert_eq!(u16::from_be_bytes([control[0], control[1]]), id::CONTROL);
    assert_eq!(&control[12..control.len() - 1], [0xF0]);
    let control_serial = u16::from_be_bytes([control[10], control[11]]);
    // The terminal answers the control command first, then something no command asked.
    let answers = [
        message(&terminal, id::TERMINAL_RESPONSE, 2, None, &general_response_body(control_serial, id::CONTROL, 0)),
        message(&terminal, id::TERMINAL_RESPONSE, 3, None, &general_response_body(999, id::TEXT, 0)),
        message(&terminal, id::TERMINAL_RESPONSE, 4, None, &general_response_body(text_serial, id::TEXT, 0)),
    ];
    let mut matched = Vec::new();
    for answer in answers {
        let mut buffer = BytesMut::from(&answer[..]);
        while let Ok(Some(event)) = session.decode(&mut buffer) {
            if let Event::Message { message, reply } = event {
                assert!(reply.is_none(), "an answer is not answered");
                matched.push(message.answers_command);
            }
        }
    }
    assert_eq!(matched, [true, false, true]);
}

#[test]
fn a_subpackage_beyond_the_limits_is_refused() {
    let terminal = terminal(false);
    let mut stream = message(&terminal, id::AUTHENTICATE, 1, None, b"code");
    stream.extend(message(&terminal, id::BATCH, 2, Some((1000, 1)), &[0; 16]));
    stream.extend(message(&terminal, id::BATCH, 3, Some((2, 3)), &[0; 16]));
    let events = decode(&stream, SessionOptions::default());
    let refused: Vec<_> = events.iter().filter(|e| matches!(e, Event::Refused { .. })).collect();
    assert_eq!(refused.len(), 2, "{events:?}");
    for event in refused {
        let answer = reply_of(event).and_then(|r| general(r));
        assert!(matches!(answer, Some((_, id::BATCH, 2))), "{answer:?}");
    }
}

#[test]
fn a_corrupted_message_whose_check_code_is_escaped_is_still_answered() {
    use fleetgate_codecs::device::DeviceSide;
    let mut device = fleetgate_codecs::jt808::encode::Device::default();
    let login = device.login(PHONE);
    // Reports until one's message has a check code that goes escaped (7D or 7E).
    for seed in 0..10_000u64 {
        let report = fleetgate_codecs::conformance::report_of(seed);
        let mut frames = device.data(&[report]);
        let escaped = frames.len() >= 3 && frames[frames.len() - 3] == 0x7D;
        if !escaped {
            continue;
        }
        device.corrupt(&mut frames);
        let mut stream = login.clone();
        stream.extend(&frames);
        let events = decode(&stream, SessionOptions::default());
        let refused = events.iter().find_map(|e| match e {
            Event::Refused { reply, .. } => Some(reply.clone()),
            _ => None,
        });
        let answer = refused.flatten().and_then(|r| general(&r));
        assert!(matches!(answer, Some((_, id::LOCATION, 2))), "{events:?}");
        return;
    }
    panic!("no report gave an escaped check code");
}
