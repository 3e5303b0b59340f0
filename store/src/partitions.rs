//! Range partitions by time: created ahead and on demand, detached and dropped past the
//! retention. `positions` is partitioned by month of the fix time, `device_frames` (the
//! raw frame archive) by day of the receive time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use fleetgate_codecs::time::UtcMillis;
use tokio_postgres::Client;

/// The length of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar months (UTC): `{table}_y2026m11`.
    Month,
    /// Days (UTC): `{table}_d20261125`.
    Day,
}

/// The partitions of one table known to exist, shared by the workers of one process.
#[derive(Debug, Clone)]
pub struct Partitions {
    table: &'static str,
    period: Period,
    known: Arc<Mutex<BTreeSet<i64>>>,
}

impl Default for Partitions {
    /// `positions`, by month.
    fn default() -> Self {
        Partitions::new("positions", Period::Month)
    }
}

/// First month with its own partition; earlier fixes go to `positions_before_2000`.
const FIRST_MONTH: i64 = 2000 * 12;

const DAY_MS: i64 = 86_400_000;

impl Partitions {
    /// The partitions of `table`, one per `period`.
    pub fn new(table: &'static str, period: Period) -> Self {
        Partitions { table, period, known: Arc::default() }
    }

    /// The index of the period `time` falls in (`year * 12 + month - 1` for months,
    /// days since the epoch for days).
    pub fn period_of(&self, time: UtcMillis) -> i64 {
        match self.period {
            Period::Month => {
                let (year, month) = time.year_month();
                year * 12 + i64::from(month) - 1
            }
            Period::Day => time.0.div_euclid(DAY_MS),
        }
    }

    /// Partition name and bounds of a period index.
    fn partition_of(&self, index: i64) -> (String, String, String) {
        match self.period {
            Period::Month => {
                let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
                let (next_year, next_month0) = ((index + 1).div_euclid(12), (index + 1).rem_euclid(12));
                (
                    format!("{}_y{year:04}m{:02}", self.table, month0 + 1),
                    format!("{year:04}-{:02}-01 00:00:00+00", month0 + 1),
                    format!("{next_year:04}-{:02}-01 00:00:00+00", next_month0 + 1),
                )
            }
            Period::Day => {
                let date = |index: i64| UtcMillis(index * DAY_MS).to_string()[..10].to_owned();
                let (from, to) = (date(index), date(index + 1));
                (
                    format!("{}_d{}", self.table, from.replace('-', "")),
                    format!("{from} 00:00:00+00"),
                    format!("{to} 00:00:00+00"),
                )
            }
        }
    }

    /// When the period `index` starts.
    pub fn start_of(&self, index: i64) -> UtcMillis {
        let (_, from, _) = self.partition_of(index);
        let rfc3339 = format!("{}T{}Z", &from[..10], &from[11..19]);
        UtcMillis::parse_rfc3339(&rfc3339).unwrap_or(UtcMillis(0))
    }

    /// The period index of a partition name of this table, if it is one.
    fn index_of(&self, name: &str) -> Option<i64> {
        let suffix = name.strip_prefix(self.table)?;
        match self.period {
            Period::Month => {
                let rest = suffix.strip_prefix("_y")?;
                let (year, month) = rest.split_once('m')?;
                let (year, month): (i64, i64) = (year.parse().ok()?, month.parse().ok()?);
                (year.to_string().len() == 4 && (1..=12).contains(&month)).then_some(year * 12 + month - 1)
            }
            Period::Day => {
                let digits = suffix.strip_prefix("_d")?;
                if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let at = format!("{}-{}-{}T00:00:00Z", &digits[..4], &digits[4..6], &digits[6..]);
                Some(self.period_of(UtcMillis::parse_rfc3339(&at)?))
            }
        }
    }

    /// Creates the partitions of `periods` that are not known to exist.
    pub async fn ensure(
        &self,
        client: &mut Client,
        periods: impl IntoIterator<Item = i64>,
    ) -> Result<(), tokio_postgres::Error> {
        let first = if self.period == Period::Month { FIRST_MONTH } else { i64::MIN };
        let missing: Vec<i64> = {
            let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            periods.into_iter().filter(|p| *p >= first && !known.contains(p)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let transaction = client.transaction().await?;
        // Two processes creating the same partition would collide; one lock orders them.
        transaction.execute("SELECT pg_advisory_xact_lock(7046113001)", &[]).await?;
        for period in &missing {
            let (name, from, to) = self.partition_of(*period);
            transaction
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {} FOR VALUES FROM ('{from}') TO ('{to}')",
                    self.table
                ))
                .await?;
        }
        transaction.commit().await?;
        self.known.lock().unwrap_or_else(|e| e.into_inner()).extend(missing);
        Ok(())
    }

    /// Creates the current period's partition and the next `ahead` ones.
    pub async fn ensure_ahead(
        &self,
        client: &mut Client,
        now: UtcMillis,
        ahead: u32,
    ) -> Result<(), tokio_postgres::Error> {
        let current = self.period_of(now);
        self.ensure(client, current..=current + i64::from(ahead)).await
    }

    /// The oldest period kept when `keep` periods are kept before the current one.
    pub fn oldest_kept(&self, now: UtcMillis, keep: u32) -> i64 {
        self.period_of(now) - i64::from(keep)
    }

    /// Detaches and drops the partitions that ended more than `keep` periods before
    /// `now` (0 keeps everything). Returns their names.
    pub async fn drop_expired(
        &self,
        client: &mut Client,
        now: UtcMillis,
        keep: u32,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        if keep == 0 {
            return Ok(Vec::new());
        }
        let oldest_kept = self.oldest_kept(now, keep);
        let rows = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = $1::text::regclass",
                &[&self.table],
            )
            .await?;
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let Some(index) = self.index_of(&name) else { continue };
            if index < oldest_kept {
                client
                    .batch_execute(&format!("ALTER TABLE {} DETACH PARTITION {name}; DROP TABLE {name}", self.table))
                    .await?;
                self.known.lock().unwrap_or_else(|e| e.into_inner()).remove(&index);
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> UtcMillis {
        UtcMillis::parse_rfc3339(text).unwrap_or(UtcMillis(0))
    }

    #[test]
    fn months_are_named_and_bounded() {
        let positions = Partitions::default();
        let index = positions.period_of(at("2026-12-31T23:59:59.999Z"));
        let (name, from, to) = positions.partition_of(index);
        assert_eq!(name, "positions_y2026m12");
        assert_eq!(from, "2026-12-01 00:00:00+00");
        assert_eq!(to, "2027-01-01 00:00:00+00");
        assert_eq!(positions.index_of(&name), Some(index));
        assert_eq!(positions.index_of("positions_before_2000"), None);
        assert_eq!(positions.start_of(index), at("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn days_are_named_and_bounded() {
        let frames = Partitions::new("device_frames", Period::Day);
        let index = frames.period_of(at("2026-02-28T23:59:59.999Z"));
        let (name, from, to) = frames.partition_of(index);
        assert_eq!(name, "device_frames_d20260228");
        assert_eq!(from, "2026-02-28 00:00:00+00");
        assert_eq!(to, "2026-03-01 00:00:00+00");
        assert_eq!(frames.index_of(&name), Some(index));
        assert_eq!(frames.index_of("device_frames_d2026022"), None);
    }
}
