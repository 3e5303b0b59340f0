//! History in Postgres: one transaction per batch, and the one pipeline every derivation
//! goes through, whether the data appends, arrives late or is reprocessed.
//!
//! For each device of a batch the pipeline reads a *window*: its stored rows from the
//! first new one (or the start of a span to derive again) to the stored neighbours that
//! decide the transitions at the window's end, plus the context before it (the last row,
//! the last valid fix). A device that only appends has no stored rows there, so its
//! window is its new rows and the context: one indexed read for the whole batch. Then the
//! pure rules of `fleetgate_rules` run over the window (distance and motion per row,
//! ignition/motion/power/alarm events), and the results replace the window's: new rows
//! are copied in with their derived values, stored rows whose values changed are
//! updated, the window's events are replaced. Report segments, geofence crossings,
//! overspeeds with a minimum duration and fuel drains follow the same pattern over the
//! same windows (`segments`, [`geofence_events`], `overspeed`, `fuel`).
//!
//! Concurrent batches (workers here, other processor processes) touching the same device
//! take its advisory lock first, in device order, so each sees the rows the other
//! committed and no two deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::messages::{DeviceMessage, Position, Status};
use fleetgate_contracts::{DeviceId, TenantId};
use fleetgate_rules::events::{self, State, Thresholds};
use fleetgate_rules::geofence::crossings;
use fleetgate_rules::reports::Sample;
use fleetgate_rules::track;
use fleetgate_store::partitions::Partitions;
use fleetgate_store::rows::{EVENT_JSON, Jsonb, STATUS_EVENT_JSON, Timestamp};
use fleetgate_store::segments::FUEL_READING;
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use crate::fuel;
use crate::geofence::Fences;
use crate::overspeed;
use crate::segments;

/// An event for the live stream: its tenant, device and JSON.
pub type NewEvent = (TenantId, DeviceId, String);

/// A device's span of time, derived again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Owner.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// First time (inclusive).
    pub from: UtcMillis,
    /// Last time (inclusive).
    pub to: UtcMillis,
}

/// What one batch changed.
#[derive(Debug, Default)]
pub struct Written {
    /// Positions newly stored.
    pub inserted: u64,
    /// Positions that were already stored.
    pub duplicates: u64,
    /// Events (re)derived in this batch, for the live stream.
    pub events: Vec<NewEvent>,
}

/// A worker's Postgres connection and what it prepared on it.
pub struct History {
    fences: Fences,
    client: Client,
    partitions: Partitions,
    thresholds: Thresholds,
}

/// Binary COPY of new rows into `positions`.
const COPY_POSITIONS: &str = "COPY positions (device_id, fix_time, tenant_id, received, lat, lon, altitude, \
     speed, course, satellites, valid, attrs, io, distance_m, moving) FROM STDIN BINARY";

/// Column types of the COPY, in order.
pub const COPY_TYPES: [Type; 15] = [
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT4,
    Type::BOOL,
    Type::JSONB,
    Type::JSONB,
    Type::FLOAT8,
    Type::BOOL,
];

/// What the event rule reads of a stored position (`p`), typed in SQL as the processor
/// reads it from a new position's JSON: a value of another JSON type is absent.
macro_rules! state_columns {
    ($p:literal) => {
        concat!(
            "CASE WHEN jsonb_typeof(",
            $p,
            ".attrs->'motion') = 'boolean' THEN (",
            $p,
            ".attrs->>'motion')::boolean END AS motion, ",
            "CASE WHEN jsonb_typeof(",
            $p,
            ".attrs->'ignition') = 'boolean' THEN (",
            $p,
            ".attrs->>'ignition')::boolean END AS ignition, ",
            $p,
            ".speed AS speed, ",
            "CASE WHEN jsonb_typeof(",
            $p,
            ".attrs->'power_voltage') = 'number' THEN (",
            $p,
            ".attrs->>'power_voltage')::float8 END AS power, ",
            "CASE WHEN jsonb_typeof(",
            $p,
            ".attrs->'battery_voltage') = 'number' THEN (",
            $p,
            ".attrs->>'battery_voltage')::float8 END AS battery, ",
            "CASE WHEN jsonb_typeof(",
            $p,
            ".attrs->'alarm') = 'string' THEN ",
            $p,
            ".attrs->>'alarm' END AS alarm"
        )
    };
}

/// Reads the six [`state_columns`] from `at`.
fn state_of_row(row: &tokio_postgres::Row, at: usize) -> State {
    State {
        motion: row.get(at),
        ignition: row.get(at + 1),
        speed: row.get(at + 2),
        power: row.get(at + 3),
        battery: row.get(at + 4),
        alarm: row.get(at + 5),
    }
}

