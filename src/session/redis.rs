//! The process's one Redis connection (standalone, Sentinel or Cluster), its health, the
//! invalidation channel and the memory of opened Redis sessions.
//!
//! Built once by `App::new` from the top-level `redis:` block (no I/O there); every Redis-mode
//! scope shares it. Commands run on one multiplexed connection (a cluster connection in cluster
//! mode), each bounded by `commandTimeout`; a connection that fails is dropped and the next
//! command reconnects (bounded by `connectTimeout`), so service resumes without a restart when
//! Redis comes back. While a connection attempt has just failed, commands fail fast for
//! [`RETRY_AFTER`] instead of queueing behind new attempts.
//!
//! # Remembered sessions and invalidation: pub/sub
//!
//! Opened sessions are remembered in memory by record id, so the hot path does no Redis round
//! trip for a browser that keeps sending the same ticket. A deletion (logout, back-channel
//! logout) or a rewrite (refresh) on any replica is published on the channel
//! `<keyPrefix>invalidate` with the record id; every replica subscribes and forgets that id.
//! Pub/sub was chosen over RESP3 client-side caching (CLIENT TRACKING) because it works the same
//! in all three modes (a cluster forwards PUBLISH to every node, so one subscription per process
//! suffices; tracking is per node and per connection, and redirects need the RESP3 push channel
//! on every cluster connection) and because it names exactly what changed.
//!
//! Pub/sub delivers at most once: a message sent while the subscription is down is lost. So the
//! memory is used only while the subscription is up and the last command succeeded, and it is
//! emptied every time the subscription is (re)established. A deletion is therefore seen by
//! every replica as soon as the message arrives (milliseconds), and a replica that lost its
//! subscription stops trusting its memory at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, IntoConnectionInfo};

use openidconnect::url::Url;

use super::Session;
use crate::error::Error;

/// How long commands fail fast after a failed connection attempt.
pub const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How often the health check pings Redis.
const PING_EVERY: Duration = Duration::from_millis(500);
/// Record ids remembered per shard before the shard is emptied.
const CACHE_SHARD_ENTRIES: usize = 2048;
const CACHE_SHARDS: usize = 8;

/// A record id: the SHA-256 of the scope and the ticket (never the ticket itself).
pub type RecordId = [u8; 32];

enum Connector {
    Plain(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Which Redis deployment the `redis:` block names (exactly one of the three).
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://` or `rediss://`, user and password allowed.
    Url(String),
    /// Sentinels that know the master `master_name`.
    Sentinel {
        /// The master's name in the sentinels' configuration.
        master_name: String,
        /// The sentinels' URLs.
        urls: Vec<String>,
    },
    /// Seed nodes of a Redis Cluster.
    Cluster {
        /// The seed nodes' URLs.
        urls: Vec<String>,
    },
}

/// The top-level `redis:` block: one connection pool for the whole process.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The deployment.
    pub target: RedisTarget,
    /// Prepended to every key and channel name.
    pub key_prefix: String,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for one command's answer.
    pub command_timeout: Duration,
    /// PEM roots trusted for `rediss://` (the contents of `caFile`), instead of the system's.
    pub ca_pem: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry a password: only their redacted form is ever printed.
        let urls: Vec<String> = self.urls().iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Every URL of the block (the server, the sentinels or the seed nodes).
    pub fn urls(&self) -> Vec<&str> {
        match &self.target {
            RedisTarget::Url(u) => vec![u.as_str()],
            RedisTarget::Sentinel { urls, .. } | RedisTarget::Cluster { urls } => {
                urls.iter().map(String::as_str).collect()
            }
        }
    }

    /// The mode's name, for logs and `/readyz`.
    pub fn mode(&self) -> &'static str {
        match self.target {
            RedisTarget::Url(_) => "standalone",
            RedisTarget::Sentinel { .. } => "sentinel",
            RedisTarget::Cluster { .. } => "cluster",
        }
    }
}

/// A Redis URL without its password, for logs.
pub fn redact(u: &str) -> String {
    match Url::parse(u) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("redacted"));
            }
            url.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The process-wide Redis connection (see the module docs).
