/*!
Large answers (`/package/list` per selection, `/category/list`, the page per selection), built
once per store change and shared between connections.

A client may ask for an answer and never read it, on many connections at once: so no answer
is ever copied per connection (each holds an `Arc` of the one built), only one is built at a
time, and all answers alive at once (cached, or held by connections still sending them) stay
within `LIVE_BYTES`. Building one more than that allows is refused (`Busy`, a 503 with
`Retry-After`), and so is an answer larger than `MAX_ANSWER_BYTES` (`TooLarge`), which the
caller can narrow with the list's filters.
*/

use super::index::{ListQuery, content_etag};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Bytes of all answers alive at once.
pub const LIVE_BYTES: usize = 48 << 20;
/// The largest answer built.
pub const MAX_ANSWER_BYTES: usize = 24 << 20;
/// Answers kept in the cache, at most: their keys (a filter of up to 64 KiB) take memory too.
const CACHED_ANSWERS: usize = 256;

/// Which answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    List(ListQuery),
    Categories,
    /// The page for a selection, as reached under a host name (its curl example names it).
    Page(ListQuery, String),
    /// The Deployment Server's app list for a session, filters and base URL.
    Deployment(String),
}

/// An answer and its strong `ETag`.
#[derive(Clone)]
pub struct Answer {
    pub bytes: Arc<Vec<u8>>,
    pub etag: String,
}

/// Why an answer is not given.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// Larger than `MAX_ANSWER_BYTES`: this many bytes.
    TooLarge(usize),
    /// Answers alive already take `LIVE_BYTES`: try again when clients have read theirs.
    Busy,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::TooLarge(n) => write!(
                f,
                "the answer would be {n} bytes, more than the {MAX_ANSWER_BYTES} bytes the server builds at once: narrow it with category, filter, architecture or tag"
            ),
            AnswerError::Busy => write!(
                f,
                "the server holds {LIVE_BYTES} bytes of answers that clients have not read yet: try again later"
            ),
        }
    }
}

#[derive(Default)]
pub struct Answers {
    cache: Mutex<Cache>,
    /// Held while an answer is built: one at a time.
    building: Mutex<()>,
}

#[derive(Default)]
struct Cache {
    /// Answers of the current generation, with the order they were built in.
    answers: HashMap<AnswerKey, (u64, Answer)>,
    order: Vec<AnswerKey>,
    /// Every answer built that may still be alive (held by a connection).
    alive: Vec<Weak<Vec<u8>>>,
}

impl Cache {
    fn get(&self, key: &AnswerKey, generation: u64) -> Option<Answer> {
        self.answers
            .get(key)
            .filter(|(built, _)| *built == generation)
            .map(|(_, answer)| answer.clone())
    }

    /// Bytes of the answers still alive (dropping the dead from the list).
    fn live_bytes(&mut self) -> usize {
        self.alive.retain(|weak| weak.strong_count() > 0);
        self.alive
            .iter()
            .filter_map(Weak::upgrade)
            .map(|bytes| bytes.len())
            .sum()
    }

    /// Forget the oldest cached answer (connections still holding it keep it alive).
    fn evict_oldest(&mut self) -> bool {
        if self.order.is_empty() {
            return false;
        }
        let oldest = self.order.remove(0);
        self.answers.remove(&oldest);
        true
    }

    fn insert(&mut self, key: AnswerKey, generation: u64, answer: &Answer) {
        self.alive.push(Arc::downgrade(&answer.bytes));
        self.order.retain(|k| k != &key);
        self.order.push(key.clone());
        self.answers.insert(key, (generation, answer.clone()));
    }
}

impl Answers {
    /// The answer for `key` in the store's `generation`: cached, or built by `build` (one at a
    /// time; a request that waited for another's build takes its answer).
    pub fn get(
        &self,
        key: &AnswerKey,
        generation: u64,
        build: impl FnOnce() -> Vec<u8>,
    ) -> Result<Answer, AnswerError> {
        if let Some(answer) = self.cache().get(key, generation) {
            return Ok(answer);
        }
        let _building = self
            .building
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        {
            let mut cache = self.cache();
            if let Some(answer) = cache.get(key, generation) {
                return Ok(answer);
            }
            // Answers of older generations are of no use to anyone new.
            cache.answers.retain(|_, (built, _)| *built == generation);
            let kept: Vec<AnswerKey> = cache.answers.keys().cloned().collect();
            cache.order.retain(|k| kept.contains(k));
            if cache.live_bytes() >= LIVE_BYTES {
                while cache.evict_oldest() {}
                if cache.live_bytes() >= LIVE_BYTES {
                    return Err(AnswerError::Busy);
                }
            }
        }
        let bytes = build();
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(AnswerError::TooLarge(bytes.len()));
        }
        let answer = Answer {
            etag: content_etag(&bytes),
            bytes: Arc::new(bytes),
        };
        let mut cache = self.cache();
        while cache.live_bytes() + answer.bytes.len() > LIVE_BYTES {
            if !cache.evict_oldest() {
                return Err(AnswerError::Busy);
            }
        }
        while cache.order.len() >= CACHED_ANSWERS && cache.evict_oldest() {}
        cache.insert(key.clone(), generation, &answer);
        Ok(answer)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> AnswerKey {
        AnswerKey::List(ListQuery {
            filter: Some(n.to_string()),
            ..ListQuery::default()
        })
    }

    #[test]
    fn answers_are_built_once_and_shared() {
        let answers = Answers::default();
        let first = answers.get(&key(1), 1, || b"[1]".to_vec()).unwrap();
        let again = answers.get(&key(1), 1, || panic!("built twice")).unwrap();
        assert!(Arc::ptr_eq(&first.bytes, &again.bytes));
        let newer = answers.get(&key(1), 2, || b"[2]".to_vec()).unwrap();
        assert_eq!(*newer.bytes, b"[2]");
    }

    #[test]
    fn answers_held_by_clients_stay_within_the_live_bytes() {
        let answers = Answers::default();
        let big = || vec![b' '; MAX_ANSWER_BYTES];
        // Clients that never read hold every answer they got.
        let mut held = Vec::new();
        let mut refused = 0;
        for n in 0..8 {
            match answers.get(&key(n), 1, big) {
                Ok(answer) => held.push(answer),
                Err(AnswerError::Busy) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(held.len(), LIVE_BYTES / MAX_ANSWER_BYTES);
        assert_eq!(refused, 8 - held.len());
        // Once they are read (dropped), answers are built again.
        held.clear();
        assert!(answers.get(&key(99), 1, big).is_ok());
        assert_eq!(
            answers
                .get(&key(100), 1, || vec![0; MAX_ANSWER_BYTES + 1])
                .err(),
            Some(AnswerError::TooLarge(MAX_ANSWER_BYTES + 1))
        );
    }
}