/// Per device (`$1`) and the start of its window (`$2`): whether anything is stored at
/// or after the start (then the window's stored rows are read too), the last valid fix
/// before it, the device's speed limit and overspeed minimum, whether its history still
/// waits to be cut into report segments, and the last row before the start (its time
/// and event state, columns 7 to 13).
const CONTEXT: &str = concat!(
    "SELECT s.device_id,
        EXISTS (SELECT 1 FROM positions p WHERE p.device_id = s.device_id AND p.fix_time >= s.lo),
        fix.lat, fix.lon, d.speed_limit::float8, d.overspeed_min_s,
        EXISTS (SELECT 1 FROM segments_pending sp WHERE sp.device_id = s.device_id), prev.*
    FROM unnest($1::bigint[], $2::timestamptz[]) AS s(device_id, lo)
    LEFT JOIN devices d ON d.id = s.device_id
    LEFT JOIN LATERAL (
        SELECT p.lat, p.lon FROM positions p
        WHERE p.device_id = s.device_id AND p.fix_time < s.lo AND p.valid AND p.lat IS NOT NULL AND p.lon IS NOT NULL
        ORDER BY p.fix_time DESC LIMIT 1
    ) fix ON true
    LEFT JOIN LATERAL (
        SELECT p.fix_time, ",
    state_columns!("p"),
    " FROM positions p WHERE p.device_id = s.device_id AND p.fix_time < s.lo
        ORDER BY p.fix_time DESC LIMIT 1
    ) prev ON true"
);

/// The stored rows of windows (device `$1`, from `$2`, new data up to `$3`): from the
/// start through the first row after the new data and the first valid fix after it,
/// whose transitions and distance the new data decides. Each with its event state,
/// valid fix, coordinates, odometer, fuel and stored derived values.
static STORED_WINDOWS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    [
        "SELECT w.i, p.fix_time, ",
        state_columns!("p"),
        ", p.valid, p.lat, p.lon,
        CASE WHEN jsonb_typeof(p.attrs->'odometer') = 'number' THEN (p.attrs->>'odometer')::float8 END, ",
        FUEL_READING,
        ", p.distance_m, p.moving
    FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(device_id, lo, hi, i)
    CROSS JOIN LATERAL (
        SELECT greatest(
            (SELECT q.fix_time FROM positions q WHERE q.device_id = w.device_id AND q.fix_time > w.hi
             ORDER BY q.fix_time LIMIT 1),
            (SELECT q.fix_time FROM positions q WHERE q.device_id = w.device_id AND q.fix_time > w.hi AND q.valid
               AND q.lat IS NOT NULL AND q.lon IS NOT NULL ORDER BY q.fix_time LIMIT 1),
            w.hi) AS last
    ) e
    -- LATERAL with OFFSET 0 keeps the planner from flattening this into a join over
    -- every stored row: an index range scan per window.
    CROSS JOIN LATERAL (
        SELECT * FROM positions p WHERE p.device_id = w.device_id AND p.fix_time >= w.lo AND p.fix_time <= e.last
        OFFSET 0
    ) p
    ORDER BY w.i, p.fix_time",
    ]
    .concat()
});

/// One device's window: the rows the rules look at, and what they need from before it.
#[derive(Debug)]
struct Window<'a> {
    tenant: TenantId,
    device: DeviceId,
    /// Derived again from here: the first new row, or the start of a span to derive again.
    lo: UtcMillis,
    /// The new rows (or the span) reach to here.
    hi: UtcMillis,
    /// Stored rows at or after `lo` exist (late data, a redelivery, a span derived
    /// again): they are read into the window and its old results replaced.
    stored: bool,
    /// The last row before `lo`: its time and event state.
    previous: Option<(UtcMillis, State)>,
    /// The last valid fix before `lo`.
    previous_fix: Option<(f64, f64)>,
    /// The device's speed limit, for the event rule (devices without a minimum duration).
    speed_limit: Option<f64>,
    /// The device's speed limit and minimum overspeed duration (seconds), when it has one.
    overspeed: Option<(f64, i64)>,
    /// Its history from before report segments is still to be cut.
    segments_pending: bool,
    /// The rows from `lo`, in time order.
    rows: Vec<Row<'a>>,
}

/// One row of a window.
#[derive(Debug)]
struct Row<'a> {
    time: UtcMillis,
    state: State,
    /// Coordinates of a valid fix.
    fix: Option<(f64, f64)>,
    /// Coordinates, valid or not.
    coordinates: Option<(f64, f64)>,
    odometer: Option<f64>,
    fuel: Option<f64>,
    source: Source<'a>,
}

