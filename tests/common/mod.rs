//! The whole system for the binary's tests: `fleetgate serve` on free ports against the
//! shared servers, isolated by its own schema, stream names, subject and key prefix; a
//! tenant from `fleetgate admin create-tenant`; plain HTTP/1.1 to its API.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_testkit::free_port;

/// `fleetgate serve`, killed when dropped.
pub struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running system and what a test needs to talk to it.
pub struct System {
    pub schema: String,
    /// The system's Postgres URL (its schema).
    pub url: String,
    pub client: tokio_postgres::Client,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub teltonika: u16,
    pub wialon: u16,
    /// Every built-in protocol's TCP port, by protocol name.
    pub ports: Vec<(&'static str, u16)>,
    pub api: u16,
    /// The first tenant's admin key.
    pub key: String,
    pub tenant_id: i64,
    /// This system's JetStream stream (`…_CMD`, `…_DEAD`, `…_RAW` beside it).
    stream: String,
    serve: Option<Serve>,
}

/// What a test may add to a [`System`].
#[derive(Default)]
pub struct Options<'a> {
    /// Lines for the `[processor]` section.
    pub processor_extra: &'a str,
    /// SQL run on the system's schema before `serve` starts.
    pub setup_sql: &'a str,
    /// Environment of `serve` (configuration overrides such as `FLEETGATE_MAX_CONNECTIONS`).
    pub env: &'a [(&'a str, &'a str)],
}

/// One HTTP/1.1 request; `(status, body)`, status 0 when nothing answered.
pub fn http(port: u16, method: &str, path: &str, key: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_owned() };
    (status, body)
}

/// A chunked body's content.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_fleetgate")
}

impl System {
    /// Migrates a fresh schema, writes the configuration, creates a tenant, starts
    /// `fleetgate serve` and waits until its API answers.
    pub async fn start(tag: &str) -> System {
        System::start_with(tag, Options::default()).await
    }

