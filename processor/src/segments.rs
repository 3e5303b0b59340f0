//! Keeping report segments (`segments`, migration 0010): each device's positions cut
//! into runs of one state ([`Segment`]), in the transaction that stores the positions;
//! reports read them through `fleetgate_store::segments`.
//!
//! - A device that only appends writes its segments when its batch closes one or crosses
//!   a minute boundary (its last segment and the positions after it are read, the new
//!   samples cut onto them, the result upserted); other batches write nothing, so the
//!   stored segments lag by at most the device's last minute, the tail, which reports
//!   read as positions.
//! - Late data (and `fleetgate reprocess`) cuts the segments of its span again from the
//!   stored positions, the span widened to the segments around it: the result is the
//!   one positions sent in order would have given.
//! - Devices with positions from before segments existed are listed in
//!   `segments_pending`; [`backfill_one`] cuts their whole history, and reports read
//!   their positions until then.

use std::collections::{BTreeMap, HashMap, HashSet};

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::DeviceId;
use fleetgate_rules::reports::{Sample, Segment, cut, segments};
use fleetgate_store::rows::Timestamp;
use fleetgate_store::segments::{
    FIRST_TIME, SAMPLE_COLUMNS, SEGMENT_COLUMNS, read_ranges, sample_of, samples, segment_of,
};
use tokio_postgres::{Client, GenericClient, Transaction};

/// Writes segments (device, segment); one already stored with the same device and start
/// is replaced.
async fn upsert(client: &impl GenericClient, rows: &[(DeviceId, Segment)]) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Segment) -> Option<f64>| rows.iter().map(|(_, s)| f(s)).collect::<Vec<_>>();
    let devices: Vec<DeviceId> = rows.iter().map(|r| r.0).collect();
    let starts: Vec<Timestamp> = rows.iter().map(|r| Timestamp(r.1.start)).collect();
    let ends: Vec<Timestamp> = rows.iter().map(|r| Timestamp(r.1.end)).collect();
    let samples: Vec<i32> = rows.iter().map(|r| r.1.samples as i32).collect();
    let ignition: Vec<Option<bool>> = rows.iter().map(|r| r.1.ignition).collect();
    let moving: Vec<bool> = rows.iter().map(|r| r.1.moving).collect();
    let first_lat = column(&|s| s.first_fix.map(|f| f.0));
    let first_lon = column(&|s| s.first_fix.map(|f| f.1));
    let last_lat = column(&|s| s.last_fix.map(|f| f.0));
    let last_lon = column(&|s| s.last_fix.map(|f| f.1));
    let distance: Vec<f64> = rows.iter().map(|r| r.1.distance_m).collect();
    let first_distance: Vec<f64> = rows.iter().map(|r| r.1.first_distance_m).collect();
    let max_speed: Vec<f64> = rows.iter().map(|r| r.1.max_speed).collect();
    let max_gap: Vec<i64> = rows.iter().map(|r| r.1.max_gap_ms).collect();
    let first_odometer = column(&|s| s.first_odometer);
    let last_odometer = column(&|s| s.last_odometer);
    let rising: Vec<bool> = rows.iter().map(|r| r.1.odometer_rising).collect();
    let first_fuel = column(&|s| s.first_fuel);
    let last_fuel = column(&|s| s.last_fuel);
    let readings: Vec<i32> = rows.iter().map(|r| r.1.fuel_readings as i32).collect();
    let falls: Vec<f64> = rows.iter().map(|r| r.1.fuel_falls).collect();
    client
        .execute(
            &format!(
                "INSERT INTO segments (device_id, {SEGMENT_COLUMNS})
                 SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bool[],
                     $6::bool[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::float8[],
                     $13::float8[], $14::bigint[], $15::float8[], $16::float8[], $17::bool[], $18::float8[],
                     $19::float8[], $20::int[], $21::float8[])
                 ON CONFLICT (device_id, start_time) DO UPDATE SET end_time = EXCLUDED.end_time,
                     samples = EXCLUDED.samples, ignition = EXCLUDED.ignition, moving = EXCLUDED.moving,
                     first_lat = EXCLUDED.first_lat, first_lon = EXCLUDED.first_lon, last_lat = EXCLUDED.last_lat,
                     last_lon = EXCLUDED.last_lon, distance_m = EXCLUDED.distance_m,
                     first_distance_m = EXCLUDED.first_distance_m, max_speed = EXCLUDED.max_speed,
                     max_gap_ms = EXCLUDED.max_gap_ms, first_odometer = EXCLUDED.first_odometer,
                     last_odometer = EXCLUDED.last_odometer, odometer_rising = EXCLUDED.odometer_rising,
                     first_fuel = EXCLUDED.first_fuel, last_fuel = EXCLUDED.last_fuel,
                     fuel_readings = EXCLUDED.fuel_readings, fuel_falls = EXCLUDED.fuel_falls"
            ),
            &[
                &devices,
                &starts,
                &ends,
                &samples,
                &ignition,
                &moving,
                &first_lat,
                &first_lon,
                &last_lat,
                &last_lon,
                &distance,
                &first_distance,
                &max_speed,
                &max_gap,
                &first_odometer,
                &last_odometer,
                &rising,
                &first_fuel,
                &last_fuel,
                &readings,
                &falls,
            ],
        )
        .await?;
    Ok(())
}