/// Where a window's row comes from.
#[derive(Debug)]
enum Source<'a> {
    /// This batch: to be copied in with its derived values.
    New(&'a Position),
    /// Stored, with the derived values it has.
    Stored { distance_m: Option<f64>, moving: Option<bool> },
}

impl<'a> Row<'a> {
    fn new(position: &'a Position) -> Self {
        let (state, odometer, fuel) = state_of(position);
        Row {
            time: position.fix_time,
            fix: position.coordinates.filter(|_| position.valid),
            coordinates: position.coordinates,
            state,
            odometer,
            fuel,
            source: Source::New(position),
        }
    }

    fn stored(row: &tokio_postgres::Row) -> Self {
        let coordinates = row.get::<_, Option<f64>>(9).zip(row.get::<_, Option<f64>>(10));
        Row {
            time: row.get::<_, Timestamp>(1).0,
            state: state_of_row(row, 2),
            fix: coordinates.filter(|_| row.get::<_, bool>(8)),
            coordinates,
            odometer: row.get(11),
            fuel: row.get(12),
            source: Source::Stored { distance_m: row.get(13), moving: row.get(14) },
        }
    }
}

/// What the derivations read of a new position: the event rule's state (its `attrs`
/// parsed once) and, for report segments, its odometer and fuel. A value of an
/// unexpected JSON type is absent, as in [`state_columns`].
fn state_of(p: &Position) -> (State, Option<f64>, Option<f64>) {
    #[derive(serde::Deserialize)]
    struct Attrs {
        motion: Option<serde_json::Value>,
        ignition: Option<serde_json::Value>,
        power_voltage: Option<serde_json::Value>,
        battery_voltage: Option<serde_json::Value>,
        alarm: Option<serde_json::Value>,
        odometer: Option<serde_json::Value>,
        fuel_litres: Option<serde_json::Value>,
        fuel_level: Option<serde_json::Value>,
    }
    let attrs: Option<Attrs> = serde_json::from_str(&p.attrs).ok();
    let attrs = attrs.as_ref();
    let number = |value: &Option<serde_json::Value>| value.as_ref().and_then(serde_json::Value::as_f64);
    let state = State {
        motion: attrs.and_then(|a| a.motion.as_ref()?.as_bool()),
        ignition: attrs.and_then(|a| a.ignition.as_ref()?.as_bool()),
        speed: p.speed,
        power: attrs.and_then(|a| number(&a.power_voltage)),
        battery: attrs.and_then(|a| number(&a.battery_voltage)),
        alarm: attrs.and_then(|a| Some(a.alarm.as_ref()?.as_str()?.to_owned())),
    };
    let odometer = attrs.and_then(|a| number(&a.odometer));
    let fuel = attrs.and_then(|a| number(&a.fuel_litres).or_else(|| number(&a.fuel_level)));
    (state, odometer, fuel)
}

/// A row's derived values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Derived {
    /// Metres from the device's previous valid fix (valid fixes only).
    distance_m: Option<f64>,
    /// Moving, by the device's flag or its speed.
    moving: Option<bool>,
}

impl Derived {
    /// The same values as `other`, up to float noise (a stored distance may come from an
    /// older build that computed it in SQL).
    fn same_as(&self, distance_m: Option<f64>, moving: Option<bool>) -> bool {
        let close = match (self.distance_m, distance_m) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            (a, b) => a == b,
        };
        close && self.moving == moving
    }
}

/// An event to store for one device: `reference` tells apart events of one kind at one
/// time (the geofence of a crossing; 0 for the rest).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Owner.
    pub tenant: TenantId,
    /// The device.
    pub device: DeviceId,
    /// When.
    pub time: UtcMillis,
    /// What.
    pub kind: &'static str,
    /// Which geofence, for crossings; 0 otherwise.
    pub reference: i64,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
    /// `details` (JSON).
    pub details: String,
}

