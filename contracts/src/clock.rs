//! The clock: codecs and rules never read it; roles read it here, so "now" means one
//! thing everywhere (the gateway's receive time, the processor's future tolerance).

use fleetgate_codecs::UtcMillis;

/// The current time.
pub fn now() -> UtcMillis {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    UtcMillis(ms as i64)
}
