//! History in Postgres: one transaction per batch. Positions go through binary COPY into
//! a temporary staging table and one set-based insert that skips rows already stored
//! (redelivery, resent frames); the spans that gained rows get their events re-derived,
//! so late and out-of-order data ends up with the same events as data sent in order.
//!
//! Concurrent batches (workers here, other processor processes) touching the same device
//! take its advisory lock first, in device order, so each derivation sees the rows the
//! other committed and no two deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use bytes::{BufMut, BytesMut};
use fleetgate_codecs::time::UtcMillis;
use futures_util::pin_mut;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use crate::fuel;
use crate::geofence::Fences;
use crate::message::{DeviceMessage, Position, Status};
use crate::overspeed;
pub use crate::partitions::Partitions;
use crate::reports::Sample;
use crate::segments;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// A time as Postgres `timestamptz` (binary form).
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub UtcMillis);

impl ToSql for Timestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0.0 * 1000 - POSTGRES_EPOCH_US);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::from_be_bytes(raw.try_into()?);
        Ok(Timestamp(UtcMillis((micros + POSTGRES_EPOCH_US).div_euclid(1000))))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// JSON text as Postgres `jsonb` (binary form: a version byte, then the text).
#[derive(Debug)]
pub struct Jsonb<'a>(pub &'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

/// `jsonb` read in binary as its text (a version byte, then the JSON).
struct JsonbText<'a>(&'a str);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonbText<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(JsonbText(std::str::from_utf8(text)?)),
            _ => Err("unknown jsonb version".into()),
        }
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }
}

/// A number as contract 1 writes it: integral values (from integer protocol fields) as
/// integers.
fn write_number(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The `positions` columns [`write_position`] reads, in its order.
pub const POSITION_COLUMNS: &str =
    "fix_time, received, lat, lon, altitude, speed, course, satellites, valid, attrs, io";

/// The start every position of one device repeats: `{"device":..,"protocol":..,"time":"`.
pub fn position_identity(identifier: &str, protocol: &str) -> String {
    format!(
        r#"{{"device":{},"protocol":{},"time":""#,
        serde_json::Value::from(identifier),
        serde_json::Value::from(protocol)
    )
}

/// A stored row (selected as [`POSITION_COLUMNS`]) as contract 1 with `received`: the
/// same fields, order and number forms as the gateway writes; appended to `out` after
/// `identity` ([`position_identity`]). The one way history becomes JSON again: the API's
/// history and the rebuild of live state both use it.
pub fn write_position(out: &mut String, identity: &str, row: &tokio_postgres::Row) {
    let (time, received): (Timestamp, Timestamp) = (row.get(0), row.get(1));
    out.push_str(identity);
    let _ = write!(out, "{}\",\"received\":\"{}\"", time.0, received.0);
    if let (Some(lat), Some(lon)) = (row.get::<_, Option<f64>>(2), row.get::<_, Option<f64>>(3)) {
        let _ = write!(out, ",\"lat\":{lat},\"lon\":{lon}");
    }
    for (index, name) in [(4, "altitude"), (5, "speed"), (6, "course")] {
        if let Some(value) = row.get::<_, Option<f64>>(index) {
            let _ = write!(out, ",\"{name}\":");
            write_number(out, value);
        }
    }
    if let Some(satellites) = row.get::<_, Option<i32>>(7) {
        let _ = write!(out, ",\"satellites\":{satellites}");
    }
    let _ = write!(out, ",\"valid\":{}", row.get::<_, bool>(8));
    let _ = write!(out, ",\"attrs\":{},\"io\":{}}}", row.get::<_, JsonbText>(9).0, row.get::<_, JsonbText>(10).0);
}

/// The event kinds derived from positions; re-deriving a span replaces exactly these.
pub const DERIVED_EVENTS: [&str; 9] = [
    "ignition_on",
    "ignition_off",
    "moving_start",
    "moving_stop",
    "overspeed",
    "power_cut",
    "low_battery",
    "alarm",
    "sos",
];

/// Thresholds the derivation uses.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// External power below this (volts) after being above it: `power_cut`.
    pub power_cut_voltage: f64,
    /// Backup battery below this (volts) after being above it: `low_battery`.
    pub low_battery_voltage: f64,
}

/// What one batch changed.
#[derive(Debug, Default)]
pub struct Written {
    /// Positions newly stored.
    pub inserted: u64,
    /// Positions that were already stored.
    pub duplicates: u64,
    /// Events (re)derived in this batch, as JSON for the live stream, with their tenant
    /// and device.
    pub events: Vec<(i64, i64, String)>,
}

/// A worker's Postgres connection and what it prepared on it.
pub struct History {
    fences: Fences,
    client: Client,
    partitions: Partitions,
    thresholds: Thresholds,
    staging_ready: bool,
}

/// Binary COPY of a batch into the staging table.
pub const COPY_STAGING: &str = "COPY positions_staging (device_id, fix_time, tenant_id, received, lat, lon, altitude, \
     speed, course, satellites, valid, attrs, io, distance_m, moving) FROM STDIN BINARY";

/// Column types of [`COPY_STAGING`], in order.
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

/// New rows per device: the span whose events must be re-derived.
const INSERT_FROM_STAGING: &str = "WITH inserted AS (
        INSERT INTO positions SELECT * FROM positions_staging ON CONFLICT DO NOTHING RETURNING device_id, fix_time
    )
    SELECT device_id, min(fix_time), max(fix_time), count(*) FROM inserted GROUP BY device_id";