/// Stores events: new ones are inserted, one stored with other details (derived again
/// after late data) is updated. Returns the new and changed ones for the live stream.
pub async fn store_events(
    transaction: &Transaction<'_>,
    events: &[EventRow],
) -> Result<Vec<NewEvent>, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let devices: Vec<DeviceId> = events.iter().map(|e| e.device).collect();
    let times: Vec<Timestamp> = events.iter().map(|e| Timestamp(e.time)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let references: Vec<i64> = events.iter().map(|e| e.reference).collect();
    let tenants: Vec<TenantId> = events.iter().map(|e| e.tenant).collect();
    let lats: Vec<Option<f64>> = events.iter().map(|e| e.coordinates.map(|c| c.0)).collect();
    let lons: Vec<Option<f64>> = events.iter().map(|e| e.coordinates.map(|c| c.1)).collect();
    let details: Vec<Jsonb> = events.iter().map(|e| Jsonb(&e.details)).collect();
    let rows = transaction
        .query(
            &format!(
                "INSERT INTO events (device_id, time, kind, ref, tenant_id, lat, lon, details)
                 SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[],
                                      $6::float8[], $7::float8[], $8::jsonb[])
                 ON CONFLICT (device_id, time, kind, ref) DO UPDATE
                     SET lat = EXCLUDED.lat, lon = EXCLUDED.lon, details = EXCLUDED.details
                     WHERE events.details IS DISTINCT FROM EXCLUDED.details
                 RETURNING tenant_id, device_id, {EVENT_JSON}"
            ),
            &[&devices, &times, &kinds, &references, &tenants, &lats, &lons, &details],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Makes `events` the device's events of `kinds` from `from` to `to` (inclusive): a
/// window derived again. Those no longer derived are deleted, the rest stored as by
/// [`store_events`].
pub async fn replace_events(
    transaction: &Transaction<'_>,
    device: DeviceId,
    kinds: &[&str],
    (from, to): (UtcMillis, UtcMillis),
    events: &[EventRow],
) -> Result<Vec<NewEvent>, tokio_postgres::Error> {
    let times: Vec<Timestamp> = events.iter().map(|e| Timestamp(e.time)).collect();
    let kept_kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let references: Vec<i64> = events.iter().map(|e| e.reference).collect();
    transaction
        .execute(
            "DELETE FROM events e WHERE e.device_id = $1 AND e.kind = ANY($2) AND e.time >= $3 AND e.time <= $4
               AND NOT EXISTS (SELECT 1 FROM unnest($5::timestamptz[], $6::text[], $7::bigint[]) k(time, kind, ref)
                               WHERE k.time = e.time AND k.kind = e.kind AND k.ref = e.ref)",
            &[&device, &kinds, &Timestamp(from), &Timestamp(to), &times, &kept_kinds, &references],
        )
        .await?;
    store_events(transaction, events).await
}

/// Copies new rows in with their derived values.
async fn copy_rows(transaction: &Transaction<'_>, rows: &[(&Position, Derived)]) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sink = transaction.copy_in(COPY_POSITIONS).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for (p, d) in rows {
        let (lat, lon) = p.coordinates.unzip();
        writer
            .as_mut()
            .write(&[
                &p.device_id,
                &Timestamp(p.fix_time),
                &p.tenant_id,
                &Timestamp(p.received),
                &lat,
                &lon,
                &p.altitude,
                &p.speed,
                &p.course,
                &p.satellites,
                &p.valid,
                &Jsonb(&p.attrs),
                &Jsonb(&p.io),
                &d.distance_m,
                &d.moving,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Writes the derived values that changed on stored rows.
async fn update_rows(
    transaction: &Transaction<'_>,
    rows: &[(DeviceId, UtcMillis, Derived)],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let devices: Vec<DeviceId> = rows.iter().map(|r| r.0).collect();
    let times: Vec<Timestamp> = rows.iter().map(|r| Timestamp(r.1)).collect();
    let distances: Vec<Option<f64>> = rows.iter().map(|r| r.2.distance_m).collect();
    let moving: Vec<Option<bool>> = rows.iter().map(|r| r.2.moving).collect();
    transaction
        .execute(
            "UPDATE positions p SET distance_m = u.distance_m, moving = u.moving
             FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::bool[]) AS u(device_id, fix_time, distance_m, moving)
             WHERE p.device_id = u.device_id AND p.fix_time = u.fix_time",
            &[&devices, &times, &distances, &moving],
        )
        .await?;
    Ok(())
}

/// Reads every device's window: the context for all, the stored rows where there are
/// any, merged with the new rows (a new row whose key is stored already is dropped: the
/// stored one wins, as a resend must not change history). `spans` widens the windows of
/// devices whose rows must be derived again whatever arrived.
async fn read_windows<'a>(
    transaction: &Transaction<'_>,
    unique: &[&'a Position],
    spans: &[(TenantId, DeviceId, UtcMillis, UtcMillis)],
) -> Result<Vec<Window<'a>>, tokio_postgres::Error> {
    let mut plans: BTreeMap<DeviceId, (TenantId, UtcMillis, UtcMillis, bool)> = BTreeMap::new();
    for p in unique {
        let plan = plans.entry(p.device_id).or_insert((p.tenant_id, p.fix_time, p.fix_time, false));
        plan.1 = plan.1.min(p.fix_time);
        plan.2 = plan.2.max(p.fix_time);
    }
    for &(tenant, device, lo, hi) in spans {
        let plan = plans.entry(device).or_insert((tenant, lo, hi, true));
        plan.1 = plan.1.min(lo);
        plan.2 = plan.2.max(hi);
        plan.3 = true;
    }
    let ids: Vec<DeviceId> = plans.keys().copied().collect();
    let lows: Vec<Timestamp> = plans.values().map(|p| Timestamp(p.1)).collect();
    let context = transaction.query(CONTEXT, &[&ids, &lows]).await?;
    let mut windows: Vec<Window<'a>> = Vec::with_capacity(context.len());
    for row in &context {
        let device: DeviceId = row.get(0);
        let Some(&(tenant, lo, hi, forced)) = plans.get(&device) else { continue };
        let limit: Option<f64> = row.get(4);
        let minimum = row.get::<_, Option<i32>>(5).filter(|m| *m > 0);
        let previous = row.get::<_, Option<Timestamp>>(7).map(|time| (time.0, state_of_row(row, 8)));
        windows.push(Window {
            tenant,
            device,
            lo,
            hi,
            stored: forced || row.get::<_, bool>(1),
            previous,
            previous_fix: row.get::<_, Option<f64>>(2).zip(row.get::<_, Option<f64>>(3)),
            speed_limit: if minimum.is_some() { None } else { limit },
            overspeed: limit.zip(minimum.map(i64::from)),
            segments_pending: row.get(6),
            rows: Vec::new(),
        });
    }
    // Stored rows, for the windows that have some.
    let stored: Vec<usize> = (0..windows.len()).filter(|&i| windows[i].stored).collect();
    let mut stored_rows: HashMap<usize, Vec<Row<'a>>> = HashMap::new();
    if !stored.is_empty() {
        let ids: Vec<DeviceId> = stored.iter().map(|&i| windows[i].device).collect();
        let lows: Vec<Timestamp> = stored.iter().map(|&i| Timestamp(windows[i].lo)).collect();
        let highs: Vec<Timestamp> = stored.iter().map(|&i| Timestamp(windows[i].hi)).collect();
        for row in transaction.query(STORED_WINDOWS.as_str(), &[&ids, &lows, &highs]).await? {
            let index = stored[row.get::<_, i64>(0) as usize - 1];
            stored_rows.entry(index).or_default().push(Row::stored(&row));
        }
    }
    // New rows, merged in by time.
    let mut new_rows: HashMap<DeviceId, Vec<&'a Position>> = HashMap::new();
    for p in unique {
        new_rows.entry(p.device_id).or_default().push(p);
    }
    for (index, window) in windows.iter_mut().enumerate() {
        let mut new = new_rows.remove(&window.device).unwrap_or_default();
        new.sort_by_key(|p| p.fix_time);
        let stored = stored_rows.remove(&index).unwrap_or_default();
        let stored_times: HashSet<UtcMillis> = stored.iter().map(|r| r.time).collect();
        window.rows = stored;
        window.rows.extend(new.into_iter().filter(|p| !stored_times.contains(&p.fix_time)).map(Row::new));
        window.rows.sort_by_key(|r| r.time);
    }
    Ok(windows)
}

/// A window's events of `kinds`, to replace what it held.
struct Replacement {
    device: DeviceId,
    kinds: Vec<&'static str>,
    window: (UtcMillis, UtcMillis),
    events: Vec<EventRow>,
}

/// What the pipeline writes for a batch after the rules ran.
#[derive(Default)]
struct Results<'a> {
    /// New rows with their derived values.
    copy: Vec<(&'a Position, Derived)>,
    /// Stored rows whose derived values changed.
    update: Vec<(DeviceId, UtcMillis, Derived)>,
    /// Events of windows without stored rows: only added.
    added: Vec<EventRow>,
    /// Windows with stored rows: their events replaced.
    replaced: Vec<Replacement>,
    /// What appending devices add to their report segments.
    segments: segments::Appended,
}

/// Runs the per-row rules over each window: distance and motion of every row (new rows
/// copied with them, stored ones updated where they changed) and the events along it.
fn derive_windows<'a>(windows: &[Window<'a>], thresholds: Thresholds) -> Results<'a> {
    let mut results = Results::default();
    for window in windows {
        let distances = track::distances(window.previous_fix, window.rows.iter().map(|r| r.fix));
        let previous = window.previous.as_ref().map(|(_, state)| state);
        let fired = events::along(previous, window.rows.iter().map(|r| &r.state), window.speed_limit, thresholds);
        let events: Vec<EventRow> = fired
            .into_iter()
            .map(|(index, event)| EventRow {
                tenant: window.tenant,
                device: window.device,
                time: window.rows[index].time,
                kind: event.kind,
                reference: 0,
                coordinates: window.rows[index].coordinates,
                details: event.details,
            })
            .collect();
        let mut samples = Vec::new();
        for (row, distance_m) in window.rows.iter().zip(distances) {
            let derived = Derived { distance_m, moving: row.state.moving() };
            match &row.source {
                Source::New(position) => {
                    results.copy.push((position, derived));
                    samples.push(Sample {
                        time: row.time,
                        fix: row.fix,
                        speed: row.state.speed,
                        ignition: row.state.ignition,
                        moving: derived.moving,
                        distance_m: derived.distance_m,
                        odometer: row.odometer,
                        fuel: row.fuel,
                    });
                }
                Source::Stored { distance_m, moving } => {
                    if !derived.same_as(*distance_m, *moving) {
                        results.update.push((window.device, row.time, derived));
                    }
                }
            }
        }
        if window.stored {
            // The rule's kinds, but a device with a minimum overspeed duration has its
            // overspeeds from `overspeed`.
            let kinds: Vec<&'static str> =
                events::KINDS.iter().copied().filter(|k| *k != "overspeed" || window.overspeed.is_none()).collect();
            let end = window.rows.last().map_or(window.hi, |r| r.time.max(window.hi));
            results.replaced.push(Replacement { device: window.device, kinds, window: (window.lo, end), events });
        } else {
            results.added.extend(events);
            if let Some((time, state)) = &window.previous {
                let last = Sample { ignition: state.ignition, moving: state.moving(), ..Sample::at(*time) };
                results.segments.last_stored.insert(window.device, last);
            }
            if window.segments_pending {
                results.segments.pending.insert(window.device);
            }
            results.segments.new.insert(window.device, samples);
        }
    }
    results
}

