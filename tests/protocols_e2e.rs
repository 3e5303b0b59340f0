//! Each tracker protocol through `fleetgate serve` as a fleet uses it: a registered device
//! logs in over TCP with the protocol's own device side, drives a ten-minute trip between
//! two stops, then raises an SOS alarm in the protocol's own alarm frame. Every report is
//! acknowledged; history holds each once, the live position is the newest, the ignition,
//! motion and SOS events are derived and the trips report finds the trip: the same as
//! for Teltonika, whatever the protocol. Protocols without an ignition or SOS of their own
//! (Galileosky, Navtelecom: whatever input the installer wired) check the input the device
//! side sets and the motion events.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{System, wait_for};
use fleetgate_codecs::Protocol;
use fleetgate_codecs::device::{Answer, DeviceSide, Report};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 2026-11-20T08:00:00Z.
const START_MS: i64 = 1_795_161_600_000;

/// Minute `minute` of the day: parked until 5, driving north at 60 km/h until 15, then
/// parked again.
fn report(minute: i64) -> Report {
    let driving = (5..=15).contains(&minute);
    let driven_minutes = (minute.clamp(5, 15) - 5) as f64;
    Report {
        time_ms: START_MS + minute * 60_000,
        lat: 54.0 + driven_minutes * 0.009,
        lon: 25.0,
        speed: if driving { 60.0 } else { 0.0 },
        course: 0.0,
        altitude: 100.0,
        satellites: 9,
        ignition: driving,
        fuel_percent: 50.0,
        odometer_m: 100_000.0 + driven_minutes * 1000.0,
        power_v: 12.6,
    }
}

