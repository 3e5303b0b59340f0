//! Reports: trips, stops and summaries of a device or a group over a span, computed by
//! `fleetgate_rules::reports` from the devices' report segments (the positions
//! themselves where a segment is cut by the span) with the rules of the device, else its
//! tenant, else the defaults (docs/REPORTS.md). Speeds in km/h, times RFC 3339.
//!
//! A report over many device-days or more than 93 days (or one asked for with
//! `background=true`) is a job: a
//! row in `report_jobs`, its id on the `{stream}_JOBS` work queue, a `202` with the job's
//! URL; whichever API process takes the id computes the report and stores the body, which
//! `GET /v1/reports/jobs/{id}` then returns as the report itself.

use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::response::{IntoResponse, Response};
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::{DeviceId, TenantId, stream};
use fleetgate_rules::reports::{Rules, Segment, Stop, Summary, Trip, singles, summary, trips_and_stops};
use fleetgate_store::rows::Timestamp;
use fleetgate_store::segments;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::exports;
use crate::live::DeviceMeta;
use crate::{AppState, QueryParams};

/// Longest span of a report answered at once.
const MAX_SPAN_DAYS: i64 = 93;

/// Longest span of a background report.
const MAX_JOB_SPAN_DAYS: i64 = 366;

/// Device-days beyond which a report runs in the background: a group of 1,000 over five
/// days, one device over the longest span answered at once. A device-day is a few
/// segments, read in well under a millisecond (BENCHMARKS.md).
const BACKGROUND_DEVICE_DAYS: i64 = 5_000;

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
    /// Run as a background job whatever the size (a large one always does).
    pub background: Option<bool>,
    /// `segments` (default): what the processor keeps for reports; `positions`: every
    /// position of the span, read one by one (slow; the same answer, for checking).
    pub source: Option<String>,
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
    if to.0 - from.0 > MAX_JOB_SPAN_DAYS * 86_400_000 {
        return Err(ApiError::BadRequest(format!("a report spans at most {MAX_JOB_SPAN_DAYS} days")));
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

/// The rules of each device (its own over its tenant's over the defaults), in order.
async fn rules(state: &AppState, devices: &[DeviceMeta]) -> ApiResult<Vec<Rules>> {
    let ids: Vec<DeviceId> = devices.iter().map(|d| DeviceId(d.id)).collect();
    let by_device = segments::device_rules(&**state.db().await?, &ids).await?;
    Ok(ids.iter().map(|id| by_device.get(id).copied().unwrap_or_default()).collect())
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

impl Report {
    fn name(self) -> &'static str {
        match self {
            Report::Trips => "trips",
            Report::Stops => "stops",
            Report::Summary => "summary",
        }
    }

    fn from_name(name: &str) -> Option<Report> {
        [Report::Trips, Report::Stops, Report::Summary].into_iter().find(|r| r.name() == name)
    }

    /// CSV columns, in order.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Report::Trips => &[
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
            Report::Stops => &["device_id", "start_time", "end_time", "lat", "lon", "duration_s", "engine_on_s"],
            Report::Summary => &[
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
        }
    }
}

