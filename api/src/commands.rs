//! Commands to devices: queued in the command stream (`fleetgate_contracts::messages::
//! CommandMessage`, which the gateway delivers), recorded in `commands`, and shown with
//! the device's answer once the processor stored it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use fleetgate_contracts::messages::CommandMessage;
use fleetgate_contracts::{DeviceId, stream};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::{AppState, JsonBody, PathId};

/// A command to send: exactly one of `text` (Teltonika codec 12 text, Wialon `#M#`) and
/// `hex` (raw bytes for binary protocols).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    /// Command text, 1-1000 characters.
    #[serde(default)]
    pub text: Option<String>,
    /// Command bytes as hex, up to 1000 bytes.
    #[serde(default)]
    pub hex: Option<String>,
}

/// A command and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Command {
    /// Id.
    pub id: String,
    /// What was sent.
    pub text: Option<String>,
    /// What was sent, as hex.
    pub hex: Option<String>,
    /// `queued` until the device answered, then `answered`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// The device's answer as text, when it answered in text.
    pub answer: Option<String>,
    /// The device's answer as hex.
    pub answer_hex: Option<String>,
    /// RFC 3339, when the answer arrived.
    pub answered_at: Option<String>,
}

async fn own_device(state: &AppState, principal: &Principal, id: i64) -> ApiResult<()> {
    let devices = state.device_cache.get(state, principal.tenant_id).await?;
    devices.get(id).map(|_| ()).ok_or(ApiError::NotFound("device"))
}

/// Queues a command; the device gets it when it is (or next comes) online.
#[utoipa::path(post, path = "/v1/devices/{id}/commands", tag = "commands", params(("id" = i64, Path)),
    request_body = NewCommand, responses((status = 202, body = Command), (status = 400), (status = 404)))]
pub async fn queue_command(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
    JsonBody(new): JsonBody<NewCommand>,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Dispatcher)?;
    match (&new.text, &new.hex) {
        (Some(text), None) if (1..=1000).contains(&text.chars().count()) => {}
        (None, Some(hex))
            if fleetgate_codecs::hex::decode(hex.as_bytes()).is_ok_and(|b| (1..=1000).contains(&b.len())) => {}
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of text (1-1000 characters) and hex (1-1000 bytes as hex)".into(),
            ));
        }
    }
    own_device(&state, &principal, id).await?;
    let command_id = crate::auth::new_token("cmd_")?[..20].to_owned();
    let db = state.db().await?;
    let row = db
        .query_one(
            "INSERT INTO commands (id, tenant_id, device_id, text, hex) VALUES ($1, $2, $3, $4, $5)
             RETURNING rfc3339(created_at)",
            &[&command_id, &principal.tenant_id, &id, &new.text, &new.hex],
        )
        .await?;
    let message = CommandMessage {
        id: command_id.clone(),
        text: new.text.clone(),
        hex: new.hex.as_ref().map(|hex| hex.to_lowercase()),
    };
    let subject = stream::command_subject(state.prefix(), principal.tenant_id, DeviceId(id));
    let jetstream = async_nats::jetstream::new(state.nats.clone());
    let stored = match jetstream.publish(subject, message.encode()).await {
        Ok(ack) => ack.await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = stored {
        // Not queued: forget it so the list does not show a command that never goes out.
        let _ = db.execute("DELETE FROM commands WHERE id = $1", &[&command_id]).await;
        return Err(ApiError::Unavailable(format!("command stream: {error}")));
    }
    let command = Command {
        id: command_id,
        text: new.text,
        hex: new.hex,
        status: "queued".into(),
        created_at: row.get(0),
        answer: None,
        answer_hex: None,
        answered_at: None,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(command)))
}

/// The device's last 100 commands, newest first, with their answers.
#[utoipa::path(get, path = "/v1/devices/{id}/commands", tag = "commands", params(("id" = i64, Path)),
    responses((status = 200, description = "`{\"commands\": [Command]}`"), (status = 404)))]
pub async fn list_commands(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<impl IntoResponse> {
    principal.require(Role::Viewer)?;
    own_device(&state, &principal, id).await?;
    let db = state.db().await?;
    let rows = db
        .query(
            "SELECT c.id, c.text, c.hex, rfc3339(c.created_at), m.text, m.hex, rfc3339(m.received)
             FROM commands c
             LEFT JOIN LATERAL (
                 SELECT text, hex, received FROM device_messages
                 WHERE device_id = c.device_id AND command_id = c.id ORDER BY received LIMIT 1
             ) m ON true
             WHERE c.device_id = $1 AND c.tenant_id = $2
             ORDER BY c.created_at DESC LIMIT 100",
            &[&id, &principal.tenant_id],
        )
        .await?;
    let commands: Vec<Command> = rows
        .iter()
        .map(|r| {
            let answered_at: Option<String> = r.get(6);
            Command {
                id: r.get(0),
                text: r.get(1),
                hex: r.get(2),
                status: if answered_at.is_some() { "answered" } else { "queued" }.into(),
                created_at: r.get(3),
                answer: r.get(4),
                answer_hex: r.get(5),
                answered_at,
            }
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "commands": commands })))
}
