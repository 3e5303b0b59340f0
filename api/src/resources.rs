//! What a tenant manages: devices, groups, drivers, users and API keys; and login.
//!
//! Who may do what (enforced in each handler with `Principal::require`):
//!
//! | resource | viewer | dispatcher | admin |
//! |---|---|---|---|
//! | devices, groups: read | yes | yes | yes |
//! | devices, groups: create, change, delete | no | no | yes |
//! | drivers: read | yes | yes | yes |
//! | drivers: create, delete | no | yes | yes |
//! | users, API keys: read, create, delete | no | no | yes |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use fleetgate_codecs::Protocol;
use fleetgate_codecs::protocol::{format_utc_offset, parse_utc_offset};
use fleetgate_contracts::{DeviceId, TenantId, identifiers};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::error::SqlState;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Credential, Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::{AppState, JsonBody, PathId, QueryParams, no_content};
use fleetgate_rules::geofence::Shape;

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A 409 with `message` when the statement broke a unique key, else the error as is.
fn conflict(message: impl FnOnce() -> String) -> impl FnOnce(tokio_postgres::Error) -> ApiError {
    move |error| {
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION) { ApiError::Conflict(message()) } else { error.into() }
    }
}

/// A trimmed, non-empty name of at most 200 characters.
fn required_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::BadRequest("name must not be empty".into()));
    }
    check_text("name", name, 200)?;
    Ok(name)
}

/// Deletes the caller's row `id` of `table` (a table with `id` and `tenant_id`); 404 as
/// `what` when the tenant has no such row.
async fn delete_owned(
    state: &AppState,
    table: &str,
    id: i64,
    tenant_id: TenantId,
    what: &'static str,
) -> ApiResult<()> {
    let db = state.db().await?;
    let deleted =
        db.execute(&format!("DELETE FROM {table} WHERE id = $1 AND tenant_id = $2"), &[&id, &tenant_id]).await?;
    if deleted == 0 {
        return Err(ApiError::NotFound(what));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max_chars: usize) -> ApiResult<()> {
    if value.chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!("{field} is longer than {max_chars} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("{field} contains control characters")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Devices

/// A device as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    /// Id within the platform.
    pub id: i64,
    /// What the device sends to identify itself (IMEI, terminal id); unique.
    pub identifier: String,
    /// Codec name (`teltonika`, `wialon`).
    pub protocol: String,
    /// Display name.
    pub name: String,
    /// Number plate.
    pub plate: Option<String>,
    /// Group.
    pub group_id: Option<i64>,
    /// km/h; overspeed events use it.
    pub speed_limit: Option<f32>,
    /// Seconds a run over the speed limit lasts before it is an `overspeed` event (0: at
    /// once).
    pub overspeed_min_s: i32,
    /// The device model (`VL103`, `NT20`): GT06 firmware families that the frames cannot
    /// tell apart are read by it.
    pub model: Option<String>,
    /// The offset of the device's clock from UTC (`+03:00`) for devices set to local
    /// time; `null`: as the protocol says.
    pub utc_offset: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

const DEVICE_COLUMNS: &str = "id, identifier, protocol, name, plate, group_id, speed_limit, rfc3339(created_at), \
     overspeed_min_s, model, utc_offset_minutes";

fn device_from(row: &tokio_postgres::Row) -> Device {
    Device {
        id: row.get(0),
        identifier: row.get(1),
        protocol: row.get(2),
        name: row.get(3),
        plate: row.get(4),
        group_id: row.get(5),
        speed_limit: row.get(6),
        overspeed_min_s: row.get(8),
        model: row.get(9),
        utc_offset: row.get::<_, Option<i32>>(10).map(format_utc_offset),
        created_at: row.get(7),
    }
}

/// A device to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// IMEI or terminal id: 1-64 letters, digits, `-` or `_`; unique across the platform.
    pub identifier: String,
    /// Codec name.
    pub protocol: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Number plate.
    #[serde(default)]
    pub plate: Option<String>,
    /// Group id (of this tenant).
    #[serde(default)]
    pub group_id: Option<i64>,
    /// km/h, 1-500.
    #[serde(default)]
    pub speed_limit: Option<f32>,
    /// Seconds over the limit before an overspeed event, 0-3600 (default 0: at once).
    #[serde(default)]
    pub overspeed_min_s: Option<i32>,
    /// Wialon IPS login password the device must present (never shown back).
    #[serde(default)]
    pub password: Option<String>,
    /// The device model, 1-64 characters.
    #[serde(default)]
    pub model: Option<String>,
    /// The offset of the device's clock from UTC, `+03:00` (UTC-12:00 to UTC+14:00).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

/// Changes to a device; absent fields stay, `null` clears.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Number plate.
    #[serde(default, deserialize_with = "nullable")]
    pub plate: Option<Option<String>>,
    /// Group id.
    #[serde(default, deserialize_with = "nullable")]
    pub group_id: Option<Option<i64>>,
    /// km/h.
    #[serde(default, deserialize_with = "nullable")]
    pub speed_limit: Option<Option<f32>>,
    /// Seconds over the limit before an overspeed event, 0-3600.
    #[serde(default)]
    pub overspeed_min_s: Option<i32>,
    /// Wialon IPS password.
    #[serde(default, deserialize_with = "nullable")]
    pub password: Option<Option<String>>,
    /// Report rules of this device over its tenant's (docs/REPORTS.md); `null` clears.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub report_rules: Option<Option<serde_json::Value>>,
    /// The device model.
    #[serde(default, deserialize_with = "nullable")]
    pub model: Option<Option<String>>,
    /// The offset of the device's clock from UTC, `+03:00`.
    #[serde(default, deserialize_with = "nullable")]
    pub utc_offset: Option<Option<String>>,
}

/// Checks report rules (a JSON object of some of the rules) and gives them as text.
pub fn report_rules_text(rules: &serde_json::Value) -> ApiResult<String> {
    if !rules.is_object() {
        return Err(ApiError::BadRequest("report_rules must be an object of rules".into()));
    }
    serde_json::from_value::<fleetgate_rules::reports::Rules>(rules.clone())
        .map_err(|e| ApiError::BadRequest(format!("report_rules: {e}")))?;
    Ok(rules.to_string())
}

fn check_identifier(identifier: &str) -> ApiResult<()> {
    if identifiers::is_valid(identifier) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("identifier must be {}", identifiers::RULE)))
    }
}

