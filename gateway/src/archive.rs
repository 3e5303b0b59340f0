//! The raw frame archive, the gateway's side: every frame a device sends, exactly as it
//! arrived, with what became of it (decoded into N positions, refused and why) and the
//! reply it got; and every command the gateway sends. The record is
//! `fleetgate_contracts::archive::Record`; records go to their own JetStream stream
//! (`{stream}_RAW`, retention by age and size) on `P.raw.records`, in batches (one JSON
//! object per line); the processor indexes them into Postgres for the traffic view and
//! `fleetgate reprocess`.
//!
//! The archive is diagnostics, never on the acknowledgement's critical path: a frame's
//! record is queued after its reply went out, without waiting, and one writer task
//! publishes the queue in batches (a message per frame would double JetStream's work
//! per frame: measured in BENCHMARKS.md). A full queue drops records and counts them.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream;
use bytes::{Bytes, BytesMut};
use fleetgate_codecs::hex::HexDisplay;
use fleetgate_codecs::{Protocol, UtcMillis};
pub use fleetgate_contracts::archive::{BATCH_RECORDS, Record, format_time};
use fleetgate_contracts::{DeviceId, TenantId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::gateway::Device;
use crate::metrics::Metrics;

/// Bytes kept of one frame; a longer run (an over-long text line the codec discards
/// as it goes) keeps its start and its true size, so the archive stays bounded.
pub const MAX_ARCHIVED_FRAME: usize = 70 * 1024;

/// The bytes a session consumed, event by event, copied out of the read buffer.
///
/// The read buffer belongs to tokio-util's `FramedRead` and the session consumes from
/// its front, so the capture keeps a mirror of the unconsumed bytes: before each decode
/// it copies what arrived since, after it moves what the session consumed into the
/// current frame. Each byte is copied once; a connection that sits idle holds nothing.
#[derive(Debug, Default)]
pub struct Capture {
    enabled: bool,
    mirror: BytesMut,
    frame: BytesMut,
    frame_size: usize,
}

impl Capture {
    /// A capture that records (`enabled`) or does nothing.
    pub fn new(enabled: bool) -> Self {
        Capture { enabled, ..Capture::default() }
    }

    /// Call before the session decodes from `src`.
    pub fn before(&mut self, src: &[u8]) {
        if !self.enabled {
            return;
        }
        if src.len() < self.mirror.len() {
            // Someone else consumed from the buffer; start over from what is there.
            self.mirror.clear();
        }
        self.mirror.extend_from_slice(&src[self.mirror.len()..]);
    }

    /// Call after the session decoded; `remaining` is what is left in the buffer.
    pub fn after(&mut self, remaining: usize) {
        if !self.enabled {
            return;
        }
        let consumed = self.mirror.len().saturating_sub(remaining);
        self.keep(consumed);
        if self.mirror.is_empty() {
            // Let go of the allocation: idle connections are most connections.
            self.mirror = BytesMut::new();
        }
    }

    /// Moves every unconsumed byte into the current frame (the stream ended or broke).
    pub fn abandon(&mut self) {
        if self.enabled {
            self.keep(self.mirror.len());
            self.mirror = BytesMut::new();
        }
    }

    fn keep(&mut self, consumed: usize) {
        let bytes = self.mirror.split_to(consumed);
        self.frame_size += consumed;
        let room = MAX_ARCHIVED_FRAME.saturating_sub(self.frame.len());
        self.frame.extend_from_slice(&bytes[..consumed.min(room)]);
    }

    /// The bytes consumed since the last call (at most [`MAX_ARCHIVED_FRAME`] of them)
    /// and their full count.
    pub fn take(&mut self) -> (Bytes, usize) {
        let size = std::mem::take(&mut self.frame_size);
        (std::mem::take(&mut self.frame).freeze(), size)
    }
}

/// What became of a frame (or why the gateway sent something).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A login the gateway accepted.
    Login,
    /// A login refused (unknown identifier, wrong protocol or password).
    LoginRefused,
    /// Decoded into this many positions, stored and acknowledged.
    Positions(usize),
    /// Decoded into this many positions, but JetStream did not store them: nothing was
    /// acknowledged and the connection closed.
    NotStored(usize),
    /// A message that is not a position (command answer, text), of this kind.
    Message(&'static str),
    /// A keep-alive.
    KeepAlive,
    /// Refused by the codec at this stream offset, for this reason; the stream went on.
    Refused {
        /// Offset of the frame in the connection's stream.
        offset: u64,
        /// The codec's reason.
        error: String,
    },
    /// The stream could not be framed any more; the connection closed.
    Fatal {
        /// Offset in the connection's stream.
        offset: u64,
        /// The codec's reason.
        error: String,
    },
    /// The connection closed inside a frame.
    Incomplete,
    /// A command sent to the device (direction `out`).
    Command,
}

impl Outcome {
    /// The name in the archive record.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Login => "login",
            Outcome::LoginRefused => "login_refused",
            Outcome::Positions(_) => "positions",
            Outcome::NotStored(_) => "not_stored",
            Outcome::Message(_) => "message",
            Outcome::KeepAlive => "keepalive",
            Outcome::Refused { .. } => "refused",
            Outcome::Fatal { .. } => "fatal",
            Outcome::Incomplete => "incomplete",
            Outcome::Command => "command",
        }
    }
}