pub struct RedisPool {
    cfg: RedisConfig,
    connector: Connector,
    conn: Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<Option<Instant>>,
    /// Why Redis is not usable right now (`None`: the last command succeeded).
    last_error: Mutex<Option<String>>,
    subscribed: AtomicBool,
    /// `last_error.is_none()`, readable without a lock on the hot path.
    ok: AtomicBool,
    /// Bumped by every invalidation, so a session read before one is not remembered after it.
    epoch: AtomicU64,
    cache: Vec<Mutex<HashMap<RecordId, Arc<Session>>>>,
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn tls_certs(cfg: &RedisConfig) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: cfg.ca_pem.as_ref().map(|p| p.as_bytes().to_vec()),
    }
}

impl RedisPool {
    /// The pool of the `redis:` block (no I/O: connections are made on first use).
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let bad = |e: redis::RedisError| format!("redis: {e}");
        let connector = match &cfg.target {
            RedisTarget::Url(u) => Connector::Plain(if cfg.ca_pem.is_some() {
                Client::build_with_tls(u.as_str(), tls_certs(cfg)).map_err(bad)?
            } else {
                Client::open(u.as_str()).map_err(bad)?
            }),
            RedisTarget::Sentinel { master_name, urls } => {
                // The master is reached with the credentials and TLS mode of the first sentinel
                // URL (documented in the README).
                let first = urls
                    .first()
                    .ok_or("redis.sentinel.urls: empty")?
                    .as_str()
                    .into_connection_info()
                    .map_err(bad)?;
                let mut node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(first.redis_settings().clone());
                if urls.iter().any(|u| u.starts_with("rediss://")) {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
                Connector::Sentinel(tokio::sync::Mutex::new(
                    SentinelClient::build(
                        urls,
                        master_name,
                        Some(node),
                        SentinelServerType::Master,
                    )
                    .map_err(bad)?,
                ))
            }
            RedisTarget::Cluster { urls } => {
                let mut b =
                    redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
                        .connection_timeout(cfg.connect_timeout)
                        .response_timeout(cfg.command_timeout);
                if cfg.ca_pem.is_some() {
                    b = b.certs(tls_certs(cfg));
                }
                Connector::Cluster(b.build().map_err(bad)?)
            }
        };
        Ok(RedisPool {
            cfg: cfg.clone(),
            connector,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(Some("not connected yet".into())),
            subscribed: AtomicBool::new(false),
            ok: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            cache: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        })
    }

    /// The key prefix (`keyPrefix`).
    pub fn prefix(&self) -> &str {
        &self.cfg.key_prefix
    }

    /// The invalidation channel.
    fn channel(&self) -> String {
        format!("{}invalidate", self.cfg.key_prefix)
    }

