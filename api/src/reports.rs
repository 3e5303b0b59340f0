//! Reports: trips, stops and summaries of a device or a group over a span, computed by
//! `fleetgate_processor::reports` from the devices' history with the rules of the device,
//! else its tenant, else the defaults (docs/REPORTS.md). Speeds in km/h, times RFC 3339.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_processor::history::Timestamp;
use fleetgate_processor::reports::{Rules, Sample, Stop, Summary, Trip, summary, trips_and_stops};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::exports;
use crate::live::DeviceMeta;
use crate::{AppState, QueryParams};

/// Longest span of one report: a longer one is a background job (not there yet).
const MAX_SPAN_DAYS: i64 = 93;

/// Whose report, over which span.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// One device.
    pub device: Option<i64>,
    /// Every device of a group.
    pub group: Option<i64>,
    /// Start (RFC 3339, inclusive).
    pub from: String,
    /// End (RFC 3339, inclusive).
    pub to: String,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The devices and span a query names, checked against the caller's tenant.
async fn scope(
    state: &AppState,
    principal: &Principal,
    query: &ReportQuery,
) -> ApiResult<(Vec<DeviceMeta>, UtcMillis, UtcMillis)> {
    principal.require(Role::Viewer)?;
    let time = |field: &str, value: &str| {
        UtcMillis::parse_rfc3339(value)
            .ok_or_else(|| ApiError::BadRequest(format!("{field} must be an RFC 3339 time, like 2026-11-25T16:00:00Z")))
    };
    let (from, to) = (time("from", &query.from)?, time("to", &query.to)?);
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    if to.0 - from.0 > MAX_SPAN_DAYS * 86_400_000 {
        return Err(ApiError::BadRequest(format!("a report spans at most {MAX_SPAN_DAYS} days")));
    }
    let devices = state.device_cache.get(state, principal.tenant_id).await?;
    let chosen: Vec<DeviceMeta> = match (query.device, query.group) {
        (Some(id), None) => vec![devices.get(id).ok_or(ApiError::NotFound("device"))?.clone()],
        (None, Some(group)) => {
            let members: Vec<DeviceMeta> =
                devices.devices.iter().filter(|d| d.group_id == Some(group)).cloned().collect();
            let db = state.db().await?;
            let known = db
                .query_opt(
                    "SELECT 1 FROM device_groups WHERE id = $1 AND tenant_id = $2",
                    &[&group, &principal.tenant_id],
                )
                .await?;
            if known.is_none() {
                return Err(ApiError::NotFound("group"));
            }
            members
        }
        _ => return Err(ApiError::BadRequest("give either device or group".into())),
    };
    Ok((chosen, from, to))
}

/// The rules of each device: its own over its tenant's over the defaults.
async fn rules(state: &AppState, tenant_id: i64, devices: &[DeviceMeta]) -> ApiResult<Vec<Rules>> {
    let db = state.db().await?;
    let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
    let rows = db
        .query(
            "SELECT d.id, (coalesce(t.report_rules, '{}'::jsonb) || coalesce(d.report_rules, '{}'::jsonb))::text
             FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.tenant_id = $1 AND d.id = ANY($2)",
            &[&tenant_id, &ids],
        )
        .await?;
    let mut by_device = std::collections::HashMap::new();
    for row in rows {
        let merged: &str = row.get(1);
        // A rule that does not read (set by hand in SQL) falls back to the defaults, and
        // says so in the log.
        let rules = serde_json::from_str::<Rules>(merged).unwrap_or_else(|error| {
            tracing::warn!(%error, device_id = row.get::<_, i64>(0), "report rules do not read; using the defaults");
            Rules::default()
        });
        by_device.insert(row.get::<_, i64>(0), rules);
    }
    Ok(ids.iter().map(|id| by_device.get(id).copied().unwrap_or_default()).collect())
}

/// One device's samples in the span, in time order.
async fn samples(state: &AppState, device_id: i64, from: UtcMillis, to: UtcMillis) -> ApiResult<Vec<Sample>> {
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT fix_time, CASE WHEN valid THEN lat END, CASE WHEN valid THEN lon END, speed,
                    (attrs->>'ignition')::boolean, moving, distance_m, (attrs->>'odometer')::float8,
                    coalesce((attrs->>'fuel_litres')::float8, (attrs->>'fuel_level')::float8)
             FROM positions WHERE device_id = $1 AND fix_time >= $2 AND fix_time <= $3 ORDER BY fix_time",
            &[&device_id, &Timestamp(from), &Timestamp(to)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Sample {
            time: row.get::<_, Timestamp>(0).0,
            fix: row.get::<_, Option<f64>>(1).zip(row.get::<_, Option<f64>>(2)),
            speed: row.get(3),
            ignition: row.get(4),
            moving: row.get(5),
            distance_m: row.get(6),
            odometer: row.get(7),
            fuel: row.get(8),
        })
        .collect())
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

