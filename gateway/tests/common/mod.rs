//! A gateway on port 0 against the real Postgres and NATS, isolated per test: its own
//! Postgres schema, stream name and subject prefix. A test that needs NATS to die starts
//! a private nats-server instead.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use fleetgate_codecs::Protocol;
use fleetgate_contracts::Config;
use fleetgate_gateway::Listeners;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TELTONIKA_IMEI: &str = "356307042441013";
pub const WIALON_IMEI: &str = "355217044956192";

pub fn nats_url() -> String {
    std::env::var("FLEETGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub struct Harness {
    pub tcp: Vec<(Protocol, SocketAddr)>,
    pub udp: Vec<(Protocol, SocketAddr)>,
    pub metrics: SocketAddr,
    pub config: Config,
    pub postgres: tokio_postgres::Client,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
    pub tenant_id: i64,
    pub schema: String,
}

impl Harness {
    pub async fn start(nats_url: &str, tune: impl FnOnce(&mut Config)) -> Harness {
        let (mut config, postgres) = fleetgate_testkit::isolated_config("fgt", None).await;
        config.nats.url = nats_url.to_owned();
        let tenant_id: i64 = postgres
            .query_one("INSERT INTO tenants (name) VALUES ('test') RETURNING id", &[])
            .await
            .expect("tenant")
            .get(0);
        for (identifier, protocol) in [(TELTONIKA_IMEI, "teltonika"), (WIALON_IMEI, "wialon")] {
            postgres
                .execute(
                    "INSERT INTO devices (tenant_id, identifier, protocol) VALUES ($1, $2, $3)",
                    &[&tenant_id, &identifier, &protocol],
                )
                .await
                .expect("device");
        }
        let schema: String = postgres.query_one("SELECT current_schema()", &[]).await.expect("schema").get(0);
        config.nats.publish_timeout_s = 2;
        config.gateway.handshake_timeout_s = 2;
        config.gateway.drain_timeout_s = 5;
        tune(&mut config);

        let mut listeners = Listeners { tcp: Vec::new(), udp: Vec::new(), metrics: None };
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        // The configured listeners' idle timeout (the ports are free ones of the test's).
        let idle = Duration::from_secs(config.gateway.listeners.first().map_or(600, |l| l.idle_timeout_s));
        for protocol in Protocol::all() {
            let transports = protocol.transports();
            if transports.tcp {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
                tcp.push((protocol, listener.local_addr().expect("addr")));
                listeners.tcp.push((protocol, idle, listener));
            }
            if transports.udp {
                let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
                udp.push((protocol, socket.local_addr().expect("addr")));
                listeners.udp.push((protocol, idle, socket));
            }
        }
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
        let metrics = metrics_listener.local_addr().expect("addr");
        listeners.metrics = Some(metrics_listener);

        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (config, shutdown) = (config.clone(), shutdown.clone());
            async move { fleetgate_gateway::run(listeners, config, shutdown).await.expect("gateway runs") }
        });
        let harness = Harness { tcp, udp, metrics, config, postgres, shutdown, task, tenant_id, schema };
        harness.wait_for_stream().await;
        harness
    }

    pub fn tcp(&self, protocol: Protocol) -> SocketAddr {
        self.tcp.iter().find(|(p, _)| *p == protocol).map(|(_, a)| *a).expect("listener")
    }

    pub fn udp(&self, protocol: Protocol) -> SocketAddr {
        self.udp.iter().find(|(p, _)| *p == protocol).map(|(_, a)| *a).expect("listener")
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(async_nats::connect(self.config.nats.url.as_str()).await.expect("nats"))
    }

    async fn wait_for_stream(&self) {
        let js = self.jetstream().await;
        for _ in 0..100 {
            if js.get_stream(&self.config.nats.stream).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("stream {} never appeared", self.config.nats.stream);
    }

    /// A fresh consumer of the stored position messages.
    async fn positions_consumer(&self) -> jetstream::consumer::PullConsumer {
        let js = self.jetstream().await;
        let stream = js.get_stream(&self.config.nats.stream).await.expect("stream");
        stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: format!("{}.pos.>", self.config.nats.subject_prefix),
                ..Default::default()
            })
            .await
            .expect("consumer")
    }

    /// Where commands for the device registered as `identifier` are queued.
    pub async fn command_subject(&self, identifier: &str) -> String {
        let row = self.postgres.query_one("SELECT id FROM devices WHERE identifier = $1", &[&identifier]).await;
        let device_id: i64 = row.expect("device").get(0);
        format!("{}.cmd.{}.{device_id}", self.config.nats.subject_prefix, self.tenant_id)
    }

    /// The stored non-position messages (command responses, texts), in order.
    pub async fn stored_messages(&self) -> Vec<serde_json::Value> {
        use futures_util::StreamExt;
        let js = self.jetstream().await;
        let stream = js.get_stream(&self.config.nats.stream).await.expect("stream");
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: format!("{}.msg.>", self.config.nats.subject_prefix),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut consumer = consumer;
        let n = consumer.info().await.expect("info").num_pending as usize;
        let mut messages = consumer.fetch().max_messages(n).messages().await.expect("fetch");
        let mut out = Vec::new();
        while let Some(Ok(message)) = messages.next().await {
            out.push(serde_json::from_slice(&message.payload).expect("json"));
        }
        out
    }

    /// Position messages stored in the stream.
    pub async fn stored_frames(&self) -> u64 {
        self.positions_consumer().await.info().await.expect("info").num_pending
    }

    /// The payloads of the stored position messages, in order.
    pub async fn stored_payloads(&self) -> Vec<serde_json::Value> {
        use futures_util::StreamExt;
        let n = self.stored_frames().await;
        let consumer = self.positions_consumer().await;
        let mut messages = consumer.fetch().max_messages(n as usize).messages().await.expect("fetch");
        let mut out = Vec::new();
        while let Some(Ok(message)) = messages.next().await {
            out.push(serde_json::from_slice(&message.payload).expect("json"));
        }
        out
    }

    pub async fn metrics_text(&self) -> String {
        let mut stream = TcpStream::connect(self.metrics).await.expect("metrics");
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("read");
        text
    }

    /// Stops the gateway (it must stop within the drain time) and removes the test's
    /// stream and schema from the shared servers.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("stops in time").expect("no panic");
        if let Ok(client) = async_nats::connect(self.config.nats.url.as_str()).await {
            fleetgate_contracts::stream::delete_streams(&jetstream::new(client), &self.config.nats).await;
        }
        let _ = self.postgres.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema)).await;
    }
}

