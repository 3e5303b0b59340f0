//! `fleetgate simulate`: N tracker devices over TCP, a mix of any protocols of the
//! registry (`--protocols teltonika=3,wialon=1`), each driving its own route: following
//! a closed polyline at plausible speeds, stopping with the ignition off, idling,
//! burning fuel and refuelling, some going offline and coming back with a black-box
//! burst, some sending corrupted frames (and then the correct one, as a real device
//! resends). What a device sends and how it reads the answers is its protocol's device
//! side (`fleetgate_codecs::device`), so the simulator knows no protocol by name. Every
//! frame waits for its acknowledgement, which is timed; acknowledged positions can be
//! written to a file so a test can check that each one is stored exactly once.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use fleetgate_codecs::Protocol;
use fleetgate_codecs::device::{Answer, DeviceSide, Report};
use fleetgate_rules::track::haversine_m as distance_m;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Options of `fleetgate simulate`.
#[derive(clap::Args, Clone, Debug)]
pub struct SimulateArgs {
    /// Gateway host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The protocol mix, as weights: `teltonika=3,wialon=1` (default: every protocol
    /// of the registry, equally).
    #[arg(long, value_parser = parse_mix)]
    pub protocols: Option<Mix>,
    /// A protocol's TCP port, `PROTOCOL=PORT` (repeatable; default: its default port).
    #[arg(long = "port", value_parser = parse_port)]
    pub ports: Vec<(Protocol, u16)>,
    /// Number of devices (ignored with --devices-file).
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Seconds between two reports of a device.
    #[arg(long, default_value_t = 5.0)]
    pub interval_s: f64,
    /// Records per report (Teltonika packs them in one frame, Wialon in one #B# line).
    #[arg(long, default_value_t = 1)]
    pub records: usize,
    /// How long to run (seconds).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// First identifier (IMEI) when generating devices; the rest count up.
    #[arg(long, default_value_t = 359_000_000_000_000)]
    pub imei_base: u64,
    /// Devices from a file instead: one `IDENTIFIER PROTOCOL` per line.
    #[arg(long)]
    pub devices_file: Option<PathBuf>,
    /// Register the devices through the API at this base URL (http://host:port) first.
    #[arg(long)]
    pub register: Option<String>,
    /// API key for --register (admin role).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Share of the devices that go offline once and come back with a black-box burst.
    #[arg(long, default_value_t = 0.1)]
    pub offline_share: f64,
    /// Share of the devices that corrupt one frame in ten (then resend it intact).
    #[arg(long, default_value_t = 0.05)]
    pub corrupt_share: f64,
    /// Write every acknowledged position here as JSON Lines: {"device", "time"}.
    #[arg(long)]
    pub acked: Option<PathBuf>,
    /// Print the final summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the routes and behaviours.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A small deterministic generator (SplitMix64): routes repeat for a seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

/// Protocols and their weights.
#[derive(Debug, Clone)]
pub struct Mix(pub Vec<(Protocol, f64)>);

/// `NAME=WEIGHT,...`.
fn parse_mix(text: &str) -> Result<Mix, String> {
    let mut mix = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let protocol: Protocol = name.trim().parse()?;
        let weight: f64 = weight.trim().parse().map_err(|_| format!("weight {weight:?} of {name} is not a number"))?;
        if !(weight >= 0.0 && weight.is_finite()) {
            return Err(format!("weight of {name} must be 0 or more"));
        }
        mix.push((protocol, weight));
    }
    if mix.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err("the protocol mix needs a positive weight".into());
    }
    Ok(Mix(mix))
}

/// `NAME=PORT`.
fn parse_port(text: &str) -> Result<(Protocol, u16), String> {
    let (name, port) = text.split_once('=').ok_or_else(|| format!("{text:?} is not PROTOCOL=PORT"))?;
    let port = port.parse().map_err(|_| format!("port {port:?} is not a port number"))?;
    Ok((name.parse()?, port))
}

