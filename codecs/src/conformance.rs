//! The conformance kit: the checks every protocol of the registry passes, run the same
//! way for each (the fixture test runs them for the built-in protocols; a protocol
//! defined elsewhere calls them from its own tests).
//!
//! - [`check_fixtures`]: every capture under `fixtures/<protocol>/` decodes to its
//!   `.expect` transcript (rewritten with `UPDATE_EXPECT=1` after a reviewed change) and
//!   to what its `.facts.json` documents (device, exact replies, positions and their
//!   values, messages, `refused: true` for a capture a strict gateway refuses, which then
//!   gets an error and no acknowledgement); fed one byte at a time it decodes the same,
//!   and cut at any offset it decodes to a prefix of the whole.
//! - [`check_device_side`]: what the protocol's device side sends decodes to exactly
//!   the reports sent, with the acknowledgement the device side reads as all of them,
//!   however the stream is split; a corrupted frame is refused and acknowledged nowhere.
//!
//! Each returns its failures as sentences, so a test shows them all at once.

use std::path::Path;

use bytes::BytesMut;
use serde_json::Value;

use crate::device::{Answer, DeviceSide, Report};
use crate::protocol::{Event, SessionOptions};
use crate::registry::Protocol;
use crate::transcript::{STREAM_ENDED, Transcript, feed, run_datagrams, run_stream, run_stream_in_chunks};

/// The options of `fleetgate decode`, so an `.expect` file is exactly its output.
pub fn decode_options() -> SessionOptions {
    SessionOptions { allow_anonymous: true, ..SessionOptions::default() }
}

/// A capture: one TCP stream or a list of datagrams.
#[derive(Debug, Clone)]
pub enum Capture {
    /// Bytes of one connection, in order.
    Stream(Vec<u8>),
    /// One datagram each.
    Datagrams(Vec<Vec<u8>>),
}

impl Capture {
    /// The transcript `fleetgate decode` prints for it.
    pub fn transcript(&self, protocol: Protocol) -> Transcript {
        self.transcript_with(protocol, decode_options())
    }

    /// The transcript with these options (a fixture's device settings).
    pub fn transcript_with(&self, protocol: Protocol, options: SessionOptions) -> Transcript {
        match self {
            Capture::Stream(bytes) => run_stream(protocol, bytes, options),
            Capture::Datagrams(datagrams) => run_datagrams(protocol, datagrams, options),
        }
    }
}

/// The options a fixture decodes with: `fleetgate decode`'s, plus the device settings
/// its facts name (`"settings": {"model": "VL103", "utc_offset": "+03:00"}`), as
/// `--model` and `--utc-offset` would set them.
pub fn fixture_options(facts: &Value) -> SessionOptions {
    let mut options = decode_options();
    let settings = &facts["settings"];
    options.device.model = settings["model"].as_str().map(Into::into);
    options.device.utc_offset_minutes = settings["utc_offset"].as_str().and_then(crate::protocol::parse_utc_offset);
    options
}

/// One fixture file: its name (without extensions) and capture.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The file name without its extensions.
    pub name: String,
    /// The capture.
    pub capture: Capture,
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    crate::hex::decode(text.as_bytes()).map_err(|e| e.to_string())
}

/// Reads the captures of a fixture folder: `NAME.hex` (a TCP stream in hex), `NAME.txt`
/// and `NAME.bin` (a TCP stream as is), `NAME.udp.hex` and `NAME.udp.txt` (one datagram
/// per line).
pub fn load_fixtures(dir: &Path) -> Result<Vec<Fixture>, String> {
    let mut fixtures = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let read = || std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()));
        let text = || read().map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let lines = |text: String| -> Vec<String> {
            text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
        };
        let (name, capture) = if let Some(name) = file.strip_suffix(".udp.hex") {
            let datagrams = lines(text()?).iter().map(|l| parse_hex(l)).collect::<Result<_, _>>()?;
            (name, Capture::Datagrams(datagrams))
        } else if let Some(name) = file.strip_suffix(".hex") {
            (name, Capture::Stream(parse_hex(&text()?)?))
        } else if let Some(name) = file.strip_suffix(".udp.txt") {
            (name, Capture::Datagrams(lines(text()?).into_iter().map(String::into_bytes).collect()))
        } else if let Some(name) = file.strip_suffix(".txt").or_else(|| file.strip_suffix(".bin")) {
            (name, Capture::Stream(read()?))
        } else {
            continue;
        };
        fixtures.push(Fixture { name: name.to_owned(), capture });
    }
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    if fixtures.is_empty() {
        return Err(format!("no fixtures in {}", dir.display()));
    }
    Ok(fixtures)
}

