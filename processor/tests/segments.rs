//! Report segments kept by the processor: whatever order a day's positions arrive in (in
//! order in batches, a black-box upload filling a gap late, reversed, shuffled with a
//! redelivery), the stored segments are the ones cut from the stored positions, and
//! reports read from them equal reports over every position. History stored before
//! segments existed is cut by the processor in the background.

mod common;

use common::{Harness, IMEI, close, eventually, redis_url, report};
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::DeviceId;
use fleetgate_rules::reports::{Detection, Rules, Segment, segments, singles};
use fleetgate_store::partitions::Partitions;
use fleetgate_store::rows::Timestamp;
use fleetgate_store::segments::{pieces, samples};
use serde_json::json;

const DAY: &str = "2026-07-01T00:00:00Z";

fn time(text: &str) -> UtcMillis {
    UtcMillis::parse_rfc3339(text).expect("an RFC 3339 time")
}

fn at(seconds: i64) -> String {
    UtcMillis(UtcMillis::parse_rfc3339(DAY).map_or(0, |t| t.0) + seconds * 1000).to_string()
}

/// A working day at one position every 20 s: parked, a drive, idling, parked with a
/// refuel, a drive with a 15-minute tunnel, parked with fuel stolen; odometer and fuel
/// sensor throughout, a few records without a fix.
fn working_day() -> Vec<serde_json::Value> {
    let mut positions = Vec::new();
    let (mut lat, mut odometer, mut fuel) = (54.0, 120_000_000.0, 200.0);
    let mut t = 6 * 3600;
    while t < 14 * 3600 {
        let hour = t as f64 / 3600.0;
        let (speed, ignition) = match hour {
            h if (7.0..8.0).contains(&h) => (50.0 + (t % 7) as f64, true),
            h if (8.0..8.25).contains(&h) => (0.0, true),
            h if (10.0..11.5).contains(&h) => (70.0, true),
            _ => (0.0, false),
        };
        if (10.5..10.75).contains(&hour) {
            t += 20; // the tunnel: no data
            continue;
        }
        let step = speed * 20.0 / 3.6;
        lat += step / 111_000.0;
        odometer += step;
        fuel -= step * 0.0003;
        if t == 9 * 3600 {
            fuel += 120.0;
        }
        if t == 12 * 3600 {
            fuel -= 40.0;
        }
        let mut position = json!({
            "device": IMEI, "protocol": "teltonika", "time": at(t), "received": at(t + 1),
            "speed": speed, "valid": true, "lat": lat, "lon": 25.0,
            "attrs": {"ignition": ignition, "odometer": odometer.round(), "fuel_litres": (fuel * 10.0f64).round() / 10.0},
            "io": {},
        });
        if t % 1800 == 20 {
            position["valid"] = json!(false);
        }
        positions.push(position);
        t += 20;
    }
    positions
}

/// The stored segments: (start, end, samples, ignition, moving, distance, fuel readings).
type Stored = (UtcMillis, UtcMillis, u32, Option<bool>, bool, f64, u32);

async fn stored_segments(h: &Harness) -> Vec<Stored> {
    let rows = h
        .postgres
        .query(
            "SELECT start_time, end_time, samples, ignition, moving, distance_m, fuel_readings FROM segments
             WHERE device_id = $1 ORDER BY start_time",
            &[&h.device_id],
        )
        .await
        .expect("segments");
    rows.iter()
        .map(|r| {
            let (start, end): (Timestamp, Timestamp) = (r.get(0), r.get(1));
            (start.0, end.0, r.get::<_, i32>(2) as u32, r.get(3), r.get(4), r.get(5), r.get::<_, i32>(6) as u32)
        })
        .collect()
}

fn as_stored(s: &Segment) -> Stored {
    (s.start, s.end, s.samples, s.ignition, s.moving, s.distance_m, s.fuel_readings)
}

