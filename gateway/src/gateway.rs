//! What every connection shares: configuration, the registry, the JetStream handle,
//! metrics, and the two decisions the gateway owns: who may log in, and when data
//! counts as stored.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use fleetgate_codecs::hex::HexDisplay;
use fleetgate_codecs::{Batch, DeviceMessage, Protocol};
use tokio::sync::Semaphore;

use crate::archive::{Frame, Origin, Record};
use crate::commands::Connected;
use crate::config::Config;
use crate::connection::now;
use crate::metrics::{LogLimiter, Metrics, Refusal};
use crate::registry::{DeviceRecord, Registry};
use crate::stream;

/// The outcome of a login.
#[derive(Debug)]
pub enum Login {
    /// Registered for this protocol: answer with the protocol's acceptance.
    Accepted(DeviceRecord),
    /// Refused: answer with `reply` when given, else the protocol's refusal, and close.
    Refused {
        /// A more specific refusal (Wialon's wrong password).
        reply: Option<Bytes>,
    },
}

/// Shared by every connection of every listener.
pub struct Gateway {
    /// The configuration the gateway started with.
    pub config: Config,
    /// Registered devices.
    pub registry: Arc<Registry>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// JetStream, where data must be stored before it is acknowledged.
    pub jetstream: jetstream::Context,
    /// Free connection slots.
    pub connection_slots: Arc<Semaphore>,
    /// Limits logging of refused frames.
    pub refusal_log: LogLimiter,
    /// Limits logging of unknown devices.
    pub unknown_log: LogLimiter,
    /// Limits logging of connections over the cap.
    pub cap_log: LogLimiter,
    /// Limits logging of publish failures.
    pub publish_log: LogLimiter,
    /// The devices connected here, for command wake-ups.
    pub connected: Arc<Connected>,
    /// Postgres, opened on the first auto-registration.
    postgres: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Auto-registrations in the current minute: (minute start, count).
    auto_registrations: std::sync::Mutex<(Instant, u32)>,
    /// Archive records on their way to [`crate::archive::write_batches`].
    archive_queue: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// Unknown devices registered per minute at most, so a flood of made-up identifiers
/// cannot fill the tenant's device list.
const AUTO_REGISTRATIONS_PER_MINUTE: u32 = 600;

impl Gateway {
    /// A gateway over an already connected JetStream context; archive records go to
    /// `archive_queue`.
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        jetstream: jetstream::Context,
        archive_queue: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Self {
        let slots = config.gateway.max_connections;
        let every = Duration::from_secs(10);
        Gateway {
            config,
            registry,
            metrics: Arc::new(Metrics::default()),
            jetstream,
            connection_slots: Arc::new(Semaphore::new(slots)),
            refusal_log: LogLimiter::new(every),
            unknown_log: LogLimiter::new(every),
            cap_log: LogLimiter::new(every),
            publish_log: LogLimiter::new(every),
            connected: Arc::new(Connected::default()),
            postgres: tokio::sync::Mutex::new(None),
            auto_registrations: std::sync::Mutex::new((Instant::now(), 0)),
            archive_queue,
        }
    }

    /// Registers an unknown identifier into the auto-registration tenant; the record
    /// when it worked (or another gateway just did it).
    async fn auto_register(&self, tenant_id: i64, protocol: Protocol, identifier: &str) -> Option<DeviceRecord> {
        let plausible = (1..=64).contains(&identifier.len())
            && identifier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plausible {
            return None;
        }
        {
            let mut window = self.auto_registrations.lock().unwrap_or_else(|e| e.into_inner());
            if window.0.elapsed() >= Duration::from_secs(60) {
                *window = (Instant::now(), 0);
            }
            if window.1 >= AUTO_REGISTRATIONS_PER_MINUTE {
                return None;
            }
            window.1 += 1;
        }
        let mut postgres = self.postgres.lock().await;
        if postgres.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            *postgres = fleetgate_schema::connect(&self.config.postgres.url).await.ok();
        }
        let client = postgres.as_ref()?;
        let inserted = client
            .execute(
                "INSERT INTO devices (tenant_id, identifier, protocol, name) VALUES ($1, $2, $3, $2)
                 ON CONFLICT (identifier) DO NOTHING",
                &[&tenant_id, &identifier, &protocol.name()],
            )
            .await;
        match inserted {
            Ok(n) => {
                if n == 1 {
                    tracing::info!(identifier, tenant_id, protocol = protocol.name(), "unknown device auto-registered");
                }
                self.registry.reload_one(client, identifier).await.ok()?;
                self.registry.lookup(identifier)
            }
            Err(error) => {
                tracing::warn!(%error, identifier, "auto-registration failed");
                None
            }
        }
    }