/// Checks every fixture of `dir` for `protocol`; with `update`, rewrites the `.expect`
/// files instead of comparing them. Returns the failures.
pub fn check_fixtures(protocol: Protocol, dir: &Path, update: bool) -> Vec<String> {
    let fixtures = match load_fixtures(dir) {
        Ok(fixtures) => fixtures,
        Err(error) => return vec![error],
    };
    let mut failures = Vec::new();
    for fixture in fixtures {
        let facts_path = dir.join(format!("{}.facts.json", fixture.name));
        let facts = match std::fs::read_to_string(&facts_path) {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(facts) => Some(facts),
                Err(error) => {
                    failures.push(format!("{}: {error}", facts_path.display()));
                    None
                }
            },
            Err(_) => None,
        };
        let options = fixture_options(facts.as_ref().unwrap_or(&Value::Null));
        let transcript = fixture.capture.transcript_with(protocol, options.clone());
        let rendered = transcript.lines.join("\n") + "\n";
        let expect_path = dir.join(format!("{}.expect", fixture.name));
        if update {
            if let Err(error) = std::fs::write(&expect_path, &rendered) {
                failures.push(format!("{}: {error}", expect_path.display()));
            }
        } else {
            match std::fs::read_to_string(&expect_path) {
                Ok(expected) if expected == rendered => {}
                Ok(expected) => failures.push(format!(
                    "{}: decode differs from {} (UPDATE_EXPECT=1 to accept)\n--- expected\n{expected}--- actual\n{rendered}",
                    fixture.name,
                    expect_path.display()
                )),
                Err(_) => {
                    failures.push(format!("{}: no {} (run with UPDATE_EXPECT=1)", fixture.name, expect_path.display()))
                }
            }
        }
        if let Some(facts) = &facts {
            failures.extend(check_facts(protocol, &fixture.name, &transcript, facts));
        }
        if let Capture::Stream(bytes) = &fixture.capture {
            failures.extend(check_splits(protocol, &fixture.name, bytes, &transcript, &options));
        }
    }
    failures
}

fn events(transcript: &Transcript) -> Vec<Value> {
    transcript.lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn same_number(actual: &Value, expected: &Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => actual == expected,
    }
}

/// Documents round coordinates to five decimals; the codecs keep full precision.
fn same_coordinate(actual: &Value, expected: &Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.51e-5,
        _ => actual == expected,
    }
}

/// The bytes of a transcript's reply line.
fn reply_bytes(reply: &Value) -> Vec<u8> {
    reply["hex"].as_str().and_then(|hex| crate::hex::decode(hex.as_bytes()).ok()).unwrap_or_default()
}

