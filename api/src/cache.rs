//! The one in-memory cache the API uses (tokens, device metadata, composed live answers):
//! entries expire after a time to live, and can be dropped early when what they were
//! read from changes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond which expired ones are swept before the next insert, so the map
/// cannot grow without bound.
const SWEEP_ABOVE: usize = 100_000;

/// A map whose entries expire.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// Entries live `ttl` (zero disables the cache).
    pub fn new(ttl: Duration) -> Self {
        TtlCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The value, unless absent or expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(value, _)| value.clone())
    }

    /// Keeps `value` for the time to live.
    pub fn put(&self, key: K, value: V) {
        self.put_until(key, value, Instant::now() + self.ttl);
    }

    /// Keeps `value` until `until` or the time to live, whichever comes first (a session
    /// token must not outlive its expiry in the cache).
    pub fn put_until(&self, key: K, value: V, until: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let expires = until.min(Instant::now() + self.ttl);
        // A poisoned lock only means a panic elsewhere mid-update; the map is still whole.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > SWEEP_ABOVE {
            let now = Instant::now();
            entries.retain(|_, (_, expires)| *expires > now);
        }
        entries.insert(key, (value, expires));
    }

    /// Drops the entries `keep` says no to.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|key, (value, _)| keep(key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_dropped() {
        let cache = TtlCache::new(Duration::from_secs(60));
        cache.put(1, "a");
        cache.put_until(2, "b", Instant::now());
        assert_eq!(cache.get(&1), Some("a"));
        assert_eq!(cache.get(&2), None, "expired at once");
        cache.retain(|key, _| *key != 1);
        assert_eq!(cache.get(&1), None);
        let off = TtlCache::new(Duration::ZERO);
        off.put(1, "a");
        assert_eq!(off.get(&1), None);
    }
}
