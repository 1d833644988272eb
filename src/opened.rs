//! A bounded memory of sessions opened recently, by their sealed cookie value.
//!
//! A browser sends the same session cookie with every request until the session changes (a
//! page and its assets, an SPA's API calls), so most `/auth` checks ask to open a value that was
//! opened moments ago. Remembering the result skips base64, AES-GCM and JSON for them; the
//! benchmark profile had those at about a quarter of a valid-session check.
//!
//! What this does not change: only values that opened (authenticated) are remembered, so the
//! answer for a given cookie is exactly what opening it would give; expiry, refresh and
//! assertions are still decided per request from the session's fields; a new Secret means a new
//! process, so nothing sealed under an old key is remembered.
//!
//! Entries are found by a keyed 64-bit hash (SipHash with a random key per process, so hash
//! floods cannot be precomputed) and then confirmed by comparing the whole sealed value in
//! constant time: a lookup never reveals, through timing, how much of a remembered cookie a guess
//! matched. Memory is bounded by two generations per shard: when the current one is full it
//! becomes the previous one and the old previous is dropped; a hit in the previous generation is
//! moved forward, so sessions in use survive and idle ones age out.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

/// Independent locks, so concurrent requests rarely wait for each other.
const SHARDS: usize = 8;
/// Sealed bytes one generation of one shard may hold before it rotates.
const GENERATION_BYTES: usize = 256 * 1024;
/// Entries one generation of one shard may hold before it rotates.
const GENERATION_ENTRIES: usize = 1024;

/// Values remembered by the sealed text that produced them.
pub struct Opened<T> {
    keys: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<Generations<T>>>,
}

struct Generations<T> {
    current: HashMap<u64, Entry<T>>,
    previous: HashMap<u64, Entry<T>>,
    /// Sealed bytes held by `current`.
    bytes: usize,
}

struct Entry<T> {
    sealed: Box<str>,
    value: Arc<T>,
}

impl<T> Default for Opened<T> {
    fn default() -> Self {
        Opened {
            keys: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: HashMap::new(),
                        previous: HashMap::new(),
                        bytes: 0,
                    })
                })
                .collect(),
        }
    }
}

impl<T> std::fmt::Debug for Opened<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they are sessions.
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

impl<T> Opened<T> {
    fn hash(&self, pieces: &[&str]) -> u64 {
        let mut h = self.keys.build_hasher();
        for p in pieces {
            h.write(p.as_bytes());
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> Option<std::sync::MutexGuard<'_, Generations<T>>> {
        // A poisoned lock (a panic while holding it; the code below cannot panic) only costs
        // the memory: the caller opens the cookie itself.
        self.shards.get(hash as usize % SHARDS)?.lock().ok()
    }

    /// The value remembered for the sealed text made of `pieces` (in order), if any.
    pub fn get(&self, pieces: &[&str]) -> Option<Arc<T>> {
        let hash = self.hash(pieces);
        let mut g = self.shard(hash)?;
        if let Some(e) = g.current.get(&hash) {
            return same(&e.sealed, pieces).then(|| e.value.clone());
        }
        let e = g.previous.remove(&hash)?;
        if !same(&e.sealed, pieces) {
            return None;
        }
        let value = e.value.clone();
        g.insert(hash, e);
        Some(value)
    }

    /// Remembers `value` as what the sealed text made of `pieces` opens to.
    pub fn insert(&self, pieces: &[&str], value: Arc<T>) {
        let hash = self.hash(pieces);
        if let Some(mut g) = self.shard(hash) {
            g.insert(
                hash,
                Entry {
                    sealed: pieces.concat().into_boxed_str(),
                    value,
                },
            );
        }
    }
}

impl<T> Generations<T> {
    fn insert(&mut self, hash: u64, e: Entry<T>) {
        if self.bytes + e.sealed.len() > GENERATION_BYTES
            || self.current.len() >= GENERATION_ENTRIES
        {
            self.previous = std::mem::take(&mut self.current);
            self.bytes = 0;
        }
        self.bytes += e.sealed.len();
        if let Some(old) = self.current.insert(hash, e) {
            self.bytes = self.bytes.saturating_sub(old.sealed.len());
        }
    }
}

/// Whether `sealed` is exactly the concatenation of `pieces`, in time that depends only on the
/// lengths (a remembered value is a user's session).
fn same(sealed: &str, pieces: &[&str]) -> bool {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    if total != sealed.len() {
        return false;
    }
    let mut equal = subtle::Choice::from(1u8);
    let mut at = 0;
    for p in pieces {
        let part = sealed.as_bytes().get(at..at + p.len()).unwrap_or_default();
        equal &= part.ct_eq(p.as_bytes());
        at += p.len();
    }
    equal.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_the_whole_value() {
        let o: Opened<u32> = Opened::default();
        o.insert(&["abc", "def"], Arc::new(1));
        for (pieces, want) in [
            (vec!["abc", "def"], Some(1)),
            (vec!["abcdef"], Some(1)),
            (vec!["ab", "cdef"], Some(1)),
            (vec!["abc", "deg"], None),
            (vec!["abc"], None),
            (vec!["abc", "defg"], None),
            (vec![""], None),
        ] {
            assert_eq!(o.get(&pieces).as_deref(), want.as_ref(), "{pieces:?}");
        }
    }

    #[test]
    fn same_compares_exactly() {
        for (sealed, pieces, want) in [
            ("abcdef", vec!["abc", "def"], true),
            ("abcdef", vec!["abcdef"], true),
            ("abcdef", vec!["abc", "dex"], false),
            ("abcdef", vec!["abc", "de"], false),
            ("", vec![], true),
            ("a", vec![], false),
        ] {
            assert_eq!(same(sealed, &pieces), want, "{sealed} {pieces:?}");
        }
    }

    #[test]
    fn memory_is_bounded_and_entries_in_use_survive() {
        let o: Opened<usize> = Opened::default();
        let hot = "h".repeat(100);
        o.insert(&[&hot], Arc::new(0));
        // Far more than two generations of every shard can hold.
        let n = SHARDS * GENERATION_ENTRIES * 3;
        for i in 0..n {
            o.insert(&[&format!("key-{i}")], Arc::new(i));
            if i % 256 == 0 {
                assert_eq!(o.get(&[&hot]).as_deref(), Some(&0), "in use: kept");
            }
        }
        let held: usize = o
            .shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap();
                g.current.len() + g.previous.len()
            })
            .sum();
        assert!(held <= SHARDS * GENERATION_ENTRIES * 2, "{held} entries");
        assert_eq!(o.get(&["key-0"]), None, "idle and old: dropped");
        assert_eq!(
            o.get(&[&format!("key-{}", n - 1)]).as_deref(),
            Some(&(n - 1))
        );
        // Bytes too: large values rotate a generation before it reaches its entry cap.
        let big = "b".repeat(GENERATION_BYTES / 2 + 1);
        let o: Opened<u8> = Opened::default();
        for i in 0..SHARDS * 8 {
            o.insert(&[&format!("{i}{big}")], Arc::new(1));
        }
        for s in &o.shards {
            let g = s.lock().unwrap();
            assert!(g.bytes <= GENERATION_BYTES);
            assert!(g.current.len() + g.previous.len() <= 2 * 2);
        }
    }
}
