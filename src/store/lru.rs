/*!
A map of shared byte strings bounded by their total size, the oldest dropped first: the signed
footers and the seams of signed downloads (`signing`). Keys may come from clients (hardware
ids), so they count towards the bound too.
*/

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

pub trait KeySize {
    fn size(&self) -> usize;
}

impl KeySize for [u8; 20] {
    fn size(&self) -> usize {
        20
    }
}

impl KeySize for ([u8; 20], String) {
    fn size(&self) -> usize {
        20 + self.1.len()
    }
}

pub struct ByteLru<K> {
    values: HashMap<K, Arc<Vec<u8>>>,
    order: VecDeque<K>,
    bytes: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone + KeySize> ByteLru<K> {
    pub fn new(max_bytes: usize) -> ByteLru<K> {
        ByteLru {
            values: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    pub fn get(&self, key: &K) -> Option<Arc<Vec<u8>>> {
        self.values.get(key).cloned()
    }

    /// Keep `value` under `key`, dropping the oldest entries to make room; a value larger
    /// than the whole bound is not kept.
    pub fn insert(&mut self, key: K, value: Arc<Vec<u8>>) {
        let bytes = key.size() + value.len();
        if bytes > self.max_bytes || self.values.contains_key(&key) {
            return;
        }
        while self.bytes + bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.values.remove(&oldest) {
                self.bytes -= oldest.size() + old.len();
            }
        }
        self.bytes += bytes;
        self.order.push_back(key.clone());
        self.values.insert(key, value);
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(old) = self.values.remove(key) {
            self.bytes -= key.size() + old.len();
            self.order.retain(|k| k != key);
        }
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_its_bytes_dropping_the_oldest() {
        const MAX: usize = 4 << 20;
        let mut cache = ByteLru::new(MAX);
        let value = Arc::new(vec![0u8; 4000]);
        let key = |n: usize| ([0u8; 20], format!("device-{n}"));
        for n in 0..5000 {
            cache.insert(key(n), value.clone());
            assert!(cache.bytes() <= MAX);
        }
        assert!(cache.get(&key(4999)).is_some());
        assert!(cache.get(&key(0)).is_none(), "the oldest went first");
        assert_eq!(cache.values.len(), cache.order.len());
        // A key longer than the whole cache is not kept (hardware ids come from clients).
        cache.insert(([1; 20], "x".repeat(MAX)), value);
        assert!(cache.bytes() <= MAX);
        cache.remove(&key(4999));
        assert!(cache.get(&key(4999)).is_none());
        assert_eq!(cache.values.len(), cache.order.len());
    }
}