/// Re-derives the events of the spans that gained rows, in one statement. Each span
/// (device, first and last new fix) is widened to its stored neighbours, which decide the
/// transitions at its edges: the row before (or minus infinity) and the row after. Events
/// of the widened span that no longer follow from the rows are deleted (late data can
/// move a transition), new ones inserted, existing ones kept; RETURNING gives the new.
/// The first row of a widened span is only context (its own events belong to the span
/// before) unless the device has no earlier row.
const DERIVE_EVENTS: &str = "WITH bounds AS MATERIALIZED (
        SELECT s.device_id,
            coalesce((SELECT p.fix_time FROM positions p WHERE p.device_id = s.device_id AND p.fix_time < s.lo
                      ORDER BY p.fix_time DESC LIMIT 1), '-infinity') AS lo,
            coalesce((SELECT p.fix_time FROM positions p WHERE p.device_id = s.device_id AND p.fix_time > s.hi
                      ORDER BY p.fix_time LIMIT 1), s.hi) AS hi
        FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS s(device_id, lo, hi)
    ), r AS (
        -- LATERAL with OFFSET 0 (which keeps the planner from flattening it into a hash
        -- join over every stored row) makes this an index range scan per device.
        SELECT p.device_id, p.fix_time, p.tenant_id, p.lat, p.lon, p.speed, b.lo,
            (p.attrs->>'ignition')::boolean AS ignition, lag((p.attrs->>'ignition')::boolean) OVER w AS prev_ignition,
            coalesce((p.attrs->>'motion')::boolean, p.speed > 3) AS moving,
            lag(coalesce((p.attrs->>'motion')::boolean, p.speed > 3)) OVER w AS prev_moving,
            lag(p.speed) OVER w AS prev_speed,
            (p.attrs->>'power_voltage')::float8 AS power, lag((p.attrs->>'power_voltage')::float8) OVER w AS prev_power,
            (p.attrs->>'battery_voltage')::float8 AS battery,
            lag((p.attrs->>'battery_voltage')::float8) OVER w AS prev_battery,
            p.attrs->>'alarm' AS alarm, lag(p.attrs->>'alarm') OVER w AS prev_alarm
        FROM bounds b
        CROSS JOIN LATERAL (
            SELECT * FROM positions p WHERE p.device_id = b.device_id AND p.fix_time >= b.lo AND p.fix_time <= b.hi
            OFFSET 0
        ) p
        WINDOW w AS (PARTITION BY p.device_id ORDER BY p.fix_time)
    ), derived AS (
        SELECT r.device_id, r.fix_time AS time, e.kind, r.tenant_id, r.lat, r.lon, e.details
        FROM r
        LEFT JOIN devices d ON d.id = r.device_id
        CROSS JOIN LATERAL (VALUES
            ('ignition_on', r.ignition AND NOT r.prev_ignition, '{}'::jsonb),
            ('ignition_off', NOT r.ignition AND r.prev_ignition, '{}'::jsonb),
            ('moving_start', r.moving AND NOT r.prev_moving, '{}'::jsonb),
            ('moving_stop', NOT r.moving AND r.prev_moving, '{}'::jsonb),
            ('overspeed', r.speed > d.speed_limit AND NOT coalesce(r.prev_speed > d.speed_limit, false)
                AND d.overspeed_min_s = 0,
                jsonb_build_object('speed', r.speed, 'limit', d.speed_limit)),
            ('power_cut', r.power < $4 AND r.prev_power >= $4, jsonb_build_object('voltage', r.power)),
            ('low_battery', r.battery < $5 AND r.prev_battery >= $5, jsonb_build_object('voltage', r.battery)),
            ('sos', r.alarm = 'sos' AND r.prev_alarm IS DISTINCT FROM 'sos', '{}'::jsonb),
            ('alarm', r.alarm IS NOT NULL AND r.alarm <> 'sos' AND r.alarm IS DISTINCT FROM r.prev_alarm,
                jsonb_build_object('alarm', r.alarm))
        ) AS e(kind, fired, details)
        WHERE e.fired AND r.fix_time > r.lo
    ), stale AS (
        DELETE FROM events ev USING bounds b
        WHERE ev.device_id = b.device_id AND ev.time > b.lo AND ev.time <= b.hi AND ev.kind = ANY($6)
          AND NOT EXISTS (SELECT 1 FROM derived x WHERE x.device_id = ev.device_id AND x.time = ev.time AND x.kind = ev.kind)
    )
    INSERT INTO events (device_id, time, kind, tenant_id, lat, lon, details)
    SELECT * FROM derived
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, device_id, json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind,
        'lat', lat, 'lon', lon, 'details', details)::text";

