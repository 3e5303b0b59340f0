//! The Postgres side every role shares: the schema as versioned migrations, how to
//! connect, and the formats and reads more than one role relies on.
//!
//! - [`migrate`]: migrations are SQL files under `store/migrations/`, applied in order
//!   (what `fleetgate migrate` runs) inside one transaction under an advisory lock, so
//!   several processes starting at once apply each migration exactly once. They apply
//!   to the first schema of the connection's `search_path`, which is how tests isolate
//!   themselves (see the `fleetgate-testkit` crate).
//! - [`rows`]: the history row format (times, JSON columns, a stored position as
//!   contract 1 again).
//! - [`partitions`]: the time partitions of `positions` and `device_frames`.
//! - [`segments`]: report segments and what reports read, and the devices' effective
//!   report rules.
//!
//! Architecture invariant: this crate writes nothing but the schema. Who writes which
//! table is the roles' business (history and live state: the processor only).

pub mod partitions;
pub mod rows;
pub mod segments;

use tokio_postgres::{Client, NoTls};

/// One versioned migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in ascending order; never reused.
    pub version: i32,
    /// What it does, for the log.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "tenants_devices", sql: include_str!("../migrations/0001_tenants_devices.sql") },
    Migration { version: 2, name: "history", sql: include_str!("../migrations/0002_history.sql") },
    Migration { version: 3, name: "access", sql: include_str!("../migrations/0003_access.sql") },
    Migration { version: 4, name: "distance_motion", sql: include_str!("../migrations/0004_distance_motion.sql") },
    Migration {
        version: 5,
        name: "drop_position_json",
        sql: include_str!("../migrations/0005_drop_position_json.sql"),
    },
    Migration { version: 6, name: "device_frames", sql: include_str!("../migrations/0006_device_frames.sql") },
    Migration { version: 7, name: "report_rules", sql: include_str!("../migrations/0007_report_rules.sql") },
    Migration { version: 8, name: "report_jobs", sql: include_str!("../migrations/0008_report_jobs.sql") },
    Migration { version: 9, name: "geofences", sql: include_str!("../migrations/0009_geofences.sql") },
    Migration { version: 10, name: "segments", sql: include_str!("../migrations/0010_segments.sql") },
    Migration { version: 11, name: "overspeed_min", sql: include_str!("../migrations/0011_overspeed_min.sql") },
    Migration { version: 12, name: "device_settings", sql: include_str!("../migrations/0012_device_settings.sql") },
];

/// Why the schema could not be reached or brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Connecting failed.
    #[error("cannot connect to Postgres at {url}: {source}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
}

fn query_error(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SchemaError {
    let what = what.into();
    move |source| SchemaError::Query { what, source }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Connects and drives the connection on a task of its own.
pub async fn connect(url: &str) -> Result<Client, SchemaError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| SchemaError::Connect { url: redact(url), source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Applies the migrations not applied yet; returns the versions it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    let transaction = client.transaction().await.map_err(query_error("begin"))?;
    // One migrator at a time per database, whatever the number of processes.
    transaction
        .execute("SELECT pg_advisory_xact_lock(hashtext('fleetgate_migrate'))", &[])
        .await
        .map_err(query_error("take the migration lock"))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(query_error("create schema_migrations"))?;
    let applied: Vec<i32> = transaction
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(query_error("read schema_migrations"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(query_error(format!("migration {} ({})", migration.version, migration.name)))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await
            .map_err(query_error("record the migration"))?;
        newly.push(migration.version);
    }
    transaction.commit().await.map_err(query_error("commit the migrations"))?;
    Ok(newly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=h user=u"), "host=h user=u");
    }

    #[tokio::test]
    async fn migrations_apply_once_even_when_run_concurrently() -> Result<(), SchemaError> {
        // The test kit links its own copy of this crate, so its error is another type.
        let (schema, url) = fleetgate_testkit::isolated_schema(&fleetgate_testkit::base_url(), "migrate")
            .await
            .expect("postgres reachable");
        let (mut a, mut b) = (connect(&url).await?, connect(&url).await?);
        let (first, second) = tokio::join!(migrate(&mut a), migrate(&mut b));
        let mut applied = [first?, second?].concat();
        applied.sort();
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(applied, all);
        assert!(migrate(&mut a).await?.is_empty());
        let devices: i64 = a.query_one("SELECT count(*) FROM devices", &[]).await.map_err(query_error("count"))?.get(0);
        assert_eq!(devices, 0);
        a.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.map_err(query_error("drop test schema"))?;
        Ok(())
    }
}
