//! The bad-input catalogue's entries that need a whole `fleetgate serve` (docs/BAD_INPUT.md):
//! a login storm of 10,000 simultaneous handshakes, answered every one while a device
//! already connected keeps being acknowledged. (The gateway runs in its own process: one
//! process could not hold both ends of 10,000 connections under the open-file limit.)

mod common;

use std::time::Duration;

use common::{Options, System, teltonika_packet as packet};
use fleetgate_codecs::teltonika::encode as teltonika;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEVICES: u64 = 10_000;
const IMEI_BASE: u64 = 360_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_simultaneous_handshakes_are_all_answered() {
    // Both ends of the connections would not fit this process's default limit.
    let _ = rlimit::increase_nofile_limit(DEVICES + 1024);
    let setup = format!(
        "INSERT INTO devices (tenant_id, identifier, protocol)
         SELECT (SELECT min(id) FROM tenants), ({IMEI_BASE} + n)::text, 'teltonika' FROM generate_series(0, {DEVICES}) AS n"
    );
    let connections = (DEVICES + 100).to_string();
    let env = [("FLEETGATE_MAX_CONNECTIONS", connections.as_str())];
    let system = System::start_with("storm", Options { setup_sql: &setup, env: &env, ..Options::default() }).await;
    let address = ("127.0.0.1", system.teltonika);

    // The bystander: logged in before the storm, sending through it.
    let mut bystander = TcpStream::connect(address).await.expect("connect");
    bystander.write_all(&teltonika::handshake(&(IMEI_BASE + DEVICES).to_string())).await.expect("write");
    let mut answer = [0u8; 1];
    bystander.read_exact(&mut answer).await.expect("login answer");
    assert_eq!(answer, [1]);

    let storm: Vec<_> = (0..DEVICES)
        .map(|i| {
            tokio::spawn(async move {
                let mut device = TcpStream::connect(address).await.ok()?;
                device.write_all(&teltonika::handshake(&(IMEI_BASE + i).to_string())).await.ok()?;
                let mut answer = [0u8; 1];
                tokio::time::timeout(Duration::from_secs(120), device.read_exact(&mut answer)).await.ok()?.ok()?;
                // Held open until every handshake is in: simultaneous, not one after another.
                Some((answer[0], device))
            })
        })
        .collect();
    for n in 0..5u64 {
        bystander.write_all(&packet(1_700_000_000_000 + n * 1000)).await.expect("write");
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(60), bystander.read_exact(&mut ack))
            .await
            .expect("acknowledged during the storm")
            .expect("ack");
        assert_eq!(ack, [0, 0, 0, 1]);
    }
    let mut accepted = 0;
    let mut held = Vec::new();
    for task in storm {
        if let Ok(Some((answer, device))) = task.await {
            accepted += usize::from(answer == 1);
            held.push(device);
        }
    }
    assert_eq!(accepted, DEVICES as usize, "every handshake answered with an acceptance");
    drop(held);
}
