//! The tenants' geofences as the processor keeps them: every tenant's list, shared by
//! the workers of one process and reloaded by the maintenance task (a new or deleted
//! geofence counts from the next reload, within seconds). The geometry is
//! `fleetgate_rules::geofence`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fleetgate_contracts::TenantId;
use fleetgate_rules::geofence::{Fence, Shape};

/// Every tenant's geofences.
#[derive(Debug, Clone, Default)]
pub struct Fences(Arc<RwLock<HashMap<TenantId, Arc<Vec<Fence>>>>>);

impl Fences {
    /// The tenant's geofences, if it has any.
    pub fn of(&self, tenant_id: TenantId) -> Option<Arc<Vec<Fence>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(&tenant_id).cloned()
    }

    /// Reads every geofence again; a shape that does not read is skipped and logged.
    pub async fn load(&self, client: &tokio_postgres::Client) -> Result<usize, tokio_postgres::Error> {
        let rows = client.query("SELECT id, tenant_id, name, shape::text FROM geofences ORDER BY id", &[]).await?;
        let mut by_tenant: HashMap<TenantId, Vec<Fence>> = HashMap::new();
        for row in &rows {
            let (id, tenant_id, name): (i64, TenantId, String) = (row.get(0), row.get(1), row.get(2));
            match serde_json::from_str::<Shape>(row.get(3)) {
                Ok(shape) => by_tenant.entry(tenant_id).or_default().push(Fence { id, name, shape }),
                Err(error) => tracing::warn!(%error, id, "geofence shape does not read; skipped"),
            }
        }
        let count = rows.len();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) =
            by_tenant.into_iter().map(|(tenant, fences)| (tenant, Arc::new(fences))).collect();
        Ok(count)
    }
}
