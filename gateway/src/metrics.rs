//! Gateway metrics as plain atomics, per protocol listened for, rendered by the shared
//! Prometheus writer; and a log limiter so a misbehaving device cannot fill the logs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fleetgate_codecs::Protocol;
use fleetgate_contracts::metrics::{Exposition, Histogram, LATENCY_BUCKETS};

/// Why a frame, datagram or connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A frame the codec refused (checksum, structure, values).
    Frame,
    /// The stream could not be framed any more; the connection closed.
    Fatal,
    /// The identifier is not registered.
    UnknownDevice,
    /// Registered for another protocol, or a wrong password.
    WrongCredentials,
    /// No login within the handshake timeout.
    HandshakeTimeout,
    /// Silent for longer than the idle timeout.
    IdleTimeout,
    /// The connection cap was reached.
    ConnectionCap,
    /// Publishing to JetStream failed or timed out; nothing was acknowledged.
    PublishFailed,
    /// The connection ended inside a frame (cut off, or a device that trickled bytes
    /// until a timeout); nothing of it was acknowledged.
    Incomplete,
}

const REFUSALS: [(Refusal, &str); 9] = [
    (Refusal::Frame, "frame"),
    (Refusal::Fatal, "fatal"),
    (Refusal::UnknownDevice, "unknown_device"),
    (Refusal::WrongCredentials, "wrong_credentials"),
    (Refusal::HandshakeTimeout, "handshake_timeout"),
    (Refusal::IdleTimeout, "idle_timeout"),
    (Refusal::ConnectionCap, "connection_cap"),
    (Refusal::PublishFailed, "publish_failed"),
    (Refusal::Incomplete, "incomplete_frame"),
];

/// Per-protocol counters.
#[derive(Debug, Default)]
pub struct ProtocolMetrics {
    /// Open TCP connections.
    pub connections: AtomicI64,
    /// Accepted TCP connections since start.
    pub connections_total: AtomicU64,
    /// Frames (and datagrams) decoded.
    pub frames: AtomicU64,
    /// Positions published and acknowledged.
    pub positions: AtomicU64,
    /// Acknowledgements sent after storage.
    pub acks: AtomicU64,
}

/// Every gateway metric.
#[derive(Debug)]
pub struct Metrics {
    protocols: Vec<(Protocol, ProtocolMetrics)>,
    /// Counters of a protocol nobody listens for (never used by a listener; keeps
    /// [`Metrics::protocol`] total).
    other: ProtocolMetrics,
    refusals: [AtomicU64; REFUSALS.len()],
    publish_seconds: Histogram,
    /// Publishes waiting for their JetStream ack.
    pub publishes_in_flight: AtomicI64,
    /// 1 while the last publish succeeded, 0 after a failure.
    pub nats_healthy: AtomicI64,
    /// Devices in the registry.
    pub registry_devices: AtomicI64,
    /// Frames and commands the archive stream stored.
    pub archived: AtomicU64,
    /// Archive records JetStream did not store (the frames themselves were handled).
    pub archive_failures: AtomicU64,
}

impl Metrics {
    /// Metrics for the protocols the gateway listens for.
    pub fn new(protocols: impl IntoIterator<Item = Protocol>) -> Self {
        let mut list: Vec<(Protocol, ProtocolMetrics)> = Vec::new();
        for protocol in protocols {
            if !list.iter().any(|(p, _)| *p == protocol) {
                list.push((protocol, ProtocolMetrics::default()));
            }
        }
        Metrics {
            protocols: list,
            other: ProtocolMetrics::default(),
            refusals: Default::default(),
            publish_seconds: Histogram::new(&LATENCY_BUCKETS),
            publishes_in_flight: AtomicI64::new(0),
            nats_healthy: AtomicI64::new(1),
            registry_devices: AtomicI64::new(0),
            archived: AtomicU64::new(0),
            archive_failures: AtomicU64::new(0),
        }
    }

    /// The counters of one protocol.
    pub fn protocol(&self, protocol: Protocol) -> &ProtocolMetrics {
        self.protocols.iter().find(|(p, _)| *p == protocol).map_or(&self.other, |(_, m)| m)
    }

