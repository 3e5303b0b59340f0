//! Load tool for the API, against the local Postgres, Redis and NATS, in an isolated
//! schema and key prefix of its own (dropped afterwards). Runs the API in process.
//!
//! ```text
//! api_load [--vehicles 1000] [--connections 32] [--seconds 20] [--history-requests 200] [--live-cache-ms 200]
//! ```
//! 1. `GET /v1/live` for a tenant of `--vehicles` vehicles, each with a live position in
//!    Redis, from `--connections` keep-alive connections for `--seconds`: requests/s
//!    and latency percentiles; and how many authentication and device-metadata reads the
//!    caches answered instead of Postgres.
//! 2. One device-day of history at 10 s intervals (8,640 positions) in one request,
//!    `--history-requests` times in a row: latency percentiles.
//! 3. With `--report-days N` (default 0: skipped): trips, stops and summary of one device
//!    over N days at 10 s (two drives a day, idling, parking), 20 times each; and the
//!    summary of a group of all `--vehicles` vehicles over one day at 10 s, 20 times.
//!    Each from the report segments (the default) and again scanning every position
//!    (`source=positions`; the group 3 times).
//!
//! With `--explain`, also prints to stderr the query plans (`EXPLAIN ANALYZE`) of what
//! section 3's reports read.
//!
//! Prints one JSON object.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::{Config, DeviceId, TenantId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A keep-alive HTTP/1.1 connection that reads whole responses (length or chunked).
struct Connection {
    reader: BufReader<TcpStream>,
    /// The last response's body.
    body: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { reader: BufReader::new(stream), body: Vec::new() })
    }

    /// Sends a GET and reads the response; returns the status and body length.
    async fn get(&mut self, path: &str, token: &str) -> Result<(u16, usize), Error> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse()?;
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        self.body.clear();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk).await?;
                self.body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            self.body.resize(length, 0);
            self.reader.read_exact(&mut self.body).await?;
        }
        Ok((status, self.body.len()))
    }
}

fn percentiles(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples.get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1))).copied();
    let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    serde_json::json!({"p50": round(at(0.5)), "p99": round(at(0.99)), "max": round(samples.last().copied())})
}

