//! Chaos: while simulated devices send, the gateway and the processor are killed with
//! SIGKILL and restarted, and nats-server, PostgreSQL and Redis are restarted, at random
//! moments. Afterwards every position a device saw acknowledged must be in Postgres
//! exactly once, each device's live position must be its newest acknowledged fix, and
//! each device's report segments must be the cut of its stored positions.
//!
//! Everything runs against private servers (temporary folders, free ports), so killing
//! them never disturbs the machine's shared servers or other tests. `./test` runs a short
//! version; the full run (see RELIABILITY.md):
//!
//! ```sh
//! FLEETGATE_CHAOS_FAULTS=120 cargo test --test chaos -- --nocapture
//! ```
//!
//! `FLEETGATE_CHAOS_SEED` replays a run's fault schedule (the report prints the seed).

mod common;

use fleetgate_contracts::{DeviceId, TenantId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Acked, binary};
use fleetgate_testkit::{PrivateNats, PrivatePostgres, PrivateRedis, free_port};

/// A role of `fleetgate` as its own process, which the test kills and restarts.
struct Role {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Role {
    fn new(role: &str, config: &Path, log: PathBuf) -> Role {
        let args = vec![role.to_owned(), "--config".to_owned(), config.display().to_string()];
        Role { args, log, child: None }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(binary())
            .args(&self.args)
            .env("FLEETGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("fleetgate starts");
        self.child = Some(child);
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again if it exited on its own (it must not; counted).
    fn ensure_running(&mut self) -> bool {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        };
        if exited {
            self.start();
        }
        exited
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small deterministic generator, so a seed replays a schedule.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }
}

const FAULTS: [&str; 5] = ["kill -9 gateway", "kill -9 processor", "restart nats", "restart postgres", "restart redis"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The live position's fix time of each device, from Redis.
async fn live_times(
    redis_url: &str,
    prefix: &str,
    tenant_id: i64,
    devices: &[(i64, String)],
) -> BTreeMap<String, String> {
    let mut times = BTreeMap::new();
    let Ok(client) = redis::Client::open(redis_url) else { return times };
    let Ok(mut redis) = client.get_multiplexed_async_connection().await else { return times };
    for (device_id, identifier) in devices {
        let key = fleetgate_contracts::keys::live_key(prefix, TenantId(tenant_id), DeviceId(*device_id));
        let position: Option<String> =
            redis::cmd("HGET").arg(&key).arg("position").query_async(&mut redis).await.ok().flatten();
        let time = position
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|p| p["time"].as_str().map(str::to_owned));
        if let Some(time) = time {
            times.insert(identifier.clone(), time);
        }
    }
    times
}

/// The devices whose report segments are not their stored positions cut into segments
/// (the last one may lag by the tail), read in one snapshot.
async fn segments_wrong(client: &mut tokio_postgres::Client) -> Vec<String> {
    use fleetgate_codecs::time::UtcMillis;
    use fleetgate_store::rows::Timestamp;
    let snapshot = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .expect("snapshot");
    let devices = snapshot.query("SELECT DISTINCT device_id FROM positions", &[]).await.expect("devices");
    let mut wrong = Vec::new();
    for row in devices {
        let device: i64 = row.get(0);
        let (first, last) = (UtcMillis(-62_135_596_800_000), UtcMillis(253_402_300_799_000));
        let samples =
            fleetgate_store::segments::samples(&snapshot, DeviceId(device), first, last).await.expect("samples");
        let expected = fleetgate_rules::reports::segments(&samples);
        let stored: Vec<(UtcMillis, UtcMillis, i32)> = snapshot
            .query(
                "SELECT start_time, end_time, samples FROM segments WHERE device_id = $1 ORDER BY start_time",
                &[&device],
            )
            .await
            .expect("segments")
            .iter()
            .map(|r| (r.get::<_, Timestamp>(0).0, r.get::<_, Timestamp>(1).0, r.get(2)))
            .collect();
        let agrees = stored.len() == expected.len()
            && stored.iter().zip(&expected).enumerate().all(|(i, (s, e))| {
                let whole = (s.0, s.1, s.2 as u32) == (e.start, e.end, e.samples);
                // The open segment may lag by the tail (under a minute).
                let lagging = i + 1 == expected.len() && s.0 == e.start && s.1 <= e.end && e.end.0 - s.1.0 < 60_000;
                whole || lagging
            });
        if !agrees {
            wrong.push(format!("device {device}: {} stored, {} expected", stored.len(), expected.len()));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_acknowledged_is_lost_or_duplicated() {
    let faults_wanted = env_number("FLEETGATE_CHAOS_FAULTS", 6) as usize;
    let seed = env_number(
        "FLEETGATE_CHAOS_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    );
    let mut random = Random(seed);
    let dir = std::env::temp_dir().join(fleetgate_testkit::unique("fleetgate-chaos-"));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedis::start();
    let mut nats = PrivateNats::start();
    let (teltonika, wialon) = (free_port(), free_port());
    let prefix = "chaos";
    let config = format!(
        r#"
[postgres]
url = "{postgres}"
[nats]
url = "{nats}"
publish_timeout_s = 2
archive_max_bytes = 67108864
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[gateway]
bind = "127.0.0.1"
metrics_addr = ""
drain_timeout_s = 2
[[gateway.listeners]]
protocol = "teltonika"
tcp_port = {teltonika}
[[gateway.listeners]]
protocol = "wialon"
tcp_port = {wialon}
[processor]
metrics_addr = ""
batch_wait_ms = 20
ack_wait_s = 5
"#,
        postgres = postgres.url(),
        nats = nats.url(),
        redis = redis.url(),
    );
    let config_path = dir.join("fleetgate.toml");
    std::fs::write(&config_path, config).expect("config");
    let migrated = Command::new(binary()).args(["migrate", "--config"]).arg(&config_path).output().expect("migrate");
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));

    // Devices registered straight in Postgres; the simulator takes them from a file.
    let client = fleetgate_store::connect(&postgres.url()).await.expect("connect");
    let tenant_id: i64 =
        client.query_one("INSERT INTO tenants (name) VALUES ('chaos') RETURNING id", &[]).await.expect("tenant").get(0);
    let mut devices_file = String::new();
    let mut devices: Vec<(i64, String)> = Vec::new();
    for i in 0..20 {
        let (identifier, protocol) =
            (format!("{}", 359_000_000_000_000u64 + i), if i % 2 == 0 { "teltonika" } else { "wialon" });
        let id: i64 = client
            .query_one(
                "INSERT INTO devices (tenant_id, identifier, protocol) VALUES ($1, $2, $3) RETURNING id",
                &[&tenant_id, &identifier, &protocol],
            )
            .await
            .expect("device")
            .get(0);
        devices_file.push_str(&format!("{identifier} {protocol}\n"));
        devices.push((id, identifier));
    }
    let devices_path = dir.join("devices.txt");
    std::fs::write(&devices_path, devices_file).expect("devices file");

    let mut gateway = Role::new("gateway", &config_path, dir.join("gateway.log"));
    let mut processor = Role::new("processor", &config_path, dir.join("processor.log"));
    gateway.start();
    processor.start();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", teltonika)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the gateway did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Driving through every fault (1.5 s each with its downtime, measured), then 10 s
    // more for what the last faults held up.
    let seconds = faults_wanted as u64 * 2 + 10;
    let acked_path = dir.join("acked.jsonl");
    let mut simulate = Command::new(binary())
        .args(["simulate", "--host", "127.0.0.1", "--json", "--seed", &(seed % 1000).to_string()])
        .args(["--port", &format!("teltonika={teltonika}"), "--port", &format!("wialon={wialon}")])
        .args(["--interval-s", "0.5", "--records", "2", "--seconds", &seconds.to_string()])
        .args(["--offline-share", "0.3", "--corrupt-share", "0.2"])
        .arg("--devices-file")
        .arg(&devices_path)
        .arg("--acked")
        .arg(&acked_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate starts");

    let mut injected = [0usize; FAULTS.len()];
    let mut under_load = 0;
    let mut unexpected_exits = 0;
    for _ in 0..faults_wanted {
        tokio::time::sleep(random.millis(300, 1500)).await;
        unexpected_exits += usize::from(gateway.ensure_running()) + usize::from(processor.ensure_running());
        let fault = (random.next() % FAULTS.len() as u64) as usize;
        let down = random.millis(0, 800);
        match fault {
            0 => {
                gateway.kill();
                tokio::time::sleep(down).await;
                gateway.start();
            }
            1 => {
                processor.kill();
                tokio::time::sleep(down).await;
                processor.start();
            }
            2 => {
                nats.stop();
                tokio::time::sleep(down).await;
                nats.restart();
            }
            3 => {
                postgres.kill();
                tokio::time::sleep(down).await;
                postgres.restart();
            }
            _ => {
                redis.kill();
                tokio::time::sleep(down).await;
                redis.restart();
            }
        }
        injected[fault] += 1;
        under_load += usize::from(simulate.try_wait().ok().flatten().is_none());
    }
    let summary =
        tokio::task::spawn_blocking(move || simulate.wait_with_output()).await.expect("join").expect("simulate");
    assert!(summary.status.success(), "the simulator failed");
    unexpected_exits += usize::from(gateway.ensure_running()) + usize::from(processor.ensure_running());

    // What the devices saw acknowledged, and each device's newest.
    let acked = Acked::read(&acked_path);
    let (lost, duplicated) = acked.lost_and_duplicated(&postgres.url(), Duration::from_secs(180)).await;
    let mut client = fleetgate_store::connect(&postgres.url()).await.expect("connect");
    let stored: i64 = client.query_one("SELECT count(*) FROM positions", &[]).await.expect("count").get(0);
    let segments_wrong = segments_wrong(&mut client).await;

    let waited = Instant::now();
    let live_wrong = loop {
        let live = live_times(&redis.url(), prefix, tenant_id, &devices).await;
        let wrong: Vec<String> = acked
            .newest
            .iter()
            .filter(|(device, time)| live.get(*device) != Some(*time))
            .map(|(device, time)| format!("{device}: live {:?}, newest acknowledged {time}", live.get(device)))
            .collect();
        if wrong.is_empty() || waited.elapsed() > Duration::from_secs(60) {
            break wrong;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let report = serde_json::json!({
        "seed": seed,
        "faults": injected.iter().sum::<usize>(),
        "faults_by_kind": FAULTS.iter().zip(injected).map(|(k, n)| (k.to_string(), n)).collect::<BTreeMap<_, _>>(),
        "faults_while_devices_sent": under_load,
        "roles_that_exited_on_their_own": unexpected_exits,
        "acknowledged": acked.positions.len(),
        "lost": lost,
        "duplicated": duplicated,
        "stored_not_acknowledged": stored - acked.positions.len() as i64,
        "live_state_wrong": live_wrong.len(),
        "segments_wrong": segments_wrong.len(),
        "simulator": serde_json::from_slice::<serde_json::Value>(&summary.stdout).unwrap_or_default(),
    });
    println!("chaos report: {report:#}");
    assert!(acked.positions.len() > 100, "too little was acknowledged to mean anything: {report}");
    assert!(under_load * 10 >= faults_wanted * 9, "faults must hit a system under load: {report}");
    assert_eq!((lost, duplicated), (0, 0), "acknowledged positions lost or duplicated: {report}");
    assert!(live_wrong.is_empty(), "live state is not the newest acknowledged fix: {live_wrong:?}");
    assert!(segments_wrong.is_empty(), "report segments are not the cut of the positions: {segments_wrong:?}");
    assert_eq!(unexpected_exits, 0, "a role exited without being killed (logs in {})", dir.display());
    drop((gateway, processor));
    let _ = std::fs::remove_dir_all(&dir);
}
