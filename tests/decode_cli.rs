//! `fleetgate decode` as integrators and conformance checks call it (contract 2): the
//! examples from the issues, exit codes, and input errors.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn decode(args: &[&str], stdin: &[u8]) -> (i32, Vec<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetgate"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetgate runs");
    // A command refused for its arguments exits before reading its input: a broken
    // pipe then is no failure of the test.
    let written = child.stdin.take().expect("stdin").write_all(stdin);
    if let Err(error) = written {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {error}");
    }
    let output = child.wait_with_output().expect("fleetgate exits");
    let lines = String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

#[test]
fn teltonika_documented_example() {
    let hex = "000F333536333037303432343431303133000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
    let (code, events) = decode(&["teltonika", "--hex"], format!("{hex}\n").as_bytes());
    assert_eq!(code, 0);
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "356307042441013"}));
    assert_eq!(events[1], json!({"event": "reply", "hex": "01"}));
    let position = &events[2];
    assert_eq!(position["event"], "position");
    assert_eq!(position["protocol"], "teltonika");
    assert_eq!(position["device"], "356307042441013");
    assert_eq!(position["time"], "2019-06-10T10:04:46Z");
    assert_eq!(position["io"], json!({"21": 3, "1": 1, "66": 24079, "241": 24602, "78": 0}));
    assert!(position.get("received").is_none());
    assert_eq!(events[3], json!({"event": "reply", "hex": "00000001"}));
}

#[test]
fn wialon_documented_example() {
    let input = b"#L#2.0;355217044956192;NA;E335\r\n#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;1985\r\n";
    let (code, events) = decode(&["wialon"], input);
    assert_eq!(code, 0);
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "355217044956192"}));
    assert_eq!(events[1]["text"], "#AL#1\r\n");
    let position = &events[2];
    assert_eq!(position["time"], "2013-04-27T20:56:01Z");
    assert!((position["lat"].as_f64().unwrap_or(0.0) - 55.74338).abs() < 1e-5);
    assert!((position["lon"].as_f64().unwrap_or(0.0) - 37.66139).abs() < 1e-5);
    assert_eq!((&position["speed"], &position["course"], &position["altitude"]), (&json!(1), &json!(2), &json!(3)));
    assert_eq!(position["satellites"], 4);
    assert_eq!(events[3], json!({"event": "reply", "hex": "2341534423310d0a", "text": "#ASD#1\r\n"}));
}

#[test]
fn a_refused_frame_gets_an_error_event_and_no_positive_reply() {
    // The documented codec 8 packet with its CRC changed.
    let hex = "000F333536333037303432343431303133000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CE";
    let (code, events) = decode(&["teltonika", "--hex"], hex.as_bytes());
    assert_eq!(code, 0, "the input was consumed");
    assert!(events.iter().all(|e| e["event"] != "position"));
    let error = events.iter().find(|e| e["event"] == "error").expect("an error event");
    assert_eq!(error["offset"], 17);
    assert!(error["error"].as_str().is_some_and(|e| e.contains("crc mismatch")));
    assert!(events.iter().filter(|e| e["event"] == "reply").all(|r| r["hex"] == "01" || r["hex"] == "00000000"));
}

#[test]
fn a_stream_ending_inside_a_frame_is_abandoned() {
    let (code, events) = decode(&["teltonika", "--hex"], b"000F333536333037303432343431303133 00000000 00000036 08 01");
    assert_eq!(code, 1);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "error");
    assert_eq!(last["offset"], 17);
}

#[test]
fn a_broken_frame_boundary_is_fatal() {
    // A declared length far beyond the limit: the connection would close.
    let (code, events) = decode(&["teltonika", "--hex"], b"000F333536333037303432343431303133 00000000 7FFFFFFF 08");
    assert_eq!(code, 1);
    assert!(events.last().is_some_and(|e| e["error"].as_str().is_some_and(|m| m.contains("exceeds the limit"))));
}

