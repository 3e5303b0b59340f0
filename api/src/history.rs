//! History: a device's positions over a range (JSON or GeoJSON, ascending, cursor
//! paging, streamed from Postgres row by row rather than built in memory) and events.

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_store::rows::{EVENT_JSON, POSITION_COLUMNS, Timestamp, position_identity, write_position};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::exports::{self, Track};
use crate::{AppState, PathId, QueryParams};

/// Positions per page when the client does not say.
const DEFAULT_LIMIT: i64 = 1000;
/// Largest page.
const MAX_LIMIT: i64 = 10_000;

/// Range and paging of a history request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PositionsQuery {
    /// Start (RFC 3339, inclusive).
    pub from: String,
    /// End (RFC 3339, inclusive).
    pub to: String,
    /// Positions per page, 1-10000 (default 1000).
    pub limit: Option<i64>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
    /// `json` (default), `geojson` (a LineString Feature of the valid fixes), or a track
    /// export of every valid fix of the range: `gpx` (GPX 1.1) or `kml` (KML 2.2).
    pub format: Option<String>,
}

fn parse_time(field: &str, value: &str) -> ApiResult<UtcMillis> {
    UtcMillis::parse_rfc3339(value)
        .ok_or_else(|| ApiError::BadRequest(format!("{field} must be an RFC 3339 time, like 2026-11-25T16:00:00Z")))
}

