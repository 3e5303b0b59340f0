//! The gateway over real sockets, with the real Postgres and NATS: replies, storage
//! before acknowledgement, refusals, timeouts, NATS outages and shutdown.

mod common;

use std::time::Duration;

use common::*;
use fleetgate_codecs::Protocol;
use fleetgate_codecs::teltonika::encode::handshake;
use fleetgate_testkit::PrivateNats;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(5);

async fn logged_in_teltonika(harness: &Harness) -> TcpStream {
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    device.write_all(&handshake(TELTONIKA_IMEI)).await.expect("write");
    assert_eq!(read_n(&mut device, 1, WAIT).await, [1]);
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_anywhere_get_exactly_their_replies() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut stream = handshake(TELTONIKA_IMEI).to_vec();
    for i in 0..5 {
        stream.extend_from_slice(&teltonika_packet(1_700_000_000_000 + i * 1000));
        stream.push(0xFF);
    }
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    // Split at pseudo-random boundaries (a fixed LCG, so a failure replays).
    let mut seed = 12_345u64;
    let mut at = 0;
    while at < stream.len() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let len = 1 + (seed >> 33) as usize % 40;
        let end = (at + len).min(stream.len());
        device.write_all(&stream[at..end]).await.expect("write");
        device.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(2)).await;
        at = end;
    }
    let mut expected = vec![1u8];
    for _ in 0..5 {
        expected.extend_from_slice(&[0, 0, 0, 1]);
    }
    assert_eq!(read_n(&mut device, expected.len(), WAIT).await, expected);
    assert!(!closed(&mut device, Duration::from_millis(200)).await, "no extra bytes, still open");
    assert_eq!(harness.stored_frames().await, 5);
    let payloads = harness.stored_payloads().await;
    assert_eq!(payloads[0]["tenant_id"], harness.tenant_id);
    let position = &payloads[0]["positions"][0];
    assert_eq!(position["device"], TELTONIKA_IMEI);
    assert_eq!(position["time"], "2023-11-14T22:13:20Z");
    assert!(position["received"].is_string(), "stored positions carry the receive time");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_frame_is_acknowledged_again_and_stored_once() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let packet = teltonika_packet(1_700_000_000_000);
    for _ in 0..2 {
        // The device did not get the first ack (say), reconnects and resends.
        let mut device = logged_in_teltonika(&harness).await;
        device.write_all(&packet).await.expect("write");
        assert_eq!(read_n(&mut device, 4, WAIT).await, [0, 0, 0, 1]);
    }
    assert_eq!(harness.stored_frames().await, 1);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_is_refused_and_counted() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    device.write_all(&handshake("111111111111111")).await.expect("write");
    assert_eq!(read_n(&mut device, 1, WAIT).await, [0]);
    assert!(closed(&mut device, WAIT).await);
    let mut wialon = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    wialon.write_all(b"#L#999;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut wialon, 7, WAIT).await, b"#AL#0\r\n");
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_refusals_total{reason=\"unknown_device\"} 2"));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_is_registered_when_its_tenant_enabled_auto_registration() {
    let harness = Harness::start(&nats_url(), |config| config.gateway.registry_refresh_s = 1).await;
    harness
        .postgres
        .execute("UPDATE tenants SET auto_register = true WHERE id = $1", &[&harness.tenant_id])
        .await
        .expect("enable");
    // The gateway learns it at its next registry reload.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    device.write_all(&handshake("352093081452251")).await.expect("write");
    assert_eq!(read_n(&mut device, 1, WAIT).await, [1], "accepted");
    device.write_all(&teltonika_packet(1_700_000_000_000)).await.expect("write");
    assert_eq!(read_n(&mut device, 4, WAIT).await, [0, 0, 0, 1], "its data stored and acknowledged");
    let row = harness
        .postgres
        .query_one("SELECT tenant_id, protocol FROM devices WHERE identifier = '352093081452251'", &[])
        .await
        .expect("registered");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (harness.tenant_id, "teltonika".to_owned()));
    // An identifier no device could have is still refused.
    let mut wialon = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    wialon.write_all(b"#L#bad identifier;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut wialon, 7, WAIT).await, b"#AL#0\r\n");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_handshake_times_out() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    device.write_all(&[0x00]).await.expect("one byte of a handshake");
    assert!(closed(&mut device, Duration::from_secs(10)).await, "closed after the 2 s handshake timeout");
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_refusals_total{reason=\"handshake_timeout\"} 1"));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_lying_lengths_close_only_their_connection_while_1000_others_work() {
    let harness = Harness::start(&nats_url(), |config| config.gateway.max_connections = 5000).await;
    let address = harness.tcp(Protocol::TELTONIKA);
    let mut devices = Vec::new();
    for _ in 0..1000 {
        devices.push(logged_in_teltonika(&harness).await);
    }
    let mut oversized = logged_in_teltonika(&harness).await;
    oversized.write_all(&[0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0x08]).await.expect("write");
    let mut garbage = TcpStream::connect(address).await.expect("connect");
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: tracker\r\n\r\n").await.expect("write");
    assert!(closed(&mut oversized, WAIT).await);
    assert!(closed(&mut garbage, WAIT).await);
    let tasks: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, mut device)| {
            tokio::spawn(async move {
                device.write_all(&teltonika_packet(1_700_000_000_000 + i as u64)).await.expect("write");
                read_n(&mut device, 4, Duration::from_secs(30)).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), [0, 0, 0, 1]);
    }
    assert_eq!(harness.stored_frames().await, 1000);
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_refusals_total{reason=\"fatal\"} 2"));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_while_nats_is_down_and_the_resend_is_stored_once() {
    let mut nats = PrivateNats::start();
    let harness = Harness::start(&nats.url(), |_| {}).await;
    let first = teltonika_packet(1_700_000_000_000);
    let second = teltonika_packet(1_700_000_001_000);
    let mut device = logged_in_teltonika(&harness).await;
    device.write_all(&first).await.expect("write");
    assert_eq!(read_n(&mut device, 4, WAIT).await, [0, 0, 0, 1]);

    nats.kill();
    device.write_all(&second).await.expect("write");
    // No acknowledgement: the gateway closes after the publish timeout instead.
    assert_eq!(read_n(&mut device, 4, Duration::from_secs(10)).await, Vec::<u8>::new());
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_nats_healthy 0"));

    nats.restart();
    // The device reconnects and resends what was not acknowledged.
    let mut acked = false;
    for _ in 0..20 {
        let mut device = logged_in_teltonika(&harness).await;
        device.write_all(&second).await.expect("write");
        if read_n(&mut device, 4, Duration::from_secs(5)).await == [0, 0, 0, 1] {
            acked = true;
            break;
        }
    }
    assert!(acked, "acknowledged once NATS is back");
    assert_eq!(harness.stored_frames().await, 2, "each frame stored exactly once");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_loses_nothing_that_was_acknowledged() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut senders = Vec::new();
    for d in 0..20u64 {
        let mut device = logged_in_teltonika(&harness).await;
        senders.push(tokio::spawn(async move {
            let mut acked = 0u64;
            for i in 0..10_000u64 {
                if device.write_all(&teltonika_packet(1_700_000_000_000 + d * 1_000_000 + i)).await.is_err() {
                    break;
                }
                if read_n(&mut device, 4, Duration::from_secs(10)).await != [0, 0, 0, 1] {
                    break;
                }
                acked += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shutdown = harness.shutdown.clone();
    shutdown.cancel();
    let mut acked = 0;
    for sender in senders {
        acked += sender.await.expect("sender");
    }
    assert!(acked > 0);
    let stored = harness.stored_frames().await;
    assert!(stored >= acked, "stored {stored} < acknowledged {acked}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wialon_over_tcp_and_teltonika_over_udp() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut wialon = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    wialon
        .write_all(
            b"#L#2.0;355217044956192;NA;E335\r\n#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;1985\r\n#P#\r\n",
        )
        .await
        .expect("write");
    assert_eq!(read_n(&mut wialon, 7 + 8 + 6, WAIT).await, b"#AL#1\r\n#ASD#1\r\n#AP#\r\n");

    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let datagram = hex(
        "003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001",
    );
    // Not registered yet: no answer.
    udp.send_to(&datagram, harness.udp(Protocol::TELTONIKA)).await.expect("send");
    let mut buffer = [0u8; 64];
    assert!(tokio::time::timeout(Duration::from_millis(500), udp.recv_from(&mut buffer)).await.is_err());
    harness
        .postgres
        .execute(
            "INSERT INTO devices (tenant_id, identifier, protocol) VALUES ($1, '352093086403655', 'teltonika')",
            &[&harness.tenant_id],
        )
        .await
        .expect("register");
    // The API announces the change on the registry subject.
    let nats = async_nats::connect(harness.config.nats.url.as_str()).await.expect("nats");
    let subject = fleetgate_contracts::stream::registry_subject(&harness.config.nats.subject_prefix);
    let mut answer = None;
    for _ in 0..50 {
        nats.publish(subject.clone(), "352093086403655".into()).await.expect("publish");
        nats.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
        udp.send_to(&datagram, harness.udp(Protocol::TELTONIKA)).await.expect("send");
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(300), udp.recv_from(&mut buffer)).await {
            answer = Some(buffer[..n].to_vec());
            break;
        }
    }
    assert_eq!(answer, Some(hex("0005CAFE010501")));
    assert_eq!(harness.stored_frames().await, 2, "one Wialon frame, one UDP datagram (resends deduplicated)");
    harness.stop().await;
}

/// The archive records in the stream, oldest first.
async fn archive_records(harness: &Harness) -> Vec<serde_json::Value> {
    use futures_util::StreamExt;
    let js = harness.jetstream().await;
    let stream =
        js.get_stream(fleetgate_contracts::stream::archive_stream(&harness.config.nats)).await.expect("archive");
    let mut consumer =
        stream.create_consumer(async_nats::jetstream::consumer::pull::Config::default()).await.expect("consumer");
    let n = consumer.info().await.expect("info").num_pending as usize;
    if n == 0 {
        return Vec::new();
    }
    let mut messages = consumer.fetch().max_messages(n).messages().await.expect("fetch");
    let mut out = Vec::new();
    while let Some(Ok(message)) = messages.next().await {
        for line in message.payload.split(|b| *b == b'\n') {
            out.push(serde_json::from_slice(line).expect("one record per line"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_keeps_every_frame_and_drops_the_oldest_past_its_size() {
    let cap = 64 * 1024;
    let harness = Harness::start(&nats_url(), |config| config.nats.archive_max_bytes = cap).await;
    let mut device = logged_in_teltonika(&harness).await;
    let mut last = bytes::Bytes::new();
    for i in 0..300 {
        last = teltonika_packet(1_700_000_000_000 + i * 1000);
        device.write_all(&last).await.expect("write");
        assert_eq!(read_n(&mut device, 4, WAIT).await, [0, 0, 0, 1]);
    }
    drop(device);
    // The same device over UDP, and an unknown device over TCP.
    let record = teltonika_record(1_700_000_100_000);
    let datagram = fleetgate_codecs::teltonika::encode::udp_datagram(7, 3, TELTONIKA_IMEI, 0x08, &[record]);
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    udp.send_to(&datagram, harness.udp(Protocol::TELTONIKA)).await.expect("send");
    let mut buffer = [0u8; 64];
    let (n, _) = tokio::time::timeout(WAIT, udp.recv_from(&mut buffer)).await.expect("answer").expect("recv");
    let udp_ack = buffer[..n].to_vec();
    let mut stranger = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    stranger.write_all(&handshake("111111111111111")).await.expect("write");
    assert_eq!(read_n(&mut stranger, 1, WAIT).await, [0]);

    let mut records = Vec::new();
    for _ in 0..100 {
        records = archive_records(&harness).await;
        if records.iter().any(|r| r["transport"] == "udp") && records.iter().any(|r| r["device"] == "111111111111111") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (strangers, records): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
        records.into_iter().partition(|r| r["device"] == "111111111111111");
    assert!(
        strangers.iter().any(|r| r["outcome"] == "login_refused" && r["reply"] == "00" && r.get("tenant_id").is_none()),
        "{strangers:?}"
    );
    let udp_record = records.last().expect("records").clone();
    assert_eq!(udp_record["outcome"], "positions");
    assert_eq!(udp_record["hex"], fleetgate_codecs::hex::HexDisplay(&datagram).to_string());
    assert_eq!(udp_record["reply"], fleetgate_codecs::hex::HexDisplay(&udp_ack).to_string());
    let tcp_last = &records[records.len() - 2];
    assert_eq!(
        (&tcp_last["outcome"], &tcp_last["positions"], &tcp_last["reply"], &tcp_last["transport"]),
        (&"positions".into(), &1.into(), &"00000001".into(), &"tcp".into())
    );
    assert_eq!(tcp_last["hex"], fleetgate_codecs::hex::HexDisplay(&last).to_string());
    assert_eq!(tcp_last["device"], TELTONIKA_IMEI);
    assert!(records.iter().all(|r| r["tenant_id"] == harness.tenant_id));
    // 1 login + 300 packets + 1 datagram were archived; the size cap dropped the oldest.
    let js = harness.jetstream().await;
    let mut archive =
        js.get_stream(fleetgate_contracts::stream::archive_stream(&harness.config.nats)).await.expect("archive");
    let info = archive.info().await.expect("info");
    assert!(info.state.bytes <= cap as u64, "{:?}", info.state);
    assert!(records.len() < 302 && info.state.first_sequence > 1, "{} kept, {:?}", records.len(), info.state);
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 86_400), "seven days by default");
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_archived_total"));
    harness.stop().await;
}

fn hex(text: &str) -> Vec<u8> {
    fleetgate_codecs::hex::decode(text.as_bytes()).expect("hex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_the_others_keep_working() {
    let harness = Harness::start(&nats_url(), |config| config.gateway.max_connections = 2).await;
    let mut first = logged_in_teltonika(&harness).await;
    let mut second = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    second.write_all(b"#L#355217044956192;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut second, 7, WAIT).await, b"#AL#1\r\n");
    let mut third = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    assert!(closed(&mut third, WAIT).await, "over the cap: closed at once");
    first.write_all(&teltonika_packet(1_700_000_000_000)).await.expect("write");
    assert_eq!(read_n(&mut first, 4, WAIT).await, [0, 0, 0, 1]);
    assert!(harness.metrics_text().await.contains("fleetgate_gateway_refusals_total{reason=\"connection_cap\"} 1"));
    drop(first);
    // A freed slot is usable again. Each try waits the full time for its answer: a try
    // given up on too early (on a loaded machine) would hold the slot the next one needs.
    let mut again = None;
    for _ in 0..20 {
        let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
        device.write_all(&handshake(TELTONIKA_IMEI)).await.expect("write");
        if read_n(&mut device, 1, WAIT).await == [1] {
            again = Some(device);
            break;
        }
        // Refused (closed at once): the first connection's slot is not free yet.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(again.is_some(), "a slot frees when a device leaves");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wialon_device_with_the_wrong_password_is_told_so() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    harness
        .postgres
        .execute("UPDATE devices SET password = 'secret' WHERE identifier = $1", &[&WIALON_IMEI])
        .await
        .expect("set password");
    let nats = async_nats::connect(harness.config.nats.url.as_str()).await.expect("nats");
    let subject = fleetgate_contracts::stream::registry_subject(&harness.config.nats.subject_prefix);
    let mut answer = Vec::new();
    for _ in 0..50 {
        nats.publish(subject.clone(), WIALON_IMEI.into()).await.expect("publish");
        nats.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut device = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
        device.write_all(b"#L#355217044956192;guess\r\n").await.expect("write");
        answer = read_n(&mut device, 8, Duration::from_secs(1)).await;
        if answer == b"#AL#01\r\n" {
            break;
        }
    }
    assert_eq!(answer, b"#AL#01\r\n");
    let mut device = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    device.write_all(b"#L#355217044956192;secret\r\n").await.expect("write");
    assert_eq!(read_n(&mut device, 7, WAIT).await, b"#AL#1\r\n");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_wait_for_their_device_and_each_answer_is_stored_with_its_command() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let subject = harness.command_subject(TELTONIKA_IMEI).await;
    let js = harness.jetstream().await;
    // Queued while the device is offline.
    js.publish(subject.clone(), r#"{"id":"c1","text":"getinfo"}"#.into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let mut device = logged_in_teltonika(&harness).await;
    let first = fleetgate_codecs::teltonika::encode_command(b"getinfo");
    assert_eq!(read_n(&mut device, first.len(), WAIT).await, first);
    // Queued while it is connected: held back until the first is answered.
    js.publish(subject.clone(), r#"{"id":"c2","hex":"03030000000185e8"}"#.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    assert_eq!(read_n(&mut device, 1, Duration::from_millis(500)).await, Vec::<u8>::new());
    let response = hex(
        "00000000000000900c010600000088494e493a323031392f372f323220373a3232205254433a323031392f372f323220373a3533205253543a32204552523a312053523a302042523a302043463a302046473a3020464c3a302054553a302f302055543a3020534d533a30204e4f4750533a303a3330204750533a31205341543a302052533a332052463a36352053463a31204d443a30010000c78f",
    );
    device.write_all(&response).await.expect("answer");
    let second = fleetgate_codecs::teltonika::encode_command(&hex("03030000000185e8"));
    assert_eq!(read_n(&mut device, second.len(), WAIT).await, second);
    device.write_all(&response).await.expect("answer");

    let mut answers = Vec::new();
    for _ in 0..50 {
        answers = harness.stored_messages().await;
        if answers.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<_> = answers.iter().map(|a| a["command_id"].clone()).collect();
    assert_eq!(ids, [serde_json::json!("c1"), serde_json::json!("c2")]);
    assert_eq!(answers[0]["kind"], "codec12_response");
    assert!(answers[0]["text"].as_str().is_some_and(|t| t.starts_with("INI:2019/7/22")));
    let mut queue = js.get_stream(&harness.config.nats.command_stream).await.expect("command stream");
    let mut left = u64::MAX;
    for _ in 0..50 {
        left = queue.info().await.expect("info").state.messages;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "answered commands leave the queue");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wialon_device_gets_its_command_as_a_text_message() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let subject = harness.command_subject(WIALON_IMEI).await;
    let mut device = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    device.write_all(b"#L#355217044956192;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut device, 7, WAIT).await, b"#AL#1\r\n");
    let js = harness.jetstream().await;
    js.publish(subject, r#"{"id":"w1","text":"Return to base"}"#.into()).await.expect("publish").await.expect("stored");
    assert_eq!(read_n(&mut device, 19, WAIT).await, b"#M#Return to base\r\n");
    harness.stop().await;
}