fn check_overspeed_min(seconds: Option<i32>) -> ApiResult<()> {
    match seconds {
        Some(s) if !(0..=3600).contains(&s) => Err(ApiError::BadRequest("overspeed_min_s must be 0 to 3600".into())),
        _ => Ok(()),
    }
}

/// A model name: 1-64 printable characters.
fn check_model(model: Option<&str>) -> ApiResult<()> {
    match model {
        Some(m) if m.is_empty() || m.chars().count() > 64 || m.chars().any(char::is_control) => {
            Err(ApiError::BadRequest("model must be 1 to 64 printable characters".into()))
        }
        _ => Ok(()),
    }
}

/// A UTC offset as minutes east of UTC.
fn utc_offset_minutes(offset: Option<&str>) -> ApiResult<Option<i32>> {
    offset
        .map(|text| {
            parse_utc_offset(text).ok_or_else(|| {
                ApiError::BadRequest(format!("utc_offset {text:?} must be like +03:00 (UTC-12:00 to UTC+14:00)"))
            })
        })
        .transpose()
}

fn check_speed_limit(limit: Option<f32>) -> ApiResult<()> {
    match limit {
        Some(v) if !(v > 0.0 && v <= 500.0) => Err(ApiError::BadRequest("speed_limit must be in (0, 500] km/h".into())),
        _ => Ok(()),
    }
}

async fn check_group(db: &deadpool_postgres::Object, tenant_id: TenantId, group_id: Option<i64>) -> ApiResult<()> {
    if let Some(group_id) = group_id {
        let found = db
            .query_opt("SELECT 1 FROM device_groups WHERE id = $1 AND tenant_id = $2", &[&group_id, &tenant_id])
            .await?;
        if found.is_none() {
            return Err(ApiError::BadRequest(format!("group_id {group_id} does not exist")));
        }
    }
    Ok(())
}

/// Tells the gateways that a device's registration changed.
async fn notify_registry(state: &AppState, identifier: &str) {
    let subject = fleetgate_contracts::stream::registry_subject(state.prefix());
    if let Err(error) = state.nats.publish(subject, identifier.to_owned().into()).await {
        // Gateways also reload the registry periodically; the change arrives anyway.
        tracing::warn!(%error, "cannot notify the gateways of a registry change");
    }
}

