//! traefik-oidc-sidecar: OpenID Connect login for anything behind Traefik.
//!
//! The crate is a forwardAuth server. [`App`] holds the configured middlewares; [`app`] is the
//! seam that turns it into an axum router (tests drive it directly); [`serve`] runs the auth
//! and metrics listeners until shutdown, [`serve_admin`] the operators' API. Module map:
//! - `config`: the YAML file (traefik-oidc-auth keys, case-insensitive) and its validation;
//! - `forwarded`: the original request from `X-Forwarded-*`, trusted peers only;
//! - `auth`: the decision (check, login, callback, logout); `session`: sessions, their scopes
//!   (middlewares configured alike share one session) and sealed cookies; `logging`: the
//!   global filter and per-middleware `LogLevel`;
//! - `oidc`: the IdP; `authz`: claim assertions; `template`: identity headers;
//! - `files`: every file the configuration names, read capped and regular-only;
//! - `listener`: accept loops, connection budgets, timeouts and header limits;
//! - `rules`: `BypassAuthenticationRule`; `redirect`: redirect-target validation; `error`/`reply`: answers; `routes`: HTTP mapping;
//! - `admin`: the operators' API (list and revoke sessions) on its own listener;
//! - `inline`: middleware blocks registered at runtime by the plugin shim; `scopes`: every
//!   session scope by key (YAML, inline, across reloads); `reload`: the file watcher and SIGHUP.
//!
//! The configuration read from the file is one [`Generation`]; a reload swaps it whole
//! ([`App::reload`]): each request reads the current generation once, so in-flight requests
//! finish on the one they started with.

pub mod admin;
pub mod auth;
pub mod authz;
pub mod config;
pub mod error;
pub mod files;
pub mod forwarded;
pub mod inline;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod opened;
pub mod pages;
pub mod redirect;
pub mod reload;
pub mod reply;
pub mod routes;
pub mod rules;
pub mod scopes;
pub mod session;
pub mod telemetry;
pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

use crate::auth::{Middleware, scope_key};
use crate::config::{Config, InlineConfig, MiddlewareConfig, SessionStorage};
use crate::forwarded::Cidr;
use crate::session::ScopeKey;
use crate::session::redis::RedisPool;
use crate::session::store::RedisJtiStore;

/// The source of "now" (unix seconds). Domain code takes time as a parameter; this is where
/// the HTTP layer gets it, and tests substitute their own.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The running sidecar: the current configuration [`Generation`], the session scopes and the
/// registered inline blocks.
pub struct App {
    live: RwLock<Arc<Generation>>,
    scopes: scopes::ScopeRegistry,
    blocks: inline::Registry,
    clock: Arc<dyn Clock>,
    /// Set by [`App::start_discovery`]: reloads and registrations start their providers' loops.
    discovering: AtomicBool,
    /// The process's one Redis connection (the `redis:` block; built at start, not reloaded).
    redis: Option<Arc<RedisPool>>,
    /// The logout-token replay memory of every OpenID client: above the scopes, so reloads
    /// and inline blocks that come and go never lose it (in Redis when there is a `redis:`
    /// block, shared by every replica).
    jtis: oidc::JtiMemory,
}

/// What one configuration file gives: the YAML middlewares and the settings a reload may
/// change. Its providers' discovery loops stop when it is dropped (after a reload, once the
/// last request using it has finished).
pub struct Generation {
    middlewares: BTreeMap<String, Arc<Middleware>>,
    trusted: Vec<Cidr>,
    inline: InlineConfig,
    discovery: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        for h in self
            .discovery
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            h.abort();
        }
    }
}

impl Generation {
    /// Builds every middleware of `cfg` in the scope of its key (taken from `scopes`, so an
    /// unchanged key keeps its scope). Each scope is set to exactly its members at once: the
    /// YAML middlewares of its key and the registered inline blocks (`inline`) of that key.
    /// No network I/O.
    fn build(
        cfg: &Config,
        scopes: &scopes::ScopeRegistry,
        inline: &[&MiddlewareConfig],
    ) -> Result<Self, String> {
        let mut middlewares = BTreeMap::new();
        for (key, members) in scope_groups(cfg) {
            let mut all = members.clone();
            all.extend(inline.iter().copied().filter(|m| scope_key(m) == key));
            let scope = scopes.set(&all).ok_or("a scope without middlewares")?;
            for m in members {
                let mw = Middleware::new(m.clone(), scope.clone())
                    .map_err(|e| format!("middlewares.{}: {e}", m.name))?;
                middlewares.insert(m.name.clone(), Arc::new(mw));
            }
        }
        Ok(Generation {
            middlewares,
            trusted: cfg.trusted_proxies.clone(),
            inline: cfg.inline.clone(),
            discovery: Mutex::new(Vec::new()),
        })
    }

