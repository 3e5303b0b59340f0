//! Trips, stops and the summary of one device over a span, computed from its positions in
//! time order. Pure: the API feeds it rows read from history; the rules come from the
//! device, its tenant or the defaults below (docs/REPORTS.md).
//!
//! A trip is a run of activity (ignition on, or motion where the device reports no
//! ignition) that ends when the device stays inactive for `min_stop_s` or its data has a
//! gap longer than `max_gap_s`; runs shorter than `min_trip_distance_m` or
//! `min_trip_s` are not trips. A stop is the time between two trips (or before the first
//! and after the last, inside the span) of at least `min_stop_s`.

use fleetgate_codecs::time::UtcMillis;
use serde::{Deserialize, Serialize};

/// What counts as driving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// Ignition when the device reports it, else motion.
    #[default]
    Auto,
    /// The ignition is on.
    Ignition,
    /// The vehicle moves (the device's motion flag, else speed over 3 km/h).
    Motion,
}

/// Report rules; every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// What counts as driving.
    pub detection: Detection,
    /// A trip is at least this long (metres).
    pub min_trip_distance_m: f64,
    /// A trip lasts at least this long (seconds).
    pub min_trip_s: i64,
    /// Inactivity of at least this long ends a trip and is a stop (seconds).
    pub min_stop_s: i64,
    /// No data for longer than this ends a trip (seconds).
    pub max_gap_s: i64,
    /// A fuel level rise of at least this much while stopped is a refuel (litres, or %
    /// of the tank for devices reporting `fuel_level` only).
    pub refuel_min: f64,
    /// A fall of at least this much while stopped is a drain (litres or %).
    pub drain_min: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            detection: Detection::Auto,
            min_trip_distance_m: 200.0,
            min_trip_s: 60,
            min_stop_s: 180,
            max_gap_s: 600,
            refuel_min: 5.0,
            drain_min: 5.0,
        }
    }
}

/// What a report needs of one stored position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Fix time.
    pub time: UtcMillis,
    /// Coordinates of a valid fix.
    pub fix: Option<(f64, f64)>,
    /// km/h.
    pub speed: Option<f64>,
    /// `attrs.ignition`.
    pub ignition: Option<bool>,
    /// Derived motion (`positions.moving`).
    pub moving: Option<bool>,
    /// Metres from the previous valid fix (`positions.distance_m`).
    pub distance_m: Option<f64>,
    /// `attrs.odometer` (metres).
    pub odometer: Option<f64>,
    /// `attrs.fuel_litres`, else `attrs.fuel_level` (%).
    pub fuel: Option<f64>,
}

/// One trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// First active sample.
    pub start_time: UtcMillis,
    /// Last active sample.
    pub end_time: UtcMillis,
    /// Where it started (first fix of the trip).
    pub start: Option<(f64, f64)>,
    /// Where it ended (last fix).
    pub end: Option<(f64, f64)>,
    /// Metres driven (sum of the track's steps).
    pub distance_m: f64,
    /// Seconds.
    pub duration_s: i64,
    /// km/h.
    pub max_speed: f64,
    /// km/h: distance over duration.
    pub avg_speed: f64,
}

/// One stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    /// When the vehicle stopped (the end of the trip before, or the span's first sample).
    pub start_time: UtcMillis,
    /// When it left (the start of the trip after, or the span's last sample).
    pub end_time: UtcMillis,
    /// Where it stood.
    pub position: Option<(f64, f64)>,
    /// Seconds.
    pub duration_s: i64,
    /// Seconds of it with the ignition on.
    pub engine_on_s: i64,
}

/// The totals of a span.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The device's odometer difference when it is trustworthy (present at both ends,
    /// never decreasing, within 20% of the track), else the track.
    pub distance_m: f64,
    /// Seconds in trips.
    pub driving_s: i64,
    /// Seconds with the ignition on and the vehicle not moving.
    pub idle_s: i64,
    /// Seconds with the ignition on.
    pub engine_s: i64,
    /// km/h.
    pub max_speed: f64,
    /// km/h over the driving time.
    pub avg_speed: f64,
    /// Fuel burned: the falls of the level outside drains (litres or %).
    pub fuel_used_l: f64,
    /// Rises of at least `refuel_min` while stopped.
    pub refuels: u32,
    /// Falls of at least `drain_min` while stopped.
    pub drains: u32,
}

