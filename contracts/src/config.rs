//! Configuration: a TOML file (`fleetgate.toml`) with environment overrides. Every field
//! has a default, listed in `docs/CONFIGURATION.md`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use fleetgate_codecs::{Protocol, SessionOptions};
use serde::Deserialize;

/// The whole file; each role reads its own section and the shared ones.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where history, tenants and devices live.
    pub postgres: PostgresConfig,
    /// The JetStream stream between gateway and processor.
    pub nats: NatsConfig,
    /// The gateway role.
    pub gateway: GatewayConfig,
    /// Where live state lives.
    pub redis: RedisConfig,
    /// The processor role.
    pub processor: ProcessorConfig,
    /// The API role.
    pub api: ApiConfig,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the REST API listens on (`FLEETGATE_API_BIND`).
    pub bind: String,
    /// Lifetime of a session token from `POST /v1/auth/login` (seconds).
    pub session_ttl_s: u64,
    /// Failed logins for one address (or from one client) within `login_window_s`
    /// after which further attempts are refused with 429 until the window passes.
    pub login_max_failures: u32,
    /// Window of the login limit (seconds).
    pub login_window_s: u64,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// How long an authenticated token and device metadata are served from memory
    /// before being read again (seconds); changes made through any API process
    /// invalidate them at once.
    pub cache_ttl_s: u64,
    /// How long a composed `GET /v1/live` answer is reused (milliseconds; 0 disables):
    /// the staleness it adds is at most this.
    pub live_cache_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bind: "0.0.0.0:8080".into(),
            session_ttl_s: 12 * 3600,
            login_max_failures: 5,
            login_window_s: 300,
            max_body_bytes: 64 * 1024,
            cache_ttl_s: 60,
            live_cache_ms: 200,
        }
    }
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL (`FLEETGATE_REDIS_URL`).
    pub url: String,
    /// First part of every key, so several installations (or tests) can share a server.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { url: "redis://127.0.0.1:6379".into(), key_prefix: "fleetgate".into() }
    }
}

/// `[processor]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Name of the durable JetStream consumer; every processor process with the same
    /// name shares its work.
    pub consumer: String,
    /// Batches written concurrently by this process (each with its own Postgres
    /// connection).
    pub workers: usize,
    /// A batch is written once it holds this many positions...
    pub batch_max_positions: usize,
    /// ...or this many milliseconds after its first message arrived.
    pub batch_wait_ms: u64,
    /// Messages handed out and not yet acknowledged, across every process of the
    /// consumer; bounds the work in flight.
    pub max_ack_pending: i64,
    /// Seconds before JetStream redelivers a message that was not acknowledged.
    pub ack_wait_s: u64,
    /// A fix more than this many seconds ahead of the processor's clock never becomes
    /// the live position (it is still stored).
    pub future_tolerance_s: u64,
    /// Monthly partitions created ahead of the current month.
    pub partitions_ahead_months: u32,
    /// Partitions whose whole month is older than this many months are detached and
    /// dropped; 0 keeps history forever.
    pub retention_months: u32,
    /// Days of the raw frame archive kept in Postgres (`device_frames`, for the traffic
    /// view and `fleetgate reprocess`); 0 keeps everything.
    pub archive_retention_days: u32,
    /// External power below this voltage (after being above it) is a `power_cut` event.
    pub power_cut_voltage: f64,
    /// Backup battery below this voltage (after being above it) is a `low_battery` event.
    pub low_battery_voltage: f64,
    /// Address of `/metrics` and `/health`; empty to disable
    /// (`FLEETGATE_PROCESSOR_METRICS_ADDR`).
    pub metrics_addr: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            consumer: "processor".into(),
            workers: 2,
            batch_max_positions: 5000,
            batch_wait_ms: 50,
            max_ack_pending: 50_000,
            ack_wait_s: 30,
            future_tolerance_s: 300,
            partitions_ahead_months: 2,
            retention_months: 0,
            archive_retention_days: 7,
            power_cut_voltage: 3.0,
            low_battery_voltage: 3.4,
            metrics_addr: "0.0.0.0:9103".into(),
        }
    }
}

/// `[postgres]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL (`FLEETGATE_POSTGRES_URL`).
    pub url: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig { url: "postgres://postgres@127.0.0.1:5432/test".into() }
    }
}

