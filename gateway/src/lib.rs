//! The gateway: owns device sockets and sessions, and decides when a device gets its
//! acknowledgement: only after JetStream has stored what it acknowledges.
//!
//! Architecture invariant: only the gateway answers devices, and a positive answer
//! follows a JetStream publish ack for the same data.
//!
//! Entry points: [`server::bind`] and [`server::run`]; a connection is
//! [`connection::serve`], a UDP socket [`udp::serve`]. What it publishes and how is
//! `fleetgate_contracts` (subjects, messages, message ids); which protocols it serves
//! comes from `fleetgate_codecs::registry`, and nothing here knows one by name.

pub mod archive;
pub mod commands;
pub mod connection;
pub mod gateway;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod udp;

pub use server::{Listeners, StartError, bind, run};
