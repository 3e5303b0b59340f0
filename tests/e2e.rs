//! The whole system, end to end: `fleetgate serve` (gateway, processor and API) on free
//! ports in an isolated schema, stream, subject and key prefix; a tenant from
//! `fleetgate admin create-tenant`; `fleetgate simulate` registering its devices through
//! the API and driving them (every built-in protocol: Teltonika 8E, Wialon IPS 2.0, GT06
//! in both frame forms, ...; black-box bursts, corrupted frames). Afterwards every
//! acknowledged position is in history exactly once and the live position of each device
//! is its newest acknowledged one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Acked, System, binary};

#[tokio::test]
async fn simulated_devices_end_to_end_every_acknowledged_position_stored_once() {
    let system = System::start("e2e").await;
    let (client, dir, api, key) = (&system.client, &system.dir, system.api, &system.key);
    let acked_path = dir.join("acked.jsonl");
    let ports: Vec<String> = system.ports.iter().map(|(protocol, port)| format!("{protocol}={port}")).collect();
    let devices = 3 * system.ports.len();
    let simulated = Command::new(binary())
        .args(["simulate", "--host", "127.0.0.1", "--json", "--seed", "3"])
        .args(ports.iter().flat_map(|port| ["--port", port.as_str()]))
        .args([
            "--devices",
            &devices.to_string(),
            "--interval-s",
            "1",
            "--records",
            "2",
            "--seconds",
            "12",
            "--imei-base",
            "358000000000000",
        ])
        .args(["--offline-share", "0.5", "--corrupt-share", "0.5"])
        .args(["--register", &format!("http://127.0.0.1:{api}"), "--api-key", key])
        .arg("--acked")
        .arg(&acked_path)
        .output()
        .expect("simulate runs");
    assert!(simulated.status.success(), "{}", String::from_utf8_lossy(&simulated.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&simulated.stdout).expect("summary JSON");
    let acked_count = summary["acked"].as_u64().expect("acked");
    assert!(acked_count > 50, "{summary}");
    assert!(summary["corrupted_sent"].as_u64() > Some(0), "{summary}");
    assert_eq!(summary["corrupted_sent"], summary["corrupted_refused"], "every corrupted frame refused: {summary}");
    assert!(summary["black_box_bursts"].as_u64() > Some(0), "{summary}");

    // What the devices saw acknowledged: in history exactly once (the processor may
    // still be finishing the last batch).
    let acked = Acked::read(&acked_path);
    assert_eq!(acked.positions.len() as u64, acked_count);
    let (missing, duplicated) = acked.lost_and_duplicated(&system.url, Duration::from_secs(30)).await;
    assert_eq!((missing, duplicated), (0, 0), "acknowledged positions lost or duplicated");
    let stored: i64 = client.query_one("SELECT count(*) FROM positions", &[]).await.expect("count").get(0);
    assert_eq!(stored as usize, acked.positions.len(), "nothing stored that was not acknowledged once");

    // Live state: each device's newest acknowledged fix.
    let rows = client.query("SELECT id, identifier, protocol FROM devices", &[]).await.expect("devices");
    assert_eq!(rows.len(), devices, "the simulator registered its devices through the API");
    for (protocol, _) in &system.ports {
        let driven = rows.iter().filter(|row| row.get::<_, &str>(2) == *protocol).count();
        assert_eq!(driven, 3, "{protocol}: three devices");
    }
    for row in rows {
        let (id, identifier): (i64, String) = (row.get(0), row.get(1));
        let Some(expected) = acked.newest.get(&identifier) else { continue };
        let started = Instant::now();
        loop {
            let (status, body) = system.get(&format!("/v1/devices/{id}/live"), key);
            let live: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if status == 200 && live["time"].as_str() == Some(expected) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{identifier}: live {body}, expected {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
