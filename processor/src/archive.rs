//! The raw frame archive's index: copies the gateway's archive records (stream
//! `{stream}_RAW`, see `fleetgate_contracts::archive`) into `device_frames`, partitioned by
//! day, for the traffic view and `fleetgate reprocess`; drops days past
//! `processor.archive_retention_days`.
//!
//! Its own durable consumer (`{processor.consumer}_archive`), so a slow archive never
//! holds up positions. A batch is acknowledged once its rows are committed; a record's
//! key holds its batch's stream sequence and its line, so a redelivered batch is stored
//! once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, Message};
use fleetgate_codecs::hex;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::archive::{BATCH_RECORDS, Record};
use fleetgate_contracts::clock::now;
use fleetgate_contracts::stream;
use fleetgate_contracts::{Config, DeviceId, TenantId};
use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use fleetgate_store::partitions::{Partitions, Period};
use fleetgate_store::rows::Timestamp;

/// Archive messages (batches of records) indexed per transaction at most.
const BATCH: usize = 20;

/// The `device_frames` partitions.
pub fn partitions() -> Partitions {
    Partitions::new("device_frames", Period::Day)
}

/// One `device_frames` row.
#[derive(Debug)]
pub struct FrameRow {
    device_id: DeviceId,
    time: UtcMillis,
    seq: i64,
    tenant_id: TenantId,
    connection: String,
    transport: String,
    direction: String,
    bytes: Vec<u8>,
    size: i32,
    outcome: String,
    positions: Option<i32>,
    kind: Option<String>,
    error_offset: Option<i64>,
    error: Option<String>,
    reply: Option<Vec<u8>>,
}

/// Why a record is not indexed.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// Not an archive record.
    #[error("not an archive record: {0}")]
    Json(#[from] serde_json::Error),
    /// A field that does not read.
    #[error("bad {0}")]
    Field(&'static str),
}

/// Reads one archive record into its row; `Ok(None)` for an unregistered device's
/// frames, which stay in the stream only (no tenant may see them).
pub fn read_record(seq: u64, payload: &[u8]) -> Result<Option<FrameRow>, Unreadable> {
    let record: Record = serde_json::from_slice(payload)?;
    let (Some(tenant_id), Some(device_id)) = (record.tenant_id, record.device_id) else { return Ok(None) };
    let time = UtcMillis::parse_rfc3339(&record.time).ok_or(Unreadable::Field("time"))?;
    let bytes = hex::decode(record.hex.as_bytes()).map_err(|_| Unreadable::Field("hex"))?;
    let reply = match &record.reply {
        Some(reply) => Some(hex::decode(reply.as_bytes()).map_err(|_| Unreadable::Field("reply"))?),
        None => None,
    };
    Ok(Some(FrameRow {
        device_id,
        time,
        seq: seq as i64,
        tenant_id,
        connection: record.connection,
        transport: record.transport.into_owned(),
        direction: record.direction.into_owned(),
        bytes,
        size: i32::try_from(record.size).unwrap_or(i32::MAX),
        outcome: record.outcome.into_owned(),
        positions: record.positions.map(|n| n as i32),
        kind: record.kind,
        error_offset: record.offset.map(|o| o as i64),
        error: record.error,
        reply,
    }))
}

/// Inserts rows (skipping those already stored) in one statement; creates the days'
/// partitions first.
pub async fn insert(
    client: &mut Client,
    partitions: &Partitions,
    rows: &[FrameRow],
) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let days: BTreeSet<i64> = rows.iter().map(|r| partitions.period_of(r.time)).collect();
    partitions.ensure(client, days).await?;
    let column = |f: fn(&FrameRow) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    let times: Vec<Timestamp> = rows.iter().map(|r| Timestamp(r.time)).collect();
    let texts = |f: fn(&FrameRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let optional_texts = |f: fn(&FrameRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    let bytes: Vec<&[u8]> = rows.iter().map(|r| r.bytes.as_slice()).collect();
    let sizes: Vec<i32> = rows.iter().map(|r| r.size).collect();
    let positions: Vec<Option<i32>> = rows.iter().map(|r| r.positions).collect();
    let offsets: Vec<Option<i64>> = rows.iter().map(|r| r.error_offset).collect();
    let replies: Vec<Option<&[u8]>> = rows.iter().map(|r| r.reply.as_deref()).collect();
    client
        .execute(
            "INSERT INTO device_frames (device_id, time, seq, tenant_id, connection, transport, direction, bytes, size,
                                        outcome, positions, kind, error_offset, error, reply)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                                  $7::text[], $8::bytea[], $9::int[], $10::text[], $11::int[], $12::text[],
                                  $13::bigint[], $14::text[], $15::bytea[])
             ON CONFLICT DO NOTHING",
            &[
                &column(|r| r.device_id.0),
                &times,
                &column(|r| r.seq),
                &column(|r| r.tenant_id.0),
                &texts(|r| &r.connection),
                &texts(|r| &r.transport),
                &texts(|r| &r.direction),
                &bytes,
                &sizes,
                &texts(|r| &r.outcome),
                &positions,
                &optional_texts(|r| r.kind.as_deref()),
                &offsets,
                &optional_texts(|r| r.error.as_deref()),
                &replies,
            ],
        )
        .await
}