    fn start_discovery(&self) {
        let mut handles = self
            .discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !handles.is_empty() {
            return;
        }
        for (name, m) in &self.middlewares {
            handles.push(tokio::spawn(m.provider.clone().run(name.clone())).abort_handle());
        }
    }

    fn ready(&self) -> bool {
        self.middlewares
            .values()
            .all(|m| m.provider.current().is_some())
    }

    /// A YAML middleware by name.
    pub fn middleware(&self, name: &str) -> Option<&Arc<Middleware>> {
        self.middlewares.get(name)
    }

    /// Trusted proxy networks.
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.trusted
    }

    /// The `inline:` rules.
    pub fn inline(&self) -> &InlineConfig {
        &self.inline
    }

    /// What `/auth` without a name means: `default`, or the only middleware.
    pub fn default_middleware_name(&self) -> Option<&str> {
        if self.middlewares.contains_key("default") {
            return Some("default");
        }
        match self.middlewares.keys().collect::<Vec<_>>().as_slice() {
            [only] => Some(only.as_str()),
            _ => None,
        }
    }
}

impl App {
    /// Builds every middleware (no network I/O; call [`App::start_discovery`] next).
    /// Middlewares with the same session scope key share one [`session::Scope`].
    ///
    /// With a `redis:` block the one Redis pool is built here (no I/O: it connects on first use
    /// and from [`App::start_discovery`]): scopes of `SessionStorageType: Redis` keep their
    /// sessions there, and every client's back-channel logout `jti`s are kept there (a token
    /// must be accepted once across every replica, whatever the session storage).
    pub fn new(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let wants_redis = cfg
            .middlewares
            .values()
            .any(|m| m.session_storage == SessionStorage::Redis);
        let redis = match &cfg.redis {
            Some(r) => Some(Arc::new(RedisPool::new(r)?)),
            None if wants_redis => {
                return Err("SessionStorageType Redis needs the redis: block".into());
            }
            None => None,
        };
        let (scopes, jtis) = match &redis {
            Some(pool) => {
                let pool = pool.clone();
                let jtis = oidc::JtiMemory::shared(Arc::new(RedisJtiStore::new(pool.clone())));
                let scopes = scopes::ScopeRegistry::new(Box::new(move |s, key: &ScopeKey| {
                    if key.storage() == SessionStorage::Redis {
                        s.with_redis(key, pool.clone())
                    } else {
                        s
                    }
                }));
                (scopes, jtis)
            }
            None => (
                scopes::ScopeRegistry::default(),
                oidc::JtiMemory::in_memory(),
            ),
        };
        let generation = Generation::build(cfg, &scopes, &[])?;
        Ok(App {
            live: RwLock::new(Arc::new(generation)),
            scopes,
            blocks: inline::Registry::default(),
            clock,
            discovering: AtomicBool::new(false),
            redis,
            jtis,
        })
    }

    /// The Redis pool, when the configuration has a `redis:` block.
    pub fn redis(&self) -> Option<&Arc<RedisPool>> {
        self.redis.as_ref()
    }

    /// The configuration generation in force. A request reads it once and keeps it.
    pub fn current(&self) -> Arc<Generation> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts each middleware's discovery loop on the current runtime (and, from now on, those
    /// of reloaded configurations and registered inline blocks).
    pub fn start_discovery(&self) {
        // The Redis subscriber and health check, once.
        if !self.discovering.swap(true, Ordering::AcqRel)
            && let Some(r) = &self.redis
        {
            tokio::spawn(r.clone().run_background());
        }
        self.current().start_discovery();
        for b in self.blocks.blocks() {
            b.start_discovery();
        }
    }

