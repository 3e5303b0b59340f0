//! Tenant and device ids, and what every role knows of a registered device.
//!
//! The ids are `devices.id` and `tenants.id`; as newtypes a tenant id can never be passed
//! where a device id belongs. They read and write as Postgres `bigint` and as JSON
//! numbers.

use std::fmt;

use bytes::BytesMut;
use fleetgate_codecs::{DeviceSettings, Protocol};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                text.parse().map($name)
            }
        }

        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }
            fn accepts(ty: &Type) -> bool {
                <i64 as ToSql>::accepts(ty)
            }
            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                i64::from_sql(ty, raw).map($name)
            }
            fn accepts(ty: &Type) -> bool {
                <i64 as FromSql>::accepts(ty)
            }
        }
    };
}

id! {
    /// `tenants.id`: a company using fleetgate.
    TenantId
}

id! {
    /// `devices.id`: a registered device.
    DeviceId
}

/// What the roles know of a registered device: its ids, the protocol it was registered
/// with, and its password where its protocol has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// `devices.id`.
    pub device_id: DeviceId,
    /// `devices.tenant_id`.
    pub tenant_id: TenantId,
    /// The protocol the device was registered with; `None` when the stored name is not
    /// a protocol this build knows (such a device is refused, never guessed).
    pub protocol: Option<Protocol>,
    /// The password it must log in with, if any.
    pub password: Option<String>,
    /// Its model and clock offset, handed to its session at login.
    pub settings: DeviceSettings,
}
