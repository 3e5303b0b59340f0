//! What every connection shares: configuration, the registry, the JetStream handle,
//! metrics, and the decisions the gateway owns, for TCP and UDP alike: who may log in
//! ([`Gateway::login`]), what an event of a device's stream gets ([`Gateway::respond`]),
//! and when data counts as stored ([`Gateway::store_positions`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use fleetgate_codecs::{Batch, Event, Protocol, UtcMillis};
use fleetgate_contracts::clock::now;
use fleetgate_contracts::messages::{self, DeviceMessage, StatusMessage};
use fleetgate_contracts::{Config, DeviceRecord, TenantId, identifiers, stream};
use tokio::sync::Semaphore;

use crate::archive::{Frame, Origin, Outcome, record_of};
use crate::commands::Connected;
use crate::metrics::{LogLimiter, Metrics, Refusal};
use crate::registry::Registry;

/// A device that logged in: the identifier it sent and its registration.
#[derive(Debug, Clone)]
pub struct Device {
    /// The identifier the device sent.
    pub identifier: String,
    /// Its registration.
    pub record: DeviceRecord,
}

/// The outcome of a login.
#[derive(Debug)]
pub enum Login {
    /// Registered for this protocol: answer with the protocol's acceptance.
    Accepted(DeviceRecord),
    /// Refused: answer with `reply` when given, else the protocol's refusal, and close.
    Refused {
        /// A more specific refusal (a protocol's answer to a wrong password).
        reply: Option<Bytes>,
    },
}

/// May a login wait for the database? A TCP connection may (it holds one device); a UDP
/// socket serves every device on it and must not, so an unknown device's
/// auto-registration runs in the background and the datagram goes unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Wait for an auto-registration.
    Allowed,
    /// Decide from memory now.
    Never,
}

/// What one event of a device's stream gets.
#[derive(Debug)]
pub struct Response {
    /// What to send back (after the data was stored, for data).
    pub reply: Option<Bytes>,
    /// What became of the frame, for the archive.
    pub outcome: Outcome,
    /// The stream must end here: a refused login, data before a login, or data that could
    /// not be stored (nothing was acknowledged; the device resends after reconnecting).
    pub close: bool,
    /// A stored batch, handed back for the session to decode into next.
    pub spent: Option<Batch>,
}

impl Response {
    fn reply(reply: Option<Bytes>, outcome: Outcome) -> Self {
        Response { reply, outcome, close: false, spent: None }
    }

    fn close(reply: Option<Bytes>, outcome: Outcome) -> Self {
        Response { reply, outcome, close: true, spent: None }
    }
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
    /// Postgres look-ups of unknown identifiers in the current second: (start, count).
    lookups: std::sync::Mutex<(Instant, u32)>,
    /// Archive records on their way to [`crate::archive::write_batches`].
    archive_queue: tokio::sync::mpsc::Sender<Vec<u8>>,
}

/// Unknown devices registered per minute at most, so a flood of made-up identifiers
/// cannot fill the tenant's device list.
const AUTO_REGISTRATIONS_PER_MINUTE: u32 = 600;

/// Identifiers missing from the registry looked up in Postgres per second at most.
const LOOKUPS_PER_SECOND: u32 = 200;

impl Gateway {
    /// A gateway for `protocols` over an already connected JetStream context; archive
    /// records go to `archive_queue`.
    pub fn new(
        config: Config,
        protocols: Vec<Protocol>,
        registry: Arc<Registry>,
        jetstream: jetstream::Context,
        archive_queue: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Self {
        let slots = config.gateway.max_connections;
        let every = Duration::from_secs(10);
        Gateway {
            metrics: Arc::new(Metrics::new(protocols)),
            config,
            registry,
            jetstream,
            connection_slots: Arc::new(Semaphore::new(slots)),
            refusal_log: LogLimiter::new(every),
            unknown_log: LogLimiter::new(every),
            cap_log: LogLimiter::new(every),
            publish_log: LogLimiter::new(every),
            connected: Arc::new(Connected::default()),
            postgres: tokio::sync::Mutex::new(None),
            auto_registrations: std::sync::Mutex::new((Instant::now(), 0)),
            lookups: std::sync::Mutex::new((Instant::now(), 0)),
            archive_queue,
        }
    }

    /// Reads one identifier the registry does not hold from Postgres (at most
    /// [`LOOKUPS_PER_SECOND`] a second, so a flood of unknown identifiers cannot load the
    /// database); its record when it is registered.
    async fn look_up_in_postgres(&self, identifier: &str) -> Option<DeviceRecord> {
        if !identifiers::is_valid(identifier) {
            return None;
        }
        {
            let mut window = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            if window.0.elapsed() >= Duration::from_secs(1) {
                *window = (Instant::now(), 0);
            }
            if window.1 >= LOOKUPS_PER_SECOND {
                return None;
            }
            window.1 += 1;
        }
        let mut postgres = self.postgres.lock().await;
        if postgres.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            *postgres = fleetgate_store::connect(&self.config.postgres.url).await.ok();
        }
        let client = postgres.as_ref()?;
        if let Err(error) = self.registry.reload_one(client, identifier).await {
            tracing::warn!(%error, identifier, "cannot look an unknown device up in Postgres");
            return None;
        }
        self.registry.lookup(identifier)
    }

