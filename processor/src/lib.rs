//! The processor: consumes the gateway's JetStream stream and is the only writer of
//! history (Postgres) and live state (Redis).
//!
//! - [`history`] writes a batch in one transaction (binary COPY, set-based insert that
//!   skips duplicates, events re-derived over the spans that changed).
//! - [`archive`] indexes the gateway's raw frame archive into `device_frames`.
//! - [`geofence`] keeps every tenant's geofences.
//! - [`fuel`] derives fuel drain events (fuel taken while the vehicle stands).
//! - [`overspeed`] derives overspeed events of devices with a minimum duration.
//! - [`live`] keeps each device's newest fix, sensors and status in Redis, newest wins.
//! - [`segments`] keeps each device's positions cut into runs of one state, which
//!   reports read instead of every position.
//!
//! The messages it reads are `fleetgate_contracts::messages`; the rules it applies are
//! `fleetgate_rules`; the row formats and partitions it shares with the API are
//! `fleetgate_store`.
//! - [`reprocess`] decodes a device's archived frames again and replaces the history
//!   rows that changed (`fleetgate reprocess`).
//! - [`processor`] pulls batches, acknowledges only after history and live state, and
//!   runs the maintenance tasks.

pub mod archive;
pub mod fuel;
pub mod geofence;
pub mod history;
pub mod live;
pub mod metrics;
pub mod overspeed;
pub mod processor;
pub mod reprocess;
pub mod segments;

pub use processor::{StartError, run};
