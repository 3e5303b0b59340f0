//! Live state in Redis (the key layout is `fleetgate_contracts::keys`): per device one
//! hash, per tenant a set of its devices, both written by one Lua script so a reader
//! never sees half an update. The script keeps the newest fix, the newest sensors and
//! the newest connection status by time, so batches may arrive in any order, twice, or
//! from several processors at once.

use std::borrow::Cow;
use std::collections::BTreeMap;

use fleetgate_codecs::time::UtcMillis;
use fleetgate_contracts::keys::{devices_key, kept_key, live_key};
use fleetgate_contracts::messages::{Position, Status};
use fleetgate_contracts::{DeviceId, TenantId};
use fleetgate_rules::track;
use redis::aio::ConnectionManager;

/// True when `position` may move the vehicle on the live map: a valid fix with possible
/// coordinates, not later than `latest_allowed` (now plus the future tolerance).
pub fn is_live_fix(position: &Position, latest_allowed: UtcMillis) -> bool {
    position.valid && position.fix_time <= latest_allowed && position.coordinates.is_some_and(track::possible)
}

/// KEYS: live hash, tenant set. ARGV: device id, fix time, position JSON, sensors time,
/// sensors JSON, received, online, status time (each empty when absent). Returns 1 when
/// the live position moved.
const UPDATE_SCRIPT: &str = r"
redis.call('SADD', KEYS[2], ARGV[1])
local function newer(field, time, or_equal)
  local current = tonumber(redis.call('HGET', KEYS[1], field))
  local t = tonumber(time)
  return current == nil or t > current or (or_equal and t == current)
end
local moved = 0
if ARGV[2] ~= '' and newer('fix_time', ARGV[2], false) then
  redis.call('HSET', KEYS[1], 'fix_time', ARGV[2], 'position', ARGV[3])
  moved = 1
end
if ARGV[4] ~= '' and newer('sensors_time', ARGV[4], true) then
  redis.call('HSET', KEYS[1], 'sensors_time', ARGV[4], 'sensors', ARGV[5])
end
if ARGV[6] ~= '' and newer('received', ARGV[6], false) then
  redis.call('HSET', KEYS[1], 'received', ARGV[6])
end
if ARGV[7] ~= '' and newer('status_time', ARGV[8], true) then
  redis.call('HSET', KEYS[1], 'online', ARGV[7], 'status_time', ARGV[8])
end
return moved
";

/// One device's update, reduced from everything a batch holds for it; it borrows the
/// batch's JSON rather than copying it for every newer position.
#[derive(Debug, Default, Clone)]
pub struct LiveUpdate<'a> {
    /// Owner.
    pub tenant_id: TenantId,
    /// Newest fix that may be live: time and JSON.
    pub fix: Option<(UtcMillis, Cow<'a, str>)>,
    /// Newest record's sensors (not in the future): time and `attrs` JSON.
    pub sensors: Option<(UtcMillis, Cow<'a, str>)>,
    /// Newest receive time.
    pub received: Option<UtcMillis>,
    /// Newest status.
    pub status: Option<(UtcMillis, bool)>,
}

/// Reduces a batch to one update per device. `latest_allowed` is now plus the future
/// tolerance: later fixes and sensors are stored but never live.
pub fn reduce<'a>(
    positions: &'a [Position],
    statuses: &[Status],
    latest_allowed: UtcMillis,
) -> BTreeMap<DeviceId, LiveUpdate<'a>> {
    let mut updates: BTreeMap<DeviceId, LiveUpdate<'a>> = BTreeMap::new();
    for p in positions {
        let update = updates.entry(p.device_id).or_default();
        update.tenant_id = p.tenant_id;
        if is_live_fix(p, latest_allowed) && update.fix.as_ref().is_none_or(|(t, _)| p.fix_time > *t) {
            update.fix = Some((p.fix_time, Cow::Borrowed(&p.json)));
        }
        if p.fix_time <= latest_allowed && update.sensors.as_ref().is_none_or(|(t, _)| p.fix_time >= *t) {
            update.sensors = Some((p.fix_time, Cow::Borrowed(&p.attrs)));
        }
        update.received = update.received.max(Some(p.received));
    }
    for s in statuses {
        let update = updates.entry(s.device_id).or_default();
        update.tenant_id = s.tenant_id;
        if update.status.is_none_or(|(t, _)| s.time >= t) {
            update.status = Some((s.time, s.online));
        }
    }
    updates
}