/// Derives `distance_m` and `moving` for the rows of each span that gained rows. The
/// span is widened to the stored valid fixes on both sides: the one before gives the
/// first new fix its distance, the one after needs its own recomputed when late data
/// landed in between. Only rows whose values change are written.
const DERIVE_DISTANCES: &str = "WITH bounds AS MATERIALIZED (
        SELECT s.device_id,
            coalesce((SELECT p.fix_time FROM positions p
                      WHERE p.device_id = s.device_id AND p.fix_time < s.lo AND p.valid AND p.lat IS NOT NULL
                      ORDER BY p.fix_time DESC LIMIT 1), '-infinity') AS lo,
            coalesce((SELECT p.fix_time FROM positions p
                      WHERE p.device_id = s.device_id AND p.fix_time > s.hi AND p.valid AND p.lat IS NOT NULL
                      ORDER BY p.fix_time LIMIT 1), s.hi) AS hi
        FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS s(device_id, lo, hi)
    ), fixes AS MATERIALIZED (
        SELECT p.device_id, p.fix_time,
            coalesce(haversine_m(lag(p.lat) OVER w, lag(p.lon) OVER w, p.lat, p.lon), 0) AS distance_m
        FROM bounds b
        CROSS JOIN LATERAL (
            SELECT p.device_id, p.fix_time, p.lat, p.lon FROM positions p
            WHERE p.device_id = b.device_id AND p.fix_time >= b.lo AND p.fix_time <= b.hi
              AND p.valid AND p.lat IS NOT NULL AND p.lon IS NOT NULL
            OFFSET 0
        ) p
        WINDOW w AS (PARTITION BY p.device_id ORDER BY p.fix_time)
    ), rows AS MATERIALIZED (
        SELECT p.device_id, p.fix_time, f.distance_m,
            coalesce((p.attrs->>'motion')::boolean, p.speed > 3) AS moving,
            p.distance_m AS old_distance, p.moving AS old_moving
        FROM bounds b
        CROSS JOIN LATERAL (
            SELECT * FROM positions p WHERE p.device_id = b.device_id AND p.fix_time > b.lo AND p.fix_time <= b.hi
            OFFSET 0
        ) p
        LEFT JOIN fixes f ON f.device_id = p.device_id AND f.fix_time = p.fix_time
    )
    UPDATE positions p SET distance_m = r.distance_m, moving = r.moving
    FROM rows r
    WHERE p.device_id = r.device_id AND p.fix_time = r.fix_time
      AND (r.distance_m IS DISTINCT FROM r.old_distance OR r.moving IS DISTINCT FROM r.old_moving)";

/// Binary COPY straight into `positions`: the fast path when no row is stored yet.
const COPY_DIRECT: &str = "COPY positions (device_id, fix_time, tenant_id, received, lat, lon, altitude, \
     speed, course, satellites, valid, attrs, io, distance_m, moving) FROM STDIN BINARY";

