//! Trips and stops of generated days (parking, driving, idling, yard shuffles, data gaps,
//! sample intervals from 5 s to a minute) against a reference written the plain way:
//! split at data gaps, group active samples with no stop of `min_stop_s` between them,
//! keep the groups long enough. Both detections (ignition, motion).

use fleetgate_codecs::time::UtcMillis;
use fleetgate_processor::reports::{Detection, Rules, Sample, trips_and_stops};

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

/// A generated day of one vehicle.
fn day(random: &mut Random) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut t = 0i64;
    let mut lat = 54.0;
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
        while t < end {
            let (speed, ignition) = match phase {
                0 => (0.0, false),
                1 => (random.between(20, 90) as f64, true),
                2 => (0.0, true),
                _ => (random.between(4, 8) as f64, true),
            };
            let distance = speed * step as f64 / 3.6;
            lat += distance / 111_000.0;
            samples.push(Sample {
                time: UtcMillis(t * 1000),
                fix: Some((lat, 25.0)),
                speed: Some(speed),
                ignition: Some(ignition),
                moving: Some(speed > 3.0),
                distance_m: Some(distance),
                odometer: None,
                fuel: None,
            });
            t += step;
        }
    }
    samples
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

#[test]
fn trips_agree_with_the_reference_on_generated_days() {
    let mut random = Random(20_261_125);
    let mut compared = 0;
    for _ in 0..300 {
        let samples = day(&mut random);
        for detection in [Detection::Ignition, Detection::Motion] {
            let rules = Rules { detection, ..Rules::default() };
            let (trips, stops) = trips_and_stops(&samples, &rules);
            let found: Vec<(i64, i64, f64)> =
                trips.iter().map(|t| (t.start_time.0 / 1000, t.end_time.0 / 1000, t.distance_m)).collect();
            let expected = reference(&samples, &rules, detection == Detection::Ignition);
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
            compared += found.len();
        }
    }
    assert!(compared > 500, "the generator makes trips: {compared}");
}