/// What one batch appends to the segments of devices whose new positions all come after
/// every stored one.
#[derive(Debug, Default)]
pub struct Appended {
    /// Each device's new samples, in time order.
    pub new: BTreeMap<DeviceId, Vec<Sample>>,
    /// Each device's last stored position (time, ignition, motion), if it has one.
    pub last_stored: HashMap<DeviceId, Sample>,
    /// Devices whose older history is still to be cut ([`backfill_one`] does it all).
    pub pending: HashSet<DeviceId>,
}

/// True when `next` continues the segment `before` is the last sample of.
fn continues(before: &Sample, next: &Sample) -> bool {
    Segment::of(before).extend(next)
}

const MINUTE_MS: i64 = 60_000;

/// Extends the segments of appending devices. The stored segments may lag the positions
/// by the device's last minute (the tail, which reports read as positions), so most
/// batches write nothing: a device's segments are written when its new positions close
/// a segment or cross a minute boundary; then its last segment and tail are read, the new
/// samples cut onto them, and the result upserted.
pub async fn append(transaction: &Transaction<'_>, batch: &Appended) -> Result<(), tokio_postgres::Error> {
    let mut due: Vec<(DeviceId, &Vec<Sample>)> = Vec::new();
    for (device, new) in &batch.new {
        let (Some(first), Some(last)) = (new.first(), new.last()) else { continue };
        if batch.pending.contains(device) {
            continue;
        }
        let closes = new.windows(2).any(|w| !continues(&w[0], &w[1]));
        let write = match batch.last_stored.get(device) {
            None => true,
            Some(stored) => {
                closes
                    || !continues(stored, first)
                    || last.time.0.div_euclid(MINUTE_MS) != stored.time.0.div_euclid(MINUTE_MS)
            }
        };
        if write {
            due.push((*device, new));
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let ids: Vec<DeviceId> = due.iter().map(|d| d.0).collect();
    let last = transaction
        .query(
            &format!(
                "SELECT d.id, s.* FROM unnest($1::bigint[]) AS d(id)
                 CROSS JOIN LATERAL (SELECT {SEGMENT_COLUMNS} FROM segments
                                     WHERE device_id = d.id ORDER BY start_time DESC LIMIT 1) s"
            ),
            &[&ids],
        )
        .await?;
    let mut open: HashMap<DeviceId, Segment> = last.iter().map(|row| (row.get(0), segment_of(row, 1))).collect();
    // The tails: stored positions after each device's last segment.
    let tails: Vec<(DeviceId, Timestamp, Timestamp)> = due
        .iter()
        .filter_map(|(device, new)| {
            let after = open.get(device).map_or(UtcMillis(FIRST_TIME), |s| UtcMillis(s.end.0 + 1));
            let before = UtcMillis(new[0].time.0 - 1);
            (after <= before).then_some((*device, Timestamp(after), Timestamp(before)))
        })
        .collect();
    let mut tail_samples: HashMap<DeviceId, Vec<Sample>> = HashMap::new();
    for ((device, _, _), samples) in tails.iter().zip(read_ranges(transaction, &tails).await?) {
        tail_samples.insert(*device, samples);
    }
    let mut rows = Vec::new();
    for (device, new) in due {
        let mut current = open.remove(&device);
        let tail = tail_samples.remove(&device).unwrap_or_default();
        for sample in tail.iter().chain(new) {
            rows.extend(cut(&mut current, sample).map(|s| (device, s)));
        }
        rows.extend(current.map(|s| (device, s)));
    }
    upsert(transaction, &rows).await
}

/// The span to cut again around changed positions from `$2` to `$3` of device `$1`,
/// widened so both ends are segment bounds that the change cannot move: back to the
/// start of the segment before (the first new position may join it), forward past the
/// next valid fix (whose distance changed) to the end of the segment after it, or to the
/// last position when no segment starts after it.
const RECUT_SPAN: &str = "WITH target AS (
        SELECT greatest($3, coalesce((SELECT fix_time FROM positions
                                       WHERE device_id = $1 AND fix_time > $3 AND valid AND lat IS NOT NULL
                                       ORDER BY fix_time LIMIT 1), $3)) AS at
    )
    SELECT coalesce((SELECT start_time FROM segments WHERE device_id = $1 AND start_time < $2
                     ORDER BY start_time DESC LIMIT 1), $2),
           -- Past the last segment: through the tail to the last position.
           coalesce((SELECT end_time FROM segments WHERE device_id = $1 AND start_time > t.at
                     ORDER BY start_time LIMIT 1),
                    greatest(t.at, (SELECT fix_time FROM positions WHERE device_id = $1 ORDER BY fix_time DESC LIMIT 1)))
    FROM target t";

/// Cuts the segments of each span (device, first and last changed position) again from
/// the stored positions. Runs after distances and motion were derived again.
pub async fn recut(
    transaction: &Transaction<'_>,
    spans: &[(DeviceId, Timestamp, Timestamp)],
) -> Result<(), tokio_postgres::Error> {
    for &(device, lo, hi) in spans {
        let bounds = transaction.query_one(RECUT_SPAN, &[&device, &lo, &hi]).await?;
        let (from, to): (Timestamp, Timestamp) = (bounds.get(0), bounds.get(1));
        transaction
            .execute(
                "DELETE FROM segments WHERE device_id = $1 AND start_time >= $2 AND start_time <= $3",
                &[&device, &from, &to],
            )
            .await?;
        let samples = samples(transaction, device, from.0, to.0).await?;
        let rows: Vec<(DeviceId, Segment)> = segments(&samples).into_iter().map(|s| (device, s)).collect();
        upsert(transaction, &rows).await?;
    }
    Ok(())
}

/// Positions read per query while a device's history is cut the first time.
const BACKFILL_CHUNK: i64 = 50_000;

/// Cuts the whole history of one device listed in `segments_pending` (taken by no other
/// process) and removes it from the list, in one transaction under the device's lock.
/// False when the list is empty.
pub async fn backfill_one(client: &mut Client) -> Result<bool, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let Some(row) = transaction
        .query_opt("SELECT device_id FROM segments_pending ORDER BY device_id LIMIT 1 FOR UPDATE SKIP LOCKED", &[])
        .await?
    else {
        return Ok(false);
    };
    let device: DeviceId = row.get(0);
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&device]).await?;
    transaction.execute("DELETE FROM segments WHERE device_id = $1", &[&device]).await?;
    let mut open: Option<Segment> = None;
    let mut after = Timestamp(UtcMillis(FIRST_TIME));
    loop {
        let rows = transaction
            .query(
                &format!(
                    "SELECT {SAMPLE_COLUMNS} FROM positions p WHERE p.device_id = $1 AND p.fix_time > $2
                     ORDER BY p.fix_time LIMIT $3"
                ),
                &[&device, &after, &BACKFILL_CHUNK],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let mut closed = Vec::new();
        for sample in rows.iter().map(|row| sample_of(row, 0)) {
            closed.extend(cut(&mut open, &sample).map(|s| (device, s)));
        }
        upsert(&transaction, &closed).await?;
    }
    upsert(&transaction, &open.into_iter().map(|s| (device, s)).collect::<Vec<_>>()).await?;
    transaction.execute("DELETE FROM segments_pending WHERE device_id = $1", &[&device]).await?;
    transaction.commit().await?;
    Ok(true)
}

/// Deletes the segments that start before `oldest` (the positions' retention).
pub async fn drop_before(client: &Client, oldest: UtcMillis) -> Result<u64, tokio_postgres::Error> {
    client.execute("DELETE FROM segments WHERE start_time < $1", &[&Timestamp(oldest)]).await
}
