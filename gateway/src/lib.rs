//! The gateway: owns device sockets and sessions, and decides when a device gets its
//! acknowledgement: only after JetStream has stored what it acknowledges.
//!
//! Architecture invariant: only the gateway answers devices, and a positive answer
//! follows a JetStream publish ack for the same data.
//!
//! Entry points: [`server::bind`] and [`server::run`]; a connection is
//! [`connection::serve`], a UDP socket [`udp::serve`]. The JetStream contract (subjects,
//! message format, message ids) is [`stream`].

pub mod archive;
pub mod commands;
pub mod config;
pub mod connection;
pub mod gateway;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod stream;
pub mod udp;

pub use config::Config;
pub use server::{Listeners, StartError, bind, run};