async fn copy_rows(
    transaction: &tokio_postgres::Transaction<'_>,
    statement: &str,
    positions: &[&Position],
    derived: &[Derived],
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction.copy_in(statement).await?;
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    pin_mut!(writer);
    for (p, d) in positions.iter().zip(derived) {
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

/// A position's derived values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Derived {
    /// Metres from the device's previous valid fix (valid fixes only).
    pub distance_m: Option<f64>,
    /// Moving, by the device's flag or its speed.
    pub moving: Option<bool>,
}

/// Great-circle distance in metres (haversine, mean Earth radius), as `haversine_m` in SQL.
pub fn haversine_m((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().min(1.0).asin()
}

/// Per batch and device: its last stored valid fix before the batch's first new one (for
/// distances), its last stored row of any kind before it (for transitions), its speed
/// limit, and whether anything is stored at or after that first new fix (late data).
const PREVIOUS_ROWS: &str = "SELECT s.device_id, fix.lat, fix.lon,
        EXISTS (SELECT 1 FROM positions p WHERE p.device_id = s.device_id AND p.fix_time >= s.lo) AS late,
        prev.fix_time IS NOT NULL, prev.ignition, prev.speed, prev.power, prev.battery, prev.alarm,
        -- Devices with a minimum overspeed duration get theirs from `overspeed`.
        CASE WHEN d.overspeed_min_s = 0 THEN d.speed_limit::float8 END,
        prev.motion, prev.fix_time,
        EXISTS (SELECT 1 FROM segments_pending sp WHERE sp.device_id = s.device_id) AS segments_pending,
        d.speed_limit::float8, d.overspeed_min_s
    FROM unnest($1::bigint[], $2::timestamptz[]) AS s(device_id, lo)
    LEFT JOIN devices d ON d.id = s.device_id
    LEFT JOIN LATERAL (
        SELECT p.lat, p.lon FROM positions p
        WHERE p.device_id = s.device_id AND p.fix_time < s.lo AND p.valid AND p.lat IS NOT NULL AND p.lon IS NOT NULL
        ORDER BY p.fix_time DESC LIMIT 1
    ) fix ON true
    LEFT JOIN LATERAL (
        SELECT p.fix_time, (p.attrs->>'ignition')::boolean AS ignition, p.speed,
               (p.attrs->>'power_voltage')::float8 AS power, (p.attrs->>'battery_voltage')::float8 AS battery,
               p.attrs->>'alarm' AS alarm, (p.attrs->>'motion')::boolean AS motion
        FROM positions p WHERE p.device_id = s.device_id AND p.fix_time < s.lo
        ORDER BY p.fix_time DESC LIMIT 1
    ) prev ON true";

/// What the derivation reads of a row (its `attrs` parsed once).
#[derive(Debug, Clone, Default)]
struct EventState {
    motion: Option<bool>,
    ignition: Option<bool>,
    speed: Option<f64>,
    power: Option<f64>,
    battery: Option<f64>,
    alarm: Option<String>,
    /// Read for report segments only.
    odometer: Option<f64>,
    fuel: Option<f64>,
}

impl EventState {
    fn of(p: &Position) -> Self {
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
        EventState {
            motion: attrs.and_then(|a| a.motion.as_ref()?.as_bool()),
            ignition: attrs.and_then(|a| a.ignition.as_ref()?.as_bool()),
            speed: p.speed,
            power: attrs.and_then(|a| a.power_voltage.as_ref()?.as_f64()),
            battery: attrs.and_then(|a| a.battery_voltage.as_ref()?.as_f64()),
            alarm: attrs.and_then(|a| Some(a.alarm.as_ref()?.as_str()?.to_owned())),
            odometer: attrs.and_then(|a| a.odometer.as_ref()?.as_f64()),
            fuel: attrs.and_then(|a| {
                let number = |value: &Option<serde_json::Value>| value.as_ref().and_then(serde_json::Value::as_f64);
                number(&a.fuel_litres).or_else(|| number(&a.fuel_level))
            }),
        }
    }

    /// The device's own motion flag, else speed above 3 km/h.
    fn moving(&self) -> Option<bool> {
        self.motion.or(self.speed.map(|speed| speed > 3.0))
    }
}

/// The event rules (the same as `DERIVE_EVENTS`): what fires at `row` after `previous`
/// (`None` for a device's first row), as kind and details.
fn fired(
    row: &EventState,
    previous: Option<&EventState>,
    speed_limit: Option<f64>,
    thresholds: Thresholds,
) -> Vec<(&'static str, String)> {
    let mut events = Vec::new();
    let before = previous.cloned().unwrap_or_default();
    match (row.ignition, before.ignition) {
        (Some(true), Some(false)) => events.push(("ignition_on", "{}".to_owned())),
        (Some(false), Some(true)) => events.push(("ignition_off", "{}".to_owned())),
        _ => {}
    }
    match (row.moving(), before.moving()) {
        (Some(true), Some(false)) => events.push(("moving_start", "{}".to_owned())),
        (Some(false), Some(true)) => events.push(("moving_stop", "{}".to_owned())),
        _ => {}
    }
    if let (Some(speed), Some(limit)) = (row.speed, speed_limit)
        && speed > limit
        && !before.speed.is_some_and(|s| s > limit)
    {
        events.push(("overspeed", serde_json::json!({"speed": speed, "limit": limit}).to_string()));
    }
    if let (Some(v), Some(b)) = (row.power, before.power)
        && v < thresholds.power_cut_voltage
        && b >= thresholds.power_cut_voltage
    {
        events.push(("power_cut", serde_json::json!({"voltage": v}).to_string()));
    }
    if let (Some(v), Some(b)) = (row.battery, before.battery)
        && v < thresholds.low_battery_voltage
        && b >= thresholds.low_battery_voltage
    {
        events.push(("low_battery", serde_json::json!({"voltage": v}).to_string()));
    }
    match row.alarm.as_deref() {
        Some("sos") if before.alarm.as_deref() != Some("sos") => events.push(("sos", "{}".to_owned())),
        Some(alarm) if alarm != "sos" && before.alarm.as_deref() != Some(alarm) => {
            events.push(("alarm", serde_json::json!({"alarm": alarm}).to_string()));
        }
        _ => {}
    }
    events
}

/// An event derived in memory, to insert.
struct NewEvent {
    device_id: i64,
    time: UtcMillis,
    kind: &'static str,
    tenant_id: i64,
    coordinates: Option<(f64, f64)>,
    details: String,
}

/// What the batch derivation found.
struct BatchDerivation {
    /// Distance and motion, per row of the batch.
    derived: Vec<Derived>,
    /// Devices with rows stored at or after their first new one: derived again in SQL.
    late: BTreeSet<i64>,
    /// Events of the devices that only appended.
    events: Vec<NewEvent>,
    /// What the devices that only appended add to their report segments.
    segments: segments::Appended,
    /// The batch's devices with a minimum overspeed duration.
    overspeed: overspeed::Limits,
}

/// Derives distance, motion and events for the batch in memory, chaining each device's
/// rows in time order from its last stored row: one indexed read per device instead of a
/// statement over every span. Exact when a device's batch only appends; the devices
/// returned as late are re-derived in SQL after the insert.
async fn derive_in_batch(
    transaction: &tokio_postgres::Transaction<'_>,
    unique: &[&Position],
    thresholds: Thresholds,
) -> Result<BatchDerivation, tokio_postgres::Error> {
    let mut first: BTreeMap<i64, UtcMillis> = BTreeMap::new();
    for p in unique {
        let at = first.entry(p.device_id).or_insert(p.fix_time);
        *at = (*at).min(p.fix_time);
    }
    let ids: Vec<i64> = first.keys().copied().collect();
    let lows: Vec<Timestamp> = first.values().map(|t| Timestamp(*t)).collect();
    let rows = transaction.query(PREVIOUS_ROWS, &[&ids, &lows]).await?;
    let mut previous_fix: BTreeMap<i64, Option<(f64, f64)>> = BTreeMap::new();
    let mut previous_row: BTreeMap<i64, Option<EventState>> = BTreeMap::new();
    let mut limits: BTreeMap<i64, Option<f64>> = BTreeMap::new();
    let mut late = BTreeSet::new();
    let mut segment_work = segments::Appended::default();
    let mut overspeed_limits = overspeed::Limits::new();
    for row in rows {
        let device: i64 = row.get(0);
        previous_fix.insert(device, row.get::<_, Option<f64>>(1).zip(row.get::<_, Option<f64>>(2)));
        if row.get::<_, bool>(3) {
            late.insert(device);
        }
        let state = row.get::<_, bool>(4).then(|| EventState {
            motion: row.get(11),
            ignition: row.get(5),
            speed: row.get(6),
            power: row.get(7),
            battery: row.get(8),
            alarm: row.get(9),
            ..EventState::default()
        });
        if let Some(state) = &state {
            let time: Timestamp = row.get(12);
            let last = Sample { time: time.0, ignition: state.ignition, moving: state.moving(), ..Sample::at(time.0) };
            segment_work.last_stored.insert(device, last);
        }
        if row.get::<_, bool>(13) {
            segment_work.pending.insert(device);
        }
        if let (Some(limit), Some(min_s)) = (row.get::<_, Option<f64>>(14), row.get::<_, Option<i32>>(15))
            && min_s > 0
        {
            overspeed_limits.insert(device, (limit, i64::from(min_s)));
        }
        previous_row.insert(device, state);
        limits.insert(device, row.get(10));
    }
    let mut order: Vec<usize> = (0..unique.len()).collect();
    order.sort_by_key(|&i| (unique[i].device_id, unique[i].fix_time));
    let mut derived = vec![Derived::default(); unique.len()];
    let mut events = Vec::new();
    for i in order {
        let p = unique[i];
        let state = EventState::of(p);
        derived[i].moving = state.moving();
        if p.valid
            && let Some(here) = p.coordinates
        {
            let last = previous_fix.entry(p.device_id).or_insert(None);
            derived[i].distance_m = Some(last.map_or(0.0, |there| haversine_m(there, here)));
            *last = Some(here);
        }
        if !late.contains(&p.device_id) {
            segment_work.new.entry(p.device_id).or_default().push(Sample {
                time: p.fix_time,
                fix: p.coordinates.filter(|_| p.valid),
                speed: p.speed,
                ignition: state.ignition,
                moving: derived[i].moving,
                distance_m: derived[i].distance_m,
                odometer: state.odometer,
                fuel: state.fuel,
            });
            let before = previous_row.entry(p.device_id).or_insert(None);
            let limit = limits.get(&p.device_id).copied().flatten();
            for (kind, details) in fired(&state, before.as_ref(), limit, thresholds) {
                events.push(NewEvent {
                    device_id: p.device_id,
                    time: p.fix_time,
                    kind,
                    tenant_id: p.tenant_id,
                    coordinates: p.coordinates,
                    details,
                });
            }
            *before = Some(state);
        }
    }
    Ok(BatchDerivation { derived, late, events, segments: segment_work, overspeed: overspeed_limits })
}

/// An event of one device derived from a run of its positions (an overspeed, a fuel
/// drain), to store.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// When.
    pub time: UtcMillis,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
    /// `details` (JSON).
    pub details: String,
}

/// Stores `events` of `kind` for one device (tenant, device): new ones are inserted, one
/// derived again with other details (late data moved its run's start) is updated.
/// Returns the new and changed ones for the live stream.
pub async fn store_run_events(
    transaction: &tokio_postgres::Transaction<'_>,
    (tenant, device): (i64, i64),
    kind: &str,
    events: &[RunEvent],
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let mut stored = Vec::new();
    for event in events {
        let (lat, lon) = event.coordinates.unzip();
        let rows = transaction
            .query(
                "INSERT INTO events (device_id, time, kind, tenant_id, lat, lon, details)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (device_id, time, kind, ref) DO UPDATE
                     SET lat = EXCLUDED.lat, lon = EXCLUDED.lon, details = EXCLUDED.details
                     WHERE events.details IS DISTINCT FROM EXCLUDED.details
                 RETURNING json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind,
                     'lat', lat, 'lon', lon, 'details', details)::text",
                &[&device, &Timestamp(event.time), &kind, &tenant, &lat, &lon, &Jsonb(&event.details)],
            )
            .await?;
        stored.extend(rows.into_iter().map(|r| (tenant, device, r.get(0))));
    }
    Ok(stored)
}

