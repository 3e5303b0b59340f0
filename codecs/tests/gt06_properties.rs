//! Property tests of the GT06 codec against the device-side encoder: random sessions
//! (a login with a time zone, locations in both frame forms, heartbeats) decode to the
//! exact values sent and are answered frame by frame with the serial echoed; any split of
//! the stream decodes the same; a corrupted frame is refused without an answer while the
//! frames around it still decode; random bytes never panic or loop.

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::attrs::Attr;
use fleetgate_codecs::conformance::{check_any_bytes, events_of};
use fleetgate_codecs::device::Report;
use fleetgate_codecs::gt06::encode::{gps_block, heartbeat, location, login};
use fleetgate_codecs::gt06::{crc_x25, response};
use fleetgate_codecs::transcript::{run_stream, run_stream_in_chunks};
use fleetgate_codecs::{AttrValue, Event, Protocol, SessionOptions};
use proptest::prelude::*;

const IMEI: &str = "356307042441013";

#[derive(Debug, Clone)]
enum Frame {
    Location { report: Report, extended: bool },
    Heartbeat { ignition: bool, level: u8, gsm: u8 },
}

fn report() -> impl Strategy<Value = Report> {
    (
        // Whole seconds of 2000-2099: the years GT06 can write.
        946_684_800i64..4_102_444_799,
        -89.0f64..89.0,
        -179.0f64..179.0,
        0u8..=255,
        0u16..360,
        0u8..=15,
        any::<bool>(),
        0u32..=u32::MAX,
    )
        .prop_map(|(seconds, lat, lon, speed, course, satellites, ignition, odometer)| Report {
            time_ms: seconds * 1000,
            lat,
            lon,
            speed: f64::from(speed),
            course: f64::from(course),
            altitude: 0.0,
            satellites,
            ignition,
            fuel_percent: 0.0,
            odometer_m: f64::from(odometer),
            power_v: 0.0,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (report(), any::<bool>()).prop_map(|(report, extended)| Frame::Location { report, extended }),
        (any::<bool>(), 0u8..=6, 0u8..=4).prop_map(|(ignition, level, gsm)| Frame::Heartbeat { ignition, level, gsm }),
    ]
}

/// A time zone as a GT06 login carries it: whole quarter hours within UTC-12..UTC+14.
fn offset() -> impl Strategy<Value = i32> {
    (-48i32..=56).prop_map(|quarters| quarters * 15)
}

fn encode(frame: &Frame, offset_minutes: i32, serial: u16) -> Vec<u8> {
    match frame {
        Frame::Location { report, extended } => {
            // The device writes its local time.
            let mut bytes = location(report, serial, *extended);
            let header = if *extended { 5 } else { 4 };
            bytes[header..header + 18].copy_from_slice(&gps_block(report, offset_minutes));
            let end = bytes.len() - 4;
            let crc = crc_x25(&bytes[2..end]);
            bytes[end..end + 2].copy_from_slice(&crc.to_be_bytes());
            bytes
        }
        Frame::Heartbeat { ignition, level, gsm } => heartbeat(*ignition, *level, *gsm, serial),
    }
}

fn session_bytes(offset_minutes: i32, frames: &[Frame]) -> Vec<u8> {
    let mut stream = login(IMEI, offset_minutes, 1);
    for (i, frame) in frames.iter().enumerate() {
        stream.extend(encode(frame, offset_minutes, 2 + i as u16));
    }
    stream
}

fn decode(bytes: &[u8]) -> Vec<Event> {
    events_of(Protocol::GT06, bytes, SessionOptions::default())
}

fn attr(batch: &fleetgate_codecs::Batch, attr: Attr) -> Option<AttrValue> {
    batch.iter().next().and_then(|p| p.attr(attr))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sessions_decode_to_the_values_sent_and_every_frame_is_answered(
        offset_minutes in offset(),
        frames in proptest::collection::vec(frame(), 1..8),
    ) {
        let events = decode(&session_bytes(offset_minutes, &frames));
        prop_assert_eq!(events.len(), frames.len() + 1, "{:?}", events);
        let Event::Login { device, accept, .. } = &events[0] else {
            return Err(TestCaseError::fail(format!("no login: {events:?}")));
        };
        prop_assert_eq!(device.as_str(), IMEI);
        prop_assert_eq!(accept, &response(0x01, 1));
        for (i, (frame, event)) in frames.iter().zip(&events[1..]).enumerate() {
            let serial = 2 + i as u16;
            let Event::Positions { batch, ack, .. } = event else {
                return Err(TestCaseError::fail(format!("frame {i} gave {event:?}")));
            };
            prop_assert_eq!(batch.len(), 1);
            let fix = *batch.get(0).fix;
            match frame {
                Frame::Location { report, .. } => {
                    prop_assert_eq!(ack, &response(0x22, serial));
                    prop_assert_eq!(fix.time.map(|t| t.0), Some(report.time_ms));
                    let (lat, lon) = fix.coordinates.unwrap_or((f64::NAN, f64::NAN));
                    let step = 1.0 / 1_800_000.0;
                    prop_assert!((lat - report.lat).abs() <= step && (lon - report.lon).abs() <= step,
                        "sent {:?}, decoded {:?}", (report.lat, report.lon), (lat, lon));
                    prop_assert_eq!(fix.speed, Some(report.speed));
                    prop_assert_eq!(fix.course, Some(report.course));
                    prop_assert_eq!(fix.satellites, Some(u16::from(report.satellites)));
                    prop_assert!(fix.valid);
                    prop_assert_eq!(attr(batch, Attr::Ignition), Some(AttrValue::Bool(report.ignition)));
                    prop_assert_eq!(attr(batch, Attr::Odometer), Some(AttrValue::Int(report.odometer_m as i64)));
                }
                Frame::Heartbeat { ignition, level, gsm } => {
                    prop_assert_eq!(ack, &response(0x13, serial));
                    prop_assert_eq!(fix.time, None);
                    prop_assert_eq!(fix.coordinates, None);
                    prop_assert_eq!(attr(batch, Attr::Ignition), Some(AttrValue::Bool(*ignition)));
                    prop_assert_eq!(attr(batch, Attr::BatteryLevel), Some(AttrValue::Int(i64::from(*level) * 100 / 6)));
                    prop_assert_eq!(attr(batch, Attr::GsmSignal), Some(AttrValue::Int((i64::from(*gsm) * 5 + 2) / 4)));
                }
            }
        }
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same(
        offset_minutes in offset(),
        frames in proptest::collection::vec(frame(), 1..6),
        chunk in 1usize..64,
    ) {
        let stream = session_bytes(offset_minutes, &frames);
        let whole = run_stream(Protocol::GT06, &stream, SessionOptions::default());
        let split = run_stream_in_chunks(Protocol::GT06, &stream, chunk, SessionOptions::default());
        prop_assert!(whole.completed);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn a_corrupted_frame_is_refused_unanswered_and_the_next_still_decodes(
        first in frame(),
        next in report(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut corrupted = encode(&first, 0, 2);
        // Any byte from the protocol number through the CRC; start, length and stop
        // bytes are framing.
        let header = if corrupted[0] == 0x79 { 4 } else { 3 };
        let at = header + position.index(corrupted.len() - header - 2);
        corrupted[at] ^= flip;
        let mut stream = login(IMEI, 0, 1);
        stream.extend(&corrupted);
        stream.extend(location(&next, 3, false));
        let events = decode(&stream);
        let refused: Vec<_> = events.iter().filter(|e| matches!(e, Event::Refused { .. })).collect();
        prop_assert_eq!(refused.len(), 1, "{:?}", events);
        let unanswered = matches!(refused[0], Event::Refused { reply: None, .. });
        prop_assert!(unanswered, "{:?}", refused[0]);
        let positions: Vec<_> = events.iter().filter_map(|e| match e {
            Event::Positions { batch, ack, .. } => Some((batch, ack)),
            _ => None,
        }).collect();
        prop_assert_eq!(positions.len(), 1, "{:?}", events);
        prop_assert_eq!(positions[0].1, &response(0x22, 3));
        prop_assert_eq!(positions[0].0.get(0).fix.time.map(|t| t.0), Some(next.time_ms));
    }

    #[test]
    fn random_bytes_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..600), framed in any::<bool>()) {
        // Half the cases start like a frame, so the fuzz reaches past the start bytes.
        let mut input = if framed { vec![0x78, 0x78] } else { Vec::new() };
        input.extend(&bytes);
        check_any_bytes(Protocol::GT06, &input).map_err(TestCaseError::fail)?;
        let mut session = Protocol::GT06.session(SessionOptions::default());
        prop_assert!(session.decode_datagram(Bytes::from(input)).is_err(), "GT06 has no datagrams");
    }
}

#[test]
fn a_registered_offset_overrides_the_logins() {
    let sent = Report {
        time_ms: 1_700_000_000_000,
        lat: 54.0,
        lon: 25.0,
        speed: 10.0,
        course: 90.0,
        altitude: 0.0,
        satellites: 7,
        ignition: true,
        fuel_percent: 0.0,
        odometer_m: 0.0,
        power_v: 0.0,
    };
    // The device says UTC+02:00 at login but its clock runs at UTC+03:00, as registered.
    let mut stream = login(IMEI, 120, 1);
    stream.extend(encode(&Frame::Location { report: sent, extended: false }, 180, 2));
    let mut options = SessionOptions::default();
    options.device.utc_offset_minutes = Some(180);
    let mut session = Protocol::GT06.session(options);
    let mut buffer = BytesMut::from(&stream[..]);
    let mut times = Vec::new();
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        if let Event::Positions { batch, .. } = event {
            times.extend(batch.iter().map(|p| p.fix.time));
        }
    }
    assert_eq!(times, vec![Some(fleetgate_codecs::UtcMillis(sent.time_ms))]);
}

#[test]
fn commands_are_0x80_frames_and_their_answers_are_messages() {
    let session = Protocol::GT06.session(SessionOptions::default());
    let (frame, answered) = session.command(b"Relay,1#").unwrap_or_default();
    assert!(answered);
    // Traccar's encoder test frame for engineStop.
    assert_eq!(fleetgate_codecs::hex::HexDisplay(&frame).to_string(), "787812800c0000000052656c61792c312300009dee0d0a");
    let too_long = vec![b'a'; 251];
    assert!(session.command(&too_long).is_none());
}
