//! Where a scope's sessions live: the [`Store`] seam and its Redis implementation.
//!
//! [`Store::Cookie`] keeps the whole sealed session in the browser's cookies (the codec does the
//! work). [`Store::Redis`] keeps it in Redis and gives the browser one opaque **ticket**:
//!
//! - the ticket is 32 random bytes plus a 128-bit HMAC-SHA256 tag under a key derived from the
//!   scope (Secret, provider, client, cookie names), base64url: 64 characters in one cookie
//!   `<prefix>.ticket`. A forged, truncated or foreign ticket fails the tag and is an anonymous
//!   request without any Redis round trip;
//! - the record's key is `<keyPrefix>session:<hex SHA-256(scope tag ‖ ticket)>`: one-way, so
//!   the key names in a dump give no ticket back;
//! - the record's value is the session JSON sealed with AES-256-GCM under a key HKDF-derived
//!   from the ticket (RFC 5869), the key name as associated data: a Redis dump alone opens
//!   nothing, and a copied value does not open under another key;
//! - the record expires with the session (plus [`REFRESH_GRACE_SECS`] when a refresh token can
//!   renew it); a refresh rewrites it under the same ticket, so the cookie does not change, and
//!   a plain authorized request writes nothing;
//! - a refresh's rewrite is conditional (compare-and-set on the sealed value it read, one Lua
//!   script on the record's key): a logout or back-channel logout that deletes the record while
//!   the refresh token is being redeemed stays done, the refreshed tokens are dropped;
//! - `<keyPrefix>sid:<hmac>` and `<keyPrefix>sub:<hmac>` sets index record ids by the login's
//!   `sid` and `sub` (HMAC-ed with a scope key, so no `sub` appears in clear), for back-channel
//!   logout ([`RedisStore::end_sessions`]). Every write of a record (re)writes its index entries
//!   first, with an expiry no earlier than the record's, so a logout always finds it;
//! - a refresh is redeemed once cluster-wide: `<keyPrefix>lock:<id>` (SET NX PX) elects the
//!   replica that redeems; the others poll the record until it changes (the result is shared
//!   through Redis), see [`RedisStore::refresh`];
//! - beside each record, a sealed listing entry (`sid`, login time) for the operators' API,
//!   see [`listing`].
//!
//! With `PreviousSecrets` (see [`super::rotation`]) the store also holds the ticket, record and
//! index keys of each previous secret: a ticket that verifies under one opens its record under
//! it, and [`RedisStore::rekey`] moves it under the current secret; a back-channel logout reads
//! the index of every secret kept. Everything is written under the current secret only.
//!
//! Every command and script names one key (no multi-key command), so all of this works
//! unchanged on a Redis Cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::ended::EndBy;
use super::redis::{RecordId, RedisPool, hex};
use super::rotation::{MOVE_GRACE_SECS, MoveCell, Moves};
use super::{RequestCookies, Session};
use crate::error::Error;
use crate::oidc::{BoxFuture, JtiStore};

mod listing;
pub use listing::{Listed, MAX_LISTED};

/// The refresh error when the record is gone (logout, back-channel logout, expiry) while the
/// session was being refreshed: the request is anonymous, not served from the old session.
pub const SESSION_ENDED: &str = "the session ended during the refresh";
/// How long past its expiry a refreshable session's record is kept, so a refresh token can
/// still renew it (the cookie-mode equivalent is a browser-session cookie outliving `exp`).
pub const REFRESH_GRACE_SECS: u64 = 12 * 3600;
/// Lifetime of the cluster-wide refresh lock: longer than a refresh takes, short enough that a
/// replica dying mid-refresh does not stall the session for long.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a request waits for another replica's refresh.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// How often a waiting request looks at the record.
const POLL_EVERY: Duration = Duration::from_millis(40);
const TICKET_LEN: usize = 32;
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// base64url length of ticket ‖ tag.
const TICKET_CHARS: usize = 64;

/// Where a middleware's sessions live (`SessionStorageType`, traefik-oidc-auth's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionStorage {
    /// The whole session in sealed cookies (the default; no server-side state).
    #[default]
    Cookie,
    /// An opaque ticket in one cookie; the sealed session in Redis.
    Redis,
}

/// Where a scope's sessions live.
pub enum Store {
    /// Sealed cookies (the codec).
    Cookie,
    /// Redis, behind a ticket cookie.
    Redis(Box<RedisStore>),
}

