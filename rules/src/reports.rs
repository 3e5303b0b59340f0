//! Trips, stops and the summary of one device over a span, computed from its positions in
//! time order cut into [`Segment`]s (runs of one state: what the processor stores so a
//! report reads a few rows a day; a single position is a segment too). Pure: the API
//! feeds it segments and positions read from history; the rules come from the device,
//! its tenant or the defaults below (docs/REPORTS.md).
//!
//! A trip is a run of activity (ignition on, or motion where the device reports no
//! ignition) that ends when the device stays inactive for `min_stop_s` or its data has a
//! gap longer than `max_gap_s`; runs shorter than `min_trip_distance_m` or
//! `min_trip_s` are not trips. A stop is the time between two trips (or before the first
//! and after the last, inside the span) of at least `min_stop_s`.

use fleetgate_codecs::time::UtcMillis;
use serde::{Deserialize, Serialize};

use crate::track::is_moving;

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

impl Sample {
    /// A sample at `time` with nothing in it.
    pub fn at(time: UtcMillis) -> Self {
        Sample {
            time,
            fix: None,
            speed: None,
            ignition: None,
            moving: None,
            distance_m: None,
            odometer: None,
            fuel: None,
        }
    }
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

/// Data gaps longer than this (seconds) start a new segment.
pub const SEGMENT_MAX_GAP_S: i64 = 300;

const DAY_MS: i64 = 86_400_000;

/// A run of consecutive samples of one device in the same state (ignition, moving), on
/// one UTC day, without a data gap over [`SEGMENT_MAX_GAP_S`]: everything the reports
/// need of those samples, so a report reads a few segments a day instead of every
/// position. A single sample is a segment too, which is how a report over raw positions
/// runs the same code.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// First sample's time.
    pub start: UtcMillis,
    /// Last sample's time.
    pub end: UtcMillis,
    /// How many samples.
    pub samples: u32,
    /// Every sample's `ignition`.
    pub ignition: Option<bool>,
    /// Every sample's motion (the device's flag, else speed over 3 km/h).
    pub moving: bool,
    /// First valid fix.
    pub first_fix: Option<(f64, f64)>,
    /// Last valid fix.
    pub last_fix: Option<(f64, f64)>,
    /// Sum of the samples' `distance_m`, the first one's included.
    pub distance_m: f64,
    /// The first sample's `distance_m` (the step from before the segment).
    pub first_distance_m: f64,
    /// Highest speed, 0 without any (km/h).
    pub max_speed: f64,
    /// Longest time between two consecutive samples inside (milliseconds).
    pub max_gap_ms: i64,
    /// First odometer reading.
    pub first_odometer: Option<f64>,
    /// Last odometer reading.
    pub last_odometer: Option<f64>,
    /// The odometer never decreased inside.
    pub odometer_rising: bool,
    /// First fuel reading.
    pub first_fuel: Option<f64>,
    /// Last fuel reading.
    pub last_fuel: Option<f64>,
    /// How many fuel readings.
    pub fuel_readings: u32,
    /// Sum of the falls between consecutive fuel readings inside.
    pub fuel_falls: f64,
}

impl Segment {
    /// The segment of one sample.
    pub fn of(sample: &Sample) -> Self {
        Segment {
            start: sample.time,
            end: sample.time,
            samples: 1,
            ignition: sample.ignition,
            moving: moving(sample),
            first_fix: sample.fix,
            last_fix: sample.fix,
            distance_m: sample.distance_m.unwrap_or(0.0),
            first_distance_m: sample.distance_m.unwrap_or(0.0),
            max_speed: sample.speed.unwrap_or(0.0).max(0.0),
            max_gap_ms: 0,
            first_odometer: sample.odometer,
            last_odometer: sample.odometer,
            odometer_rising: true,
            first_fuel: sample.fuel,
            last_fuel: sample.fuel,
            fuel_readings: u32::from(sample.fuel.is_some()),
            fuel_falls: 0.0,
        }
    }