async fn run() -> Result<serde_json::Value, Error> {
    let mut args = std::env::args().skip(1);
    let (mut vehicles, mut connections, mut seconds, mut history_requests) = (1000i64, 32usize, 20u64, 200usize);
    let mut live_cache_ms: Option<u64> = None;
    let mut report_days = 0i64;
    let mut explain = false;
    while let Some(flag) = args.next() {
        if flag == "--explain" {
            explain = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--vehicles" => vehicles = value.parse()?,
            "--connections" => connections = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            "--history-requests" => history_requests = value.parse()?,
            "--live-cache-ms" => live_cache_ms = Some(value.parse()?),
            "--report-days" => report_days = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }

    let base = fleetgate_testkit::base_url();
    let (schema, url) = fleetgate_testkit::isolated_schema(&base, "apibench").await?;
    let mut postgres = fleetgate_store::connect(&url).await?;
    fleetgate_store::migrate(&mut postgres).await?;
    let (tenant_id, key) = fleetgate_api::create_tenant(&postgres, "bench").await.map_err(|e| format!("{e:?}"))?;
    let first_device: i64 = postgres
        .query_one(
            "WITH d AS (INSERT INTO devices (tenant_id, identifier, protocol, name)
               SELECT $1, (360000000000000 + n)::text, 'teltonika', 'Truck ' || n FROM generate_series(1, $2::bigint) n
               RETURNING id)
             SELECT min(id) FROM d",
            &[&tenant_id, &vehicles],
        )
        .await?
        .get(0);
    // One device-day at 10 s intervals.
    let day_start = UtcMillis::parse_rfc3339("2026-11-24T00:00:00Z").ok_or("time")?;
    fleetgate_store::partitions::Partitions::default()
        .ensure(&mut postgres, [day_start.year_month()].map(|(y, m)| y * 12 + i64::from(m) - 1))
        .await?;
    postgres
        .execute(
            "INSERT INTO positions (device_id, fix_time, tenant_id, received, lat, lon, altitude, speed, course, satellites, valid, attrs, io)
             SELECT $1, '2026-11-24T00:00:00Z'::timestamptz + make_interval(secs => n * 10), $2, now(),
                    54 + n * 0.0001, 25.2694, 110, 52, 90, 9, true,
                    '{\"ignition\":true,\"power_voltage\":12.6,\"odometer\":123456}', '{\"239\":1,\"66\":12600,\"16\":123456}'
             FROM generate_series(0, 8639) n",
            &[&first_device, &tenant_id],
        )
        .await?;

    let tag = format!("{:x}", std::process::id());
    let mut config = Config::default();
    config.postgres.url = url;
    config.redis.key_prefix = format!("apibench{tag}");
    config.nats.subject_prefix = format!("apibench{tag}");
    config.api.bind = "127.0.0.1:0".into();
    if let Some(ms) = live_cache_ms {
        config.api.live_cache_ms = ms;
    }
    let redis_client = redis::Client::open(config.redis.url.as_str())?;
    let mut redis = redis_client.get_multiplexed_async_connection().await?;
    let mut pipe = redis::pipe();
    for device in first_device..first_device + vehicles {
        let position = format!(
            r#"{{"device":"{}","protocol":"teltonika","time":"2026-11-25T10:00:00Z","received":"2026-11-25T10:00:01.250Z","lat":54.6962,"lon":25.2694,"altitude":110,"speed":52,"course":90,"satellites":9,"valid":true,"attrs":{{"ignition":true,"power_voltage":12.6,"odometer":123456,"fuel_level":63}},"io":{{"239":1,"66":12600,"16":123456,"89":63}}}}"#,
            360_000_000_000_000 + device
        );
        pipe.cmd("HSET")
            .arg(fleetgate_contracts::keys::live_key(&config.redis.key_prefix, TenantId(tenant_id), DeviceId(device)))
            .arg("fix_time")
            .arg(1)
            .arg("position")
            .arg(position)
            .arg("sensors")
            .arg(r#"{"ignition":true,"fuel_level":63}"#)
            .arg("online")
            .arg("1")
            .ignore();
    }
    let _: () = pipe.query_async(&mut redis).await?;

    let listener = fleetgate_api::bind(&config).await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let state = fleetgate_api::state(config.clone()).await?;
    let app = fleetgate_api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await })
    };

    // 1. /v1/live
    let (live_status, live_bytes) = Connection::open(address).await?.get("/v1/live", &key).await?;
    if live_status != 200 {
        return Err(format!("/v1/live answered {live_status}").into());
    }
    let (hits_before, reads_before) = state.metrics.cache_counts();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (stop, key) = (stop.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let Ok(mut connection) = Connection::open(address).await else { return (latencies, 1) };
            while !stop.load(Relaxed) {
                let started = Instant::now();
                match connection.get("/v1/live", &key).await {
                    Ok((200, _)) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (l, e) = worker.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (hits_after, reads_after) = state.metrics.cache_counts();
    let requests = latencies.len();
    let live = serde_json::json!({
        "vehicles": vehicles,
        "body_bytes": live_bytes,
        "live_cache_ms": config.api.live_cache_ms,
        "connections": connections,
        "requests": requests,
        "errors": errors,
        "requests_per_second": (requests as f64 / elapsed).round(),
        "latency_ms": percentiles(latencies),
        "cache_hits": hits_after - hits_before,
        "db_reads": reads_after - reads_before,
    });

    // 2. One device-day of history.
    let mut connection = Connection::open(address).await?;
    let path =
        format!("/v1/devices/{first_device}/positions?from=2026-11-24T00:00:00Z&to=2026-11-24T23:59:59Z&limit=10000");
    let (status, bytes) = connection.get(&path, &key).await?;
    if status != 200 {
        return Err(format!("history answered {status}").into());
    }
    let mut history = Vec::new();
    for _ in 0..history_requests {
        let started = Instant::now();
        connection.get(&path, &key).await?;
        history.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let geojson_path = format!("{path}&format=geojson");
    let mut geojson = Vec::new();
    for _ in 0..history_requests {
        let started = Instant::now();
        connection.get(&geojson_path, &key).await?;
        geojson.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let reports = if report_days > 0 {
        reports(&mut postgres, &state, address, &key, tenant_id, (first_device, vehicles), report_days, explain).await?
    } else {
        serde_json::Value::Null
    };

    shutdown.cancel();
    let _ = server.await;
    postgres.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await?;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", config.redis.key_prefix)).query_async(&mut redis).await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut redis).await?;
    }
    Ok(serde_json::json!({
        "live": live,
        "history": {"positions": 8640, "bytes": bytes, "requests": history_requests, "json_ms": percentiles(history), "geojson_ms": percentiles(geojson)},
        "reports": reports,
    }))
}

/// Inserts `days` days at 10 s for devices `first..first + count` from 2026-10-01: two
/// drives a day (08:00-10:00 and 14:00-16:00 at about 50 km/h), ten minutes of idling
/// after each, parked otherwise; with ignition, fuel, distance and motion as the
/// processor stores them.
async fn insert_days(
    postgres: &mut tokio_postgres::Client,
    tenant_id: i64,
    first: i64,
    count: i64,
    days: i64,
) -> Result<(), Error> {
    let start = UtcMillis::parse_rfc3339("2026-10-01T00:00:00Z").ok_or("time")?;
    let months: Vec<i64> = (0..=days / 28 + 1)
        .map(|m| {
            let (y, mo) = start.year_month();
            y * 12 + i64::from(mo) - 1 + m
        })
        .collect();
    fleetgate_store::partitions::Partitions::default().ensure(postgres, months).await?;
    postgres
        .execute(
            "INSERT INTO positions (device_id, fix_time, tenant_id, received, lat, lon, speed, valid, attrs, io, distance_m, moving)
             SELECT d, '2026-10-01T00:00:00Z'::timestamptz + make_interval(secs => n * 10), $2, now(),
                    54 + (n / 8640) * 0.01 + CASE WHEN drive THEN (n % 8640) * 0.00001 ELSE 0 END, 25.0,
                    CASE WHEN drive THEN 50 + n % 7 ELSE 0 END, true,
                    jsonb_build_object('ignition', drive OR idle, 'fuel_litres', 300 - (n % 8640) * 0.001),
                    '{}'::jsonb, CASE WHEN drive THEN 139.0 ELSE 0 END, drive
             FROM generate_series($1::bigint, $1::bigint + $3::bigint - 1) AS d,
                  generate_series(0, $4::bigint * 8640 - 1) AS n,
                  LATERAL (SELECT (n % 8640) / 360.0 AS hour) h,
                  LATERAL (SELECT (hour >= 8 AND hour < 10) OR (hour >= 14 AND hour < 16) AS drive,
                                  (hour >= 10 AND hour < 10.17) OR (hour >= 16 AND hour < 16.17) AS idle) s",
            &[&first, &tenant_id, &count, &days],
        )
        .await?;
    // Written straight into the table: the processor's background task would cut them
    // into report segments; here the same code runs at once.
    postgres
        .execute("INSERT INTO segments_pending SELECT generate_series($1::bigint, $1::bigint + $2::bigint - 1) ON CONFLICT DO NOTHING", &[&first, &count])
        .await?;
    while fleetgate_processor::segments::backfill_one(postgres).await? {}
    postgres.batch_execute("ANALYZE positions; ANALYZE segments").await?;
    Ok(())
}

/// Section 3: report latencies over raw positions.
/// Prints (to stderr) the plans of what the reports above read: the device's segments
/// over the days, the same span's positions, and the group's segments of one day.
async fn explain_reads(
    postgres: &tokio_postgres::Client,
    first_device: i64,
    vehicles: i64,
    days: i64,
) -> Result<(), Error> {
    use fleetgate_store::rows::Timestamp;
    use fleetgate_store::segments::{samples_query, segments_query};
    let from = UtcMillis::parse_rfc3339("2026-10-01T00:00:00Z").ok_or("time")?;
    let (to, day_end) = (UtcMillis(from.0 + days * 86_400_000 - 1000), UtcMillis(from.0 + 86_400_000 - 1000));
    let group: Vec<i64> = (first_device..first_device + vehicles).collect();
    let device = vec![first_device];
    let (from, to, day_end) = (Timestamp(from), Timestamp(to), Timestamp(day_end));
    let plans: [(String, String, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>); 3] = [
        (format!("one device, {days} days, from segments"), segments_query(), vec![&device, &from, &from, &to]),
        (format!("one device, {days} days, every position"), samples_query(), vec![&first_device, &from, &to]),
        (
            format!("{vehicles} vehicles, one day, from segments"),
            segments_query(),
            vec![&group, &from, &from, &day_end],
        ),
    ];
    for (title, query, params) in plans {
        let rows = postgres.query(&format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {query}"), &params).await?;
        eprintln!("-- {title}\n{query};");
        for row in rows {
            eprintln!("{}", row.get::<_, String>(0));
        }
        eprintln!();
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn reports(
    postgres: &mut tokio_postgres::Client,
    state: &fleetgate_api::AppState,
    address: SocketAddr,
    key: &str,
    tenant_id: i64,
    (first_device, vehicles): (i64, i64),
    days: i64,
    explain: bool,
) -> Result<serde_json::Value, Error> {
    // The history section's device gets the days; every other vehicle one day.
    postgres.batch_execute("DELETE FROM positions; DELETE FROM segments").await?;
    insert_days(postgres, tenant_id, first_device, 1, days).await?;
    insert_days(postgres, tenant_id, first_device + 1, vehicles - 1, 1).await?;
    let group: i64 = postgres
        .query_one("INSERT INTO device_groups (tenant_id, name) VALUES ($1, 'all') RETURNING id", &[&tenant_id])
        .await?
        .get(0);
    postgres.execute("UPDATE devices SET group_id = $1 WHERE tenant_id = $2", &[&group, &tenant_id]).await?;
    // The API caches device metadata (groups included): it must see the new group.
    state.device_cache.invalidate(TenantId(tenant_id));
    let mut connection = Connection::open(address).await?;
    let to = UtcMillis(UtcMillis::parse_rfc3339("2026-10-01T00:00:00Z").ok_or("time")?.0 + days * 86_400_000 - 1000);
    let span = format!("from=2026-10-01T00:00:00Z&to={to}");
    let mut device = serde_json::Map::new();
    for report in ["trips", "stops", "summary"] {
        let mut sources = serde_json::Map::new();
        let mut bodies = Vec::new();
        // The same report from segments (the default) and from every position.
        for (source, query) in [("segments", ""), ("positions", "&source=positions")] {
            let path = format!("/v1/reports/{report}?device={first_device}&{span}{query}");
            let (status, bytes) = connection.get(&path, key).await?;
            if status != 200 {
                return Err(format!("{path} answered {status}").into());
            }
            bodies.push(connection.body.clone());
            let mut samples = Vec::new();
            for _ in 0..20 {
                let started = Instant::now();
                connection.get(&path, key).await?;
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            sources.insert(source.to_owned(), serde_json::json!({"bytes": bytes, "ms": percentiles(samples)}));
        }
        if bodies[0] != bodies[1] {
            return Err(format!("{report}: segments and positions give different reports").into());
        }
        device.insert(report.to_owned(), sources.into());
    }
    let mut group_day = serde_json::Map::new();
    let mut bodies = Vec::new();
    for (source, query, runs) in [("segments", "", 20), ("positions", "&source=positions", 3)] {
        let path =
            format!("/v1/reports/summary?group={group}&from=2026-10-01T00:00:00Z&to=2026-10-01T23:59:59Z{query}");
        let mut samples = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let (status, _) = connection.get(&path, key).await?;
            if status != 200 {
                return Err(format!("{path} answered {status}").into());
            }
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        bodies.push(connection.body.clone());
        group_day.insert(source.to_owned(), serde_json::json!({"ms": percentiles(samples)}));
    }
    if bodies[0] != bodies[1] {
        let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
        return Err(format!("group summary: {} vs {}", text(&bodies[0]), text(&bodies[1])).into());
    }
    if explain {
        explain_reads(postgres, first_device, vehicles, days).await?;
    }
    Ok(serde_json::json!({
        "device": {"days": days, "positions": days * 8640, "reports": device},
        "group_day_summary": {"vehicles": vehicles, "positions": vehicles * 8640, "sources": group_day},
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("api_load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
