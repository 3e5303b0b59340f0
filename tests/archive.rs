//! The raw frame archive end to end, through `fleetgate serve`: a Wialon IPS session with
//! a login split across writes, good lines and one with a bad checksum, and a Teltonika
//! session whose packets arrive in pieces. The traffic view must hold exactly the bytes
//! that went over the wire and the replies, newest first and paged, refused frames with
//! their offset and reason, and nothing for another tenant; `fleetgate decode` must read
//! the export as it reads the raw capture; `fleetgate reprocess` must rewrite exactly the
//! rows a (simulated) older codec got wrong, and nothing else, once.

mod common;

use std::time::Duration;

use common::{System, wait_for};
use fleetgate_codecs::hex;
use fleetgate_codecs::teltonika::encode as teltonika;
use fleetgate_codecs::wialon::Version;
use fleetgate_codecs::wialon::encode::{self as wialon, Record as WialonRecord};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WIALON_IMEI: &str = "355217044956192";
const TELTONIKA_IMEI: &str = "356307042441013";

/// Writes each piece (with a pause, so they arrive as separate reads), then reads the
/// reply, if `reply_len` bytes are expected.
async fn exchange(stream: &mut TcpStream, pieces: &[&[u8]], reply_len: usize, received: &mut Vec<u8>) {
    for piece in pieces {
        stream.write_all(piece).await.expect("write");
        stream.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut reply = vec![0u8; reply_len];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut reply))
        .await
        .expect("reply in time")
        .expect("reply");
    received.extend_from_slice(&reply);
}

fn wialon_line(time_s: i64, lat: f64) -> String {
    let record = WialonRecord {
        time_s: Some(time_s),
        lat: Some(lat),
        lon: Some(37.5),
        speed: Some(40.0),
        course: Some(90.0),
        altitude: Some(120.0),
        satellites: Some(9),
        ..WialonRecord::default()
    };
    wialon::extended_data(&record, Version::V2_0)
}

fn frames(page: &Value) -> Vec<Value> {
    page["frames"].as_array().cloned().unwrap_or_default()
}

