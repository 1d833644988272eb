//! What the operators' API may know of a Redis-mode session without opening it: its listing
//! entry (`sid`, login time) and the record's expiry, found from the `sub` index.
//!
//! A record opens only with its ticket, which only the browser holds (the parent module), so
//! the sidecar cannot read a session from its record id. At login it therefore writes a small
//! **listing entry** beside the record: `<keyPrefix>meta:<hex record id>`, the JSON
//! `{"sid", "created"}` sealed with AES-256-GCM under a key HKDF-derived (RFC 5869) from the
//! scope's index key (so from its `Secret`), the entry's key name as associated data. A Redis
//! dump alone reads no `sid`; nothing in it is a credential (no token, no ticket). The entry
//! expires with the record (a refresh extends both), and a missing entry (a session made before
//! entries existed, or one whose entry could not be written) lists with `sid` and `created`
//! unknown: the listing never guesses.
//!
//! Listing reads the `sub` index set, then per member the record's remaining lifetime (`TTL`:
//! `-2` means the record is gone and the member is skipped) and its entry: one key per command,
//! as everywhere in the store, so a Redis Cluster works unchanged.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::super::Session;
use super::super::redis::{RecordId, unhex};
use super::{NONCE_LEN, RedisStore};
use crate::error::Error;

/// The most sessions one scope lists for one `sub` (the answer says when there were more).
pub const MAX_LISTED: usize = 1000;

/// One Redis-mode session as the operators' API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The IdP session id of the login (`None`: the ID token had none, or it is not known).
    pub sid: Option<String>,
    /// Unix time of the login (`None`: not known, see the module docs).
    pub created: Option<u64>,
    /// Unix time the record expires (with a refresh token, a refresh may extend it).
    pub expires: u64,
}

/// What a listing entry holds (sealed).
#[derive(Serialize, Deserialize)]
struct Entry {
    sid: Option<String>,
    created: u64,
}

impl RedisStore {
    fn meta_key(&self, id: &RecordId) -> String {
        self.key("meta", id)
    }

    /// The listing key of secret generation `g` (0: the current `Secret`; see
    /// [`super::super::rotation`]): entries written before a rotation open under theirs.
    fn meta_cipher(&self, g: usize) -> Option<Aes256Gcm> {
        let keys = self.keys(g);
        let hk = Hkdf::<Sha256>::new(Some(&keys.scope_tag), &keys.index_key);
        let mut key = [0u8; 32];
        hk.expand(b"admin-listing", &mut key).ok()?;
        Some(Aes256Gcm::new(GenericArray::from_slice(&key)))
    }

