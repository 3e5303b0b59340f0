//! Report segments as stored (`segments`, migration 0010, kept by the processor) and
//! what reports read: stored segments, and positions as samples where a segment cannot
//! be used. The cutting itself is `fleetgate_rules::reports`.

use std::collections::{HashMap, HashSet};

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::DeviceId;
use fleetgate_rules::reports::{Rules, Sample, Segment};
use tokio_postgres::{GenericClient, Row};

use crate::rows::Timestamp;

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

/// Reads a row's columns one after another, from a given one.
struct Columns<'a> {
    row: &'a Row,
    next: usize,
}

impl<'a> Columns<'a> {
    fn at(row: &'a Row, first: usize) -> Self {
        Columns { row, next: first }
    }

    fn get<T: tokio_postgres::types::FromSql<'a>>(&mut self) -> T {
        self.next += 1;
        self.row.get(self.next - 1)
    }

    fn time(&mut self) -> UtcMillis {
        self.get::<Timestamp>().0
    }

    /// Two columns, latitude and longitude, as a point when both are there.
    fn point(&mut self) -> Option<(f64, f64)> {
        let lat: Option<f64> = self.get();
        lat.zip(self.get::<Option<f64>>())
    }

    fn count(&mut self) -> u32 {
        self.get::<i32>() as u32
    }
}

/// A row selected with [`SAMPLE_COLUMNS`] starting at column `at`.
pub fn sample_of(row: &Row, at: usize) -> Sample {
    let mut c = Columns::at(row, at);
    Sample {
        time: c.time(),
        fix: c.point(),
        speed: c.get(),
        ignition: c.get(),
        moving: c.get(),
        distance_m: c.get(),
        odometer: c.get(),
        fuel: c.get(),
    }
}

/// The `segments` columns after `device_id`, in [`segment_of`]'s order.
pub const SEGMENT_COLUMNS: &str = "start_time, end_time, samples, ignition, moving, first_lat, first_lon, last_lat, \
    last_lon, distance_m, first_distance_m, max_speed, max_gap_ms, first_odometer, last_odometer, odometer_rising, \
    first_fuel, last_fuel, fuel_readings, fuel_falls";

/// A row selected with [`SEGMENT_COLUMNS`] starting at column `at`.
pub fn segment_of(row: &Row, at: usize) -> Segment {
    let mut c = Columns::at(row, at);
    Segment {
        start: c.time(),
        end: c.time(),
        samples: c.count(),
        ignition: c.get(),
        moving: c.get(),
        first_fix: c.point(),
        last_fix: c.point(),
        distance_m: c.get(),
        first_distance_m: c.get(),
        max_speed: c.get(),
        max_gap_ms: c.get(),
        first_odometer: c.get(),
        last_odometer: c.get(),
        odometer_rising: c.get(),
        first_fuel: c.get(),
        last_fuel: c.get(),
        fuel_readings: c.count(),
        fuel_falls: c.get(),
    }
}

/// Before any clock a device could have (year 1).
pub const FIRST_TIME: i64 = -62_135_596_800_000;

/// The stored positions of each range (device, first and last time, inclusive) as
/// samples, in time order, one list per range.
pub async fn read_ranges(
    client: &impl GenericClient,
    ranges: &[(DeviceId, Timestamp, Timestamp)],
) -> Result<Vec<Vec<Sample>>, tokio_postgres::Error> {
    let mut read: Vec<Vec<Sample>> = vec![Vec::new(); ranges.len()];
    if ranges.is_empty() {
        return Ok(read);
    }
    let devices: Vec<DeviceId> = ranges.iter().map(|r| r.0).collect();
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
    device: DeviceId,
    from: UtcMillis,
    to: UtcMillis,
) -> Result<Vec<Sample>, tokio_postgres::Error> {
    let rows = client.query(&samples_query(), &[&device, &Timestamp(from), &Timestamp(to)]).await?;
    Ok(rows.iter().map(|row| sample_of(row, 0)).collect())
}

/// What a report reads of each device from `from` to `to`: the stored segments inside,
/// and the positions themselves where a segment reaches over an end of the span, has a
/// data gap longer than the device's `max_gap_s`, after the last segment (the tail, at
/// most the last minute), or the device is still waiting for its history to be cut.
/// Same answer as reading every position, far fewer rows.
pub async fn pieces(
    client: &impl GenericClient,
    devices: &[(DeviceId, Rules)],
    from: UtcMillis,
    to: UtcMillis,
) -> Result<Vec<Vec<Segment>>, tokio_postgres::Error> {
    let ids: Vec<DeviceId> = devices.iter().map(|d| d.0).collect();
    let pending: HashSet<DeviceId> = client
        .query("SELECT device_id FROM segments_pending WHERE device_id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let day_start = UtcMillis(from.0.div_euclid(86_400_000) * 86_400_000);
    let rows =
        client.query(&segments_query(), &[&ids, &Timestamp(day_start), &Timestamp(from), &Timestamp(to)]).await?;
    let mut stored: HashMap<DeviceId, Vec<Segment>> = HashMap::new();
    for row in &rows {
        stored.entry(row.get(0)).or_default().push(segment_of(row, 1));
    }
    // Each device's pieces: a stored segment, or a range whose positions are read.
    enum Piece {
        Stored(Segment),
        Read(usize),
    }
    let mut ranges: Vec<(DeviceId, Timestamp, Timestamp)> = Vec::new();
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
    devices: &[DeviceId],
) -> Result<HashMap<DeviceId, Rules>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT d.id, (coalesce(t.report_rules, '{}'::jsonb) || coalesce(d.report_rules, '{}'::jsonb))::text
             FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.id = ANY($1)",
            &[&devices],
        )
        .await?;
    let mut rules = HashMap::new();
    for row in rows {
        let device: DeviceId = row.get(0);
        let merged = serde_json::from_str::<Rules>(row.get(1)).unwrap_or_else(|error| {
            tracing::warn!(%error, device_id = device.0, "report rules do not read; using the defaults");
            Rules::default()
        });
        rules.insert(device, merged);
    }
    Ok(rules)
}