impl SimulateArgs {
    /// The protocol mix, normalized to shares.
    fn mix(&self) -> Vec<(Protocol, f64)> {
        let mix = match &self.protocols {
            Some(Mix(mix)) => mix.clone(),
            None => Protocol::built_in().filter(|p| p.transports().tcp).map(|p| (p, 1.0)).collect(),
        };
        let total: f64 = mix.iter().map(|(_, w)| w).sum();
        mix.into_iter().map(|(p, w)| (p, w / total)).collect()
    }

    /// The port devices of `protocol` connect to.
    fn port(&self, protocol: Protocol) -> u16 {
        self.ports.iter().rev().find(|(p, _)| *p == protocol).map_or(protocol.default_port(), |(_, port)| *port)
    }
}

struct DeviceSpec {
    identifier: String,
    protocol: Protocol,
    goes_offline: bool,
    corrupts: bool,
    seed: u64,
}

/// What the vehicle is doing.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Driving,
    Idling,
    Parked,
    Refuelling,
}

/// The vehicle: position on its route, speed, ignition, fuel, odometer.
struct Vehicle {
    route: Vec<(f64, f64)>,
    leg: usize,
    along_m: f64,
    speed_kmh: f64,
    cruise_kmh: f64,
    phase: Phase,
    phase_left_s: f64,
    fuel_l: f64,
    odometer_m: f64,
    random: Random,
}

const TANK_L: f64 = 400.0;
const LITRES_PER_KM: f64 = 0.32;

impl Vehicle {
    fn new(seed: u64) -> Self {
        let mut random = Random(seed);
        // A closed road loop of 6-10 waypoints 2-8 km around a depot near Vilnius.
        let depot = (54.6872 + random.between(-0.2, 0.2), 25.2797 + random.between(-0.3, 0.3));
        let points = 6 + (random.next() % 5) as usize;
        let route = (0..points)
            .map(|i| {
                let angle = i as f64 / points as f64 * std::f64::consts::TAU + random.between(-0.2, 0.2);
                let radius_km = random.between(2.0, 8.0);
                (
                    depot.0 + radius_km / 111.0 * angle.sin(),
                    depot.1 + radius_km / (111.0 * depot.0.to_radians().cos()) * angle.cos(),
                )
            })
            .collect();
        let cruise_kmh = random.between(40.0, 85.0);
        let fuel_l = random.between(0.3, 0.9) * TANK_L;
        Vehicle {
            route,
            leg: 0,
            along_m: 0.0,
            speed_kmh: 0.0,
            cruise_kmh,
            phase: Phase::Parked,
            phase_left_s: random.between(0.0, 30.0),
            fuel_l,
            odometer_m: random.between(50_000.0, 400_000.0) * 1000.0,
            random,
        }
    }