    /// Counts one refusal.
    pub fn refused(&self, refusal: Refusal) {
        let index = REFUSALS.iter().position(|(r, _)| *r == refusal).unwrap_or(0);
        self.refusals[index].fetch_add(1, Relaxed);
    }

    /// The count of one refusal reason.
    pub fn refusals(&self, refusal: Refusal) -> u64 {
        let index = REFUSALS.iter().position(|(r, _)| *r == refusal).unwrap_or(0);
        self.refusals[index].load(Relaxed)
    }

    /// Records how long one publish took to be acknowledged.
    pub fn observe_publish(&self, elapsed: Duration) {
        self.publish_seconds.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let per_protocol = |read: fn(&ProtocolMetrics) -> i64| {
            self.protocols.iter().map(move |(protocol, metrics)| (protocol.name(), read(metrics)))
        };
        Exposition::new()
            .labeled(
                "fleetgate_gateway_connections",
                "gauge",
                "Open device connections.",
                "protocol",
                per_protocol(|m| m.connections.load(Relaxed)),
            )
            .labeled(
                "fleetgate_gateway_connections_total",
                "counter",
                "Device connections accepted.",
                "protocol",
                per_protocol(|m| m.connections_total.load(Relaxed) as i64),
            )
            .labeled(
                "fleetgate_gateway_frames_total",
                "counter",
                "Frames and datagrams decoded.",
                "protocol",
                per_protocol(|m| m.frames.load(Relaxed) as i64),
            )
            .labeled(
                "fleetgate_gateway_positions_total",
                "counter",
                "Positions stored in JetStream.",
                "protocol",
                per_protocol(|m| m.positions.load(Relaxed) as i64),
            )
            .labeled(
                "fleetgate_gateway_acks_total",
                "counter",
                "Acknowledgements sent after storage.",
                "protocol",
                per_protocol(|m| m.acks.load(Relaxed) as i64),
            )
            .labeled(
                "fleetgate_gateway_refusals_total",
                "counter",
                "Refused frames, devices and connections by reason.",
                "reason",
                REFUSALS.iter().zip(&self.refusals).map(|((_, reason), count)| (*reason, count.load(Relaxed))),
            )
            .histogram(
                "fleetgate_gateway_publish_seconds",
                "Time from publish to JetStream ack.",
                &self.publish_seconds,
            )
            .counter(
                "fleetgate_gateway_archived_total",
                "Frames and commands stored in the raw archive.",
                self.archived.load(Relaxed),
            )
            .counter(
                "fleetgate_gateway_archive_failures_total",
                "Archive records JetStream did not store.",
                self.archive_failures.load(Relaxed),
            )
            .gauge(
                "fleetgate_gateway_publishes_in_flight",
                "Publishes waiting for their ack.",
                self.publishes_in_flight.load(Relaxed),
            )
            .gauge(
                "fleetgate_gateway_nats_healthy",
                "1 while publishing works, 0 after a failure.",
                self.nats_healthy.load(Relaxed),
            )
            .gauge(
                "fleetgate_gateway_registry_devices",
                "Devices in the registry.",
                self.registry_devices.load(Relaxed),
            )
            .finish()
    }
}

/// Lets one log line through per interval; counts the ones it held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    /// One line per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogLimiter { interval, state: std::sync::Mutex::new((None, 0)) }
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new([Protocol::TELTONIKA, Protocol::WIALON]);
        metrics.protocol(Protocol::WIALON).frames.fetch_add(3, Relaxed);
        metrics.refused(Refusal::UnknownDevice);
        metrics.observe_publish(Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains("fleetgate_gateway_frames_total{protocol=\"wialon\"} 3"));
        assert!(text.contains("fleetgate_gateway_refusals_total{reason=\"unknown_device\"} 1"));
        assert!(text.contains("fleetgate_gateway_publish_seconds_bucket{le=\"0.002\"} 0"));
        assert!(text.contains("fleetgate_gateway_publish_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("fleetgate_gateway_publish_seconds_count 1"));
    }

    #[test]
    fn limiter_holds_back_bursts() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
    }
}
