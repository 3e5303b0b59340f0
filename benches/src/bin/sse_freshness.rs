//! Live freshness through the API: reads `GET /v1/stream` (Server-Sent Events) and, for
//! every position pushed, how long ago its device stamped it (`time`; the simulator
//! stamps a report when it sends it). Positions in the initial snapshot are skipped.
//!
//! ```text
//! sse_freshness --address 127.0.0.1:8080 --key fgk_... --seconds 30
//! ```
//! Prints one JSON object with the count and the percentiles in milliseconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetgate_codecs::time::UtcMillis;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut address, mut key, mut seconds) = ("127.0.0.1:8080".to_owned(), String::new(), 30u64);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--address" => address = value,
            "--key" => key = value,
            "--seconds" => seconds = value.parse().unwrap_or(30),
            other => {
                eprintln!("sse_freshness: unknown option {other}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        eprintln!("sse_freshness: cannot connect to {address}");
        return std::process::ExitCode::FAILURE;
    };
    let request = format!("GET /v1/stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let mut reader = BufReader::new(stream);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut latencies: Vec<i64> = Vec::new();
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => continue,
        }
        // The snapshot comes first; measure only what is pushed after it.
        if started.elapsed() < Duration::from_secs(2) {
            continue;
        }
        let Some(data) = line.strip_prefix("data:") else { continue };
        let Ok(position) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
        let Some(time) = position["time"].as_str().and_then(UtcMillis::parse_rfc3339) else { continue };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        latencies.push(now - time.0);
    }
    latencies.sort_unstable();
    let at =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied();
    println!(
        "{}",
        serde_json::json!({"positions": latencies.len(), "freshness_ms": {"p50": at(0.5), "p99": at(0.99), "max": latencies.last()}})
    );
    std::process::ExitCode::SUCCESS
}
