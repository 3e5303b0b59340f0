//! The API's test harness: an API (and, where a test needs data, a processor) in this
//! process against the real Postgres, Redis and NATS, isolated per test; and a minimal
//! HTTP/1.1 client. It lives with the whole-system tests because it runs two roles.

#![allow(dead_code)]

pub use fleetgate_testkit::eventually;
use std::net::SocketAddr;
use std::time::Duration;

use fleetgate_contracts::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct Api {
    pub address: SocketAddr,
    pub config: Config,
    pub postgres: tokio_postgres::Client,
    pub shutdown: CancellationToken,
}

impl Api {
    pub async fn start(tune: impl FnOnce(&mut Config)) -> Api {
        let _ = tracing_subscriber::fmt().with_test_writer().with_ansi(false).with_env_filter("warn").try_init();
        let (mut config, postgres) = fleetgate_testkit::isolated_config("api", None).await;
        config.processor.batch_wait_ms = 10;
        tune(&mut config);
        let nats = async_nats::connect(config.nats.url.as_str()).await.expect("nats");
        fleetgate_contracts::stream::ensure_stream(&async_nats::jetstream::new(nats), &config.nats)
            .await
            .expect("streams");
        let listener = fleetgate_api::bind(&config).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let (run_config, run_shutdown) = (config.clone(), shutdown.clone());
        tokio::spawn(async move { fleetgate_api::run(listener, run_config, run_shutdown).await.expect("api runs") });
        Api { address, config, postgres, shutdown }
    }

    /// Runs a processor on the same stream, schema and key prefix.
    pub fn start_processor(&self) {
        let (config, shutdown) = (self.config.clone(), self.shutdown.clone());
        tokio::spawn(async move { fleetgate_processor::run(config, shutdown).await.expect("processor runs") });
    }

    /// A tenant and its admin key.
    pub async fn tenant(&self, name: &str) -> (i64, String) {
        fleetgate_api::create_tenant(&self.postgres, name).await.expect("tenant")
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        request(self.address, method, path, token, body.map(|b| ("application/json", b.as_bytes()))).await
    }

    /// Publishes positions of a device as the gateway would.
    pub async fn publish_positions(&self, tenant_id: i64, device_id: i64, identifier: &str, times: &[&str]) {
        let positions: Vec<serde_json::Value> = times
            .iter()
            .enumerate()
            .map(|(i, time)| {
                serde_json::json!({"device": identifier, "protocol": "teltonika", "time": time,
                    "received": "2026-11-25T16:00:00.123Z", "lat": 54.0 + i as f64 / 100.0, "lon": 25.0, "speed": 52,
                    "valid": true, "attrs": {"ignition": true}, "io": {"239": 1}})
            })
            .collect();
        let payload = serde_json::json!({"tenant_id": tenant_id, "device_id": device_id, "positions": positions});
        let nats = async_nats::connect(self.config.nats.url.as_str()).await.expect("nats");
        let js = async_nats::jetstream::new(nats);
        let subject = format!("{}.pos.{tenant_id}.{device_id}", self.config.nats.subject_prefix);
        js.publish(subject, payload.to_string().into()).await.expect("publish").await.expect("stored");
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
        fleetgate_contracts::stream::delete_streams_blocking(&self.config.nats);
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`); chunked bodies decoded.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Response {
    let mut stream = TcpStream::connect(address).await.expect("connect to the api");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some((content_type, body)) = body {
        head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    if let Some((_, body)) = body {
        stream.write_all(body).await.expect("write body");
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await.expect("response in time").ok();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap_or("0").trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            decoded.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = decoded;
    }
    Response { status, headers, body }
}