/// The positions table as text, one row per line, for before/after comparisons.
async fn positions_table(system: &System) -> Vec<String> {
    let rows = system
        .client
        .query(
            "SELECT concat_ws('|', device_id, fix_time, received, lat, lon, speed, valid, attrs::text, io::text,
                              round(distance_m::numeric, 3), moving)
             FROM positions ORDER BY device_id, fix_time",
            &[],
        )
        .await
        .expect("positions");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn traffic_is_archived_exported_and_reprocessed() {
    let system = System::start("arc").await;
    let wialon_id = system.register(WIALON_IMEI, "wialon");
    let teltonika_id = system.register(TELTONIKA_IMEI, "teltonika");
    let start_time = "2020-01-01T00:00:00Z";
    let end_time = "2100-01-01T00:00:00Z";

    // Wialon IPS 2.0: login in two writes, two good lines around one with a bad CRC.
    let base_s = 1_764_000_000;
    let login = wialon::login(WIALON_IMEI, None, Version::V2_0);
    let first = wialon_line(base_s, 55.75);
    let good = wialon_line(base_s + 10, 55.76);
    let mut bad = wialon_line(base_s + 5, 55.70).into_bytes();
    let crc_at = bad.len() - 3;
    bad[crc_at] = if bad[crc_at] == b'0' { b'1' } else { b'0' };
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut device = TcpStream::connect(("127.0.0.1", system.wialon)).await.expect("connect wialon");
    let (head, tail) = login.as_bytes().split_at(9);
    exchange(&mut device, &[head, tail], b"#AL#1\r\n".len(), &mut received).await;
    exchange(&mut device, &[first.as_bytes()], b"#AD#1\r\n".len(), &mut received).await;
    let bad_offset = login.len() + first.len();
    // A bad checksum is answered with `#AD#16`, the resend request.
    exchange(&mut device, &[&bad], b"#AD#16\r\n".len(), &mut received).await;
    let (a, b) = good.as_bytes().split_at(20);
    exchange(&mut device, &[a, b], b"#AD#1\r\n".len(), &mut received).await;
    sent.extend_from_slice(login.as_bytes());
    sent.extend_from_slice(first.as_bytes());
    sent.extend_from_slice(&bad);
    sent.extend_from_slice(good.as_bytes());
    drop(device);

    // Teltonika: the handshake and one codec 8E packet, each in pieces.
    let handshake = teltonika::handshake(TELTONIKA_IMEI);
    let packet = common::teltonika_packet(1_764_000_000_000);
    let mut tracker = TcpStream::connect(("127.0.0.1", system.teltonika)).await.expect("connect teltonika");
    let mut tracker_received = Vec::new();
    exchange(&mut tracker, &[&handshake[..5], &handshake[5..]], 1, &mut tracker_received).await;
    exchange(&mut tracker, &[&packet[..7], &packet[7..30], &packet[30..]], 4, &mut tracker_received).await;
    assert_eq!(tracker_received, [1, 0, 0, 0, 1]);
    drop(tracker);

    // The traffic view: every inbound frame, newest first.
    let path = format!("/v1/devices/{wialon_id}/traffic?from={start_time}&to={end_time}");
    let page: Value = wait_for(Duration::from_secs(20), "four archived Wialon frames", || {
        let (status, body) = system.get(&path, &system.key);
        let page: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && frames(&page).len() >= 4).then_some(page)
    })
    .await;
    assert_eq!(page["protocol"], "wialon");
    assert_eq!(page["device"], WIALON_IMEI);
    let mut shown = frames(&page);
    assert_eq!(shown.len(), 4, "{page:#}");
    shown.reverse();
    let outcomes: Vec<&str> = shown.iter().map(|f| f["outcome"].as_str().unwrap_or("")).collect();
    assert_eq!(outcomes, ["login", "positions", "refused", "positions"]);
    let inbound: Vec<u8> = shown
        .iter()
        .flat_map(|f| hex::decode(f["hex"].as_str().unwrap_or("").as_bytes()).unwrap_or_default())
        .collect();
    assert_eq!(inbound, sent, "the archive holds exactly the bytes sent, split writes joined into their frames");
    let replies: Vec<u8> = shown
        .iter()
        .flat_map(|f| hex::decode(f["reply"]["hex"].as_str().unwrap_or("").as_bytes()).unwrap_or_default())
        .collect();
    assert_eq!(replies, received, "and exactly the replies");
    assert_eq!(shown[0]["text"], login.as_str());
    assert_eq!(shown[0]["reply"]["text"], "#AL#1\r\n");
    assert_eq!(shown[1]["positions"], 1);
    assert_eq!(shown[2]["offset"], bad_offset as u64, "{:#}", shown[2]);
    assert!(shown[2]["error"].as_str().is_some_and(|e| e.contains("crc")), "{:#}", shown[2]);
    assert!(shown.iter().all(|f| f["direction"] == "in" && f["transport"] == "tcp"));
    assert!(shown.windows(2).all(|w| w[0]["connection"] == w[1]["connection"]), "one connection");

    // Paging: two and two, the same frames.
    let (_, body) = system.get(&format!("{path}&limit=3"), &system.key);
    let first_page: Value = serde_json::from_str(&body).expect("page");
    let next = first_page["next"].as_str().expect("a next cursor").to_owned();
    let (_, body) = system.get(&format!("{path}&limit=3&cursor={next}"), &system.key);
    let second_page: Value = serde_json::from_str(&body).expect("page");
    assert_eq!(second_page["next"], Value::Null);
    let paged: Vec<Value> = frames(&first_page).into_iter().chain(frames(&second_page)).collect();
    assert_eq!(paged, frames(&page));
    let (status, _) = system.get(&format!("{path}&cursor=nonsense"), &system.key);
    assert_eq!(status, 400);

    // Teltonika's frames, binary: no text.
    let teltonika_path = format!("/v1/devices/{teltonika_id}/traffic?from={start_time}&to={end_time}");
    let teltonika_page: Value = wait_for(Duration::from_secs(20), "two archived Teltonika frames", || {
        let page: Value = serde_json::from_str(&system.get(&teltonika_path, &system.key).1).ok()?;
        (frames(&page).len() >= 2).then_some(page)
    })
    .await;
    let teltonika_frames = frames(&teltonika_page);
    assert_eq!(teltonika_frames[0]["hex"], hex::HexDisplay(&packet).to_string());
    assert_eq!(teltonika_frames[0]["reply"]["hex"], "00000001");
    assert!(teltonika_frames[0].get("text").is_none());

    // Another tenant sees nothing; a viewer key may not look.
    let (_, other_key) = system.create_tenant("Second");
    assert_eq!(system.get(&path, &other_key).0, 404);
    let (status, viewer) =
        system.post("/v1/api-keys", &system.key, &serde_json::json!({"name": "v", "role": "viewer"}));
    assert_eq!(status, 201, "{viewer}");
    assert_eq!(system.get(&path, viewer["api_key"].as_str().unwrap_or("")).0, 403);

    // `fleetgate decode` reads the export as it reads the raw capture.
    let export_path = system.dir.join("traffic.json");
    std::fs::write(&export_path, system.get(&path, &system.key).1).expect("export");
    let capture_path = system.dir.join("capture.txt");
    std::fs::write(&capture_path, &sent).expect("capture");
    let decode = |file: &std::path::Path| {
        let output = std::process::Command::new(common::binary()).arg("decode").arg("wialon").arg(file).output();
        String::from_utf8(output.expect("decode runs").stdout).expect("UTF-8")
    };
    let from_export = decode(&export_path);
    assert_eq!(from_export, decode(&capture_path));
    assert_eq!(from_export.lines().filter(|l| l.contains(r#""event":"position""#)).count(), 2, "{from_export}");

    // Reprocess. Wait for history, then play an older codec's mistakes: one row with a
    // wrong latitude, one row lost, one invented row; plus a row no archived frame made
    // (without a fix, so no derived value of it depends on its neighbours).
    let count =
        || async { system.client.query_one("SELECT count(*) FROM positions", &[]).await.map(|r| r.get::<_, i64>(0)) };
    for _ in 0..200 {
        if count().await.unwrap_or(0) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count().await.expect("count"), 3);
    let original = positions_table(&system).await;
    let client = &system.client;
    let fix = |s: i64| format!("to_timestamp({s})");
    client
        .batch_execute(&format!(
            "UPDATE positions SET lat = lat + 1 WHERE device_id = {wialon_id} AND fix_time = {first};
             DELETE FROM positions WHERE device_id = {wialon_id} AND fix_time = {good};
             INSERT INTO positions (device_id, fix_time, tenant_id, received, lat, lon, valid, attrs, io)
               SELECT device_id, fix_time - interval '1 hour', tenant_id, received, 1, 1, true, '{{}}', '{{}}'
               FROM positions WHERE device_id = {wialon_id} AND fix_time = {first};
             INSERT INTO positions (device_id, fix_time, tenant_id, received, valid, attrs, io)
               VALUES ({wialon_id}, {other}, {tenant}, now(), false, '{{\"note\": \"unrelated\"}}', '{{}}');",
            first = fix(base_s),
            good = fix(base_s + 10),
            other = fix(base_s + 3600),
            tenant = system.tenant_id,
        ))
        .await
        .expect("tamper");
    let tampered = positions_table(&system).await;

    let span = ["--device", WIALON_IMEI, "--from", start_time, "--to", end_time];
    let (ok, out) = system.run(&[&["reprocess"][..], &span, &["--dry-run"]].concat());
    assert!(ok, "{out}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let summary = &lines.last().expect("summary")["summary"];
    assert_eq!(
        (&summary["changed"], &summary["added"], &summary["removed"]),
        (&Value::from(1), &Value::from(1), &Value::from(1)),
        "{out}"
    );
    assert_eq!(summary["applied"], false);
    assert_eq!((summary["frames"].as_u64(), summary["refused"].as_u64()), (Some(4), Some(1)), "{out}");
    let kinds: Vec<&str> = lines[..3].iter().map(|l| l["change"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["removed", "changed", "added"], "in time order: {out}");
    assert_eq!(positions_table(&system).await, tampered, "a dry run writes nothing");

    let (ok, out) = system.run(&[&["reprocess"][..], &span].concat());
    assert!(ok, "{out}");
    assert!(out.contains(r#""applied":true"#), "{out}");
    let mut expected = original.clone();
    let untouched = tampered.iter().find(|row| row.contains("unrelated")).expect("the unrelated row");
    expected.push(untouched.clone());
    expected.sort();
    let mut after = positions_table(&system).await;
    after.sort();
    assert_eq!(after, expected, "exactly the affected rows are back as the codec decodes them; the rest untouched");

    let (ok, out) = system.run(&[&["reprocess"][..], &span].concat());
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 1, "a second run finds nothing to change: {out}");
    assert!(out.contains(r#""applied":false"#) && out.contains(r#""unchanged":2"#), "{out}");

    let (ok, out) = system.run(&["reprocess", "--device", "000", "--from", start_time, "--to", end_time]);
    assert!(!ok, "an unknown device is an error: {out}");
}
