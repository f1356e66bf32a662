//! What one client may hold open at once, counted per key: connections per
//! peer address on a TLS listener (so one address holding connections —
//! half-finished handshakes included — cannot take the slots every node's
//! heartbeats need), watches per credential on the API.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts what each key holds open, up to a cap.
#[derive(Debug)]
pub struct PerKey<K> {
    cap: usize,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

/// Connections per peer address.
pub type PerPeer = PerKey<IpAddr>;

/// One counted thing; uncounted when dropped.
pub struct Held<K: Hash + Eq> {
    key: K,
    open: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> PerKey<K> {
    /// At most `cap` per key.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// Held now, all keys together.
    pub fn total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// Counts one more for `key`, `None` if it holds `cap` already.
    pub fn hold(&self, key: K) -> Option<Held<K>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            key,
            open: self.open.clone(),
        })
    }
}

impl<K: Hash + Eq> Drop for Held<K> {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_cap_and_others_are_not_affected() {
        let limit = PerPeer::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limit.hold(a).unwrap();
        let _second = limit.hold(a).unwrap();
        assert!(limit.hold(a).is_none());
        assert!(limit.hold(b).is_some());
        drop(first);
        assert!(limit.hold(a).is_some());
        assert!(
            limit.open.lock().unwrap().len() <= 2,
            "no entry kept for closed peers"
        );
    }
}
