//! `fuel_drain` events: fuel taken while the vehicle stands (theft, a leak). A standing
//! stretch is a run of consecutive fuel readings without motion, as in the summary; the
//! event fires once per stretch, at the first reading at least the device's `drain_min`
//! report rule below the stretch's first reading, with `details: {"from", "to"}`.
//!
//! A device that only appends is checked in memory from three indexed reads: the last
//! moving reading before the batch (from the report segments and the tail), the stretch's
//! first reading, and whether its event fired already. Late data derives the stretches
//! around its span again from the positions and replaces the events there.

use std::collections::{BTreeMap, HashMap};

use fleetgate_codecs::time::UtcMillis;
use tokio_postgres::Transaction;

use crate::history::{RunEvent, Timestamp, replace_run_events, store_run_events};
use crate::reports::Sample;
use crate::segments;

/// A fuel reading: when, the level, whether the vehicle moved, where.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Fix time.
    pub time: UtcMillis,
    /// Litres, or % of the tank.
    pub fuel: f64,
    /// The vehicle moved.
    pub moving: bool,
    /// Where.
    pub fix: Option<(f64, f64)>,
}

impl Reading {
    /// The reading in `sample`, if it has one.
    pub fn of(sample: &Sample) -> Option<Reading> {
        let moving = sample.moving.unwrap_or_else(|| sample.speed.is_some_and(|v| v > 3.0));
        sample.fuel.map(|fuel| Reading { time: sample.time, fuel, moving, fix: sample.fix })
    }
}

/// Where a standing stretch is when a new reading comes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stretch {
    /// The stretch's first reading (none: the vehicle is moving, or nothing read yet).
    pub first: Option<f64>,
    /// Its event fired already.
    pub fired: bool,
}

/// One drain: the reading at which the level had fallen `drain_min` since the stretch's
/// first reading `from`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drain {
    /// When.
    pub time: UtcMillis,
    /// The stretch's first reading.
    pub from: f64,
    /// This reading.
    pub to: f64,
    /// Where.
    pub fix: Option<(f64, f64)>,
}

/// The drains of `readings` (time order) continuing `stretch`; `stretch` is left where
/// the last reading leaves it.
pub fn drains(stretch: &mut Stretch, readings: &[Reading], drain_min: f64) -> Vec<Drain> {
    let mut found = Vec::new();
    for reading in readings {
        if reading.moving {
            *stretch = Stretch::default();
            continue;
        }
        match stretch.first {
            None => stretch.first = Some(reading.fuel),
            Some(from) if !stretch.fired && from - reading.fuel >= drain_min => {
                stretch.fired = true;
                found.push(Drain { time: reading.time, from, to: reading.fuel, fix: reading.fix });
            }
            Some(_) => {}
        }
    }
    found
}

/// A fuel reading in SQL, as reports read it.
const FUEL: &str = segments::FUEL_READING;

/// The time of device `device`'s last moving reading before `before` (SQL expressions):
/// from the report segments, then from the tail of positions after the last segment.
fn last_moving_reading(device: &str, before: &str) -> String {
    format!(
        "greatest(
             (SELECT s.end_time FROM segments s WHERE s.device_id = {device} AND s.start_time < {before} AND s.moving
                AND s.fuel_readings > 0 ORDER BY s.start_time DESC LIMIT 1),
             (SELECT p.fix_time FROM positions p
              WHERE p.device_id = {device} AND p.fix_time < {before} AND p.moving AND {FUEL} IS NOT NULL
                AND p.fix_time > coalesce((SELECT s.end_time FROM segments s WHERE s.device_id = {device}
                                           ORDER BY s.start_time DESC LIMIT 1), '-infinity')
              ORDER BY p.fix_time DESC LIMIT 1))"
    )
}

/// Per device (`$1`) and time (`$2`): the standing stretch's first reading before the
/// time (after the last moving reading), and whether its drain fired already.
fn stretch_query() -> String {
    format!(
        "SELECT d.id,
                (SELECT {FUEL} FROM positions p
                 WHERE p.device_id = d.id AND p.fix_time > coalesce(w.t, '-infinity') AND p.fix_time < d.lo
                   AND {FUEL} IS NOT NULL ORDER BY p.fix_time LIMIT 1),
                EXISTS (SELECT 1 FROM events e WHERE e.device_id = d.id AND e.kind = 'fuel_drain'
                          AND e.time > coalesce(w.t, '-infinity') AND e.time < d.lo)
         FROM unnest($1::bigint[], $2::timestamptz[]) AS d(id, lo)
         CROSS JOIN LATERAL (SELECT {} AS t) w",
        last_moving_reading("d.id", "d.lo")
    )
}

