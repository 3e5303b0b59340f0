//! `fuel_drain` events by the rule in `fleetgate_rules::fuel`.
//!
//! A device that only appends is checked in memory from three indexed reads: the last
//! moving reading before the batch (from the report segments and the tail), the stretch's
//! first reading, and whether its event fired already. Late data derives the stretches
//! around its span again from the positions and replaces the events there.

use std::collections::{BTreeMap, HashMap};

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::{DeviceId, TenantId};
use fleetgate_rules::fuel::{Drain, Reading, Stretch, drains};
use fleetgate_rules::reports::Sample;
use fleetgate_store::rows::Timestamp;
use fleetgate_store::segments::{self as stored, device_rules};
use tokio_postgres::Transaction;

use crate::history::{EventRow, NewEvent, replace_events, store_events};

/// A fuel reading in SQL, as reports read it.
const FUEL: &str = stored::FUEL_READING;

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
/// `moving` is the stored derived motion (null only when the device sent neither a motion
/// flag nor a speed).
fn window_query() -> String {
    format!(
        "SELECT p.fix_time, {FUEL}, coalesce(p.moving, false),
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

fn event((tenant, device): (TenantId, DeviceId), drain: &Drain) -> EventRow {
    let details = serde_json::json!({"from": drain.from, "to": drain.to}).to_string();
    EventRow { tenant, device, time: drain.time, kind: "fuel_drain", reference: 0, coordinates: drain.fix, details }
}

/// Derives the fuel drains of a batch: `appended` (the new samples of each device that
/// only appended, with `tenants`) in memory, `late` spans (device, tenant, first and last
/// new fix) from the stored positions. Returns the new events for the live stream.
pub async fn derive(
    transaction: &Transaction<'_>,
    appended: &BTreeMap<DeviceId, Vec<Sample>>,
    tenants: &HashMap<DeviceId, TenantId>,
    late: &[(DeviceId, TenantId, UtcMillis, UtcMillis)],
) -> Result<Vec<NewEvent>, tokio_postgres::Error> {
    // Only a reading while standing can fire.
    let mut standing: Vec<(DeviceId, TenantId, Vec<Reading>)> = Vec::new();
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
    let ids: Vec<DeviceId> = standing.iter().map(|s| s.0).chain(late.iter().map(|s| s.0)).collect();
    let rules = device_rules(transaction, &ids).await?;
    let drain_min = |device: &DeviceId| rules.get(device).copied().unwrap_or_default().drain_min;
    let mut new_events = Vec::new();
    if !standing.is_empty() {
        let devices: Vec<DeviceId> = standing.iter().map(|s| s.0).collect();
        let lows: Vec<Timestamp> = standing.iter().map(|s| Timestamp(s.2[0].time)).collect();
        let rows = transaction.query(&stretch_query(), &[&devices, &lows]).await?;
        let stretches: HashMap<DeviceId, Stretch> =
            rows.iter().map(|r| (r.get(0), Stretch { first: r.get(1), fired: r.get(2) })).collect();
        let mut found = Vec::new();
        for (device, tenant, readings) in &standing {
            let mut stretch = stretches.get(device).copied().unwrap_or_default();
            let threshold = drain_min(device);
            found.extend(drains(&mut stretch, readings, threshold).iter().map(|d| event((*tenant, *device), d)));
        }
        new_events.extend(store_events(transaction, &found).await?);
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
        let wanted: Vec<EventRow> =
            drains(&mut Stretch::default(), &readings, threshold).iter().map(|d| event((tenant, device), d)).collect();
        let window = (first.time, last.time);
        new_events.extend(replace_events(transaction, device, &["fuel_drain"], window, &wanted).await?);
    }
    Ok(new_events)
}