/// Makes `events` the device's events of `kind` from `from` to `to` (a window derived
/// again): the ones no longer derived are deleted, the rest stored as by
/// [`store_run_events`].
pub async fn replace_run_events(
    transaction: &tokio_postgres::Transaction<'_>,
    (tenant, device): (i64, i64),
    kind: &str,
    (from, to): (UtcMillis, UtcMillis),
    events: &[RunEvent],
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let kept: Vec<Timestamp> = events.iter().map(|e| Timestamp(e.time)).collect();
    transaction
        .execute(
            "DELETE FROM events WHERE device_id = $1 AND kind = $2 AND time >= $3 AND time <= $4
               AND NOT time = ANY($5)",
            &[&device, &kind, &Timestamp(from), &Timestamp(to), &kept],
        )
        .await?;
    store_run_events(transaction, (tenant, device), kind, events).await
}

/// Inserts events derived in memory; returns the new ones for the live stream.
async fn insert_events(
    transaction: &tokio_postgres::Transaction<'_>,
    events: &[NewEvent],
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let devices: Vec<i64> = events.iter().map(|e| e.device_id).collect();
    let times: Vec<Timestamp> = events.iter().map(|e| Timestamp(e.time)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let tenants: Vec<i64> = events.iter().map(|e| e.tenant_id).collect();
    let lats: Vec<Option<f64>> = events.iter().map(|e| e.coordinates.map(|c| c.0)).collect();
    let lons: Vec<Option<f64>> = events.iter().map(|e| e.coordinates.map(|c| c.1)).collect();
    let details: Vec<Jsonb> = events.iter().map(|e| Jsonb(&e.details)).collect();
    let rows = transaction
        .query(
            "INSERT INTO events (device_id, time, kind, tenant_id, lat, lon, details)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[], $5::float8[],
                                  $6::float8[], $7::jsonb[])
             ON CONFLICT DO NOTHING
             RETURNING tenant_id, device_id, json_build_object('device_id', device_id, 'time', rfc3339(time),
                 'kind', kind, 'lat', lat, 'lon', lon, 'details', details)::text",
            &[&devices, &times, &kinds, &tenants, &lats, &lons, &details],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

impl History {
    /// A writer over `client`.
    pub fn new(client: Client, partitions: Partitions, thresholds: Thresholds) -> Self {
        History { client, partitions, thresholds, staging_ready: false, fences: Fences::default() }
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

    /// Creates the partitions `positions` need and, once per connection, the staging table.
    async fn prepare(&mut self, positions: &[Position]) -> Result<(), tokio_postgres::Error> {
        let months: BTreeSet<i64> = positions.iter().map(|p| self.partitions.period_of(p.fix_time)).collect();
        self.partitions.ensure(&mut self.client, months).await?;
        if !self.staging_ready {
            self.client
                .batch_execute(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS positions_staging \
                     (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                )
                .await?;
            self.staging_ready = true;
        }
        Ok(())
    }

    /// Replaces one device's rows in one transaction: deletes the rows at `remove` (fix
    /// times) that were received at one of `received` (rows stored from other frames are
    /// never touched), inserts `positions`, derives events, distances and motion again
    /// over `span`, and marks the device's live state for a rebuild from history.
    pub async fn replace(
        &mut self,
        device: (i64, i64),
        remove: &[Timestamp],
        received: &[Timestamp],
        positions: &[Position],
        span: (Timestamp, Timestamp),
    ) -> Result<Written, tokio_postgres::Error> {
        let (tenant_id, device_id) = device;
        self.prepare(positions).await?;
        let thresholds = self.thresholds;
        let transaction = self.client.transaction().await?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&device_id]).await?;
        transaction
            .execute(
                "DELETE FROM positions WHERE device_id = $1 AND fix_time = ANY($2) AND received = ANY($3)",
                &[&device_id, &remove, &received],
            )
            .await?;
        let (mut written, _) = write_positions(&transaction, positions, thresholds).await?;
        written.events.extend(rederive(&transaction, &[(device_id, span.0, span.1)], thresholds).await?);
        segments::recut(&transaction, &[(device_id, span.0, span.1)]).await?;
        let spans = [(device_id, tenant_id, span.0.0, span.1.0)];
        written.events.extend(geofence_events(&transaction, &spans, &self.fences.clone()).await?);
        let limits = overspeed::limits(&transaction, &[device_id]).await?;
        written.events.extend(overspeed::derive(&transaction, &spans, &limits).await?);
        written.events.extend(fuel::derive(&transaction, &BTreeMap::new(), &HashMap::new(), &spans).await?);
        transaction
            .execute(
                "INSERT INTO live_pending (device_id, tenant_id) VALUES ($1, $2)
                 ON CONFLICT (device_id) DO UPDATE SET since = now()",
                &[&device_id, &tenant_id],
            )
            .await?;
        transaction.commit().await?;
        Ok(written)
    }

    /// Writes one batch in one transaction: positions, derived events, messages and
    /// status events. Nothing is visible (or acknowledged) unless all of it commits.
    pub async fn write(
        &mut self,
        positions: &[Position],
        messages: &[DeviceMessage],
        statuses: &[Status],
    ) -> Result<Written, tokio_postgres::Error> {
        self.prepare(positions).await?;
        let thresholds = self.thresholds;
        let fences = self.fences.clone();
        let transaction = self.client.transaction().await?;
        let devices: BTreeSet<i64> = positions
            .iter()
            .map(|p| p.device_id)
            .chain(messages.iter().map(|m| m.device_id))
            .chain(statuses.iter().map(|s| s.device_id))
            .collect();
        let devices: Vec<i64> = devices.into_iter().collect();
        transaction
            // `devices` is sorted and unnest keeps its order: every batch locks in the same order.
            .execute("SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS d(id)", &[&devices])
            .await?;

        let (mut written, overspeed_limits) = write_positions(&transaction, positions, thresholds).await?;
        written.events.extend(derive_geofence_events(&transaction, positions, &fences).await?);
        if !overspeed_limits.is_empty() {
            let spans = spans_of(positions.iter());
            written.events.extend(overspeed::derive(&transaction, &spans, &overspeed_limits).await?);
        }
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
                    "INSERT INTO events (device_id, time, kind, tenant_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING \
                     RETURNING json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind)::text",
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

/// Inserts positions (each key once; rows already stored are skipped) with their derived
/// values and events, inside the caller's transaction and advisory locks. Also gives the
/// batch's devices with a minimum overspeed duration (read with their previous rows).
async fn write_positions(
    transaction: &tokio_postgres::Transaction<'_>,
    positions: &[Position],
    thresholds: Thresholds,
) -> Result<(Written, overspeed::Limits), tokio_postgres::Error> {
    let mut written = Written::default();
    if positions.is_empty() {
        return Ok((written, overspeed::Limits::new()));
    }
    // A device may send two records with one timestamp, and a batch may hold a
    // resent frame: one row per key, the first one wins (as the insert would).
    let mut seen = HashSet::with_capacity(positions.len());
    let unique: Vec<&Position> = positions.iter().filter(|p| seen.insert((p.device_id, p.fix_time.0))).collect();
    let batch = derive_in_batch(transaction, &unique, thresholds).await?;
    let spans = insert_positions(transaction, &unique, &batch.derived).await?;
    written.inserted = spans.values().map(|s| s.2).sum();
    written.duplicates = positions.len() as u64 - written.inserted;
    // Devices that only appended have their events from memory; late data (and a
    // redelivery, which meets its own rows) is derived again over its spans in SQL.
    written.events = insert_events(transaction, &batch.events).await?;
    let late_spans: Vec<(i64, Timestamp, Timestamp)> = spans
        .iter()
        .filter(|(id, _)| batch.late.contains(id))
        .map(|(id, span)| (*id, Timestamp(span.0), Timestamp(span.1)))
        .collect();
    written.events.extend(rederive(transaction, &late_spans, thresholds).await?);
    segments::append(transaction, &batch.segments).await?;
    segments::recut(transaction, &late_spans).await?;
    let tenants: HashMap<i64, i64> = unique.iter().map(|p| (p.device_id, p.tenant_id)).collect();
    let late_fuel: Vec<(i64, i64, UtcMillis, UtcMillis)> =
        late_spans.iter().filter_map(|(d, lo, hi)| Some((*d, *tenants.get(d)?, lo.0, hi.0))).collect();
    written.events.extend(fuel::derive(transaction, &batch.segments.new, &tenants, &late_fuel).await?);
    Ok((written, batch.overspeed))
}

/// The valid, possible fixes of a device from its last one before `$2` (or `$2`) to its
/// first one after `$3` (or `$3`): a span widened to the neighbours that decide the
/// transitions at its edges.
const GEOFENCE_SPAN: &str = "SELECT fix_time, lat, lon FROM positions p
    WHERE device_id = $1 AND valid AND lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180 AND NOT (lat = 0 AND lon = 0)
      AND fix_time >= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time < $2 AND valid
                                  AND lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180 AND NOT (lat = 0 AND lon = 0)
                                ORDER BY fix_time DESC LIMIT 1), $2)
      AND fix_time <= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time > $3 AND valid
                                  AND lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180 AND NOT (lat = 0 AND lon = 0)
                                ORDER BY fix_time LIMIT 1), $3)
    ORDER BY fix_time";

