//! The domain rules of fleetgate, pure: no I/O, no clock, no storage. The processor reads
//! a window of a device's positions, calls a rule, and replaces what the window held
//! before; the API calls the report rules on what it read. Each rule exists once.
//!
//! - [`track`]: distance between fixes, motion, possible coordinates.
//! - [`events`]: ignition, motion, overspeed, power, battery and alarm events.
//! - [`geofence`]: circles and polygons, and crossings of their borders.
//! - [`overspeed`]: overspeed with a minimum duration.
//! - [`fuel`]: fuel drains while standing.
//! - [`reports`]: report segments, trips, stops and summaries.

pub mod events;
pub mod fuel;
pub mod geofence;
pub mod overspeed;
pub mod reports;
pub mod track;
