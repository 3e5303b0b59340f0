//! `fleetgate reprocess`: decodes a device's archived frames of a span again with the
//! codecs of this build and replaces the history rows they became, so a codec fix
//! reaches the history already stored.
//!
//! Which rows a frame became is exact: the gateway gives a frame's positions the frame's
//! archive time as `received`. Only rows received at the time of an archived frame of
//! the span are compared and replaced; rows from frames the archive does not hold (its
//! retention, a record lost to a crash) are never touched. Replacing is one transaction
//! (delete the rows that changed or vanished, insert the new and changed ones, derive
//! events, distances and motion again over the span, mark live state for a rebuild), so
//! it is idempotent: a second run finds nothing to change.

use std::collections::{BTreeMap, HashMap};

use bytes::BytesMut;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_codecs::traffic::{self, ArchivedFrame};
use fleetgate_codecs::{DeviceSettings, Event, Protocol, SessionOptions};
use fleetgate_contracts::archive::format_time;
use fleetgate_contracts::messages::encode_positions;
use fleetgate_contracts::{DeviceId, DeviceRecord};
use serde::Serialize;
use serde_json::Value;

use fleetgate_store::rows::{POSITION_COLUMNS, Timestamp, position_identity, write_position};

use crate::history::History;
use crate::live::Live;
use fleetgate_contracts::messages::{Position, parse_positions};

/// What to reprocess.
#[derive(Debug, Clone)]
pub struct Request {
    /// The device's identifier (IMEI, terminal id).
    pub identifier: String,
    /// First receive time (inclusive).
    pub from: UtcMillis,
    /// Last receive time (inclusive).
    pub to: UtcMillis,
    /// Only report what would change.
    pub dry_run: bool,
}

/// One row that changes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// The row's fix time.
    pub time: String,
    /// The stored row (contract 1), for `removed` and `changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The row decoded now (contract 1), for `added` and `changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The counts of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The device's row id.
    pub device_id: DeviceId,
    /// Inbound frames of the span in the archive.
    pub frames: usize,
    /// Connections they belong to.
    pub connections: usize,
    /// Frames that cannot be decoded again (archived truncated, or after the stream
    /// broke).
    pub undecodable: usize,
    /// Frames the current codecs refuse.
    pub refused: usize,
    /// Rows decoded again exactly as stored.
    pub unchanged: usize,
    /// Rows the current codecs produce that were not stored.
    pub added: usize,
    /// Stored rows the current codecs no longer produce.
    pub removed: usize,
    /// Rows that differ.
    pub changed: usize,
    /// New rows whose fix time is already stored from another frame (kept, as a resent
    /// record is).
    pub kept: usize,
    /// True when the changes were written.
    pub applied: bool,
}

/// A run's result: the changes, then the counts.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each row that changes (or would).
    pub changes: Vec<Change>,
    /// The counts.
    pub summary: Summary,
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    /// No device has the identifier.
    #[error("no device is registered as {0:?}")]
    UnknownDevice(String),
    /// The device's protocol has no codec in this build.
    #[error("device {identifier} is registered for {protocol:?}, which this build does not decode")]
    UnknownProtocol {
        /// The identifier.
        identifier: String,
        /// Its registered protocol.
        protocol: String,
    },
    /// `from` is after `to`.
    #[error("--from must not be after --to")]
    EmptySpan,
    /// The database.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The decoded positions did not read back (a bug: the gateway's own format).
    #[error("decoded positions: {0}")]
    Positions(String),
}

/// Positions decoded again, by fix time (the first record of a time wins, as in the
/// insert), and what the decoding found.
#[derive(Default)]
struct Decoded {
    positions: BTreeMap<i64, Position>,
    undecodable: usize,
    refused: usize,
}