/// Reads answers until `until` says the awaited one came.
async fn read_until(
    stream: &mut TcpStream,
    side: &mut dyn DeviceSide,
    buffer: &mut BytesMut,
    mut until: impl FnMut(Answer) -> bool,
) {
    loop {
        while let Some(answer) = side.read_answer(buffer).expect("a well-formed answer") {
            if until(answer) {
                return;
            }
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("an answer within 20 s")
            .expect("read");
        assert!(n > 0, "the gateway closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// How a protocol says what the test checks beyond positions.
struct Vocabulary {
    /// Builds the protocol's SOS frame for a report, when it has one.
    alarm: Option<fn(&Report) -> Vec<u8>>,
    /// The attribute carrying the report's ignition (`ignition`, or the input it is
    /// wired to).
    ignition: &'static str,
}

/// A protocol with its own ignition and SOS frame.
fn with_alarm(alarm: fn(&Report) -> Vec<u8>) -> Vocabulary {
    Vocabulary { alarm: Some(alarm), ignition: "ignition" }
}

/// Drives one device of `protocol` through a trip and an alarm, then checks what the
/// platform made of it.
async fn a_device_drives_a_trip_and_raises_an_alarm(protocol: &str, identifier: &str, vocabulary: Vocabulary) {
    let system = System::start(&format!("proto_{protocol}")).await;
    let id = system.register(identifier, protocol);
    let mut stream = TcpStream::connect(("127.0.0.1", system.port(protocol))).await.expect("connect");
    let mut side = Protocol::from_name(protocol).expect("a built-in protocol").device();
    let mut buffer = BytesMut::new();
    let login = side.login(identifier);
    stream.write_all(&login).await.expect("login");
    read_until(&mut stream, side.as_mut(), &mut buffer, |a| {
        assert_ne!(a, Answer::LoginRefused, "registered, so accepted");
        a == Answer::LoginAccepted
    })
    .await;
    let minutes = 0..30;
    for minute in minutes.clone() {
        stream.write_all(&side.data(&[report(minute)])).await.expect("send");
        read_until(&mut stream, side.as_mut(), &mut buffer, |a| a == Answer::Accepted(1)).await;
    }
    let mut sos = report(30);
    sos.ignition = false;
    if let Some(alarm) = vocabulary.alarm {
        stream.write_all(&alarm(&sos)).await.expect("alarm");
        // Any answer: the alarm frame's own.
        read_until(&mut stream, side.as_mut(), &mut buffer, |_| true).await;
    }
    let stored = 30 + usize::from(vocabulary.alarm.is_some());

    let from = "2026-11-20T00:00:00Z";
    let to = "2026-11-21T00:00:00Z";
    let positions = wait_for(Duration::from_secs(30), "every position stored", || {
        let (_, body) = system.get(&format!("/v1/devices/{id}/positions?from={from}&to={to}&limit=1000"), &system.key);
        let positions: Value = serde_json::from_str(&body).unwrap_or_default();
        let list = positions["positions"].as_array().cloned().unwrap_or_default();
        (list.len() == stored).then_some(list)
    })
    .await;
    for (minute, position) in positions.iter().enumerate().take(30) {
        let sent = report(minute as i64);
        assert_eq!(position["protocol"], protocol);
        assert_eq!(position["device"], identifier);
        assert_eq!(position["time"], fleetgate_codecs::UtcMillis(sent.time_ms).to_string());
        let lat = position["lat"].as_f64().unwrap_or_default();
        assert!((lat - sent.lat).abs() < 1e-5, "minute {minute}: {position}");
        assert_eq!(position["attrs"][vocabulary.ignition], sent.ignition, "minute {minute}: {position}");
    }
    let (status, live) = system.get(&format!("/v1/devices/{id}/live"), &system.key);
    let live: Value = serde_json::from_str(&live).unwrap_or_default();
    let newest = if vocabulary.alarm.is_some() { "2026-11-20T08:30:00Z" } else { "2026-11-20T08:29:00Z" };
    assert_eq!((status, &live["time"]), (200, &Value::from(newest)));

    let events = wait_for(Duration::from_secs(30), "the events derived", || {
        let (_, body) = system.get(&format!("/v1/events?device={id}&from={from}&to={to}"), &system.key);
        let events: Value = serde_json::from_str(&body).unwrap_or_default();
        let list = events["events"].as_array().cloned().unwrap_or_default();
        let last = if vocabulary.alarm.is_some() { "sos" } else { "moving_stop" };
        list.iter().any(|e| e["kind"] == last).then_some(list)
    })
    .await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let expected: &[&str] = match vocabulary.alarm {
        Some(_) => &["ignition_on", "moving_start", "ignition_off", "moving_stop", "sos"],
        None => &["moving_start", "moving_stop"],
    };
    for kind in expected {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    if vocabulary.alarm.is_some() {
        let sos = events.iter().find(|e| e["kind"] == "sos").expect("sos event");
        assert_eq!(sos["time"], "2026-11-20T08:30:00Z");
    }

    let (status, trips) = system.get(&format!("/v1/reports/trips?device={id}&from={from}&to={to}"), &system.key);
    let trips: Value = serde_json::from_str(&trips).unwrap_or_default();
    let trips = trips["trips"].as_array().cloned().unwrap_or_default();
    assert_eq!((status, trips.len()), (200, 1), "{trips:?}");
    let distance = trips[0]["distance_m"].as_f64().unwrap_or_default();
    assert!((9_000.0..11_000.0).contains(&distance), "a 10 km trip: {:?}", trips[0]);
}

#[tokio::test]
async fn gt06() {
    a_device_drives_a_trip_and_raises_an_alarm(
        "gt06",
        "356307042441013",
        with_alarm(|report| fleetgate_codecs::gt06::encode::alarm(report, 0x01, 900)),
    )
    .await;
}

#[tokio::test]
async fn jt808() {
    a_device_drives_a_trip_and_raises_an_alarm(
        "jt808",
        "13912345678",
        with_alarm(|report| {
            use fleetgate_codecs::jt808::encode::{location_body, message, phone};
            let terminal = fleetgate_codecs::jt808::Terminal { phone: phone("13912345678", false), version: None };
            // Alarm bit 0: SOS.
            message(&terminal, 0x0200, 900, None, &location_body(report, 1, 8 * 60))
        }),
    )
    .await;
}

#[tokio::test]
async fn galileo() {
    // The device side wires ignition to input 1.
    a_device_drives_a_trip_and_raises_an_alarm(
        "galileo",
        "868204001549087",
        Vocabulary { alarm: None, ignition: "din1" },
    )
    .await;
}

#[tokio::test]
async fn navtelecom() {
    // FLEX records; the device side wires ignition to input 1.
    a_device_drives_a_trip_and_raises_an_alarm(
        "navtelecom",
        "866795031410689",
        Vocabulary { alarm: None, ignition: "din1" },
    )
    .await;
}
