//! A device's raw traffic: the frames it sent as they went over the wire, what became
//! of each (positions, refused and why) and the gateway's reply, and the commands sent
//! to it; newest first, paged. Read from `device_frames`, the processor's index of the
//! gateway's archive stream.
//!
//! The page is also the export format `fleetgate decode` reads, so a device's real
//! traffic can become a fixture as is.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use fleetgate_codecs::Protocol;
use fleetgate_codecs::hex::HexDisplay;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::archive::format_time;
use fleetgate_store::rows::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::history::page;
use crate::{AppState, PathId, QueryParams};

/// Range and paging of a traffic request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrafficQuery {
    /// Start (RFC 3339, inclusive).
    pub from: String,
    /// End (RFC 3339, inclusive).
    pub to: String,
    /// Frames per page, 1-10000 (default 1000).
    pub limit: Option<i64>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
}

/// Bytes as the traffic view shows them: hex, and text for text protocols.
fn bytes_json(bytes: &[u8], text: bool) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("hex".into(), HexDisplay(bytes).to_string().into());
    if text {
        out.insert("text".into(), String::from_utf8_lossy(bytes).into());
    }
    out
}

/// The device's frames received in `[from, to]`, newest first:
/// `{"device_id", "device", "protocol", "frames": [{"id", "time", "direction", "transport",
/// "connection", "size", "hex", "text"?, "truncated"?, "outcome", "positions"?, "kind"?,
/// "offset"?, "error"?, "reply"?: {"hex", "text"?}}], "next": null | cursor}`.
/// `outcome` is `login`, `login_refused`, `positions`, `not_stored`, `message`,
/// `keepalive`, `refused` (with the stream `offset` and `error`), `fatal`, `incomplete`,
/// or `command` (direction `out`). Admin and dispatcher roles.
#[utoipa::path(get, path = "/v1/devices/{id}/traffic", tag = "history",
    params(("id" = i64, Path), TrafficQuery),
    responses((status = 200, description = "`{\"frames\": [...], \"next\": null}`"), (status = 400), (status = 403),
        (status = 404)))]
pub async fn traffic(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
    QueryParams(query): QueryParams<TrafficQuery>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    let (from, to, limit) = page(&query.from, &query.to, query.limit, None)?;
    // The cursor is the key of the last frame shown: receive time in ms and sequence.
    let before: Option<(i64, i64)> = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => {
            let parsed = cursor.split_once('.').and_then(|(t, s)| Some((t.parse().ok()?, s.parse().ok()?)));
            Some(parsed.ok_or_else(|| ApiError::BadRequest("cursor is not one this API gave".into()))?)
        }
    };
    let devices = state.device_cache.get(&state, principal.tenant_id).await?;
    let device = devices.get(id).ok_or(ApiError::NotFound("device"))?.clone();
    let text = Protocol::from_name(&device.protocol).is_some_and(Protocol::is_text);
    let (before_time, before_seq) = before.map(|(t, s)| (Timestamp(UtcMillis(t)), s)).unzip();
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT time, seq, direction, transport, connection, size, bytes, outcome, positions, kind,
                    error_offset, error, reply
             FROM device_frames
             WHERE device_id = $1 AND tenant_id = $2 AND time >= $3 AND time <= $4
               AND ($5::timestamptz IS NULL OR (time, seq) < ($5, $6))
             ORDER BY time DESC, seq DESC LIMIT $7",
            &[&id, &principal.tenant_id, &Timestamp(from), &Timestamp(to), &before_time, &before_seq, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let shown = &rows[..rows.len().min(limit as usize)];
    let mut frames = Vec::with_capacity(shown.len());
    for row in shown {
        let time: Timestamp = row.get(0);
        let bytes: &[u8] = row.get(6);
        let size: i32 = row.get(5);
        let mut frame = Map::new();
        frame.insert("id".into(), row.get::<_, i64>(1).into());
        frame.insert("time".into(), format_time(time.0).into());
        frame.insert("direction".into(), row.get::<_, &str>(2).into());
        frame.insert("transport".into(), row.get::<_, &str>(3).into());
        frame.insert("connection".into(), row.get::<_, &str>(4).into());
        frame.insert("size".into(), size.into());
        frame.extend(bytes_json(bytes, text));
        if (size as usize) > bytes.len() {
            frame.insert("truncated".into(), true.into());
        }
        frame.insert("outcome".into(), row.get::<_, &str>(7).into());
        if let Some(positions) = row.get::<_, Option<i32>>(8) {
            frame.insert("positions".into(), positions.into());
        }
        if let Some(kind) = row.get::<_, Option<&str>>(9) {
            frame.insert("kind".into(), kind.into());
        }
        if let Some(offset) = row.get::<_, Option<i64>>(10) {
            frame.insert("offset".into(), offset.into());
        }
        if let Some(error) = row.get::<_, Option<&str>>(11) {
            frame.insert("error".into(), error.into());
        }
        if let Some(reply) = row.get::<_, Option<&[u8]>>(12) {
            frame.insert("reply".into(), bytes_json(reply, text).into());
        }
        frames.push(Value::Object(frame));
    }
    let next = shown.last().filter(|_| more).map(|r| {
        let time: Timestamp = r.get(0);
        format!("{}.{}", time.0.0, r.get::<_, i64>(1))
    });
    let body = json!({
        "device_id": id,
        "device": device.identifier,
        "protocol": device.protocol,
        "frames": frames,
        "next": next,
    });
    Ok(([(CONTENT_TYPE, "application/json")], body.to_string()))
}
