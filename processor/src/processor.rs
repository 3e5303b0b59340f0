//! The processor's run loop: workers pulling batches from one durable consumer, writing
//! history, then live state, and acknowledging only after both; plus the maintenance
//! tasks (partitions, retention, live-state repair, lag) and `/metrics`.
//!
//! Acknowledgement rule: a message is acked once its batch committed in Postgres and
//! its live update either reached Redis or, with Redis down, was recorded in
//! `live_pending` in Postgres, from which the repair task rebuilds live state when
//! Redis is back. Either way nothing acknowledged is owed to anyone but ourselves.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, Message};
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::Config;
use fleetgate_contracts::clock::now;
use fleetgate_contracts::stream;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive;
use crate::geofence::Fences;
use fleetgate_rules::events::Thresholds;
use fleetgate_rules::track;
use fleetgate_store::partitions::Partitions;
use fleetgate_store::rows::{POSITION_COLUMNS, Timestamp, position_identity, write_position};

use crate::history::{History, NewEvent};
use crate::live::{Live, LiveUpdate, reduce};
use crate::metrics::Metrics;
use crate::segments;
use fleetgate_contracts::messages::{self, DeviceMessage, Incoming, Position, Status};
use fleetgate_contracts::{DeviceId, TenantId};

/// Why the processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS or the stream/consumer.
    #[error("NATS at {url}: {message}")]
    Nats {
        /// Server.
        url: String,
        /// What failed.
        message: String,
    },
    /// The metrics listener.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address.
        address: String,
        /// The reason.
        source: std::io::Error,
    },
}

/// What the workers and tasks share.
struct Shared {
    config: Config,
    metrics: Arc<Metrics>,
    nats: async_nats::Client,
    jetstream: jetstream::Context,
    partitions: Partitions,
    /// `device_frames` partitions (the raw frame archive's index).
    archive_partitions: Partitions,
    /// Every tenant's geofences.
    fences: Fences,
}

impl Shared {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            power_cut_voltage: self.config.processor.power_cut_voltage,
            low_battery_voltage: self.config.processor.low_battery_voltage,
        }
    }

    fn latest_allowed(&self) -> UtcMillis {
        UtcMillis(now().0 + self.config.processor.future_tolerance_s as i64 * 1000)
    }

    async fn connect_history(&self) -> Option<History> {
        match fleetgate_store::connect(&self.config.postgres.url).await {
            Ok(client) => {
                Some(History::new(client, self.partitions.clone(), self.thresholds()).with_fences(self.fences.clone()))
            }
            Err(error) => {
                self.metrics.postgres_up.store(0, Relaxed);
                tracing::error!(%error, "postgres unavailable; batches stay unacknowledged and are redelivered");
                None
            }
        }
    }

    async fn connect_live(&self) -> Option<Live> {
        match Live::connect(&self.config.redis.url, &self.config.redis.key_prefix).await {
            Ok(live) => Some(live),
            Err(error) => {
                self.metrics.redis_up.store(0, Relaxed);
                tracing::error!(%error, "redis unavailable; live state will be rebuilt from history when it returns");
                None
            }
        }
    }
}