/// Checks the range, limit and cursor; returns (first time to read, last, limit).
pub(crate) fn page(
    from: &str,
    to: &str,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> ApiResult<(UtcMillis, UtcMillis, i64)> {
    let (from, to) = (parse_time("from", from)?, parse_time("to", to)?);
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let start = match cursor {
        None => from,
        Some(cursor) => {
            let after: i64 =
                cursor.parse().map_err(|_| ApiError::BadRequest("cursor is not one this API gave".into()))?;
            UtcMillis(from.0.max(after.saturating_add(1)))
        }
    };
    Ok((start, to, limit))
}

/// A body streamed from what a task sends; an error mid-stream aborts the response, so a
/// client never mistakes a cut-off page for a complete one.
pub(crate) fn streamed(
    content_type: &'static str,
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Response {
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    ([(CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response()
}

/// The device's positions in `[from, to]`, ascending by fix time:
/// `{"positions": [contract 1...], "next": null | cursor}`; with `format=geojson`, a
/// GeoJSON Feature whose LineString holds the valid fixes and whose `properties` hold
/// their `times` and `next`.
#[utoipa::path(get, path = "/v1/devices/{id}/positions", tag = "history",
    params(("id" = i64, Path), PositionsQuery),
    responses((status = 200, description = "`{\"positions\": [...], \"next\": null}`"), (status = 400), (status = 404)))]
pub async fn positions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
    QueryParams(query): QueryParams<PositionsQuery>,
) -> ApiResult<Response> {
    principal.require(Role::Viewer)?;
    let (start, end, limit) = page(&query.from, &query.to, query.limit, query.cursor.as_deref())?;
    let (geojson, track) = match query.format.as_deref() {
        None | Some("json") => (false, None),
        Some("geojson") => (true, None),
        Some("gpx") => (false, Some(Track::Gpx)),
        Some("kml") => (false, Some(Track::Kml)),
        Some(_) => return Err(ApiError::BadRequest("format must be json, geojson, gpx or kml".into())),
    };
    let devices = state.device_cache.get(&state, principal.tenant_id).await?;
    let device = devices.get(id).ok_or(ApiError::NotFound("device"))?.clone();
    if let Some(track) = track {
        // A track export is the whole range, streamed; no pages.
        return exports::track(&state, &device, start, end, track).await;
    }
    let db = state.db().await?;
    let fetch = limit + 1;
    let (start, end) = (Timestamp(start), Timestamp(end));
    let all_columns = format!(
        "SELECT {POSITION_COLUMNS} FROM positions WHERE device_id = $1 AND fix_time >= $2 AND fix_time <= $3
         ORDER BY fix_time LIMIT $4"
    );
    let sql = if geojson {
        "SELECT fix_time, NULL::timestamptz, lat, lon
         FROM positions WHERE device_id = $1 AND fix_time >= $2 AND fix_time <= $3
           AND valid AND lat IS NOT NULL AND lon IS NOT NULL
         ORDER BY fix_time LIMIT $4"
    } else {
        &all_columns
    };
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &start, &end, &fetch];
    // Written once per request: the identity every position repeats.
    let identity = position_identity(&device.identifier, &device.protocol);
    let rows = db.query_raw(sql, params).await?;
    let open = if geojson {
        r#"{"type":"Feature","geometry":{"type":"LineString","coordinates":["#
    } else {
        r#"{"positions":["#
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        // The connection stays checked out until the page is written.
        let _db = db;
        let mut rows = std::pin::pin!(rows);
        let mut chunk = String::with_capacity(64 * 1024);
        chunk.push_str(open);
        let mut written: i64 = 0;
        let mut last_time: Option<i64> = None;
        let mut times: Vec<String> = Vec::new();
        let mut more = false;
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "history read failed mid-stream");
                    let _ = sender.send(Err(std::io::Error::other("history read failed"))).await;
                    return;
                }
            };
            if written == limit {
                more = true;
                break;
            }
            if written > 0 {
                chunk.push(',');
            }
            let time: Timestamp = row.get(0);
            if geojson {
                let _ = write!(chunk, "[{},{}]", row.get::<_, f64>(3), row.get::<_, f64>(2));
                times.push(time.0.to_string());
            } else {
                write_position(&mut chunk, &identity, &row);
            }
            last_time = Some(time.0.0);
            written += 1;
            if chunk.len() > 60 * 1024 {
                let full = std::mem::replace(&mut chunk, String::with_capacity(64 * 1024));
                if sender.send(Ok(Bytes::from(full))).await.is_err() {
                    return;
                }
            }
        }
        let next = match (more, last_time) {
            (true, Some(t)) => format!("\"{t}\""),
            _ => "null".to_owned(),
        };
        if geojson {
            let times = serde_json::to_string(&times).unwrap_or_else(|_| "[]".into());
            chunk.push_str(&format!(r#"]}},"properties":{{"device_id":{id},"times":{times},"next":{next}}}}}"#));
        } else {
            chunk.push_str(&format!(r#"],"next":{next}}}"#));
        }
        let _ = sender.send(Ok(Bytes::from(chunk))).await;
    });
    Ok(streamed(if geojson { "application/geo+json" } else { "application/json" }, receiver))
}

/// Filters and paging of the event list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Start (RFC 3339, inclusive).
    pub from: String,
    /// End (RFC 3339, inclusive).
    pub to: String,
    /// Only this device.
    pub device: Option<i64>,
    /// Only this kind (`ignition_on`, `overspeed`, `online`, ...).
    pub kind: Option<String>,
    /// Events per page, 1-10000 (default 1000).
    pub limit: Option<i64>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// The tenant's events in `[from, to]`, ascending:
/// `{"events": [{"device_id", "time", "kind", "lat", "lon", "details"}], "next": null | cursor}`.
#[utoipa::path(get, path = "/v1/events", tag = "history", params(EventsQuery),
    responses((status = 200, description = "`{\"events\": [...], \"next\": null}`"), (status = 400)))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(query): QueryParams<EventsQuery>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let (from, to) = (parse_time("from", &query.from)?, parse_time("to", &query.to)?);
    let (_, _, limit) = page(&query.from, &query.to, query.limit, None)?;
    // The cursor is the key of the last event shown: time in ms, device id, kind, ref
    // (two geofences entered at once are two events). A cursor without the ref (given
    // before refs existed) goes on after every ref of its event, as it did then.
    let after: Option<(i64, i64, String, i64)> = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => {
            let mut parts = cursor.splitn(4, '.');
            let parsed = (|| {
                let (time, device, kind) =
                    (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.to_owned());
                let reference = match parts.next() {
                    None => i64::MAX,
                    Some(text) => text.parse().ok()?,
                };
                Some((time, device, kind, reference))
            })();
            Some(parsed.ok_or_else(|| ApiError::BadRequest("cursor is not one this API gave".into()))?)
        }
    };
    let (after_time, after_device, after_kind, after_ref) = match &after {
        Some((t, d, k, r)) => (Some(Timestamp(UtcMillis(*t))), Some(*d), Some(k.as_str()), Some(*r)),
        None => (None, None, None, None),
    };
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT (extract(epoch FROM time) * 1000)::bigint, device_id, kind, {EVENT_JSON}, ref
             FROM events
             WHERE tenant_id = $1 AND time >= $2 AND time <= $3
               AND ($4::bigint IS NULL OR device_id = $4) AND ($5::text IS NULL OR kind = $5)
               AND ($6::timestamptz IS NULL OR (time, device_id, kind, ref) > ($6, $7, $8, $10))
             ORDER BY time, device_id, kind, ref LIMIT $9"
            ),
            &[
                &principal.tenant_id,
                &Timestamp(from),
                &Timestamp(to),
                &query.device,
                &query.kind,
                &after_time,
                &after_device,
                &after_kind,
                &(limit + 1),
                &after_ref,
            ],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let shown = &rows[..rows.len().min(limit as usize)];
    let next = shown.last().filter(|_| more).map(|r| {
        format!("{}.{}.{}.{}", r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, String>(2), r.get::<_, i64>(4))
    });
    let events: Vec<&str> = shown.iter().map(|r| r.get(3)).collect();
    let body = format!(
        r#"{{"events":[{}],"next":{}}}"#,
        events.join(","),
        next.map_or_else(|| "null".to_owned(), |n| serde_json::Value::from(n).to_string())
    );
    Ok(([(CONTENT_TYPE, "application/json")], body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_checked() {
        assert!(page("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None, None).is_ok());
        assert!(matches!(page("yesterday", "2026-01-02T00:00:00Z", None, None), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            page("2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z", None, None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            page("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", Some(0), None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            page("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None, Some("'; DROP TABLE positions")),
            Err(ApiError::BadRequest(_))
        ));
        let (start, _, _) = page("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None, Some("1767225600500"))
            .unwrap_or((UtcMillis(0), UtcMillis(0), 0));
        assert_eq!(start, UtcMillis(1_767_225_600_501), "the cursor moves the start past the last shown");
    }
}