    /// Decides a login: the identifier must be registered (or is registered now, when
    /// the operator enabled auto-registration for a tenant), for this protocol, and a
    /// Wialon device whose registration holds a password must present it.
    pub async fn login(&self, protocol: Protocol, identifier: &str, password: Option<&str>) -> Login {
        let mut found = self.registry.lookup(identifier);
        if found.is_none()
            && let Some(tenant_id) = self.registry.auto_register_tenant()
        {
            found = self.auto_register(tenant_id, protocol, identifier).await;
        }
        let Some(record) = found else {
            self.metrics.refused(Refusal::UnknownDevice);
            if let Some(suppressed) = self.unknown_log.allow() {
                tracing::warn!(identifier, suppressed, "unknown device refused");
            }
            return Login::Refused { reply: None };
        };
        if record.protocol != protocol.name() {
            self.metrics.refused(Refusal::WrongCredentials);
            tracing::warn!(identifier, registered = record.protocol, "device registered for another protocol");
            return Login::Refused { reply: None };
        }
        if let Some(expected) = record.password.as_deref().filter(|p| !p.is_empty()) {
            if password != Some(expected) {
                self.metrics.refused(Refusal::WrongCredentials);
                tracing::warn!(identifier, "wrong password");
                let reply = (protocol == Protocol::Wialon)
                    .then(|| Bytes::from_static(fleetgate_codecs::wialon::WRONG_PASSWORD));
                return Login::Refused { reply };
            }
        }
        Login::Accepted(record)
    }

    /// Publishes and waits for JetStream's ack; true once the data is stored.
    async fn store(&self, subject: String, message_id: String, payload: Bytes) -> bool {
        let timeout = Duration::from_secs(self.config.nats.publish_timeout_s);
        let message = PublishMessage::build().payload(payload).message_id(message_id);
        self.metrics.publishes_in_flight.fetch_add(1, Relaxed);
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let ack = self.jetstream.send_publish(subject, message).await?;
            ack.await.map_err(|e| async_nats::jetstream::context::PublishError::with_source(PublishErrorKind::Other, e))
        })
        .await;
        self.metrics.publishes_in_flight.fetch_sub(1, Relaxed);
        let error = match result {
            Ok(Ok(_ack)) => {
                self.metrics.observe_publish(started.elapsed());
                self.metrics.nats_healthy.store(1, Relaxed);
                return true;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no JetStream ack within {} s", timeout.as_secs()),
        };
        self.metrics.nats_healthy.store(0, Relaxed);
        self.metrics.refused(Refusal::PublishFailed);
        if let Some(suppressed) = self.publish_log.allow() {
            tracing::error!(%error, suppressed, "cannot store in JetStream; not acknowledging");
        }
        false
    }

    /// Stores the positions of one frame; true once JetStream has them.
    pub async fn store_positions(&self, identifier: &str, record: &DeviceRecord, batch: &Batch) -> bool {
        let subject = stream::positions_subject(&self.config.nats.subject_prefix, record);
        let message_id = stream::frame_message_id(identifier, batch.raw());
        self.store(subject, message_id, stream::positions_payload(record, batch)).await
    }

    /// Stores a non-position message (with the command it answers, if any); true once
    /// JetStream has it.
    pub async fn store_message(
        &self,
        identifier: &str,
        record: &DeviceRecord,
        message: &DeviceMessage,
        command_id: Option<&str>,
    ) -> bool {
        let subject = stream::message_subject(&self.config.nats.subject_prefix, record);
        // Two answers with the same bytes to two commands are two answers, not a resend.
        let mut message_id = stream::frame_message_id(identifier, &message.payload);
        if let Some(command_id) = command_id {
            message_id = format!("{message_id}:{command_id}");
        }
        let mut json = serde_json::json!({
            "tenant_id": record.tenant_id,
            "device_id": record.device_id,
            "device": identifier,
            "kind": message.kind,
            "received": now().to_string(),
            "hex": HexDisplay(&message.payload).to_string(),
        });
        if let Some(time) = message.time {
            json["time"] = time.to_string().into();
        }
        if let Ok(text) = std::str::from_utf8(&message.payload) {
            json["text"] = text.into();
        }
        if let Some(command_id) = command_id {
            json["command_id"] = command_id.into();
        }
        self.store(subject, message_id, Bytes::from(json.to_string())).await
    }

    /// Queues one frame's archive record for the archive writer, without waiting: when
    /// the queue is full (JetStream slow or down) the record is dropped and counted,
    /// never the device held up.
    pub fn archive(&self, origin: Origin<'_>, frame: &Frame) {
        // Serializing our own type into memory cannot fail.
        let line = serde_json::to_vec(&Record::new(origin, frame)).unwrap_or_default();
        if self.archive_queue.try_send(line).is_err() {
            self.metrics.archive_failures.fetch_add(1, Relaxed);
        }
    }

    /// Publishes that a device came online or went offline. Best effort: a lost status
    /// is corrected by the next one and by the processor's own staleness rule.
    pub async fn publish_status(&self, identifier: &str, record: &DeviceRecord, online: bool) {
        let at = now();
        let subject = stream::status_subject(&self.config.nats.subject_prefix, record);
        let payload = serde_json::json!({
            "tenant_id": record.tenant_id,
            "device_id": record.device_id,
            "device": identifier,
            "online": online,
            "time": at.to_string(),
        });
        let message_id = format!("{identifier}:status:{}:{}", at.0, online);
        let _ = self.store(subject, message_id, Bytes::from(payload.to_string())).await;
    }
}