    /// Registers an unknown identifier into the auto-registration tenant; the record
    /// when it worked (or another gateway just did it).
    async fn auto_register(&self, tenant_id: TenantId, protocol: Protocol, identifier: &str) -> Option<DeviceRecord> {
        if !identifiers::is_valid(identifier) || !protocol.accepts_identifier(identifier) {
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
            *postgres = fleetgate_store::connect(&self.config.postgres.url).await.ok();
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
                    tracing::info!(identifier, tenant_id = tenant_id.0, %protocol, "unknown device auto-registered");
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
    /// device whose registration holds a password must present it where its protocol
    /// has passwords. With [`Waiting::Never`] an auto-registration runs in the
    /// background and this login is refused (the device's next attempt finds it).
    pub async fn login(
        self: &Arc<Self>,
        protocol: Protocol,
        identifier: &str,
        password: Option<&str>,
        waiting: Waiting,
    ) -> Login {
        let mut found = self.registry.lookup(identifier);
        if found.is_none() {
            // Registered a moment ago, before the change notification arrived: the API's
            // 201 promises the device is accepted at once (contract 3).
            found = match waiting {
                Waiting::Allowed => self.look_up_in_postgres(identifier).await,
                Waiting::Never => {
                    let (gateway, identifier) = (self.clone(), identifier.to_owned());
                    tokio::spawn(async move { gateway.look_up_in_postgres(&identifier).await });
                    None
                }
            };
        }
        if found.is_none()
            && let Some(tenant_id) = self.registry.auto_register_tenant()
        {
            match waiting {
                Waiting::Allowed => found = self.auto_register(tenant_id, protocol, identifier).await,
                Waiting::Never => {
                    let (gateway, identifier) = (self.clone(), identifier.to_owned());
                    tokio::spawn(async move { gateway.auto_register(tenant_id, protocol, &identifier).await });
                }
            }
        }
        let Some(record) = found else {
            self.metrics.refused(Refusal::UnknownDevice);
            if let Some(suppressed) = self.unknown_log.allow() {
                tracing::warn!(identifier, suppressed, "unknown device refused");
            }
            return Login::Refused { reply: None };
        };
        if record.protocol != Some(protocol) {
            self.metrics.refused(Refusal::WrongCredentials);
            let registered = record.protocol.map_or("an unknown protocol", Protocol::name);
            tracing::warn!(identifier, registered, "device registered for another protocol");
            return Login::Refused { reply: None };
        }
        if let (Some(wrong_password), Some(expected)) =
            (protocol.wrong_password_reply(), record.password.as_deref().filter(|p| !p.is_empty()))
            && password != Some(expected)
        {
            self.metrics.refused(Refusal::WrongCredentials);
            tracing::warn!(identifier, "wrong password");
            return Login::Refused { reply: Some(Bytes::from_static(wrong_password)) };
        }
        Login::Accepted(record)
    }

    /// What one event of `device`'s stream (`None` before a login) gets: a login decided,
    /// data stored before its acknowledgement, a message stored before its answer, a
    /// refusal counted. `received` is the frame's receive time (its positions carry it);
    /// `command_id` the command a command answer answers. The same for TCP and UDP.
    pub async fn respond(
        self: &Arc<Self>,
        protocol: Protocol,
        waiting: Waiting,
        device: &mut Option<Device>,
        event: Event,
        received: UtcMillis,
        command_id: Option<&str>,
    ) -> Response {
        match event {
            Event::Login { device: identifier, password, accept, reject } => {
                match self.login(protocol, &identifier, password.as_deref(), waiting).await {
                    Login::Accepted(record) => {
                        *device = Some(Device { identifier, record });
                        Response::reply(Some(accept), Outcome::Login)
                    }
                    Login::Refused { reply } => {
                        *device = None;
                        Response::close(Some(reply.unwrap_or(reject)), Outcome::LoginRefused)
                    }
                }
            }
            Event::Positions { mut batch, ack, .. } => {
                let Some(device) = device.as_ref() else {
                    return Response::close(None, Outcome::LoginRefused);
                };
                // The positions' `received` and the frame's archive time are one value:
                // it is how `fleetgate reprocess` finds the rows a frame became.
                batch.received = Some(received);
                let count = batch.len();
                if !self.store_positions(device, &batch).await {
                    return Response::close(None, Outcome::NotStored(count));
                }
                self.metrics.protocol(protocol).positions.fetch_add(count as u64, Relaxed);
                Response { reply: Some(ack), outcome: Outcome::Positions(count), close: false, spent: Some(batch) }
            }
            Event::Message { message, reply } => {
                let Some(device) = device.as_ref() else {
                    return Response::close(None, Outcome::LoginRefused);
                };
                let outcome = Outcome::Message(message.kind);
                let stored = DeviceMessage::new(
                    (device.record.tenant_id, device.record.device_id),
                    &device.identifier,
                    &message,
                    now(),
                    command_id,
                );
                // Two answers with the same bytes to two commands are two answers, not a
                // resend.
                let mut message_id = stream::frame_message_id(&device.identifier, &message.payload);
                if let Some(command_id) = command_id {
                    message_id = format!("{message_id}:{command_id}");
                }
                let subject = stream::message_subject(self.prefix(), device.record.tenant_id, device.record.device_id);
                if !self.store(subject, message_id, stored.encode()).await {
                    return Response::close(None, outcome);
                }
                Response::reply(reply, outcome)
            }
            Event::KeepAlive { reply } => Response::reply(reply, Outcome::KeepAlive),
            Event::Refused { offset, error, reply } => {
                self.metrics.refused(Refusal::Frame);
                if let Some(suppressed) = self.refusal_log.allow() {
                    tracing::warn!(offset, %error, suppressed, "frame refused");
                }
                Response::reply(reply, Outcome::Refused { offset, error })
            }
        }
    }

    fn prefix(&self) -> &str {
        &self.config.nats.subject_prefix
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
    pub async fn store_positions(&self, device: &Device, batch: &Batch) -> bool {
        let (tenant, id) = (device.record.tenant_id, device.record.device_id);
        let subject = stream::positions_subject(self.prefix(), tenant, id);
        let message_id = stream::frame_message_id(&device.identifier, batch.raw());
        self.store(subject, message_id, messages::encode_positions(tenant, id, batch)).await
    }

    /// Queues one frame's archive record for the archive writer, without waiting: when
    /// the queue is full (JetStream slow or down) the record is dropped and counted,
    /// never the device held up.
    pub fn archive(&self, origin: Origin<'_>, frame: &Frame) {
        // Serializing our own type into memory cannot fail.
        let line = serde_json::to_vec(&record_of(origin, frame)).unwrap_or_default();
        if self.archive_queue.try_send(line).is_err() {
            self.metrics.archive_failures.fetch_add(1, Relaxed);
        }
    }

    /// Publishes that a device came online or went offline. Best effort: a lost status
    /// is corrected by the next one and by the processor's own staleness rule.
    pub async fn publish_status(&self, device: &Device, online: bool) {
        let at = now();
        let record = &device.record;
        let subject = stream::status_subject(self.prefix(), record.tenant_id, record.device_id);
        let status = StatusMessage {
            tenant_id: record.tenant_id,
            device_id: record.device_id,
            device: device.identifier.clone(),
            online,
            time: at.to_string(),
        };
        let message_id = format!("{}:status:{}:{}", device.identifier, at.0, online);
        let _ = self.store(subject, message_id, status.encode()).await;
    }
}