    /// Adds `sample` (later than the segment's end) if it continues the segment: the same
    /// state, the same UTC day, no gap over [`SEGMENT_MAX_GAP_S`]. False if it does not.
    pub fn extend(&mut self, sample: &Sample) -> bool {
        let gap_ms = sample.time.0 - self.end.0;
        if sample.ignition != self.ignition
            || moving(sample) != self.moving
            || sample.time.0.div_euclid(DAY_MS) != self.start.0.div_euclid(DAY_MS)
            || gap_ms <= 0
            || gap_ms > SEGMENT_MAX_GAP_S * 1000
        {
            return false;
        }
        self.end = sample.time;
        self.samples += 1;
        if sample.fix.is_some() {
            self.first_fix = self.first_fix.or(sample.fix);
            self.last_fix = sample.fix;
        }
        self.distance_m += sample.distance_m.unwrap_or(0.0);
        self.max_speed = self.max_speed.max(sample.speed.unwrap_or(0.0));
        self.max_gap_ms = self.max_gap_ms.max(gap_ms);
        if let Some(odometer) = sample.odometer {
            self.odometer_rising &= self.last_odometer.is_none_or(|last| odometer >= last);
            self.first_odometer = self.first_odometer.or(Some(odometer));
            self.last_odometer = Some(odometer);
        }
        if let Some(fuel) = sample.fuel {
            if let Some(last) = self.last_fuel
                && fuel < last
            {
                self.fuel_falls += last - fuel;
            }
            self.first_fuel = self.first_fuel.or(Some(fuel));
            self.last_fuel = Some(fuel);
            self.fuel_readings += 1;
        }
        true
    }

    /// Milliseconds from the first sample to the last.
    fn span_ms(&self) -> i64 {
        self.end.0 - self.start.0
    }

    /// True when `rules` allow a shorter data gap than one inside the segment: a report
    /// must then read its samples instead.
    pub fn needs_samples(&self, rules: &Rules) -> bool {
        self.max_gap_ms / 1000 > rules.max_gap_s
    }
}

/// Adds `sample` (later than any before) to the `open` segment, or closes that one and
/// opens the next with it: returns the segment closed.
pub fn cut(open: &mut Option<Segment>, sample: &Sample) -> Option<Segment> {
    if open.as_mut().is_some_and(|segment| segment.extend(sample)) {
        return None;
    }
    open.replace(Segment::of(sample))
}

/// `samples` (time order, one device) cut into segments.
pub fn segments(samples: &[Sample]) -> Vec<Segment> {
    let mut open = None;
    let mut closed: Vec<Segment> = samples.iter().filter_map(|sample| cut(&mut open, sample)).collect();
    closed.extend(open);
    closed
}

/// One segment per sample: a report over raw positions.
pub fn singles(samples: &[Sample]) -> Vec<Segment> {
    samples.iter().map(Segment::of).collect()
}

fn uses_ignition(pieces: &[Segment], rules: &Rules) -> bool {
    match rules.detection {
        Detection::Ignition => true,
        Detection::Motion => false,
        Detection::Auto => pieces.iter().any(|s| s.ignition.is_some()),
    }
}

fn moving(sample: &Sample) -> bool {
    sample.moving.or_else(|| is_moving(None, sample.speed)).unwrap_or(false)
}

/// The trips and stops of a device's segments (time order; none with a gap inside
/// longer than `max_gap_s`: see [`Segment::needs_samples`]). The answer is the same
/// however the samples are cut, one segment each or the longest runs.
pub fn trips_and_stops(pieces: &[Segment], rules: &Rules) -> (Vec<Trip>, Vec<Stop>) {
    debug_assert!(pieces.iter().all(|p| !p.needs_samples(rules)), "segments with gaps over max_gap_s");
    let ignition = uses_ignition(pieces, rules);
    let active = |p: &Segment| if ignition { p.ignition == Some(true) } else { p.moving };
    // Runs of activity: (first index, last active index).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for (i, piece) in pieces.iter().enumerate() {
        if let Some((first, last)) = open {
            let gap = seconds(pieces[i - 1].end, piece.start) > rules.max_gap_s;
            // Inactive since the run's last active sample for `min_stop_s`: seen at an
            // inactive sample, or at an active one after inactive ones (sparse samples).
            let stopped = if active(piece) {
                last + 1 < i && seconds(pieces[last].end, piece.start) >= rules.min_stop_s
            } else {
                seconds(pieces[last].end, piece.end) >= rules.min_stop_s
            };
            if gap || stopped {
                runs.push((first, last));
                open = None;
            }
        }
        if active(piece) {
            open = Some(open.map_or((i, i), |(first, _)| (first, i)));
        }
    }
    runs.extend(open);
    let mut trips = Vec::new();
    for (first, last) in runs {
        let run = &pieces[first..=last];
        // The step into the trip's first sample is the vehicle leaving; the span's very
        // first step comes from before the span.
        let leaving = if first == 0 { run[0].first_distance_m } else { 0.0 };
        let distance_m = run.iter().map(|s| s.distance_m).sum::<f64>() - leaving;
        let duration_s = seconds(run[0].start, run[run.len() - 1].end);
        if distance_m < rules.min_trip_distance_m || duration_s < rules.min_trip_s {
            continue;
        }
        trips.push(Trip {
            start_time: run[0].start,
            end_time: run[run.len() - 1].end,
            start: run.iter().find_map(|s| s.first_fix),
            end: run.iter().rev().find_map(|s| s.last_fix),
            distance_m,
            duration_s,
            max_speed: run.iter().map(|s| s.max_speed).fold(0.0, f64::max),
            avg_speed: if duration_s > 0 { distance_m / duration_s as f64 * 3.6 } else { 0.0 },
        });
    }
    let stops = stops_between(pieces, &trips, rules);
    (trips, stops)
}