/// A verified ticket: its secret bytes and the record id derived from them.
#[derive(Clone, Copy)]
pub struct Ticket {
    secret: [u8; TICKET_LEN],
    id: RecordId,
    /// Which secret's keys it verified under: 0 the current `Secret`, `n` the n-th previous.
    generation: usize,
}

impl Ticket {
    /// The record id.
    pub fn id(&self) -> &RecordId {
        &self.id
    }

    /// Whether a previous secret made it (the record is moved on the answer).
    pub fn is_previous(&self) -> bool {
        self.generation > 0
    }
}

/// The keys one secret gives a Redis scope.
struct Keys {
    /// HMAC-SHA256 keyed with the ticket key, its key schedule done once (cloned per request).
    mac: Hmac<Sha256>,
    index_key: [u8; 32],
    scope_tag: [u8; 16],
}

impl Keys {
    fn derive(master: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"traefik-oidc-sidecar/redis"), master);
        let mut mac_key = [0u8; 32];
        let mut index_key = [0u8; 32];
        let mut scope_tag = [0u8; 16];
        // Output lengths are far below HKDF's limit (255 × 32 bytes): expand cannot fail.
        let _ = hk.expand(b"ticket-mac", &mut mac_key);
        let _ = hk.expand(b"index", &mut index_key);
        let _ = hk.expand(b"scope-tag", &mut scope_tag);
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Keys {
            mac,
            index_key,
            scope_tag,
        }
    }
}

/// One Redis-mode scope's view of the process's Redis (see the module docs).
pub struct RedisStore {
    pool: Arc<RedisPool>,
    /// The keys of the current `Secret`.
    current: Keys,
    /// Those of each previous secret, in order (ticket generations 1, 2…).
    previous: Box<[Keys]>,
    cookie_name: String,
    /// Records being (or just) moved under the current secret (see [`RedisStore::rekey`]).
    moves: Moves,
}

impl RedisStore {
    /// The store of the scope whose key material is `master` (and `previous`, the key material
    /// of its previous secrets, which only read), with ticket cookies named `<prefix>.ticket`.
    pub fn new(pool: Arc<RedisPool>, master: &[u8], previous: &[Vec<u8>], prefix: &str) -> Self {
        RedisStore {
            pool,
            current: Keys::derive(master),
            previous: previous.iter().map(|m| Keys::derive(m)).collect(),
            cookie_name: format!("{prefix}.ticket"),
            moves: Moves::default(),
        }
    }

    /// The keys of ticket generation `g` (the current ones for an unknown generation, which
    /// [`RedisStore::ticket_of`] never makes).
    fn keys(&self, g: usize) -> &Keys {
        g.checked_sub(1)
            .and_then(|p| self.previous.get(p))
            .unwrap_or(&self.current)
    }

    /// How many ticket generations verify (the current secret and each previous one).
    fn generations(&self) -> usize {
        1 + self.previous.len()
    }

