//! Report segments in Postgres (`segments`, migration 0010): each device's positions cut
//! into runs of one state ([`Segment`]), kept by the processor in the transaction that
//! stores the positions, read by reports instead of every position.
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
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use crate::history::Timestamp;
use crate::reports::{Rules, Sample, Segment, cut, segments};

/// [`FUEL_READING`], as a literal for `concat!`.
macro_rules! fuel_reading {
    () => {
        "coalesce(CASE WHEN jsonb_typeof(p.attrs->'fuel_litres') = 'number' THEN (p.attrs->>'fuel_litres')::float8 END,
             CASE WHEN jsonb_typeof(p.attrs->'fuel_level') = 'number' THEN (p.attrs->>'fuel_level')::float8 END)"
    };
}

/// A position's (`p`) fuel reading in SQL: `attrs.fuel_litres`, else `attrs.fuel_level`;
/// null when it has neither (or they are not numbers).
pub const FUEL_READING: &str = fuel_reading!();

/// What a report reads of a stored position, in [`sample_of`]'s order. Attributes of an
/// unexpected JSON type read as absent, as the processor's own parsing does.
pub const SAMPLE_COLUMNS: &str = concat!(
    "p.fix_time, CASE WHEN p.valid THEN p.lat END, CASE WHEN p.valid THEN p.lon END, p.speed,
    CASE WHEN jsonb_typeof(p.attrs->'ignition') = 'boolean' THEN (p.attrs->>'ignition')::boolean END, p.moving,
    p.distance_m,
    CASE WHEN jsonb_typeof(p.attrs->'odometer') = 'number' THEN (p.attrs->>'odometer')::float8 END, ",
    fuel_reading!()
);

/// A row selected with [`SAMPLE_COLUMNS`] starting at column `at`.
pub fn sample_of(row: &Row, at: usize) -> Sample {
    Sample {
        time: row.get::<_, Timestamp>(at).0,
        fix: row.get::<_, Option<f64>>(at + 1).zip(row.get::<_, Option<f64>>(at + 2)),
        speed: row.get(at + 3),
        ignition: row.get(at + 4),
        moving: row.get(at + 5),
        distance_m: row.get(at + 6),
        odometer: row.get(at + 7),
        fuel: row.get(at + 8),
    }
}

/// The `segments` columns after `device_id`, in [`segment_of`]'s order.
const SEGMENT_COLUMNS: &str = "start_time, end_time, samples, ignition, moving, first_lat, first_lon, last_lat, \
    last_lon, distance_m, first_distance_m, max_speed, max_gap_ms, first_odometer, last_odometer, odometer_rising, \
    first_fuel, last_fuel, fuel_readings, fuel_falls";

/// A row selected with [`SEGMENT_COLUMNS`] starting at column `at`.
fn segment_of(row: &Row, at: usize) -> Segment {
    let point = |i: usize| row.get::<_, Option<f64>>(at + i).zip(row.get::<_, Option<f64>>(at + i + 1));
    Segment {
        start: row.get::<_, Timestamp>(at).0,
        end: row.get::<_, Timestamp>(at + 1).0,
        samples: row.get::<_, i32>(at + 2) as u32,
        ignition: row.get(at + 3),
        moving: row.get(at + 4),
        first_fix: point(5),
        last_fix: point(7),
        distance_m: row.get(at + 9),
        first_distance_m: row.get(at + 10),
        max_speed: row.get(at + 11),
        max_gap_ms: row.get(at + 12),
        first_odometer: row.get(at + 13),
        last_odometer: row.get(at + 14),
        odometer_rising: row.get(at + 15),
        first_fuel: row.get(at + 16),
        last_fuel: row.get(at + 17),
        fuel_readings: row.get::<_, i32>(at + 18) as u32,
        fuel_falls: row.get(at + 19),
    }
}

