//! A processor against the real NATS, Redis and Postgres, isolated per test: its own
//! Postgres schema, stream, subject prefix, consumer and Redis key prefix. Tests that
//! need a server to die start a private Postgres or Redis instead.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use fleetgate_testkit::{PrivatePostgres, PrivateRedis, eventually, unique};

use async_nats::jetstream;
use fleetgate_contracts::Config;
use redis::AsyncCommands;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const IMEI: &str = "356307042441013";

#[allow(unused_imports)]
pub use fleetgate_testkit::{nats_url, redis_url};

/// Creates the tenant and device rows; returns their ids.
pub async fn seed(postgres: &tokio_postgres::Client, speed_limit: Option<f32>) -> (i64, i64) {
    let tenant_id: i64 = postgres
        .query_one("INSERT INTO tenants (name) VALUES ('test') RETURNING id", &[])
        .await
        .expect("tenant")
        .get(0);
    let device_id: i64 = postgres
        .query_one(
            "INSERT INTO devices (tenant_id, identifier, protocol, speed_limit) VALUES ($1, $2, 'teltonika', $3) RETURNING id",
            &[&tenant_id, &IMEI, &speed_limit],
        )
        .await
        .expect("device")
        .get(0);
    (tenant_id, device_id)
}

pub struct Harness {
    pub config: Config,
    pub postgres: tokio_postgres::Client,
    pub jetstream: jetstream::Context,
    pub nats: async_nats::Client,
    pub redis: redis::aio::MultiplexedConnection,
    pub tenant_id: i64,
    pub device_id: i64,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<()>>,
    sequence: u64,
}

impl Harness {
    /// A processor on an isolated schema of the shared Postgres (or `postgres_url`).
    pub async fn start(postgres_url: Option<String>, redis_url: String, speed_limit: Option<f32>) -> Harness {
        let _ = tracing_subscriber::fmt().with_test_writer().with_ansi(false).with_env_filter("info").try_init();
        let (mut config, postgres) = fleetgate_testkit::isolated_config("proc", postgres_url).await;
        let (tenant_id, device_id) = seed(&postgres, speed_limit).await;
        config.redis.url = redis_url;
        config.processor.batch_wait_ms = 20;
        config.processor.ack_wait_s = 5;
        let nats = async_nats::connect(config.nats.url.as_str()).await.expect("nats");
        let jetstream = jetstream::new(nats.clone());
        fleetgate_contracts::stream::ensure_stream(&jetstream, &config.nats).await.expect("stream");
        let redis = redis::Client::open(config.redis.url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let mut harness = Harness {
            config,
            postgres,
            jetstream,
            nats,
            redis,
            tenant_id,
            device_id,
            shutdown: CancellationToken::new(),
            task: None,
            sequence: 0,
        };
        harness.run_processor();
        harness
    }

    pub fn run_processor(&mut self) {
        self.shutdown = CancellationToken::new();
        let (config, shutdown) = (self.config.clone(), self.shutdown.clone());
        self.task = Some(tokio::spawn(async move {
            fleetgate_processor::run(config, shutdown).await.expect("processor runs");
        }));
    }

    pub async fn stop_processor(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}.{}.{}", self.config.nats.subject_prefix, self.tenant_id, self.device_id)
    }

    /// Publishes raw bytes on a subject of this harness, with a fresh message id.
    pub async fn publish_raw(&mut self, kind: &str, payload: String) {
        self.sequence += 1;
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("test-{}", self.sequence));
        let ack = self.jetstream.send_publish(self.subject(kind), message).await.expect("publish");
        ack.await.expect("stored");
    }

    /// Publishes one message with these positions (JSON objects without `device`).
    pub async fn publish_positions(&mut self, positions: &[serde_json::Value]) {
        let payload = serde_json::json!({
            "tenant_id": self.tenant_id,
            "device_id": self.device_id,
            "positions": positions,
        });
        self.publish_raw("pos", payload.to_string()).await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.postgres.query_one(sql, &[]).await.expect("count").get(0)
    }

    /// The device's live hash field.
    pub async fn live_field(&self, field: &str) -> Option<String> {
        let key = fleetgate_contracts::keys::live_key(
            &self.config.redis.key_prefix,
            fleetgate_contracts::TenantId(self.tenant_id),
            fleetgate_contracts::DeviceId(self.device_id),
        );
        let mut redis = self.redis.clone();
        redis.hget(key, field).await.expect("redis hget")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        fleetgate_contracts::stream::delete_streams_blocking(&self.config.nats);
    }
}

/// A position at `time` with these attrs.
pub fn position(time: &str, lat: f64, speed: f64, valid: bool, attrs: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "device": IMEI, "protocol": "teltonika", "time": time, "received": now_text(),
        "lat": lat, "lon": 25.0, "speed": speed, "valid": valid, "attrs": attrs, "io": {"239": 1},
    })
}

pub fn now_text() -> String {
    fleetgate_contracts::clock::now().to_string()
}

/// Trips, stops and summary of a device's segments.
pub fn report(
    pieces: &[fleetgate_rules::reports::Segment],
    rules: &fleetgate_rules::reports::Rules,
) -> (Vec<fleetgate_rules::reports::Trip>, Vec<fleetgate_rules::reports::Stop>, fleetgate_rules::reports::Summary) {
    let (trips, stops) = fleetgate_rules::reports::trips_and_stops(pieces, rules);
    let total = fleetgate_rules::reports::summary(pieces, &trips, rules);
    (trips, stops, total)
}

/// Equal but for floating-point rounding (sums taken in another order).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}
