//! A work queue keyed by object, as client-go's: a key waits at most once
//! however many changes concern it, and keys come out in the order they
//! first arrived, so one busy object cannot starve the others.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// Keys waiting for a reconcile.
#[derive(Debug)]
pub struct WorkQueue<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        Self {
            order: VecDeque::new(),
            queued: HashSet::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `key` unless it is already waiting.
    pub fn add(&mut self, key: K) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    /// Queues each key (see [`WorkQueue::add`]).
    pub fn extend(&mut self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            self.add(key);
        }
    }

    /// The key that has waited longest.
    pub fn pop(&mut self) -> Option<K> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    /// How many keys wait.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_waits_once_and_keys_leave_in_arrival_order() {
        let mut queue = WorkQueue::default();
        queue.extend(["b", "a", "b", "c", "a"]);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.pop(), Some("b"));
        // Popped, it may be queued again (a change after its reconcile began).
        queue.add("b");
        assert_eq!(
            std::iter::from_fn(|| queue.pop()).collect::<Vec<_>>(),
            ["a", "c", "b"]
        );
        assert!(queue.is_empty());
    }
}
