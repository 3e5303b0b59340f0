//! Exports: a device's track as GPX 1.1 or KML 2.2 (`/v1/devices/{id}/positions?format=gpx|kml`,
//! every valid fix of the range, streamed), and reports as CSV (`?format=csv`).

use std::fmt::Write;

use axum::response::Response;
use bytes::Bytes;
use fleetgate_codecs::time::UtcMillis;
use fleetgate_store::rows::Timestamp;
use futures_util::TryStreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ApiResult;
use crate::history::streamed;
use crate::live::DeviceMeta;

/// A track format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// GPX 1.1: one `trk` of `trkpt`s with elevation and time.
    Gpx,
    /// KML 2.2: one Placemark with a `gx:Track` (times and coordinates).
    Kml,
}

/// Text for XML character data and attributes.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// Streams every valid fix of the device in `[from, to]`, in time order, as `track`.
pub async fn track(
    state: &AppState,
    device: &DeviceMeta,
    from: UtcMillis,
    to: UtcMillis,
    track: Track,
) -> ApiResult<Response> {
    let db = state.db().await?;
    let (id, low, high) = (device.id, Timestamp(from), Timestamp(to));
    let rows = db
        .query_raw(
            "SELECT fix_time, lat, lon, altitude FROM positions
             WHERE device_id = $1 AND fix_time >= $2 AND fix_time <= $3 AND valid AND lat IS NOT NULL AND lon IS NOT NULL
             ORDER BY fix_time",
            [&id as &(dyn tokio_postgres::types::ToSql + Sync), &low, &high],
        )
        .await?;
    let name = xml_escape(if device.name.is_empty() { &device.identifier } else { &device.name });
    let (open, close) = match track {
        Track::Gpx => (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gpx version=\"1.1\" creator=\"fleetgate\" \
                 xmlns=\"http://www.topografix.com/GPX/1/1\">\n<trk><name>{name}</name><trkseg>\n"
            ),
            "</trkseg></trk>\n</gpx>\n".to_owned(),
        ),
        Track::Kml => (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\" \
                 xmlns:gx=\"http://www.google.com/kml/ext/2.2\">\n<Document><Placemark><name>{name}</name><gx:Track>\n"
            ),
            "</gx:Track></Placemark></Document>\n</kml>\n".to_owned(),
        ),
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let _db = db;
        let mut rows = std::pin::pin!(rows);
        let mut chunk = String::with_capacity(64 * 1024);
        chunk.push_str(&open);
        let mut coordinates = String::new();
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "track export failed mid-stream");
                    let _ = sender.send(Err(std::io::Error::other("history read failed"))).await;
                    return;
                }
            };
            let (time, lat, lon): (Timestamp, f64, f64) = (row.get(0), row.get(1), row.get(2));
            let altitude: Option<f64> = row.get(3);
            match track {
                Track::Gpx => {
                    let _ = write!(chunk, "<trkpt lat=\"{lat}\" lon=\"{lon}\">");
                    if let Some(altitude) = altitude {
                        let _ = write!(chunk, "<ele>{altitude}</ele>");
                    }
                    let _ = writeln!(chunk, "<time>{}</time></trkpt>", time.0);
                }
                Track::Kml => {
                    let _ = writeln!(chunk, "<when>{}</when>", time.0);
                    let _ = writeln!(coordinates, "<gx:coord>{lon} {lat} {}</gx:coord>", altitude.unwrap_or(0.0));
                }
            }
            if chunk.len() > 60 * 1024 {
                let full = std::mem::replace(&mut chunk, String::with_capacity(64 * 1024));
                if sender.send(Ok(Bytes::from(full))).await.is_err() {
                    return;
                }
            }
        }
        // KML wants every `when` before the coordinates.
        chunk.push_str(&coordinates);
        chunk.push_str(&close);
        let _ = sender.send(Ok(Bytes::from(chunk))).await;
    });
    let content_type = match track {
        Track::Gpx => "application/gpx+xml",
        Track::Kml => "application/vnd.google-earth.kml+xml",
    };
    Ok(streamed(content_type, receiver))
}

/// One CSV field: quoted when it holds a separator, a quote or a line end.
fn csv_field(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// Report items (flat JSON objects, nested `{"lat", "lon"}` points as two columns) as
/// CSV with a header row; `columns` fixes the order.
pub fn csv(items: &[Value], columns: &[&str]) -> String {
    let mut out = String::new();
    let mut header: Vec<String> = Vec::new();
    for column in columns {
        match items.first().map(|item| &item[*column]) {
            Some(Value::Object(_)) => header.extend([format!("{column}_lat"), format!("{column}_lon")]),
            _ => header.push((*column).to_owned()),
        }
    }
    let _ = writeln!(out, "{}", header.join(","));
    for item in items {
        let mut fields = Vec::with_capacity(header.len());
        for column in columns {
            match &item[*column] {
                Value::Object(point) => {
                    fields.push(csv_field(point.get("lat").unwrap_or(&Value::Null)));
                    fields.push(csv_field(point.get("lon").unwrap_or(&Value::Null)));
                }
                value => fields.push(csv_field(value)),
            }
        }
        let _ = writeln!(out, "{}", fields.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_quotes_what_needs_it_and_splits_points() {
        let items = [json!({"name": "a, \"b\"", "start": {"lat": 1.5, "lon": 2.5}, "n": 3})];
        assert_eq!(csv(&items, &["name", "start", "n"]), "name,start_lat,start_lon,n\n\"a, \"\"b\"\"\",1.5,2.5,3\n");
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape("Truck <7> & \"co\""), "Truck &lt;7&gt; &amp; &quot;co&quot;");
    }
}
