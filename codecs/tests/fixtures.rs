//! The data-driven fixture test: every capture under `fixtures/<protocol>/` is decoded
//! and compared with its `.expect` transcript (regenerate with `UPDATE_EXPECT=1` after
//! reviewing the change) and with the documented facts in its `.facts.json`. Every TCP
//! capture is also fed one byte at a time and truncated at every offset.

use std::path::{Path, PathBuf};

use fleetgate_codecs::transcript::{STREAM_ENDED, Transcript, run_datagrams, run_stream, run_stream_in_chunks};
use fleetgate_codecs::{Protocol, SessionOptions};
use serde_json::Value;

fn fixtures_dir(protocol: Protocol) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(protocol.name())
}

fn parse_hex(text: &str) -> Vec<u8> {
    fleetgate_codecs::hex::decode(text.as_bytes()).expect("fixture is hex")
}

fn options() -> SessionOptions {
    // The same options as `fleetgate decode`, so `.expect` is exactly its output.
    SessionOptions { allow_anonymous: true, ..SessionOptions::default() }
}

struct Fixture {
    name: String,
    path: PathBuf,
    input: Input,
}

enum Input {
    Stream(Vec<u8>),
    Datagrams(Vec<Vec<u8>>),
}

fn load(protocol: Protocol) -> Vec<Fixture> {
    let mut fixtures = Vec::new();
    let dir = fixtures_dir(protocol);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let text = || std::fs::read_to_string(&path).expect("readable fixture");
        let (name, input) = if let Some(name) = file.strip_suffix(".udp.hex") {
            (name, Input::Datagrams(text().lines().filter(|l| !l.trim().is_empty()).map(parse_hex).collect()))
        } else if let Some(name) = file.strip_suffix(".hex") {
            (name, Input::Stream(parse_hex(&text())))
        } else if let Some(name) = file.strip_suffix(".udp.txt") {
            let datagrams = text().lines().filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
            (name, Input::Datagrams(datagrams))
        } else if let Some(name) = file.strip_suffix(".txt") {
            (name, Input::Stream(std::fs::read(&path).expect("readable fixture")))
        } else if let Some(name) = file.strip_suffix(".bin") {
            (name, Input::Stream(std::fs::read(&path).expect("readable fixture")))
        } else {
            continue;
        };
        fixtures.push(Fixture { name: name.to_owned(), path: path.clone(), input });
    }
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!fixtures.is_empty(), "no fixtures in {}", dir.display());
    fixtures
}

fn transcript(protocol: Protocol, fixture: &Fixture) -> Transcript {
    match &fixture.input {
        Input::Stream(bytes) => run_stream(protocol, bytes, options()),
        Input::Datagrams(datagrams) => run_datagrams(protocol, datagrams, options()),
    }
}

fn events(transcript: &Transcript) -> Vec<Value> {
    transcript.lines.iter().map(|l| serde_json::from_str(l).expect("transcript line is JSON")).collect()
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

/// Documents round coordinates to five decimals; the codec keeps full precision.
fn same_coordinate(actual: &Value, expected: &Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => (a - b).abs() <= 0.51e-5,
        _ => actual == expected,
    }
}

/// A reply that tells the device its data was taken: anything but the login answer and
/// the protocols' refusals (Teltonika `00000000`, Wialon codes other than 1 or a count).
fn is_positive_ack(reply: &str) -> bool {
    if reply.starts_with('#') {
        let code = reply.trim_end().rsplit('#').next().unwrap_or("");
        return !reply.starts_with("#AL#")
            && (code == "1" || (reply.starts_with("#AB#") && code.parse::<u32>().is_ok_and(|n| n > 0)));
    }
    !matches!(reply, "01" | "00000000")
}