fn seconds(from: UtcMillis, to: UtcMillis) -> i64 {
    (to.0 - from.0) / 1000
}

fn uses_ignition(samples: &[Sample], rules: &Rules) -> bool {
    match rules.detection {
        Detection::Ignition => true,
        Detection::Motion => false,
        Detection::Auto => samples.iter().any(|s| s.ignition.is_some()),
    }
}

fn moving(sample: &Sample) -> bool {
    sample.moving.unwrap_or_else(|| sample.speed.is_some_and(|v| v > 3.0))
}

/// The trips and stops of `samples` (time order, one device).
pub fn trips_and_stops(samples: &[Sample], rules: &Rules) -> (Vec<Trip>, Vec<Stop>) {
    let ignition = uses_ignition(samples, rules);
    let active = |s: &Sample| if ignition { s.ignition == Some(true) } else { moving(s) };
    // Runs of activity: (first index, last active index).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for (i, sample) in samples.iter().enumerate() {
        if let Some((first, last)) = open {
            let gap = seconds(samples[i - 1].time, sample.time) > rules.max_gap_s;
            // Inactive since the run's last active sample for `min_stop_s`: seen at an
            // inactive sample, or at an active one after inactive ones (sparse samples).
            let stopped =
                seconds(samples[last].time, sample.time) >= rules.min_stop_s && (!active(sample) || last + 1 < i);
            if gap || stopped {
                runs.push((first, last));
                open = None;
            }
        }
        if active(sample) {
            open = Some(open.map_or((i, i), |(first, _)| (first, i)));
        }
    }
    runs.extend(open);
    let mut trips = Vec::new();
    for (first, last) in runs {
        let run = &samples[first..=last];
        // The step into the trip's first sample is the vehicle leaving; the span's very
        // first step comes from before the span.
        let distance_m: f64 = run.iter().skip(usize::from(first == 0)).filter_map(|s| s.distance_m).sum();
        let duration_s = seconds(run[0].time, run[run.len() - 1].time);
        if distance_m < rules.min_trip_distance_m || duration_s < rules.min_trip_s {
            continue;
        }
        let max_speed = run.iter().filter_map(|s| s.speed).fold(0.0, f64::max);
        trips.push(Trip {
            start_time: run[0].time,
            end_time: run[run.len() - 1].time,
            start: run.iter().find_map(|s| s.fix),
            end: run.iter().rev().find_map(|s| s.fix),
            distance_m,
            duration_s,
            max_speed,
            avg_speed: if duration_s > 0 { distance_m / duration_s as f64 * 3.6 } else { 0.0 },
        });
    }
    let stops = stops_between(samples, &trips, rules);
    (trips, stops)
}

/// The stops between trips (and before the first, after the last) of at least
/// `min_stop_s`.
fn stops_between(samples: &[Sample], trips: &[Trip], rules: &Rules) -> Vec<Stop> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Vec::new() };
    let mut bounds: Vec<(UtcMillis, UtcMillis)> = Vec::new();
    let mut from = first.time;
    for trip in trips {
        bounds.push((from, trip.start_time));
        from = trip.end_time;
    }
    bounds.push((from, last.time));
    let mut stops = Vec::new();
    for (start, end) in bounds {
        if seconds(start, end) < rules.min_stop_s {
            continue;
        }
        let inside = samples.iter().filter(|s| s.time >= start && s.time <= end);
        let position = samples
            .iter()
            .filter(|s| s.time <= start)
            .rev()
            .find_map(|s| s.fix)
            .or_else(|| samples.iter().filter(|s| s.time >= start).find_map(|s| s.fix));
        stops.push(Stop {
            start_time: start,
            end_time: end,
            position,
            duration_s: seconds(start, end),
            engine_on_s: ignition_seconds(inside.collect::<Vec<_>>().as_slice(), rules, |_| true),
        });
    }
    stops
}

/// Seconds between consecutive samples whose earlier one has the ignition on and meets
/// `also`; gaps longer than `max_gap_s` count for nothing.
fn ignition_seconds(samples: &[&Sample], rules: &Rules, also: impl Fn(&Sample) -> bool) -> i64 {
    samples
        .windows(2)
        .filter(|w| w[0].ignition == Some(true) && also(w[0]))
        .map(|w| seconds(w[0].time, w[1].time))
        .filter(|s| *s <= rules.max_gap_s)
        .sum()
}