/// Computes a report of `devices` (one tenant's, as its device cache gives them): its
/// content type and body.
async fn compute(
    state: &AppState,
    devices: &[DeviceMeta],
    from: UtcMillis,
    to: UtcMillis,
    kind: Report,
    format: Format,
) -> ApiResult<(&'static str, String)> {
    let rules = rules(state, devices).await?;
    let db = state.db().await?;
    let pieces: Vec<Vec<Segment>> = if format.positions {
        let mut each = Vec::new();
        for device in devices {
            each.push(singles(&segments::samples(&**db, DeviceId(device.id), from, to).await?));
        }
        each
    } else {
        let ids: Vec<(DeviceId, Rules)> = devices.iter().zip(&rules).map(|(d, r)| (DeviceId(d.id), *r)).collect();
        segments::pieces(&**db, &ids, from, to).await?
    };
    let mut items = Vec::new();
    for ((device, rules), pieces) in devices.iter().zip(&rules).zip(&pieces) {
        let (trips, stops) = trips_and_stops(pieces, rules);
        match kind {
            Report::Trips => items.extend(trips.iter().map(|t| trip_json(device.id, t))),
            Report::Stops => items.extend(stops.iter().map(|s| stop_json(device.id, s))),
            Report::Summary => items.push(summary_json(device.id, &summary(pieces, &trips, rules))),
        }
    }
    let csv = format.csv;
    if csv {
        return Ok(("text/csv; charset=utf-8", exports::csv(&items, kind.columns())));
    }
    Ok(("application/json", json!({ kind.name(): items }).to_string()))
}

/// How a report is read and written.
#[derive(Clone, Copy)]
struct Format {
    /// CSV, else JSON.
    csv: bool,
    /// From every position instead of the segments.
    positions: bool,
}

async fn report(state: &AppState, principal: &Principal, query: &ReportQuery, kind: Report) -> ApiResult<Response> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest("format must be json or csv".into())),
    };
    let positions = match query.source.as_deref() {
        None | Some("segments") => false,
        Some("positions") => true,
        Some(_) => return Err(ApiError::BadRequest("source must be segments or positions".into())),
    };
    let format = Format { csv, positions };
    let (devices, from, to) = scope(state, principal, query).await?;
    let days = (to.0 - from.0) / 86_400_000 + 1;
    let large = devices.len() as i64 * days > BACKGROUND_DEVICE_DAYS || days > MAX_SPAN_DAYS;
    if query.background == Some(false) && large {
        return Err(ApiError::BadRequest(format!(
            "a report answered at once spans at most {MAX_SPAN_DAYS} days and {BACKGROUND_DEVICE_DAYS} device-days; \
             leave background out or ask with background=true"
        )));
    }
    let background = query.background == Some(true) || large;
    if background && format.positions {
        // A check against the segments is answered at once; jobs read the segments.
        return Err(ApiError::BadRequest("source=positions is answered at once only: a smaller report".into()));
    }
    if !background {
        let (content_type, body) = compute(state, &devices, from, to, kind, format).await?;
        return Ok(([(CONTENT_TYPE, content_type)], body).into_response());
    }
    let id = crate::auth::new_token("job_")?;
    let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
    state
        .db()
        .await?
        .execute(
            "INSERT INTO report_jobs (id, tenant_id, kind, device_ids, from_time, to_time, csv) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &principal.tenant_id, &kind.name(), &ids, &Timestamp(from), &Timestamp(to), &csv],
        )
        .await?;
    let js = async_nats::jetstream::new(state.nats.clone());
    let queued = async {
        js.publish(stream::report_jobs_subject(state.prefix()), id.clone().into()).await?.await?;
        Ok::<_, async_nats::Error>(())
    }
    .await;
    if let Err(error) = queued {
        tracing::error!(%error, "cannot queue a report job");
        return Err(ApiError::Unavailable("the report job queue".into()));
    }
    let url = format!("/v1/reports/jobs/{id}");
    let body = json!({"job": {"id": id, "status": "queued", "url": url}});
    Ok((StatusCode::ACCEPTED, [(LOCATION, url)], axum::Json(body)).into_response())
}

/// A background report: `202` with `{"job": {"id", "status": "queued" | "running"}}`
/// while it runs; once done, `200` with the report itself (JSON or CSV, as asked);
/// `{"job": {"id", "status": "failed", "error"}}` if it failed.
#[utoipa::path(get, path = "/v1/reports/jobs/{id}", tag = "reports", params(("id" = String, Path)),
    responses((status = 200, description = "the report"), (status = 202, description = "still running"), (status = 404)))]
