//! `fleetgate reprocess --device IDENT --from T --to T [--dry-run]`: decodes the device's
//! archived frames of the span again with this build's codecs and replaces the history
//! rows that changed (see `fleetgate_processor::reprocess`). Prints one JSON line per row
//! that changes (`{"change": "added"|"removed"|"changed", "time", "old"?, "new"?}`), then
//! `{"summary": {...}}`.

use std::io::Write;

use anyhow::Context;
use fleetgate_codecs::UtcMillis;
use fleetgate_contracts::Config;
use fleetgate_processor::geofence::Fences;
use fleetgate_processor::history::History;
use fleetgate_processor::live::Live;
use fleetgate_processor::reprocess::{Request, reprocess};
use fleetgate_rules::events::Thresholds;
use fleetgate_store::partitions::Partitions;

/// Options of `fleetgate reprocess`.
#[derive(clap::Args)]
pub struct ReprocessArgs {
    /// The device's identifier (IMEI, terminal id).
    #[arg(long)]
    device: String,
    /// First receive time of the span (RFC 3339).
    #[arg(long)]
    from: String,
    /// Last receive time of the span (RFC 3339).
    #[arg(long)]
    to: String,
    /// Print what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn time(flag: &str, value: &str) -> anyhow::Result<UtcMillis> {
    UtcMillis::parse_rfc3339(value)
        .with_context(|| format!("--{flag} {value:?} is not an RFC 3339 time (like 2026-11-25T16:00:00Z)"))
}

/// Runs `fleetgate reprocess`.
pub async fn run(config: &Config, args: &ReprocessArgs) -> anyhow::Result<()> {
    let request = Request {
        identifier: args.device.clone(),
        from: time("from", &args.from)?,
        to: time("to", &args.to)?,
        dry_run: args.dry_run,
    };
    let client = fleetgate_store::connect(&config.postgres.url).await?;
    let thresholds = Thresholds {
        power_cut_voltage: config.processor.power_cut_voltage,
        low_battery_voltage: config.processor.low_battery_voltage,
    };
    let fences = Fences::default();
    fences.load(&client).await?;
    let mut history = History::new(client, Partitions::default(), thresholds).with_fences(fences);
    let mut live = match request.dry_run {
        true => None,
        false => Live::connect(&config.redis.url, &config.redis.key_prefix)
            .await
            .inspect_err(|error| tracing::warn!(%error, "redis unavailable; the processor rebuilds live state"))
            .ok(),
    };
    let mut options = config.gateway.limits.session_options();
    // A connection whose login is older than the archive still decodes.
    options.allow_anonymous = true;
    let tolerance = config.processor.future_tolerance_s as f64;
    let report = reprocess(&mut history, live.as_mut(), &options, tolerance, &request).await?;
    let mut stdout = std::io::stdout().lock();
    for change in &report.changes {
        writeln!(stdout, "{}", serde_json::to_string(change)?)?;
    }
    writeln!(stdout, "{}", serde_json::json!({"summary": report.summary}))?;
    Ok(())
}
