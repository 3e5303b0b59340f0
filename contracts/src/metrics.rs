//! Metrics: fixed-bucket histograms of atomics, one writer of the Prometheus text format
//! that every role's `/metrics` uses, and the small HTTP endpoint that serves it with
//! `/health`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Upper bounds (seconds) of latency histograms.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// A Prometheus histogram with fixed bucket bounds, of atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }
}

/// The Prometheus text exposition of one role, written series by series.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Exposition::default()
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.head(name, "counter", help);
        let _ = writeln!(self.out, "{name} {value}");
        self
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> &mut Self {
        self.head(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {value}");
        self
    }

    /// One series per value of a label (`kind` is `counter` or `gauge`).
    pub fn labeled<V: std::fmt::Display>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (impl std::fmt::Display, V)>,
    ) -> &mut Self {
        self.head(name, kind, help);
        for (label_value, value) in values {
            let _ = writeln!(self.out, "{name}{{{label}=\"{label_value}\"}} {value}");
        }
        self
    }

    /// A histogram.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) -> &mut Self {
        self.head(name, "histogram", help);
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += histogram.counts[histogram.bounds.len()].load(Relaxed);
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(self.out, "{name}_sum {}", histogram.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(self.out, "{name}_count {cumulative}");
        self
    }

    /// The text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

/// Serves `/metrics` (what `render` returns, in the Prometheus text format) and
/// `/health` on `listener` until `shutdown`.
pub async fn serve<F>(listener: TcpListener, render: F, shutdown: CancellationToken)
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], render()) }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::warn!(%error, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_series_labelled() {
        let histogram = Histogram::new(&[1.0, 10.0]);
        histogram.observe(3.0);
        histogram.observe(20_000.0);
        let text = Exposition::new()
            .histogram("h", "A histogram.", &histogram)
            .gauge("g", "A gauge.", 1)
            .labeled("c_total", "counter", "By reason.", "reason", [("a", 1), ("b", 2)])
            .finish();
        assert!(text.contains("h_bucket{le=\"10\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 20003\nh_count 2"), "{text}");
        assert!(text.contains("# TYPE g gauge\ng 1"));
        assert!(text.contains("# TYPE c_total counter\nc_total{reason=\"a\"} 1\nc_total{reason=\"b\"} 2"), "{text}");
    }
}
