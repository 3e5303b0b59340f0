//! Overspeed with a minimum duration (`devices.overspeed_min_s` > 0): one `overspeed`
//! event per run of positions over the device's `speed_limit`, at the first position at
//! which the run has lasted the minimum, so a moment over the limit (overtaking, a
//! speed spike) is not one. Devices without a minimum get the event at the first
//! position over the limit, from the ordinary derivation in `history`.
//!
//! Derived over each batch's span widened to whole runs (from the last position under the
//! limit before it to the first one after it), then compared with the events stored
//! there: late data gives the same events as data in order.

use std::collections::BTreeMap;

use fleetgate_codecs::time::UtcMillis;
use tokio_postgres::Transaction;

use crate::history::{RunEvent, Timestamp, replace_run_events};

/// One overspeed event: the position at which the run had lasted the minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct Overspeed {
    /// When the event fires.
    pub time: UtcMillis,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
    /// km/h at that position.
    pub speed: f64,
    /// When the run over the limit began.
    pub since: UtcMillis,
}

/// What the derivation reads of a position.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Fix time.
    pub time: UtcMillis,
    /// km/h.
    pub speed: Option<f64>,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
}

/// The events of `readings` (time order): per run over `limit`, the first reading at
/// which the run has lasted `min_s` seconds.
pub fn events(readings: &[Reading], limit: f64, min_s: i64) -> Vec<Overspeed> {
    let mut found = Vec::new();
    let mut run: Option<(UtcMillis, bool)> = None; // (start, fired)
    for reading in readings {
        let Some(speed) = reading.speed.filter(|s| *s > limit) else {
            run = None;
            continue;
        };
        let (since, fired) = run.get_or_insert((reading.time, false));
        if !*fired && reading.time.0 - since.0 >= min_s * 1000 {
            *fired = true;
            found.push(Overspeed { time: reading.time, coordinates: reading.coordinates, speed, since: *since });
        }
    }
    found
}

/// The positions of device `$1` from the last one not over the limit (`$4`) before `$2`
/// to the first one not over it after `$3`: whole runs around the span.
const WINDOW: &str = "SELECT fix_time, speed, lat, lon FROM positions
    WHERE device_id = $1
      AND fix_time >= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time < $2
                                  AND NOT coalesce(speed > $4, false) ORDER BY fix_time DESC LIMIT 1), '-infinity')
      AND fix_time <= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time > $3
                                  AND NOT coalesce(speed > $4, false) ORDER BY fix_time LIMIT 1), 'infinity')
    ORDER BY fix_time";

/// The devices with a minimum overspeed duration: their speed limit (km/h) and minimum
/// (seconds).
pub type Limits = BTreeMap<i64, (f64, i64)>;

/// The [`Limits`] of `ids` (a batch reads them with its previous rows instead).
pub async fn limits(transaction: &Transaction<'_>, ids: &[i64]) -> Result<Limits, tokio_postgres::Error> {
    let rows = transaction
        .query(
            "SELECT id, speed_limit::float8, overspeed_min_s FROM devices
             WHERE id = ANY($1) AND overspeed_min_s > 0 AND speed_limit IS NOT NULL",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), (r.get(1), i64::from(r.get::<_, i32>(2))))).collect())
}

/// Derives the overspeed events of the devices in `limits` among `spans` (device,
/// tenant, first and last new fix time); deletes those that no longer follow and returns
/// the new ones (tenant, device, JSON) for the live stream.
pub async fn derive(
    transaction: &Transaction<'_>,
    spans: &[(i64, i64, UtcMillis, UtcMillis)],
    limits: &Limits,
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let mut new_events = Vec::new();
    for &(device, tenant, lo, hi) in spans {
        let Some(&(limit, min_s)) = limits.get(&device) else { continue };
        let rows = transaction.query(WINDOW, &[&device, &Timestamp(lo), &Timestamp(hi), &limit]).await?;
        let readings: Vec<Reading> = rows
            .iter()
            .map(|r| Reading {
                time: r.get::<_, Timestamp>(0).0,
                speed: r.get(1),
                coordinates: r.get::<_, Option<f64>>(2).zip(r.get::<_, Option<f64>>(3)),
            })
            .collect();
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else { continue };
        let wanted: Vec<RunEvent> = events(&readings, limit, min_s)
            .into_iter()
            .map(|e| RunEvent {
                time: e.time,
                coordinates: e.coordinates,
                details: serde_json::json!({"speed": e.speed, "limit": limit, "since": e.since.to_string()})
                    .to_string(),
            })
            .collect();
        let window = (first.time, last.time);
        new_events.extend(replace_run_events(transaction, (tenant, device), "overspeed", window, &wanted).await?);
    }
    Ok(new_events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, speed: f64) -> Reading {
        Reading { time: UtcMillis(seconds * 1000), speed: Some(speed), coordinates: None }
    }

    #[test]
    fn a_moment_over_the_limit_is_not_an_overspeed_a_minute_is() {
        let readings = [
            at(0, 80.0),
            at(10, 95.0), // overtaking: 20 s over
            at(20, 97.0),
            at(30, 85.0),
            at(40, 92.0), // a real run from 40 s
            at(70, 99.0),
            at(100, 101.0), // 60 s into it: the event
            at(110, 100.0),
            at(120, 70.0),
            at(130, 91.0), // a new run, too short before the data ends
        ];
        let found = events(&readings, 90.0, 60);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].time, found[0].since, found[0].speed), (UtcMillis(100_000), UtcMillis(40_000), 101.0));
        assert_eq!(events(&readings, 90.0, 0).len(), 3, "without a minimum every run is one");
        assert!(events(&[at(0, 95.0), Reading { speed: None, ..at(5, 0.0) }, at(70, 95.0)], 90.0, 60).is_empty());
    }
}