/// Writes segments (device, segment); one already stored with the same device and start
/// is replaced.
async fn upsert(client: &impl GenericClient, rows: &[(i64, Segment)]) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Segment) -> Option<f64>| rows.iter().map(|(_, s)| f(s)).collect::<Vec<_>>();
    let devices: Vec<i64> = rows.iter().map(|r| r.0).collect();
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
    pub new: BTreeMap<i64, Vec<Sample>>,
    /// Each device's last stored position (time, ignition, motion), if it has one.
    pub last_stored: HashMap<i64, Sample>,
    /// Devices whose older history is still to be cut ([`backfill_one`] does it all).
    pub pending: HashSet<i64>,
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
    let mut due: Vec<(i64, &Vec<Sample>)> = Vec::new();
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
    let ids: Vec<i64> = due.iter().map(|d| d.0).collect();
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
    let mut open: HashMap<i64, Segment> = last.iter().map(|row| (row.get(0), segment_of(row, 1))).collect();
    // The tails: stored positions after each device's last segment.
    let tails: Vec<(i64, Timestamp, Timestamp)> = due
        .iter()
        .filter_map(|(device, new)| {
            let after = open.get(device).map_or(UtcMillis(FIRST_TIME), |s| UtcMillis(s.end.0 + 1));
            let before = UtcMillis(new[0].time.0 - 1);
            (after <= before).then_some((*device, Timestamp(after), Timestamp(before)))
        })
        .collect();
    let mut tail_samples: HashMap<i64, Vec<Sample>> = HashMap::new();
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

/// Before any clock a device could have (year 1).
const FIRST_TIME: i64 = -62_135_596_800_000;

/// The stored positions of each range (device, first and last time, inclusive) as
/// samples, in time order, one list per range.
async fn read_ranges(
    client: &impl GenericClient,
    ranges: &[(i64, Timestamp, Timestamp)],
) -> Result<Vec<Vec<Sample>>, tokio_postgres::Error> {
    let mut read: Vec<Vec<Sample>> = vec![Vec::new(); ranges.len()];
    if ranges.is_empty() {
        return Ok(read);
    }
    let devices: Vec<i64> = ranges.iter().map(|r| r.0).collect();
    let lows: Vec<Timestamp> = ranges.iter().map(|r| r.1).collect();
    let highs: Vec<Timestamp> = ranges.iter().map(|r| r.2).collect();
    let rows = client
        .query(
            &format!(
                "SELECT r.i, {SAMPLE_COLUMNS}
                 FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS r(device_id, lo, hi, i)
                 CROSS JOIN LATERAL (
                     SELECT * FROM positions p WHERE p.device_id = r.device_id AND p.fix_time >= r.lo
                       AND p.fix_time <= r.hi ORDER BY p.fix_time OFFSET 0
                 ) p
                 ORDER BY r.i, p.fix_time"
            ),
            &[&devices, &lows, &highs],
        )
        .await?;
    for row in &rows {
        let index = row.get::<_, i64>(0) as usize - 1;
        read[index].push(sample_of(row, 1));
    }
    Ok(read)
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
    spans: &[(i64, Timestamp, Timestamp)],
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
        let rows: Vec<(i64, Segment)> = segments(&samples).into_iter().map(|s| (device, s)).collect();
        upsert(transaction, &rows).await?;
    }
    Ok(())
}

/// One device's (`$1`) positions from `$2` to `$3` (inclusive) as samples, in time order.
pub fn samples_query() -> String {
    format!(
        "SELECT {SAMPLE_COLUMNS} FROM positions p
         WHERE p.device_id = $1 AND p.fix_time >= $2 AND p.fix_time <= $3 ORDER BY p.fix_time"
    )
}

/// The segments of devices `$1` reaching into the span from `$3` to `$4`; `$2` is the
/// start of the UTC day of `$3` (a segment lies within one day, so the primary key's
/// range on the start time finds them all).
pub fn segments_query() -> String {
    format!(
        "SELECT device_id, {SEGMENT_COLUMNS} FROM segments
         WHERE device_id = ANY($1) AND start_time >= $2 AND start_time <= $4 AND end_time >= $3
         ORDER BY device_id, start_time"
    )
}

