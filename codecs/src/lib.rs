//! Tracker protocol codecs: bytes in, normalized positions and replies out.
//!
//! Architecture invariant: this crate is pure. No sockets, no NATS, no databases, no
//! clock, no logging of payloads. A codec finds frame boundaries, checks lengths and
//! checksums, decodes records into a [`position::Batch`], and says which bytes the
//! device should get back; the gateway decides when they are sent.
//!
//! Adding a protocol: one module beside [`teltonika`] with its [`registry::ProtocolSpec`],
//! one line in [`registry::BUILT_IN`], fixtures under `fixtures/<protocol>/` (see
//! CONTRIBUTING.md).

pub mod attrs;
pub mod conformance;
pub mod device;
pub mod egts;
pub mod galileo;
pub mod gt06;
pub mod hex;
pub mod jt808;
pub mod kit;
pub mod navtelecom;
pub mod out;
pub mod position;
pub mod protocol;
pub mod registry;
pub mod teltonika;
pub mod time;
pub mod traffic;
pub mod transcript;
pub mod wialon;

pub use attrs::Attr;
pub use position::{AttrValue, Batch, Fix, IoKey, IoValue, PositionRef};
pub use protocol::{DatagramError, DeviceMessage, DeviceSettings, Event, Fatal, Session, SessionOptions};
pub use registry::Protocol;
pub use time::UtcMillis;