    /// [`System::start`] with extra processor settings, SQL run before `serve` starts
    /// (after the first tenant exists) and environment for `serve`.
    pub async fn start_with(tag: &str, options: Options<'_>) -> System {
        let processor_extra = options.processor_extra;
        let (schema, url) =
            fleetgate_testkit::isolated_schema(&fleetgate_testkit::base_url(), tag).await.expect("postgres reachable");
        let mut client = fleetgate_store::connect(&url).await.expect("connect");
        fleetgate_store::migrate(&mut client).await.expect("migrate");
        let dir = std::env::temp_dir().join(format!("fleetgate-{tag}-{schema}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let api = free_port();
        let ports: Vec<(&'static str, u16)> =
            fleetgate_codecs::Protocol::built_in().map(|protocol| (protocol.name(), free_port())).collect();
        let port_of = |name: &str| ports.iter().find(|(n, _)| *n == name).map_or(0, |(_, port)| *port);
        let (teltonika, wialon) = (port_of("teltonika"), port_of("wialon"));
        let listeners: String = ports
            .iter()
            .map(|(protocol, port)| format!("[[gateway.listeners]]\nprotocol = \"{protocol}\"\ntcp_port = {port}\n"))
            .collect();
        let nats = std::env::var("FLEETGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let redis = std::env::var("FLEETGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let name = schema.replace('_', "");
        let stream = name.to_uppercase();
        let config = format!(
            r#"
[postgres]
url = "{url}"
[nats]
url = "{nats}"
stream = "{stream}"
command_stream = "{stream}_CMD"
subject_prefix = "{name}"
archive_max_bytes = 16777216
[redis]
url = "{redis}"
key_prefix = "{name}"
[gateway]
bind = "127.0.0.1"
metrics_addr = ""
{listeners}[processor]
metrics_addr = ""
batch_wait_ms = 20
{processor_extra}
[api]
bind = "127.0.0.1:{api}"
"#
        );
        let config_path = dir.join("fleetgate.toml");
        std::fs::write(&config_path, config).expect("config");
        let mut system = System {
            url: url.clone(),
            schema,
            client,
            dir,
            config_path,
            teltonika,
            wialon,
            ports,
            api,
            key: String::new(),
            tenant_id: 0,
            stream: stream.clone(),
            serve: None,
        };
        (system.tenant_id, system.key) = system.create_tenant("First");
        if !options.setup_sql.is_empty() {
            system.client.batch_execute(options.setup_sql).await.expect("setup SQL");
        }
        let serve = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&system.config_path)
            .envs(options.env.iter().copied())
            .env("FLEETGATE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("serve starts");
        system.serve = Some(Serve(serve));
        let started = Instant::now();
        while system.get("/health", "").0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(60), "fleetgate serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        system
    }

    /// A tenant from `fleetgate admin create-tenant`: its id and admin key.
    pub fn create_tenant(&self, name: &str) -> (i64, String) {
        let created = Command::new(binary())
            .args(["admin", "create-tenant", "--name", name, "--config"])
            .arg(&self.config_path)
            .output()
            .expect("create-tenant runs");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
        let tenant: serde_json::Value = serde_json::from_slice(&created.stdout).expect("tenant JSON");
        (tenant["tenant_id"].as_i64().expect("id"), tenant["api_key"].as_str().expect("key").to_owned())
    }

    /// `fleetgate ARGS --config <this system's>`: exit status and standard output.
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("FLEETGATE_LOG", "warn")
            .output()
            .expect("fleetgate runs");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The TCP port of a built-in protocol.
    pub fn port(&self, protocol: &str) -> u16 {
        self.ports.iter().find(|(name, _)| *name == protocol).map_or(0, |(_, port)| *port)
    }

    pub fn get(&self, path: &str, key: &str) -> (u16, String) {
        http(self.api, "GET", path, key, None)
    }

    pub fn post(&self, path: &str, key: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, body) = http(self.api, "POST", path, key, Some(&body.to_string()));
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    /// Registers a device through the API; its id.
    pub fn register(&self, identifier: &str, protocol: &str) -> i64 {
        let device = serde_json::json!({"identifier": identifier, "name": identifier, "protocol": protocol});
        let (status, body) = self.post("/v1/devices", &self.key, &device);
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().expect("device id")
    }
}

impl Drop for System {
    /// Stops `serve`, then removes the system's streams from the shared NATS.
    fn drop(&mut self) {
        self.serve.take();
        let _ = std::fs::remove_dir_all(&self.dir);
        let nats = fleetgate_contracts::config::NatsConfig {
            url: std::env::var("FLEETGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            stream: self.stream.clone(),
            command_stream: format!("{}_CMD", self.stream),
            ..Default::default()
        };
        fleetgate_contracts::stream::delete_streams_blocking(&nats);
    }
}

/// Polls `check` every 100 ms until it gives a value or `limit` passes.
pub async fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `fleetgate simulate --acked FILE` recorded: every acknowledged (device, time),
/// and each device's newest time.
pub struct Acked {
    pub positions: Vec<(String, String)>,
    pub newest: std::collections::BTreeMap<String, String>,
}

impl Acked {
    pub fn read(path: &std::path::Path) -> Acked {
        use fleetgate_codecs::time::UtcMillis;
        let mut acked = Acked { positions: Vec::new(), newest: Default::default() };
        for line in std::fs::read_to_string(path).expect("acked file").lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("acked line");
            let (device, time) = (entry["device"].as_str().unwrap_or(""), entry["time"].as_str().unwrap_or(""));
            let best = acked.newest.entry(device.to_owned()).or_default();
            if UtcMillis::parse_rfc3339(time) > UtcMillis::parse_rfc3339(best) {
                *best = time.to_owned();
            }
            acked.positions.push((device.to_owned(), time.to_owned()));
        }
        acked
    }

    /// How many acknowledged positions are not in history, and how many are in it more
    /// than once; asked again (the processor may still be catching up) until none is
    /// missing or `limit` passes. `postgres` is connected anew each time (the chaos test's
    /// server may be restarting).
    pub async fn lost_and_duplicated(&self, postgres: &str, limit: Duration) -> (i64, i64) {
        let devices: Vec<&str> = self.positions.iter().map(|a| a.0.as_str()).collect();
        let times: Vec<&str> = self.positions.iter().map(|a| a.1.as_str()).collect();
        let check = "SELECT count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1) FROM (
            SELECT (SELECT count(*) FROM positions p JOIN devices d ON d.id = p.device_id
                    WHERE d.identifier = a.device AND p.fix_time = a.time::timestamptz) AS n
            FROM unnest($1::text[], $2::text[]) AS a(device, time)) counts";
        let started = Instant::now();
        loop {
            let counts = match fleetgate_store::connect(postgres).await {
                Ok(client) => client.query_one(check, &[&devices, &times]).await.ok().map(|r| (r.get(0), r.get(1))),
                Err(_) => None,
            };
            let (lost, duplicated): (i64, i64) = counts.unwrap_or((-1, -1));
            if lost == 0 || started.elapsed() > limit {
                return (lost, duplicated);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A Teltonika codec 8E packet with one record at `time_ms` (Vilnius, 52 km/h, ignition on).
pub fn teltonika_packet(time_ms: u64) -> bytes::Bytes {
    use fleetgate_codecs::teltonika::encode::{IoElement, Record, avl_packet};
    let record = Record {
        time_ms,
        priority: 0,
        lon: 252_694_000,
        lat: 546_962_000,
        altitude: 110,
        course: 90,
        satellites: 7,
        speed: 52,
        event_io: 0,
        generation: 0,
        io: vec![(239, IoElement::U8(1))],
    };
    avl_packet(fleetgate_codecs::teltonika::CODEC_8E, &[record])
}