/// One frame or command as the connection saw it, before it knows its device.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Receive (or send) time; a frame's positions carry the same time as `received`.
    pub time: UtcMillis,
    /// The bytes as they went over the wire (at most [`MAX_ARCHIVED_FRAME`]).
    pub bytes: Bytes,
    /// Their full count.
    pub size: usize,
    /// What became of it.
    pub outcome: Outcome,
    /// What the gateway answered, if anything.
    pub reply: Option<Bytes>,
}

/// Where a frame came from: the connection, and its device once known.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Codec.
    pub protocol: Protocol,
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// Connection id.
    pub connection: u64,
    /// Identifier, tenant and device id.
    pub device: Option<(&'a str, TenantId, DeviceId)>,
    /// The identifier a refused login sent.
    pub identifier: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// The origin of a connection's (or UDP peer's) frames: its device once known, else
    /// the identifier a refused login sent.
    pub fn new(
        protocol: Protocol,
        transport: &'static str,
        connection: u64,
        device: Option<&'a Device>,
        identifier: Option<&'a str>,
    ) -> Self {
        Origin {
            protocol,
            transport,
            connection,
            device: device.map(|d| (d.identifier.as_str(), d.record.tenant_id, d.record.device_id)),
            identifier,
        }
    }
}

/// The archive record of `frame` from `origin`.
pub fn record_of(origin: Origin<'_>, frame: &Frame) -> Record {
    let (positions, kind, offset, error) = match &frame.outcome {
        Outcome::Positions(n) | Outcome::NotStored(n) => (Some(*n), None, None, None),
        Outcome::Message(kind) => (None, Some((*kind).to_owned()), None, None),
        Outcome::Refused { offset, error } | Outcome::Fatal { offset, error } => {
            (None, None, Some(*offset), Some(error.clone()))
        }
        _ => (None, None, None, None),
    };
    Record {
        tenant_id: origin.device.map(|d| d.1),
        device_id: origin.device.map(|d| d.2),
        device: origin.device.map(|d| d.0).or(origin.identifier).map(str::to_owned),
        protocol: Cow::Borrowed(origin.protocol.name()),
        transport: Cow::Borrowed(origin.transport),
        connection: format!("{:016x}", origin.connection),
        direction: Cow::Borrowed(if frame.outcome == Outcome::Command { "out" } else { "in" }),
        time: format_time(frame.time),
        hex: HexDisplay(&frame.bytes).to_string(),
        size: frame.size,
        truncated: frame.size > frame.bytes.len(),
        outcome: Cow::Borrowed(frame.outcome.name()),
        positions,
        kind,
        offset,
        error,
        reply: frame.reply.as_ref().filter(|r| !r.is_empty()).map(|r| HexDisplay(r).to_string()),
    }
}