/// Checks what the source of a capture documents about it.
fn check_facts(protocol: Protocol, name: &str, transcript: &Transcript, facts: &Value) -> Vec<String> {
    let events = events(transcript);
    let mut failures = Vec::new();
    let mut fail = |message: String| failures.push(format!("{name}: {message}"));
    // Text protocols are compared by their reply text, binary ones by hex.
    let reply_lines = of_kind(&events, "reply");
    let replies: Vec<&str> = reply_lines.iter().filter_map(|r| r["text"].as_str().or(r["hex"].as_str())).collect();
    let positions = of_kind(&events, "position");
    let errors = of_kind(&events, "error");

    if let Some(device) = facts["device"].as_str() {
        let logins = of_kind(&events, "login");
        if logins.first().map(|l| &l["device"]) != Some(&Value::from(device)) {
            fail(format!("expected login of {device}, got {logins:?}"));
        }
    }
    if let Some(expected) = facts["replies"].as_array() {
        let expected: Vec<&str> = expected.iter().filter_map(Value::as_str).collect();
        if expected != replies {
            fail(format!("replies {replies:?}, documented {expected:?}"));
        }
    }
    if let Some(n) = facts["positions"].as_u64() {
        if positions.len() as u64 != n {
            fail(format!("{} positions, documented {n}", positions.len()));
        }
        if !errors.is_empty() {
            fail(format!("sound capture refused: {errors:?}"));
        }
    }
    if let Some(n) = facts["min_positions"].as_u64() {
        if (positions.len() as u64) < n {
            fail(format!("{} positions, documented at least {n}", positions.len()));
        }
        if !errors.is_empty() {
            fail(format!("sound capture refused: {errors:?}"));
        }
    }
    if facts["no_positions"] == Value::Bool(true) && !positions.is_empty() {
        fail(format!("documented to hold no position, decoded {}", positions.len()));
    }
    if facts["refused"] == Value::Bool(true) {
        if errors.is_empty() {
            fail("capture with a wrong checksum or length was not refused".into());
        }
        if !positions.is_empty() {
            fail("a refused capture produced positions".into());
        }
        let side = protocol.device();
        if let Some(positive) = reply_lines.iter().find(|r| side.acknowledges(&reply_bytes(r))) {
            fail(format!("refused capture got the positive reply {positive}"));
        }
    }
    for (i, record) in facts["records"].as_array().into_iter().flatten().enumerate() {
        let Some(position) = positions.get(i) else {
            fail(format!("record {i} missing"));
            continue;
        };
        for field in ["time", "lat", "lon", "altitude", "course", "satellites", "speed", "valid"] {
            let same = if matches!(field, "lat" | "lon") { same_coordinate } else { same_number };
            if !record[field].is_null() && !same(&position[field], &record[field]) {
                fail(format!("record {i} {field} = {}, documented {}", position[field], record[field]));
            }
        }
        for group in ["io", "attrs"] {
            for (key, value) in record[group].as_object().into_iter().flatten() {
                if !same_number(&position[group][key], value) {
                    fail(format!("record {i} {group} {key} = {}, documented {value}", position[group][key]));
                }
            }
        }
    }
    if let Some(expected) = facts["messages"].as_array() {
        let messages = of_kind(&events, "message");
        if messages.len() != expected.len() {
            fail(format!("{} messages, documented {}", messages.len(), expected.len()));
        }
        for (message, documented) in messages.iter().zip(expected) {
            for field in ["text", "device", "kind"] {
                if !documented[field].is_null() && message[field] != documented[field] {
                    fail(format!("message {field} = {}, documented {}", message[field], documented[field]));
                }
            }
            // A value the message holds, as text (runs of spaces compared as one: some
            // sources normalise them) or (hex digits) as bytes.
            if let Some(value) = documented["contains"].as_str() {
                let squeeze = |t: &str| t.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
                let text = squeeze(message["text"].as_str().unwrap_or_default());
                let value = &squeeze(value);
                let hex = message["hex"].as_str().unwrap_or_default();
                let as_hex = crate::hex::HexDisplay(value.as_bytes()).to_string();
                if !text.contains(value) && !hex.contains(&value.to_ascii_lowercase()) && !hex.contains(&as_hex) {
                    fail(format!("message {message} does not hold the documented {value:?}"));
                }
            }
        }
    }
    failures
}