/// Stored segments are the device's positions cut into segments, the last one lagging by
/// at most the last minute (the tail reports read as positions).
fn assert_cut_of(name: &str, stored: &[Stored], expected: &[Segment]) {
    assert_eq!(stored.len(), expected.len(), "{name}: {stored:#?}\nvs\n{expected:#?}");
    for (i, (a, b)) in stored.iter().zip(expected.iter().map(as_stored)).enumerate() {
        if i + 1 == expected.len() {
            assert_eq!((a.0, a.3, a.4), (b.0, b.3, b.4), "{name}: the open segment");
            assert!(a.1 <= b.1 && b.1.0 - a.1.0 < 60_000, "{name}: the tail is under a minute: {a:?} vs {b:?}");
            continue;
        }
        assert_eq!((a.0, a.1, a.2, a.3, a.4, a.6), (b.0, b.1, b.2, b.3, b.4, b.6), "{name}");
        assert!(close(a.5, b.5), "{name}: {a:?} vs {b:?}");
    }
}

/// Reports over segments equal reports over every position, for spans that cut through
/// segments and for a gap rule shorter than gaps inside some segments.
async fn reports_match_a_raw_scan(h: &Harness) {
    let spans = [(0, 86_399), (7 * 3600 + 333, 11 * 3600 + 17), (9 * 3600, 9 * 3600 + 600)];
    for (from, to) in spans {
        let (from, to) = (time(&at(from)), time(&at(to)));
        for rules in [
            Rules::default(),
            Rules { detection: Detection::Motion, max_gap_s: 10, min_stop_s: 60, ..Rules::default() },
        ] {
            let read = pieces(&h.postgres, &[(DeviceId(h.device_id), rules)], from, to).await.expect("pieces");
            let raw = singles(&samples(&h.postgres, DeviceId(h.device_id), from, to).await.expect("samples"));
            // Over the whole day, far fewer rows (a span cutting through a segment reads
            // that segment's positions).
            if (from, rules.max_gap_s) == (time(DAY), 600) {
                assert!(read[0].len() * 20 < raw.len(), "{} of {}", read[0].len(), raw.len());
            }
            let (trips, stops, total) = report(&read[0], &rules);
            let (raw_trips, raw_stops, raw_total) = report(&raw, &rules);
            assert_eq!(trips.len(), raw_trips.len(), "{trips:#?} vs {raw_trips:#?}");
            for (a, b) in trips.iter().zip(&raw_trips) {
                assert_eq!((a.start_time, a.end_time, a.start, a.end), (b.start_time, b.end_time, b.start, b.end));
                assert!(close(a.distance_m, b.distance_m), "{a:?} vs {b:?}");
            }
            assert_eq!(stops, raw_stops);
            assert_eq!(
                (total.driving_s, total.idle_s, total.engine_s, total.refuels, total.drains),
                (raw_total.driving_s, raw_total.idle_s, raw_total.engine_s, raw_total.refuels, raw_total.drains)
            );
            assert!(close(total.distance_m, raw_total.distance_m) && close(total.fuel_used_l, raw_total.fuel_used_l));
        }
    }
}

