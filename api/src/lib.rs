//! The REST API for fleet apps: tenants, users and roles, devices, live state, history.
//!
//! Not built yet (issue 6). The crate exists so the workspace layout is fixed from the
//! start; see ARCHITECTURE.md for what it will own.
