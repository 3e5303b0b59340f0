//! A protocol that exists only in this test, registered as a plug-in, goes through the
//! whole system with no other file knowing it: the conformance kit, `fleetgate decode`,
//! the gateway (login, acknowledgement after JetStream, refusal of a bad checksum), the
//! processor (history) and `fleetgate simulate`.
//!
//! The protocol is a small line protocol: `L,<identifier>` logs in (`OK` / `NO`),
//! `D,<time ms>,<lat>,<lon>,<speed>[|<next record>...];<checksum>` sends records (`A,<n>`
//! for n records taken, `E` for a refused line), `P` is a keep-alive. The checksum is the
//! sum of the bytes before the `;`, modulo 256, as two hex digits.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::device::{Answer, DeviceSide, Report};
use fleetgate_codecs::protocol::{DatagramError, Event, Fatal, Session, SessionOptions};
use fleetgate_codecs::registry::{Passwords, ProtocolSpec, Transports, any_identifier};
use fleetgate_codecs::{Batch, Fix, Protocol, UtcMillis};
use fleetgate_contracts::config::ListenerConfig;
use fleetgate_testkit::{eventually, unique};
use tokio_util::sync::CancellationToken;

const NAME: &str = "testline";

fn checksum(text: &str) -> String {
    format!("{:02X}", text.bytes().fold(0u8, |sum, b| sum.wrapping_add(b)))
}

/// The session: one line at a time.
struct LineSession {
    options: SessionOptions,
    device: Option<Arc<str>>,
    offset: u64,
}

impl LineSession {
    fn line(&mut self, line: &str, at: u64) -> Event {
        let refused = |error: String| Event::Refused { offset: at, error, reply: Some(Bytes::from_static(b"E\n")) };
        if let Some(identifier) = line.strip_prefix("L,") {
            self.device = Some(Arc::from(identifier));
            return Event::Login {
                device: identifier.to_owned(),
                password: None,
                accept: Bytes::from_static(b"OK\n"),
                reject: Bytes::from_static(b"NO\n"),
            };
        }
        if line == "P" {
            return Event::KeepAlive { reply: None };
        }
        let Some((body, sum)) = line.strip_prefix("D,").and_then(|rest| rest.rsplit_once(';')) else {
            return refused(format!("not a line of this protocol: {line:?}"));
        };
        if checksum(&format!("D,{body}")) != sum {
            return refused(format!("checksum mismatch: line says {sum}"));
        }
        let mut batch = Batch::new(NAME, self.device.clone(), Bytes::copy_from_slice(line.as_bytes()));
        for record in body.split('|') {
            let fields: Vec<&str> = record.split(',').collect();
            let [time, lat, lon, speed] = fields[..] else { return refused(format!("record {record:?}")) };
            let (Ok(time), Ok(lat), Ok(lon), Ok(speed)) =
                (time.parse::<i64>(), lat.parse::<f64>(), lon.parse::<f64>(), speed.parse::<f64>())
            else {
                return refused(format!("record {record:?} does not read"));
            };
            let mut fix = Fix::at(UtcMillis(time));
            fix.coordinates = Some((lat, lon));
            fix.speed = Some(speed);
            fix.valid = true;
            batch.push_fix(fix);
        }
        let ack = Bytes::from(format!("A,{}\n", batch.len()));
        Event::Positions { batch, ack, nack: Some(Bytes::from_static(b"E\n")) }
    }
}

impl Session for LineSession {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, Fatal> {
        let Some(end) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > self.options.max_line_len {
                return Err(Fatal { offset: self.offset, error: "line too long".into() });
            }
            return Ok(None);
        };
        let at = self.offset;
        let line = src.split_to(end + 1);
        self.offset += line.len() as u64;
        let text = String::from_utf8_lossy(&line[..end]).into_owned();
        if self.device.is_none() && !self.options.allow_anonymous && !text.starts_with("L,") {
            return Err(Fatal { offset: at, error: "data before the login".into() });
        }
        Ok(Some(self.line(&text, at)))
    }

    fn decode_datagram(&mut self, _: Bytes) -> Result<Vec<Event>, DatagramError> {
        Err(DatagramError { offset: 0, error: "no UDP".into() })
    }

    fn offset(&self) -> u64 {
        self.offset
    }
}

/// The device side.
#[derive(Default)]
struct LineDevice;

impl DeviceSide for LineDevice {
    fn login(&mut self, identifier: &str) -> Vec<u8> {
        format!("L,{identifier}\n").into_bytes()
    }

    fn data(&mut self, reports: &[Report]) -> Vec<u8> {
        let records: Vec<String> =
            reports.iter().map(|r| format!("{},{:.6},{:.6},{}", r.time_ms, r.lat, r.lon, r.speed.round())).collect();
        let body = format!("D,{}", records.join("|"));
        format!("{body};{}\n", checksum(&body)).into_bytes()
    }

    fn corrupt(&self, frames: &mut Vec<u8>) {
        if let Some(at) = frames.iter().rposition(|&b| b == b';') {
            frames[at + 1] = if frames[at + 1] == b'0' { b'1' } else { b'0' };
        }
    }

    fn read_answer(&mut self, buffer: &mut BytesMut) -> Result<Option<Answer>, String> {
        let Some(end) = buffer.iter().position(|&b| b == b'\n') else { return Ok(None) };
        let line = buffer.split_to(end + 1);
        Ok(Some(match std::str::from_utf8(&line[..end]).map_err(|e| e.to_string())? {
            "OK" => Answer::LoginAccepted,
            "NO" => Answer::LoginRefused,
            "E" => Answer::Accepted(0),
            other => match other.strip_prefix("A,") {
                Some(n) => Answer::Accepted(n.parse().map_err(|_| format!("answer {other:?}"))?),
                None => Answer::Other,
            },
        }))
    }

