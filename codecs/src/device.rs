//! The device side of a protocol: what a tracker sends and how it reads the server's
//! answers. `fleetgate simulate`, the benches and the conformance tests drive every
//! protocol through it, so none of them knows a protocol by name.
//!
//! A device logs in ([`DeviceSide::login`]), then sends reports ([`DeviceSide::data`]:
//! one or more frames for the reports given) and reads answers from what the server
//! wrote back ([`DeviceSide::read_answer`]), until every report is acknowledged.

use bytes::BytesMut;

/// What a vehicle reports at one moment, in plain units; each protocol's device side
/// encodes it the way such a device would (IO ids, parameters, tags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Fix time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Degrees, south negative.
    pub lat: f64,
    /// Degrees, west negative.
    pub lon: f64,
    /// km/h.
    pub speed: f64,
    /// Degrees, 0..360.
    pub course: f64,
    /// Metres.
    pub altitude: f64,
    /// Satellites in use.
    pub satellites: u8,
    /// Ignition on.
    pub ignition: bool,
    /// Fuel, % of the tank.
    pub fuel_percent: f64,
    /// Odometer, metres.
    pub odometer_m: f64,
    /// External supply, volts.
    pub power_v: f64,
}

/// One answer from the server, as the device reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The login was accepted.
    LoginAccepted,
    /// The login was refused.
    LoginRefused,
    /// This many reports of the frame in flight were accepted (0: the frame was
    /// refused, and the device will send it again).
    Accepted(usize),
    /// Something else (a keep-alive answer, a command); the device reads on.
    Other,
}

/// One device's side of a protocol. Stateful: it knows what it sent and so what an
/// answer acknowledges.
pub trait DeviceSide: Send {
    /// What the device sends to log in; empty when every frame carries its identifier
    /// (then no login answer is read either).
    fn login(&mut self, identifier: &str) -> Vec<u8>;

    /// The frames that carry `reports` (in order), as one byte string.
    fn data(&mut self, reports: &[Report]) -> Vec<u8>;

    /// Damages `frames` (what [`DeviceSide::data`] just returned) so that a strict server
    /// must refuse them: a checksum that no longer matches. By default the last byte is
    /// changed, where the binary protocols without delimiters keep their checksum.
    fn corrupt(&self, frames: &mut Vec<u8>) {
        if let Some(last) = frames.last_mut() {
            *last ^= 0x01;
        }
    }

    /// True when the protocol answers a refused frame (so a device waits for that
    /// answer); false when a refused frame just goes unanswered.
    fn answers_refusals(&self) -> bool {
        true
    }

    /// The device's clock resolution: report times are multiples of it (a protocol that
    /// sends whole seconds, 1000).
    fn time_resolution_ms(&self) -> i64 {
        1
    }

    /// Takes one answer from the front of `buffer`; `Ok(None)` until a whole one is
    /// there, `Err` for bytes no server of the protocol would send.
    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String>;

    /// True when `reply` (one whole answer) tells a device its data or message was
    /// taken: what a refused frame must never get.
    fn acknowledges(&self, reply: &[u8]) -> bool;
}