/// Each device's span in `positions`: (device, tenant, first and last fix time).
fn spans_of<'a>(positions: impl IntoIterator<Item = &'a Position>) -> Vec<(i64, i64, UtcMillis, UtcMillis)> {
    let mut spans: BTreeMap<i64, (i64, UtcMillis, UtcMillis)> = BTreeMap::new();
    for p in positions {
        let span = spans.entry(p.device_id).or_insert((p.tenant_id, p.fix_time, p.fix_time));
        span.1 = span.1.min(p.fix_time);
        span.2 = span.2.max(p.fix_time);
    }
    spans.into_iter().map(|(device, (tenant, lo, hi))| (device, tenant, lo, hi)).collect()
}

/// Geofence enter and exit events for the devices of a batch whose tenants have
/// geofences: derived over each device's new span widened to its neighbours, so late data
/// gets the same events as data in order. Events that no longer follow are deleted; the
/// new ones are returned for the live stream.
async fn derive_geofence_events(
    transaction: &tokio_postgres::Transaction<'_>,
    positions: &[Position],
    fences: &Fences,
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let fixes = positions.iter().filter(|p| p.valid && p.coordinates.is_some());
    geofence_events(transaction, &spans_of(fixes), fences).await
}

/// [`derive_geofence_events`] for spans (device, tenant, first and last fix time).
async fn geofence_events(
    transaction: &tokio_postgres::Transaction<'_>,
    spans: &[(i64, i64, UtcMillis, UtcMillis)],
    fences: &Fences,
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let mut new_events = Vec::new();
    for &(device_id, tenant_id, lo, hi) in spans {
        let Some(list) = fences.of(tenant_id).filter(|list| !list.is_empty()) else { continue };
        let rows = transaction.query(GEOFENCE_SPAN, &[&device_id, &Timestamp(lo), &Timestamp(hi)]).await?;
        let fixes: Vec<(UtcMillis, f64, f64)> =
            rows.iter().map(|r| (r.get::<_, Timestamp>(0).0, r.get(1), r.get(2))).collect();
        let (Some(first), Some(last)) = (fixes.first(), fixes.last()) else { continue };
        // What should be there: a transition between each pair of consecutive fixes.
        let mut wanted: BTreeMap<(i64, &'static str, i64), (f64, f64, String)> = BTreeMap::new();
        for pair in fixes.windows(2) {
            let ((_, lat0, lon0), (time, lat, lon)) = (pair[0], pair[1]);
            for fence in list.iter() {
                let (was, is) = (fence.shape.contains(lat0, lon0), fence.shape.contains(lat, lon));
                if was != is {
                    let kind = if is { "geofence_enter" } else { "geofence_exit" };
                    let details = serde_json::json!({"geofence_id": fence.id, "name": fence.name}).to_string();
                    wanted.insert((time.0, kind, fence.id), (lat, lon, details));
                }
            }
        }
        let existing = transaction
            .query(
                "SELECT (extract(epoch FROM time) * 1000)::bigint, kind, ref FROM events
                 WHERE device_id = $1 AND kind IN ('geofence_enter', 'geofence_exit') AND time > $2 AND time <= $3",
                &[&device_id, &Timestamp(first.0), &Timestamp(last.0)],
            )
            .await?;
        for row in &existing {
            let (time, kind, fence): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
            if !wanted.keys().any(|(t, k, f)| *t == time && *k == kind && *f == fence) {
                transaction
                    .execute(
                        "DELETE FROM events WHERE device_id = $1 AND time = $2 AND kind = $3 AND ref = $4",
                        &[&device_id, &Timestamp(UtcMillis(time)), &kind, &fence],
                    )
                    .await?;
            }
        }
        for ((time, kind, fence), (lat, lon, details)) in wanted {
            let inserted = transaction
                .query(
                    "INSERT INTO events (device_id, time, kind, ref, tenant_id, lat, lon, details)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING
                     RETURNING json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind,
                         'lat', lat, 'lon', lon, 'details', details)::text",
                    &[&device_id, &Timestamp(UtcMillis(time)), &kind, &fence, &tenant_id, &lat, &lon, &Jsonb(&details)],
                )
                .await?;
            new_events.extend(inserted.into_iter().map(|r| (tenant_id, device_id, r.get(0))));
        }
    }
    Ok(new_events)
}