/// Fed one byte at a time the transcript is the same; cut at any offset, the transcript
/// is a prefix of the full one (plus a "stream ended" error): always "need more", never
/// a wrong frame, never a panic.
fn check_splits(
    protocol: Protocol,
    name: &str,
    bytes: &[u8],
    full: &Transcript,
    options: &SessionOptions,
) -> Vec<String> {
    let mut failures = Vec::new();
    let one_by_one = run_stream_in_chunks(protocol, bytes, 1, options.clone());
    if &one_by_one != full {
        failures
            .push(format!("{name}: byte-at-a-time decode differs:\n{:#?}\nvs\n{:#?}", one_by_one.lines, full.lines));
    }
    for cut in 0..bytes.len() {
        let partial = run_stream(protocol, &bytes[..cut], options.clone());
        let mut lines = partial.lines.as_slice();
        if lines.last().is_some_and(|last| last.contains(STREAM_ENDED)) {
            lines = &lines[..lines.len() - 1];
        }
        if !full.lines.starts_with(lines) {
            failures.push(format!("{name}: cut at {cut} gives {lines:#?}, not a prefix of the full decode"));
            break;
        }
    }
    failures
}

/// A report `seed` makes, plausible for any protocol: a time in whole seconds of
/// 2024-2026, a position, speed and sensors with the precision devices send.
pub fn report_of(seed: u64) -> Report {
    let mut random = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |range: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % range
    };
    Report {
        time_ms: (1_704_067_200 + next(3 * 365 * 86_400) as i64) * 1000,
        lat: (next(1_600_000) as f64 - 800_000.0) / 10_000.0,
        lon: (next(3_500_000) as f64 - 1_750_000.0) / 10_000.0,
        speed: next(180) as f64,
        course: next(360) as f64,
        altitude: next(2000) as f64,
        satellites: 4 + next(12) as u8,
        ignition: next(2) == 1,
        fuel_percent: next(101) as f64,
        odometer_m: next(2_000_000_000) as f64,
        power_v: (next(300) as f64 + 100.0) / 10.0,
    }
}

/// The events a fresh session with `options` decodes from `bytes` given whole, up to the
/// first fatal error or the bytes it waits to complete: what a property test inspects.
pub fn events_of(protocol: Protocol, bytes: &[u8], options: SessionOptions) -> Vec<Event> {
    let mut session = protocol.session(options);
    let mut buffer = bytes::BytesMut::from(bytes);
    let mut events = Vec::new();
    while let Ok(Some(event)) = session.decode(&mut buffer) {
        events.push(event);
    }
    events
}

/// Any bytes, as a stream (with and without the decode command's anonymous mode) and as
/// a datagram: no panic, no loop (every event consumes bytes, so `bytes.len()` events
/// and a few queued ones are the most there can be), nothing consumed beyond the input.
pub fn check_any_bytes(protocol: Protocol, bytes: &[u8]) -> Result<(), String> {
    for allow_anonymous in [false, true] {
        let mut session = protocol.session(SessionOptions { allow_anonymous, ..SessionOptions::default() });
        let mut buffer = bytes::BytesMut::from(bytes);
        let mut ended = false;
        for _ in 0..=bytes.len() + 8 {
            match session.decode(&mut buffer) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            return Err(format!("{} bytes gave more than {} events", bytes.len(), bytes.len() + 8));
        }
        if session.offset() > bytes.len() as u64 {
            return Err(format!("offset {} past the input's {} bytes", session.offset(), bytes.len()));
        }
        let _ = session.decode_datagram(bytes::Bytes::copy_from_slice(bytes));
    }
    Ok(())
}

