//! Load tool for the gateway: many Teltonika devices over TCP, each sending codec 8E
//! frames at a steady pace and timing every acknowledgement; or, with `--idle`, many
//! devices that log in and stay silent, to measure memory per connection.
//!
//! The devices must be registered (identifiers `--imei-base`, `--imei-base + 1`, ...);
//! `benches/gateway_bench.sh` does that, starts the gateway and runs this tool.
//!
//! ```text
//! gateway_load --address 127.0.0.1:5027 --devices 1000 --rate 20000 --seconds 20 [--records 1]
//! gateway_load --address 127.0.0.1:5027 --devices 100000 --idle --seconds 30
//! ```
//! Prints one JSON object: frames sent and acknowledged, positions/s, ack latency
//! percentiles (ms).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fleetgate_benches::typical_record;
use fleetgate_codecs::teltonika::CODEC_8E;
use fleetgate_codecs::teltonika::encode::{avl_packet, handshake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Args {
    address: SocketAddr,
    devices: u64,
    rate: f64,
    seconds: u64,
    records: usize,
    imei_base: u64,
    idle: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        address: "127.0.0.1:5027".parse().map_err(|e| format!("{e}"))?,
        devices: 100,
        rate: 1000.0,
        seconds: 10,
        records: 1,
        imei_base: 100_000_000_000_000,
        idle: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--address" => args.address = value()?.parse().map_err(|e| format!("--address: {e}"))?,
            "--devices" => args.devices = value()?.parse().map_err(|e| format!("--devices: {e}"))?,
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--records" => args.records = value()?.parse().map_err(|e| format!("--records: {e}"))?,
            "--imei-base" => args.imei_base = value()?.parse().map_err(|e| format!("--imei-base: {e}"))?,
            "--idle" => args.idle = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// Connects from 127.0.0.x, spreading devices over source addresses so that 100,000
/// connections do not run out of ephemeral ports on one address.
async fn connect(address: SocketAddr, index: u64) -> std::io::Result<TcpStream> {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (index / 20_000) as u8, 1 + (index % 200) as u8));
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn login(address: SocketAddr, index: u64, imei: &str) -> std::io::Result<TcpStream> {
    let mut stream = connect(address, index).await?;
    stream.write_all(&handshake(imei)).await?;
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply).await?;
    if reply[0] != 1 {
        return Err(std::io::Error::other(format!("device {imei} refused: is it registered?")));
    }
    Ok(stream)
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
}

async fn device(args: Arc<Args>, index: u64, totals: Arc<Totals>, start: Instant) -> Result<Vec<u32>, std::io::Error> {
    let imei = (args.imei_base + index).to_string();
    let mut stream = login(args.address, index, &imei).await?;
    let per_device = args.rate / args.records as f64 / args.devices as f64;
    let interval = Duration::from_secs_f64(1.0 / per_device.max(1e-6));
    // Spread the devices' first frames over one interval.
    let offset = interval.mul_f64((index as f64 * 0.618_033_988_75).fract());
    let mut next = tokio::time::Instant::from_std(start) + offset;
    let end = start + Duration::from_secs(args.seconds);
    let mut latencies = Vec::new();
    let mut frame = 0u32;
    while Instant::now() < end {
        tokio::time::sleep_until(next).await;
        next += interval;
        let records: Vec<_> =
            (0..args.records as u32).map(|r| typical_record(CODEC_8E, frame * 1000 + r + index as u32 * 7)).collect();
        let packet = avl_packet(CODEC_8E, &records);
        frame += 1;
        let sent = Instant::now();
        totals.sent.fetch_add(1, Relaxed);
        stream.write_all(&packet).await?;
        let mut ack = [0u8; 4];
        stream.read_exact(&mut ack).await?;
        if u32::from_be_bytes(ack) as usize == args.records {
            totals.acked.fetch_add(1, Relaxed);
            latencies.push(sent.elapsed().as_micros() as u32);
        } else {
            totals.failed.fetch_add(1, Relaxed);
        }
    }
    Ok(latencies)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[at]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(error) => {
            eprintln!("gateway_load: {error}");
            std::process::exit(2);
        }
    };
    if args.idle {
        let started = Instant::now();
        let mut streams = Vec::with_capacity(args.devices as usize);
        let mut failed = 0u64;
        for index in 0..args.devices {
            match login(args.address, index, &(args.imei_base + index).to_string()).await {
                Ok(stream) => streams.push(stream),
                Err(error) => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("gateway_load: {error}");
                    }
                }
            }
        }
        println!(
            "{{\"idle_connections\":{},\"failed\":{failed},\"connect_seconds\":{:.1}}}",
            streams.len(),
            started.elapsed().as_secs_f64()
        );
        // Hold them while the caller measures the gateway.
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        return;
    }
    let totals = Arc::new(Totals::default());
    let start = Instant::now() + Duration::from_millis(500);
    let tasks: Vec<_> =
        (0..args.devices).map(|i| tokio::spawn(device(args.clone(), i, totals.clone(), start))).collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(error)) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("gateway_load: {error}");
                }
            }
            Err(_) => errors += 1,
        }
    }
    latencies.sort_unstable();
    let acked = totals.acked.load(Relaxed);
    let seconds = args.seconds as f64;
    println!(
        "{{\"devices\":{},\"target_positions_per_s\":{},\"records_per_frame\":{},\"sent\":{},\"acked\":{acked},\"failed\":{},\"device_errors\":{errors},\"positions_per_s\":{:.0},\"ack_ms_p50\":{:.2},\"ack_ms_p99\":{:.2},\"ack_ms_max\":{:.2}}}",
        args.devices,
        args.rate,
        args.records,
        totals.sent.load(Relaxed),
        totals.failed.load(Relaxed),
        acked as f64 * args.records as f64 / seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}
