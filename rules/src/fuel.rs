//! `fuel_drain` events: fuel taken while the vehicle stands (theft, a leak). A standing
//! stretch is a run of consecutive fuel readings without motion, as in the summary; the
//! event fires once per stretch, at the first reading at least the device's `drain_min`
//! report rule below the stretch's first reading, with `details: {"from", "to"}`.
//!
//! The rule continues a [`Stretch`] reading by reading, so its caller may feed it a
//! whole window of stretches or only new readings after a stretch it read back.

use fleetgate_codecs::time::UtcMillis;

use crate::reports::Sample;
use crate::track::is_moving;

/// A fuel reading: when, the level, whether the vehicle moved, where.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Fix time.
    pub time: UtcMillis,
    /// Litres, or % of the tank.
    pub fuel: f64,
    /// The vehicle moved.
    pub moving: bool,
    /// Where.
    pub fix: Option<(f64, f64)>,
}

impl Reading {
    /// The reading in `sample`, if it has one.
    pub fn of(sample: &Sample) -> Option<Reading> {
        let moving = sample.moving.or_else(|| is_moving(None, sample.speed)).unwrap_or(false);
        sample.fuel.map(|fuel| Reading { time: sample.time, fuel, moving, fix: sample.fix })
    }
}

/// Where a standing stretch is when a new reading comes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stretch {
    /// The stretch's first reading (none: the vehicle is moving, or nothing read yet).
    pub first: Option<f64>,
    /// Its event fired already.
    pub fired: bool,
}

/// One drain: the reading at which the level had fallen `drain_min` since the stretch's
/// first reading `from`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drain {
    /// When.
    pub time: UtcMillis,
    /// The stretch's first reading.
    pub from: f64,
    /// This reading.
    pub to: f64,
    /// Where.
    pub fix: Option<(f64, f64)>,
}

/// The drains of `readings` (time order) continuing `stretch`; `stretch` is left where
/// the last reading leaves it.
pub fn drains(stretch: &mut Stretch, readings: &[Reading], drain_min: f64) -> Vec<Drain> {
    let mut found = Vec::new();
    for reading in readings {
        if reading.moving {
            *stretch = Stretch::default();
            continue;
        }
        match stretch.first {
            None => stretch.first = Some(reading.fuel),
            Some(from) if !stretch.fired && from - reading.fuel >= drain_min => {
                stretch.fired = true;
                found.push(Drain { time: reading.time, from, to: reading.fuel, fix: reading.fix });
            }
            Some(_) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t: i64, fuel: f64, moving: bool) -> Reading {
        Reading { time: UtcMillis(t * 1000), fuel, moving, fix: None }
    }

    #[test]
    fn a_drain_fires_once_per_stop_when_the_level_has_fallen_the_threshold() {
        let readings = [
            reading(0, 80.0, true),
            reading(10, 79.0, false), // parked: the stretch starts at 79
            reading(20, 78.0, false), // sensor noise
            reading(30, 73.5, false), // 5.5 l gone: the drain
            reading(40, 60.0, false), // still going: the same drain
            reading(50, 59.0, true),  // driving off
            reading(60, 58.0, false), // parked again
            reading(70, 54.0, false), // 4 l: under the threshold
        ];
        let mut stretch = Stretch::default();
        let found = drains(&mut stretch, &readings, 5.0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].time, found[0].from, found[0].to), (UtcMillis(30_000), 79.0, 73.5));
        // The next batch continues the second stop: 52 l is 6 below its first reading.
        let more = drains(&mut stretch, &[reading(80, 52.0, false), reading(90, 40.0, false)], 5.0);
        assert_eq!(more.iter().map(|d| d.time).collect::<Vec<_>>(), [UtcMillis(80_000)]);
        // A stretch whose drain fired already does not fire again.
        let mut fired = Stretch { first: Some(90.0), fired: true };
        assert!(drains(&mut fired, &[reading(100, 10.0, false)], 5.0).is_empty());
    }
}