/// Runs one connection's frames through a fresh session, in arrival order.
fn decode_connection(
    protocol: Protocol,
    options: &SessionOptions,
    device: &DeviceRecord,
    login: Option<&[u8]>,
    connection: &traffic::Connection,
    decoded: &mut Decoded,
) -> Result<(), ReprocessError> {
    let mut session = protocol.session(options.clone());
    let mut buffer = BytesMut::new();
    if let Some(login) = login {
        // The login sets the session up (Wialon's version); its events were archived.
        buffer.extend_from_slice(login);
        while let Ok(Some(_)) = session.decode(&mut buffer) {}
        buffer.clear();
    }
    // As the gateway does once the login is accepted.
    session.configure(&device.settings);
    for (index, frame) in connection.frames.iter().enumerate() {
        if frame.truncated {
            decoded.undecodable += 1;
            continue;
        }
        let events = if connection.udp {
            match session.decode_datagram(bytes::Bytes::copy_from_slice(&frame.bytes)) {
                Ok(events) => events,
                Err(_) => {
                    decoded.refused += 1;
                    continue;
                }
            }
        } else {
            buffer.extend_from_slice(&frame.bytes);
            let mut events = Vec::new();
            loop {
                match session.decode(&mut buffer) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(_) => {
                        // The stream cannot be framed from here on: what follows is
                        // left as stored.
                        decoded.refused += 1;
                        decoded.undecodable += connection.frames.len() - index - 1;
                        return Ok(());
                    }
                }
            }
            events
        };
        for event in events {
            match event {
                Event::Positions { mut batch, .. } => {
                    batch.received = Some(frame.time);
                    let payload = encode_positions(device.tenant_id, device.device_id, &batch);
                    let positions = parse_positions(&payload).map_err(|e| ReprocessError::Positions(e.to_string()))?;
                    for position in positions {
                        decoded.positions.entry(position.fix_time.0).or_insert(position);
                    }
                }
                Event::Refused { .. } => decoded.refused += 1,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Equal as JSON, numbers compared by value (`5` and `5.0` are one number: a stored
/// row is read back through Postgres' `jsonb` and `float8`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Decodes the span again and, unless `dry_run`, replaces what changed. `live`, when
/// given, gets the device's live state rebuilt at once (else the processor's repair
/// task does it from `live_pending`).
pub async fn reprocess(
    history: &mut History,
    live: Option<&mut Live>,
    options: &SessionOptions,
    tolerance_s: f64,
    request: &Request,
) -> Result<Report, ReprocessError> {
    if request.from > request.to {
        return Err(ReprocessError::EmptySpan);
    }
    let client = history.client();
    let device_row = client
        .query_opt(
            "SELECT id, tenant_id, protocol, model, utc_offset_minutes FROM devices WHERE identifier = $1",
            &[&request.identifier],
        )
        .await?
        .ok_or_else(|| ReprocessError::UnknownDevice(request.identifier.clone()))?;
    let registered: String = device_row.get(2);
    let protocol = Protocol::from_name(&registered).ok_or_else(|| ReprocessError::UnknownProtocol {
        identifier: request.identifier.clone(),
        protocol: registered.clone(),
    })?;
    let device = DeviceRecord {
        device_id: device_row.get(0),
        tenant_id: device_row.get(1),
        protocol: Some(protocol),
        password: None,
        settings: DeviceSettings {
            model: device_row.get::<_, Option<String>>(3).map(Into::into),
            utc_offset_minutes: device_row.get(4),
        },
    };
    let mut report =
        Report { summary: Summary { device_id: device.device_id, ..Summary::default() }, ..Report::default() };

    let rows = client
        .query(
            "SELECT time, seq, connection, transport = 'udp', bytes, size, outcome FROM device_frames
             WHERE device_id = $1 AND direction = 'in' AND time >= $2 AND time <= $3 ORDER BY time, seq",
            &[&device.device_id, &Timestamp(request.from), &Timestamp(request.to)],
        )
        .await?;
    report.summary.frames = rows.len();
    let received: Vec<Timestamp> = rows.iter().map(|r| r.get::<_, Timestamp>(0)).collect();
    let mut first_outcome: HashMap<String, String> = HashMap::new();
    let frames = rows.iter().map(|row| {
        let (time, connection): (Timestamp, String) = (row.get(0), row.get(2));
        let bytes: Vec<u8> = row.get(4);
        let truncated = row.get::<_, i32>(5) as usize > bytes.len();
        first_outcome.entry(connection.clone()).or_insert_with(|| row.get(6));
        (connection, row.get::<_, bool>(3), ArchivedFrame { id: row.get(1), time: time.0, bytes, truncated })
    });
    let connections = traffic::group(frames.collect::<Vec<_>>());
    report.summary.connections = connections.len();

    let mut decoded = Decoded::default();
    for connection in &connections {
        // A TCP connection that began before the span: its login sets the session up.
        let login: Option<Vec<u8>> =
            if !connection.udp && first_outcome.get(&connection.id).is_some_and(|o| o != "login") {
                client
                    .query_opt(
                        "SELECT bytes FROM device_frames WHERE device_id = $1 AND connection = $2 AND direction = 'in'
                       AND outcome = 'login' AND time < $3 ORDER BY time DESC LIMIT 1",
                        &[&device.device_id, &connection.id, &Timestamp(request.from)],
                    )
                    .await?
                    .map(|row| row.get(0))
            } else {
                None
            };
        decode_connection(protocol, options, &device, login.as_deref(), connection, &mut decoded)?;
    }
    report.summary.undecodable = decoded.undecodable;
    report.summary.refused = decoded.refused;

    // The rows these frames became when they arrived.
    let identity = position_identity(&request.identifier, protocol.name());
    let stored = client
        .query(
            &format!("SELECT {POSITION_COLUMNS} FROM positions WHERE device_id = $1 AND received = ANY($2)"),
            &[&device.device_id, &received],
        )
        .await?;
    let mut old: BTreeMap<i64, Value> = BTreeMap::new();
    for row in &stored {
        let mut json = String::new();
        write_position(&mut json, &identity, row);
        let time: Timestamp = row.get(0);
        old.insert(time.0.0, serde_json::from_str(&json).unwrap_or(Value::Null));
    }
    let candidates: Vec<Timestamp> =
        decoded.positions.keys().filter(|t| !old.contains_key(t)).map(|t| Timestamp(UtcMillis(*t))).collect();
    let elsewhere: Vec<i64> = client
        .query(
            "SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time = ANY($2)",
            &[&device.device_id, &candidates],
        )
        .await?
        .iter()
        .map(|row| row.get::<_, Timestamp>(0).0.0)
        .collect();

    let mut remove: Vec<Timestamp> = Vec::new();
    let mut insert: Vec<Position> = Vec::new();
    for (time, position) in &decoded.positions {
        let new: Value = serde_json::from_str(&position.json).unwrap_or(Value::Null);
        let text = format_time(UtcMillis(*time));
        match old.get(time) {
            Some(stored) if same(stored, &new) => report.summary.unchanged += 1,
            Some(stored) => {
                report.changes.push(Change {
                    change: "changed",
                    time: text,
                    old: Some(stored.clone()),
                    new: Some(new),
                });
                remove.push(Timestamp(UtcMillis(*time)));
                insert.push(position.clone());
                report.summary.changed += 1;
            }
            None if elsewhere.contains(time) => report.summary.kept += 1,
            None => {
                report.changes.push(Change { change: "added", time: text, old: None, new: Some(new) });
                insert.push(position.clone());
                report.summary.added += 1;
            }
        }
    }
    for (time, stored) in &old {
        if !decoded.positions.contains_key(time) {
            let text = format_time(UtcMillis(*time));
            report.changes.push(Change { change: "removed", time: text, old: Some(stored.clone()), new: None });
            remove.push(Timestamp(UtcMillis(*time)));
            report.summary.removed += 1;
        }
    }
    report.changes.sort_by(|a, b| a.time.cmp(&b.time));
    if request.dry_run || report.changes.is_empty() {
        return Ok(report);
    }

    let times = remove.iter().map(|t| t.0).chain(insert.iter().map(|p| p.fix_time));
    let (low, high) = times.fold((UtcMillis(i64::MAX), UtcMillis(i64::MIN)), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let owner = (device.tenant_id, device.device_id);
    history.replace(owner, &remove, &received, &insert, (low, high)).await?;
    report.summary.applied = true;
    if let Some(live) = live {
        let rebuilt = async {
            live.forget_position(device.tenant_id, device.device_id).await?;
            crate::processor::rebuild_live(history.client(), live, device.tenant_id, device.device_id, tolerance_s)
                .await?;
            history.client().execute("DELETE FROM live_pending WHERE device_id = $1", &[&device.device_id]).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
        .await;
        if let Err(error) = rebuilt {
            tracing::warn!(%error, "live state not rebuilt now; the processor rebuilds it from history");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let a: Value = serde_json::from_str(r#"{"speed": 5, "attrs": {"fuel": 12.5}}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"attrs": {"fuel": 12.50}, "speed": 5.0}"#).unwrap_or_default();
        let c: Value = serde_json::from_str(r#"{"attrs": {"fuel": 12.6}, "speed": 5.0}"#).unwrap_or_default();
        assert!(same(&a, &b));
        assert!(!same(&a, &c));
    }
}