#[test]
fn udp_datagrams_one_per_line() {
    let datagram = "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001";
    let (code, events) = decode(&["teltonika", "--hex", "--udp"], format!("{datagram}\n{datagram}\n").as_bytes());
    assert_eq!(code, 0);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["login", "position", "reply", "position", "reply"]);
    assert_eq!(events[2]["hex"], "0005cafe010501");
}

#[test]
fn input_errors_are_clear() {
    let (code, events) = decode(&["nosuch"], b"");
    assert_eq!(code, 2);
    assert!(events[0]["error"].as_str().is_some_and(|e| e.contains("unknown protocol \"nosuch\"")));
    let (code, events) = decode(&["teltonika", "--hex"], b"00 0G");
    assert_eq!(code, 2);
    assert!(events[0]["error"].as_str().is_some_and(|e| e.contains("not a hex digit 'G' at input offset 4")));
    let (code, _) = decode(&["teltonika", "--udp"], b"00");
    assert_eq!(code, 2);
}

#[test]
fn gt06_login_location_and_a_model_of_its_own() {
    // The documented login, then a VL103's 0x16 alarm location (Traccar's capture) with
    // the driver's key in its last eight bytes, from a device whose clock is set to
    // UTC-03:00.
    let login = "78780D01086471700328358100093F040D0A";
    let alarm = "78782d16190c1d0e3b03cf026cc8d40c367d800014000801cc0025ef40e88c450604e801c3000001453f920100271e590d0a";
    let input = format!("{login}\n{alarm}\n");
    let (code, events) = decode(&["gt06", "--hex", "--model", "VL103", "--utc-offset", "-03:00"], input.as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "864717003283581"}));
    assert_eq!(events[1], json!({"event": "reply", "hex": "78780501000955940d0a"}));
    let position = &events[2];
    // 2025-12-29 14:59:03 on a clock at UTC-03:00.
    assert_eq!(position["time"], "2025-12-29T17:59:03Z");
    assert_eq!(position["attrs"]["driver_id"], "C3000001453F9201");
    assert_eq!(position["attrs"]["alarm"], Value::Null, "0xE8 is no alarm of the VL table");
    assert_eq!(position["io"]["event"], 232);
    assert_eq!(events[3], json!({"event": "reply", "hex": "78780516002794780d0a"}));
    // Without a registered offset the device's clock is read as UTC.
    let (_, plain) = decode(&["gt06", "--hex"], input.as_bytes());
    assert_eq!(plain[2]["time"], "2025-12-29T14:59:03Z");
    let (code, _) = decode(&["gt06", "--hex", "--utc-offset", "Mars/Olympus"], input.as_bytes());
    assert_ne!(code, 0);
}

#[test]
fn jt808_register_and_a_location() {
    // Traccar's captures: a 2019 terminal registering, then a 2013 location with the
    // battery level in item 0x06 (its own terminal: each frame names its phone).
    let register = "7e0100405c010000086649607758216452180000000000000000000000000000004d443330300000000000000000000000000000000000000000000000000038363634393630373735383231363400000000000000000000000000000004000000000000000000000000000000007a7e";
    let location = "7e0200001f01207646327900400000000000006002015c7ab706d20469003b0000000025040216362606013e6b7e";
    let (code, events) = decode(&["jt808", "--hex"], format!("{register}\n{location}\n").as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "866496077582164"}));
    // 0x8100: the register's serial (0x5218), result 0, the auth code.
    let answer = events[1]["hex"].as_str().unwrap_or_default();
    assert!(answer.starts_with("7e8100"), "{answer}");
    assert!(answer.contains("521800"), "{answer}");
    assert_eq!(events[2], json!({"event": "login", "device": "12076463279"}));
    let position = &events[3];
    // 2025-04-02 16:36:26 in the standard's UTC+8.
    assert_eq!(position["time"], "2025-04-02T08:36:26Z");
    assert_eq!((&position["lat"], &position["lon"]), (&json!(22.837943), &json!(114.426985)));
    assert_eq!(position["attrs"]["battery_level"], 62);
    assert_eq!(position["io"]["0x06"], 62);
    // 0x8001 naming the location's serial (0x0040) and id, result 0.
    let ack = events[4]["hex"].as_str().unwrap_or_default();
    assert!(ack.starts_with("7e8001") && ack.contains("0040020000"), "{ack}");
    // The same capture from a terminal whose clock is set to UTC.
    let (_, utc) = decode(&["jt808", "--hex", "--utc-offset", "+00:00"], format!("{location}\n").as_bytes());
    assert_eq!(utc[1]["time"], "2025-04-02T16:36:26Z");
}

