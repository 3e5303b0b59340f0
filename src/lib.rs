//! The `fleetgate` binary's subcommands as a library, so whole-system tests can drive
//! them in process (a test registers a protocol of its own and runs `decode` and
//! `simulate` with it).
//!
//! - [`decode`]: `fleetgate decode`, contract 2.
//! - [`simulate`]: `fleetgate simulate`, devices of any protocol driving routes.
//! - [`roles`]: running the server roles (`migrate`, `gateway`, `processor`, `api`,
//!   `serve`, `admin`).
//! - [`reprocess`]: `fleetgate reprocess`.

pub mod decode;
pub mod reprocess;
pub mod roles;
pub mod simulate;
