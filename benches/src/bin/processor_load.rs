//! Load tool for the processor, against the local Postgres, Redis and NATS, in an
//! isolated schema, stream and key prefix of its own (dropped afterwards).
//!
//! ```text
//! processor_load throughput --positions 300000 [--devices 1000] [--per-message 5] [--workers 2] [--parked] [--late]
//! processor_load ratios --rows 20000
//! processor_load freshness --rate 20000 --seconds 30 [--devices 1000]
//! ```
//! - `throughput`: publishes every message first, then starts the processor and times
//!   how long it takes to drain the stream into Postgres and Redis. With `--parked` the
//!   vehicles stand still with the engine off and a fuel level (what fuel drain checks
//!   read), instead of driving. With `--late` every device's messages come newest first,
//!   so all but its first are late data (the path that derives stored windows again).
//! - `ratios`: the same kind of rows written row by row with INSERT (one statement and
//!   transaction each) and with one raw binary COPY, for comparison with `throughput`.
//! - `freshness`: publishes at a steady rate while the processor runs and times each
//!   position from its publish to its live update (published after Redis has it).
//!
//! Prints one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::Config;
use fleetgate_contracts::clock::now;
use fleetgate_processor::history::COPY_TYPES;
use fleetgate_store::rows::{Jsonb, Timestamp};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    mode: String,
    positions: u64,
    devices: i64,
    per_message: usize,
    workers: usize,
    rows: u64,
    rate: f64,
    seconds: u64,
    parked: bool,
    late: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("mode: throughput, ratios or freshness")?;
    let mut args = Args {
        mode,
        positions: 300_000,
        devices: 1000,
        per_message: 5,
        workers: 2,
        rows: 20_000,
        rate: 20_000.0,
        seconds: 30,
        parked: false,
        late: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--parked" {
            args.parked = true;
            continue;
        }
        if flag == "--late" {
            args.late = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--positions" => args.positions = value.parse().map_err(|e| bad(&e))?,
            "--devices" => args.devices = value.parse().map_err(|e| bad(&e))?,
            "--per-message" => args.per_message = value.parse().map_err(|e| bad(&e))?,
            "--workers" => args.workers = value.parse().map_err(|e| bad(&e))?,
            "--rows" => args.rows = value.parse().map_err(|e| bad(&e))?,
            "--rate" => args.rate = value.parse().map_err(|e| bad(&e))?,
            "--seconds" => args.seconds = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// A typical position: a moving vehicle with a dozen sensors.
fn position_json(device: i64, time: UtcMillis, received: UtcMillis, step: u64, parked: bool) -> String {
    let (lat, speed, driving) = match parked {
        false => (54.0 + (step % 10_000) as f64 * 1e-4, 52, true),
        true => (54.0, 0, false),
    };
    format!(
        r#"{{"device":"{}","protocol":"teltonika","time":"{time}","received":"{received}","lat":{lat},"lon":25.2694,"altitude":110,"speed":{speed},"course":90,"satellites":9,"valid":true,"attrs":{{"ignition":{driving},"motion":{driving},"power_voltage":12.6,"battery_voltage":4.1,"odometer":{},"gsm_signal":4,"fuel_level":63}},"io":{{"239":1,"240":1,"21":4,"66":12600,"67":4100,"16":{},"69":1,"181":9,"182":8,"24":{speed},"200":0,"89":63}}}}"#,
        350_000_000_000_000 + device,
        step * 100,
        step * 100,
    )
}

/// Publishes one positions message as the gateway would; returns the ack to await.
async fn publish(
    js: &jetstream::Context,
    setup: &Setup,
    device: i64,
    positions: &[String],
) -> Result<async_nats::jetstream::context::PublishAckFuture, Error> {
    let payload =
        format!(r#"{{"tenant_id":{},"device_id":{device},"positions":[{}]}}"#, setup.tenant_id, positions.join(","));
    let subject = format!("{}.pos.{}.{device}", setup.config.nats.subject_prefix, setup.tenant_id);
    Ok(js.publish(subject, payload.into()).await?)
}

struct Setup {
    config: Config,
    postgres: tokio_postgres::Client,
    schema: String,
    tenant_id: i64,
    first_device: i64,
}

async fn setup(devices: i64, workers: usize) -> Result<Setup, Error> {
    let base = fleetgate_testkit::base_url();
    let (schema, url) = fleetgate_testkit::isolated_schema(&base, "bench").await?;
    let mut postgres = fleetgate_store::connect(&url).await?;
    fleetgate_store::migrate(&mut postgres).await?;
    let tenant_id: i64 =
        postgres.query_one("INSERT INTO tenants (name) VALUES ('bench') RETURNING id", &[]).await?.get(0);
    let first_device: i64 = postgres
        .query_one(
            "WITH d AS (INSERT INTO devices (tenant_id, identifier, protocol)
               SELECT $1, (350000000000000 + n)::text, 'teltonika' FROM generate_series(1, $2::bigint) n RETURNING id)
             SELECT min(id) FROM d",
            &[&tenant_id, &devices],
        )
        .await?
        .get(0);
    let tag = format!("{:x}", now().0);
    let mut config = Config::default();
    config.postgres.url = url;
    config.nats.stream = format!("BENCH{tag}");
    config.nats.command_stream = format!("BENCH{tag}_CMD");
    config.nats.subject_prefix = format!("bench{tag}");
    config.redis.key_prefix = format!("bench{tag}");
    config.processor.metrics_addr = String::new();
    config.processor.workers = workers;
    config.processor.max_ack_pending = 100_000;
    Ok(Setup { config, postgres, schema, tenant_id, first_device })
}

async fn teardown(setup: &Setup, js: &jetstream::Context) {
    fleetgate_contracts::stream::delete_streams(js, &setup.config.nats).await;
    let _ = setup.postgres.batch_execute(&format!("DROP SCHEMA {} CASCADE", setup.schema)).await;
    if let Ok(client) = redis::Client::open(setup.config.redis.url.as_str())
        && let Ok(mut redis) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", setup.config.redis.key_prefix))
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut redis).await;
        }
    }
}

