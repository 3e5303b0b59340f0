//! The device registry: which identifiers belong to which tenant, as an in-memory view
//! of the `devices` table. Loaded at start, updated from change notifications on NATS,
//! and reloaded whole every `registry_refresh_s` as a safety net for a missed message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fleetgate_codecs::{DeviceSettings, Protocol};
use fleetgate_contracts::{DeviceRecord, TenantId};
use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// Identifier to device, shared by every connection.
#[derive(Debug, Default)]
pub struct Registry {
    devices: RwLock<HashMap<String, DeviceRecord>>,
    /// The tenant that unknown devices are registered into (0: none).
    auto_register_tenant: AtomicI64,
}

const SELECT: &str = "SELECT identifier, id, tenant_id, protocol, password, model, utc_offset_minutes FROM devices";

fn record(row: &tokio_postgres::Row) -> (String, DeviceRecord) {
    let protocol: &str = row.get(3);
    let model: Option<String> = row.get(5);
    let device = DeviceRecord {
        device_id: row.get(1),
        tenant_id: row.get(2),
        protocol: Protocol::from_name(protocol),
        password: row.get(4),
        settings: DeviceSettings { model: model.map(Into::into), utc_offset_minutes: row.get(6) },
    };
    (row.get(0), device)
}

impl Registry {
    /// The device registered under `identifier`.
    pub fn lookup(&self, identifier: &str) -> Option<DeviceRecord> {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still whole.
        let devices = self.devices.read().unwrap_or_else(|e| e.into_inner());
        devices.get(identifier).cloned()
    }

    /// Number of registered devices.
    pub fn len(&self) -> usize {
        self.devices.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no device is registered (or the registry is not loaded yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tenant unknown devices are registered into, when the operator enabled
    /// auto-registration for one (`tenants.auto_register`; with several, the oldest).
    pub fn auto_register_tenant(&self) -> Option<TenantId> {
        Some(self.auto_register_tenant.load(Relaxed)).filter(|id| *id > 0).map(TenantId)
    }

    /// Replaces the view with the whole table (and re-reads which tenant, if any,
    /// takes unknown devices).
    pub async fn reload(&self, client: &Client) -> Result<usize, tokio_postgres::Error> {
        let auto = client.query_opt("SELECT id FROM tenants WHERE auto_register ORDER BY id LIMIT 1", &[]).await?;
        self.auto_register_tenant.store(auto.map_or(0, |row| row.get::<_, i64>(0)), Relaxed);
        let rows = client.query(SELECT, &[]).await?;
        let devices: HashMap<String, DeviceRecord> = rows.iter().map(record).collect();
        let n = devices.len();
        *self.devices.write().unwrap_or_else(|e| e.into_inner()) = devices;
        Ok(n)
    }

    /// Re-reads one identifier (added, changed or deleted).
    pub async fn reload_one(&self, client: &Client, identifier: &str) -> Result<(), tokio_postgres::Error> {
        let row = client.query_opt(&format!("{SELECT} WHERE identifier = $1"), &[&identifier]).await?;
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        match row.as_ref().map(record) {
            Some((identifier, device)) => devices.insert(identifier, device),
            None => devices.remove(identifier),
        };
        Ok(())
    }
}

/// Keeps `registry` current until `shutdown`: applies each identifier published on the
/// registry subject, and reloads everything every `refresh`. Reconnects to Postgres
/// when the connection drops.
pub async fn keep_current(
    registry: Arc<Registry>,
    postgres_url: String,
    nats: async_nats::Client,
    subject: String,
    refresh: Duration,
    shutdown: CancellationToken,
) {
    let mut changes = match nats.subscribe(subject.clone()).await {
        Ok(changes) => Some(changes),
        Err(error) => {
            tracing::warn!(%error, subject, "cannot subscribe to registry changes; relying on periodic reloads");
            None
        }
    };
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(refresh);
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => None,
            Some(message) = async { match changes.as_mut() { Some(c) => c.next().await, None => None } } => Some(message),
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match fleetgate_store::connect(&postgres_url).await {
                Ok(c) => Some(c),
                Err(error) => {
                    tracing::warn!(%error, "registry cannot reach Postgres; keeping the current view");
                    continue;
                }
            };
        }
        let Some(db) = client.as_ref() else { continue };
        let result = match &change {
            Some(message) => {
                let identifier = String::from_utf8_lossy(&message.payload).trim().to_owned();
                registry.reload_one(db, &identifier).await
            }
            None => registry.reload(db).await.map(|n| tracing::debug!(devices = n, "registry reloaded")),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "registry update failed; keeping the current view");
        }
    }
}
