//! The processor against real NATS, Redis and Postgres.

mod common;

use common::{Harness, PrivatePostgres, PrivateRedis, eventually, position, redis_url};
use futures_util::StreamExt;
use serde_json::json;

/// Great-circle distance in metres (mean Earth radius), the reference for `distance_m`.
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().min(1.0).asin()
}

fn future_time(seconds: i64) -> String {
    fleetgate_codecs::time::UtcMillis(fleetgate_contracts::clock::now().0 + seconds * 1000).to_string()
}

#[tokio::test]
async fn redelivered_positions_are_stored_once_and_become_live() {
    let mut h = Harness::start(None, redis_url(), None).await;
    let batch = [
        position("2026-01-10T10:00:00Z", 54.1, 40.0, true, json!({"ignition": true})),
        position("2026-01-10T10:00:10Z", 54.2, 50.0, true, json!({"ignition": true})),
    ];
    // The same positions three times: a resent frame and two redeliveries.
    for _ in 0..3 {
        h.publish_positions(&batch).await;
    }
    eventually("3 messages processed", || async {
        h.count("SELECT count(*) FROM positions").await == 2 && h.live_field("fix_time").await.is_some()
    })
    .await;
    // Let any straggler land before counting again.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(h.count("SELECT count(*) FROM positions").await, 2);
    let live: serde_json::Value =
        serde_json::from_str(&h.live_field("position").await.unwrap_or_default()).unwrap_or_default();
    assert_eq!(live["time"], "2026-01-10T10:00:10Z");
    assert_eq!(live["lat"], 54.2);
    assert!(live["received"].is_string(), "live position carries received: {live}");
    // The row reads back as contract 1.
    use fleetgate_store::rows::{POSITION_COLUMNS, position_identity, write_position};
    let row = h
        .postgres
        .query_one(&format!("SELECT {POSITION_COLUMNS} FROM positions ORDER BY fix_time LIMIT 1"), &[])
        .await
        .expect("row");
    let mut json = String::new();
    write_position(&mut json, &position_identity(common::IMEI, "teltonika"), &row);
    let stored: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(stored["time"], "2026-01-10T10:00:00Z");
    assert_eq!(stored["speed"], 40);
    assert_eq!(stored["io"]["239"], 1);
    assert_eq!(stored["attrs"]["ignition"], true);
    // A redelivery after the commit, with one new position: the stored rows are skipped
    // and the new one lands.
    let mut again = batch.to_vec();
    again.push(position("2026-01-10T10:00:20Z", 54.3, 0.0, true, json!({"ignition": false})));
    h.publish_positions(&again).await;
    eventually("the new position stored", || async { h.count("SELECT count(*) FROM positions").await == 3 }).await;
    eventually("its event derived", || async {
        h.count("SELECT count(*) FROM events WHERE kind = 'ignition_off'").await == 1
    })
    .await;
    h.stop_processor().await;
}

#[tokio::test]
async fn an_older_fix_reaches_history_but_not_live_state_and_a_future_fix_never_becomes_live() {
    let mut h = Harness::start(None, redis_url(), None).await;
    h.publish_positions(&[position("2026-03-01T12:00:00Z", 50.0, 10.0, true, json!({}))]).await;
    // A black-box upload of older fixes, then a fix a day in the future.
    h.publish_positions(&[
        position("2026-03-01T11:00:00Z", 49.0, 10.0, true, json!({})),
        position("2026-03-01T11:30:00Z", 49.5, 10.0, true, json!({})),
    ])
    .await;
    h.publish_positions(&[position(&future_time(86_400), 60.0, 10.0, true, json!({"ignition": false}))]).await;
    eventually("4 rows", || async { h.count("SELECT count(*) FROM positions").await == 4 }).await;
    eventually("messages acked", || async { h.live_field("received").await.is_some() }).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let live: serde_json::Value =
        serde_json::from_str(&h.live_field("position").await.unwrap_or_default()).unwrap_or_default();
    assert_eq!(live["time"], "2026-03-01T12:00:00Z", "newest fix not in the future wins");
    assert_eq!(h.count("SELECT count(*) FROM positions WHERE fix_time > now()").await, 1, "the future fix is stored");
    h.stop_processor().await;
}