/// `[nats]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL (`FLEETGATE_NATS_URL`).
    pub url: String,
    /// JetStream stream name.
    pub stream: String,
    /// First token of every subject, so several installations can share a server.
    pub subject_prefix: String,
    /// Messages older than this are dropped from the stream (days).
    pub max_age_days: u64,
    /// Size cap of the stream in bytes (oldest dropped first); -1 for none.
    pub max_bytes: i64,
    /// Stream replicas (1 on one server; 3 on a cluster).
    pub replicas: usize,
    /// How long JetStream remembers message ids to drop resent frames (seconds).
    pub duplicate_window_s: u64,
    /// How long the gateway waits for JetStream's publish ack (seconds).
    pub publish_timeout_s: u64,
    /// Work-queue stream of commands waiting for their devices.
    pub command_stream: String,
    /// Commands not taken by their device within this many days are dropped.
    pub command_max_age_days: u64,
    /// Keep every frame as received (and every reply and command) in the raw frame
    /// archive stream `{stream}_RAW`.
    pub archive: bool,
    /// Archived frames older than this are dropped from the archive stream (days).
    pub archive_max_age_days: u64,
    /// Size cap of the archive stream in bytes (oldest dropped first); -1 for none.
    /// JetStream reserves this much of its storage when it creates the stream.
    pub archive_max_bytes: i64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            stream: "FLEETGATE".into(),
            subject_prefix: "fleetgate".into(),
            max_age_days: 7,
            max_bytes: -1,
            replicas: 1,
            duplicate_window_s: 600,
            publish_timeout_s: 10,
            command_stream: "FLEETGATE_COMMANDS".into(),
            command_max_age_days: 7,
            archive: true,
            archive_max_age_days: 7,
            archive_max_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the listeners bind to (`FLEETGATE_BIND`).
    pub bind: IpAddr,
    /// One entry per protocol.
    pub listeners: Vec<ListenerConfig>,
    /// Open TCP connections beyond which new ones are refused (`FLEETGATE_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Seconds a new connection has to identify itself.
    pub handshake_timeout_s: u64,
    /// Seconds to finish frames in flight on shutdown before closing anyway.
    pub drain_timeout_s: u64,
    /// Seconds between full reloads of the device registry (a safety net under the
    /// change notifications).
    pub registry_refresh_s: u64,
    /// Address of `/metrics` and `/health`; empty to disable (`FLEETGATE_METRICS_ADDR`).
    pub metrics_addr: String,
    /// Frame and line limits, checked before buffering.
    pub limits: Limits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            listeners: Protocol::built_in().map(ListenerConfig::default_for).collect(),
            max_connections: 10_000,
            handshake_timeout_s: 30,
            drain_timeout_s: 10,
            registry_refresh_s: 60,
            metrics_addr: "0.0.0.0:9102".into(),
            limits: Limits::default(),
        }
    }
}

/// One protocol's listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The protocol, by its name (`teltonika`, `wialon`, ...; an unknown name is an error).
    pub protocol: Protocol,
    /// TCP port; absent for none.
    #[serde(default)]
    pub tcp_port: Option<u16>,
    /// UDP port; absent for none.
    #[serde(default)]
    pub udp_port: Option<u16>,
    /// Seconds of silence after which a connection closes.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_s: u64,
}

fn default_idle_timeout() -> u64 {
    600
}

impl ListenerConfig {
    /// The default: the protocol's transports on the port Traccar uses.
    pub fn default_for(protocol: Protocol) -> Self {
        let port = protocol.default_port();
        let transports = protocol.transports();
        ListenerConfig {
            protocol,
            tcp_port: transports.tcp.then_some(port),
            udp_port: transports.udp.then_some(port),
            idle_timeout_s: default_idle_timeout(),
        }
    }
}

/// Frame and line limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Teltonika AVL data length.
    pub max_avl_len: u32,
    /// Teltonika codec 12-15 data length.
    pub max_gprs_len: u32,
    /// Text protocol line length.
    pub max_line_len: usize,
    /// Text protocol binary part (images, files).
    pub max_binary_len: usize,
    /// Largest frame of binary protocols with one length per frame (GT06, JT/T 808).
    pub max_frame_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let defaults = SessionOptions::default();
        Limits {
            max_avl_len: defaults.max_avl_len,
            max_gprs_len: defaults.max_gprs_len,
            max_line_len: defaults.max_line_len,
            max_binary_len: defaults.max_binary_len,
            max_frame_len: defaults.max_frame_len,
        }
    }
}

impl Limits {
    /// The session options a gateway session runs with.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            allow_anonymous: false,
            max_avl_len: self.max_avl_len,
            max_gprs_len: self.max_gprs_len,
            max_line_len: self.max_line_len,
            max_binary_len: self.max_binary_len,
            max_frame_len: self.max_frame_len,
            device: Default::default(),
        }
    }
}

