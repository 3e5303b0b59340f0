//! The Redis key layout of live state (`K` is `redis.key_prefix`; the braces keep one
//! tenant's keys in one Redis Cluster slot, which the processor's update script needs):
//! - `K:{t<tenant>}:live:<device>`: a hash with `fix_time` (ms), `position` (contract 1
//!   with `received`), `sensors_time`, `sensors` (the newest record's `attrs`),
//!   `received` (ms), `online` (`1`/`0`), `status_time`;
//! - `K:{t<tenant>}:devices`: the set of the tenant's devices with live state;
//! - `K:live_kept`: the marker that tells a Redis that lost its data from one that kept it.
//!
//! The processor writes these; the API only reads them (and deletes a deleted device's).

use crate::ids::{DeviceId, TenantId};

/// The hash of one device's live state.
pub fn live_key(prefix: &str, tenant: TenantId, device: DeviceId) -> String {
    format!("{prefix}:{{t{tenant}}}:live:{device}")
}

/// The set of a tenant's devices with live state.
pub fn devices_key(prefix: &str, tenant: TenantId) -> String {
    format!("{prefix}:{{t{tenant}}}:devices")
}

/// The marker that live state is being kept in this Redis.
pub fn kept_key(prefix: &str) -> String {
    format!("{prefix}:live_kept")
}

/// The fields of a live hash.
pub mod field {
    /// Time of the live position (ms).
    pub const FIX_TIME: &str = "fix_time";
    /// The live position, contract 1 with `received`.
    pub const POSITION: &str = "position";
    /// Time of the newest sensors (ms).
    pub const SENSORS_TIME: &str = "sensors_time";
    /// The newest record's `attrs`.
    pub const SENSORS: &str = "sensors";
    /// Newest receive time (ms).
    pub const RECEIVED: &str = "received";
    /// `1` online, `0` offline.
    pub const ONLINE: &str = "online";
    /// Time of the status (ms).
    pub const STATUS_TIME: &str = "status_time";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_keys_share_one_cluster_slot_tag() {
        assert_eq!(live_key("fg", TenantId(3), DeviceId(7)), "fg:{t3}:live:7");
        assert_eq!(devices_key("fg", TenantId(3)), "fg:{t3}:devices");
    }
}