/// Filters of the device list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    /// Only this group's devices.
    pub group: Option<i64>,
}

/// The tenant's devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", params(DeviceFilter),
    responses((status = 200, description = "`{\"devices\": [Device]}`")))]
pub async fn list_devices(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    QueryParams(filter): QueryParams<DeviceFilter>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND ($2::bigint IS NULL OR group_id = $2) ORDER BY id"
            ),
            &[&principal.tenant_id, &filter.group],
        )
        .await?;
    let devices: Vec<Device> = rows.iter().map(device_from).collect();
    Ok(axum::Json(serde_json::json!({ "devices": devices })))
}

/// Registers a device.
#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = Device), (status = 400), (status = 409, description = "identifier already registered")))]
pub async fn create_device(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    check_identifier(&new.identifier)?;
    let Some(protocol) = Protocol::from_name(&new.protocol) else {
        return Err(ApiError::BadRequest(format!("protocol must be one of: {}", Protocol::names())));
    };
    if !protocol.accepts_identifier(&new.identifier) {
        let rule = protocol.spec().identifier_rule;
        return Err(ApiError::BadRequest(format!("a {protocol} device's identifier is {rule}")));
    }
    let name = new.name.unwrap_or_default();
    check_text("name", &name, 200)?;
    check_text("plate", new.plate.as_deref().unwrap_or_default(), 32)?;
    check_text("password", new.password.as_deref().unwrap_or_default(), 64)?;
    check_speed_limit(new.speed_limit)?;
    check_overspeed_min(new.overspeed_min_s)?;
    check_model(new.model.as_deref())?;
    let offset = utc_offset_minutes(new.utc_offset.as_deref())?;
    let db = state.db().await?;
    check_group(&db, principal.tenant_id, new.group_id).await?;
    let row = db
        .query_one(
            &format!(
                "INSERT INTO devices (tenant_id, identifier, protocol, name, plate, group_id, speed_limit, password,
                                      overspeed_min_s, model, utc_offset_minutes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {DEVICE_COLUMNS}"
            ),
            &[
                &principal.tenant_id,
                &new.identifier,
                &new.protocol,
                &name,
                &new.plate,
                &new.group_id,
                &new.speed_limit,
                &new.password,
                &new.overspeed_min_s.unwrap_or(0),
                &new.model,
                &offset,
            ],
        )
        .await
        .map_err(conflict(|| format!("identifier {} is already registered", new.identifier)))?;
    state.device_cache.invalidate(principal.tenant_id);
    notify_registry(&state, &new.identifier).await;
    Ok((StatusCode::CREATED, axum::Json(device_from(&row))))
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{id}", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = Device), (status = 404)))]
pub async fn get_device(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let row = db
        .query_opt(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND tenant_id = $2"),
            &[&id, &principal.tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok(axum::Json(device_from(&row)))
}

/// Changes a device (its identifier and protocol are fixed: register a new one instead).
#[utoipa::path(patch, path = "/v1/devices/{id}", tag = "devices", params(("id" = i64, Path)), request_body = DevicePatch,
    responses((status = 200, body = Device), (status = 400), (status = 404)))]
pub async fn update_device(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
    JsonBody(patch): JsonBody<DevicePatch>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    check_text("name", patch.name.as_deref().unwrap_or_default(), 200)?;
    check_text("plate", patch.plate.clone().flatten().as_deref().unwrap_or_default(), 32)?;
    check_text("password", patch.password.clone().flatten().as_deref().unwrap_or_default(), 64)?;
    check_speed_limit(patch.speed_limit.flatten())?;
    check_overspeed_min(patch.overspeed_min_s)?;
    check_model(patch.model.clone().flatten().as_deref())?;
    let offset = utc_offset_minutes(patch.utc_offset.clone().flatten().as_deref())?;
    let rules = match patch.report_rules.clone().flatten() {
        Some(rules) => Some(report_rules_text(&rules)?),
        None => None,
    };
    let db = state.db().await?;
    check_group(&db, principal.tenant_id, patch.group_id.flatten()).await?;
    let row = db
        .query_opt(
            &format!(
                "UPDATE devices SET
                    name = coalesce($3, name),
                    plate = CASE WHEN $4 THEN $5 ELSE plate END,
                    group_id = CASE WHEN $6 THEN $7 ELSE group_id END,
                    speed_limit = CASE WHEN $8 THEN $9 ELSE speed_limit END,
                    password = CASE WHEN $10 THEN $11 ELSE password END,
                    report_rules = CASE WHEN $12 THEN $13::text::jsonb ELSE report_rules END,
                    overspeed_min_s = coalesce($14, overspeed_min_s),
                    model = CASE WHEN $15 THEN $16 ELSE model END,
                    utc_offset_minutes = CASE WHEN $17 THEN $18 ELSE utc_offset_minutes END,
                    updated_at = now()
                 WHERE id = $1 AND tenant_id = $2 RETURNING {DEVICE_COLUMNS}"
            ),
            &[
                &id,
                &principal.tenant_id,
                &patch.name,
                &patch.plate.is_some(),
                &patch.plate.flatten(),
                &patch.group_id.is_some(),
                &patch.group_id.flatten(),
                &patch.speed_limit.is_some(),
                &patch.speed_limit.flatten(),
                &patch.password.is_some(),
                &patch.password.flatten(),
                &patch.report_rules.is_some(),
                &rules,
                &patch.overspeed_min_s,
                &patch.model.is_some(),
                &patch.model.flatten(),
                &patch.utc_offset.is_some(),
                &offset,
            ],
        )
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    let device = device_from(&row);
    state.device_cache.invalidate(principal.tenant_id);
    notify_registry(&state, &device.identifier).await;
    Ok(axum::Json(device))
}

/// Deletes a device, its live state and (by cascade) its commands; its history stays
/// until retention removes it.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_device(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let db = state.db().await?;
    let row = db
        .query_opt(
            "DELETE FROM devices WHERE id = $1 AND tenant_id = $2 RETURNING identifier",
            &[&id, &principal.tenant_id],
        )
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    let identifier: String = row.get(0);
    state.device_cache.invalidate(principal.tenant_id);
    notify_registry(&state, &identifier).await;
    let prefix = &state.config.redis.key_prefix;
    let mut redis = state.redis.clone();
    let _: Result<(), _> = redis::pipe()
        .cmd("DEL")
        .arg(fleetgate_contracts::keys::live_key(prefix, principal.tenant_id, DeviceId(id)))
        .cmd("SREM")
        .arg(fleetgate_contracts::keys::devices_key(prefix, principal.tenant_id))
        .arg(id)
        .query_async(&mut redis)
        .await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------
// Groups

/// A group of devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    /// Id.
    pub id: i64,
    /// Name, unique within the tenant.
    pub name: String,
}