/// The pipeline: stores `positions` (each key once; a key stored already keeps its row)
/// and derives everything over each device's window (widened by `spans` for devices to
/// derive again: reprocessing). Runs inside the caller's transaction and locks.
async fn store_positions(
    transaction: &Transaction<'_>,
    positions: &[Position],
    spans: &[(TenantId, DeviceId, UtcMillis, UtcMillis)],
    fences: &Fences,
    thresholds: Thresholds,
) -> Result<Written, tokio_postgres::Error> {
    let mut written = Written::default();
    if positions.is_empty() && spans.is_empty() {
        return Ok(written);
    }
    // A device may send two records with one timestamp, and a batch may hold a resent
    // frame: one row per key, the first one wins (as it would stored).
    let mut seen = HashSet::with_capacity(positions.len());
    let unique: Vec<&Position> = positions.iter().filter(|p| seen.insert((p.device_id, p.fix_time))).collect();
    let windows = read_windows(transaction, &unique, spans).await?;
    let results = derive_windows(&windows, thresholds);

    copy_rows(transaction, &results.copy).await?;
    update_rows(transaction, &results.update).await?;
    written.inserted = results.copy.len() as u64;
    written.duplicates = positions.len() as u64 - written.inserted;
    written.events = store_events(transaction, &results.added).await?;
    for replacement in &results.replaced {
        let Replacement { device, kinds, window, events } = replacement;
        written.events.extend(replace_events(transaction, *device, kinds, *window, events).await?);
    }

    // The rules over runs and stretches, on the same windows.
    let late: Vec<&Window> = windows.iter().filter(|w| w.stored).collect();
    segments::append(transaction, &results.segments).await?;
    let late_spans: Vec<(DeviceId, Timestamp, Timestamp)> =
        late.iter().map(|w| (w.device, Timestamp(w.lo), Timestamp(w.hi))).collect();
    segments::recut(transaction, &late_spans).await?;
    let fix_spans: Vec<(TenantId, DeviceId, UtcMillis, UtcMillis)> = windows
        .iter()
        .filter(|w| w.stored || w.rows.iter().any(|r| r.fix.is_some()))
        .map(|w| (w.tenant, w.device, w.lo, w.hi))
        .collect();
    written.events.extend(geofence_events(transaction, &fix_spans, fences).await?);
    let overspeed: Vec<(Span, (f64, i64))> = windows
        .iter()
        .filter_map(|w| Some((Span { tenant: w.tenant, device: w.device, from: w.lo, to: w.hi }, w.overspeed?)))
        .collect();
    written.events.extend(overspeed::derive(transaction, &overspeed).await?);
    let tenants: HashMap<DeviceId, TenantId> = windows.iter().map(|w| (w.device, w.tenant)).collect();
    let late_fuel: Vec<(DeviceId, TenantId, UtcMillis, UtcMillis)> =
        late.iter().map(|w| (w.device, w.tenant, w.lo, w.hi)).collect();
    written.events.extend(fuel::derive(transaction, &results.segments.new, &tenants, &late_fuel).await?);
    Ok(written)
}