    fn discovering(&self) -> bool {
        self.discovering.load(Ordering::Acquire)
    }

    /// Whether every YAML middleware has its discovery document and signing keys. With no
    /// middlewares of its own (inline blocks only) the sidecar is ready once it listens: an
    /// inline block's provider is loaded when the block is registered, and its requests
    /// answer 503 until then.
    pub fn ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why the sidecar is not ready (for `/readyz`), or `None`: discovery, or Redis (when a
    /// `redis:` block is configured) not answering or its invalidation channel not subscribed.
    pub fn not_ready(&self) -> Option<String> {
        if !self.current().ready() {
            return Some("discovery or signing keys not loaded".into());
        }
        self.redis.as_ref().and_then(|r| r.status().err())
    }

    /// A YAML middleware by name.
    pub fn middleware(&self, name: &str) -> Option<Arc<Middleware>> {
        self.current().middlewares.get(name).cloned()
    }

    /// All YAML middlewares of the current configuration.
    pub fn middlewares(&self) -> Vec<Arc<Middleware>> {
        self.current().middlewares.values().cloned().collect()
    }

    /// The registered inline blocks.
    pub fn inline_blocks(&self) -> Vec<Arc<inline::Block>> {
        self.blocks.blocks()
    }

    /// The inline block registered under `hash` (marked as used).
    pub fn inline_block(&self, hash: &str) -> Option<Arc<inline::Block>> {
        self.blocks.get(hash)
    }

    /// What `/auth` without a name means: `default`, or the only middleware.
    pub fn default_middleware_name(&self) -> Option<String> {
        self.current().default_middleware_name().map(str::to_string)
    }

    /// Trusted proxy networks.
    pub fn trusted_proxies(&self) -> Vec<Cidr> {
        self.current().trusted.clone()
    }

    /// The distinct session scopes of every middleware that uses `mw`'s IdP client (the same
    /// `Provider.Url` and `ClientId`), YAML middlewares in name order, then inline blocks. A
    /// back-channel logout token is addressed to the client, and an IdP registers one
    /// back-channel URI per client, so the logout it brings applies to all of them
    /// (middlewares of one client may still differ in Secret or cookie settings, hence in
    /// scope). The client's `jti` memory is not a scope's: see [`App::client_jtis`].
    pub fn client_scopes(&self, mw: &Middleware) -> Vec<Arc<session::Scope>> {
        let same = |m: &Middleware| {
            m.cfg.provider.client_id == mw.cfg.provider.client_id
                && m.cfg.provider.url.trim_end_matches('/')
                    == mw.cfg.provider.url.trim_end_matches('/')
        };
        let generation = self.current();
        let blocks = self.blocks.blocks();
        let mut out: Vec<Arc<session::Scope>> = Vec::new();
        let all = generation
            .middlewares
            .values()
            .chain(blocks.iter().map(|b| &b.middleware));
        for m in all {
            if same(m) && !out.iter().any(|s| Arc::ptr_eq(s, m.scope())) {
                out.push(m.scope().clone());
            }
        }
        out
    }

    /// The logout-token replay memory of `mw`'s IdP client (its `Provider.Url` and
    /// `ClientId`), shared by every YAML middleware and inline block of that client and kept
    /// across reloads: a token replayed through any route, after any reload, is a replay.
    pub fn client_jtis(&self, mw: &Middleware, now: u64) -> Arc<dyn oidc::JtiStore> {
        self.jtis
            .of_client(&mw.cfg.provider.url, &mw.cfg.provider.client_id, now)
    }

    /// The current time from the app's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Every session scope of the app (YAML middlewares, inline blocks, and scopes left
    /// without members), for the operators' API ([`admin`]).
    pub fn all_scopes(&self) -> Vec<Arc<session::Scope>> {
        self.scopes.all()
    }
}

/// The middlewares grouped by session scope key, in name order (the first of a group is the
/// first by name).
pub fn scope_groups(cfg: &Config) -> Vec<(ScopeKey, Vec<&MiddlewareConfig>)> {
    let mut groups: Vec<(ScopeKey, Vec<&MiddlewareConfig>)> = Vec::new();
    for m in cfg.middlewares.values() {
        let key = scope_key(m);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(m),
            None => groups.push((key, vec![m])),
        }
    }
    groups
}

