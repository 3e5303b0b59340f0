//! The protocol registry: every tracker protocol fleetgate speaks, as a plug-in.
//!
//! A protocol is its module plus one [`ProtocolSpec`]: its name, default port and
//! transports, how to start a session, which limits it honours, its identifier and
//! password rules, and the device-side encoder the simulator and tests drive it with.
//! Everything else (listener configuration and its checks, `fleetgate decode`,
//! `fleetgate simulate`, the fixture and conformance tests, the fuzz target, the benches,
//! the protocol table in the docs) takes the protocol from here, so adding one is the
//! module and one line in [`BUILT_IN`].
//!
//! A [`Protocol`] is a cheap handle to a spec. Protocols defined outside this crate (a
//! test's own line protocol, an integrator's private codec) join with
//! [`Protocol::register`] before the roles start.

use std::fmt;
use std::sync::RwLock;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize, Serializer};

use crate::device::DeviceSide;
use crate::protocol::{Session, SessionOptions};
use crate::{galileo, gt06, jt808, navtelecom, teltonika, wialon};

/// The transports a protocol's devices use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// A TCP stream per device.
    pub tcp: bool,
    /// UDP datagrams, each carrying its device's identifier.
    pub udp: bool,
}

/// What a login with a password looks like in a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passwords {
    /// The protocol has no passwords: a device's registered password is ignored.
    None,
    /// The login carries a password; a wrong one is answered with these bytes.
    Checked {
        /// The protocol's answer to a wrong password.
        wrong_password: &'static [u8],
    },
}

/// One protocol plug-in.
pub struct ProtocolSpec {
    /// The name of contract 4 (`teltonika`, `wialon`, ...): in contract 1, on the
    /// command line, in the configuration and in a device's registration.
    pub name: &'static str,
    /// What it is, for people: the docs' protocol table and `--help`.
    pub title: &'static str,
    /// The port Traccar uses for it, so configured devices can switch.
    pub default_port: u16,
    /// Where its devices connect.
    pub transports: Transports,
    /// A text protocol: replies are also shown as text.
    pub text: bool,
    /// The [`SessionOptions`] limits it honours (field names), for the docs.
    pub limits: &'static [&'static str],
    /// A fresh session for one connection (or one UDP peer).
    pub session: fn(SessionOptions) -> Box<dyn Session>,
    /// True when a device of this protocol can have this identifier (on top of the
    /// general rule every identifier keeps).
    pub identifier: fn(&str) -> bool,
    /// The identifier rule in words, for error messages and docs.
    pub identifier_rule: &'static str,
    /// Its passwords.
    pub passwords: Passwords,
    /// The device side: what a device of this protocol sends and how it reads the
    /// answers. The simulator, the benches and the conformance tests use it.
    pub device: fn() -> Box<dyn DeviceSide>,
}

/// The identifier rule of protocols whose devices identify by their IMEI alone.
pub fn is_imei(identifier: &str) -> bool {
    identifier.len() == 15 && identifier.bytes().all(|b| b.is_ascii_digit())
}

/// [`is_imei`] in words.
pub const IMEI_RULE: &str = "the IMEI: 15 digits";

/// The protocols of this build, in the order of the docs' table.
pub static BUILT_IN: &[&ProtocolSpec] =
    &[&teltonika::SPEC, &wialon::SPEC, &gt06::SPEC, &jt808::SPEC, &galileo::SPEC, &navtelecom::SPEC];

/// Protocols registered at run time, after the built-in ones.
static REGISTERED: RwLock<Vec<&'static ProtocolSpec>> = RwLock::new(Vec::new());

