//! The gateway: owns device sockets and sessions, and decides when a device gets its
//! acknowledgement (only after JetStream has stored the data).
//!
//! Not built yet (issue 4). The crate exists so the workspace layout is fixed from the
//! start; see ARCHITECTURE.md for what it will own.