    /// The ticket cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<RedisPool> {
        &self.pool
    }

    fn tag(&self, g: usize, secret: &[u8]) -> Option<Hmac<Sha256>> {
        let mut m = self.keys(g).mac.clone();
        m.update(b"ticket\0");
        m.update(secret);
        Some(m)
    }

    fn ticket_in(&self, g: usize, secret: [u8; TICKET_LEN]) -> Ticket {
        let mut h = Sha256::new();
        h.update(self.keys(g).scope_tag);
        h.update(secret);
        Ticket {
            secret,
            id: h.finalize().into(),
            generation: g,
        }
    }

    /// A ticket of the current secret.
    fn ticket(&self, secret: [u8; TICKET_LEN]) -> Ticket {
        self.ticket_in(0, secret)
    }

    /// The verified ticket this request carries; `None` (anonymous, no Redis round trip) for
    /// none, a repeated cookie name, or a forged, truncated or foreign value.
    pub fn ticket_of(&self, req: &RequestCookies<'_>) -> Option<Ticket> {
        let v = req.get(&self.cookie_name)?;
        if v.len() != TICKET_CHARS {
            return None;
        }
        let mut raw = [0u8; TICKET_LEN + TAG_LEN];
        let n = B64URL.decode_slice(v, &mut raw).ok()?;
        if n != raw.len() {
            return None;
        }
        let (secret, tag) = raw.split_at(TICKET_LEN);
        // Constant time (the hmac crate's verify): no timing hint on how much of a tag matched.
        // The current secret first: without PreviousSecrets this is the only check.
        let g = (0..self.generations()).find(|&g| {
            self.tag(g, secret)
                .is_some_and(|m| m.verify_truncated_left(tag).is_ok())
        })?;
        Some(self.ticket_in(g, secret.try_into().ok()?))
    }

    fn encode(&self, t: &Ticket) -> Option<String> {
        let tag = self.tag(t.generation, &t.secret)?.finalize().into_bytes();
        let mut raw = Vec::with_capacity(TICKET_LEN + TAG_LEN);
        raw.extend_from_slice(&t.secret);
        raw.extend_from_slice(tag.get(..TAG_LEN)?);
        Some(B64URL.encode(raw))
    }

    fn key(&self, kind: &str, id: &[u8]) -> String {
        format!("{}{kind}:{}", self.pool.prefix(), hex(id))
    }

    fn record_key(&self, id: &RecordId) -> String {
        self.key("session", id)
    }

    /// How many previous secrets the store reads (secret generations 1..=n).
    fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// The index key of `value` under the current secret.
    fn index_key(&self, kind: &str, value: &str) -> Option<String> {
        self.index_key_in(0, kind, value)
    }

    fn index_key_in(&self, g: usize, kind: &str, value: &str) -> Option<String> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.keys(g).index_key).ok()?;
        m.update(kind.as_bytes());
        m.update(b"\0");
        m.update(value.as_bytes());
        Some(self.key(kind, &m.finalize().into_bytes()))
    }

    fn cipher(&self, t: &Ticket) -> Option<Aes256Gcm> {
        let hk = Hkdf::<Sha256>::new(Some(&self.keys(t.generation).scope_tag), &t.secret);
        let mut key = [0u8; 32];
        hk.expand(b"record", &mut key).ok()?;
        Some(Aes256Gcm::new(GenericArray::from_slice(&key)))
    }

    fn seal(&self, t: &Ticket, session: &Session) -> Result<Vec<u8>, Error> {
        let json = serde_json::to_vec(session).map_err(|e| Error::Internal(e.to_string()))?;
        let cipher = self
            .cipher(t)
            .ok_or_else(|| Error::Internal("record key".into()))?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = Vec::with_capacity(NONCE_LEN + json.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&json);
        let aad = self.record_key(&t.id);
        let tag = cipher
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                aad.as_bytes(),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| Error::Internal("sealing failed".into()))?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    fn open(&self, t: &Ticket, mut data: Vec<u8>) -> Option<Session> {
        if data.len() < NONCE_LEN + 16 {
            return None;
        }
        let cipher = self.cipher(t)?;
        let aad = self.record_key(&t.id);
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - 16);
        cipher
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                aad.as_bytes(),
                ct,
                GenericArray::from_slice(tag),
            )
            .ok()?;
        serde_json::from_slice(ct).ok()
    }

    /// The session of `t`, from memory when remembered, else from Redis. `Ok(None)`: no record
    /// (ended, expired) or one that does not open.
    pub async fn load(&self, t: &Ticket) -> Result<Option<Arc<Session>>, Error> {
        if let Some(s) = self.pool.remembered(&t.id) {
            return Ok(Some(s));
        }
        let epoch = self.pool.epoch();
        let Some(s) = self.fetch(t).await? else {
            return Ok(None);
        };
        let s = Arc::new(s);
        self.pool.remember(&t.id, s.clone(), epoch);
        Ok(Some(s))
    }

    /// The record of `t` read from Redis (never from memory).
    async fn fetch(&self, t: &Ticket) -> Result<Option<Session>, Error> {
        Ok(self.fetch_sealed(t).await?.map(|(_, s)| s))
    }

    /// The record of `t` read from Redis: its stored (sealed) value and the session it opens
    /// to. The sealed value is what a refresh's conditional write compares against
    /// ([`RedisStore::replace`]): every write seals under a fresh nonce, so equal bytes mean
    /// the very record that was read.
    pub(super) async fn fetch_sealed(
        &self,
        t: &Ticket,
    ) -> Result<Option<(Vec<u8>, Session)>, Error> {
        let data: Option<Vec<u8>> = self
            .pool
            .run(redis::cmd("GET").arg(self.record_key(&t.id)))
            .await?;
        Ok(data.and_then(|d| {
            let s = self.open(t, d.clone());
            if s.is_none() {
                tracing::warn!("a Redis session record does not open; treated as absent");
            }
            s.map(|s| (d, s))
        }))
    }

    /// The unix time the record of `session` expires at.
    pub(super) fn expires_at(session: &Session, now: u64) -> u64 {
        let end = if session.refresh_token.is_some() {
            session.exp.saturating_add(REFRESH_GRACE_SECS)
        } else {
            session.exp
        };
        end.max(now + 1)
    }

    /// Stores a new login's session under a fresh ticket, indexed by its `sub` and `sid`.
    /// Returns the ticket cookie's value and the record's expiry.
    pub async fn create(&self, session: &Session, now: u64) -> Result<(String, u64), Error> {
        let t = self.ticket(rand::random());
        let until = Self::expires_at(session, now);
        // Index first, record second (here and in `replace`): a back-channel logout that
        // lists the index at any moment finds every record that exists. The other order leaves
        // a moment where a record lives unindexed, and a logout landing then misses it.
        self.index(&t.id, session, until).await?;
        self.write_listing(&t.id, session, until).await;
        let value = self.seal(&t, session)?;
        let _: () = self
            .pool
            .run(
                redis::cmd("SET")
                    .arg(self.record_key(&t.id))
                    .arg(value)
                    .arg("EXAT")
                    .arg(until),
            )
            .await?;
        let cookie = self
            .encode(&t)
            .ok_or_else(|| Error::Internal("ticket encoding".into()))?;
        Ok((cookie, until))
    }

    /// Adds record `id` to the `sub` and `sid` index sets of `session` (Back-Channel Logout
    /// 1.0 §2.7 ends sessions by either), each kept at least until `until`, the record's
    /// expiry: an index that expires before its record would hide that record from logouts.
    async fn index(&self, id: &RecordId, session: &Session, until: u64) -> Result<(), Error> {
        let member = hex(id);
        for (kind, value) in [
            ("sub", Some(session.sub.as_str())),
            ("sid", session.sid.as_deref()),
        ] {
            let Some(key) = value
                .filter(|v| !v.is_empty())
                .and_then(|v| self.index_key(kind, v))
            else {
                continue;
            };
            let _: i64 = self
                .pool
                .run(redis::cmd("SADD").arg(&key).arg(&member))
                .await?;
            // The index lives as long as its longest-lived session: NX sets a first expiry on
            // a new set, GT only ever extends it.
            for opt in ["NX", "GT"] {
                let _: i64 = self
                    .pool
                    .run(redis::cmd("EXPIREAT").arg(&key).arg(until).arg(opt))
                    .await?;
            }
        }
        Ok(())
    }

    /// Replaces the record of `t` with `session` (a refresh) only if it still holds `sealed`,
    /// the value the refresh read, and tells every replica. `Ok(false)`: the record was
    /// deleted (logout, back-channel logout) or rewritten meanwhile, and is left as it is, so
    /// a refresh never revives a session that ended while its refresh token was redeemed.
    ///
    /// The compare and the write are one Lua script on one key (atomic in Redis, and routed
    /// by that key's hash slot on a Cluster). The index entries are (re)written first: the
    /// refreshed record outlives the login's expiry, and its index must too.
    async fn replace(
        &self,
        t: &Ticket,
        sealed: &[u8],
        session: &Session,
        now: u64,
    ) -> Result<bool, Error> {
        let until = Self::expires_at(session, now);
        self.index(&t.id, session, until).await?;
        self.swap(t, sealed, session, until).await
    }

    /// The conditional write itself: the record of `t` becomes `session` (expiring at `until`)
    /// only if it still holds `sealed`; then every replica forgets its copy. Shared by a
    /// refresh ([`RedisStore::replace`]) and an idle stamp ([`super::idle`]).
    pub(super) async fn swap(
        &self,
        t: &Ticket,
        sealed: &[u8],
        session: &Session,
        until: u64,
    ) -> Result<bool, Error> {
        const REPLACE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'EXAT', ARGV[3]) return 1 else return 0 end";
        let value = self.seal(t, session)?;
        let replaced: i64 = self
            .pool
            .run(
                redis::cmd("EVAL")
                    .arg(REPLACE)
                    .arg(1)
                    .arg(self.record_key(&t.id))
                    .arg(sealed)
                    .arg(value)
                    .arg(until),
            )
            .await?;
        if replaced != 1 {
            return Ok(false);
        }
        self.extend_listing(&t.id, until).await;
        self.pool.publish(&t.id).await?;
        Ok(true)
    }

    /// Deletes the record of `t` (logout) and tells every replica.
    pub async fn delete(&self, t: &Ticket) -> Result<(), Error> {
        self.delete_id(&t.id).await
    }

    async fn delete_id(&self, id: &RecordId) -> Result<(), Error> {
        let _: i64 = self
            .pool
            .run(redis::cmd("DEL").arg(self.record_key(id)))
            .await?;
        self.pool.publish(id).await
    }

    /// Ends every session of this scope that `by` names: the login's `sid`, or every session of
    /// a `sub` (OIDC Back-Channel Logout 1.0 §2.7), in the index of every secret kept (a session
    /// not yet moved under the current secret is indexed under an old one). Returns how many
    /// records existed.
    pub async fn end_sessions(&self, by: &EndBy) -> Result<usize, Error> {
        let mut ended = 0;
        for g in 0..self.generations() {
            let index = match by {
                EndBy::Sid(sid) => self.index_key_in(g, "sid", sid),
                EndBy::Sub(sub) => self.index_key_in(g, "sub", sub),
            }
            .ok_or_else(|| Error::Internal("index key".into()))?;
            ended += self.end_indexed(&index).await?;
        }
        Ok(ended)
    }

    /// Deletes every record the index set `index` lists; returns how many existed.
    async fn end_indexed(&self, index: &str) -> Result<usize, Error> {
        let members: Vec<String> = self.pool.run(redis::cmd("SMEMBERS").arg(index)).await?;
        let mut ended = 0;
        for m in &members {
            let Some(id) = super::redis::unhex(m.as_bytes()) else {
                continue;
            };
            let n: i64 = self
                .pool
                .run(redis::cmd("DEL").arg(self.record_key(&id)))
                .await?;
            self.pool.publish(&id).await?;
            ended += usize::from(n > 0);
        }
        // Only the members seen leave the index (an empty set is removed by Redis): a login of
        // the same `sid` or `sub` indexed meanwhile stays findable by the next logout.
        if !members.is_empty() {
            let _: i64 = self
                .pool
                .run(redis::cmd("SREM").arg(index).arg(&members))
                .await?;
        }
        Ok(ended)
    }

    /// Moves the session of `t`, a ticket of a previous secret, under the current one
    /// ([`super::rotation`]): `session` is stored under a new ticket (indexed under the current
    /// secret, as a login is) and the old record expires after [`MOVE_GRACE_SECS`], so requests
    /// the browser sent with the old ticket meanwhile still find it; they share this move (one
    /// new record per old ticket in this process). Returns the new ticket cookie's value and
    /// its record's expiry. A back-channel logout meanwhile finds both records (each is indexed).
    pub async fn rekey(
        &self,
        t: &Ticket,
        session: &Session,
        now: u64,
    ) -> Result<(String, u64), Error> {
        let cell = {
            let mut moves = self.moves.lock().await;
            moves.retain(|_, (started, _)| *started + MOVE_GRACE_SECS > now);
            moves
                .entry(t.id)
                .or_insert_with(|| (now, MoveCell::default()))
                .1
                .clone()
        };
        cell.get_or_init(|| async {
            let (value, until) = self.create(session, now).await.map_err(|e| e.to_string())?;
            // `LT`: only ever shortens (a record about to expire anyway keeps its expiry).
            let _: i64 = self
                .pool
                .run(
                    redis::cmd("EXPIRE")
                        .arg(self.record_key(&t.id))
                        .arg(MOVE_GRACE_SECS)
                        .arg("LT"),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok((value, until))
        })
        .await
        .clone()
        .map_err(Error::Internal)
    }

    /// Refreshes the session of `t` once cluster-wide (module docs): the replica that takes the
    /// lock re-reads the record (another replica may have refreshed it meanwhile), runs
    /// `redeem`, rewrites the record and releases the lock; the others poll the record until it
    /// changes and share that result.
    pub async fn refresh(
        &self,
        t: &Ticket,
        old: &Session,
        now: u64,
        redeem: impl Future<Output = Result<Session, String>>,
    ) -> Result<Session, String> {
        let lock = self.key("lock", &t.id);
        let token = hex(&rand::random::<[u8; 16]>());
        let changed = |cur: &Session| cur.refresh_token != old.refresh_token || cur.iat != old.iat;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut redeem = Some(redeem);
        loop {
            let won: Option<String> = self
                .pool
                .run(
                    redis::cmd("SET")
                        .arg(&lock)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_TTL.as_millis() as u64),
                )
                .await
                .map_err(|e| e.to_string())?;
            if won.is_some() {
                let result = self.refresh_locked(t, now, &changed, redeem.take()).await;
                self.unlock(&lock, &token).await;
                return result;
            }
            tokio::time::sleep(POLL_EVERY).await;
            match self.fetch(t).await.map_err(|e| e.to_string())? {
                Some(cur) if changed(&cur) => return Ok(cur),
                Some(_) => {}
                None => return Err(SESSION_ENDED.into()),
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for another replica's refresh".into());
            }
        }
    }

    async fn refresh_locked(
        &self,
        t: &Ticket,
        now: u64,
        changed: &impl Fn(&Session) -> bool,
        redeem: Option<impl Future<Output = Result<Session, String>>>,
    ) -> Result<Session, String> {
        let sealed = match self.fetch_sealed(t).await.map_err(|e| e.to_string())? {
            Some((_, cur)) if changed(&cur) => return Ok(cur),
            Some((sealed, _)) => sealed,
            None => return Err(SESSION_ENDED.into()),
        };
        let new = redeem.ok_or("refresh already attempted")?.await?;
        let mut sealed = sealed;
        // An idle stamp ([`super::idle`]) may rewrite the record while the refresh token is
        // redeemed: the same tokens, so the refresh still applies over it (its `iat` is newer
        // than the stamp). A stamp moves at most once per interval, so a few tries suffice.
        for _ in 0..3 {
            if self
                .replace(t, &sealed, &new, now)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(new);
            }
            // Refreshed elsewhere meanwhile: the new tokens are dropped and the request gets
            // what the record says now. Gone (a logout): no session.
            match self.fetch_sealed(t).await.map_err(|e| e.to_string())? {
                Some((_, cur)) if changed(&cur) => return Ok(cur),
                Some((now_sealed, _)) => sealed = now_sealed,
                None => return Err(SESSION_ENDED.into()),
            }
        }
        Err("the session record changed during the refresh".into())
    }

    async fn unlock(&self, lock: &str, token: &str) {
        // Delete only our own lock (it may have expired and been taken by another replica).
        const UNLOCK: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        let r: Result<i64, Error> = self
            .pool
            .run(redis::cmd("EVAL").arg(UNLOCK).arg(1).arg(lock).arg(token))
            .await;
        if let Err(e) = r {
            // The lock expires by itself after LOCK_TTL.
            tracing::warn!(error = %e, "refresh lock not released");
        }
    }
}

/// The back-channel logout `jti` replay memory in Redis (Back-Channel Logout 1.0 §2.6): one key
/// per token, `SET NX` with the token's expiry, so a token is accepted once across every replica
/// and kept exactly as long as it could be replayed.
pub struct RedisJtiStore {
    pool: Arc<RedisPool>,
}

impl RedisJtiStore {
    /// The replay memory in `pool`'s Redis.
    pub fn new(pool: Arc<RedisPool>) -> Self {
        RedisJtiStore { pool }
    }

    fn key(&self, key: &[u8; 32]) -> String {
        format!("{}jti:{}", self.pool.prefix(), hex(key))
    }
}

impl JtiStore for RedisJtiStore {
    fn first_use(&self, key: [u8; 32], until: u64, now: u64) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            let set: Option<String> = self
                .pool
                .run(
                    redis::cmd("SET")
                        .arg(self.key(&key))
                        .arg(1)
                        .arg("NX")
                        .arg("EXAT")
                        .arg(until.max(now + 1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn forget(&self, key: [u8; 32]) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let r: Result<i64, Error> = self.pool.run(redis::cmd("DEL").arg(self.key(&key))).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "a logout token's replay mark could not be removed");
            }
        })
    }
}

#[cfg(test)]
mod tests;