/// A protocol: a handle to its [`ProtocolSpec`], compared by name.
#[derive(Clone, Copy)]
pub struct Protocol(&'static ProtocolSpec);

impl Protocol {
    /// Teltonika FMx.
    pub const TELTONIKA: Protocol = Protocol(&teltonika::SPEC);
    /// Wialon IPS.
    pub const WIALON: Protocol = Protocol(&wialon::SPEC);
    /// GT06 (Concox).
    pub const GT06: Protocol = Protocol(&gt06::SPEC);
    /// JT/T 808.
    pub const JT808: Protocol = Protocol(&jt808::SPEC);
    /// Galileosky.
    pub const GALILEO: Protocol = Protocol(&galileo::SPEC);
    /// Navtelecom.
    pub const NAVTELECOM: Protocol = Protocol(&navtelecom::SPEC);

    /// Every protocol: the built-in ones, then those registered.
    pub fn all() -> Vec<Protocol> {
        let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
        BUILT_IN.iter().chain(registered.iter()).map(|spec| Protocol(spec)).collect()
    }

    /// The built-in protocols only (what the fixture tests and docs cover).
    pub fn built_in() -> impl Iterator<Item = Protocol> {
        BUILT_IN.iter().map(|spec| Protocol(spec))
    }

    /// Looks a protocol up by its name.
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(spec) = BUILT_IN.iter().find(|spec| spec.name == name) {
            return Some(Protocol(spec));
        }
        let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
        registered.iter().find(|spec| spec.name == name).map(|spec| Protocol(spec))
    }

    /// Adds a protocol defined outside this crate; an error when the name is taken or
    /// not a plain lowercase name.
    pub fn register(spec: &'static ProtocolSpec) -> Result<Protocol, String> {
        let plain = !spec.name.is_empty()
            && spec.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain {
            return Err(format!("protocol name {:?} must be lowercase letters, digits and '_'", spec.name));
        }
        let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
        if BUILT_IN.iter().chain(registered.iter()).any(|known| known.name == spec.name) {
            return Err(format!("protocol {:?} is registered already", spec.name));
        }
        registered.push(spec);
        Ok(Protocol(spec))
    }

    /// Every protocol's name, for messages that list them.
    pub fn names() -> String {
        Self::all().iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
    }

    /// The whole spec.
    pub fn spec(self) -> &'static ProtocolSpec {
        self.0
    }

    /// The codec name used in contract 1 and on the command line.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// True for text protocols, whose replies are also shown as text.
    pub fn is_text(self) -> bool {
        self.0.text
    }

    /// The port Traccar uses for it.
    pub fn default_port(self) -> u16 {
        self.0.default_port
    }

    /// Its transports.
    pub fn transports(self) -> Transports {
        self.0.transports
    }

    /// A fresh session for one connection (or one UDP peer).
    pub fn session(self, options: SessionOptions) -> Box<dyn Session> {
        (self.0.session)(options)
    }

    /// A fresh device side, for simulated devices and tests.
    pub fn device(self) -> Box<dyn DeviceSide> {
        (self.0.device)()
    }

    /// True when a device of this protocol can have `identifier`.
    pub fn accepts_identifier(self, identifier: &str) -> bool {
        (self.0.identifier)(identifier)
    }

    /// The answer to a login whose password is wrong, for protocols with passwords.
    pub fn wrong_password_reply(self) -> Option<&'static [u8]> {
        match self.0.passwords {
            Passwords::None => None,
            Passwords::Checked { wrong_password } => Some(wrong_password),
        }
    }
}

impl PartialEq for Protocol {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Protocol {}

impl std::hash::Hash for Protocol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl PartialOrd for Protocol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Protocol {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.name.cmp(other.0.name)
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Protocol::from_name(name).ok_or_else(|| format!("unknown protocol {name:?} (known: {})", Protocol::names()))
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(D::Error::custom)
    }
}

/// Any identifier the general rule allows (the protocol adds no rule of its own).
pub fn any_identifier(_: &str) -> bool {
    true
}

/// The protocol table of the docs (README's "Protocols"): one row per built-in protocol.
pub fn docs_table() -> String {
    let mut table = String::from("| protocol | devices | default port | transports |\n|---|---|---|---|\n");
    for protocol in Protocol::built_in() {
        let spec = protocol.spec();
        let transports = match (spec.transports.tcp, spec.transports.udp) {
            (true, true) => "TCP, UDP",
            (true, false) => "TCP",
            (false, true) => "UDP",
            (false, false) => "-",
        };
        table.push_str(&format!("| `{}` | {} | {} | {} |\n", spec.name, spec.title, spec.default_port, transports));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names: Vec<&str> = Protocol::built_in().map(Protocol::name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for name in names {
            assert_eq!(Protocol::from_name(name).map(Protocol::name), Some(name));
        }
        assert!(Protocol::from_name("nope").is_none());
        assert!("nope".parse::<Protocol>().is_err_and(|e| e.contains("known: teltonika, wialon")));
    }

    #[test]
    fn a_taken_or_odd_name_cannot_be_registered() {
        static TAKEN: ProtocolSpec = ProtocolSpec { name: "teltonika", ..teltonika::SPEC };
        static ODD: ProtocolSpec = ProtocolSpec { name: "Not Plain", ..teltonika::SPEC };
        assert!(Protocol::register(&TAKEN).is_err());
        assert!(Protocol::register(&ODD).is_err());
    }

    /// README's protocol table lists exactly the built-in protocols.
    #[test]
    fn readme_table_matches_the_registry() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&docs_table()),
            "README.md's protocol table is out of date; it should be:\n{}",
            docs_table()
        );
    }
}
