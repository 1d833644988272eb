//! The registered inline blocks, by hash, bounded: at most `maxBlocks`, the least recently used
//! evicted first. Lookups (every inline request) take a read lock and stamp the entry with an
//! atomic tick; only registration and eviction write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::auth::Middleware;

/// One registered block: its middleware and what it was registered from.
pub struct Block {
    /// The SHA-256 (lowercase hex) of `body`.
    pub hash: String,
    /// The canonical JSON it was registered with (re-validated on a configuration reload).
    pub body: Vec<u8>,
    /// The Traefik middleware name it was first registered under (for metrics).
    pub label: String,
    /// The middleware it configures (named by [`super::member_name`]).
    pub middleware: Arc<Middleware>,
    /// Its provider's discovery loop, stopped when the block goes away.
    discovery: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("hash", &self.hash)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Block {
    /// A block not yet registered (no discovery running).
    pub fn new(hash: String, body: Vec<u8>, label: String, middleware: Arc<Middleware>) -> Self {
        Block {
            hash,
            body,
            label,
            middleware,
            discovery: std::sync::Mutex::new(None),
        }
    }

    /// Whether its provider's discovery has loaded, waiting at most `within` for it: a
    /// registration answers once the block can judge, so the shim's retry does not meet a 503.
    pub async fn loaded(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.middleware.provider.current().is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Starts its provider's discovery loop on the current runtime (once).
    pub fn start_discovery(&self) {
        let mut d = self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if d.is_none() {
            let p = self.middleware.provider.clone();
            let name = format!("{} ({})", self.label, self.middleware.cfg.name);
            *d = Some(tokio::spawn(p.run(name)).abort_handle());
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(h) = self
            .discovery
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

struct Entry {
    block: Arc<Block>,
    used: AtomicU64,
}

/// What [`Registry::insert`] did.
#[derive(Debug)]
pub struct Inserted {
    /// The block now stored under the hash (the earlier one if it was already there).
    pub block: Arc<Block>,
    /// Whether this call stored it (`false`: it was already registered).
    pub new: bool,
    /// Blocks evicted to make room.
    pub evicted: Vec<Arc<Block>>,
}

/// The registered blocks (see the module docs).
#[derive(Default)]
pub struct Registry {
    entries: RwLock<HashMap<String, Entry>>,
    tick: AtomicU64,
}

impl Registry {
    /// The block registered under `hash`, marked as just used.
    pub fn get(&self, hash: &str) -> Option<Arc<Block>> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let e = map.get(hash)?;
        e.used
            .store(self.tick.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Some(e.block.clone())
    }

    /// Stores `block` unless its hash is already there (then the stored one wins: both
    /// registrations of a concurrent pair succeed with one entry), evicting the least recently
    /// used blocks beyond `max`.
    pub fn insert(&self, block: Block, max: usize) -> Inserted {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = map.get(&block.hash) {
            e.used.store(now, Ordering::Relaxed);
            return Inserted {
                block: e.block.clone(),
                new: false,
                evicted: Vec::new(),
            };
        }
        let block = Arc::new(block);
        map.insert(
            block.hash.clone(),
            Entry {
                block: block.clone(),
                used: AtomicU64::new(now),
            },
        );
        let evicted = evict(&mut map, max);
        Inserted {
            block,
            new: true,
            evicted,
        }
    }

    /// Keeps only the blocks `keep` accepts, then at most `max` (a reload with new rules).
    /// Returns the blocks dropped.
    pub fn retain(&self, max: usize, keep: impl Fn(&Block) -> bool) -> Vec<Arc<Block>> {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let refused: Vec<String> = map
            .iter()
            .filter(|(_, e)| !keep(&e.block))
            .map(|(h, _)| h.clone())
            .collect();
        let mut out: Vec<Arc<Block>> = refused
            .iter()
            .filter_map(|h| map.remove(h))
            .map(|e| e.block)
            .collect();
        out.extend(evict(&mut map, max));
        out
    }

    /// Every registered block.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(|e| e.block.clone()).collect()
    }

    /// How many blocks are registered.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no block is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the least recently used entries until at most `max` remain.
fn evict(map: &mut HashMap<String, Entry>, max: usize) -> Vec<Arc<Block>> {
    let mut out = Vec::new();
    while map.len() > max {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
            .map(|(h, _)| h.clone())
        else {
            break;
        };
        out.extend(map.remove(&oldest).map(|e| e.block));
    }
    out
}
