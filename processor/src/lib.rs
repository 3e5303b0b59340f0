//! The processor: consumes positions from JetStream and is the only writer of live state
//! (Redis) and history (Postgres).
//!
//! Not built yet (issue 5). The crate exists so the workspace layout is fixed from the
//! start; see ARCHITECTURE.md for what it will own.
