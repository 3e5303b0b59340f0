//! Processor metrics as plain atomics, rendered in the Prometheus text format.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use fleetgate_contracts::metrics::{Exposition, Histogram, LATENCY_BUCKETS};

const SIZES: [f64; 9] = [1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// Everything `/metrics` shows for the processor.
#[derive(Debug)]
pub struct Metrics {
    /// Positions newly stored in history.
    pub positions_stored: AtomicU64,
    /// Positions that were already stored (redelivered or resent).
    pub positions_duplicate: AtomicU64,
    /// Stream messages acknowledged.
    pub messages_acked: AtomicU64,
    /// Messages sent to the dead-letter subject.
    pub dead_letters: AtomicU64,
    /// Batches whose write failed (they are redelivered).
    pub batch_failures: AtomicU64,
    /// Events derived.
    pub events: AtomicU64,
    /// Live positions moved.
    pub live_moves: AtomicU64,
    /// 1 while Postgres accepts writes.
    pub postgres_up: AtomicI64,
    /// 1 while Redis accepts writes.
    pub redis_up: AtomicI64,
    /// Devices waiting for their live state to be rebuilt from history.
    pub live_pending: AtomicI64,
    /// Messages in the stream not yet delivered to the consumer.
    pub lag_messages: AtomicI64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: AtomicI64,
    /// Positions per batch.
    pub batch_positions: Histogram,
    /// Seconds from the start of a batch's transaction to its commit.
    pub commit_seconds: Histogram,
    /// Archived frames indexed into `device_frames`.
    pub frames_indexed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            positions_stored: AtomicU64::new(0),
            positions_duplicate: AtomicU64::new(0),
            messages_acked: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            batch_failures: AtomicU64::new(0),
            events: AtomicU64::new(0),
            live_moves: AtomicU64::new(0),
            postgres_up: AtomicI64::new(1),
            redis_up: AtomicI64::new(1),
            live_pending: AtomicI64::new(0),
            lag_messages: AtomicI64::new(0),
            ack_pending: AtomicI64::new(0),
            batch_positions: Histogram::new(&SIZES),
            commit_seconds: Histogram::new(&LATENCY_BUCKETS),
            frames_indexed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Records a commit's duration.
    pub fn observe_commit(&self, elapsed: Duration) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let counter = |value: &AtomicU64| value.load(Relaxed);
        let gauge = |value: &AtomicI64| value.load(Relaxed);
        Exposition::new()
            .counter(
                "fleetgate_processor_positions_stored_total",
                "Positions newly stored in history.",
                counter(&self.positions_stored),
            )
            .counter(
                "fleetgate_processor_positions_duplicate_total",
                "Positions already stored (redelivered or resent).",
                counter(&self.positions_duplicate),
            )
            .counter(
                "fleetgate_processor_messages_acked_total",
                "Stream messages acknowledged.",
                counter(&self.messages_acked),
            )
            .counter(
                "fleetgate_processor_dead_letters_total",
                "Messages sent to the dead-letter subject.",
                counter(&self.dead_letters),
            )
            .counter(
                "fleetgate_processor_batch_failures_total",
                "Batches not written; redelivered.",
                counter(&self.batch_failures),
            )
            .counter("fleetgate_processor_events_total", "Events derived.", counter(&self.events))
            .counter("fleetgate_processor_live_moves_total", "Live positions moved.", counter(&self.live_moves))
            .counter(
                "fleetgate_processor_frames_indexed_total",
                "Archived frames indexed for the traffic view.",
                counter(&self.frames_indexed),
            )
            .gauge("fleetgate_processor_postgres_up", "1 while Postgres accepts writes.", gauge(&self.postgres_up))
            .gauge("fleetgate_processor_redis_up", "1 while Redis accepts writes.", gauge(&self.redis_up))
            .gauge(
                "fleetgate_processor_live_pending",
                "Devices whose live state awaits a rebuild.",
                gauge(&self.live_pending),
            )
            .gauge(
                "fleetgate_processor_lag_messages",
                "Stream messages not yet delivered to the consumer.",
                gauge(&self.lag_messages),
            )
            .gauge(
                "fleetgate_processor_ack_pending",
                "Messages delivered and not yet acknowledged.",
                gauge(&self.ack_pending),
            )
            .histogram("fleetgate_processor_batch_positions", "Positions per batch.", &self.batch_positions)
            .histogram("fleetgate_processor_commit_seconds", "Batch transaction time.", &self.commit_seconds)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.batch_positions.observe(3.0);
        metrics.batch_positions.observe(20_000.0);
        let text = metrics.render();
        assert!(text.contains("fleetgate_processor_batch_positions_bucket{le=\"10\"} 1"), "{text}");
        assert!(text.contains("fleetgate_processor_batch_positions_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("fleetgate_processor_batch_positions_sum 20003"));
        assert!(text.contains("# TYPE fleetgate_processor_postgres_up gauge\nfleetgate_processor_postgres_up 1"));
    }
}