/// The totals of `samples` given their trips.
pub fn summary(samples: &[Sample], trips: &[Trip], rules: &Rules) -> Summary {
    let all: Vec<&Sample> = samples.iter().collect();
    let track: f64 = samples.iter().skip(1).filter_map(|s| s.distance_m).sum();
    let odometers: Vec<f64> = samples.iter().filter_map(|s| s.odometer).collect();
    let odometer = match (odometers.first(), odometers.last()) {
        (Some(first), Some(last)) if odometers.windows(2).all(|w| w[1] >= w[0]) => Some(last - first),
        _ => None,
    };
    let distance_m = match odometer {
        Some(counted) if track > 0.0 && (counted - track).abs() <= track * 0.2 => counted,
        _ => track,
    };
    let driving_s: i64 = trips.iter().map(|t| t.duration_s).sum();
    let trip_distance: f64 = trips.iter().map(|t| t.distance_m).sum();
    let (fuel_used_l, refuels, drains) = fuel(samples, rules);
    Summary {
        distance_m,
        driving_s,
        idle_s: ignition_seconds(&all, rules, |s| !moving(s)),
        engine_s: ignition_seconds(&all, rules, |_| true),
        max_speed: samples.iter().filter_map(|s| s.speed).fold(0.0, f64::max),
        avg_speed: if driving_s > 0 { trip_distance / driving_s as f64 * 3.6 } else { 0.0 },
        fuel_used_l,
        refuels,
        drains,
    }
}