#[tokio::test]
async fn impossible_coordinates_and_clocks_are_stored_but_never_live() {
    let mut h = Harness::start(None, redis_url(), None).await;
    h.publish_positions(&[position("2026-03-01T12:00:00Z", 50.0, 10.0, true, json!({}))]).await;
    eventually("live", || async { h.live_field("position").await.is_some() }).await;
    let mut zero = position("2026-03-01T12:10:00Z", 0.0, 10.0, true, json!({}));
    zero["lon"] = json!(0.0);
    let mut off_the_globe = position("2026-03-01T12:20:00Z", 50.0, 10.0, true, json!({}));
    off_the_globe["lon"] = json!(181.5);
    h.publish_positions(&[
        position("2026-03-01T12:05:00Z", 95.0, 10.0, true, json!({})),
        zero,
        off_the_globe,
        // A broken clock: before 2000 (GNSS week rollover), and far in the future.
        position("1999-08-21T00:00:00Z", 50.5, 10.0, true, json!({})),
        position("2080-01-01T00:00:00Z", 50.6, 10.0, true, json!({})),
    ])
    .await;
    eventually("all stored", || async { h.count("SELECT count(*) FROM positions").await == 6 }).await;
    assert_eq!(h.count("SELECT count(*) FROM positions_before_2000").await, 1, "kept in its own partition");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let live: serde_json::Value =
        serde_json::from_str(&h.live_field("position").await.unwrap_or_default()).unwrap_or_default();
    assert_eq!(live["time"], "2026-03-01T12:00:00Z", "none of them moved the vehicle");
    h.stop_processor().await;
}

