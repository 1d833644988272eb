//! The identity headers a session was already rendered into, per middleware.
//!
//! A remembered session (see [`crate::opened`]) answers the same browser's requests again and
//! again, and each answer carries the same `X-Forwarded-*` (or templated) headers: the claims,
//! the middleware's header rules and the verdict are the same. Rendering them (claim lookups,
//! joining groups, validating every byte) was a tenth of a valid-session check in the benchmark
//! profile; the memo keeps the validated header values, which an answer then shares by reference
//! count.
//!
//! What keeps this exact: a session value never changes (a refresh or a new login makes a new
//! one, with an empty memo), and entries are keyed by the middleware *instance*, never by name,
//! so a configuration reload that changes a middleware's `Headers` renders afresh.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};

/// Validated header fields, shared by every answer that sends them.
pub type Prepared = Arc<[(HeaderName, HeaderValue)]>;

/// Middleware instances a session is rendered for before the memo starts over (a scope has a
/// few members; reloads add new instances).
const MAX_ENTRIES: usize = 16;

/// A key no other middleware instance of this process has.
pub fn next_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The memo of one session value. A copy of the session starts empty, and two memos always
/// compare equal: the memo is a cache, not part of what a session is.
#[derive(Default)]
pub struct HeaderMemo(Mutex<Vec<(u64, Prepared)>>);

impl HeaderMemo {
    /// The headers rendered for middleware instance `key`, rendering them with `render` the
    /// first time. A failed render is not remembered.
    pub fn get_or_render<E>(
        &self,
        key: u64,
        render: impl FnOnce() -> Result<Prepared, E>,
    ) -> Result<Prepared, E> {
        // A poisoned lock (a panic while holding it; nothing below can panic) only costs the
        // memo: the headers are rendered every time.
        if let Ok(m) = self.0.lock()
            && let Some((_, p)) = m.iter().find(|(k, _)| *k == key)
        {
            return Ok(p.clone());
        }
        let p = render()?;
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.push((key, p.clone()));
        }
        Ok(p)
    }
}

impl Clone for HeaderMemo {
    fn clone(&self) -> Self {
        HeaderMemo::default()
    }
}

impl PartialEq for HeaderMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for HeaderMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they are a user's identity.
        f.debug_struct("HeaderMemo").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(user: &'static str) -> Prepared {
        Arc::from([(
            HeaderName::from_static("x-forwarded-user"),
            HeaderValue::from_static(user),
        )])
    }

    #[test]
    fn renders_once_per_middleware_instance() {
        let memo = HeaderMemo::default();
        let (a, b) = (next_key(), next_key());
        assert_ne!(a, b);
        let mut renders = 0;
        for _ in 0..3 {
            let p = memo
                .get_or_render::<()>(a, || {
                    renders += 1;
                    Ok(prepared("alice"))
                })
                .unwrap();
            assert_eq!(p[0].1, "alice");
        }
        assert_eq!(renders, 1);
        // Another instance (another middleware, or the same name after a reload) renders its own.
        let p = memo
            .get_or_render::<()>(b, || Ok(prepared("other")))
            .unwrap();
        assert_eq!(p[0].1, "other");
        // A failed render is not remembered; a copy starts empty.
        assert!(memo.get_or_render(next_key(), || Err("bad")).is_err());
        let copy = memo.clone();
        let p = copy
            .get_or_render::<()>(a, || Ok(prepared("fresh")))
            .unwrap();
        assert_eq!(p[0].1, "fresh");
    }

    #[test]
    fn stays_bounded() {
        let memo = HeaderMemo::default();
        for _ in 0..100 {
            memo.get_or_render::<()>(next_key(), || Ok(prepared("x")))
                .unwrap();
        }
        assert!(memo.0.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