    fn acknowledges(&self, reply: &[u8]) -> bool {
        reply.starts_with(b"A,") && !reply.starts_with(b"A,0")
    }
}

static SPEC: ProtocolSpec = ProtocolSpec {
    name: NAME,
    title: "A line protocol of this test",
    default_port: 0,
    transports: Transports { tcp: true, udp: false },
    text: true,
    limits: &["max_line_len"],
    session: |options| Box::new(LineSession { options, device: None, offset: 0 }),
    identifier: any_identifier,
    identifier_rule: "any identifier",
    passwords: Passwords::None,
    device: || Box::new(LineDevice),
};

fn protocol() -> Protocol {
    // Several tests of this file register it; the first wins.
    Protocol::register(&SPEC).unwrap_or_else(|_| Protocol::from_name(NAME).expect("registered"))
}

#[test]
fn a_registered_protocol_passes_the_conformance_kit_and_decodes() {
    let protocol = protocol();
    let failures = fleetgate_codecs::conformance::check_device_side(protocol, 100);
    assert!(failures.is_empty(), "{failures:#?}");

    let input = "L,4711\nD,1700000000000,54.700000,25.300000,50;XX\nP\n";
    let bad = checksum("D,1700000000000,54.700000,25.300000,50");
    let good = input.replace("XX", &bad);
    let args = fleetgate::decode::DecodeArgs {
        protocol: NAME.into(),
        hex: false,
        udp: false,
        model: None,
        utc_offset: None,
        file: None,
    };
    let transcript = fleetgate::decode::transcript(protocol, &args, good.as_bytes()).expect("decodes");
    assert_eq!(
        transcript.lines,
        [
            r#"{"event":"login","device":"4711"}"#,
            r#"{"event":"reply","hex":"4f4b0a","text":"OK\n"}"#,
            r#"{"event":"position","device":"4711","protocol":"testline","time":"2023-11-14T22:13:20Z","lat":54.7,"lon":25.3,"speed":50,"valid":true,"attrs":{},"io":{}}"#,
            r#"{"event":"reply","hex":"412c310a","text":"A,1\n"}"#,
            r#"{"event":"keepalive"}"#,
        ]
    );
    let refused = fleetgate::decode::transcript(protocol, &args, input.as_bytes()).expect("decodes");
    assert!(refused.lines[2].starts_with(r#"{"event":"error","offset":7,"error":"checksum mismatch"#), "{refused:?}");
    assert!(refused.lines[3].contains(r#""text":"E\n""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_protocol_runs_through_gateway_processor_and_simulator() {
    let protocol = protocol();
    let (mut config, postgres) = fleetgate_testkit::isolated_config("plugin", None).await;
    let tenant: i64 =
        postgres.query_one("INSERT INTO tenants (name) VALUES ('t') RETURNING id", &[]).await.expect("tenant").get(0);
    let identifiers = ["4711", "4712", "4713"];
    for identifier in identifiers {
        postgres
            .execute(
                "INSERT INTO devices (tenant_id, identifier, protocol) VALUES ($1, $2, $3)",
                &[&tenant, &identifier, &NAME],
            )
            .await
            .expect("device");
    }
    config.gateway.bind = [127, 0, 0, 1].into();
    config.processor.batch_wait_ms = 10;
    config.gateway.listeners = vec![ListenerConfig { protocol, tcp_port: Some(0), udp_port: None, idle_timeout_s: 60 }];
    let listeners = fleetgate_gateway::bind(&config).await.expect("bind");
    let port = listeners.tcp[0].2.local_addr().expect("address").port();
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(fleetgate_gateway::run(listeners, config.clone(), shutdown.clone()));
    let processor = tokio::spawn(fleetgate_processor::run(config.clone(), shutdown.clone()));

    let dir = std::env::temp_dir().join(unique("fleetgate-plugin-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let devices_file = dir.join("devices.txt");
    let lines: Vec<String> = identifiers.iter().map(|id| format!("{id} {NAME}")).collect();
    std::fs::write(&devices_file, lines.join("\n")).expect("devices file");
    let acked_file = dir.join("acked.jsonl");
    let args = fleetgate::simulate::SimulateArgs {
        host: "127.0.0.1".into(),
        protocols: None,
        ports: vec![(protocol, port)],
        devices: 0,
        interval_s: 0.2,
        records: 2,
        seconds: 3,
        imei_base: 0,
        devices_file: Some(devices_file),
        register: None,
        api_key: None,
        offline_share: 0.0,
        corrupt_share: 1.0,
        acked: Some(acked_file.clone()),
        json: true,
        seed: 1,
    };
    fleetgate::simulate::simulate(args).await.expect("simulates");
    let acked = std::fs::read_to_string(&acked_file).expect("acked");
    let acked = acked.lines().count() as i64;
    assert!(acked >= 3 * 2 * 5, "the devices sent and were acknowledged: {acked}");
    // Every acknowledged position reaches history once; the corrupted frames none.
    eventually("every acknowledged position stored", || async {
        postgres.query_one("SELECT count(*) FROM positions", &[]).await.map(|r| r.get::<_, i64>(0)).ok() == Some(acked)
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), processor).await;
    fleetgate_contracts::stream::delete_streams(
        &async_nats::jetstream::new(async_nats::connect(config.nats.url.as_str()).await.expect("nats")),
        &config.nats,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