/// Derives events, distances and motion again over each span (device, first and last
/// fix), widened to the stored neighbours; returns the events that are new.
pub async fn rederive(
    transaction: &tokio_postgres::Transaction<'_>,
    spans: &[(i64, Timestamp, Timestamp)],
    thresholds: Thresholds,
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = spans.iter().map(|s| s.0).collect();
    let lows: Vec<Timestamp> = spans.iter().map(|s| s.1).collect();
    let highs: Vec<Timestamp> = spans.iter().map(|s| s.2).collect();
    let kinds: Vec<&str> = DERIVED_EVENTS.to_vec();
    let rows = transaction
        .query(
            DERIVE_EVENTS,
            &[&ids, &lows, &highs, &thresholds.power_cut_voltage, &thresholds.low_battery_voltage, &kinds],
        )
        .await?;
    transaction.execute(DERIVE_DISTANCES, &[&ids, &lows, &highs]).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Inserts rows whose keys are unique within the batch; returns per device the first
/// and last new fix and how many rows were new. Normally nothing is stored yet and the
/// rows are copied straight in; if one was (a redelivery), the copy fails on the key and
/// the batch goes through the staging table and an insert that skips stored rows.
async fn insert_positions(
    transaction: &tokio_postgres::Transaction<'_>,
    unique: &[&Position],
    derived: &[Derived],
) -> Result<BTreeMap<i64, (UtcMillis, UtcMillis, u64)>, tokio_postgres::Error> {
    transaction.batch_execute("SAVEPOINT direct_copy").await?;
    match copy_rows(transaction, COPY_DIRECT, unique, derived).await {
        Ok(()) => {
            transaction.batch_execute("RELEASE SAVEPOINT direct_copy").await?;
            let mut spans: BTreeMap<i64, (UtcMillis, UtcMillis, u64)> = BTreeMap::new();
            for p in unique {
                let span = spans.entry(p.device_id).or_insert((p.fix_time, p.fix_time, 0));
                span.0 = span.0.min(p.fix_time);
                span.1 = span.1.max(p.fix_time);
                span.2 += 1;
            }
            Ok(spans)
        }
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            transaction.batch_execute("ROLLBACK TO SAVEPOINT direct_copy").await?;
            copy_rows(transaction, COPY_STAGING, unique, derived).await?;
            let rows = transaction.query(INSERT_FROM_STAGING, &[]).await?;
            Ok(rows
                .iter()
                .map(|row| {
                    let (lo, hi): (Timestamp, Timestamp) = (row.get(1), row.get(2));
                    (row.get::<_, i64>(0), (lo.0, hi.0, row.get::<_, i64>(3) as u64))
                })
                .collect())
        }
        Err(error) => Err(error),
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

    #[test]
    fn motion_comes_from_the_device_flag_else_the_speed() {
        let position = |attrs: &str, speed: Option<f64>| Position {
            tenant_id: 1,
            device_id: 1,
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
        };
        assert_eq!(EventState::of(&position(r#"{"ignition":true,"motion":false}"#, Some(50.0))).moving(), Some(false));
        assert_eq!(EventState::of(&position(r#"{"motion":true}"#, Some(0.0))).moving(), Some(true));
        assert_eq!(EventState::of(&position("{}", Some(3.5))).moving(), Some(true));
        assert_eq!(EventState::of(&position("{}", Some(2.0))).moving(), Some(false));
        assert_eq!(EventState::of(&position("{}", None)).moving(), None);
        let one_degree = haversine_m((0.0, 0.0), (1.0, 0.0));
        assert!((one_degree - 111_195.08).abs() < 0.1, "{one_degree}");
    }
}