/// The stops between trips (and before the first, after the last) of at least
/// `min_stop_s`. Every bound is a segment's first or last sample.
fn stops_between(pieces: &[Segment], trips: &[Trip], rules: &Rules) -> Vec<Stop> {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else { return Vec::new() };
    let mut bounds: Vec<(UtcMillis, UtcMillis)> = Vec::new();
    let mut from = first.start;
    for trip in trips {
        bounds.push((from, trip.start_time));
        from = trip.end_time;
    }
    bounds.push((from, last.end));
    let mut stops = Vec::new();
    for (start, end) in bounds {
        if seconds(start, end) < rules.min_stop_s {
            continue;
        }
        // Where it stood: the last fix up to the stop's start, else the first after it.
        let position = pieces
            .iter()
            .filter(|p| p.end <= start)
            .rev()
            .find_map(|p| p.last_fix)
            .or_else(|| pieces.iter().filter(|p| p.end >= start).find_map(|p| p.first_fix));
        stops.push(Stop {
            start_time: start,
            end_time: end,
            position,
            duration_s: seconds(start, end),
            engine_on_s: ignition_ms(pieces, (start, end), rules, |_| true) / 1000,
        });
    }
    stops
}

/// Milliseconds between consecutive samples inside `window` whose earlier one has the
/// ignition on and meets `also`; gaps longer than `max_gap_s` count for nothing.
fn ignition_ms(
    pieces: &[Segment],
    (from, to): (UtcMillis, UtcMillis),
    rules: &Rules,
    also: impl Fn(&Segment) -> bool,
) -> i64 {
    let counts = |p: &Segment| p.ignition == Some(true) && also(p);
    let mut total = 0;
    for (i, piece) in pieces.iter().enumerate() {
        // Between the samples inside the segment (no gap there is over `max_gap_s`).
        if piece.start >= from && piece.end <= to && counts(piece) {
            total += piece.span_ms();
        }
        // From the previous segment's last sample to this one's first.
        if let Some(before) = i.checked_sub(1).map(|j| &pieces[j])
            && before.end >= from
            && piece.start <= to
            && counts(before)
            && seconds(before.end, piece.start) <= rules.max_gap_s
        {
            total += piece.start.0 - before.end.0;
        }
    }
    total
}

/// The totals of a device's segments given their trips.
pub fn summary(pieces: &[Segment], trips: &[Trip], rules: &Rules) -> Summary {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else { return Summary::default() };
    let whole = (first.start, last.end);
    let track = pieces.iter().map(|p| p.distance_m).sum::<f64>() - first.first_distance_m;
    let odometers: Vec<&Segment> = pieces.iter().filter(|p| p.first_odometer.is_some()).collect();
    let rising = odometers.iter().all(|p| p.odometer_rising)
        && odometers.windows(2).all(|w| w[1].first_odometer >= w[0].last_odometer);
    let odometer = match (odometers.first(), odometers.last()) {
        (Some(first), Some(last)) if rising => last.last_odometer.zip(first.first_odometer).map(|(b, a)| b - a),
        _ => None,
    };
    let distance_m = match odometer {
        Some(counted) if track > 0.0 && (counted - track).abs() <= track * 0.2 => counted,
        _ => track,
    };
    let driving_s: i64 = trips.iter().map(|t| t.duration_s).sum();
    let trip_distance: f64 = trips.iter().map(|t| t.distance_m).sum();
    let (fuel_used_l, refuels, drains) = fuel(pieces, rules);
    Summary {
        distance_m,
        driving_s,
        idle_s: ignition_ms(pieces, whole, rules, |p| !p.moving) / 1000,
        engine_s: ignition_ms(pieces, whole, rules, |_| true) / 1000,
        max_speed: pieces.iter().map(|p| p.max_speed).fold(0.0, f64::max),
        avg_speed: if driving_s > 0 { trip_distance / driving_s as f64 * 3.6 } else { 0.0 },
        fuel_used_l,
        refuels,
        drains,
    }
}

