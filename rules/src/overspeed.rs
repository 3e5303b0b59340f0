//! Overspeed with a minimum duration (`devices.overspeed_min_s` > 0): one `overspeed`
//! event per run of positions over the device's `speed_limit`, at the first position at
//! which the run has lasted the minimum, so a moment over the limit (overtaking, a
//! speed spike) is not one. Devices without a minimum get the event at the first
//! position over the limit, from [`crate::events`].
//!
//! The rule sees whole runs: its caller widens a window to the position under the limit
//! before it and the one after it, so late data gives the same events as data in order.

use fleetgate_codecs::time::UtcMillis;

/// One overspeed event: the position at which the run had lasted the minimum.
#[derive(Debug, Clone, PartialEq)]
pub struct Overspeed {
    /// When the event fires.
    pub time: UtcMillis,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
    /// km/h at that position.
    pub speed: f64,
    /// When the run over the limit began.
    pub since: UtcMillis,
}

/// What the derivation reads of a position.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Fix time.
    pub time: UtcMillis,
    /// km/h.
    pub speed: Option<f64>,
    /// Where.
    pub coordinates: Option<(f64, f64)>,
}

/// The events of `readings` (time order): per run over `limit`, the first reading at
/// which the run has lasted `min_s` seconds.
pub fn events(readings: &[Reading], limit: f64, min_s: i64) -> Vec<Overspeed> {
    let mut found = Vec::new();
    let mut run: Option<(UtcMillis, bool)> = None; // (start, fired)
    for reading in readings {
        let Some(speed) = reading.speed.filter(|s| *s > limit) else {
            run = None;
            continue;
        };
        let (since, fired) = run.get_or_insert((reading.time, false));
        if !*fired && reading.time.0 - since.0 >= min_s * 1000 {
            *fired = true;
            found.push(Overspeed { time: reading.time, coordinates: reading.coordinates, speed, since: *since });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, speed: f64) -> Reading {
        Reading { time: UtcMillis(seconds * 1000), speed: Some(speed), coordinates: None }
    }

    #[test]
    fn a_moment_over_the_limit_is_not_an_overspeed_a_minute_is() {
        let readings = [
            at(0, 80.0),
            at(10, 95.0), // overtaking: 20 s over
            at(20, 97.0),
            at(30, 85.0),
            at(40, 92.0), // a real run from 40 s
            at(70, 99.0),
            at(100, 101.0), // 60 s into it: the event
            at(110, 100.0),
            at(120, 70.0),
            at(130, 91.0), // a new run, too short before the data ends
        ];
        let found = events(&readings, 90.0, 60);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].time, found[0].since, found[0].speed), (UtcMillis(100_000), UtcMillis(40_000), 101.0));
        assert_eq!(events(&readings, 90.0, 0).len(), 3, "without a minimum every run is one");
        assert!(events(&[at(0, 95.0), Reading { speed: None, ..at(5, 0.0) }, at(70, 95.0)], 90.0, 60).is_empty());
    }
}