/// A group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// Name, 1-200 characters.
    pub name: String,
}

/// The tenant's groups.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", responses((status = 200, description = "`{\"groups\": [Group]}`")))]
pub async fn list_groups(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let rows = db
        .query("SELECT id, name FROM device_groups WHERE tenant_id = $1 ORDER BY id", &[&principal.tenant_id])
        .await?;
    let groups: Vec<Group> = rows.iter().map(|r| Group { id: r.get(0), name: r.get(1) }).collect();
    Ok(axum::Json(serde_json::json!({ "groups": groups })))
}

/// Creates a group.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, body = Group), (status = 409)))]
pub async fn create_group(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewGroup>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let name = required_name(&new.name)?;
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO device_groups (tenant_id, name) VALUES ($1, $2) RETURNING id",
            &[&principal.tenant_id, &name],
        )
        .await
        .map_err(conflict(|| format!("group {name:?} exists")))?;
    Ok((StatusCode::CREATED, axum::Json(Group { id: row.get(0), name: name.to_owned() })))
}

/// Deletes a group; its devices stay, without a group.
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_group(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    delete_owned(&state, "device_groups", id, principal.tenant_id, "group").await?;
    state.device_cache.invalidate(principal.tenant_id);
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------
// Drivers

/// A driver.
#[derive(Debug, Serialize, ToSchema)]
pub struct Driver {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// iButton or RFID card id as devices report it (the `driver_id` attribute).
    pub key_id: Option<String>,
}

/// A driver to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDriver {
    /// Name, 1-200 characters.
    pub name: String,
    /// iButton or RFID id, unique within the tenant.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// The tenant's drivers.
#[utoipa::path(get, path = "/v1/drivers", tag = "drivers", responses((status = 200, description = "`{\"drivers\": [Driver]}`")))]
pub async fn list_drivers(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let rows = db
        .query("SELECT id, name, key_id FROM drivers WHERE tenant_id = $1 ORDER BY id", &[&principal.tenant_id])
        .await?;
    let drivers: Vec<Driver> = rows.iter().map(|r| Driver { id: r.get(0), name: r.get(1), key_id: r.get(2) }).collect();
    Ok(axum::Json(serde_json::json!({ "drivers": drivers })))
}

/// Creates a driver.
#[utoipa::path(post, path = "/v1/drivers", tag = "drivers", request_body = NewDriver,
    responses((status = 201, body = Driver), (status = 409)))]