/// Warnings about session scopes, for `--check-config` and the start-up log:
/// - two scopes whose cookies have the same names (prefix, domain and path) but that differ in
///   `Secret`, `Provider.Url` or `ClientId`: in one browser each overwrites the other's session,
///   so users bounce between logins;
/// - middlewares of one scope whose other `SessionCookie` attributes differ: the scope writes
///   its cookies with the first middleware's; or whose `SessionCookie.IdleTimeout`s differ: the
///   shortest applies to all of them.
pub fn scope_warnings(cfg: &Config) -> Vec<String> {
    let groups = scope_groups(cfg);
    let names = |ms: &[&MiddlewareConfig]| {
        ms.iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    for (i, (a, am)) in groups.iter().enumerate() {
        for (b, bm) in &groups[i + 1..] {
            if a.same_cookie_names(b) {
                out.push(format!(
                    "middlewares [{}] and [{}] use the same cookie names (CookieNamePrefix {:?}, SessionCookie.Domain {:?}, Path {:?}) but differ in Secret, Provider.Url or ClientId: in one browser their sessions overwrite each other; give one of them its own CookieNamePrefix",
                    names(am),
                    names(bm),
                    a.prefix(),
                    a.domain().unwrap_or(""),
                    a.path()
                ));
            }
        }
        if let Some((first, rest)) = am.split_first() {
            for m in rest {
                let (x, y) = (&first.session_cookie, &m.session_cookie);
                if (x.secure, x.http_only, x.same_site, x.max_age)
                    != (y.secure, y.http_only, y.same_site, y.max_age)
                {
                    out.push(format!(
                        "middlewares.{}.SessionCookie: shares its session with {} but sets other cookie attributes; the session cookies use {}'s",
                        m.name, first.name, first.name
                    ));
                }
            }
        }
        out.extend(auth::idle_disagreement(am));
    }
    out
}

/// The auth listener's service. The serving layer guards every answer: a panic becomes a 500
/// (never a 200) and a request that hangs (a stuck IdP) ends in a 503 after
/// [`listener::REQUEST_TIMEOUT`].
pub fn app(state: Arc<App>) -> routes::AuthService {
    routes::AuthService::new(state)
}

/// Serves the auth router on `listener` and `/metrics` on `metrics` until `shutdown` resolves,
/// then drains in-flight requests. Uses the default [`config::Limits`] against the current
/// open-file limit; [`serve_with_limits`] takes the configured ones.
pub async fn serve(
    state: Arc<App>,
    listener: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(
        state,
        listener,
        metrics,
        &config::Limits::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with the connection limits of `limits` (the [`listener`] module says what they bound).
pub async fn serve_with_limits(
    state: Arc<App>,
    listener: TcpListener,
    metrics: TcpListener,
    limits: &config::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = listener::Settings::resolve(limits, listener::open_file_limit());
    let stats = Arc::new(metrics::Listeners::default());
    // The connection budgets keep the start-up trustedProxies; a reload changes who is
    // believed for X-Forwarded-* and who may register inline blocks (see `reload`).
    let trusted = state.trusted_proxies();
    let auth = listener::Listener {
        name: "auth",
        socket: listener,
        service: app(state.clone()),
        budget: listener::Budget::auth(settings.max_connections),
        trusted,
        stats: stats.auth.clone(),
    };
    let metrics = listener::Listener {
        name: "metrics",
        socket: metrics,
        service: routes::metrics_router(state).layer(axum::Extension(stats.clone())),
        budget: listener::Budget::metrics(),
        trusted: Vec::new(),
        stats: stats.metrics.clone(),
    };
    listener::serve_both(auth, metrics, settings, shutdown).await
}

/// Serves the operators' API ([`admin::http`]) on `socket`, requiring `token`, until `shutdown`
/// resolves, then drains. A listener of its own, never the auth or metrics one: its budget is
/// the metrics listener's (an operator's script needs few connections), with the timeouts of
/// `limits`.
pub async fn serve_admin(
    state: Arc<App>,
    socket: TcpListener,
    token: session::Secret,
    limits: config::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = listener::Settings::resolve(&limits, listener::open_file_limit());
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let admin = listener::Listener {
        name: "admin",
        socket,
        service: admin::http::router(state, &token),
        budget: listener::Budget::metrics(),
        trusted: Vec::new(),
        stats: Arc::new(metrics::Connections::default()),
    };
    listener::run(admin, Arc::new(settings), rx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, parse};

    fn config(middlewares: &[(&str, &str, &str)]) -> Config {
        let mut text = String::from("middlewares:\n");
        for (name, client, extra) in middlewares {
            text.push_str(&format!(
                "  {name}:\n    Provider:\n      Url: https://idp.example\n      ClientId: {client}\n    Secret: 0123456789abcdef0123456789abcdef\n{extra}"
            ));
        }
        let env = Env {
            var: &|_| None,
            file: &|_| Err(std::io::Error::other("no files here")),
            within: &crate::files::read_within,
        };
        parse(&text, &env).unwrap().config
    }

    #[test]
    fn middlewares_group_into_scopes_by_key() {
        let cfg = config(&[
            ("a", "app", ""),
            ("b", "app", ""),
            ("c", "other", ""),
            ("d", "app", "    CookieNamePrefix: D\n"),
        ]);
        let groups: Vec<Vec<&str>> = scope_groups(&cfg)
            .iter()
            .map(|(_, ms)| ms.iter().map(|m| m.name.as_str()).collect())
            .collect();
        assert_eq!(groups, [vec!["a", "b"], vec!["c"], vec!["d"]]);
        let app = App::new(&cfg, Arc::new(SystemClock)).unwrap();
        let scope = |n: &str| app.middleware(n).unwrap().scope().clone();
        assert!(Arc::ptr_eq(&scope("a"), &scope("b")));
        assert!(!Arc::ptr_eq(&scope("a"), &scope("c")));
        assert_eq!(scope("a").members(), ["a", "b"]);
        // A logout for client `app` reaches every scope of that client, and only those.
        let scopes = app.client_scopes(&app.middleware("d").unwrap());
        assert_eq!(scopes.len(), 2);
        assert!(Arc::ptr_eq(&scopes[0], &scope("a")));
        assert!(Arc::ptr_eq(&scopes[1], &scope("d")));
        let again = app.client_scopes(&app.middleware("b").unwrap());
        assert!(
            Arc::ptr_eq(&scopes[0], &again[0]),
            "the same order from any member"
        );
        assert_eq!(app.client_scopes(&app.middleware("c").unwrap()).len(), 1);
    }

    #[test]
    fn warnings_name_scopes_that_fight_and_members_that_disagree() {
        let cfg = config(&[
            ("a", "app", ""),
            ("b", "app", "    SessionCookie:\n      SameSite: Strict\n"),
            ("c", "other", ""),
            ("d", "other", "    CookieNamePrefix: D\n"),
        ]);
        let w = scope_warnings(&cfg);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w.iter()
                .any(|l| l.contains("[a, b] and [c]") && l.contains("same cookie names")),
            "{w:#?}"
        );
        assert!(
            w.iter()
                .any(|l| l.starts_with("middlewares.b.SessionCookie") && l.contains("a's")),
            "{w:#?}"
        );
        assert!(scope_warnings(&config(&[("a", "app", ""), ("b", "app", "")])).is_empty());
    }

    #[test]
    fn members_that_disagree_on_idle_timeout_get_the_shortest_and_a_warning() {
        let idle = |t: &str| format!("    SessionCookie:\n      IdleTimeout: {t}\n");
        let cfg = config(&[
            ("a", "app", &idle("30m")),
            ("b", "app", ""),
            ("c", "app", &idle("10m")),
            (
                "d",
                "other",
                &format!("    CookieNamePrefix: D\n{}", idle("1h")),
            ),
        ]);
        let w = scope_warnings(&cfg);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].contains("[a, b, c]") && w[0].contains("the shortest, 600s"),
            "{w:#?}"
        );
        let app = App::new(&cfg, Arc::new(SystemClock)).unwrap();
        let timeout = |m: &str| app.middleware(m).unwrap().scope().idle_timeout();
        assert_eq!(
            timeout("b"),
            Some(600),
            "b has none of its own; its scope's applies"
        );
        assert_eq!(timeout("d"), Some(3600));
    }
}
