//! The device side of the bad-input catalogue (docs/BAD_INPUT.md): each bad input gets a
//! clear answer or a close, a counter in /metrics, and no effect on a well-behaved
//! device connected at the same time. (Lying lengths, garbage, bad checksums, unknown
//! devices, the connection cap and NATS outages have their tests in gateway.rs.)

mod common;

use std::time::Duration;

use common::*;
use fleetgate_codecs::Protocol;
use fleetgate_codecs::teltonika::encode::handshake;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

/// A logged-in Teltonika device that must keep being acknowledged throughout.
async fn bystander(harness: &Harness) -> TcpStream {
    let mut device = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    device.write_all(&handshake(TELTONIKA_IMEI)).await.expect("write");
    assert_eq!(read_n(&mut device, 1, WAIT).await, [1]);
    device
}

async fn still_acknowledged(device: &mut TcpStream, time_ms: u64) {
    device.write_all(&teltonika_packet(time_ms)).await.expect("write");
    assert_eq!(read_n(device, 4, WAIT).await, [0, 0, 0, 1], "the well-behaved device is still served");
}

fn counter(metrics: &str, reason: &str) -> u64 {
    let line = format!("fleetgate_gateway_refusals_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_is_closed_by_the_handshake_and_idle_timeouts() {
    let harness = Harness::start(&nats_url(), |config| {
        config.gateway.handshake_timeout_s = 1;
        for listener in &mut config.gateway.listeners {
            listener.idle_timeout_s = 2;
        }
    })
    .await;
    let mut good = bystander(&harness).await;
    // One byte at a time of a handshake that never completes in time.
    let mut before_login = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    let mut closed_at = None;
    for (i, byte) in handshake(TELTONIKA_IMEI).iter().enumerate() {
        if before_login.write_all(&[*byte]).await.is_err() {
            closed_at = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        still_acknowledged(&mut good, 1_700_000_000_000 + i as u64 * 1000).await;
    }
    assert!(closed(&mut before_login, WAIT).await, "closed by the handshake timeout (stopped at byte {closed_at:?})");
    // Logged in, then a frame trickled a byte at a time: the idle timeout closes it.
    let mut after_login = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    after_login.write_all(b"#L#355217044956192;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut after_login, 7, WAIT).await, b"#AL#1\r\n");
    for (i, byte) in b"#SD#270413;205601;5544.6025;N;03739".iter().enumerate() {
        if after_login.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        if i % 4 == 0 {
            // The bystander is not idle meanwhile.
            still_acknowledged(&mut good, 1_700_000_050_000 + i as u64 * 1000).await;
        }
    }
    assert!(closed(&mut after_login, WAIT).await, "closed by the idle timeout");
    still_acknowledged(&mut good, 1_700_000_100_000).await;
    let metrics = harness.metrics_text().await;
    assert_eq!(counter(&metrics, "handshake_timeout"), 1, "{metrics}");
    assert_eq!(counter(&metrics, "idle_timeout"), 1, "{metrics}");
    assert_eq!(counter(&metrics, "incomplete_frame"), 2, "both ended inside a frame: {metrics}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cut_off_by_a_closed_connection_is_not_acknowledged_and_counted() {
    let harness = Harness::start(&nats_url(), |_| {}).await;
    let mut good = bystander(&harness).await;
    let mut cut = TcpStream::connect(harness.tcp(Protocol::TELTONIKA)).await.expect("connect");
    cut.write_all(&handshake(TELTONIKA_IMEI)).await.expect("write");
    assert_eq!(read_n(&mut cut, 1, WAIT).await, [1]);
    let packet = teltonika_packet(1_700_000_000_000);
    cut.write_all(&packet[..packet.len() - 5]).await.expect("write");
    cut.shutdown().await.expect("half-close");
    assert!(read_n(&mut cut, 4, Duration::from_millis(500)).await.is_empty(), "no acknowledgement");
    still_acknowledged(&mut good, 1_700_000_001_000).await;
    let mut counted = 0;
    for _ in 0..50 {
        counted = counter(&harness.metrics_text().await, "incomplete_frame");
        if counted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 1);
    assert_eq!(harness.stored_frames().await, 1, "only the bystander's frame is stored");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_text_line_is_refused_unbuffered_and_the_session_goes_on() {
    let harness = Harness::start(&nats_url(), |config| config.gateway.limits.max_line_len = 1024).await;
    let mut good = bystander(&harness).await;
    let mut wialon = TcpStream::connect(harness.tcp(Protocol::WIALON)).await.expect("connect");
    wialon.write_all(b"#L#355217044956192;NA\r\n").await.expect("write");
    assert_eq!(read_n(&mut wialon, 7, WAIT).await, b"#AL#1\r\n");
    // 1 MiB of one line, in pieces, then a good line.
    wialon.write_all(b"#D#").await.expect("write");
    for _ in 0..64 {
        wialon.write_all(&[b'7'; 16 * 1024]).await.expect("write");
    }
    wialon.write_all(b"\r\n#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n").await.expect("write");
    assert_eq!(read_n(&mut wialon, 8 + 8, WAIT).await, b"#AD#-1\r\n#ASD#1\r\n", "refused, then the next line served");
    still_acknowledged(&mut good, 1_700_000_000_000).await;
    assert_eq!(counter(&harness.metrics_text().await, "frame"), 1);
    harness.stop().await;
}