pub async fn create_driver(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewDriver>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    let name = required_name(&new.name)?;
    check_text("key_id", new.key_id.as_deref().unwrap_or_default(), 64)?;
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO drivers (tenant_id, name, key_id) VALUES ($1, $2, $3) RETURNING id",
            &[&principal.tenant_id, &name, &new.key_id],
        )
        .await
        .map_err(conflict(|| "key_id is already assigned".into()))?;
    Ok((StatusCode::CREATED, axum::Json(Driver { id: row.get(0), name: name.to_owned(), key_id: new.key_id })))
}

/// Deletes a driver.
#[utoipa::path(delete, path = "/v1/drivers/{id}", tag = "drivers", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_driver(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    delete_owned(&state, "drivers", id, principal.tenant_id, "driver").await?;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------
// Users

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login, lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// RFC 3339.
    pub created_at: String,
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login; unique across the platform.
    pub email: String,
    /// 8-200 characters.
    pub password: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Role.
    pub role: Role,
}

fn user_from(row: &tokio_postgres::Row) -> User {
    User {
        id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        role: Role::parse(row.get(3)).unwrap_or(Role::Viewer),
        created_at: row.get(4),
    }
}

/// The tenant's users.
#[utoipa::path(get, path = "/v1/users", tag = "users", responses((status = 200, description = "`{\"users\": [User]}`")))]
pub async fn list_users(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT id, email, name, role, rfc3339(created_at) FROM users WHERE tenant_id = $1 ORDER BY id",
            &[&principal.tenant_id],
        )
        .await?;
    let users: Vec<User> = rows.iter().map(user_from).collect();
    Ok(axum::Json(serde_json::json!({ "users": users })))
}

/// Creates a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 409, description = "email already used")))]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewUser>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let email = new.email.trim().to_lowercase();
    let valid_email =
        email.len() <= 254 && email.split_once('@').is_some_and(|(a, d)| !a.is_empty() && d.contains('.'));
    if !valid_email || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::BadRequest("email is not an email address".into()));
    }
    if !(8..=200).contains(&new.password.chars().count()) {
        return Err(ApiError::BadRequest("password must be 8 to 200 characters".into()));
    }
    let name = new.name.unwrap_or_default();
    check_text("name", &name, 200)?;
    let password = new.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO users (tenant_id, email, name, password_hash, role) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, email, name, role, rfc3339(created_at)",
            &[&principal.tenant_id, &email, &name, &hash, &new.role.as_str()],
        )
        .await
        .map_err(conflict(|| format!("{email} is already a user")))?;
    Ok((StatusCode::CREATED, axum::Json(user_from(&row))))
}

/// Deletes a user and ends their sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_user(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    delete_owned(&state, "users", id, principal.tenant_id, "user").await?;
    state.invalidate(principal.tenant_id).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------
// API keys

/// An API key as listed (the key itself is shown only when created).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Id.
    pub id: i64,
    /// What it is for.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Its last four characters.
    pub hint: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// What it is for.
    #[serde(default)]
    pub name: Option<String>,
    /// Role.
    pub role: Role,
}

/// The tenant's API keys.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", responses((status = 200, description = "`{\"api_keys\": [ApiKey]}`")))]
pub async fn list_api_keys(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT id, name, role, key_hint, rfc3339(created_at), rfc3339(revoked_at) FROM api_keys
             WHERE tenant_id = $1 ORDER BY id",
            &[&principal.tenant_id],
        )
        .await?;
    let keys: Vec<ApiKey> = rows
        .iter()
        .map(|r| ApiKey {
            id: r.get(0),
            name: r.get(1),
            role: Role::parse(r.get(2)).unwrap_or(Role::Viewer),
            hint: r.get(3),
            created_at: r.get(4),
            revoked_at: r.get(5),
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "api_keys": keys })))
}

