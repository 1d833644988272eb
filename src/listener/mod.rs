//! The serving layer of both listeners: the accept loop, connection budgets that know who is
//! asking (`budget`), per-connection timeouts (`activity`, and the watchdog here), header
//! limits and graceful shutdown.
//!
//! Every connection is HTTP/1.1 (Traefik's forwardAuth client and the shim speak nothing else to
//! an `http://` address) served by hyper's connection driver. Around it:
//!
//! - **Budgets.** A peer in `trustedProxies` may hold up to half of the listener's connections;
//!   any other peer — which can never get a 2xx from `/auth` — at most
//!   [`UNTRUSTED_PER_ADDRESS`], and all untrusted peers together at most a quarter (and never
//!   more than [`UNTRUSTED_TOTAL_CAP`]). The rest is a reserve only trusted proxies can use, so an
//!   idle flood from elsewhere in the cluster cannot lock Traefik out. A connection over budget is
//!   closed at once, before any byte is read. IPv6 peers are counted per /64, since one host
//!   usually owns a whole /64.
//! - **Descriptors.** The listener's maximum is derived from the open-file limit (which `main`
//!   raises to the hard limit at start), minus a headroom for the IdP client, the metrics
//!   listener and the process's own files, so `accept` never fails with `EMFILE`.
//! - **Timeouts.** A request head must arrive within `limits.headerTimeout` (10 s) of its first
//!   byte, or of the accept on a new connection; a kept-alive connection may sit idle for
//!   `limits.idleTimeout` (120 s) between requests. hyper's own header timeout cannot be used: it
//!   starts as soon as a response is written, so it would also cut every idle keep-alive
//!   connection at 10 s, racing the clients' own idle close. Traefik's forwardAuth client
//!   (`http.DefaultTransport` or a clone of it) and the shim's transport both close idle
//!   connections after 90 s, so with 120 s here the client always closes first. A handler
//!   still busy after [`guard::REQUEST_TIMEOUT`] (30 s) is answered 503, a handler that panics
//!   500 (`guard`); a request still busy after [`REQUEST_BACKSTOP`] closes its connection.
//! - **Services.** A listener serves anything that implements [`Serve`]: the metrics listener
//!   its router, the auth listener a service that answers its hot routes without the router
//!   (`routes::AuthService`).
//! - **Head limits.** At most [`MAX_HEADERS`] header fields, and for the request line and
//!   headers together [`MAX_HEAD_BYTES`] from a trusted proxy or [`MAX_UNTRUSTED_HEAD_BYTES`]
//!   from anyone else (who only ever gets a refusal, so the smaller limit costs nothing and
//!   bounds the memory an untrusted flood can pin); hyper answers 431 beyond either. A maximal
//!   session (8 chunks of 3 500 bytes), the three logout-hint chunks, five login flows, a
//!   browser's headers and Traefik's `X-Forwarded-*` take about 45 KB
//!   (`tests/listener_limits.rs` builds that request and sends it next to 100 KB of the
//!   application's own cookies).

mod activity;
mod budget;
mod guard;
mod limits;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::forwarded::Cidr;
use crate::metrics::Connections;
use activity::{Activity, BUSY, IDLE, Watched};
pub use budget::Budget;
use budget::{Gate, Permit};
pub use guard::REQUEST_TIMEOUT;
pub use limits::Limits;

/// What a listener serves: one request and the address of the peer that sent it, to a response.
/// The listener adds the panic and timeout guards ([`guard`]) around every answer.
pub trait Serve: Clone + Send + Sync + 'static {
    /// Answers `req`, received from `peer`.
    fn serve(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<Self>;
}