/// The valid, possible fixes of a device from its last one before `$2` (or `$2`) to its
/// first one after `$3` (or `$3`): a span widened to the neighbours that decide the
/// crossings at its edges.
static GEOFENCE_SPAN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let possible = track::possible_sql("p");
    format!(
        "SELECT fix_time, lat, lon FROM positions p
         WHERE device_id = $1 AND valid AND {possible}
           AND fix_time >= coalesce((SELECT fix_time FROM positions p WHERE device_id = $1 AND fix_time < $2 AND valid
                                       AND {possible} ORDER BY fix_time DESC LIMIT 1), $2)
           AND fix_time <= coalesce((SELECT fix_time FROM positions p WHERE device_id = $1 AND fix_time > $3 AND valid
                                       AND {possible} ORDER BY fix_time LIMIT 1), $3)
         ORDER BY fix_time"
    )
});

/// Geofence enter and exit events of the spans (tenant, device, first and last time) of
/// devices whose tenants have geofences, by [`crossings`] over each span widened to its
/// neighbours; the window's crossings replaced.
async fn geofence_events(
    transaction: &Transaction<'_>,
    spans: &[(TenantId, DeviceId, UtcMillis, UtcMillis)],
    fences: &Fences,
) -> Result<Vec<NewEvent>, tokio_postgres::Error> {
    let mut new_events = Vec::new();
    for &(tenant, device, lo, hi) in spans {
        let Some(list) = fences.of(tenant).filter(|list| !list.is_empty()) else { continue };
        let rows = transaction.query(GEOFENCE_SPAN.as_str(), &[&device, &Timestamp(lo), &Timestamp(hi)]).await?;
        let fixes: Vec<(UtcMillis, (f64, f64))> =
            rows.iter().map(|r| (r.get::<_, Timestamp>(0).0, (r.get(1), r.get(2)))).collect();
        let (Some(first), Some(last)) = (fixes.first(), fixes.last()) else { continue };
        let events: Vec<EventRow> = crossings(&list, &fixes)
            .into_iter()
            .map(|crossing| EventRow {
                tenant,
                device,
                time: crossing.time,
                kind: if crossing.enter { "geofence_enter" } else { "geofence_exit" },
                reference: crossing.fence,
                coordinates: Some(crossing.fix),
                details: serde_json::json!({"geofence_id": crossing.fence, "name": crossing.name}).to_string(),
            })
            .collect();
        // The first fix is context: its own crossing belongs to the span before.
        let window = (UtcMillis(first.0.0 + 1), last.0);
        let kinds = ["geofence_enter", "geofence_exit"];
        new_events.extend(replace_events(transaction, device, &kinds, window, &events).await?);
    }
    Ok(new_events)
}

