//! EGTS (GOST R 54619 / 56360), the Russian state telematics protocol: its transport
//! layer ([`transport`]), its service records ([`records`]) and the subrecords of the
//! AUTH and TELEDATA services ([`subrecords`]).
//!
//! Not yet a protocol of the registry: [`session`] decodes a terminal's connection, the
//! registry entry, the device side and the dispatcher's encoder come next (issue 19). What is here reads and
//! builds packets and records exactly, checked against every captured packet.

pub mod records;
pub mod session;
pub mod subrecords;
pub mod transport;