/// Creates a key; the answer is the only time it is shown.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, description = "`{\"id\", \"name\", \"role\", \"api_key\"}`")))]
pub async fn create_api_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewApiKey>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let name = new.name.unwrap_or_default();
    check_text("name", &name, 200)?;
    let key = auth::new_token("fgk_")?;
    let hash = auth::token_hash(&key);
    let hash: &[u8] = &hash;
    let hint = key[key.len() - 4..].to_owned();
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO api_keys (tenant_id, name, role, key_hash, key_hint) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&principal.tenant_id, &name, &new.role.as_str(), &hash, &hint],
        )
        .await?;
    let id: i64 = row.get(0);
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({"id": id, "name": name, "role": new.role, "api_key": key}))))
}

/// Revokes a key at once, in every API process.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn revoke_api_key(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let db = state.db().await?;
    let revoked = db
        .execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2",
            &[&id, &principal.tenant_id],
        )
        .await?;
    if revoked == 0 {
        return Err(ApiError::NotFound("api key"));
    }
    state.invalidate(principal.tenant_id).await;
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------
// Login

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `Authorization`.
    pub token: String,
    /// RFC 3339; the token stops working then.
    pub expires_at: String,
    /// The user's tenant.
    pub tenant_id: i64,
    /// The user's role.
    pub role: Role,
}

/// A stand-in hash to verify against when the user does not exist, so a wrong email
/// takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| auth::hash_password("decoy password").unwrap_or_default())
}

/// Exchanges email and password for a session token. Repeated failures for one account
/// or from one address are refused with 429 for `api.login_window_s`.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = LoginResponse), (status = 401), (status = 429)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(request): JsonBody<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let email = request.email.trim().to_lowercase();
    let client = connect.map(|c| c.0.0.ip());
    state.login_limiter.check(&email, client)?;
    let db = state.db().await?;
    let user = db.query_opt("SELECT id, tenant_id, role, password_hash FROM users WHERE email = $1", &[&email]).await?;
    let stored = user.as_ref().map_or_else(|| decoy_hash().to_owned(), |u| u.get::<_, String>(3));
    let password = request.password;
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(user) = user.filter(|_| matches) else {
        state.login_limiter.failed(&email, client);
        tracing::info!(client = ?client, "failed login");
        return Err(ApiError::Unauthorized);
    };
    state.login_limiter.succeeded(&email);
    let token = auth::new_token("fgs_")?;
    let hash = auth::token_hash(&token);
    let hash: &[u8] = &hash;
    let (user_id, tenant_id, role): (i64, i64, String) = (user.get(0), user.get(1), user.get(2));
    let ttl = state.config.api.session_ttl_s as f64;
    let row = db
        .query_one(
            "INSERT INTO sessions (token_hash, user_id, tenant_id, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING rfc3339(expires_at)",
            &[&hash, &user_id, &tenant_id, &ttl],
        )
        .await?;
    let role = Role::parse(&role).ok_or_else(|| ApiError::Internal(format!("stored role {role:?}")))?;
    Ok(axum::Json(LoginResponse { token, expires_at: row.get(0), tenant_id, role }))
}

/// Ends the caller's session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204), (status = 400)))]
pub async fn logout(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    let Credential::Session(_) = principal.credential else {
        return Err(ApiError::BadRequest("API keys do not log out; revoke the key instead".into()));
    };
    let db = state.db().await?;
    let hash: &[u8] = &principal.token_hash;
    db.execute("DELETE FROM sessions WHERE token_hash = $1", &[&hash]).await?;
    state.invalidate(principal.tenant_id).await;
    Ok(no_content())
}

/// A circle: centre and radius.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Circle {
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Metres, 1-100000.
    pub radius_m: f64,
}

/// A geofence to create: a name and either a circle or a polygon.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGeofence {
    /// Name, 1-200 characters.
    pub name: String,
    /// A circle.
    pub circle: Option<Circle>,
    /// A polygon's vertices as `[lat, lon]` (3-1000; it may cross the antimeridian).
    pub polygon: Option<Vec<[f64; 2]>>,
}