/// The readings of device `$1` from its last moving reading before `$2` to its first
/// moving segment with readings after `$3` (or its last position): whole stretches.
fn window_query() -> String {
    format!(
        "SELECT p.fix_time, {FUEL}, coalesce(p.moving, p.speed > 3, false),
                CASE WHEN p.valid THEN p.lat END, CASE WHEN p.valid THEN p.lon END
         FROM positions p
         WHERE p.device_id = $1 AND {FUEL} IS NOT NULL
           AND p.fix_time >= coalesce({}, '-infinity')
           AND p.fix_time <= coalesce((SELECT s.start_time FROM segments s WHERE s.device_id = $1 AND s.start_time > $3
                                         AND s.moving AND s.fuel_readings > 0 ORDER BY s.start_time LIMIT 1), 'infinity')
         ORDER BY p.fix_time",
        last_moving_reading("$1", "$2")
    )
}

impl Drain {
    fn event(&self) -> RunEvent {
        let details = serde_json::json!({"from": self.from, "to": self.to}).to_string();
        RunEvent { time: self.time, coordinates: self.fix, details }
    }
}

/// Derives the fuel drains of a batch: `appended` (the new samples of each device that
/// only appended, with `tenants`) in memory, `late` spans (device, tenant, first and last
/// new fix) from the stored positions. Returns the new events for the live stream.
pub async fn derive(
    transaction: &Transaction<'_>,
    appended: &BTreeMap<i64, Vec<Sample>>,
    tenants: &HashMap<i64, i64>,
    late: &[(i64, i64, UtcMillis, UtcMillis)],
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    // Only a reading while standing can fire.
    let mut standing: Vec<(i64, i64, Vec<Reading>)> = Vec::new();
    for (device, samples) in appended {
        let readings: Vec<Reading> = samples.iter().filter_map(Reading::of).collect();
        if let Some(&tenant) = tenants.get(device)
            && readings.iter().any(|r| !r.moving)
        {
            standing.push((*device, tenant, readings));
        }
    }
    if standing.is_empty() && late.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = standing.iter().map(|s| s.0).chain(late.iter().map(|s| s.0)).collect();
    let rules = segments::device_rules(transaction, &ids).await?;
    let drain_min = |device: &i64| rules.get(device).copied().unwrap_or_default().drain_min;
    let mut new_events = Vec::new();
    if !standing.is_empty() {
        let devices: Vec<i64> = standing.iter().map(|s| s.0).collect();
        let lows: Vec<Timestamp> = standing.iter().map(|s| Timestamp(s.2[0].time)).collect();
        let rows = transaction.query(&stretch_query(), &[&devices, &lows]).await?;
        let stretches: HashMap<i64, Stretch> =
            rows.iter().map(|r| (r.get(0), Stretch { first: r.get(1), fired: r.get(2) })).collect();
        for (device, tenant, readings) in &standing {
            let mut stretch = stretches.get(device).copied().unwrap_or_default();
            let threshold = drain_min(device);
            let found: Vec<RunEvent> = drains(&mut stretch, readings, threshold).iter().map(Drain::event).collect();
            new_events.extend(store_run_events(transaction, (*tenant, *device), "fuel_drain", &found).await?);
        }
    }
    for &(device, tenant, lo, hi) in late {
        let rows = transaction.query(&window_query(), &[&device, &Timestamp(lo), &Timestamp(hi)]).await?;
        let readings: Vec<Reading> = rows
            .iter()
            .map(|r| Reading {
                time: r.get::<_, Timestamp>(0).0,
                fuel: r.get(1),
                moving: r.get(2),
                fix: r.get::<_, Option<f64>>(3).zip(r.get::<_, Option<f64>>(4)),
            })
            .collect();
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else { continue };
        let threshold = drain_min(&device);
        let wanted: Vec<RunEvent> =
            drains(&mut Stretch::default(), &readings, threshold).iter().map(Drain::event).collect();
        let window = (first.time, last.time);
        new_events.extend(replace_run_events(transaction, (tenant, device), "fuel_drain", window, &wanted).await?);
    }
    Ok(new_events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t: i64, fuel: f64, moving: bool) -> Reading {
        Reading { time: UtcMillis(t * 1000), fuel, moving, fix: None }
    }

    #[test]
    fn a_drain_fires_once_per_stop_when_the_level_has_fallen_the_threshold() {
        let readings = [
            reading(0, 80.0, true),
            reading(10, 79.0, false), // parked: the stretch starts at 79
            reading(20, 78.0, false), // sensor noise
            reading(30, 73.5, false), // 5.5 l gone: the drain
            reading(40, 60.0, false), // still going: the same drain
            reading(50, 59.0, true),  // driving off
            reading(60, 58.0, false), // parked again
            reading(70, 54.0, false), // 4 l: under the threshold
        ];
        let mut stretch = Stretch::default();
        let found = drains(&mut stretch, &readings, 5.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].time, found[0].from, found[0].to), (UtcMillis(30_000), 79.0, 73.5));
        // The next batch continues the second stop: 52 l is 6 below its first reading.
        let more = drains(&mut stretch, &[reading(80, 52.0, false), reading(90, 40.0, false)], 5.0);
        assert_eq!(more.iter().map(|d| d.time).collect::<Vec<_>>(), [UtcMillis(80_000)]);
        // A stretch whose drain fired already does not fire again.
        let mut fired = Stretch { first: Some(90.0), fired: true };
        assert!(drains(&mut fired, &[reading(100, 10.0, false)], 5.0).is_empty());
    }
}