/// Creates (or finds) the durable consumer every processor process shares.
pub async fn consumer(js: &jetstream::Context, config: &Config) -> Result<PullConsumer, async_nats::Error> {
    let stream = js.get_stream(&config.nats.stream).await?;
    let processor = &config.processor;
    let consumer = stream
        .get_or_create_consumer(
            &processor.consumer,
            pull::Config {
                durable_name: Some(processor.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(processor.ack_wait_s),
                max_ack_pending: processor.max_ack_pending,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// Runs the processor until `shutdown`; a batch in progress finishes first.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let url = config.nats.url.clone();
    let nats_error = |message: String| StartError::Nats { url: url.clone(), message };
    let nats = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .connect(config.nats.url.as_str())
        .await
        .map_err(|e| nats_error(e.to_string()))?;
    let jetstream = jetstream::new(nats.clone());
    stream::ensure_stream(&jetstream, &config.nats).await.map_err(|e| nats_error(e.to_string()))?;
    let consumer = consumer(&jetstream, &config).await.map_err(|e| nats_error(e.to_string()))?;
    let archive_consumer = archive::consumer(&jetstream, &config).await.map_err(|e| nats_error(e.to_string()))?;
    let metrics_listener = match config.processor.metrics_addr.as_str() {
        "" => None,
        address => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address: address.to_owned(), source })?,
        ),
    };
    let shared = Arc::new(Shared {
        metrics: Arc::new(Metrics::default()),
        partitions: Partitions::default(),
        archive_partitions: archive::partitions(),
        fences: Fences::default(),
        config,
        nats,
        jetstream,
    });
    tracing::info!(
        consumer = shared.config.processor.consumer,
        workers = shared.config.processor.workers,
        "processor consuming {}",
        shared.config.nats.stream
    );
    // Geofences before the first batch (the maintenance task reloads them).
    if let Ok(client) = fleetgate_store::connect(&shared.config.postgres.url).await
        && let Err(error) = shared.fences.load(&client).await
    {
        tracing::warn!(%error, "geofences not loaded yet");
    }
    let tracker = TaskTracker::new();
    let mut inboxes = Vec::new();
    for _ in 0..shared.config.processor.workers {
        let (sender, inbox) = mpsc::channel(shared.config.processor.batch_max_positions);
        inboxes.push(sender);
        tracker.spawn(run_worker(shared.clone(), inbox, shutdown.clone()));
    }
    tracker.spawn(pull_and_route(shared.clone(), consumer.clone(), inboxes, shutdown.clone()));
    tracker.spawn(maintain(shared.clone(), consumer, shutdown.clone()));
    tracker.spawn(archive::run(
        Arc::new(shared.config.clone()),
        archive_consumer,
        shared.archive_partitions.clone(),
        shared.metrics.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = metrics_listener {
        let metrics = shared.metrics.clone();
        tracker.spawn(fleetgate_contracts::metrics::serve(listener, move || metrics.render(), shutdown.clone()));
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Pulls from the durable consumer and hands each message to the worker that owns its
/// device (device id modulo workers), so the workers of one process never write the
/// same device at once and never wait on each other's locks.
async fn pull_and_route(
    shared: Arc<Shared>,
    consumer: PullConsumer,
    workers: Vec<mpsc::Sender<Message>>,
    shutdown: CancellationToken,
) {
    let processor = &shared.config.processor;
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let pull = consumer
            .stream()
            .max_messages_per_batch(processor.batch_max_positions.clamp(1, 1000))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match pull {
            Ok(messages) => messages,
            Err(error) => {
                tracing::error!(%error, "cannot pull from the stream");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "pull interrupted; pulling again");
                    break;
                }
                None => break,
            };
            backoff.reset();
            // `P.kind.tenant.device`: the last token is the device id.
            let device: u64 = message.subject.rsplit('.').next().and_then(|d| d.parse().ok()).unwrap_or(0);
            let worker = &workers[(device % workers.len() as u64) as usize];
            if worker.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// One worker: batch what the router hands it, write, ack, forever.
async fn run_worker(shared: Arc<Shared>, mut inbox: mpsc::Receiver<Message>, shutdown: CancellationToken) {
    let processor = &shared.config.processor;
    let batch_wait = Duration::from_millis(processor.batch_wait_ms);
    let mut history: Option<History> = None;
    let mut live: Option<Live> = None;
    let mut backoff = Backoff::default();
    loop {
        // The first message waits as long as it takes; the rest of the batch only until
        // the batch is full or `batch_wait` has passed.
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = inbox.recv() => first,
        };
        let Some(first) = first else { return };
        let mut positions_hint = 1 + first.payload.len() / 400;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batch_wait;
        while positions_hint < processor.batch_max_positions {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(message)) => {
                    positions_hint += 1 + message.payload.len() / 400;
                    batch.push(message);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if process(&shared, &mut history, &mut live, batch).await {
            backoff.reset();
        } else {
            backoff.wait(&shutdown).await;
        }
    }
}

/// Exponential backoff between failed attempts, 250 ms to 5 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self, shutdown: &CancellationToken) {
        let delay = Duration::from_millis(250 << self.0.min(4)).min(Duration::from_secs(5));
        self.0 += 1;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Processes one batch; false when it could not be written (and was handed back).
async fn process(
    shared: &Shared,
    history_slot: &mut Option<History>,
    live_slot: &mut Option<Live>,
    batch: Vec<Message>,
) -> bool {
    let prefix = &shared.config.nats.subject_prefix;
    let mut positions: Vec<Position> = Vec::new();
    let mut device_messages: Vec<DeviceMessage> = Vec::new();
    let mut statuses: Vec<Status> = Vec::new();
    let mut readable: Vec<Message> = Vec::with_capacity(batch.len());
    for message in batch {
        match messages::parse(prefix, message.subject.as_str(), &message.payload) {
            Ok(Incoming::Positions(mut p)) => positions.append(&mut p),
            Ok(Incoming::Message(m)) => device_messages.push(m),
            Ok(Incoming::Status(s)) => statuses.push(s),
            Err(reason) => {
                dead_letter(shared, message, &reason.to_string()).await;
                continue;
            }
        }
        readable.push(message);
    }
    if readable.is_empty() {
        return true;
    }

    if history_slot.as_ref().is_none_or(History::is_closed) {
        *history_slot = shared.connect_history().await;
    }
    let Some(history) = history_slot.as_mut() else {
        hand_back(readable).await;
        return false;
    };
    let started = Instant::now();
    let written = match history.write(&positions, &device_messages, &statuses).await {
        Ok(written) => written,
        Err(error) => {
            shared.metrics.postgres_up.store(0, Relaxed);
            shared.metrics.batch_failures.fetch_add(1, Relaxed);
            tracing::error!(error = %error_chain(&error), "cannot write a batch to postgres; it will be redelivered");
            if history.is_closed() {
                *history_slot = None;
            }
            hand_back(readable).await;
            return false;
        }
    };
    let metrics = &shared.metrics;
    metrics.observe_commit(started.elapsed());
    metrics.postgres_up.store(1, Relaxed);
    metrics.batch_positions.observe(positions.len() as f64);
    metrics.positions_stored.fetch_add(written.inserted, Relaxed);
    metrics.positions_duplicate.fetch_add(written.duplicates, Relaxed);
    metrics.events.fetch_add(written.events.len() as u64, Relaxed);

    let updates = reduce(&positions, &statuses, shared.latest_allowed());
    if live_slot.is_none() {
        *live_slot = shared.connect_live().await;
    }
    let moved = match live_slot.as_mut() {
        Some(live) => match live.apply(&updates).await {
            Ok(moved) => {
                metrics.redis_up.store(1, Relaxed);
                Some(moved)
            }
            Err(error) => {
                metrics.redis_up.store(0, Relaxed);
                tracing::error!(%error, "cannot update live state in redis; recording it for a rebuild");
                None
            }
        },
        None => None,
    };
    let moved = match moved {
        Some(moved) => moved,
        None => {
            if let Err(error) = record_pending(history, &updates).await {
                tracing::error!(error = %error_chain(&error), "cannot record pending live state; batch will be redelivered");
                hand_back(readable).await;
                return false;
            }
            Vec::new()
        }
    };
    metrics.live_moves.fetch_add(moved.len() as u64, Relaxed);

    for message in readable {
        match message.ack().await {
            Ok(()) => {
                metrics.messages_acked.fetch_add(1, Relaxed);
            }
            // Redelivery of a stored batch is harmless: the write is idempotent.
            Err(error) => tracing::warn!(%error, "ack failed; the message will be redelivered"),
        }
    }
    publish_live(shared, &updates, &moved, &written.events).await;
    true
}

/// Pushes moved positions and new events to streaming clients (core NATS, best effort:
/// a client that misses one reads the live state).
async fn publish_live(
    shared: &Shared,
    updates: &std::collections::BTreeMap<DeviceId, LiveUpdate<'_>>,
    moved: &[DeviceId],
    events: &[NewEvent],
) {
    let prefix = &shared.config.nats.subject_prefix;
    for device_id in moved {
        if let Some(update) = updates.get(device_id)
            && let Some((_, json)) = &update.fix
        {
            let subject = stream::live_subject(prefix, update.tenant_id, device_id);
            let _ = shared.nats.publish(subject, bytes::Bytes::copy_from_slice(json.as_bytes())).await;
        }
    }
    for (tenant_id, device_id, json) in events {
        let subject = stream::event_subject(prefix, *tenant_id, device_id);
        let _ = shared.nats.publish(subject, bytes::Bytes::copy_from_slice(json.as_bytes())).await;
    }
}

/// Records devices whose live state Redis did not get.
async fn record_pending(
    history: &mut History,
    updates: &std::collections::BTreeMap<DeviceId, LiveUpdate<'_>>,
) -> Result<(), tokio_postgres::Error> {
    let devices: Vec<DeviceId> = updates.keys().copied().collect();
    let tenants: Vec<TenantId> = updates.values().map(|u| u.tenant_id).collect();
    history
        .client()
        .execute(
            "INSERT INTO live_pending (device_id, tenant_id) SELECT * FROM unnest($1::bigint[], $2::bigint[]) \
             ON CONFLICT (device_id) DO UPDATE SET since = clock_timestamp()",
            &[&devices, &tenants],
        )
        .await?;
    Ok(())
}

/// Hands messages back for redelivery after a short delay.
async fn hand_back(messages: Vec<Message>) {
    for message in messages {
        let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
    }
}

/// Sends an unreadable message to the dead-letter subject with the reason, then
/// terminates it; if the dead-letter publish fails it stays unacknowledged.
async fn dead_letter(shared: &Shared, message: Message, reason: &str) {
    let prefix = &shared.config.nats.subject_prefix;
    let kind = messages::subject_kind(prefix, message.subject.as_str()).unwrap_or("unknown");
    let kind = if matches!(kind, "pos" | "msg" | "status") { kind } else { "unknown" };
    let mut headers = HeaderMap::new();
    headers.insert("Fleetgate-Reason", reason);
    headers.insert("Fleetgate-Subject", message.subject.as_str());
    let subject = stream::dead_letter_subject(prefix, kind);
    let published = match shared.jetstream.publish_with_headers(subject, headers, message.payload.clone()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if published {
        shared.metrics.dead_letters.fetch_add(1, Relaxed);
        tracing::warn!(subject = message.subject.as_str(), reason, "message sent to the dead-letter subject");
        let _ = message.ack_with(AckKind::Term).await;
    } else {
        tracing::error!(
            subject = message.subject.as_str(),
            reason,
            "cannot dead-letter a message; it will be redelivered"
        );
        let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
    }
}

/// The error and its causes on one line (Postgres errors keep the server's message in
/// the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Partitions ahead and retention (hourly), live-state repair (every 2 s), lag (every 5 s).
async fn maintain(shared: Arc<Shared>, mut consumer: PullConsumer, shutdown: CancellationToken) {
    let mut history: Option<History> = None;
    let mut live: Option<Live> = None;
    let mut last_partitions: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if ticks % 3 == 1
            && let Ok(info) = consumer.info().await
        {
            shared.metrics.lag_messages.store(info.num_pending as i64, Relaxed);
            shared.metrics.ack_pending.store(info.num_ack_pending as i64, Relaxed);
        }
        if history.as_ref().is_none_or(History::is_closed) {
            history = shared.connect_history().await;
        }
        let Some(db) = history.as_mut() else { continue };
        let processor = &shared.config.processor;
        if ticks % 3 == 0
            && let Err(error) = shared.fences.load(db.client()).await
        {
            tracing::warn!(%error, "cannot reload geofences; keeping the last ones");
        }
        if last_partitions.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
            let result = async {
                shared.partitions.ensure_ahead(db.client(), now(), processor.partitions_ahead_months).await?;
                let mut dropped =
                    shared.partitions.drop_expired(db.client(), now(), processor.retention_months).await?;
                // Segments go with the positions they were cut from (a table scan, so only
                // when a month went).
                if !dropped.is_empty() {
                    let oldest = shared.partitions.oldest_kept(now(), processor.retention_months);
                    segments::drop_before(db.client(), shared.partitions.start_of(oldest)).await?;
                }
                let archive_days = processor.archive_retention_days;
                dropped.extend(archive::maintain(db.client(), &shared.archive_partitions, archive_days).await?);
                Ok::<_, tokio_postgres::Error>(dropped)
            }
            .await;
            match result {
                Ok(dropped) => {
                    last_partitions = Some(Instant::now());
                    if !dropped.is_empty() {
                        tracing::info!(?dropped, "partitions past the retention detached and dropped");
                    }
                }
                Err(error) => tracing::warn!(error = %error_chain(&error), "partition maintenance failed"),
            }
        }
        if let Err(error) = backfill_segments(db.client()).await {
            tracing::warn!(error = %error_chain(&error), "cannot cut stored history into report segments; retrying");
        }
        if let Err(error) = notice_empty_redis(&shared, db, &mut live).await {
            tracing::warn!(error = %error_chain(&*error), "cannot check redis for lost live state; retrying");
        }
        if let Err(error) = repair_live(&shared, db, &mut live).await {
            tracing::warn!(error = %error_chain(&*error), "live state repair failed; retrying");
        }
    }
}

/// Cuts the history of devices stored before report segments existed, a few devices per
/// tick (each in its own transaction, under its lock) so batches keep flowing.
async fn backfill_segments(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let started = Instant::now();
    let mut done = 0u32;
    while started.elapsed() < Duration::from_secs(1) && segments::backfill_one(client).await? {
        done += 1;
    }
    if done > 0 {
        tracing::info!(devices = done, "stored history cut into report segments");
    }
    Ok(())
}

/// Schedules every device's live state for a rebuild from history when Redis holds
/// none of it: after a restart without persistence, a flush or a failover to an empty
/// replica, devices that send nothing new would otherwise stay missing. (Redis Cluster:
/// the marker lives in one shard; an empty replacement of another goes unnoticed.)
async fn notice_empty_redis(
    shared: &Shared,
    history: &mut History,
    live_slot: &mut Option<Live>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if live_slot.is_none() {
        *live_slot = shared.connect_live().await;
    }
    let Some(live) = live_slot.as_mut() else { return Ok(()) };
    if !live.mark_kept().await? {
        return Ok(());
    }
    let scheduled = history
        .client()
        .execute(
            "INSERT INTO live_pending (device_id, tenant_id)
             SELECT d.id, d.tenant_id FROM devices d WHERE EXISTS (SELECT 1 FROM positions p WHERE p.device_id = d.id)
             ON CONFLICT (device_id) DO UPDATE SET since = now()",
            &[],
        )
        .await?;
    if scheduled > 0 {
        tracing::warn!(devices = scheduled, "redis holds no live state; rebuilding every device's from history");
    }
    Ok(())
}

/// Rebuilds from history the live state of devices recorded in `live_pending`.
async fn repair_live(
    shared: &Shared,
    history: &mut History,
    live_slot: &mut Option<Live>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = history.client();
    let pending = client
        .query("SELECT device_id, tenant_id, since::text FROM live_pending ORDER BY since LIMIT 500", &[])
        .await?;
    let total: i64 = client.query_one("SELECT count(*) FROM live_pending", &[]).await?.get(0);
    shared.metrics.live_pending.store(total, Relaxed);
    if pending.is_empty() {
        return Ok(());
    }
    if live_slot.is_none() {
        *live_slot = shared.connect_live().await;
    }
    let Some(live) = live_slot.as_mut() else { return Ok(()) };
    if !live.ping().await {
        return Ok(());
    }
    let tolerance = shared.config.processor.future_tolerance_s as f64;
    let mut rebuilt = 0;
    for row in pending {
        let (device_id, tenant_id, since): (DeviceId, TenantId, String) = (row.get(0), row.get(1), row.get(2));
        rebuild_live(client, live, tenant_id, device_id, tolerance).await?;
        client
            .execute(
                "DELETE FROM live_pending WHERE device_id = $1 AND since <= $2::text::timestamptz",
                &[&device_id, &since],
            )
            .await?;
        rebuilt += 1;
    }
    shared.metrics.redis_up.store(1, Relaxed);
    tracing::info!(devices = rebuilt, "live state rebuilt from history");
    Ok(())
}

/// Writes one device's live state from history: its newest live-worthy fix, newest
/// sensors, last receive time and connection status (newest wins, as always).
pub async fn rebuild_live(
    client: &tokio_postgres::Client,
    live: &mut Live,
    tenant_id: TenantId,
    device_id: DeviceId,
    tolerance_s: f64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tolerance = tolerance_s;
    let mut update = LiveUpdate { tenant_id, ..Default::default() };
    if let Some(row) = client
        .query_opt(
            &format!(
                "SELECT {POSITION_COLUMNS}, d.identifier, d.protocol
                 FROM positions p JOIN devices d ON d.id = p.device_id
                 WHERE p.device_id = $1 AND p.valid AND {} AND p.fix_time <= now() + make_interval(secs => $2)
                 ORDER BY p.fix_time DESC LIMIT 1",
                track::possible_sql("p")
            ),
            &[&device_id, &tolerance],
        )
        .await?
    {
        let mut json = String::new();
        write_position(&mut json, &position_identity(row.get(11), row.get(12)), &row);
        let time: Timestamp = row.get(0);
        update.fix = Some((time.0, json.into()));
    }
    if let Some(row) = client
        .query_opt(
            "SELECT (extract(epoch FROM fix_time) * 1000)::bigint, attrs::text,
                    (SELECT (extract(epoch FROM max(received)) * 1000)::bigint FROM positions WHERE device_id = $1)
             FROM positions WHERE device_id = $1 AND fix_time <= now() + make_interval(secs => $2)
             ORDER BY fix_time DESC LIMIT 1",
            &[&device_id, &tolerance],
        )
        .await?
    {
        update.sensors = Some((UtcMillis(row.get(0)), row.get::<_, String>(1).into()));
        update.received = row.get::<_, Option<i64>>(2).map(UtcMillis);
    }
    if let Some(row) = client
        .query_opt(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, kind = 'online' FROM events
             WHERE device_id = $1 AND kind IN ('online', 'offline') ORDER BY time DESC LIMIT 1",
            &[&device_id],
        )
        .await?
    {
        update.status = Some((UtcMillis(row.get(0)), row.get(1)));
    }
    let updates = std::iter::once((device_id, update)).collect();
    live.apply(&updates).await?;
    Ok(())
}
