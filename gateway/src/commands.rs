//! Commands to devices: a per-device queue in a JetStream work-queue stream, delivered
//! over the device's live session, kept until the device takes it.
//!
//! Whoever queues a command (the API) publishes to `P.cmd.{tenant_id}.{device_id}` in
//! the command stream: `{"id": "...", "text": "getinfo"}` or `{"id": "...", "hex": "..."}`.
//! Every gateway listens to `P.cmd.>` on core NATS only to wake the connection of that
//! device, if it holds it; the connection then takes the device's commands one at a time
//! from a durable consumer of its own subject (`cmd_{device_id}`, removed when idle), so
//! a command queued while the device is offline waits in the stream until it connects,
//! wherever it connects. A command is acknowledged (removed) once the device answered
//! it (Teltonika codec 12/14 responses, stored on `P.msg...` with `command_id`) or, for
//! protocols whose devices send no answer, once it was written to the socket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use fleetgate_contracts::messages::CommandMessage;
use fleetgate_contracts::{DeviceId, TenantId, stream};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A command as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The id the caller gave it; the response carries it as `command_id`.
    pub id: String,
    /// What to send, before the protocol's framing.
    pub payload: Bytes,
}

/// Reads a queued command.
pub fn parse_command(data: &[u8]) -> Result<Command, String> {
    CommandMessage::parse(data).map(|(id, payload)| Command { id, payload })
}

/// The connections of this gateway by device id, so one subscription can wake the one
/// that holds a device.
#[derive(Debug)]
pub struct Connected {
    devices: Mutex<HashMap<DeviceId, (u64, mpsc::Sender<()>)>>,
    generation: std::sync::atomic::AtomicU64,
    /// Queue look-ups in flight: a reconnect storm of thousands of devices must not turn
    /// into as many simultaneous JetStream requests.
    pub lookups: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Queue look-ups allowed at once per gateway.
const MAX_LOOKUPS: usize = 32;

impl Default for Connected {
    fn default() -> Self {
        Connected {
            devices: Mutex::default(),
            generation: Default::default(),
            lookups: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
        }
    }
}

/// A connection's registration: its wake-ups, and the ticket to unregister it.
#[derive(Debug)]
pub struct Registration {
    /// Fires when commands may be waiting.
    pub wake_ups: mpsc::Receiver<()>,
    generation: u64,
}

impl Connected {
    /// Registers a connection for `device_id`; a newer connection of the same device
    /// replaces an older one.
    pub fn register(&self, device_id: DeviceId) -> Registration {
        let (sender, wake_ups) = mpsc::channel(1);
        // Look first: commands may have been queued while the device was away.
        let _ = sender.try_send(());
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.devices.lock().unwrap_or_else(|e| e.into_inner()).insert(device_id, (generation, sender));
        Registration { wake_ups, generation }
    }

    /// Forgets the connection of `device_id`, unless a newer one replaced it.
    pub fn unregister(&self, device_id: DeviceId, registration: &Registration) {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        if devices.get(&device_id).is_some_and(|(generation, _)| *generation == registration.generation) {
            devices.remove(&device_id);
        }
    }

    /// Wakes the connection of `device_id`, if this gateway holds it.
    pub fn wake(&self, device_id: DeviceId) {
        if let Some((_, sender)) = self.devices.lock().unwrap_or_else(|e| e.into_inner()).get(&device_id) {
            // A full channel already holds a wake-up.
            let _ = sender.try_send(());
        }
    }
}

/// Wakes connections as commands are queued, until `shutdown`.
pub async fn route_wake_ups(
    nats: async_nats::Client,
    prefix: String,
    connected: std::sync::Arc<Connected>,
    shutdown: CancellationToken,
) {
    let subject = stream::commands_wildcard(&prefix);
    let mut queued = match nats.subscribe(subject.clone()).await {
        Ok(queued) => queued,
        Err(error) => {
            tracing::warn!(%error, subject, "cannot watch for commands; they are delivered at the next login");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = queued.next() => match message { Some(m) => m, None => return },
        };
        if let Some((_, device_id)) = stream::device_of_subject(&message.subject) {
            connected.wake(device_id);
        }
    }
}

/// The queue of one device, as its connection sees it.
pub struct DeviceQueue {
    js: jetstream::Context,
    lookups: std::sync::Arc<tokio::sync::Semaphore>,
    stream: String,
    subject: String,
    durable: String,
    consumer: Option<PullConsumer>,
}

impl DeviceQueue {
    /// The queue of `device_id` of `tenant_id`.
    pub fn new(
        js: jetstream::Context,
        lookups: std::sync::Arc<tokio::sync::Semaphore>,
        stream_name: &str,
        prefix: &str,
        tenant_id: TenantId,
        device_id: DeviceId,
    ) -> Self {
        DeviceQueue {
            js,
            lookups,
            stream: stream_name.to_owned(),
            subject: stream::command_subject(prefix, tenant_id, device_id),
            durable: format!("cmd_{device_id}"),
            consumer: None,
        }
    }

    /// The oldest command not yet acknowledged, if any; errors are logged and read as
    /// "none now" (the next wake-up or login tries again).
    pub async fn next(&mut self) -> Option<jetstream::Message> {
        if self.consumer.is_none() {
            let _permit = self.lookups.acquire().await.ok()?;
            let stream = self.js.get_stream_no_info(&self.stream).await.ok()?;
            // Nothing queued: do not create a consumer for a device that never gets one.
            stream.get_last_raw_message_by_subject(&self.subject).await.ok()?;
            let config = jetstream::consumer::pull::Config {
                durable_name: Some(self.durable.clone()),
                filter_subject: self.subject.clone(),
                ack_wait: Duration::from_secs(120),
                max_ack_pending: 1,
                inactive_threshold: Duration::from_secs(3600),
                ..Default::default()
            };
            match stream.get_or_create_consumer(&self.durable, config).await {
                Ok(consumer) => self.consumer = Some(consumer),
                Err(error) => {
                    tracing::warn!(%error, subject = self.subject, "cannot read the command queue");
                    return None;
                }
            }
        }
        let consumer = self.consumer.as_ref()?;
        let mut batch = consumer.fetch().max_messages(1).messages().await.ok()?;
        match batch.next().await {
            Some(Ok(message)) => Some(message),
            _ => None,
        }
    }
}