/// Fuel burned, refuels and drains from the level. Sensors are noisy: a change counts as
/// a refuel or drain only when the vehicle stands and the level moved by the threshold
/// between the stop's first and last readings; while driving, falls are consumption.
fn fuel(samples: &[Sample], rules: &Rules) -> (f64, u32, u32) {
    let readings: Vec<(&Sample, f64)> = samples.iter().filter_map(|s| s.fuel.map(|f| (s, f))).collect();
    let (mut used, mut refuels, mut drains) = (0.0, 0, 0);
    let mut i = 0;
    while i + 1 < readings.len() {
        // A standing run: consecutive readings without motion.
        if !moving(readings[i].0) {
            let mut j = i;
            while j + 1 < readings.len() && !moving(readings[j + 1].0) {
                j += 1;
            }
            if j > i {
                let change = readings[j].1 - readings[i].1;
                if change >= rules.refuel_min {
                    refuels += 1;
                } else if -change >= rules.drain_min {
                    drains += 1;
                } else if change < 0.0 {
                    used -= change;
                }
                i = j;
                continue;
            }
        }
        let change = readings[i + 1].1 - readings[i].1;
        if change < 0.0 {
            used -= change;
        }
        i += 1;
    }
    (used, refuels, drains)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample at `t` seconds with nothing in it.
    fn at(t: i64) -> Sample {
        Sample {
            time: UtcMillis(t * 1000),
            fix: None,
            speed: None,
            ignition: None,
            moving: None,
            distance_m: None,
            odometer: None,
            fuel: None,
        }
    }

    fn drive(t: i64, speed: f64, ignition: bool, step_m: f64, fuel: f64) -> Sample {
        Sample {
            fix: Some((54.0 + t as f64 * 1e-4, 25.0)),
            speed: Some(speed),
            ignition: Some(ignition),
            moving: Some(speed > 3.0),
            distance_m: Some(step_m),
            fuel: Some(fuel),
            ..at(t)
        }
    }

    #[test]
    fn a_day_with_two_trips_a_stop_and_idling() {
        let mut samples = Vec::new();
        // Parked, ignition off, 10 minutes.
        for t in (0..600).step_by(60) {
            samples.push(drive(t, 0.0, false, 0.0, 50.0));
        }
        // Trip 1: 10 minutes at 60 km/h (1 km a minute).
        for t in (600..=1200).step_by(60) {
            samples.push(drive(t, 60.0, true, 1000.0, 50.0 - (t - 600) as f64 / 600.0));
        }
        // Idling 5 minutes, then parked 20 minutes with a refuel.
        for t in (1260..1560).step_by(60) {
            samples.push(drive(t, 0.0, true, 0.0, 49.0));
        }
        for t in (1560..2760).step_by(60) {
            samples.push(drive(t, 0.0, false, 0.0, if t < 2000 { 49.0 } else { 80.0 }));
        }
        // Trip 2: 5 minutes.
        for t in (2760..=3060).step_by(60) {
            samples.push(drive(t, 40.0, true, 700.0, 80.0));
        }
        let rules = Rules::default();
        let (trips, stops) = trips_and_stops(&samples, &rules);
        assert_eq!(trips.len(), 2, "{trips:#?}");
        assert_eq!((trips[0].start_time.0 / 1000, trips[0].end_time.0 / 1000), (600, 1500));
        assert_eq!(trips[0].distance_m, 11_000.0, "the step into the first sample is leaving");
        assert_eq!(trips[0].max_speed, 60.0);
        assert_eq!((trips[1].start_time.0 / 1000, trips[1].distance_m), (2760, 4200.0));
        assert_eq!(stops.len(), 2, "{stops:#?}");
        assert_eq!((stops[0].start_time.0 / 1000, stops[0].end_time.0 / 1000), (0, 600));
        assert_eq!((stops[1].start_time.0 / 1000, stops[1].end_time.0 / 1000, stops[1].engine_on_s), (1500, 2760, 60));
        let total = summary(&samples, &trips, &rules);
        assert_eq!(total.distance_m, 15_200.0, "the trips' distances: nothing moved outside them");
        assert_eq!(total.engine_s, 960 + 300, "ignition on from 600 s to 1,560 s, and trip 2");
        assert_eq!(total.idle_s, 300, "on, not moving");
        assert_eq!(total.refuels, 1);
        assert_eq!(total.drains, 0);
        assert!((total.fuel_used_l - 1.0).abs() < 1e-9, "{}", total.fuel_used_l);
    }

    #[test]
    fn a_data_gap_ends_a_trip_and_short_hops_are_not_trips() {
        let mut samples = Vec::new();
        for t in (0..=600).step_by(60) {
            samples.push(drive(t, 50.0, true, 800.0, 40.0));
        }
        // Silent for 20 minutes (tunnel, dead modem), then driving again.
        for t in (1800..=2400).step_by(60) {
            samples.push(drive(t, 50.0, true, 800.0, 40.0));
        }
        // A 30 s, 50 m shuffle in the car park.
        samples.push(drive(3000, 0.0, false, 0.0, 40.0));
        samples.push(drive(3600, 5.0, true, 25.0, 40.0));
        samples.push(drive(3630, 5.0, true, 25.0, 40.0));
        samples.push(drive(4200, 0.0, false, 0.0, 40.0));
        let (trips, _) = trips_and_stops(&samples, &Rules::default());
        let spans: Vec<(i64, i64)> = trips.iter().map(|t| (t.start_time.0 / 1000, t.end_time.0 / 1000)).collect();
        assert_eq!(spans, [(0, 600), (1800, 2400)]);
    }

    #[test]
    fn a_drain_while_parked_is_not_consumption() {
        let mut samples = Vec::new();
        for t in (0..600).step_by(60) {
            samples.push(drive(t, 0.0, false, 0.0, if t < 300 { 60.0 } else { 45.0 }));
        }
        let total = summary(&samples, &[], &Rules::default());
        assert_eq!((total.drains, total.refuels), (1, 0));
        assert_eq!(total.fuel_used_l, 0.0);
    }

    #[test]
    fn motion_is_used_when_the_device_has_no_ignition() {
        let samples: Vec<Sample> = (0..=20)
            .map(|i| Sample {
                fix: Some((0.0, i as f64 * 0.01)),
                speed: Some(if (5..=15).contains(&i) { 30.0 } else { 0.0 }),
                distance_m: Some(if (6..=15).contains(&i) { 500.0 } else { 0.0 }),
                ..at(i * 60)
            })
            .collect();
        let (trips, stops) = trips_and_stops(&samples, &Rules::default());
        assert_eq!(trips.len(), 1);
        assert_eq!((trips[0].start_time.0 / 1000, trips[0].end_time.0 / 1000), (300, 900));
        assert_eq!(trips[0].distance_m, 5000.0, "the step into the first moving sample was 0");
        assert_eq!(stops.len(), 2);
    }
}