    fn seal_entry(&self, id: &RecordId, entry: &Entry) -> Option<Vec<u8>> {
        let json = serde_json::to_vec(entry).ok()?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = Vec::with_capacity(NONCE_LEN + json.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&json);
        let tag = self
            .meta_cipher(0)?
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                self.meta_key(id).as_bytes(),
                &mut buf[NONCE_LEN..],
            )
            .ok()?;
        buf.extend_from_slice(&tag);
        Some(buf)
    }

    fn open_entry(&self, g: usize, id: &RecordId, mut data: Vec<u8>) -> Option<Entry> {
        if data.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - 16);
        self.meta_cipher(g)?
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                self.meta_key(id).as_bytes(),
                ct,
                GenericArray::from_slice(tag),
            )
            .ok()?;
        serde_json::from_slice(ct).ok()
    }

    /// Writes the listing entry of a new login's record `id`, expiring with it at `until`.
    /// Best effort: the entry only serves the operators' listing, so a failure is logged and
    /// the login goes on (its session lists with `sid` and `created` unknown).
    pub(super) async fn write_listing(&self, id: &RecordId, session: &Session, until: u64) {
        let entry = Entry {
            sid: session.sid.clone(),
            created: session.iat,
        };
        let Some(value) = self.seal_entry(id, &entry) else {
            tracing::warn!("a session's listing entry could not be sealed");
            return;
        };
        let cmd = redis::cmd("SET")
            .arg(self.meta_key(id))
            .arg(value)
            .arg("EXAT")
            .arg(until)
            .clone();
        if let Err(e) = self.pool.run::<()>(&cmd).await {
            tracing::warn!(error = %e, "a session's listing entry was not written");
        }
    }

    /// Keeps the listing entry of `id` at least until `until` (a refresh extended the record).
    /// Best effort, like [`RedisStore::write_listing`].
    pub(super) async fn extend_listing(&self, id: &RecordId, until: u64) {
        let cmd = redis::cmd("EXPIREAT")
            .arg(self.meta_key(id))
            .arg(until)
            .arg("GT")
            .clone();
        if let Err(e) = self.pool.run::<i64>(&cmd).await {
            tracing::warn!(error = %e, "a session's listing entry was not extended");
        }
    }

    /// The sessions of `sub` in this scope (at most [`MAX_LISTED`], in index order) and whether
    /// there were more. With `PreviousSecrets`, the index of every kept secret is read: a
    /// session not yet moved under the current `Secret` is still listed. Redis unavailable is an
    /// error (answered 503).
    pub async fn list_sub(&self, sub: &str, now: u64) -> Result<(Vec<Listed>, bool), Error> {
        let mut out = Vec::new();
        for g in 0..=self.previous_count() {
            let index = self
                .index_key_in(g, "sub", sub)
                .ok_or_else(|| Error::Internal("index key".into()))?;
            let mut members: Vec<String> =
                self.pool.run(redis::cmd("SMEMBERS").arg(&index)).await?;
            // A set's order is arbitrary: sorted, so two listings of the same sessions read alike.
            members.sort();
            for m in &members {
                let Some(id) = unhex(m.as_bytes()) else {
                    continue;
                };
                let ttl: i64 = self
                    .pool
                    .run(redis::cmd("TTL").arg(self.record_key(&id)))
                    .await?;
                // -2: the record is gone (logged out, ended, expired) and only the index lags.
                // -1 cannot happen (every record is written with an expiry); listed as unknown.
                if ttl == -2 {
                    continue;
                }
                if out.len() == MAX_LISTED {
                    return Ok((out, true));
                }
                let data: Option<Vec<u8>> = self
                    .pool
                    .run(redis::cmd("GET").arg(self.meta_key(&id)))
                    .await?;
                let entry = data.and_then(|d| self.open_entry(g, &id, d));
                out.push(Listed {
                    sid: entry.as_ref().and_then(|e| e.sid.clone()),
                    created: entry.map(|e| e.created),
                    expires: now.saturating_add(u64::try_from(ttl).unwrap_or(0)),
                });
            }
        }
        Ok((out, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_open_only_in_their_scope_and_under_their_key() {
        let a = super::super::tests::store(b"scope-a");
        let b = super::super::tests::store(b"scope-b");
        let id: RecordId = rand::random();
        let entry = Entry {
            sid: Some("idp-session".into()),
            created: 1000,
        };
        let sealed = a.seal_entry(&id, &entry).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("idp-session"));
        let opened = a.open_entry(0, &id, sealed.clone()).unwrap();
        assert_eq!(
            (opened.sid.as_deref(), opened.created),
            (Some("idp-session"), 1000)
        );
        assert!(
            b.open_entry(0, &id, sealed.clone()).is_none(),
            "another Secret"
        );
        let other: RecordId = rand::random();
        assert!(
            a.open_entry(0, &other, sealed.clone()).is_none(),
            "another record's key"
        );
        let mut tampered = sealed;
        tampered[NONCE_LEN] ^= 1;
        assert!(a.open_entry(0, &id, tampered).is_none());
        assert!(a.meta_key(&id).starts_with("p:meta:"));
    }
}
