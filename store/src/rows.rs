//! The history row format every role shares: how a time, a JSON column and a stored
//! position read and write in Postgres. A stored row becomes contract 1 JSON again only
//! through [`write_position`] (the API's history and the processor's rebuild of live
//! state both use it).

use std::fmt::Write;

use bytes::{BufMut, BytesMut};
use fleetgate_codecs::time::UtcMillis;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// A time as Postgres `timestamptz` (binary form).
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub UtcMillis);

impl ToSql for Timestamp {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0.0 * 1000 - POSTGRES_EPOCH_US);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let micros = i64::from_be_bytes(raw.try_into()?);
        Ok(Timestamp(UtcMillis((micros + POSTGRES_EPOCH_US).div_euclid(1000))))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// JSON text as Postgres `jsonb` (binary form: a version byte, then the text).
#[derive(Debug)]
pub struct Jsonb<'a>(pub &'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

/// `jsonb` read in binary as its text (a version byte, then the JSON).
pub struct JsonbText<'a>(pub &'a str);

impl<'a> tokio_postgres::types::FromSql<'a> for JsonbText<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(JsonbText(std::str::from_utf8(text)?)),
            _ => Err("unknown jsonb version".into()),
        }
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }
}

/// A number as contract 1 writes it: integral values (from integer protocol fields) as
/// integers.
fn write_number(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The `positions` columns [`write_position`] reads, in its order.
pub const POSITION_COLUMNS: &str =
    "fix_time, received, lat, lon, altitude, speed, course, satellites, valid, attrs, io";

/// The start every position of one device repeats: `{"device":..,"protocol":..,"time":"`.
pub fn position_identity(identifier: &str, protocol: &str) -> String {
    format!(
        r#"{{"device":{},"protocol":{},"time":""#,
        serde_json::Value::from(identifier),
        serde_json::Value::from(protocol)
    )
}

/// A stored row (selected as [`POSITION_COLUMNS`]) as contract 1 with `received`: the
/// same fields, order and number forms as the gateway writes; appended to `out` after
/// `identity` ([`position_identity`]). The one way history becomes JSON again: the API's
/// history and the rebuild of live state both use it.
pub fn write_position(out: &mut String, identity: &str, row: &tokio_postgres::Row) {
    let (time, received): (Timestamp, Timestamp) = (row.get(0), row.get(1));
    out.push_str(identity);
    let _ = write!(out, "{}\",\"received\":\"{}\"", time.0, received.0);
    if let (Some(lat), Some(lon)) = (row.get::<_, Option<f64>>(2), row.get::<_, Option<f64>>(3)) {
        let _ = write!(out, ",\"lat\":{lat},\"lon\":{lon}");
    }
    for (index, name) in [(4, "altitude"), (5, "speed"), (6, "course")] {
        if let Some(value) = row.get::<_, Option<f64>>(index) {
            let _ = write!(out, ",\"{name}\":");
            write_number(out, value);
        }
    }
    if let Some(satellites) = row.get::<_, Option<i32>>(7) {
        let _ = write!(out, ",\"satellites\":{satellites}");
    }
    let _ = write!(out, ",\"valid\":{}", row.get::<_, bool>(8));
    let _ = write!(out, ",\"attrs\":{},\"io\":{}}}", row.get::<_, JsonbText>(9).0, row.get::<_, JsonbText>(10).0);
}

/// An `events` row as JSON (the shape of `EventMessage` in `fleetgate_contracts`): what
/// the processor publishes for the live stream and what the API lists, made by the same
/// expression so the two never differ.
pub const EVENT_JSON: &str = "json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind, \
     'lat', lat, 'lon', lon, 'details', details)::text";

/// A connection status event as JSON for the live stream (it has no place or details).
pub const STATUS_EVENT_JSON: &str =
    "json_build_object('device_id', device_id, 'time', rfc3339(time), 'kind', kind)::text";

#[cfg(test)]
mod tests {
    use fleetgate_rules::track;

    /// The SQL form of "possible coordinates" agrees with the rule's.
    #[tokio::test]
    async fn possible_coordinates_in_sql_agree_with_the_rule() {
        let client = crate::connect(&fleetgate_testkit::base_url()).await.expect("postgres reachable");
        let cases = [(54.7, 25.3), (0.0, 0.0), (90.0, 180.0), (-90.0, -180.0), (90.1, 0.0), (0.0, -180.5), (0.0, 1.0)];
        for (lat, lon) in cases {
            let sql =
                format!("SELECT {} FROM (SELECT $1::float8 AS lat, $2::float8 AS lon) p", track::possible_sql("p"));
            let possible: bool = client.query_one(&sql, &[&lat, &lon]).await.expect("query").get(0);
            assert_eq!(possible, track::possible((lat, lon)), "{lat}, {lon}");
        }
    }
}