impl History {
    /// A writer over `client`.
    pub fn new(client: Client, partitions: Partitions, thresholds: Thresholds) -> Self {
        History { client, partitions, thresholds, fences: Fences::default() }
    }

    /// Derives geofence events from `fences` too.
    pub fn with_fences(mut self, fences: Fences) -> Self {
        self.fences = fences;
        self
    }

    /// True when the connection is gone and the worker must reconnect.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The connection, for the occasional query outside a batch.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Creates the partitions `positions` need.
    async fn prepare(&mut self, positions: &[Position]) -> Result<(), tokio_postgres::Error> {
        let months: BTreeSet<i64> = positions.iter().map(|p| self.partitions.period_of(p.fix_time)).collect();
        self.partitions.ensure(&mut self.client, months).await
    }

    /// Replaces one device's rows in one transaction: deletes the rows at `remove` (fix
    /// times) that were received at one of `received` (rows stored from other frames are
    /// never touched), stores `positions`, derives everything again over `span` (the
    /// same pipeline as a batch), and marks the device's live state for a rebuild from
    /// history.
    pub async fn replace(
        &mut self,
        (tenant, device): (TenantId, DeviceId),
        remove: &[Timestamp],
        received: &[Timestamp],
        positions: &[Position],
        span: (UtcMillis, UtcMillis),
    ) -> Result<Written, tokio_postgres::Error> {
        self.prepare(positions).await?;
        let (thresholds, fences) = (self.thresholds, self.fences.clone());
        let transaction = self.client.transaction().await?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&device]).await?;
        transaction
            .execute(
                "DELETE FROM positions WHERE device_id = $1 AND fix_time = ANY($2) AND received = ANY($3)",
                &[&device, &remove, &received],
            )
            .await?;
        let written =
            store_positions(&transaction, positions, &[(tenant, device, span.0, span.1)], &fences, thresholds).await?;
        transaction
            .execute(
                "INSERT INTO live_pending (device_id, tenant_id) VALUES ($1, $2)
                 ON CONFLICT (device_id) DO UPDATE SET since = now()",
                &[&device, &tenant],
            )
            .await?;
        transaction.commit().await?;
        Ok(written)
    }

    /// Writes one batch in one transaction: positions and everything derived from them,
    /// messages and status events. Nothing is visible (or acknowledged) unless all of it
    /// commits.
    pub async fn write(
        &mut self,
        positions: &[Position],
        messages: &[DeviceMessage],
        statuses: &[Status],
    ) -> Result<Written, tokio_postgres::Error> {
        self.prepare(positions).await?;
        let (thresholds, fences) = (self.thresholds, self.fences.clone());
        let transaction = self.client.transaction().await?;
        let devices: BTreeSet<DeviceId> = positions
            .iter()
            .map(|p| p.device_id)
            .chain(messages.iter().map(|m| m.device_id))
            .chain(statuses.iter().map(|s| s.device_id))
            .collect();
        let devices: Vec<DeviceId> = devices.into_iter().collect();
        transaction
            // `devices` is sorted and unnest keeps its order: every batch locks in the same order.
            .execute("SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS d(id)", &[&devices])
            .await?;
        let mut written = store_positions(&transaction, positions, &[], &fences, thresholds).await?;
        for m in messages {
            let digest = format!("{:016x}", digest(m.hex.as_bytes(), m.command_id.as_deref()));
            transaction
                .execute(
                    "INSERT INTO device_messages (device_id, received, digest, tenant_id, kind, time, hex, text, command_id) \
                     VALUES ($1, $2::text::timestamptz, $3, $4, $5, $6::text::timestamptz, $7, $8, $9) ON CONFLICT DO NOTHING",
                    &[&m.device_id, &m.received, &digest, &m.tenant_id, &m.kind, &m.time, &m.hex, &m.text, &m.command_id],
                )
                .await?;
        }
        for s in statuses {
            let kind = if s.online { "online" } else { "offline" };
            let inserted = transaction
                .query(
                    &format!(
                        "INSERT INTO events (device_id, time, kind, tenant_id) VALUES ($1, $2, $3, $4)
                         ON CONFLICT DO NOTHING RETURNING {STATUS_EVENT_JSON}"
                    ),
                    &[&s.device_id, &Timestamp(s.time), &kind, &s.tenant_id],
                )
                .await?;
            for row in inserted {
                written.events.push((s.tenant_id, s.device_id, row.get(0)));
            }
        }
        transaction.commit().await?;
        Ok(written)
    }
}