/// Creates (or finds) the archive index's durable consumer.
pub async fn consumer(js: &jetstream::Context, config: &Config) -> Result<PullConsumer, async_nats::Error> {
    let stream = js.get_stream(stream::archive_stream(&config.nats)).await?;
    let name = format!("{}_archive", config.processor.consumer);
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(config.processor.ack_wait_s),
                max_ack_pending: config.processor.max_ack_pending,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

/// Indexes archive records until `shutdown`. Postgres down: nothing is acknowledged and
/// the records come again.
pub async fn run(
    config: Arc<Config>,
    consumer: PullConsumer,
    partitions: Partitions,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut client: Option<Client> = None;
    let mut failures: u32 = 0;
    while !shutdown.is_cancelled() {
        if failures > 0 {
            let delay = Duration::from_millis(250 << failures.min(4)).min(Duration::from_secs(5));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let batch = consumer.batch().max_messages(BATCH).expires(Duration::from_millis(500)).messages().await;
        let mut messages: Vec<Message> = Vec::new();
        match batch {
            Ok(mut batch) => {
                while let Some(next) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = batch.next() => next,
                } {
                    match next {
                        Ok(message) => messages.push(message),
                        Err(error) => {
                            tracing::debug!(%error, "archive pull ended early");
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot pull from the archive stream");
                failures += 1;
                continue;
            }
        }
        if messages.is_empty() {
            continue;
        }
        let oldest_kept = match config.processor.archive_retention_days {
            0 => i64::MIN,
            days => partitions.oldest_kept(now(), days),
        };
        let mut rows = Vec::with_capacity(messages.len());
        for message in &messages {
            let seq = message.info().map_or(0, |info| info.stream_sequence);
            let lines = message.payload.split(|b| *b == b'\n').filter(|line| !line.is_empty());
            for (line, record) in lines.enumerate() {
                // A record's key: its batch's place in the stream, then its line.
                match read_record(seq * BATCH_RECORDS as u64 + line as u64, record) {
                    Ok(Some(row)) if partitions.period_of(row.time) >= oldest_kept => rows.push(row),
                    Ok(_) => {}
                    // The gateway writes these records; one that does not read is a bug
                    // to see in the log, not a reason to stall the index.
                    Err(error) => tracing::warn!(%error, seq, line, "archive record skipped"),
                }
            }
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = fleetgate_store::connect(&config.postgres.url).await.ok();
        }
        let Some(db) = client.as_mut() else {
            failures += 1;
            continue;
        };
        match insert(db, &partitions, &rows).await {
            Ok(inserted) => {
                failures = 0;
                metrics.frames_indexed.fetch_add(inserted, Relaxed);
                for message in messages {
                    if let Err(error) = message.ack().await {
                        tracing::debug!(%error, "archive ack lost; the record comes again and is stored once");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot index archived frames; retrying");
                failures += 1;
            }
        }
    }
}

/// Drops the `device_frames` days past the retention (0 keeps everything) and creates
/// today's and tomorrow's.
pub async fn maintain(
    client: &mut Client,
    partitions: &Partitions,
    retention_days: u32,
) -> Result<Vec<String>, tokio_postgres::Error> {
    partitions.ensure_ahead(client, now(), 1).await?;
    partitions.drop_expired(client, now(), retention_days).await
}