#[tokio::test]
async fn segments_are_the_same_whatever_order_the_positions_arrive_in() {
    let day = working_day();
    let count = day.len();
    let batches: Vec<Vec<usize>> = (0..count).collect::<Vec<_>>().chunks(60).map(<[usize]>::to_vec).collect();
    // The black box: the drive from 07:20 to 07:40 (positions 240 to 299, one every 20 s
    // from 06:00) comes in after everything else.
    let late: Vec<usize> = (240..300).collect();
    let on_time: Vec<Vec<usize>> =
        batches.iter().map(|b| b.iter().copied().filter(|i| !late.contains(i)).collect()).collect();
    let mut black_box = on_time.clone();
    black_box.push(late.clone());
    let mut reversed = batches.clone();
    reversed.reverse();
    let mut shuffled: Vec<Vec<usize>> = Vec::new();
    for (n, batch) in batches.iter().enumerate() {
        let mut batch = batch.clone();
        batch.rotate_left(n % 7);
        shuffled.insert((n * 5) % (shuffled.len() + 1), batch);
    }
    shuffled.push(batches[3].clone()); // a redelivery
    // One position per message (as a live device sends) at the start and the end: most
    // batches then write no segment, and the day ends with a tail.
    let mut singly: Vec<Vec<usize>> = (0..90).map(|i| vec![i]).collect();
    singly.extend((90..count - 2).collect::<Vec<_>>().chunks(60).map(<[usize]>::to_vec));
    singly.extend([vec![count - 2], vec![count - 1]]);

    let mut first: Option<Vec<Stored>> = None;
    for (name, order) in [
        ("in order", batches),
        ("black box", black_box),
        ("reversed", reversed),
        ("shuffled", shuffled),
        ("singly", singly),
    ] {
        let mut h = Harness::start(None, redis_url(), None).await;
        for batch in order {
            let positions: Vec<serde_json::Value> = batch.iter().map(|&i| day[i].clone()).collect();
            h.publish_positions(&positions).await;
            // One batch per message, so late ones really come late.
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
        eventually("the day stored", || async { h.count("SELECT count(*) FROM positions").await == count as i64 })
            .await;
        // The last batch's segments commit with its positions; wait for it to settle.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let stored = stored_segments(&h).await;
        let all = samples(&h.postgres, DeviceId(h.device_id), UtcMillis(0), UtcMillis(4_000_000_000_000))
            .await
            .expect("samples");
        let expected = segments(&all);
        assert_cut_of(name, &stored, &expected);
        if name == "singly" {
            let (lagging, whole) = (stored.last().map(|s| s.1), expected.last().map(|s| s.end));
            assert!(lagging < whole, "the last two positions are a tail: {lagging:?} vs {whole:?}");
        }
        assert!(stored.len() * 20 < count, "{name}: {} segments for {count} positions", stored.len());
        reports_match_a_raw_scan(&h).await;
        // And every arrival order gives the same segments.
        match &first {
            None => first = Some(stored),
            Some(first) => {
                let key = |s: &Stored| (s.0, s.3, s.4);
                assert_eq!(stored.iter().map(key).collect::<Vec<_>>(), first.iter().map(key).collect::<Vec<_>>());
            }
        }
        h.stop_processor().await;
    }
}

#[tokio::test]
async fn history_stored_before_segments_is_cut_in_the_background() {
    let mut h = Harness::start(None, redis_url(), None).await;
    h.stop_processor().await;
    // Positions written straight into the table, as before segments existed.
    let july = time(DAY).year_month();
    let month = july.0 * 12 + i64::from(july.1) - 1;
    Partitions::default().ensure(&mut h.postgres, [month]).await.expect("partition");
    h.postgres
        .execute(
            "INSERT INTO positions (device_id, fix_time, tenant_id, received, lat, lon, speed, valid, attrs, io, distance_m, moving)
             SELECT $1, '2026-07-01T08:00:00Z'::timestamptz + make_interval(secs => n * 30), $2, now(),
                    54 + n * 0.001, 25, CASE WHEN n BETWEEN 20 AND 60 THEN 40 ELSE 0 END, true,
                    jsonb_build_object('ignition', n BETWEEN 20 AND 60), '{}',
                    CASE WHEN n = 0 THEN 0 ELSE 111.19 END, n BETWEEN 20 AND 60
             FROM generate_series(0, 119) AS n",
            &[&h.device_id, &h.tenant_id],
        )
        .await
        .expect("positions");
    h.postgres.execute("INSERT INTO segments_pending VALUES ($1)", &[&h.device_id]).await.expect("pending");
    // Until it is cut, a report reads the positions.
    let (from, to) = (time(DAY), time("2026-07-02T00:00:00Z"));
    let waiting = pieces(&h.postgres, &[(DeviceId(h.device_id), Rules::default())], from, to).await.expect("pieces");
    assert_eq!(waiting[0].len(), 120);
    h.run_processor();
    eventually("the device's history cut", || async { h.count("SELECT count(*) FROM segments_pending").await == 0 })
        .await;
    let stored = stored_segments(&h).await;
    let all = samples(&h.postgres, DeviceId(h.device_id), from, to).await.expect("samples");
    assert_eq!(stored, segments(&all).iter().map(as_stored).collect::<Vec<_>>(), "the whole history, no tail");
    assert_eq!(stored.len(), 3, "parked, driving, parked: {stored:#?}");
    let read = pieces(&h.postgres, &[(DeviceId(h.device_id), Rules::default())], from, to).await.expect("pieces");
    assert_eq!(read[0].len(), 3);
    let (trips, _, _) = report(&read[0], &Rules::default());
    assert_eq!(trips.len(), 1);
    h.stop_processor().await;
}
