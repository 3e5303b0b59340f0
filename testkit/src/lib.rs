//! Test support every crate's tests share (a dev-dependency only): unique names, free
//! ports, `eventually`, an isolated Postgres schema per test, and private PostgreSQL,
//! Redis and nats-server instances (temporary folders, free ports) for tests that kill
//! a server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetgate_contracts::Config;
use fleetgate_store::{SchemaError, connect};

/// `label` made unique to this process and moment, for the names a test gives its
/// schema, streams, subjects and keys.
pub fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{label}{:x}{:x}", std::process::id(), nanos % 0xFFFF_FFFF_FFFF)
}

/// A TCP port free on the loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

/// Polls `check` until it holds; panics with `what` after a minute. For correctness
/// only: nothing here measures speed.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A fresh, empty schema; returns its name and a URL that uses it.
pub async fn isolated_schema(base_url: &str, label: &str) -> Result<(String, String), SchemaError> {
    let client = connect(base_url).await?;
    let schema = unique(&format!("fg_{label}_"));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .map_err(|source| SchemaError::Query { what: "create test schema".into(), source })?;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok((schema.clone(), format!("{base_url}{separator}options=-csearch_path%3D{schema}")))
}

/// The shared test server, from `FLEETGATE_TEST_POSTGRES` or the local default.
pub fn base_url() -> String {
    std::env::var("FLEETGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The shared NATS server, from `FLEETGATE_TEST_NATS` or the local default.
pub fn nats_url() -> String {
    std::env::var("FLEETGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The shared Redis server, from `FLEETGATE_TEST_REDIS` or the local default.
pub fn redis_url() -> String {
    std::env::var("FLEETGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A configuration of one test's own on the shared servers (or on `postgres_url`, a
/// private server): a migrated Postgres schema, and stream, subject prefix and Redis key
/// prefix names (with `label` in them) no other test uses; the archive capped small (a
/// stream's cap is reserved on the server), metrics endpoints off, the API on a free
/// port. Returns it with a connection to the schema.
pub async fn isolated_config(label: &str, postgres_url: Option<String>) -> (Config, tokio_postgres::Client) {
    let url = match postgres_url {
        Some(url) => url,
        None => isolated_schema(&base_url(), &label.to_lowercase()).await.expect("postgres reachable").1,
    };
    let mut postgres = connect(&url).await.expect("connect to postgres");
    fleetgate_store::migrate(&mut postgres).await.expect("migrate");
    let mut config = Config::default();
    config.postgres.url = url;
    config.nats.url = nats_url();
    config.nats.stream = unique(&label.to_uppercase());
    config.nats.command_stream = format!("{}_CMD", config.nats.stream);
    config.nats.subject_prefix = unique(&label.to_lowercase());
    config.nats.archive_max_bytes = 16 << 20;
    config.redis.url = redis_url();
    config.redis.key_prefix = unique(&label.to_lowercase());
    config.gateway.metrics_addr = String::new();
    config.processor.metrics_addr = String::new();
    config.api.bind = "127.0.0.1:0".into();
    (config, postgres)
}

/// Runs a command as the `postgres` user when we are root (Postgres refuses root).
fn as_postgres(program: &str) -> Command {
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

/// A Postgres server program of the newest installed version.
fn postgres_bin(name: &str) -> String {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.last().map(|v| v.join("bin").join(name).display().to_string()).unwrap_or_else(|| name.to_owned())
}

/// Waits until something listens on `port`; panics with `what` after 5 s.
fn wait_for_port(port: u16, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port}");
}

/// Stops a child: SIGTERM and a wait (`graceful`), else SIGKILL, as a crash would.
fn stop_child(child: &mut Option<Child>, graceful: bool) {
    if let Some(mut child) = child.take() {
        if graceful {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        } else {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// A PostgreSQL of a test's own: a fresh cluster in a temporary folder, on a free
/// port, trust authentication, user `postgres`. Removed when dropped.
pub struct PrivatePostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The folder holding its cluster and log.
    pub dir: PathBuf,
}

impl PrivatePostgres {
    /// Creates the cluster and starts the server.
    pub fn start() -> PrivatePostgres {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("fleetgate-pg-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let _ = Command::new("chown").args(["postgres:"]).arg(&dir).status();
        let status = as_postgres(&postgres_bin("initdb"))
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs (install postgresql)");
        assert!(status.success(), "initdb failed");
        let pg = PrivatePostgres { port, dir };
        pg.restart();
        pg
    }

    /// Its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again and waits until it accepts connections.
    pub fn restart(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let status = as_postgres(&postgres_bin("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "private postgres did not start");
    }

    /// Stops at once, as a crash would (`pg_ctl -m immediate`: recovery on restart).
    pub fn kill(&self) {
        let _ = as_postgres(&postgres_bin("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of a test's own, on a free port, keeping nothing on disk.
pub struct PrivateRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis { port: free_port(), child: None };
        redis.restart();
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server again, empty, and waits until it listens.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (install redis-server)");
        self.child = Some(child);
        wait_for_port(self.port, "private redis");
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        stop_child(&mut self.child, false);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A nats-server with JetStream of a test's own: file storage in a temporary folder,
/// a free port. Removed when dropped.
pub struct PrivateNats {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its JetStream storage folder.
    pub dir: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts it.
    pub fn start() -> PrivateNats {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("fleetgate-nats-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut nats = PrivateNats { port, dir, child: None };
        nats.restart();
        nats
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server again on the same storage and waits until it
    /// listens.
    pub fn restart(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (install the nats-server package)");
        self.child = Some(child);
        wait_for_port(self.port, "private nats-server");
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        stop_child(&mut self.child, false);
    }

    /// Stops it the way an operator restarting it would (SIGTERM: JetStream flushes
    /// its store first).
    pub fn stop(&mut self) {
        stop_child(&mut self.child, true);
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