pub async fn job(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal.require(Role::Viewer)?;
    let row = state
        .db()
        .await?
        .query_opt(
            "SELECT status, content_type, result, error FROM report_jobs WHERE id = $1 AND tenant_id = $2",
            &[&id, &principal.tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound("job"))?;
    let status: String = row.get(0);
    Ok(match status.as_str() {
        "done" => {
            let content_type: String = row.get::<_, Option<String>>(1).unwrap_or_else(|| "application/json".into());
            ([(CONTENT_TYPE, content_type)], row.get::<_, Option<String>>(2).unwrap_or_default()).into_response()
        }
        "failed" => axum::Json(json!({"job": {"id": id, "status": status, "error": row.get::<_, Option<String>>(3)}}))
            .into_response(),
        _ => (StatusCode::ACCEPTED, axum::Json(json!({"job": {"id": id, "status": status}}))).into_response(),
    })
}

/// Takes report jobs from the work queue, one at a time, until `shutdown`. A job whose
/// process died is delivered again after the ack wait and computed again.
pub async fn run_jobs(state: Arc<AppState>, shutdown: CancellationToken) {
    let js = async_nats::jetstream::new(state.nats.clone());
    let name = stream::report_jobs_stream(&state.config.nats);
    let consumer = loop {
        let made = async {
            let stream = js.get_stream(&name).await?;
            let consumer = stream
                .get_or_create_consumer(
                    "report_jobs",
                    pull::Config {
                        durable_name: Some("report_jobs".into()),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(600),
                        ..Default::default()
                    },
                )
                .await?;
            Ok::<_, async_nats::Error>(consumer)
        }
        .await;
        match made {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::warn!(%error, "report jobs: no queue yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    while !shutdown.is_cancelled() {
        let batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages().await;
        let Ok(mut batch) = batch else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = batch.next() => next,
        };
        let Some(Ok(message)) = next else { continue };
        let id = String::from_utf8_lossy(&message.payload).into_owned();
        if let Err(error) = run_job(&state, &id).await {
            tracing::warn!(%error, job = id, "report job not finished; it comes again");
            continue;
        }
        let _ = message.ack().await;
    }
}

/// Computes one job and stores its outcome.
async fn run_job(state: &AppState, id: &str) -> ApiResult<()> {
    let db = state.db().await?;
    let Some(row) = db
        .query_opt(
            "UPDATE report_jobs SET status = 'running' WHERE id = $1 AND status IN ('queued', 'running')
             RETURNING tenant_id, kind, device_ids, from_time, to_time, csv",
            &[&id],
        )
        .await?
    else {
        // Finished already (a redelivery), or gone with its tenant.
        return Ok(());
    };
    let (tenant_id, kind, ids): (TenantId, String, Vec<i64>) = (row.get(0), row.get(1), row.get(2));
    let (from, to, csv): (Timestamp, Timestamp, bool) = (row.get(3), row.get(4), row.get(5));
    let tenant = state.device_cache.get(state, tenant_id).await?;
    let devices: Vec<DeviceMeta> = ids.iter().filter_map(|id| tenant.get(*id).cloned()).collect();
    let outcome = match Report::from_name(&kind) {
        Some(kind) => compute(state, &devices, from.0, to.0, kind, Format { csv, positions: false }).await,
        None => Err(ApiError::BadRequest(format!("unknown report {kind}"))),
    };
    match outcome {
        Ok((content_type, body)) => {
            db.execute(
                "UPDATE report_jobs SET status = 'done', content_type = $2, result = $3, finished_at = now() WHERE id = $1",
                &[&id, &content_type, &body],
            )
            .await?;
        }
        Err(ApiError::BadRequest(error)) => {
            db.execute(
                "UPDATE report_jobs SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
                &[&id, &error],
            )
            .await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
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
) -> ApiResult<Response> {
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
) -> ApiResult<Response> {
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
) -> ApiResult<Response> {
    report(&state, &principal, &query, Report::Summary).await
}