    fn position(&self) -> (f64, f64) {
        let a = self.route[self.leg];
        let b = self.route[(self.leg + 1) % self.route.len()];
        let t = (self.along_m / distance_m(a, b).max(1.0)).min(1.0);
        (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
    }

    fn course(&self) -> f64 {
        let a = self.route[self.leg];
        let b = self.route[(self.leg + 1) % self.route.len()];
        let (dy, dx) = (b.0 - a.0, (b.1 - a.1) * a.0.to_radians().cos());
        (dx.atan2(dy).to_degrees() + 360.0) % 360.0
    }

    fn ignition(&self) -> bool {
        matches!(self.phase, Phase::Driving | Phase::Idling)
    }

    /// Advances the vehicle by `seconds`.
    fn step(&mut self, seconds: f64) {
        self.phase_left_s -= seconds;
        if self.phase_left_s <= 0.0 {
            self.phase = match self.phase {
                _ if self.fuel_l < 0.15 * TANK_L => Phase::Refuelling,
                Phase::Driving if self.random.unit() < 0.3 => Phase::Idling,
                Phase::Driving => Phase::Parked,
                Phase::Idling | Phase::Parked | Phase::Refuelling => Phase::Driving,
            };
            self.phase_left_s = match self.phase {
                Phase::Driving => self.random.between(120.0, 900.0),
                Phase::Idling => self.random.between(30.0, 180.0),
                Phase::Parked => self.random.between(60.0, 600.0),
                Phase::Refuelling => 180.0,
            };
        }
        match self.phase {
            Phase::Driving => {
                // Speed wanders around the cruise speed; accelerations stay plausible.
                let target = (self.cruise_kmh + self.random.between(-15.0, 15.0)).clamp(10.0, 110.0);
                let change = (target - self.speed_kmh).clamp(-10.0 * seconds, 8.0 * seconds);
                self.speed_kmh = (self.speed_kmh + change).max(0.0);
                let mut metres = self.speed_kmh / 3.6 * seconds;
                self.odometer_m += metres;
                self.fuel_l = (self.fuel_l - metres / 1000.0 * LITRES_PER_KM).max(0.0);
                while metres > 0.0 {
                    let a = self.route[self.leg];
                    let b = self.route[(self.leg + 1) % self.route.len()];
                    let left = distance_m(a, b) - self.along_m;
                    if metres < left {
                        self.along_m += metres;
                        metres = 0.0;
                    } else {
                        metres -= left.max(0.0);
                        self.leg = (self.leg + 1) % self.route.len();
                        self.along_m = 0.0;
                    }
                }
            }
            Phase::Idling => {
                self.speed_kmh = 0.0;
                self.fuel_l = (self.fuel_l - 1.5 / 3600.0 * seconds).max(0.0);
            }
            Phase::Parked => self.speed_kmh = 0.0,
            Phase::Refuelling => {
                self.speed_kmh = 0.0;
                self.fuel_l = (self.fuel_l + 2.0 * seconds).min(0.95 * TANK_L);
            }
        }
    }
}

/// Counters shared by every device.
#[derive(Default)]
struct Stats {
    connections: AtomicI64,
    connects: AtomicU64,
    frames: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    corrupted: AtomicU64,
    corrupted_refused: AtomicU64,
    bursts: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl Stats {
    fn percentile_ms(samples: &mut [u32], p: f64) -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        samples.sort_unstable();
        let index = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
        f64::from(samples[index]) / 1000.0
    }
}

/// A device's connection: frames out, answers in, through its protocol's device side.
struct Link {
    stream: TcpStream,
    side: Box<dyn DeviceSide>,
    answers: BytesMut,
}

/// How long a device waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl Link {
    async fn open(spec: &DeviceSpec, args: &SimulateArgs) -> anyhow::Result<Self> {
        let port = args.port(spec.protocol);
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((args.host.as_str(), port)))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        let mut link = Link { stream, side: spec.protocol.device(), answers: BytesMut::new() };
        let login = link.side.login(&spec.identifier);
        if !login.is_empty() {
            link.stream.write_all(&login).await?;
            loop {
                match link.answer().await? {
                    Answer::LoginAccepted => break,
                    Answer::LoginRefused => bail!("{} refused at login", spec.identifier),
                    Answer::Accepted(_) | Answer::Other => {}
                }
            }
        }
        Ok(link)
    }

    /// The next answer from the gateway.
    async fn answer(&mut self) -> anyhow::Result<Answer> {
        loop {
            if let Some(answer) = self.side.read_answer(&mut self.answers).map_err(anyhow::Error::msg)? {
                return Ok(answer);
            }
            let read = tokio::time::timeout(ANSWER_TIMEOUT, self.stream.read_buf(&mut self.answers))
                .await
                .context("no answer")??;
            if read == 0 {
                bail!("connection closed");
            }
        }
    }

    /// Sends reports and returns how many the gateway acknowledged (0 when it refused
    /// them, as it must a corrupted frame).
    async fn send(&mut self, reports: &[Report], corrupt: bool) -> anyhow::Result<usize> {
        let mut frames = self.side.data(reports);
        if corrupt {
            self.side.corrupt(&mut frames);
        }
        self.stream.write_all(&frames).await?;
        if corrupt && !self.side.answers_refusals() {
            // The protocol leaves a refused frame unanswered.
            return Ok(0);
        }
        let mut accepted = 0;
        while accepted < reports.len() {
            match self.answer().await? {
                Answer::Accepted(0) => return Ok(accepted),
                Answer::Accepted(n) => accepted += n,
                Answer::LoginAccepted | Answer::LoginRefused | Answer::Other => {}
            }
        }
        Ok(accepted)
    }
}