/// Fuel burned, refuels and drains from the level. Sensors are noisy: a change counts as
/// a refuel or drain only when the vehicle stands and the level moved by the threshold
/// between the first and last readings while it stood; while driving, and from one state
/// to the other, falls are consumption.
fn fuel(pieces: &[Segment], rules: &Rules) -> (f64, u32, u32) {
    let readings: Vec<&Segment> = pieces.iter().filter(|p| p.fuel_readings > 0).collect();
    let (mut used, mut refuels, mut drains) = (0.0, 0, 0);
    let fall = |from: Option<f64>, to: Option<f64>| from.zip(to).map_or(0.0, |(a, b)| (a - b).max(0.0));
    let mut i = 0;
    while i < readings.len() {
        let mut end = i;
        if readings[i].moving {
            used += readings[i].fuel_falls;
        } else {
            // A standing run: consecutive readings without motion, however many segments.
            while end + 1 < readings.len() && !readings[end + 1].moving {
                end += 1;
            }
            let count: u32 = readings[i..=end].iter().map(|p| p.fuel_readings).sum();
            if count >= 2
                && let (Some(before), Some(after)) = (readings[i].first_fuel, readings[end].last_fuel)
            {
                let change = after - before;
                if change >= rules.refuel_min {
                    refuels += 1;
                } else if -change >= rules.drain_min {
                    drains += 1;
                } else if change < 0.0 {
                    used -= change;
                }
            }
        }
        if let Some(next) = readings.get(end + 1) {
            used += fall(readings[end].last_fuel, next.first_fuel);
        }
        i = end + 1;
    }
    (used, refuels, drains)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample at `t` seconds with nothing in it.
    fn at(t: i64) -> Sample {
        Sample::at(UtcMillis(t * 1000))
    }

    /// Trips, stops and summary of `samples`, checked to be the same whether the samples
    /// are cut into segments or taken one by one.
    fn report(samples: &[Sample], rules: &Rules) -> (Vec<Trip>, Vec<Stop>, Summary) {
        let one_by_one = singles(samples);
        let (trips, stops) = trips_and_stops(&one_by_one, rules);
        let total = summary(&one_by_one, &trips, rules);
        let cut = segments(samples);
        assert!(cut.len() < samples.len(), "runs are cut into fewer segments");
        let (cut_trips, cut_stops) = trips_and_stops(&cut, rules);
        assert_eq!(cut_trips, trips);
        assert_eq!(cut_stops, stops);
        assert_eq!(summary(&cut, &cut_trips, rules), total);
        (trips, stops, total)
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
        let (trips, stops, total) = report(&samples, &rules);
        assert_eq!(trips.len(), 2, "{trips:#?}");
        assert_eq!((trips[0].start_time.0 / 1000, trips[0].end_time.0 / 1000), (600, 1500));
        assert_eq!(trips[0].distance_m, 11_000.0, "the step into the first sample is leaving");
        assert_eq!(trips[0].max_speed, 60.0);
        assert_eq!((trips[1].start_time.0 / 1000, trips[1].distance_m), (2760, 4200.0));
        assert_eq!(stops.len(), 2, "{stops:#?}");
        assert_eq!((stops[0].start_time.0 / 1000, stops[0].end_time.0 / 1000), (0, 600));
        assert_eq!((stops[1].start_time.0 / 1000, stops[1].end_time.0 / 1000, stops[1].engine_on_s), (1500, 2760, 60));
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
        let (trips, _, _) = report(&samples, &Rules::default());
        let spans: Vec<(i64, i64)> = trips.iter().map(|t| (t.start_time.0 / 1000, t.end_time.0 / 1000)).collect();
        assert_eq!(spans, [(0, 600), (1800, 2400)]);
    }

    #[test]
    fn a_drain_while_parked_is_not_consumption() {
        let mut samples = Vec::new();
        for t in (0..600).step_by(60) {
            samples.push(drive(t, 0.0, false, 0.0, if t < 300 { 60.0 } else { 45.0 }));
        }
        let (_, _, total) = report(&samples, &Rules::default());
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
        let (trips, stops, _) = report(&samples, &Rules::default());
        assert_eq!(trips.len(), 1);
        assert_eq!((trips[0].start_time.0 / 1000, trips[0].end_time.0 / 1000), (300, 900));
        assert_eq!(trips[0].distance_m, 5000.0, "the step into the first moving sample was 0");
        assert_eq!(stops.len(), 2);
    }
}