/// Checks what the source of a capture documents about it; returns the failures.
fn check_facts(name: &str, transcript: &Transcript, facts: &Value) -> Vec<String> {
    let events = events(transcript);
    let mut failures = Vec::new();
    let mut fail = |message: String| failures.push(format!("{name}: {message}"));
    // Text protocols are compared by their reply text, binary ones by hex.
    let replies: Vec<&str> =
        of_kind(&events, "reply").iter().filter_map(|r| r["text"].as_str().or(r["hex"].as_str())).collect();
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
    if facts["refused"] == Value::Bool(true) {
        if errors.is_empty() {
            fail("capture with a wrong checksum or length was not refused".into());
        }
        if !positions.is_empty() {
            fail("a refused capture produced positions".into());
        }
        if let Some(positive) = replies.iter().find(|r| is_positive_ack(r)) {
            fail(format!("refused capture got the positive reply {positive:?}"));
        }
    }
    for (i, record) in facts["records"].as_array().into_iter().flatten().enumerate() {
        let Some(position) = positions.get(i) else {
            fail(format!("record {i} missing"));
            continue;
        };
        for field in ["time", "lat", "lon", "altitude", "course", "satellites", "speed"] {
            let same = if matches!(field, "lat" | "lon") { same_coordinate } else { same_number };
            if !record[field].is_null() && !same(&position[field], &record[field]) {
                fail(format!("record {i} {field} = {}, documented {}", position[field], record[field]));
            }
        }
        for (id, value) in record["io"].as_object().into_iter().flatten() {
            if !same_number(&position["io"][id], value) {
                fail(format!("record {i} io {id} = {}, documented {value}", position["io"][id]));
            }
        }
    }
    if let Some(expected) = facts["messages"].as_array() {
        let messages = of_kind(&events, "message");
        if messages.len() != expected.len() {
            fail(format!("{} messages, documented {}", messages.len(), expected.len()));
        }
        for (message, documented) in messages.iter().zip(expected) {
            for field in ["text", "device"] {
                if !documented[field].is_null() && message[field] != documented[field] {
                    fail(format!("message {field} = {}, documented {}", message[field], documented[field]));
                }
            }
        }
    }
    failures
}

/// Fed one byte at a time the transcript is the same; cut at any offset, the transcript
/// is a prefix of the full one (plus a "stream ended" error): always "need more", never
/// a wrong frame, never a panic.
fn check_stream_splits(protocol: Protocol, name: &str, bytes: &[u8], full: &Transcript) -> Vec<String> {
    let mut failures = Vec::new();
    let one_by_one = run_stream_in_chunks(protocol, bytes, 1, options());
    if &one_by_one != full {
        failures
            .push(format!("{name}: byte-at-a-time decode differs:\n{:#?}\nvs\n{:#?}", one_by_one.lines, full.lines));
    }
    for cut in 0..bytes.len() {
        let partial = run_stream(protocol, &bytes[..cut], options());
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

fn check_protocol(protocol: Protocol) {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for fixture in load(protocol) {
        let transcript = transcript(protocol, &fixture);
        let rendered = transcript.lines.join("\n") + "\n";
        let expect_path = fixture.path.with_file_name(format!("{}.expect", fixture.name));
        if update {
            std::fs::write(&expect_path, &rendered).expect("write expect file");
        } else {
            match std::fs::read_to_string(&expect_path) {
                Ok(expected) if expected == rendered => {}
                Ok(expected) => failures.push(format!(
                    "{}: decode differs from {} (UPDATE_EXPECT=1 to accept)\n--- expected\n{expected}--- actual\n{rendered}",
                    fixture.name,
                    expect_path.display()
                )),
                Err(_) => failures.push(format!("{}: no {} (run with UPDATE_EXPECT=1)", fixture.name, expect_path.display())),
            }
        }
        let facts_path = fixture.path.with_file_name(format!("{}.facts.json", fixture.name));
        if let Ok(text) = std::fs::read_to_string(&facts_path) {
            let facts: Value = serde_json::from_str(&text).expect("facts are JSON");
            failures.extend(check_facts(&fixture.name, &transcript, &facts));
        }
        if let Input::Stream(bytes) = &fixture.input {
            failures.extend(check_stream_splits(protocol, &fixture.name, bytes, &transcript));
        }
    }
    assert!(failures.is_empty(), "{} fixture failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn teltonika_fixtures() {
    check_protocol(Protocol::TELTONIKA);
}

#[test]
fn wialon_fixtures() {
    check_protocol(Protocol::WIALON);
}
