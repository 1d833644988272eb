//! traefik-oidc-sidecar: OpenID Connect login for anything behind Traefik.
//!
//! The crate is a forwardAuth server. [`App`] holds the configured middlewares; [`app`] is the
//! seam that turns it into an axum router (tests drive it directly); [`serve`] runs the auth
//! and metrics listeners until shutdown. Module map:
//! - `config`: the YAML file (traefik-oidc-auth keys, case-insensitive) and its validation;
//! - `forwarded`: the original request from `X-Forwarded-*`, trusted peers only;
//! - `auth`: the decision (check, login, callback, logout); `session`: sealed cookies;
//! - `oidc`: the IdP; `authz`: claim assertions; `template`: identity headers;
//! - `listener`: accept loops, connection budgets, timeouts and header limits;
//! - `rules`: `BypassAuthenticationRule`; `redirect`: redirect-target validation; `error`/`reply`: answers; `routes`: HTTP mapping.

pub mod auth;
pub mod authz;
pub mod config;
pub mod error;
pub mod forwarded;
pub mod listener;
pub mod metrics;
pub mod oidc;
pub mod opened;
pub mod pages;
pub mod redirect;
pub mod reply;
pub mod routes;
pub mod rules;
pub mod session;
pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Middleware;
use crate::config::Config;
use crate::forwarded::Cidr;

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

/// The running sidecar: its middlewares and shared settings.
pub struct App {
    middlewares: BTreeMap<String, Arc<Middleware>>,
    trusted: Vec<Cidr>,
    clock: Arc<dyn Clock>,
}

impl App {
    /// Builds every middleware (no network I/O; call [`App::start_discovery`] next).
    pub fn new(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let mut middlewares = BTreeMap::new();
        for (name, m) in &cfg.middlewares {
            let mw = Middleware::new(m.clone()).map_err(|e| format!("middlewares.{name}: {e}"))?;
            middlewares.insert(name.clone(), Arc::new(mw));
        }
        Ok(App {
            middlewares,
            trusted: cfg.trusted_proxies.clone(),
            clock,
        })
    }

    /// Starts each middleware's discovery loop on the current runtime.
    pub fn start_discovery(&self) {
        for (name, m) in &self.middlewares {
            tokio::spawn(m.provider.clone().run(name.clone()));
        }
    }

    /// Whether every middleware has its discovery document and signing keys.
    pub fn ready(&self) -> bool {
        self.middlewares
            .values()
            .all(|m| m.provider.current().is_some())
    }

    /// A middleware by name.
    pub fn middleware(&self, name: &str) -> Option<&Arc<Middleware>> {
        self.middlewares.get(name)
    }

    /// All middlewares.
    pub fn middlewares(&self) -> impl Iterator<Item = &Arc<Middleware>> {
        self.middlewares.values()
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

    /// Trusted proxy networks.
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.trusted
    }

    /// The current time from the app's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}

/// The auth listener's router with its safety layers: a panic becomes a 500 (never a 200) and
/// a request that hangs (a stuck IdP) ends in a 503 after 30 s.
pub fn app(state: Arc<App>) -> Router {
    routes::router(state)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::new())
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
    let trusted = state.trusted_proxies().to_vec();
    let auth = listener::Listener {
        name: "auth",
        socket: listener,
        router: app(state.clone()),
        budget: listener::Budget::auth(settings.max_connections),
        trusted,
        stats: stats.auth.clone(),
    };
    let metrics = listener::Listener {
        name: "metrics",
        socket: metrics,
        router: routes::metrics_router(state).layer(axum::Extension(stats.clone())),
        budget: listener::Budget::metrics(),
        trusted: Vec::new(),
        stats: stats.metrics.clone(),
    };
    listener::serve_both(auth, metrics, settings, shutdown).await
}