/// Live state writer.
#[derive(Clone)]
pub struct Live {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl Live {
    /// Connects (and keeps reconnecting in the background).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Live { connection, script: redis::Script::new(UPDATE_SCRIPT), prefix: prefix.to_owned() })
    }

    /// Applies the updates in one pipelined round trip; returns the devices whose live
    /// position moved.
    pub async fn apply(
        &mut self,
        updates: &BTreeMap<DeviceId, LiveUpdate<'_>>,
    ) -> Result<Vec<DeviceId>, redis::RedisError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let hash = self.script.get_hash().to_owned();
        let build = |hash: &str| {
            let mut pipe = redis::pipe();
            for (device_id, u) in updates {
                let text = |t: Option<UtcMillis>| t.map(|t| t.0.to_string()).unwrap_or_default();
                pipe.cmd("EVALSHA")
                    .arg(hash)
                    .arg(2)
                    .arg(live_key(&self.prefix, u.tenant_id, *device_id))
                    .arg(devices_key(&self.prefix, u.tenant_id))
                    .arg(device_id.0)
                    .arg(text(u.fix.as_ref().map(|f| f.0)))
                    .arg(u.fix.as_ref().map(|f| f.1.as_ref()).unwrap_or_default())
                    .arg(text(u.sensors.as_ref().map(|s| s.0)))
                    .arg(u.sensors.as_ref().map(|s| s.1.as_ref()).unwrap_or_default())
                    .arg(text(u.received))
                    .arg(u.status.map(|s| if s.1 { "1" } else { "0" }).unwrap_or_default())
                    .arg(text(u.status.map(|s| s.0)));
            }
            pipe
        };
        let moved: Vec<i64> = match build(&hash).query_async(&mut self.connection).await {
            Ok(moved) => moved,
            Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A restarted (or flushed) Redis forgot the script: load it and retry once.
                redis::cmd("SCRIPT").arg("LOAD").arg(UPDATE_SCRIPT).exec_async(&mut self.connection).await?;
                build(&hash).query_async(&mut self.connection).await?
            }
            Err(error) => return Err(error),
        };
        Ok(updates.keys().zip(moved).filter(|(_, m)| *m == 1).map(|(d, _)| *d).collect())
    }

    /// Forgets a device's live position and sensors, so a rebuild from history may put
    /// back one with the same fix time (after `fleetgate reprocess` rewrote it).
    pub async fn forget_position(&mut self, tenant_id: TenantId, device_id: DeviceId) -> Result<(), redis::RedisError> {
        redis::cmd("HDEL")
            .arg(live_key(&self.prefix, tenant_id, device_id))
            .arg(&["fix_time", "position", "sensors_time", "sensors"][..])
            .exec_async(&mut self.connection)
            .await
    }

    /// Sets the marker that live state is being kept here; true when it was missing,
    /// which means this Redis lost what it held (restarted without persistence, flushed,
    /// replaced) or never held any. One caller wins when several race.
    pub async fn mark_kept(&mut self) -> Result<bool, redis::RedisError> {
        let set: Option<String> =
            redis::cmd("SET").arg(kept_key(&self.prefix)).arg(1).arg("NX").query_async(&mut self.connection).await?;
        Ok(set.is_some())
    }

    /// True when Redis answers.
    pub async fn ping(&mut self) -> bool {
        redis::cmd("PING").query_async::<String>(&mut self.connection).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_possible_fixes_in_time_are_live() {
        let position = Position {
            tenant_id: TenantId(1),
            device_id: DeviceId(7),
            fix_time: UtcMillis(1_000),
            received: UtcMillis(1_000),
            coordinates: Some((54.7, 25.3)),
            altitude: None,
            speed: None,
            course: None,
            satellites: None,
            valid: true,
            attrs: "{}".into(),
            io: "{}".into(),
            json: String::new(),
        };
        assert!(is_live_fix(&position, UtcMillis(1_000)));
        assert!(!is_live_fix(&position, UtcMillis(999)), "a fix after the allowed time is not live");
        assert!(!is_live_fix(&Position { valid: false, ..position.clone() }, UtcMillis(1_000)));
        for coordinates in [(91.0, 0.0), (0.0, 181.0), (0.0, 0.0), (f64::NAN, 1.0)] {
            let impossible = Position { coordinates: Some(coordinates), ..position.clone() };
            assert!(!is_live_fix(&impossible, UtcMillis(i64::MAX)), "{coordinates:?}");
        }
    }
}
