//! Live state: read from Redis (the processor's keys, see ARCHITECTURE.md) in one
//! pipelined round trip, and pushed to clients as Server-Sent Events from NATS.
//!
//! Why SSE and not WebSocket: the stream only flows from server to client, SSE is plain
//! HTTP (proxies, load balancers and `curl` handle it), and browsers reconnect by
//! themselves. On every (re)connect the stream starts with the current live position of
//! each vehicle, so a client that lost its connection is whole again without replay;
//! events it missed meanwhile are in `GET /v1/events`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Principal, Role};
use crate::cache::TtlCache;
use crate::error::{ApiError, ApiResult};
use crate::{AppState, PathId, QueryParams};
use fleetgate_contracts::keys::live_key;
use fleetgate_contracts::{DeviceId, TenantId, stream};

/// What the API needs to know of a device, cached per tenant.
#[derive(Debug, Clone)]
pub struct DeviceMeta {
    /// Id.
    pub id: i64,
    /// IMEI or terminal id.
    pub identifier: String,
    /// Codec name.
    pub protocol: String,
    /// Display name.
    pub name: String,
    /// Group.
    pub group_id: Option<i64>,
}

/// A tenant's devices.
#[derive(Debug, Default)]
pub struct TenantDevices {
    /// In id order.
    pub devices: Vec<DeviceMeta>,
    by_id: HashMap<i64, usize>,
}

impl TenantDevices {
    /// The device with this id, if the tenant has it.
    pub fn get(&self, id: i64) -> Option<&DeviceMeta> {
        self.by_id.get(&id).map(|i| &self.devices[*i])
    }
}

/// Device metadata per tenant, read once per `ttl` or after a change.
#[derive(Debug)]
pub struct DeviceCache(TtlCache<TenantId, Arc<TenantDevices>>);

impl DeviceCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        DeviceCache(TtlCache::new(ttl))
    }

    /// Forgets a tenant's devices.
    pub fn invalidate(&self, tenant_id: TenantId) {
        self.0.retain(|tenant, _| *tenant != tenant_id);
    }

    /// The tenant's devices.
    pub async fn get(&self, state: &AppState, tenant_id: TenantId) -> ApiResult<Arc<TenantDevices>> {
        if let Some(devices) = self.0.get(&tenant_id) {
            state.metrics.count_cache_hit();
            return Ok(devices);
        }
        state.metrics.count_db_read();
        let db = state.db().await?;
        let rows = db
            .query(
                "SELECT id, identifier, protocol, name, group_id FROM devices WHERE tenant_id = $1 ORDER BY id",
                &[&tenant_id],
            )
            .await?;
        let devices: Vec<DeviceMeta> = rows
            .iter()
            .map(|r| DeviceMeta {
                id: r.get(0),
                identifier: r.get(1),
                protocol: r.get(2),
                name: r.get(3),
                group_id: r.get(4),
            })
            .collect();
        let by_id = devices.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        let devices = Arc::new(TenantDevices { devices, by_id });
        self.0.put(tenant_id, devices.clone());
        Ok(devices)
    }
}

/// Filters of the live list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiveFilter {
    /// Only this group's vehicles.
    pub group: Option<i64>,
}

/// Every vehicle of the tenant with its newest position (contract 1), newest sensors and
/// connection status.
#[utoipa::path(get, path = "/v1/live", tag = "live", params(LiveFilter),
    responses((status = 200, description = "`{\"vehicles\": [{\"device_id\", \"identifier\", \"name\", \"group_id\", \"online\", \"position\", \"sensors\"}]}`")))]
pub async fn all_live(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(filter): QueryParams<LiveFilter>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let cache_key = (principal.tenant_id, filter.group);
    if let Some(body) = state.live_cache.get(&cache_key) {
        return Ok(([(CONTENT_TYPE, "application/json")], body));
    }
    let devices = state.device_cache.get(&state, principal.tenant_id).await?;
    let selected: Vec<&DeviceMeta> =
        devices.devices.iter().filter(|d| filter.group.is_none_or(|g| d.group_id == Some(g))).collect();
    let prefix = &state.config.redis.key_prefix;
    let mut pipe = redis::pipe();
    for device in &selected {
        pipe.cmd("HMGET")
            .arg(live_key(prefix, principal.tenant_id, DeviceId(device.id)))
            .arg("position")
            .arg("sensors")
            .arg("online");
    }
    let mut redis = state.redis.clone();
    let values: Vec<(Option<String>, Option<String>, Option<String>)> =
        if selected.is_empty() { Vec::new() } else { pipe.query_async(&mut redis).await? };
    // Written by hand: the stored JSON is the processor's own, embedded as is.
    let mut body =
        String::with_capacity(64 + values.iter().map(|v| 160 + v.0.as_ref().map_or(0, String::len)).sum::<usize>());
    body.push_str(r#"{"vehicles":["#);
    for (i, (device, (position, sensors, online))) in selected.iter().zip(values).enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"device_id":{},"identifier":{},"name":{},"group_id":{},"online":{},"position":{},"sensors":{}}}"#,
            device.id,
            serde_json::Value::from(device.identifier.as_str()),
            serde_json::Value::from(device.name.as_str()),
            device.group_id.map_or_else(|| "null".to_owned(), |g| g.to_string()),
            online.map_or("null", |o| if o == "1" { "true" } else { "false" }),
            position.as_deref().unwrap_or("null"),
            sensors.as_deref().unwrap_or("null"),
        );
    }
    body.push_str("]}");
    let body = Bytes::from(body);
    state.live_cache.put(cache_key, body.clone());
    Ok(([(CONTENT_TYPE, "application/json")], body))
}

