//! The contracts between fleetgate's roles: everything two roles must agree on, in one
//! place, so the roles themselves never depend on each other.
//!
//! - [`config`]: the configuration file every role reads.
//! - [`stream`]: the JetStream streams and the subjects on them.
//! - [`messages`]: the messages that travel over NATS (positions, device messages,
//!   status changes, commands, derived events), each with its one serializer and parser.
//! - [`archive`]: the raw frame archive's record.
//! - [`keys`]: the Redis key layout of live state.
//! - [`ids`]: tenant and device ids, and what a role knows of a registered device.
//! - [`identifiers`]: which device identifiers fleetgate accepts.
//! - [`clock`]: the one place a role reads the time.
//! - [`metrics`]: histograms and the Prometheus text format, and the `/metrics` endpoint.
//!
//! Architecture invariant: no role logic lives here. A contract changes only with both
//! of its sides, and the wire forms of contracts 1-3 (DESIGN.md) never change.

pub mod archive;
pub mod clock;
pub mod config;
pub mod identifiers;
pub mod ids;
pub mod keys;
pub mod messages;
pub mod metrics;
pub mod stream;

pub use config::Config;
pub use ids::{DeviceId, DeviceRecord, TenantId};
