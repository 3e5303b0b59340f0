//! Reports of generated days (parking, driving, idling, yard shuffles, data gaps, sample
//! intervals from 5 s to a minute, refuels and fuel thefts while parked, a noisy fuel
//! sensor, fixes missing now and then) against a reference written the plain way: split
//! at data gaps, group active samples with no stop of `min_stop_s` between them, keep the
//! groups long enough; the fuel events are the ones the generator made. Both detections,
//! and the same answers whether the samples are cut into segments (what the processor
//! stores) or read one by one (a raw scan).

mod common;

use common::{close, report};
use fleetgate_codecs::time::UtcMillis;
use fleetgate_rules::reports::{Detection, Rules, Sample, Segment, segments, singles};

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }
}

/// A generated day of one vehicle and what happened to its fuel.
struct Day {
    samples: Vec<Sample>,
    refuels: u32,
    thefts: u32,
    /// Litres burned while driving.
    burned: f64,
    /// Standing stretches (their sensor noise can read as burned fuel).
    standing_stretches: u32,
}

fn day(random: &mut Random) -> Day {
    let mut samples = Vec::new();
    let mut t = 0i64;
    let mut lat = 54.0;
    let with_odometer = random.next() % 2 == 0;
    let (mut odometer, mut fuel, mut burned) = (1_000_000.0, 300.0, 0.0);
    let (mut refuels, mut thefts, mut standing_stretches) = (0, 0, 0);
    // At most one fuel event per stretch of standing: between two, the level shows only
    // their sum.
    let mut event_in_stretch = false;
    let mut standing = false;
    for _ in 0..random.between(4, 14) {
        let phase = random.next() % 5;
        let length = match phase {
            0 => random.between(60, 3600), // parked
            1 => random.between(30, 2400), // driving
            2 => random.between(30, 600),  // idling
            3 => random.between(10, 90),   // a yard shuffle
            _ => {
                t += random.between(700, 4000); // no data at all
                continue;
            }
        };
        let step = random.between(5, 60);
        let end = t + length;
        // A refuel or a theft in the middle of some parkings.
        let event_at = (phase == 0 && length >= 3 * step && random.next() % 3 == 0).then(|| t + length / 2);
        while t < end {
            let (speed, ignition) = match phase {
                0 => (0.0, false),
                1 => (random.between(20, 90) as f64, true),
                2 => (0.0, true),
                _ => (random.between(4, 8) as f64, true),
            };
            let distance = speed * step as f64 / 3.6;
            lat += distance / 111_000.0;
            odometer += distance;
            let moving = speed > 3.0;
            if moving {
                burned += distance * 0.0003;
                fuel -= distance * 0.0003;
                standing = false;
                event_in_stretch = false;
            } else if !standing {
                standing = true;
                standing_stretches += 1;
            }
            if let Some(at) = event_at
                && t >= at
                && !event_in_stretch
            {
                event_in_stretch = true;
                if fuel < 150.0 {
                    fuel += random.between(40, 150) as f64;
                    refuels += 1;
                } else {
                    fuel -= random.between(20, 60) as f64;
                    thefts += 1;
                }
            }
            // A standing vehicle's sensor wobbles; far less than the thresholds.
            let noise = if moving { 0.0 } else { random.between(-2, 2) as f64 / 10.0 };
            samples.push(Sample {
                time: UtcMillis(t * 1000),
                fix: (random.next() % 20 != 0).then_some((lat, 25.0)),
                speed: Some(speed),
                ignition: Some(ignition),
                moving: Some(moving),
                distance_m: Some(distance),
                odometer: with_odometer.then_some(odometer),
                fuel: Some(fuel + noise),
            });
            t += step;
        }
    }
    Day { samples, refuels, thefts, burned, standing_stretches }
}

/// The reference: (start s, end s, distance) of each trip.
fn reference(samples: &[Sample], rules: &Rules, ignition: bool) -> Vec<(i64, i64, f64)> {
    let seconds = |s: &Sample| s.time.0 / 1000;
    let active = |s: &Sample| if ignition { s.ignition == Some(true) } else { s.speed.is_some_and(|v| v > 3.0) };
    let mut trips = Vec::new();
    // Segments between data gaps.
    let mut segments: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for i in 1..=samples.len() {
        if i == samples.len() || seconds(&samples[i]) - seconds(&samples[i - 1]) > rules.max_gap_s {
            segments.push((start, i));
            start = i;
        }
    }
    for (from, to) in segments {
        let actives: Vec<usize> = (from..to).filter(|&i| active(&samples[i])).collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in actives {
            let joins = groups.last().and_then(|g| g.last()).is_some_and(|&last| {
                i == last + 1 || seconds(&samples[i]) - seconds(&samples[last]) < rules.min_stop_s
            });
            match groups.last_mut() {
                Some(group) if joins => group.push(i),
                _ => groups.push(vec![i]),
            }
        }
        for group in groups {
            let (first, last) = (group[0], group[group.len() - 1]);
            let distance: f64 = (first..=last).filter(|&i| i > 0).filter_map(|i| samples[i].distance_m).sum();
            let duration = seconds(&samples[last]) - seconds(&samples[first]);
            if distance >= rules.min_trip_distance_m && duration >= rules.min_trip_s {
                trips.push((seconds(&samples[first]), seconds(&samples[last]), distance));
            }
        }
    }
    trips
}