/// A connection id: random per connection, so records of two gateways never collide.
pub fn connection_id() -> u64 {
    let mut bytes = [0u8; 8];
    // Without an entropy source the clock still separates connections.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()) as u64)
            .to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// Records waiting for the writer at most; beyond, records are dropped (and counted).
pub const QUEUE_RECORDS: usize = 100_000;

/// How long the first record of a batch waits for company.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// Bytes per batch: 256 KiB, or less under a small stream size cap (a message larger
/// than the stream may hold would be refused).
pub fn batch_limit(stream_max_bytes: i64) -> usize {
    const DEFAULT: usize = 256 * 1024;
    match usize::try_from(stream_max_bytes) {
        Ok(cap) => DEFAULT.min(cap / 8).max(1),
        Err(_) => DEFAULT,
    }
}

/// Publishes queued records in batches (one JSON object per line), each when it holds
/// `max_bytes` or is [`BATCH_WAIT`] old, until `stop`; then publishes what is left.
pub async fn write_batches(
    js: jetstream::Context,
    subject: String,
    mut records: mpsc::Receiver<Vec<u8>>,
    max_bytes: usize,
    publish_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(max_bytes + 1024);
    loop {
        let first = tokio::select! {
            first = records.recv() => first,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut count = 1;
        batch.extend_from_slice(&first);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < max_bytes && count < BATCH_RECORDS {
            match tokio::time::timeout_at(deadline, records.recv()).await {
                Ok(Some(record)) => {
                    batch.push(b'\n');
                    batch.extend_from_slice(&record);
                    count += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        publish(&js, &subject, &mut batch, count, publish_timeout, &metrics).await;
    }
    // Stopping: what the connections queued before they closed.
    let mut count = 0;
    while let Ok(record) = records.try_recv() {
        if count > 0 {
            batch.push(b'\n');
        }
        batch.extend_from_slice(&record);
        count += 1;
        if batch.len() >= max_bytes || count == BATCH_RECORDS {
            publish(&js, &subject, &mut batch, count, publish_timeout, &metrics).await;
            count = 0;
        }
    }
    if count > 0 {
        publish(&js, &subject, &mut batch, count, publish_timeout, &metrics).await;
    }
}

/// Publishes one batch and waits for JetStream to store it; counts the outcome.
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    batch: &mut Vec<u8>,
    count: usize,
    timeout: Duration,
    metrics: &Metrics,
) {
    let payload = Bytes::copy_from_slice(batch);
    batch.clear();
    let stored = tokio::time::timeout(timeout, async {
        let ack = js.publish(subject.to_owned(), payload).await.map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())
    })
    .await;
    match stored {
        Ok(Ok(_)) => {
            metrics.archived.fetch_add(count as u64, Relaxed);
        }
        result => {
            metrics.archive_failures.fetch_add(count as u64, Relaxed);
            let error = match result {
                Ok(Err(error)) => error,
                _ => format!("no JetStream ack within {} s", timeout.as_secs()),
            };
            tracing::warn!(%error, records = count, "archive batch not stored; its records are lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` as a read buffer would receive them, consuming `frame_len` bytes
    /// whenever that many are there, like a session with fixed-size frames.
    fn frames(chunks: &[&[u8]], frame_len: usize) -> Vec<(Bytes, usize)> {
        let mut capture = Capture::new(true);
        let mut buffer = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            loop {
                capture.before(&buffer);
                let decoded = buffer.len() >= frame_len;
                if decoded {
                    let _ = buffer.split_to(frame_len);
                }
                capture.after(buffer.len());
                if !decoded {
                    break;
                }
                out.push(capture.take());
            }
        }
        out
    }

    #[test]
    fn split_and_joined_frames_come_out_whole() {
        let out = frames(&[b"ab", b"cdef", b"g", b"hijkl"], 3);
        let texts: Vec<&[u8]> = out.iter().map(|(b, _)| b.as_ref()).collect();
        assert_eq!(texts, [b"abc".as_ref(), b"def", b"ghi", b"jkl"]);
        assert!(out.iter().all(|(b, size)| b.len() == *size));
    }

    #[test]
    fn an_endless_run_keeps_its_start_and_size() {
        let mut capture = Capture::new(true);
        let chunk = vec![b'x'; 8192];
        for _ in 0..20 {
            capture.before(&chunk);
            capture.after(0);
        }
        let (bytes, size) = capture.take();
        assert_eq!(bytes.len(), MAX_ARCHIVED_FRAME);
        assert_eq!(size, 20 * 8192);
    }

    #[test]
    fn abandoned_bytes_become_the_last_frame() {
        let mut capture = Capture::new(true);
        capture.before(b"\x00\x00\x00\x00\xff");
        capture.after(5);
        capture.abandon();
        assert_eq!(capture.take().0.as_ref(), b"\x00\x00\x00\x00\xff");
    }

    #[test]
    fn a_disabled_capture_keeps_nothing() {
        let mut capture = Capture::new(false);
        capture.before(b"abc");
        capture.after(0);
        assert_eq!(capture.take(), (Bytes::new(), 0));
    }
}