/// A geofence as JSON: `{"id", "name", "circle" | "polygon"}`.
fn geofence_json(id: i64, name: &str, shape: &Shape) -> serde_json::Value {
    let mut json = serde_json::to_value(shape).unwrap_or_default();
    if let Some(object) = json.as_object_mut() {
        object.insert("id".into(), id.into());
        object.insert("name".into(), name.into());
    }
    json
}

/// The tenant's geofences: `{"geofences": [{"id", "name", "circle" | "polygon"}]}`.
#[utoipa::path(get, path = "/v1/geofences", tag = "geofences",
    responses((status = 200, description = "`{\"geofences\": [...]}`")))]
pub async fn list_geofences(State(state): State<Arc<AppState>>, principal: Principal) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let rows = db
        .query("SELECT id, name, shape::text FROM geofences WHERE tenant_id = $1 ORDER BY id", &[&principal.tenant_id])
        .await?;
    let fences: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| {
            let shape: Shape = serde_json::from_str(r.get(2)).ok()?;
            Some(geofence_json(r.get(0), r.get(1), &shape))
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "geofences": fences })))
}

/// Creates a geofence; devices entering and leaving it get `geofence_enter` and
/// `geofence_exit` events (from the processor's next reload, within seconds).
#[utoipa::path(post, path = "/v1/geofences", tag = "geofences", request_body = NewGeofence,
    responses((status = 201, description = "the geofence"), (status = 400)))]
pub async fn create_geofence(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(new): JsonBody<NewGeofence>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    let name = required_name(&new.name)?;
    let shape = match (new.circle, new.polygon) {
        (Some(c), None) => Shape::Circle { lat: c.lat, lon: c.lon, radius_m: c.radius_m },
        (None, Some(vertices)) => Shape::Polygon(vertices),
        _ => return Err(ApiError::BadRequest("give either circle or polygon".into())),
    };
    shape.check().map_err(ApiError::BadRequest)?;
    let text = serde_json::to_string(&shape).map_err(|e| ApiError::Internal(e.to_string()))?;
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO geofences (tenant_id, name, shape) VALUES ($1, $2, $3::text::jsonb) RETURNING id",
            &[&principal.tenant_id, &name, &text],
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(geofence_json(row.get(0), name, &shape))))
}

/// Deletes a geofence (its past events stay).
#[utoipa::path(delete, path = "/v1/geofences/{id}", tag = "geofences", params(("id" = i64, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete_geofence(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    delete_owned(&state, "geofences", id, principal.tenant_id, "geofence").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's report rules: the defaults with the tenant's changes, and the changes.
#[utoipa::path(get, path = "/v1/report-rules", tag = "reports",
    responses((status = 200, description = "`{\"rules\": {...}, \"changed\": {...}}`")))]
pub async fn get_report_rules(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    let db = state.db().await?;
    let changed: String = db
        .query_one(
            "SELECT coalesce(report_rules, '{}'::jsonb)::text FROM tenants WHERE id = $1",
            &[&principal.tenant_id],
        )
        .await?
        .get(0);
    let changed: serde_json::Value = serde_json::from_str(&changed).unwrap_or_default();
    let rules: fleetgate_rules::reports::Rules = serde_json::from_value(changed.clone()).unwrap_or_default();
    Ok(axum::Json(serde_json::json!({"rules": rules, "changed": changed})))
}

/// Sets the tenant's report rules (an object of the rules to change from the defaults;
/// `{}` resets). A device's own rules (`PATCH /v1/devices/{id}` `report_rules`) win.
#[utoipa::path(put, path = "/v1/report-rules", tag = "reports",
    responses((status = 200, description = "as GET"), (status = 400)))]
pub async fn put_report_rules(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    JsonBody(rules): JsonBody<serde_json::Value>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Admin)?;
    let text = report_rules_text(&rules)?;
    let db = state.db().await?;
    db.execute("UPDATE tenants SET report_rules = $2::text::jsonb WHERE id = $1", &[&principal.tenant_id, &text])
        .await?;
    let effective: fleetgate_rules::reports::Rules = serde_json::from_value(rules.clone()).unwrap_or_default();
    Ok(axum::Json(serde_json::json!({"rules": effective, "changed": rules})))
}