/// What a device side's session sees: the events of `bytes` fed in `chunk`-byte pieces.
fn decode_all(protocol: Protocol, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, String> {
    let mut session = protocol.session(SessionOptions::default());
    let mut events = Vec::new();
    match feed(session.as_mut(), bytes, chunk, |event| events.push(event)) {
        Ok(0) => Ok(events),
        Ok(left) => Err(format!("{left} bytes left undecoded")),
        Err(fatal) => Err(format!("fatal: {fatal}")),
    }
}

/// The replies of `events` as the device reads them.
fn answers(side: &mut dyn DeviceSide, events: &[Event]) -> Result<Vec<Answer>, String> {
    let mut replies = BytesMut::new();
    for event in events {
        let reply = match event {
            Event::Login { accept, .. } => Some(accept),
            Event::Positions { ack, .. } => Some(ack),
            Event::KeepAlive { reply } | Event::Message { reply, .. } | Event::Refused { reply, .. } => reply.as_ref(),
        };
        replies.extend_from_slice(reply.map_or(&[][..], |r| &r[..]));
    }
    let mut answers = Vec::new();
    while let Some(answer) = side.read_answer(&mut replies)? {
        answers.push(answer);
    }
    Ok(answers)
}

/// Sends `rounds` sessions of random reports (1 to 5 per frame) through the protocol's
/// device side and its session: every report decodes with its time, position (to the
/// protocol's precision) and speed, the device reads every report as acknowledged, and
/// the same bytes split every way decode the same; a corrupted frame is refused and
/// acknowledged nowhere. Returns the failures.
pub fn check_device_side(protocol: Protocol, rounds: u64) -> Vec<String> {
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut fail = |message: String| failures.push(format!("{protocol} round {round}: {message}"));
        let mut side = protocol.device();
        let resolution = side.time_resolution_ms().max(1);
        let count = 1 + (round % 5) as usize;
        let mut reports: Vec<Report> = (0..count as u64).map(|i| report_of(round * 7 + i)).collect();
        for report in &mut reports {
            report.time_ms -= report.time_ms.rem_euclid(resolution);
        }
        reports.sort_by_key(|r| r.time_ms);
        let mut bytes = side.login("359000000000001");
        bytes.extend(side.data(&reports));
        let events = match decode_all(protocol, &bytes, bytes.len()) {
            Ok(events) => events,
            Err(error) => {
                fail(error);
                continue;
            }
        };
        let positions: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Positions { batch, .. } => Some(batch),
                _ => None,
            })
            .flat_map(|batch| batch.iter().map(|p| *p.fix).collect::<Vec<_>>())
            .collect();
        if positions.len() != reports.len() {
            fail(format!("{} reports sent, {} positions decoded: {events:?}", reports.len(), positions.len()));
            continue;
        }
        for (report, fix) in reports.iter().zip(&positions) {
            let (lat, lon) = fix.coordinates.unwrap_or((f64::NAN, f64::NAN));
            if fix.time.map(|t| t.0) != Some(report.time_ms)
                || (lat - report.lat).abs() > 1e-5
                || (lon - report.lon).abs() > 1e-5
                || fix.speed.is_none_or(|s| (s - report.speed).abs() > 1.0)
            {
                fail(format!("sent {report:?}, decoded {fix:?}"));
            }
        }
        match answers(side.as_mut(), &events) {
            Ok(answers) => {
                let accepted: usize = answers.iter().map(|a| if let Answer::Accepted(n) = a { *n } else { 0 }).sum();
                if accepted != reports.len() {
                    fail(format!("the device read {answers:?} for {} reports", reports.len()));
                }
            }
            Err(error) => fail(format!("the device cannot read the replies: {error}")),
        }
        for chunk in [1, 2, 3, 7, 64] {
            let split = decode_all(protocol, &bytes, chunk).map(|events| format!("{events:?}"));
            if split != Ok(format!("{events:?}")) {
                fail(format!("decoded differently in {chunk}-byte pieces"));
            }
        }
        // The same data, corrupted.
        let mut side = protocol.device();
        let mut bytes = side.login("359000000000001");
        let mut frames = side.data(&reports);
        side.corrupt(&mut frames);
        bytes.extend(frames);
        let events = decode_all(protocol, &bytes, bytes.len()).unwrap_or_default();
        if events.iter().any(|e| matches!(e, Event::Positions { .. })) {
            fail("a corrupted frame decoded to positions".into());
        }
        if !events.iter().any(|e| matches!(e, Event::Refused { .. })) {
            fail("a corrupted frame was not refused".into());
        }
        let positive = events.iter().any(|e| match e {
            Event::Refused { reply: Some(reply), .. } => side.acknowledges(reply),
            _ => false,
        });
        if positive {
            fail("a corrupted frame was acknowledged".into());
        }
    }
    failures
}