fn now_ms() -> i64 {
    fleetgate_contracts::clock::now().0
}

fn time_text(ms: i64) -> String {
    fleetgate_codecs::time::UtcMillis(ms).to_string()
}

/// Runs one device until `deadline`.
async fn run_device(
    spec: DeviceSpec,
    args: Arc<SimulateArgs>,
    stats: Arc<Stats>,
    acked: Option<mpsc::UnboundedSender<String>>,
    deadline: Instant,
) {
    let mut vehicle = Vehicle::new(spec.seed);
    let mut random = Random(spec.seed ^ 0xA5A5);
    let interval = Duration::from_secs_f64(args.interval_s);
    // Spread the first reports over one interval so the load is even.
    tokio::time::sleep(interval.mul_f64(random.unit())).await;
    // A device that goes offline does so once, for 3 to 8 reports, somewhere in the run.
    let total_ticks = (args.seconds as f64 / args.interval_s) as u64;
    let offline_at =
        if spec.goes_offline { Some(total_ticks / 4 + random.next() % (total_ticks / 2).max(1)) } else { None };
    let offline_for = 3 + random.next() % 6;
    let mut link: Option<Link> = None;
    let mut backlog: Vec<Report> = Vec::new();
    let mut tick: u64 = 0;
    let mut frames_sent: u64 = 0;
    let mut last_time_ms = 0;
    let resolution_ms = spec.protocol.device().time_resolution_ms().max(1);
    let mut next = tokio::time::Instant::now();
    while Instant::now() < deadline {
        next += interval;
        // The reports of this interval, each at its own time (in the clock resolution of
        // the protocol's devices).
        let now = now_ms();
        for k in 0..args.records {
            let step_s = args.interval_s / args.records as f64;
            vehicle.step(step_s);
            let offset = ((args.records - 1 - k) as f64 * step_s * 1000.0) as i64;
            let mut time_ms = now - offset;
            time_ms -= time_ms.rem_euclid(resolution_ms);
            // Never two reports with one time: the second would be the same position.
            if time_ms <= last_time_ms {
                continue;
            }
            last_time_ms = time_ms;
            let (lat, lon) = vehicle.position();
            backlog.push(Report {
                time_ms,
                lat,
                lon,
                speed: vehicle.speed_kmh,
                course: vehicle.course(),
                altitude: 120.0,
                satellites: 11,
                ignition: vehicle.ignition(),
                fuel_percent: vehicle.fuel_l / TANK_L * 100.0,
                odometer_m: vehicle.odometer_m,
                power_v: if vehicle.ignition() { 14.1 } else { 12.6 },
            });
        }
        let offline = offline_at.is_some_and(|at| tick >= at && tick < at + offline_for);
        tick += 1;
        if offline {
            if let Some(dropped) = link.take() {
                drop(dropped);
                stats.connections.fetch_sub(1, Relaxed);
            }
        } else if !backlog.is_empty() {
            let burst = backlog.len() > args.records;
            if burst {
                stats.bursts.fetch_add(1, Relaxed);
            }
            // Send what is due, in frames of at most 10 records, oldest first.
            while !backlog.is_empty() && Instant::now() < deadline {
                if link.is_none() {
                    match Link::open(&spec, &args).await {
                        Ok(opened) => {
                            stats.connections.fetch_add(1, Relaxed);
                            stats.connects.fetch_add(1, Relaxed);
                            link = Some(opened);
                        }
                        Err(_) => {
                            stats.errors.fetch_add(1, Relaxed);
                            break;
                        }
                    }
                }
                let Some(open) = link.as_mut() else { break };
                let take = backlog.len().min(10);
                let frame: Vec<Report> = backlog[..take].to_vec();
                frames_sent += 1;
                if spec.corrupts && frames_sent % 10 == 5 {
                    stats.corrupted.fetch_add(1, Relaxed);
                    match open.send(&frame, true).await {
                        Ok(0) => {
                            stats.corrupted_refused.fetch_add(1, Relaxed);
                        }
                        Ok(_) => {
                            stats.errors.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            link = None;
                            stats.connections.fetch_sub(1, Relaxed);
                            continue;
                        }
                    }
                }
                let started = Instant::now();
                stats.frames.fetch_add(1, Relaxed);
                stats.sent.fetch_add(take as u64, Relaxed);
                let Some(open) = link.as_mut() else { break };
                let result = open.send(&frame, false).await;
                {
                    match result {
                        Ok(count) if count == take => {
                            let elapsed = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                            stats.latencies_us.lock().unwrap_or_else(|e| e.into_inner()).push(elapsed);
                            stats.acked.fetch_add(take as u64, Relaxed);
                            if let Some(acked) = &acked {
                                for report in &frame {
                                    let _ = acked.send(format!(
                                        "{{\"device\":\"{}\",\"time\":\"{}\"}}",
                                        spec.identifier,
                                        time_text(report.time_ms)
                                    ));
                                }
                            }
                            backlog.drain(..take);
                        }
                        Ok(_) | Err(_) => {
                            // Not acknowledged: keep the records and resend on a new connection.
                            stats.errors.fetch_add(1, Relaxed);
                            link = None;
                            stats.connections.fetch_sub(1, Relaxed);
                            break;
                        }
                    }
                }
            }
        }
        tokio::time::sleep_until(next).await;
    }
    if link.is_some() {
        stats.connections.fetch_sub(1, Relaxed);
    }
}