/// One device's samples from `from` to `to` (inclusive), in time order.
pub async fn samples(
    client: &impl GenericClient,
    device: i64,
    from: UtcMillis,
    to: UtcMillis,
) -> Result<Vec<Sample>, tokio_postgres::Error> {
    let rows = client.query(&samples_query(), &[&device, &Timestamp(from), &Timestamp(to)]).await?;
    Ok(rows.iter().map(|row| sample_of(row, 0)).collect())
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
    let device: i64 = row.get(0);
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

/// What a report reads of each device from `from` to `to`: the stored segments inside,
/// and the positions themselves where a segment reaches over an end of the span, has a
/// data gap longer than the device's `max_gap_s`, after the last segment (the tail, at
/// most the last minute), or the device is still waiting for its history to be cut.
/// Same answer as reading every position, far fewer rows.
pub async fn pieces(
    client: &impl GenericClient,
    devices: &[(i64, Rules)],
    from: UtcMillis,
    to: UtcMillis,
) -> Result<Vec<Vec<Segment>>, tokio_postgres::Error> {
    let ids: Vec<i64> = devices.iter().map(|d| d.0).collect();
    let pending: HashSet<i64> = client
        .query("SELECT device_id FROM segments_pending WHERE device_id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let day_start = UtcMillis(from.0.div_euclid(86_400_000) * 86_400_000);
    let rows =
        client.query(&segments_query(), &[&ids, &Timestamp(day_start), &Timestamp(from), &Timestamp(to)]).await?;
    let mut stored: HashMap<i64, Vec<Segment>> = HashMap::new();
    for row in &rows {
        stored.entry(row.get(0)).or_default().push(segment_of(row, 1));
    }
    // Each device's pieces: a stored segment, or a range whose positions are read.
    enum Piece {
        Stored(Segment),
        Read(usize),
    }
    let mut ranges: Vec<(i64, Timestamp, Timestamp)> = Vec::new();
    let mut plans: Vec<Vec<Piece>> = Vec::new();
    for (device, rules) in devices {
        let mut plan = Vec::new();
        if pending.contains(device) {
            plan.push(Piece::Read(ranges.len()));
            ranges.push((*device, Timestamp(from), Timestamp(to)));
        } else {
            let mut covered = UtcMillis(from.0 - 1);
            for segment in stored.remove(device).unwrap_or_default() {
                covered = segment.end;
                if segment.start < from || segment.end > to || segment.needs_samples(rules) {
                    plan.push(Piece::Read(ranges.len()));
                    ranges.push((*device, Timestamp(segment.start.max(from)), Timestamp(segment.end.min(to))));
                } else {
                    plan.push(Piece::Stored(segment));
                }
            }
            // Positions after the last segment in the span: none, or the tail.
            if covered < to {
                plan.push(Piece::Read(ranges.len()));
                ranges.push((*device, Timestamp(UtcMillis(covered.0 + 1)), Timestamp(to)));
            }
        }
        plans.push(plan);
    }
    let read = read_ranges(client, &ranges).await?;
    Ok(plans
        .into_iter()
        .map(|plan| {
            let mut pieces = Vec::new();
            for piece in plan {
                match piece {
                    Piece::Stored(segment) => pieces.push(segment),
                    Piece::Read(index) => pieces.extend(read[index].iter().map(Segment::of)),
                }
            }
            pieces
        })
        .collect())
}

/// The report rules of each of `devices`: its own over its tenant's over the defaults.
/// Rules that do not read (set by hand in SQL) fall back to the defaults, with a warning.
pub async fn device_rules(
    client: &impl GenericClient,
    devices: &[i64],
) -> Result<HashMap<i64, Rules>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT d.id, (coalesce(t.report_rules, '{}'::jsonb) || coalesce(d.report_rules, '{}'::jsonb))::text
             FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = ANY($1)",
            &[&devices],
        )
        .await?;
    let mut rules = HashMap::new();
    for row in rows {
        let device: i64 = row.get(0);
        let merged = serde_json::from_str::<Rules>(row.get(1)).unwrap_or_else(|error| {
            tracing::warn!(%error, device_id = device, "report rules do not read; using the defaults");
            Rules::default()
        });
        rules.insert(device, merged);
    }
    Ok(rules)
}

/// Deletes the segments that start before `oldest` (the positions' retention).
pub async fn drop_before(client: &Client, oldest: UtcMillis) -> Result<u64, tokio_postgres::Error> {
    client.execute("DELETE FROM segments WHERE start_time < $1", &[&Timestamp(oldest)]).await
}