impl GatewayConfig {
    /// Handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_s)
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value is wrong.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` (defaults when `None`), then applies the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse { path: shown, message: e.to_string() })?
            }
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Environment overrides, for containers and tests.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(url) = var("FLEETGATE_POSTGRES_URL") {
            self.postgres.url = url;
        }
        if let Some(url) = var("FLEETGATE_NATS_URL") {
            self.nats.url = url;
        }
        if let Some(url) = var("FLEETGATE_REDIS_URL") {
            self.redis.url = url;
        }
        if let Some(bind) = var("FLEETGATE_API_BIND") {
            self.api.bind = bind;
        }
        if let Some(addr) = var("FLEETGATE_PROCESSOR_METRICS_ADDR") {
            self.processor.metrics_addr = addr;
        }
        if let Some(bind) = var("FLEETGATE_BIND") {
            self.gateway.bind = bind
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("FLEETGATE_BIND={bind:?} is not an IP address")))?;
        }
        if let Some(max) = var("FLEETGATE_MAX_CONNECTIONS") {
            self.gateway.max_connections = max
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("FLEETGATE_MAX_CONNECTIONS={max:?} is not a number")))?;
        }
        if let Some(addr) = var("FLEETGATE_METRICS_ADDR") {
            self.gateway.metrics_addr = addr;
        }
        Ok(())
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for listener in &self.gateway.listeners {
            let (transports, name) = (listener.protocol.transports(), listener.protocol.name());
            if listener.tcp_port.is_some() && !transports.tcp || listener.udp_port.is_some() && !transports.udp {
                return Err(ConfigError::Invalid(format!(
                    "listener {name}: the protocol has no {} transport",
                    if transports.tcp { "UDP" } else { "TCP" }
                )));
            }
        }
        if self.gateway.max_connections == 0 {
            return Err(ConfigError::Invalid("gateway.max_connections must be at least 1".into()));
        }
        let processor = &self.processor;
        if processor.workers == 0 || processor.batch_max_positions == 0 || processor.max_ack_pending < 1 {
            return Err(ConfigError::Invalid(
                "processor.workers, processor.batch_max_positions and processor.max_ack_pending must be at least 1"
                    .into(),
            ));
        }
        let invalid_name = |name: &str| name.is_empty() || name.contains(['.', ' ', '*', '>']);
        if invalid_name(&processor.consumer) {
            return Err(ConfigError::Invalid(
                "processor.consumer must be a non-empty name without '.', ' ', '*' or '>'".into(),
            ));
        }
        if [&self.nats.stream, &self.nats.subject_prefix, &self.nats.command_stream]
            .into_iter()
            .any(|n| invalid_name(n))
            || self.nats.stream == self.nats.command_stream
        {
            return Err(ConfigError::Invalid(
                "nats.stream, nats.command_stream and nats.subject_prefix must be non-empty, without '.', ' ', '*' \
                 or '>', and the two streams must differ"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_traccar_ports() {
        let config = Config::default();
        let listening: Vec<Protocol> = config.gateway.listeners.iter().map(|l| l.protocol).collect();
        assert_eq!(listening, Protocol::built_in().collect::<Vec<_>>());
        for listener in &config.gateway.listeners {
            let port = Some(listener.protocol.default_port());
            assert!(listener.tcp_port == port || listener.udp_port == port, "{listener:?}");
        }
        assert_eq!(config.gateway.listeners[0].idle_timeout_s, 600);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn file_and_environment() -> Result<(), Box<dyn std::error::Error>> {
        let mut config: Config = toml::from_str(
            r#"
            [nats]
            stream = "TEST"
            [gateway]
            max_connections = 5
            [[gateway.listeners]]
            protocol = "wialon"
            tcp_port = 15039
            idle_timeout_s = 60
            "#,
        )?;
        config.apply_env(|name| (name == "FLEETGATE_MAX_CONNECTIONS").then(|| "7".to_owned()))?;
        assert_eq!(config.nats.stream, "TEST");
        assert_eq!(config.gateway.max_connections, 7);
        assert_eq!(config.gateway.listeners.len(), 1);
        assert_eq!(config.gateway.listeners[0].udp_port, None);
        assert!(toml::from_str::<Config>("[gateway]\nmax_conections = 5").is_err(), "typos are errors");
        let unknown = toml::from_str::<Config>("[[gateway.listeners]]\nprotocol = \"nope\"\ntcp_port = 1");
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown protocol \"nope\" (known: teltonika, wialon")));
        Ok(())
    }
}