/// Registers the devices through the API (201 or 409 both mean registered).
async fn register(base: &str, key: &str, devices: &[DeviceSpec]) -> anyhow::Result<()> {
    let address = base.strip_prefix("http://").context("--register takes an http:// URL")?.trim_end_matches('/');
    for device in devices {
        let protocol = device.protocol.name();
        let body = serde_json::json!({"identifier": device.identifier, "name": format!("Simulated {}", device.identifier), "protocol": protocol})
            .to_string();
        let request = format!(
            "POST /v1/devices HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream =
            TcpStream::connect(address).await.with_context(|| format!("cannot reach the API at {base}"))?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let status = String::from_utf8_lossy(&response).split(' ').nth(1).unwrap_or("").to_owned();
        if status != "201" && status != "409" {
            bail!("registering {} answered {status}: {}", device.identifier, String::from_utf8_lossy(&response));
        }
    }
    Ok(())
}

/// The `index`th of `count` devices' protocol: each protocol gets its share of the list,
/// spread evenly through it (the one furthest behind its share takes the next device).
fn protocol_of(mix: &[(Protocol, f64)], taken: &mut [usize], index: usize) -> Option<Protocol> {
    let behind = |k: usize| mix[k].1 * (index + 1) as f64 - taken[k] as f64;
    let chosen = (0..mix.len()).max_by(|&a, &b| behind(a).total_cmp(&behind(b)))?;
    taken[chosen] += 1;
    Some(mix[chosen].0)
}

/// A generated identifier the protocol accepts: the number, or its longest tail that is
/// (a terminal phone number is shorter than an IMEI).
fn identifier_for(protocol: Protocol, number: u64) -> String {
    let digits = number.to_string();
    (0..digits.len())
        .map(|skip| &digits[skip..])
        .find(|tail| protocol.accepts_identifier(tail))
        .unwrap_or(&digits)
        .to_owned()
}

fn device_specs(args: &SimulateArgs) -> anyhow::Result<Vec<DeviceSpec>> {
    let mut random = Random(args.seed);
    let mut specs = Vec::new();
    let mut push = |identifier: String, protocol: Protocol, random: &mut Random| {
        specs.push(DeviceSpec {
            identifier,
            protocol,
            goes_offline: random.unit() < args.offline_share,
            corrupts: random.unit() < args.corrupt_share,
            seed: random.next(),
        });
    };
    match &args.devices_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let mut fields = line.split_whitespace();
                let (Some(identifier), Some(protocol)) = (fields.next(), fields.next()) else {
                    bail!("{}:{}: expected IDENTIFIER PROTOCOL", path.display(), number + 1);
                };
                let protocol: Protocol =
                    protocol.parse().map_err(|error| anyhow::anyhow!("{}:{}: {error}", path.display(), number + 1))?;
                push(identifier.to_owned(), protocol, &mut random);
            }
        }
        None => {
            let mix = args.mix();
            let mut taken = vec![0; mix.len()];
            for i in 0..args.devices {
                let protocol = protocol_of(&mix, &mut taken, i).context("the protocol mix is empty")?;
                push(identifier_for(protocol, args.imei_base + i as u64), protocol, &mut random);
            }
        }
    }
    Ok(specs)
}

