//! EGTS (GOST R 54619 / 56360), the Russian state telematics protocol: its transport
//! layer ([`transport`]) and its service records ([`records`]).
//!
//! Not yet a protocol of the registry: the sessions, the TELEDATA subrecords, the
//! answers and the dispatcher's encoder come next (issue 19). What is here reads and
//! builds packets and records exactly, checked against every captured packet.

pub mod records;
pub mod transport;