fn point(fix: Option<(f64, f64)>) -> Value {
    fix.map_or(Value::Null, |(lat, lon)| json!({"lat": lat, "lon": lon}))
}

fn trip_json(device_id: i64, trip: &Trip) -> Value {
    json!({
        "device_id": device_id,
        "start_time": trip.start_time.to_string(),
        "end_time": trip.end_time.to_string(),
        "start": point(trip.start),
        "end": point(trip.end),
        "distance_m": round(trip.distance_m, 1),
        "duration_s": trip.duration_s,
        "max_speed": round(trip.max_speed, 1),
        "avg_speed": round(trip.avg_speed, 1),
    })
}

fn stop_json(device_id: i64, stop: &Stop) -> Value {
    let (lat, lon) = stop.position.unzip();
    json!({
        "device_id": device_id,
        "start_time": stop.start_time.to_string(),
        "end_time": stop.end_time.to_string(),
        "lat": lat,
        "lon": lon,
        "duration_s": stop.duration_s,
        "engine_on_s": stop.engine_on_s,
    })
}

fn summary_json(device_id: i64, summary: &Summary) -> Value {
    json!({
        "device_id": device_id,
        "distance_m": round(summary.distance_m, 1),
        "driving_s": summary.driving_s,
        "idle_s": summary.idle_s,
        "engine_s": summary.engine_s,
        "max_speed": round(summary.max_speed, 1),
        "avg_speed": round(summary.avg_speed, 1),
        "fuel_used_l": round(summary.fuel_used_l, 2),
        "refuels": summary.refuels,
        "drains": summary.drains,
    })
}

/// Which report.
#[derive(Clone, Copy)]
enum Report {
    Trips,
    Stops,
    Summary,
}

async fn report(
    state: &AppState,
    principal: &Principal,
    query: &ReportQuery,
    kind: Report,
) -> ApiResult<impl IntoResponse + use<>> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest("format must be json or csv".into())),
    };
    let (devices, from, to) = scope(state, principal, query).await?;
    let rules = rules(state, principal.tenant_id, &devices).await?;
    let mut items = Vec::new();
    for (device, rules) in devices.iter().zip(&rules) {
        let samples = samples(state, device.id, from, to).await?;
        let (trips, stops) = trips_and_stops(&samples, rules);
        match kind {
            Report::Trips => items.extend(trips.iter().map(|t| trip_json(device.id, t))),
            Report::Stops => items.extend(stops.iter().map(|s| stop_json(device.id, s))),
            Report::Summary => items.push(summary_json(device.id, &summary(&samples, &trips, rules))),
        }
    }
    let (key, columns): (&str, &[&str]) = match kind {
        Report::Trips => (
            "trips",
            &[
                "device_id",
                "start_time",
                "end_time",
                "start",
                "end",
                "distance_m",
                "duration_s",
                "max_speed",
                "avg_speed",
            ],
        ),
        Report::Stops => ("stops", &["device_id", "start_time", "end_time", "lat", "lon", "duration_s", "engine_on_s"]),
        Report::Summary => (
            "summary",
            &[
                "device_id",
                "distance_m",
                "driving_s",
                "idle_s",
                "engine_s",
                "max_speed",
                "avg_speed",
                "fuel_used_l",
                "refuels",
                "drains",
            ],
        ),
    };
    if csv {
        return Ok(([(CONTENT_TYPE, "text/csv; charset=utf-8")], exports::csv(&items, columns)));
    }
    Ok(([(CONTENT_TYPE, "application/json")], json!({ key: items }).to_string()))
}

/// Trips of a device or group: `{"trips": [{"device_id", "start_time", "end_time",
/// "start": {"lat", "lon"}, "end": {"lat", "lon"}, "distance_m", "duration_s",
/// "max_speed", "avg_speed"}]}`.
#[utoipa::path(get, path = "/v1/reports/trips", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "`{\"trips\": [...]}`"), (status = 400), (status = 404)))]
pub async fn trips(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(query): QueryParams<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    report(&state, &principal, &query, Report::Trips).await
}

/// Stops of a device or group: `{"stops": [{"device_id", "start_time", "end_time", "lat",
/// "lon", "duration_s", "engine_on_s"}]}`.
#[utoipa::path(get, path = "/v1/reports/stops", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "`{\"stops\": [...]}`"), (status = 400), (status = 404)))]
pub async fn stops(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(query): QueryParams<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    report(&state, &principal, &query, Report::Stops).await
}

/// Totals per device: `{"summary": [{"device_id", "distance_m", "driving_s", "idle_s",
/// "engine_s", "max_speed", "avg_speed", "fuel_used_l", "refuels", "drains"}]}`.
#[utoipa::path(get, path = "/v1/reports/summary", tag = "reports", params(ReportQuery),
    responses((status = 200, description = "`{\"summary\": [...]}`"), (status = 400), (status = 404)))]
pub async fn summary_report(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(query): QueryParams<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    report(&state, &principal, &query, Report::Summary).await
}