/// Runs the simulation; prints progress to standard error and the summary to standard output.
pub fn run(args: SimulateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("simulate: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(simulate(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("simulate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The simulation, in a runtime the caller provides.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    if args.interval_s < 0.05 || args.records == 0 {
        bail!("--interval-s must be at least 0.05, --records at least 1");
    }
    if let Some(tcp_less) = args.mix().iter().map(|(p, _)| *p).find(|p| !p.transports().tcp) {
        bail!("{tcp_less} devices do not use TCP; the simulator drives TCP devices only");
    }
    let specs = device_specs(&args)?;
    if let Some(base) = &args.register {
        let key = args.api_key.as_deref().context("--register needs --api-key")?;
        register(base, key, &specs).await?;
    }
    let (acked_sender, writer) = match &args.acked {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
            );
            let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
            let writer = tokio::task::spawn_blocking(move || {
                while let Some(line) = receiver.blocking_recv() {
                    let _ = writeln!(file, "{line}");
                }
                file.flush()
            });
            (Some(sender), Some(writer))
        }
        None => (None, None),
    };
    let stats = Arc::new(Stats::default());
    let args = Arc::new(args);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let devices = specs.len();
    let mut tasks = Vec::with_capacity(devices);
    for spec in specs {
        tasks.push(tokio::spawn(run_device(spec, args.clone(), stats.clone(), acked_sender.clone(), deadline)));
    }
    drop(acked_sender);
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let acked = stats.acked.load(Relaxed);
                let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), acked);
                let mut samples = stats.latencies_us.lock().unwrap_or_else(|e| e.into_inner()).clone();
                eprintln!(
                    "simulate: {:>4.0}s  connections {}  sent {}  acked {}  rate {:.0}/s  ack p50 {:.1} ms p99 {:.1} ms  errors {}",
                    started.elapsed().as_secs_f64(),
                    stats.connections.load(Relaxed),
                    stats.sent.load(Relaxed),
                    acked,
                    rate,
                    Stats::percentile_ms(&mut samples, 0.5),
                    Stats::percentile_ms(&mut samples, 0.99),
                    stats.errors.load(Relaxed),
                );
            }
        })
    };
    for task in tasks {
        let _ = task.await;
    }
    progress.abort();
    if let Some(writer) = writer {
        writer.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut samples = std::mem::take(&mut *stats.latencies_us.lock().unwrap_or_else(|e| e.into_inner()));
    let summary = serde_json::json!({
        "devices": devices,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "connects": stats.connects.load(Relaxed),
        "frames": stats.frames.load(Relaxed),
        "sent": stats.sent.load(Relaxed),
        "acked": stats.acked.load(Relaxed),
        "rate_per_second": (stats.acked.load(Relaxed) as f64 / elapsed).round(),
        "ack_ms": {"p50": Stats::percentile_ms(&mut samples, 0.5), "p99": Stats::percentile_ms(&mut samples, 0.99)},
        "black_box_bursts": stats.bursts.load(Relaxed),
        "corrupted_sent": stats.corrupted.load(Relaxed),
        "corrupted_refused": stats.corrupted_refused.load(Relaxed),
        "errors": stats.errors.load(Relaxed),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{} devices, {:.0} s: {} positions sent, {} acknowledged ({:.0}/s), ack p50 {} ms p99 {} ms; \
             {} black-box bursts; {} corrupted frames, {} refused; {} errors",
            devices,
            elapsed,
            summary["sent"],
            summary["acked"],
            summary["rate_per_second"].as_f64().unwrap_or(0.0),
            summary["ack_ms"]["p50"],
            summary["ack_ms"]["p99"],
            summary["black_box_bursts"],
            summary["corrupted_sent"],
            summary["corrupted_refused"],
            summary["errors"],
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicles_drive_stop_and_refuel_plausibly() {
        let mut vehicle = Vehicle::new(7);
        vehicle.fuel_l = 0.2 * TANK_L;
        let mut phases = std::collections::BTreeSet::new();
        let mut last = vehicle.position();
        for _ in 0..20_000 {
            vehicle.step(5.0);
            let here = vehicle.position();
            // Never faster than the speed allows (5 s at up to 110 km/h, plus rounding).
            assert!(distance_m(last, here) <= 160.0, "jumped {} m", distance_m(last, here));
            assert!((0.0..=110.0).contains(&vehicle.speed_kmh));
            assert!((0.0..=TANK_L).contains(&vehicle.fuel_l));
            assert_eq!(vehicle.ignition(), matches!(vehicle.phase, Phase::Driving | Phase::Idling));
            phases.insert(format!("{:?}", vehicle.phase));
            last = here;
        }
        assert_eq!(phases.len(), 4, "drives, idles, parks and refuels: {phases:?}");
    }

    fn args(devices: usize, protocols: Option<&str>) -> SimulateArgs {
        SimulateArgs {
            host: String::new(),
            protocols: protocols.map(|mix| parse_mix(mix).unwrap_or_else(|e| panic!("{e}"))),
            ports: Vec::new(),
            devices,
            interval_s: 1.0,
            records: 1,
            seconds: 1,
            imei_base: 359_000_000_000_000,
            devices_file: None,
            register: None,
            api_key: None,
            offline_share: 0.0,
            corrupt_share: 0.0,
            acked: None,
            json: false,
            seed: 1,
        }
    }

    #[test]
    fn the_mix_spreads_each_protocol_by_its_weight() {
        let specs = device_specs(&args(10, Some("teltonika=7,wialon=3"))).unwrap_or_default();
        let wialon: Vec<usize> =
            specs.iter().enumerate().filter(|(_, s)| s.protocol == Protocol::WIALON).map(|(i, _)| i).collect();
        assert_eq!(wialon.len(), 3);
        assert!(wialon.windows(2).all(|w| w[1] - w[0] >= 3), "spread through the list: {wialon:?}");
        let every = device_specs(&args(100, None)).unwrap_or_default();
        for protocol in Protocol::built_in() {
            let n = every.iter().filter(|s| s.protocol == protocol).count();
            assert!(n >= 100 / Protocol::built_in().count() - 1, "{protocol}: {n}");
        }
        assert!(parse_mix("nope=1").is_err());
        assert!(parse_mix("teltonika=0").is_err());
        assert_eq!(parse_port("wialon=15039").map(|(p, port)| (p.name(), port)), Ok(("wialon", 15039)));
    }

    #[test]
    fn every_protocol_refuses_what_its_device_side_corrupts() {
        use fleetgate_codecs::transcript::feed;
        use fleetgate_codecs::{Event, SessionOptions};
        let report = Report {
            time_ms: 1_700_000_000_000,
            lat: 54.7,
            lon: 25.3,
            speed: 50.0,
            course: 90.0,
            altitude: 120.0,
            satellites: 11,
            ignition: true,
            fuel_percent: 50.0,
            odometer_m: 1000.0,
            power_v: 14.1,
        };
        for protocol in Protocol::built_in() {
            let mut side = protocol.device();
            let mut bytes = side.login("359000000000001");
            let mut frames = side.data(&[report]);
            side.corrupt(&mut frames);
            bytes.extend(frames);
            let mut session = protocol.session(SessionOptions::default());
            let mut events = Vec::new();
            let _ = feed(session.as_mut(), &bytes, bytes.len(), |event| events.push(event));
            assert!(events.iter().any(|e| matches!(e, Event::Refused { .. })), "{protocol}: {events:?}");
            assert!(!events.iter().any(|e| matches!(e, Event::Positions { .. })), "{protocol}: {events:?}");
        }
    }
}