async fn throughput(args: &Args) -> Result<serde_json::Value, Error> {
    let setup = setup(args.devices, args.workers).await?;
    let nats = async_nats::connect(setup.config.nats.url.as_str()).await?;
    let js = jetstream::new(nats);
    fleetgate_contracts::stream::ensure_stream(&js, &setup.config.nats).await?;
    let messages = args.positions / args.per_message as u64;
    let rounds = messages.div_ceil(args.devices as u64);
    let base = UtcMillis(now().0 - 86_400_000);
    let publish_started = Instant::now();
    let mut pending = Vec::with_capacity(2000);
    for m in 0..messages {
        let device = setup.first_device + (m as i64 % args.devices);
        // Late data: each device's messages newest first, so every one after the first
        // lands before rows already stored.
        let round = if args.late { rounds - 1 - m / args.devices as u64 } else { m / args.devices as u64 };
        let positions: Vec<String> = (0..args.per_message as u64)
            .map(|k| {
                let step = round * args.per_message as u64 + k;
                position_json(device, UtcMillis(base.0 + step as i64 * 1000), now(), step, args.parked)
            })
            .collect();
        pending.push(publish(&js, &setup, device, &positions).await?);
        if pending.len() == 2000 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }
    let published_in = publish_started.elapsed();

    let shutdown = CancellationToken::new();
    let config = setup.config.clone();
    let started = Instant::now();
    let processor = tokio::spawn(fleetgate_processor::run(config, shutdown.clone()));
    let mut consumer = loop {
        match fleetgate_processor::processor::consumer(&js, &setup.config).await {
            Ok(consumer) => break consumer,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = processor.await;
    let stored: i64 = setup.postgres.query_one("SELECT count(*) FROM positions", &[]).await?.get(0);
    teardown(&setup, &js).await;
    Ok(serde_json::json!({
        "mode": "throughput",
        "positions": messages * args.per_message as u64,
        "stored": stored,
        "messages": messages,
        "per_message": args.per_message,
        "late": args.late,
        "devices": args.devices,
        "workers": args.workers,
        "publish_seconds": published_in.as_secs_f64(),
        "seconds": elapsed.as_secs_f64(),
        "positions_per_second": (stored as f64 / elapsed.as_secs_f64()).round(),
    }))
}

/// The columns of one synthetic row, for the INSERT and COPY comparisons.
struct Row {
    device_id: i64,
    time: Timestamp,
    tenant_id: i64,
    received: Timestamp,
    /// lat, lon, altitude, speed, course, distance_m
    numbers: [Option<f64>; 6],
    satellites: Option<i32>,
    attrs: Jsonb<'static>,
    io: Jsonb<'static>,
}

/// The columns both ways of writing rows use, in `COPY_TYPES` order.
const COLUMNS: &str = "device_id, fix_time, tenant_id, received, lat, lon, altitude, speed, course, satellites, valid, attrs, io, distance_m, moving";

impl Row {
    fn values(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 15] {
        let [lat, lon, altitude, speed, course, distance] = &self.numbers;
        [
            &self.device_id,
            &self.time,
            &self.tenant_id,
            &self.received,
            lat,
            lon,
            altitude,
            speed,
            course,
            &self.satellites,
            &true,
            &self.attrs,
            &self.io,
            distance,
            &Some(true),
        ]
    }
}

const ATTRS: &str = r#"{"ignition":true,"motion":true,"power_voltage":12.6,"battery_voltage":4.1,"odometer":1000,"gsm_signal":4,"fuel_level":63}"#;
const IO: &str =
    r#"{"239":1,"240":1,"21":4,"66":12600,"67":4100,"16":1000,"69":1,"181":9,"182":8,"24":52,"200":0,"89":63}"#;

async fn ratios(args: &Args) -> Result<serde_json::Value, Error> {
    let mut setup = setup(args.devices, 1).await?;
    let base = now().0 - 86_400_000;
    let received = Timestamp(now());
    let rows: Vec<Row> = (0..args.rows)
        .map(|i| Row {
            device_id: setup.first_device + (i as i64 % args.devices),
            time: Timestamp(UtcMillis(base + (i as i64 / args.devices) * 1000)),
            tenant_id: setup.tenant_id,
            received,
            numbers: [Some(54.0), Some(25.0), Some(110.0), Some(52.0), Some(90.0), Some(10.0)],
            satellites: Some(9),
            attrs: Jsonb(ATTRS),
            io: Jsonb(IO),
        })
        .collect();
    let months = [now(), UtcMillis(base)].map(|t| {
        let (y, m) = t.year_month();
        y * 12 + i64::from(m) - 1
    });
    fleetgate_store::partitions::Partitions::default().ensure(&mut setup.postgres, months).await?;
    let placeholders: Vec<String> = (1..=15).map(|i| format!("${i}")).collect();
    let insert = setup
        .postgres
        .prepare(&format!("INSERT INTO positions ({COLUMNS}) VALUES ({})", placeholders.join(", ")))
        .await?;
    let started = Instant::now();
    for row in &rows {
        setup.postgres.execute(&insert, &row.values()).await?;
    }
    let insert_rate = rows.len() as f64 / started.elapsed().as_secs_f64();
    setup.postgres.batch_execute("TRUNCATE positions").await?;

    let started = Instant::now();
    let transaction = setup.postgres.transaction().await?;
    let sink = transaction.copy_in(&format!("COPY positions ({COLUMNS}) FROM STDIN BINARY")).await?;
    let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &COPY_TYPES);
    futures_util::pin_mut!(writer);
    for row in &rows {
        writer.as_mut().write(&row.values()).await?;
    }
    writer.finish().await?;
    transaction.commit().await?;
    let copy_rate = rows.len() as f64 / started.elapsed().as_secs_f64();
    let nats = async_nats::connect(setup.config.nats.url.as_str()).await?;
    teardown(&setup, &jetstream::new(nats)).await;
    Ok(serde_json::json!({
        "mode": "ratios",
        "rows": rows.len(),
        "insert_row_by_row_per_second": insert_rate.round(),
        "raw_copy_per_second": copy_rate.round(),
    }))
}

async fn freshness(args: &Args) -> Result<serde_json::Value, Error> {
    let setup = setup(args.devices, args.workers).await?;
    let nats = async_nats::connect(setup.config.nats.url.as_str()).await?;
    let js = jetstream::new(nats.clone());
    fleetgate_contracts::stream::ensure_stream(&js, &setup.config.nats).await?;
    let shutdown = CancellationToken::new();
    let mut config = setup.config.clone();
    config.processor.batch_wait_ms = 20;
    let processor = tokio::spawn(fleetgate_processor::run(config, shutdown.clone()));
    let mut live = nats.subscribe(format!("{}.live.>", setup.config.nats.subject_prefix)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut latencies: Vec<i64> = Vec::new();
            while !done.load(Relaxed) {
                let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), live.next()).await else {
                    continue;
                };
                let received = serde_json::from_slice::<serde_json::Value>(&message.payload)
                    .ok()
                    .and_then(|v| v["received"].as_str().and_then(UtcMillis::parse_rfc3339));
                if let Some(received) = received {
                    latencies.push(now().0 - received.0);
                }
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interval = Duration::from_secs_f64(args.per_message as f64 / args.rate);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut pending = Vec::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() / interval.as_secs_f64()) as u64;
        while sent < due {
            let device = setup.first_device + (sent as i64 % args.devices);
            let at = now();
            let positions: Vec<String> = (0..args.per_message as u64)
                .map(|k| position_json(device, UtcMillis(at.0 - 1000 + k as i64), at, sent, false))
                .collect();
            pending.push(publish(&js, &setup, device, &positions).await?);
            sent += 1;
        }
        if pending.len() > 1000 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Relaxed);
    let mut latencies = collector.await?;
    shutdown.cancel();
    let _ = processor.await;
    teardown(&setup, &js).await;
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied();
    Ok(serde_json::json!({
        "mode": "freshness",
        "rate": args.rate,
        "seconds": args.seconds,
        "messages": sent,
        "positions": sent * args.per_message as u64,
        "live_updates": latencies.len(),
        "freshness_ms": {"p50": percentile(0.5), "p99": percentile(0.99), "max": latencies.last()},
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("processor_load: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match args.mode.as_str() {
        "throughput" => throughput(&args).await,
        "ratios" => ratios(&args).await,
        "freshness" => freshness(&args).await,
        other => Err(format!("unknown mode {other}").into()),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("processor_load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