/// A short digest of a message payload (and the command it answers), the last part of
/// its key: two different answers in the same millisecond are two rows.
fn digest(payload: &[u8], command_id: Option<&str>) -> u64 {
    const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    let mut digest = CRC64.digest();
    digest.update(payload);
    if let Some(id) = command_id {
        digest.update(b"\0");
        digest.update(id.as_bytes());
    }
    digest.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(attrs: &str, speed: Option<f64>) -> Position {
        Position {
            tenant_id: TenantId(1),
            device_id: DeviceId(1),
            fix_time: UtcMillis(0),
            received: UtcMillis(0),
            coordinates: None,
            altitude: None,
            speed,
            course: None,
            satellites: None,
            valid: true,
            attrs: attrs.to_owned(),
            io: "{}".to_owned(),
            json: String::new(),
        }
    }

    #[test]
    fn a_value_of_another_json_type_is_absent() {
        let (state, odometer, fuel) =
            state_of(&position(r#"{"ignition":1,"motion":true,"alarm":"sos","odometer":"12","fuel_level":40}"#, None));
        assert_eq!((state.ignition, state.motion, state.alarm.as_deref()), (None, Some(true), Some("sos")));
        assert_eq!((odometer, fuel), (None, Some(40.0)));
        let (_, _, fuel) = state_of(&position(r#"{"fuel_litres":12.5,"fuel_level":40}"#, None));
        assert_eq!(fuel, Some(12.5), "litres before the level");
        assert_eq!(state_of(&position("not json", Some(9.0))).0.moving(), Some(true));
    }
}