/// A router is served as is; its handlers may extract `ConnectInfo<SocketAddr>`.
impl Serve for Router {
    fn serve(
        &self,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response> + Send + use<> {
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = self.clone().call(req);
        async move {
            match answer.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}

/// Header fields a request may carry. A browser sends about 20, Traefik adds 7 and a load
/// balancer or tracing a few more; 100 is also hyper's default.
pub const MAX_HEADERS: usize = 100;
/// Bytes of request line plus headers from a trusted proxy. The largest legitimate request (see
/// the module docs) is about 45 KB; the rest is room for the application's own cookies (Traefik
/// passes every cookie of the site, up to Go's 1 MB header limit) and long URLs in
/// `X-Forwarded-Uri`.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// Bytes of request line plus headers from any other peer: a health probe or a client that can
/// only be refused.
pub const MAX_UNTRUSTED_HEAD_BYTES: usize = 16 * 1024;
/// Connections one untrusted address (or IPv6 /64) may hold. Such a peer only ever gets 401s
/// and health answers; a probe needs one connection.
pub const UNTRUSTED_PER_ADDRESS: usize = 16;
/// The most connections all untrusted peers together may hold on the auth listener, whatever
/// the open-file limit: it bounds the memory an untrusted flood can pin.
pub const UNTRUSTED_TOTAL_CAP: usize = 1024;
/// Descriptors kept out of the listeners' budgets: the IdP client's pool, the process's own
/// files, the runtime's epoll and signal descriptors.
pub const FD_HEADROOM: usize = 256;
/// Connections the metrics listener accepts (a Prometheus scraper needs one).
pub const METRICS_MAX_CONNECTIONS: usize = 64;
/// A request still being answered this long after its head arrived closes its connection: twice
/// [`REQUEST_TIMEOUT`], at which the request is normally answered 503 long before.
pub const REQUEST_BACKSTOP: Duration = Duration::from_secs(60);
/// The auth listener's maximum when the open-file limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 4096;
/// How often a flood of refusals or accept errors is summarised in the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the most the soft limit can be raised to without privileges).
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit (many platforms start processes at 1024
/// whatever the hard limit allows). Uses the `rlimit` crate: the crate forbids `unsafe`, and
/// `setrlimit` is only reachable through it. Linux refuses a soft limit above `nr_open`
/// (1 048 576 by default) even when the hard limit says "unlimited", so that is tried next.
pub fn raise_open_file_limit() -> io::Result<FileLimit> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = match rlimit::increase_nofile_limit(hard) {
        Ok(s) => s,
        Err(_) => rlimit::increase_nofile_limit(hard.min(1 << 20))?,
    };
    Ok(FileLimit { before, soft, hard })
}

/// The current soft open-file limit, if the platform has one.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// What the serving layer enforces, resolved from `limits:` and the open-file limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// See [`Limits::header_timeout`].
    pub header_timeout: Duration,
    /// See [`Limits::idle_timeout`].
    pub idle_timeout: Duration,
    /// Open connections on the auth listener.
    pub max_connections: usize,
}

impl Settings {
    /// Resolves `limits` against a soft open-file limit (`None`: unknown).
    pub fn resolve(limits: &Limits, nofile: Option<u64>) -> Settings {
        Settings {
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            max_connections: limits
                .max_connections
                .unwrap_or_else(|| derived_max_connections(nofile)),
        }
    }
}

/// The auth listener's share of `nofile` descriptors: each connection holds one.
pub fn derived_max_connections(nofile: Option<u64>) -> usize {
    match nofile.map(|n| usize::try_from(n).unwrap_or(usize::MAX)) {
        Some(n) => n
            .saturating_sub(FD_HEADROOM + METRICS_MAX_CONNECTIONS)
            .max(64),
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

// ---------------------------------------------------------------------------------------------
// Serving.

/// One listener to serve: its socket, service, budget and counters.
pub struct Listener<S> {
    /// `auth` or `metrics` (the metrics label and log field).
    pub name: &'static str,
    /// The bound socket.
    pub socket: TcpListener,
    /// What it serves.
    pub service: S,
    /// Who may hold how many connections.
    pub budget: Budget,
    /// Peers that count as trusted for the budget.
    pub trusted: Vec<Cidr>,
    /// Its counters.
    pub stats: Arc<Connections>,
}

/// Serves `listener` until `shutdown` turns true, then stops accepting and waits for its
/// connections to finish (idle ones close at once, in-flight requests are answered).
pub async fn run<S: Serve>(
    listener: Listener<S>,
    settings: Arc<Settings>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let Listener {
        name,
        socket,
        service,
        budget,
        trusted,
        stats,
    } = listener;
    let gate = Gate::new(budget, trusted, stats.clone());
    let (for_trusted, for_others) = (http1(MAX_HEAD_BYTES), http1(MAX_UNTRUSTED_HEAD_BYTES));
    // Each connection task holds a sender; `recv` returns None once the last one has ended.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut refusals = Summary::new();
    let mut accept_errors = Summary::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, peer)) => match gate.admit(peer.ip()) {
                Ok(permit) => {
                    // Small answers, sent at once: no Nagle delay on the auth path.
                    let _ = stream.set_nodelay(true);
                    let http = if permit.trusted {
                        for_trusted.clone()
                    } else {
                        for_others.clone()
                    };
                    tokio::spawn(connection(
                        stream,
                        peer,
                        permit,
                        Shared {
                            service: service.clone(),
                            http,
                            settings: settings.clone(),
                            stats: stats.clone(),
                        },
                        shutdown.clone(),
                        alive.clone(),
                    ));
                }
                Err(why) => {
                    // Closed before any byte is read: the descriptor is free again at once.
                    drop(stream);
                    stats.refused(why);
                    tracing::debug!(listener = name, peer = %peer.ip(), reason = ?why, "connection refused");
                    if let Some(n) = refusals.count() {
                        tracing::warn!(
                            listener = name,
                            refused = n,
                            "connections refused over budget in the last {}s (latest from {}: {why:?})",
                            LOG_EVERY.as_secs(),
                            peer.ip()
                        );
                    }
                }
            },
            Err(e) => {
                stats.accept_error();
                if let Some(n) = accept_errors.count() {
                    tracing::warn!(listener = name, errors = n, "accept: {e}");
                }
                // A connection that died in the backlog is not our problem; anything else
                // (out of descriptors, memory) is retried after a pause instead of spinning.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // No new connections from here on; the socket closes now.
    drop(socket);
    drop(alive);
    let _ = all_done.recv().await;
    Ok(())
}

/// hyper's HTTP/1.1 settings for heads of at most `head_bytes`.
fn http1(head_bytes: usize) -> Arc<hyper::server::conn::http1::Builder> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true)
        // Off: its clock starts when a response is written, which would cut idle connections
        // at the header timeout (see the module docs). The watchdog enforces both instead.
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_header_size(head_bytes)
        .max_buf_size(head_bytes);
    Arc::new(http)
}

/// What every connection of a listener shares.
struct Shared<S> {
    service: S,
    http: Arc<hyper::server::conn::http1::Builder>,
    settings: Arc<Settings>,
    stats: Arc<Connections>,
}

/// Serves one connection until the client closes it, a bound runs out or shutdown drains it.
async fn connection<S: Serve>(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    shared: Shared<S>,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let Shared {
        service,
        http,
        settings,
        stats,
    } = shared;
    let activity = Arc::new(Activity::new(&settings));
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        tracked.enter(BUSY);
        let answer = guard::guarded(service.serve(req, peer), REQUEST_TIMEOUT);
        let tracked = tracked.clone();
        async move {
            let resp = answer.await;
            tracked.enter(IDLE);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    let sleep = tokio::time::sleep_until(activity.arm(activity.deadline().0));
    tokio::pin!(sleep);
    loop {
        if !draining && *shutdown.borrow() {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        let deadline = activity.arm(activity.deadline().0);
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // Malformed or oversized requests (hyper answered 400/431 itself), resets:
                    // the client's problem, not an operator's.
                    tracing::debug!(peer = %peer.ip(), error = %e, "connection ended with an error");
                }
                break;
            }
            () = &mut sleep => {
                // The phase may have moved on since the deadline was set (then it is later).
                let (due, bound) = activity.deadline();
                if due <= activity.now_ms() {
                    stats.timed_out(bound);
                    tracing::debug!(peer = %peer.ip(), bound = ?bound, "connection closed by timeout");
                    break;
                }
            }
            () = activity.wake.notified() => {}
            r = shutdown.changed(), if !draining => {
                if r.is_err() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(permit);
}

/// Counts events and says when a summary is due (at most once per [`LOG_EVERY`]), so a flood
/// cannot flood the log.
struct Summary {
    since: Option<Instant>,
    count: u64,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            since: None,
            count: 0,
        }
    }

    fn count(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        match self.since {
            Some(t) if now.duration_since(t) < LOG_EVERY => None,
            _ => {
                self.since = Some(now);
                Some(std::mem::take(&mut self.count))
            }
        }
    }
}

/// Serves both listeners until `shutdown` resolves, then drains them.
pub async fn serve_both<A: Serve, M: Serve>(
    auth: Listener<A>,
    metrics: Listener<M>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let settings = Arc::new(settings);
    let (a, m) = tokio::join!(
        run(auth, settings.clone(), rx.clone()),
        run(metrics, settings, rx)
    );
    a.and(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maximum_follows_the_open_file_limit() {
        assert_eq!(derived_max_connections(Some(20_000)), 20_000 - 256 - 64);
        assert_eq!(derived_max_connections(Some(100)), 64);
        assert_eq!(derived_max_connections(None), FALLBACK_MAX_CONNECTIONS);
        let s = Settings::resolve(
            &Limits {
                max_connections: Some(500),
                ..Limits::default()
            },
            Some(1024),
        );
        assert_eq!(s.max_connections, 500);
        assert_eq!(s.idle_timeout, Duration::from_secs(120));
    }
}
