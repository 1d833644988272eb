//! A bounded memory of sessions opened recently, by their sealed cookie value.
//!
//! One per session scope (`session::Scope` owns it): every middleware of the scope finds the
//! sessions any of them opened.
//!
//! A browser sends the same session cookie with every request until the session changes (a
//! page and its assets, an SPA's API calls), so most `/auth` checks ask to open a value that was
//! opened moments ago. Remembering the result skips base64, AES-GCM and JSON for them; the
//! benchmark profile had those at about a quarter of a valid-session check.
//!
//! What this does not change: only values that opened (authenticated) are remembered, so the
//! answer for a given cookie is exactly what opening it would give; expiry, refresh and
//! assertions are still decided per request from the session's fields; a changed Secret makes a new
//! scope with an empty memory. A session a previous secret (`PreviousSecrets`) opened is
//! remembered with that mark (`Session::sealed_by_previous`), so its next answers still re-seal
//! it under the current Secret until the browser sends the new cookie.
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

/// Independent locks, so concurrent requests rarely wait for each other.
const SHARDS: usize = 8;
/// Sealed bytes one generation of one shard may hold before it rotates.
const GENERATION_BYTES: usize = 256 * 1024;
/// Entries one generation of one shard may hold before it rotates (at most 4096 sessions are
/// remembered in all; a rotation frees at most 256).
const GENERATION_ENTRIES: usize = 256;
/// Bytes at the end of a sealed value that pick its slot (see [`Opened::hash`]).
const HASHED_TAIL: usize = 32;

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
    /// Hashes the total length and the last bytes of the sealed text: its end is the AES-GCM
    /// tag, unpredictable for every value that was ever inserted (only values that opened are),
    /// and the full value is compared anyway. Hashing all of it would cost more than the rest of
    /// the lookup.
    fn hash(&self, pieces: &[&str]) -> u64 {
        let mut h = self.keys.build_hasher();
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        h.write_usize(total);
        let mut want = HASHED_TAIL;
        let mut tail: [&[u8]; 2] = [&[], &[]];
        // The tail may straddle the last two pieces.
        for (slot, p) in tail.iter_mut().rev().zip(pieces.iter().rev()) {
            let b = p.as_bytes();
            let take = want.min(b.len());
            *slot = &b[b.len() - take..];
            want -= take;
            if want == 0 {
                break;
            }
        }
        h.write(tail[0]);
        h.write(tail[1]);
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
        let evicted = g.insert(hash, e);
        drop(g);
        drop(evicted);
        Some(value)
    }

    /// Remembers `value` as what the sealed text made of `pieces` opens to.
    pub fn insert(&self, pieces: &[&str], value: Arc<T>) {
        let hash = self.hash(pieces);
        let entry = Entry {
            sealed: pieces.concat().into_boxed_str(),
            value,
        };
        let evicted = match self.shard(hash) {
            Some(mut g) => g.insert(hash, entry),
            None => None,
        };
        // Dropping a whole generation frees every session in it: done after the lock is
        // released, so other requests of this shard do not wait for it.
        drop(evicted);
    }
}

impl<T> Generations<T> {
    /// Inserts `e`, rotating the generations when the current one is full. Returns the
    /// generation that fell out, for the caller to drop outside the lock.
    fn insert(&mut self, hash: u64, e: Entry<T>) -> Option<HashMap<u64, Entry<T>>> {
        let mut evicted = None;
        if self.bytes + e.sealed.len() > GENERATION_BYTES
            || self.current.len() >= GENERATION_ENTRIES
        {
            let full = std::mem::take(&mut self.current);
            evicted = Some(std::mem::replace(&mut self.previous, full));
            self.bytes = 0;
        }
        self.bytes += e.sealed.len();
        if let Some(old) = self.current.insert(hash, e) {
            self.bytes = self.bytes.saturating_sub(old.sealed.len());
        }
        evicted
    }
}

/// Whether `sealed` is exactly the concatenation of `pieces`, in time that depends only on the
/// lengths (a remembered value is a user's session): every byte is compared, differences are
/// OR-ed together eight bytes at a time, and only the total is looked at, once, behind an
/// optimisation barrier. (`subtle`'s byte-wise comparison cost as much as the whole AES-GCM
/// open it replaces.)
fn same(sealed: &str, pieces: &[&str]) -> bool {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    if total != sealed.len() {
        return false;
    }
    let mut diff = 0u64;
    let mut at = 0;
    for p in pieces {
        let Some(part) = sealed.as_bytes().get(at..at + p.len()) else {
            return false;
        };
        diff |= xor_fold(part, p.as_bytes());
        at += p.len();
    }
    std::hint::black_box(diff) == 0
}

/// OR of `a[i] ^ b[i]` over equal-length slices, without early exit.
fn xor_fold(a: &[u8], b: &[u8]) -> u64 {
    let mut diff = 0u64;
    let (aw, bw) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (aw.remainder(), bw.remainder());
    for (x, y) in aw.zip(bw) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_ne_bytes(y.try_into().unwrap_or_default());
        diff |= x ^ y;
    }
    for (x, y) in ar.iter().zip(br) {
        diff |= u64::from(x ^ y);
    }
    diff
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
            ("0123456789abcdefXY", vec!["0123456789", "abcdefXY"], true),
            ("0123456789abcdefXY", vec!["0123456789", "abcdefXZ"], false),
            ("0123456789abcdefXY", vec!["1123456789", "abcdefXY"], false),
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