/// A Teltonika codec 8E packet with one record at `time_ms`.
pub fn teltonika_packet(time_ms: u64) -> bytes::Bytes {
    let record = teltonika_record(time_ms);
    fleetgate_codecs::teltonika::encode::avl_packet(fleetgate_codecs::teltonika::CODEC_8E, &[record])
}

/// One AVL record at `time_ms` (ignition on, external power 13.8 V).
pub fn teltonika_record(time_ms: u64) -> fleetgate_codecs::teltonika::encode::Record {
    use fleetgate_codecs::teltonika::encode::{IoElement, Record};
    Record {
        time_ms,
        priority: 0,
        lon: 252_800_000,
        lat: 546_900_000,
        altitude: 110,
        course: 90,
        satellites: 9,
        speed: 52,
        event_io: 0,
        generation: 0,
        io: vec![(239, IoElement::U8(1)), (66, IoElement::U16(13_800))],
    }
}

/// Reads exactly `n` bytes, or fewer when the peer closes or `wait` passes.
pub async fn read_n(stream: &mut TcpStream, n: usize, wait: Duration) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while got < n {
        match tokio::time::timeout_at(deadline, stream.read(&mut out[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => got += k,
        }
    }
    out.truncate(got);
    out
}

/// True once the peer has closed the connection (within `wait`).
pub async fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(wait, stream.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}
