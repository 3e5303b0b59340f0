//! The processor: consumes the gateway's JetStream stream and is the only writer of
//! history (Postgres) and live state (Redis).
//!
//! - [`message`] reads the stream's messages; what does not read is dead-lettered.
//! - [`history`] writes a batch in one transaction (binary COPY, set-based insert that
//!   skips duplicates, events re-derived over the spans that changed) and keeps the
//!   monthly partitions.
//! - [`archive`] indexes the gateway's raw frame archive into `device_frames`.
//! - [`partitions`] creates and drops the time partitions of both tables.
//! - [`geofence`] says whether a fix is inside a tenant's circle or polygon.
//! - [`fuel`] derives fuel drain events (fuel taken while the vehicle stands).
//! - [`overspeed`] derives overspeed events of devices with a minimum duration.
//! - [`live`] keeps each device's newest fix, sensors and status in Redis, newest wins.
//! - [`reports`] finds trips and stops and sums up a span of one device's positions.
//! - [`segments`] keeps each device's positions cut into runs of one state, which
//!   reports read instead of every position.
//! - [`reprocess`] decodes a device's archived frames again and replaces the history
//!   rows that changed (`fleetgate reprocess`).
//! - [`processor`] pulls batches, acknowledges only after history and live state, and
//!   runs the maintenance tasks.

pub mod archive;
pub mod fuel;
pub mod geofence;
pub mod history;
pub mod live;
pub mod message;
pub mod metrics;
pub mod overspeed;
pub mod partitions;
pub mod processor;
pub mod reports;
pub mod reprocess;
pub mod segments;

pub use processor::{StartError, run};