/// Tenant and group filter of a composed answer.
pub type LiveKey = (TenantId, Option<i64>);

/// The composed `/v1/live` answer per tenant and group, reused for a fraction of a second
/// (`api.live_cache_ms`): a dashboard polling every second from many screens costs one
/// Redis round trip per tenant per period instead of one per request.
pub type LiveCache = TtlCache<LiveKey, Bytes>;

/// The device's newest position (contract 1, with `received`); 404 when there is none
/// yet or the device is not the caller's.
#[utoipa::path(get, path = "/v1/devices/{id}/live", tag = "live", params(("id" = i64, Path)),
    responses((status = 200, description = "contract 1 position"), (status = 404)))]
pub async fn device_live(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let devices = state.device_cache.get(&state, principal.tenant_id).await?;
    if devices.get(id).is_none() {
        return Err(ApiError::NotFound("device"));
    }
    let mut redis = state.redis.clone();
    let position: Option<String> = redis::cmd("HGET")
        .arg(live_key(&state.config.redis.key_prefix, principal.tenant_id, DeviceId(id)))
        .arg("position")
        .query_async(&mut redis)
        .await?;
    let position = position.ok_or(ApiError::NotFound("live position"))?;
    Ok(([(CONTENT_TYPE, "application/json")], position))
}

/// Filters of the live stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamFilter {
    /// Only this device.
    pub device: Option<i64>,
}

/// Server-Sent Events: `position` (contract 1, the device's new live position) and
/// `event` (a derived event), for the caller's tenant only. Starts with the current
/// position of every vehicle.
#[utoipa::path(get, path = "/v1/stream", tag = "live", params(StreamFilter),
    responses((status = 200, description = "text/event-stream")))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(filter): QueryParams<StreamFilter>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let devices = state.device_cache.get(&state, principal.tenant_id).await?;
    if let Some(device) = filter.device
        && devices.get(device).is_none()
    {
        return Err(ApiError::NotFound("device"));
    }
    let device_token = filter.device.map_or_else(|| "*".to_owned(), |d| d.to_string());
    let prefix = state.prefix();
    let tenant = principal.tenant_id;
    // Subscribe before reading the snapshot, so nothing falls between the two.
    let live = state
        .nats
        .subscribe(stream::live_subject(prefix, tenant, &device_token))
        .await
        .map_err(|e| ApiError::Unavailable(format!("nats: {e}")))?;
    let events = state
        .nats
        .subscribe(stream::event_subject(prefix, tenant, &device_token))
        .await
        .map_err(|e| ApiError::Unavailable(format!("nats: {e}")))?;
    let snapshot_ids: Vec<i64> =
        devices.devices.iter().map(|d| d.id).filter(|id| filter.device.is_none_or(|d| d == *id)).collect();
    let mut snapshot = Vec::new();
    if !snapshot_ids.is_empty() {
        let mut pipe = redis::pipe();
        for id in &snapshot_ids {
            pipe.cmd("HGET").arg(live_key(&state.config.redis.key_prefix, tenant, DeviceId(*id))).arg("position");
        }
        let mut redis = state.redis.clone();
        let positions: Vec<Option<String>> = pipe.query_async(&mut redis).await?;
        snapshot.extend(
            positions.into_iter().flatten().map(|p| Ok::<_, Infallible>(Event::default().event("position").data(p))),
        );
    }
    let live = live.map(|m| Ok(Event::default().event("position").data(String::from_utf8_lossy(&m.payload))));
    let events = events.map(|m| Ok(Event::default().event("event").data(String::from_utf8_lossy(&m.payload))));
    let stream = futures_util::stream::iter(snapshot).chain(futures_util::stream::select(live, events));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