#[test]
fn galileo_head_packet_records_and_an_iridium_message() {
    // The documented head packet, then Traccar's capture of a main packet whose record
    // follows its own head tags.
    let head = "011380033836383230343030313534393038370432008590";
    let main = std::fs::read_to_string("fixtures/galileo/traccar_003.hex").unwrap_or_default();
    let (code, events) = decode(&["galileo", "--hex"], format!("{head}\n{}", main.trim()).as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "868204001549087"}));
    assert_eq!(events[1], json!({"event": "reply", "hex": "028590"}));
    // The capture's own head tags name another device: refused, unanswered.
    assert!(events[2]["error"].as_str().is_some_and(|e| e.contains("868345032042426")), "{:?}", events[2]);
    assert_eq!(events.len(), 3, "{events:#?}");
    let (code, events) = decode(&["galileo", "--hex"], main.as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "868345032042426"}));
    let position = &events[1];
    assert_eq!(position["time"], "2018-09-17T13:22:04Z");
    assert_eq!((&position["lat"], &position["lon"]), (&json!(24.709763), &json!(46.665418)));
    assert_eq!(position["attrs"]["power_voltage"], 16.24);
    assert_eq!(position["io"]["0x01"], 130);
    assert_eq!(events.last(), Some(&json!({"event": "reply", "hex": "028960"})));
    // An Iridium message: the IMEI of its header, no answer to the Iridium gateway.
    let iridium = std::fs::read_to_string("fixtures/galileo/traccar_016.hex").unwrap_or_default();
    let (code, events) = decode(&["galileo", "--hex"], iridium.as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "300234069604590"}));
    assert_eq!((&events[1]["lat"], &events[1]["lon"]), (&json!(-33.733818), &json!(-70.719813)));
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[test]
fn navtelecom_handshake_negotiation_and_flex_records() {
    // Traccar's FLEX 1.0 session: the handshake, the negotiation (69 fields, 73 bytes a
    // record), then a ~T record.
    let session = std::fs::read_to_string("fixtures/navtelecom/traccar_017.hex").unwrap_or_default();
    let (code, events) = decode(&["navtelecom", "--hex"], session.as_bytes());
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(events[0], json!({"event": "login", "device": "869696049722825"}));
    // `*<S` and `*<FLEX B0 0A 0A`, addressed back (receiver and sender swapped).
    assert_eq!(events[1]["hex"], "404e5443c9b5f60201000000030045d62a3c53");
    assert_eq!(events[3]["hex"], "404e5443aaecf602010000000900b1122a3c464c4558b00a0a");
    let position = &events[4];
    assert_eq!(position["time"], "2019-01-17T10:23:20Z");
    assert!((position["lat"].as_f64().unwrap_or_default() - 56.33996).abs() < 1e-5, "{position}");
    assert_eq!(position["satellites"], 11);
    // The field numbered 19 from 1: the battery in mV.
    assert_eq!(position["io"]["20"], 4166);
    assert_eq!(position["attrs"]["battery_voltage"], 4.166);
    // `~T` and the event index, with its CRC-8.
    assert_eq!(events[5], json!({"event": "reply", "hex": "7e540400000017"}));
}