#[tokio::test]
async fn a_record_without_a_fix_updates_sensors_only() {
    let mut h = Harness::start(None, redis_url(), None).await;
    h.publish_positions(&[position("2026-03-01T12:00:00Z", 50.0, 10.0, true, json!({"fuel_level": 80}))]).await;
    eventually("live", || async { h.live_field("position").await.is_some() }).await;
    let mut sensors_only = position("2026-03-01T12:05:00Z", 0.0, 0.0, false, json!({"fuel_level": 75}));
    sensors_only.as_object_mut().map(|o| (o.remove("lat"), o.remove("lon")));
    h.publish_positions(&[sensors_only]).await;
    eventually("sensors moved", || async { h.live_field("sensors").await.as_deref() == Some(r#"{"fuel_level":75}"#) })
        .await;
    let live: serde_json::Value =
        serde_json::from_str(&h.live_field("position").await.unwrap_or_default()).unwrap_or_default();
    assert_eq!(live["time"], "2026-03-01T12:00:00Z", "the vehicle did not move");
    h.stop_processor().await;
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_subject_and_the_next_flows() {
    let mut h = Harness::start(None, redis_url(), None).await;
    let dead_stream = fleetgate_contracts::stream::dead_letter_stream(&h.config.nats);
    h.publish_raw("pos", "{not json".into()).await;
    h.publish_raw(
        "pos",
        json!({"tenant_id": h.tenant_id, "device_id": h.device_id, "positions": [{"received": "soon", "valid": true}]})
            .to_string(),
    )
    .await;
    h.publish_positions(&[position("2026-01-10T10:00:00Z", 54.1, 40.0, true, json!({}))]).await;
    eventually("the good message stored", || async { h.count("SELECT count(*) FROM positions").await == 1 }).await;
    let stream = h.jetstream.get_stream(&dead_stream).await.expect("dead-letter stream");
    let mut reasons = Vec::new();
    for sequence in 1..=2 {
        let message = stream.get_raw_message(sequence).await.expect("dead letter stored");
        assert_eq!(message.subject.as_str(), format!("{}.dead.pos", h.config.nats.subject_prefix));
        let headers = message.headers;
        reasons.push(headers.get("Fleetgate-Reason").map(|v| v.to_string()).unwrap_or_default());
    }
    assert!(reasons[0].starts_with("malformed message"), "{reasons:?}");
    assert!(reasons[1].contains("received is not an RFC 3339 time"), "{reasons:?}");
    h.stop_processor().await;
}

#[tokio::test]
async fn events_are_the_same_whatever_order_the_positions_arrive_in() {
    // Ignition on at :01, overspeed at :02, ignition off and standing still at :04, SOS
    // at :05.
    let track = [
        ("2026-05-01T08:00:00Z", 10.0, json!({"ignition": false, "power_voltage": 12.5})),
        ("2026-05-01T08:01:00Z", 30.0, json!({"ignition": true, "power_voltage": 12.5})),
        ("2026-05-01T08:02:00Z", 95.0, json!({"ignition": true, "power_voltage": 12.5})),
        ("2026-05-01T08:03:00Z", 99.0, json!({"ignition": true, "power_voltage": 12.5})),
        ("2026-05-01T08:04:00Z", 0.0, json!({"ignition": false, "power_voltage": 12.5})),
        ("2026-05-01T08:05:00Z", 0.0, json!({"ignition": false, "power_voltage": 0.0, "alarm": "sos"})),
    ];
    let expected = vec![
        ("2026-05-01T08:01:00Z".to_owned(), "ignition_on".to_owned()),
        ("2026-05-01T08:02:00Z".to_owned(), "overspeed".to_owned()),
        ("2026-05-01T08:04:00Z".to_owned(), "ignition_off".to_owned()),
        ("2026-05-01T08:04:00Z".to_owned(), "moving_stop".to_owned()),
        ("2026-05-01T08:05:00Z".to_owned(), "power_cut".to_owned()),
        ("2026-05-01T08:05:00Z".to_owned(), "sos".to_owned()),
    ];
    // In order, reversed, and shuffled with a redelivery, one position per message.
    for order in [vec![0, 1, 2, 3, 4, 5], vec![5, 4, 3, 2, 1, 0], vec![3, 0, 5, 1, 3, 4, 2]] {
        let mut h = Harness::start(None, redis_url(), Some(90.0)).await;
        for index in order {
            let (time, speed, attrs) = &track[index];
            h.publish_positions(&[position(time, 54.0 + index as f64 * 0.01, *speed, true, attrs.clone())]).await;
            // One batch per message, so derivation really sees them out of order.
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        eventually("6 rows", || async { h.count("SELECT count(*) FROM positions").await == 6 }).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let rows =
            h.postgres.query("SELECT rfc3339(time), kind FROM events ORDER BY time, kind", &[]).await.expect("events");
        let events: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(events, expected);
        // Distances chain each fix to the one before it in time, whatever the order they
        // came in: five steps of 0.01 degrees of latitude.
        let row = h
            .postgres
            .query_one(
                "SELECT sum(distance_m), count(*) FILTER (WHERE distance_m IS NULL), count(*) FILTER (WHERE moving),
                        (SELECT distance_m FROM positions ORDER BY fix_time LIMIT 1)
                 FROM positions",
                &[],
            )
            .await
            .expect("distances");
        let (total, missing, moving, first): (f64, i64, i64, f64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let step = haversine(54.0, 25.0, 54.01, 25.0);
        assert!((total - 5.0 * step).abs() < 0.01, "total {total} m, expected {}", 5.0 * step);
        assert_eq!((missing, first), (0, 0.0), "every fix has a distance, the first 0");
        assert_eq!(moving, 4, "speed above 3 km/h at :00, :01, :02, :03");
        h.stop_processor().await;
    }
}

#[tokio::test]
async fn an_overspeed_with_a_minimum_duration_is_the_same_whatever_order_the_positions_arrive_in() {
    // Limit 90 km/h for at least 60 s: overtaking from :10 to :30 is not an overspeed; the
    // run from 01:00 is, at 02:00 (60 s into it); the run at 04:30 ends too soon.
    let speeds = [80.0, 95.0, 97.0, 85.0, 80.0, 80.0, 92.0, 95.0, 99.0, 101.0, 103.0, 100.0, 98.0, 70.0];
    let times = [0, 10, 30, 40, 50, 55, 60, 90, 100, 120, 150, 200, 240, 250];
    let mut track: Vec<(String, f64)> =
        times.iter().zip(speeds).map(|(t, v)| (format!("2026-05-02T08:{:02}:{:02}Z", t / 60, t % 60), v)).collect();
    track.push(("2026-05-02T08:04:30Z".into(), 120.0));
    track.push(("2026-05-02T08:05:00Z".into(), 60.0));
    let n = track.len();
    let reversed: Vec<usize> = (0..n).rev().collect();
    let shuffled: Vec<usize> = vec![9, 2, 14, 0, 5, 11, 1, 13, 7, 3, 15, 8, 12, 4, 10, 6, 9];
    for order in [(0..n).collect::<Vec<_>>(), reversed, shuffled] {
        let mut h = Harness::start(None, redis_url(), Some(90.0)).await;
        h.postgres
            .execute("UPDATE devices SET overspeed_min_s = 60 WHERE id = $1", &[&h.device_id])
            .await
            .expect("minimum");
        for index in order {
            let (time, speed) = &track[index];
            h.publish_positions(&[position(time, 54.0, *speed, true, json!({}))]).await;
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        eventually("every row", || async { h.count("SELECT count(*) FROM positions").await == n as i64 }).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let rows = h
            .postgres
            .query("SELECT rfc3339(time), details->>'since' FROM events WHERE kind = 'overspeed' ORDER BY time", &[])
            .await
            .expect("events");
        let events: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(events, [("2026-05-02T08:02:00Z".to_owned(), "2026-05-02T08:01:00Z".to_owned())]);
        h.stop_processor().await;
    }
}

#[tokio::test]
async fn fuel_drains_are_the_same_whatever_order_the_positions_arrive_in() {
    // Parked from :30 with 79 l: 73 l at 01:30 is a drain (6 l, the default threshold is
    // 5), 60 l later is the same one; parked again from 03:00 with 58 l: 54 l is noise,
    // 52.5 l at 04:00 a second drain.
    let track = [(0, 50.0, 80.0), (30, 0.0, 79.0), (60, 0.0, 78.5), (90, 0.0, 73.0), (120, 0.0, 60.0)]
        .into_iter()
        .chain([(150, 50.0, 59.0), (180, 0.0, 58.0), (210, 0.0, 54.0), (240, 0.0, 52.5), (270, 50.0, 52.0)])
        .map(|(t, speed, fuel)| (format!("2026-05-03T08:{:02}:{:02}Z", t / 60, t % 60), speed, fuel))
        .collect::<Vec<_>>();
    let n = track.len();
    let expected =
        vec![("2026-05-03T08:01:30Z".to_owned(), 79.0, 73.0), ("2026-05-03T08:04:00Z".to_owned(), 58.0, 52.5)];
    for order in [(0..n).collect::<Vec<_>>(), (0..n).rev().collect(), vec![4, 8, 1, 9, 0, 6, 3, 7, 2, 5, 3]] {
        let order_name = format!("{order:?}");
        let mut h = Harness::start(None, redis_url(), None).await;
        for index in order {
            let (time, speed, fuel) = &track[index];
            h.publish_positions(&[position(time, 54.0, *speed, true, json!({"fuel_litres": fuel}))]).await;
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        eventually("every row", || async { h.count("SELECT count(*) FROM positions").await == n as i64 }).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let rows = h
            .postgres
            .query(
                "SELECT rfc3339(time), (details->>'from')::float8, (details->>'to')::float8 FROM events
                 WHERE kind = 'fuel_drain' ORDER BY time",
                &[],
            )
            .await
            .expect("events");
        let drains: Vec<(String, f64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(drains, expected, "{order_name}");
        h.stop_processor().await;
    }
}

#[tokio::test]
async fn geofence_events_are_the_same_whatever_order_the_positions_arrive_in() {
    // A square from 54.00 to 54.02 N, 24.9 to 25.1 E; the track leaves and comes back.
    let track = [
        ("2026-06-01T08:00:00Z", 53.99),
        ("2026-06-01T08:01:00Z", 54.005),
        ("2026-06-01T08:02:00Z", 54.015),
        ("2026-06-01T08:03:00Z", 54.03),
        ("2026-06-01T08:04:00Z", 54.01),
    ];
    let expected = vec![
        ("2026-06-01T08:01:00Z".to_owned(), "geofence_enter".to_owned()),
        ("2026-06-01T08:03:00Z".to_owned(), "geofence_exit".to_owned()),
        ("2026-06-01T08:04:00Z".to_owned(), "geofence_enter".to_owned()),
    ];
    for order in [vec![0, 1, 2, 3, 4], vec![4, 3, 2, 1, 0], vec![2, 4, 0, 3, 1, 2]] {
        let mut h = Harness::start(None, redis_url(), None).await;
        let fence: i64 = h
            .postgres
            .query_one(
                "INSERT INTO geofences (tenant_id, name, shape) VALUES ($1, 'depot',
                   '{\"polygon\": [[54.0, 24.9], [54.0, 25.1], [54.02, 25.1], [54.02, 24.9]]}') RETURNING id",
                &[&h.tenant_id],
            )
            .await
            .expect("fence")
            .get(0);
        // The processor reads geofences at start (and every few seconds).
        h.stop_processor().await;
        h.run_processor();
        for index in order {
            let (time, lat) = track[index];
            h.publish_positions(&[position(time, lat, 30.0, true, json!({}))]).await;
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        eventually("5 rows", || async { h.count("SELECT count(*) FROM positions").await == 5 }).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let rows = h
            .postgres
            .query("SELECT rfc3339(time), kind, ref FROM events WHERE kind LIKE 'geofence%' ORDER BY time, kind", &[])
            .await
            .expect("events");
        let events: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(events, expected);
        assert!(rows.iter().all(|r| r.get::<_, i64>(2) == fence), "each names its geofence");
        h.stop_processor().await;
    }
}

#[tokio::test]
async fn status_and_device_messages_are_stored() {
    let mut h = Harness::start(None, redis_url(), None).await;
    let live_subject = format!("{}.event.{}.{}", h.config.nats.subject_prefix, h.tenant_id, h.device_id);
    let mut live_events = h.nats.subscribe(live_subject).await.expect("subscribe");
    h.publish_raw(
        "status",
        json!({"tenant_id": h.tenant_id, "device_id": h.device_id, "device": common::IMEI,
        "online": true, "time": "2026-05-01T08:00:00.5Z"})
        .to_string(),
    )
    .await;
    let answer = json!({"tenant_id": h.tenant_id, "device_id": h.device_id, "device": common::IMEI, "kind": "command_response",
        "received": "2026-05-01T08:00:01Z", "hex": "6f6b", "text": "ok", "command_id": "c1"});
    h.publish_raw("msg", answer.to_string()).await;
    h.publish_raw("msg", answer.to_string()).await;
    eventually("online in live state", || async { h.live_field("online").await.as_deref() == Some("1") }).await;
    eventually("message stored", || async { h.count("SELECT count(*) FROM device_messages").await == 1 }).await;
    assert_eq!(h.count("SELECT count(*) FROM events WHERE kind = 'online'").await, 1);
    let pushed =
        tokio::time::timeout(std::time::Duration::from_secs(10), live_events.next()).await.expect("event pushed");
    let pushed: serde_json::Value = serde_json::from_slice(&pushed.expect("message").payload).expect("json");
    assert_eq!(pushed["kind"], "online");
    h.stop_processor().await;
}

#[tokio::test]
async fn a_postgres_restart_mid_stream_loses_nothing() {
    let pg = PrivatePostgres::start();
    let mut h = Harness::start(Some(pg.url()), redis_url(), None).await;
    let time = |i: usize| format!("2026-06-01T{:02}:{:02}:{:02}Z", i / 3600, i / 60 % 60, i % 60);
    for i in 0..50 {
        h.publish_positions(&[position(&time(i), 54.0, 10.0, true, json!({}))]).await;
    }
    eventually("first half stored", || async { h.count("SELECT count(*) FROM positions").await == 50 }).await;
    pg.kill();
    for i in 50..150 {
        h.publish_positions(&[position(&time(i), 54.0, 10.0, true, json!({}))]).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    pg.restart();
    let check = fleetgate_store::connect(&pg.url()).await.expect("reconnect");
    eventually("every position stored after the restart", || {
        let check = &check;
        async move {
            let n: i64 = check.query_one("SELECT count(*) FROM positions", &[]).await.map(|r| r.get(0)).unwrap_or(0);
            n == 150
        }
    })
    .await;
    let distinct: i64 =
        check.query_one("SELECT count(DISTINCT fix_time) FROM positions", &[]).await.expect("count").get(0);
    assert_eq!(distinct, 150, "each exactly once");
    h.stop_processor().await;
}

#[tokio::test]
async fn with_redis_down_history_continues_and_live_state_catches_up() {
    let mut redis = PrivateRedis::start();
    let mut h = Harness::start(None, redis.url(), None).await;
    h.publish_positions(&[position("2026-07-01T10:00:00Z", 54.0, 10.0, true, json!({}))]).await;
    eventually("live", || async { h.live_field("fix_time").await.is_some() }).await;
    redis.kill();
    h.publish_positions(&[position("2026-07-01T10:05:00Z", 55.0, 10.0, true, json!({"fuel_level": 42}))]).await;
    eventually("history continues", || async { h.count("SELECT count(*) FROM positions").await == 2 }).await;
    eventually("the device is owed a rebuild", || async { h.count("SELECT count(*) FROM live_pending").await == 1 })
        .await;
    redis.restart();
    h.redis = redis::Client::open(redis.url().as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis back");
    eventually("live state caught up", || async {
        h.live_field("position").await.is_some_and(|p| p.contains("2026-07-01T10:05:00Z"))
            && h.count("SELECT count(*) FROM live_pending").await == 0
    })
    .await;
    assert_eq!(h.live_field("sensors").await.as_deref(), Some(r#"{"fuel_level": 42}"#), "sensors rebuilt from jsonb");
    h.stop_processor().await;
}

#[tokio::test]
async fn a_redis_that_restarts_empty_gets_every_live_state_back_from_history() {
    let mut redis = PrivateRedis::start();
    let mut h = Harness::start(None, redis.url(), None).await;
    h.publish_positions(&[position("2026-07-01T10:00:00Z", 54.0, 10.0, true, json!({"fuel_level": 40}))]).await;
    eventually("live", || async { h.live_field("fix_time").await.is_some() }).await;
    // Between two batches, so no write fails and nothing lands in live_pending: only
    // noticing that Redis came back empty can bring the device back.
    redis.kill();
    redis.restart();
    h.redis = redis::Client::open(redis.url().as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis back");
    eventually("live state rebuilt without new data", || async {
        h.live_field("position").await.is_some_and(|p| p.contains("2026-07-01T10:00:00Z"))
    })
    .await;
    assert_eq!(h.live_field("sensors").await.as_deref(), Some(r#"{"fuel_level": 40}"#));
    h.stop_processor().await;
}

async fn partition_names(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'positions'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("partitions");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_past_the_retention() {
    let (_, url) = fleetgate_testkit::isolated_schema(&fleetgate_testkit::base_url(), "retention")
        .await
        .expect("postgres reachable");
    let mut client = fleetgate_store::connect(&url).await.expect("connect");
    fleetgate_store::migrate(&mut client).await.expect("migrate");
    let partitions = fleetgate_store::partitions::Partitions::default();
    let now = fleetgate_codecs::time::UtcMillis::parse_rfc3339("2026-11-25T12:00:00Z").expect("time");
    // A black-box upload from last year made its month; this month and two ahead exist.
    let old = fleetgate_codecs::time::UtcMillis::parse_rfc3339("2025-10-03T00:00:00Z").expect("time");
    let (year, month) = old.year_month();
    partitions.ensure(&mut client, [year * 12 + i64::from(month) - 1]).await.expect("old month");
    partitions.ensure_ahead(&mut client, now, 2).await.expect("ahead");
    assert_eq!(
        partition_names(&client).await,
        [
            "positions_before_2000",
            "positions_y2025m10",
            "positions_y2026m11",
            "positions_y2026m12",
            "positions_y2027m01"
        ]
    );
    // Twelve months of retention: October 2025 goes, November 2025 onwards would stay.
    let dropped = partitions.drop_expired(&mut client, now, 12).await.expect("retention");
    assert_eq!(dropped, ["positions_y2025m10"]);
    assert_eq!(partition_names(&client).await.len(), 4);
    assert!(partitions.drop_expired(&mut client, now, 0).await.expect("keep forever").is_empty());
    // The report segments of the dropped month go too.
    client
        .batch_execute(
            "INSERT INTO segments (device_id, start_time, end_time, samples, moving, distance_m, first_distance_m,
                                   max_speed, max_gap_ms, odometer_rising, fuel_readings, fuel_falls)
             VALUES (1, '2025-10-31T23:00:00Z', '2025-10-31T23:59:59Z', 2, false, 0, 0, 0, 0, true, 0, 0),
                    (1, '2025-11-01T00:00:00Z', '2025-11-01T01:00:00Z', 2, false, 0, 0, 0, 0, true, 0, 0)",
        )
        .await
        .expect("segments");
    let oldest = partitions.start_of(partitions.oldest_kept(now, 12));
    assert_eq!(fleetgate_processor::segments::drop_before(&client, oldest).await.expect("drop segments"), 1);
}

#[tokio::test]
async fn archived_frames_are_indexed_once_and_dropped_past_their_days() {
    use fleetgate_contracts::archive::{Record, format_time};
    use fleetgate_contracts::{DeviceId, TenantId};
    let (_, url) =
        fleetgate_testkit::isolated_schema(&fleetgate_testkit::base_url(), "frames").await.expect("postgres reachable");
    let mut client = fleetgate_store::connect(&url).await.expect("connect");
    fleetgate_store::migrate(&mut client).await.expect("migrate");
    let partitions = fleetgate_processor::archive::partitions();
    let now = fleetgate_codecs::time::UtcMillis::parse_rfc3339("2026-11-25T12:00:00Z").expect("time");
    let day = 86_400_000;
    // A keep-alive of a registered Wialon device as the gateway archives it.
    let keepalive = |time: i64| Record {
        tenant_id: Some(TenantId(1)),
        device_id: Some(DeviceId(2)),
        device: Some("355217044956192".into()),
        protocol: "wialon".into(),
        transport: "tcp".into(),
        connection: format!("{:016x}", 7),
        direction: "in".into(),
        time: format_time(fleetgate_codecs::time::UtcMillis(time)),
        hex: "2350230d0a".into(),
        size: 5,
        truncated: false,
        outcome: "keepalive".into(),
        positions: None,
        kind: None,
        offset: None,
        error: None,
        reply: Some("234150230d0a".into()),
    };
    let row = |seq: u64, record: &Record| {
        let payload = serde_json::to_vec(record).expect("json");
        fleetgate_processor::archive::read_record(seq, &payload).expect("reads").expect("a device's frame")
    };
    let refused =
        Record { outcome: "refused".into(), offset: Some(40), error: Some("crc mismatch".into()), ..keepalive(now.0) };
    let rows = vec![row(1, &keepalive(now.0 - 10 * day)), row(2, &keepalive(now.0 - 3 * day)), row(3, &refused)];
    let inserted = fleetgate_processor::archive::insert(&mut client, &partitions, &rows).await.expect("insert");
    assert_eq!(inserted, 3);
    // A redelivered record is the same row.
    let again = fleetgate_processor::archive::insert(&mut client, &partitions, &rows[2..]).await.expect("insert");
    assert_eq!(again, 0);
    let row = client
        .query_one(
            "SELECT outcome, error_offset, error, convert_from(reply, 'UTF8') FROM device_frames WHERE seq = 3",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "refused");
    assert_eq!(row.get::<_, i64>(1), 40);
    assert_eq!(row.get::<_, String>(2), "crc mismatch");
    assert_eq!(row.get::<_, String>(3), "#AP#\r\n");

    // Seven days kept: the frame from ten days ago goes with its day.
    let dropped = partitions.drop_expired(&mut client, now, 7).await.expect("retention");
    assert_eq!(dropped, ["device_frames_d20261115"]);
    let left: Vec<i64> = client
        .query("SELECT seq FROM device_frames ORDER BY seq", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [2, 3]);

    // Records of unregistered devices stay in the stream only; garbage says why.
    let stranger = Record {
        tenant_id: None,
        device_id: None,
        device: Some("111".into()),
        outcome: "login_refused".into(),
        reply: None,
        ..keepalive(now.0)
    };
    let payload = serde_json::to_vec(&stranger).expect("json");
    assert!(fleetgate_processor::archive::read_record(9, &payload).expect("reads").is_none());
    assert!(fleetgate_processor::archive::read_record(9, b"{\"nope\": 1}").is_err());
}