/// The reference engine time: seconds between consecutive samples whose first has the
/// ignition on, gaps over `max_gap_s` left out.
fn reference_engine_s(samples: &[Sample], rules: &Rules) -> i64 {
    samples
        .windows(2)
        .filter(|w| w[0].ignition == Some(true))
        .map(|w| (w[1].time.0 - w[0].time.0) / 1000)
        .filter(|gap| *gap <= rules.max_gap_s)
        .sum()
}

/// The segments of `samples`, those with a gap inside longer than the rules allow read
/// sample by sample again (as the API does).
fn cut(samples: &[Sample], rules: &Rules) -> Vec<Segment> {
    let mut pieces = Vec::new();
    for segment in segments(samples) {
        if segment.needs_samples(rules) {
            let inside = samples.iter().filter(|s| s.time >= segment.start && s.time <= segment.end);
            pieces.extend(inside.map(Segment::of));
        } else {
            pieces.push(segment);
        }
    }
    pieces
}

#[test]
fn reports_agree_with_the_reference_on_generated_days() {
    let mut random = Random(20_261_125);
    let (mut compared, mut fuel_events, mut rows, mut cut_rows) = (0, 0, 0, 0);
    for n in 0..300 {
        let day = day(&mut random);
        let samples = &day.samples;
        for detection in [Detection::Ignition, Detection::Motion] {
            // Every other day a short gap rule, so some segments must be read sample by sample.
            let max_gap_s = if n % 2 == 0 { 600 } else { 120 };
            let rules = Rules { detection, max_gap_s, ..Rules::default() };
            let (trips, stops, total) = report(&singles(samples), &rules);
            let found: Vec<(i64, i64, f64)> =
                trips.iter().map(|t| (t.start_time.0 / 1000, t.end_time.0 / 1000, t.distance_m)).collect();
            let expected = reference(samples, &rules, detection == Detection::Ignition);
            assert_eq!(found.len(), expected.len(), "{detection:?}: {found:?} vs {expected:?}");
            for (f, e) in found.iter().zip(&expected) {
                assert_eq!((f.0, f.1), (e.0, e.1), "{detection:?}");
                assert!((f.2 - e.2).abs() < 1e-6, "{detection:?}: {f:?} vs {e:?}");
            }
            // Stops fill what is between the trips, and never overlap them.
            for stop in &stops {
                assert!(stop.duration_s >= rules.min_stop_s);
                assert!(trips.iter().all(|t| stop.end_time <= t.start_time || stop.start_time >= t.end_time));
            }
            // The summary: engine time, distance, and the fuel the generator moved.
            assert_eq!(total.engine_s, reference_engine_s(samples, &rules));
            let track: f64 = samples.iter().skip(1).filter_map(|s| s.distance_m).sum();
            assert!(close(total.distance_m, track), "{} vs {track}", total.distance_m);
            assert_eq!((total.refuels, total.drains), (day.refuels, day.thefts), "day {n}");
            // Each stretch's wobble (up to 0.4 l) can read as burned, or hide up to 0.2 l
            // of the next drive's; the day's first step burned before the first reading.
            let stretches = f64::from(day.standing_stretches);
            let before_first = samples.first().and_then(|s| s.distance_m).unwrap_or(0.0) * 0.0003;
            let (low, high) = (day.burned - before_first - 0.2 * stretches - 1e-6, day.burned + 0.4 * stretches + 1e-6);
            assert!(
                (low..=high).contains(&total.fuel_used_l),
                "day {n}: used {} burned {}",
                total.fuel_used_l,
                day.burned
            );
            // Cut into segments: the same report from far fewer rows.
            let pieces = cut(samples, &rules);
            let (cut_trips, cut_stops, cut_total) = report(&pieces, &rules);
            assert_eq!(cut_trips.len(), trips.len());
            for (a, b) in cut_trips.iter().zip(&trips) {
                assert_eq!((a.start_time, a.end_time, a.start, a.end), (b.start_time, b.end_time, b.start, b.end));
                assert!(close(a.distance_m, b.distance_m) && a.max_speed == b.max_speed, "{a:?} vs {b:?}");
            }
            assert_eq!(cut_stops, stops, "day {n} {detection:?}");
            assert_eq!(
                (cut_total.driving_s, cut_total.idle_s, cut_total.engine_s, cut_total.refuels, cut_total.drains),
                (total.driving_s, total.idle_s, total.engine_s, total.refuels, total.drains)
            );
            assert!(close(cut_total.distance_m, total.distance_m) && close(cut_total.fuel_used_l, total.fuel_used_l));
            assert_eq!(cut_total.max_speed, total.max_speed);
            compared += found.len();
            fuel_events += total.refuels + total.drains;
            rows += samples.len();
            cut_rows += pieces.len();
        }
    }
    assert!(compared > 500, "the generator makes trips: {compared}");
    assert!(fuel_events > 100, "and refuels and thefts: {fuel_events}");
    assert!(cut_rows * 3 < rows, "segments are far fewer than samples: {cut_rows} of {rows}");
}