    /// `Ok` when Redis answers and invalidations arrive; otherwise why not (for `/readyz`).
    pub fn status(&self) -> Result<(), String> {
        if let Some(e) = self.last_error.lock().ok().and_then(|g| g.clone()) {
            return Err(format!("redis ({}) unavailable: {e}", self.cfg.mode()));
        }
        if !self.subscribed.load(Ordering::Acquire) {
            return Err(format!(
                "redis ({}): invalidation channel not subscribed",
                self.cfg.mode()
            ));
        }
        Ok(())
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            if let Some(msg) = &e
                && g.is_none()
            {
                tracing::warn!(error = %msg, "redis unavailable");
            }
            self.ok.store(e.is_none(), Ordering::Release);
            *g = e;
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let ct = self.cfg.connect_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ct))
            .set_response_timeout(Some(self.cfg.command_timeout));
        let made = match &self.connector {
            Connector::Plain(c) => {
                tokio::time::timeout(ct, c.get_multiplexed_async_connection_with_config(&config))
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map(Conn::Plain)
            }
            Connector::Sentinel(s) => {
                let mut s = s.lock().await;
                tokio::time::timeout(ct, s.get_async_connection_with_config(&config))
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map(Conn::Plain)
            }
            Connector::Cluster(c) => tokio::time::timeout(ct, c.get_async_connection())
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map(Conn::Cluster),
        };
        made.map_err(|e| e.to_string())
    }

    async fn conn(&self) -> Result<Conn, Error> {
        if let Some(c) = self.conn.lock().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let mut failed_at = self.connecting.lock().await;
        if let Some(c) = self.conn.lock().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        if failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return Err(Error::StoreUnavailable("redis: reconnecting".into()));
        }
        match self.connect().await {
            Ok(c) => {
                *failed_at = None;
                if let Ok(mut g) = self.conn.lock() {
                    *g = Some(c.clone());
                }
                Ok(c)
            }
            Err(e) => {
                *failed_at = Some(Instant::now());
                self.set_error(Some(e.clone()));
                Err(Error::StoreUnavailable(format!("redis: {e}")))
            }
        }
    }

    /// Runs one command, bounded by `commandTimeout`. A failure drops the connection (the next
    /// command reconnects) and marks Redis unavailable until a command succeeds again.
    pub async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let conn = self.conn().await?;
        let fut = async {
            match conn {
                Conn::Plain(mut c) => cmd.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<T>(&mut c).await,
            }
        };
        // Timed and traced by the command's name (its first word: never a key or a value).
        let name: &[u8] = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(n)) => n,
            _ => b"",
        };
        let bounded = tokio::time::timeout(self.cfg.command_timeout, fut);
        // `Err(None)`: the command timed out.
        let answer = crate::telemetry::redis(name, async {
            match bounded.await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            }
        });
        match answer.await {
            Ok(v) => {
                if !self.ok.load(Ordering::Acquire) {
                    self.set_error(None);
                }
                Ok(v)
            }
            // Any failure drops the connection, error replies included: after a Sentinel failover
            // the old master answers READONLY, and only a new connection finds the new one.
            Err(Some(e)) => {
                self.drop_conn(e.to_string());
                Err(Error::StoreUnavailable(format!("redis: {e}")))
            }
            Err(None) => {
                self.drop_conn("command timed out".into());
                Err(Error::StoreUnavailable("redis: command timed out".into()))
            }
        }
    }

    fn drop_conn(&self, why: String) {
        if let Ok(mut g) = self.conn.lock() {
            *g = None;
        }
        self.set_error(Some(why));
        // Invalidations may be lost from now on: stop trusting the memory.
        self.subscribed.store(false, Ordering::Release);
        self.clear_cache();
    }

    /// Publishes that `id` changed or ended, for every replica (this one included).
    pub async fn publish(&self, id: &RecordId) -> Result<(), Error> {
        self.forget(id);
        let _: i64 = self
            .run(redis::cmd("PUBLISH").arg(self.channel()).arg(hex(id)))
            .await?;
        Ok(())
    }

    /// The remembered session of `id`, while the memory can be trusted.
    pub fn remembered(&self, id: &RecordId) -> Option<Arc<Session>> {
        if !self.trusted() {
            return None;
        }
        self.shard(id)?.get(id).cloned()
    }

    /// The invalidation counter, read before a record is fetched.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Remembers `session` as what `id` holds, unless an invalidation arrived since `epoch`
    /// (the record read may already be gone).
    pub fn remember(&self, id: &RecordId, session: Arc<Session>, epoch: u64) {
        if !self.trusted() {
            return;
        }
        if let Some(mut s) = self.shard(id) {
            if s.len() >= CACHE_SHARD_ENTRIES {
                s.clear();
            }
            // Checked under the shard lock: an invalidation of this id takes the same lock.
            if self.epoch.load(Ordering::Acquire) == epoch {
                s.insert(*id, session);
            }
        }
    }

    /// Whether the last command (or health ping) succeeded: while not, Redis-mode requests are
    /// answered 503 at once instead of each waiting for a connection attempt.
    pub fn usable(&self) -> bool {
        self.ok.load(Ordering::Acquire)
    }

    /// Whether the memory can be trusted: subscribed, and the last command succeeded.
    fn trusted(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.ok.load(Ordering::Acquire)
    }

    /// Forgets `id`.
    pub fn forget(&self, id: &RecordId) {
        if let Some(mut s) = self.shard(id) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            s.remove(id);
        }
    }

    fn shard(
        &self,
        id: &RecordId,
    ) -> Option<std::sync::MutexGuard<'_, HashMap<RecordId, Arc<Session>>>> {
        self.cache
            .get(usize::from(id[0]) % CACHE_SHARDS)?
            .lock()
            .ok()
    }

    fn clear_cache(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for s in &self.cache {
            if let Ok(mut g) = s.lock() {
                g.clear();
            }
        }
    }

    /// The invalidation subscriber and health check, until the process ends: (re)subscribes
    /// whenever the subscription drops, empties the memory each time, and pings Redis so
    /// `/readyz` follows it.
    pub async fn run_background(self: Arc<Self>) {
        let pinger = self.clone();
        tokio::spawn(async move {
            loop {
                // After a failure, look again soon: a single slow answer should cost as little
                // 503 time as possible once Redis answers again.
                let pause = match pinger.run::<String>(&redis::cmd("PING")).await {
                    Ok(_) => PING_EVERY,
                    Err(_) => RETRY_AFTER,
                };
                tokio::time::sleep(pause).await;
            }
        });
        loop {
            if let Err(e) = self.subscribe_once().await {
                tracing::debug!(error = %e, "redis invalidation channel down");
            }
            self.subscribed.store(false, Ordering::Release);
            self.clear_cache();
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// The client the subscription uses: the server, the current master, or the first cluster
    /// node that answers (a cluster forwards PUBLISH to every node).
    async fn pubsub_clients(&self) -> Result<Vec<Client>, String> {
        match &self.connector {
            Connector::Plain(c) => Ok(vec![c.clone()]),
            Connector::Sentinel(s) => {
                let mut s = s.lock().await;
                let c = tokio::time::timeout(self.cfg.connect_timeout, s.async_get_client())
                    .await
                    .map_err(|_| "sentinel timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(vec![c])
            }
            Connector::Cluster(_) => {
                let RedisTarget::Cluster { urls } = &self.cfg.target else {
                    return Err("not a cluster".into());
                };
                urls.iter()
                    .map(|u| {
                        if self.cfg.ca_pem.is_some() {
                            Client::build_with_tls(u.as_str(), tls_certs(&self.cfg))
                        } else {
                            Client::open(u.as_str())
                        }
                        .map_err(|e| e.to_string())
                    })
                    .collect()
            }
        }
    }

    async fn subscribe_once(&self) -> Result<(), String> {
        use futures_util::StreamExt as _;
        let mut last = "no Redis node".to_string();
        for client in self.pubsub_clients().await? {
            let ps =
                tokio::time::timeout(self.cfg.connect_timeout, client.get_async_pubsub()).await;
            let mut ps = match ps {
                Ok(Ok(ps)) => ps,
                Ok(Err(e)) => {
                    last = e.to_string();
                    continue;
                }
                Err(_) => {
                    last = "connect timed out".into();
                    continue;
                }
            };
            ps.subscribe(self.channel())
                .await
                .map_err(|e| e.to_string())?;
            // Anything remembered before this point may have missed a message.
            self.clear_cache();
            self.subscribed.store(true, Ordering::Release);
            let mut stream = ps.on_message();
            loop {
                // A dead link (no FIN) is noticed by the health ping, which clears
                // `subscribed`; then this subscription is renewed.
                let msg = tokio::select! {
                    m = stream.next() => m,
                    () = tokio::time::sleep(PING_EVERY) => {
                        if self.subscribed.load(Ordering::Acquire) { continue; }
                        return Err("health check failed".into());
                    }
                };
                let Some(msg) = msg else {
                    return Err("subscription closed".into());
                };
                if let Some(id) = unhex(msg.get_payload_bytes()) {
                    self.forget(&id);
                }
            }
        }
        Err(last)
    }
}

/// Lower-case hex of a record id (key names and invalidation messages).
pub fn hex(id: &[u8]) -> String {
    let mut s = String::with_capacity(id.len() * 2);
    for b in id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(super) fn unhex(s: &[u8]) -> Option<RecordId> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_redis_fails_closed_fast_and_says_why() {
        let cfg = RedisConfig {
            // Port 1 on loopback: connection refused at once.
            target: RedisTarget::Url("redis://127.0.0.1:1".into()),
            key_prefix: "p:".into(),
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_millis(100),
            ca_pem: None,
        };
        let pool = RedisPool::new(&cfg).unwrap();
        assert!(pool.status().is_err(), "not ready before the first success");
        let r = pool.run::<String>(&redis::cmd("PING")).await;
        assert!(matches!(r, Err(Error::StoreUnavailable(_))), "{r:?}");
        let why = pool.status().unwrap_err();
        assert!(
            why.contains("standalone") && why.contains("unavailable"),
            "{why}"
        );
        // Within RETRY_AFTER the next command fails without a new connection attempt.
        let t0 = Instant::now();
        let r = pool.run::<String>(&redis::cmd("PING")).await;
        assert!(matches!(r, Err(Error::StoreUnavailable(m)) if m.contains("reconnecting")));
        assert!(t0.elapsed() < Duration::from_millis(50));
        // Nothing is remembered while Redis is not trusted.
        let id: RecordId = rand::random();
        pool.remember(
            &id,
            Arc::new(crate::session::codec::tests::session(1)),
            pool.epoch(),
        );
        assert!(pool.remembered(&id).is_none());
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id: RecordId = rand::random();
        assert_eq!(unhex(hex(&id).as_bytes()), Some(id));
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(unhex(&[b'g'; 64]), None);
    }
}
