//! Overspeed events of devices with a minimum duration (`devices.overspeed_min_s` > 0),
//! by the rule in `fleetgate_rules::overspeed`: derived over each batch's span widened to
//! whole runs (from the last position under the limit before it to the first one after
//! it), then the window's stored events replaced.

use fleetgate_rules::overspeed::{Reading, events};
use fleetgate_store::rows::Timestamp;
use tokio_postgres::Transaction;

use crate::history::{EventRow, NewEvent, Span, replace_events};

/// The positions of device `$1` from the last one not over the limit (`$4`) before `$2`
/// to the first one not over it after `$3`: whole runs around the span.
const WINDOW: &str = "SELECT fix_time, speed, lat, lon FROM positions
    WHERE device_id = $1
      AND fix_time >= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time < $2
                                  AND NOT coalesce(speed > $4, false) ORDER BY fix_time DESC LIMIT 1), '-infinity')
      AND fix_time <= coalesce((SELECT fix_time FROM positions WHERE device_id = $1 AND fix_time > $3
                                  AND NOT coalesce(speed > $4, false) ORDER BY fix_time LIMIT 1), 'infinity')
    ORDER BY fix_time";

/// Derives the overspeed events of `spans` (with each device's limit in km/h and minimum
/// in seconds); the events of each whole-run window replaced. Returns the new ones for
/// the live stream.
pub async fn derive(
    transaction: &Transaction<'_>,
    spans: &[(Span, (f64, i64))],
) -> Result<Vec<NewEvent>, tokio_postgres::Error> {
    let mut new_events = Vec::new();
    for &(Span { tenant, device, from: lo, to: hi }, (limit, min_s)) in spans {
        let rows = transaction.query(WINDOW, &[&device, &Timestamp(lo), &Timestamp(hi), &limit]).await?;
        let readings: Vec<Reading> = rows
            .iter()
            .map(|r| Reading {
                time: r.get::<_, Timestamp>(0).0,
                speed: r.get(1),
                coordinates: r.get::<_, Option<f64>>(2).zip(r.get::<_, Option<f64>>(3)),
            })
            .collect();
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else { continue };
        let wanted: Vec<EventRow> = events(&readings, limit, min_s)
            .into_iter()
            .map(|e| EventRow {
                tenant,
                device,
                time: e.time,
                kind: "overspeed",
                reference: 0,
                coordinates: e.coordinates,
                details: serde_json::json!({"speed": e.speed, "limit": limit, "since": e.since.to_string()})
                    .to_string(),
            })
            .collect();
        let window = (first.time, last.time);
        new_events.extend(replace_events(transaction, device, &["overspeed"], window, &wanted).await?);
    }
    Ok(new_events)
}
