//! The serving layer of both listeners: the accept loop, connection budgets that know who is
//! asking, per-connection timeouts, header limits and graceful shutdown.
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
//!   connections after 90 s, so with 120 s here the client always closes first. The router's
//!   `TimeoutLayer` answers 503 after 30 s; a request still busy after [`REQUEST_BACKSTOP`]
//!   closes its connection.
//! - **Head limits.** At most [`MAX_HEADERS`] header fields, and for the request line and
//!   headers together [`MAX_HEAD_BYTES`] from a trusted proxy or [`MAX_UNTRUSTED_HEAD_BYTES`]
//!   from anyone else (who only ever gets a refusal, so the smaller limit costs nothing and
//!   bounds the memory an untrusted flood can pin); hyper answers 431 beyond either. A maximal
//!   session (8 chunks of 3 500 bytes), the three logout-hint chunks, five login flows, a
//!   browser's headers and Traefik's `X-Forwarded-*` take about 45 KB (`tests/listener.rs` builds
//!   that request and sends it next to 100 KB of the application's own cookies).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::config::Limits;
use crate::forwarded::Cidr;
use crate::metrics::{Connections, Refusal, Timeout};

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
/// the router's 30 s `TimeoutLayer`, which normally answers 503 long before.
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

/// How many connections whom may hold on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// All connections together.
    pub max: usize,
    /// One trusted address.
    pub per_trusted: usize,
    /// All untrusted peers together; `max - untrusted` is the trusted proxies' reserve.
    pub untrusted: usize,
    /// One untrusted address (or IPv6 /64).
    pub per_untrusted: usize,
}

impl Budget {
    /// The auth listener's budget for `max` connections.
    pub fn auth(max: usize) -> Budget {
        Budget {
            max,
            per_trusted: (max / 2).max(1),
            untrusted: (max / 4).clamp(1, UNTRUSTED_TOTAL_CAP),
            per_untrusted: UNTRUSTED_PER_ADDRESS,
        }
    }

    /// The metrics listener's budget: no peer is special there.
    pub fn metrics() -> Budget {
        Budget {
            max: METRICS_MAX_CONNECTIONS,
            per_trusted: METRICS_MAX_CONNECTIONS,
            untrusted: METRICS_MAX_CONNECTIONS,
            per_untrusted: UNTRUSTED_PER_ADDRESS,
        }
    }
}

/// Counts who holds how many connections, and admits or refuses new ones.
struct Gate {
    budget: Budget,
    trusted: Vec<Cidr>,
    counts: Mutex<Counts>,
    stats: Arc<Connections>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    untrusted: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One admitted connection's place in the budget; given back on drop.
struct Permit {
    gate: Arc<Gate>,
    peer: IpAddr,
    trusted: bool,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let trusted = self.trusted.iter().any(|c| c.contains(ip));
        let peer = peer_key(ip);
        let b = &self.budget;
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = c.by_peer.get(&peer).copied().unwrap_or(0);
        if c.total >= b.max {
            return Err(Refusal::Capacity);
        }
        if trusted {
            if held >= b.per_trusted {
                return Err(Refusal::PerAddress);
            }
        } else {
            if held >= b.per_untrusted {
                return Err(Refusal::PerAddress);
            }
            if c.untrusted >= b.untrusted {
                return Err(Refusal::UntrustedBudget);
            }
            c.untrusted += 1;
        }
        c.total += 1;
        c.by_peer.insert(peer, held + 1);
        drop(c);
        self.stats.opened(trusted);
        Ok(Permit {
            gate: self.clone(),
            peer,
            trusted,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self
            .gate
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if !self.trusted {
            c.untrusted = c.untrusted.saturating_sub(1);
        }
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
        drop(c);
        self.gate.stats.closed(self.trusted);
    }
}

/// The address a peer is counted under: IPv4 (also when IPv4-mapped), or an IPv6 /64.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

// ---------------------------------------------------------------------------------------------
// One connection's clock.

/// Reading a request head (also a new connection's first state).
const HEAD: u8 = 0;
/// A request is being answered.
const BUSY: u8 = 1;
/// Between requests on a kept-alive connection.
const IDLE: u8 = 2;

/// Where a connection is in its request cycle and since when. Written by the socket wrapper
/// (first byte of a head), the service (request start and end) and read by the watchdog; all of
/// them run inside the connection's one task, so relaxed atomics suffice. Times are
/// milliseconds since the accept.
struct Activity {
    start: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    /// The deadline the watchdog sleeps until; a phase change wakes it only when its own
    /// deadline is earlier (a new head after an idle pause, an idle timeout below the
    /// backstop), so a request costs no timer work in the usual case.
    armed_ms: AtomicU64,
    header_ms: u64,
    idle_ms: u64,
    wake: Notify,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Activity {
    fn new(s: &Settings) -> Activity {
        Activity {
            start: Instant::now(),
            phase: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            armed_ms: AtomicU64::new(u64::MAX),
            header_ms: millis(s.header_timeout),
            idle_ms: millis(s.idle_timeout),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn due_ms(&self, phase: u8, since: u64) -> (u64, Timeout) {
        let (limit, bound) = match phase {
            HEAD => (self.header_ms, Timeout::Header),
            BUSY => (millis(REQUEST_BACKSTOP), Timeout::Request),
            _ => (self.idle_ms, Timeout::Idle),
        };
        (since.saturating_add(limit), bound)
    }

    /// Enters `phase` now.
    fn enter(&self, phase: u8) {
        let now = self.now_ms();
        self.since_ms.store(now, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
        if self.due_ms(phase, now).0 < self.armed_ms.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// Bytes arrived from the client.
    fn read_some(&self) {
        if self.phase.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }

    /// When the current phase runs out (ms since the accept), and which bound that is.
    fn deadline(&self) -> (u64, Timeout) {
        self.due_ms(
            self.phase.load(Ordering::Relaxed),
            self.since_ms.load(Ordering::Relaxed),
        )
    }

    /// Records the deadline the watchdog now sleeps until, and returns it as an instant.
    fn arm(&self, due_ms: u64) -> Instant {
        self.armed_ms.store(due_ms, Ordering::Relaxed);
        self.start + Duration::from_millis(due_ms)
    }
}

/// The client socket, telling [`Activity`] when bytes arrive.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Serving.

/// One listener to serve: its socket, router, budget and counters.
pub struct Listener {
    /// `auth` or `metrics` (the metrics label and log field).
    pub name: &'static str,
    /// The bound socket.
    pub socket: TcpListener,
    /// What it serves; handlers may extract `ConnectInfo<SocketAddr>`.
    pub router: Router,
    /// Who may hold how many connections.
    pub budget: Budget,
    /// Peers that count as trusted for the budget.
    pub trusted: Vec<Cidr>,
    /// Its counters.
    pub stats: Arc<Connections>,
}

/// Serves `listener` until `shutdown` turns true, then stops accepting and waits for its
/// connections to finish (idle ones close at once, in-flight requests are answered).
pub async fn run(
    listener: Listener,
    settings: Arc<Settings>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let Listener {
        name,
        socket,
        router,
        budget,
        trusted,
        stats,
    } = listener;
    let gate = Arc::new(Gate {
        budget,
        trusted,
        counts: Mutex::new(Counts::default()),
        stats: stats.clone(),
    });
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
                            router: router.clone(),
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
struct Shared {
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    settings: Arc<Settings>,
    stats: Arc<Connections>,
}

/// Serves one connection until the client closes it, a bound runs out or shutdown drains it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: Permit,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let Shared {
        router,
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
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tracked.enter(BUSY);
        let answer = router.clone().call(req);
        let tracked = tracked.clone();
        async move {
            let resp = answer.await;
            tracked.enter(IDLE);
            resp
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
pub async fn serve_both(
    auth: Listener,
    metrics: Listener,
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
    use std::net::Ipv6Addr;

    fn gate(budget: Budget, trusted: &[&str]) -> Arc<Gate> {
        Arc::new(Gate {
            budget,
            trusted: trusted.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            counts: Mutex::new(Counts::default()),
            stats: Arc::new(Connections::default()),
        })
    }

    #[test]
    fn untrusted_peers_get_a_small_share_and_trusted_ones_keep_a_reserve() {
        let g = gate(Budget::auth(400), &["127.0.0.1/32"]);
        assert_eq!(g.budget.untrusted, 100);
        // One untrusted address: its own budget, then refusals.
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held: Vec<Permit> = (0..UNTRUSTED_PER_ADDRESS)
            .map(|_| g.admit(a).unwrap())
            .collect();
        assert_eq!(g.admit(a).err(), Some(Refusal::PerAddress));
        // Many untrusted addresses: the untrusted share, then refusals for everyone new.
        for i in 0..200u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(
                u32::from_be_bytes([10, 1, 0, 0]) + i,
            ));
            match g.admit(ip) {
                Ok(p) => held.push(p),
                Err(r) => assert_eq!(r, Refusal::UntrustedBudget),
            }
        }
        assert_eq!(held.len(), 100);
        assert_eq!(g.stats.open(false), 100);
        // The trusted proxy still gets its connections, up to its own (large) budget.
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let proxied: Vec<Permit> = (0..200).map(|_| g.admit(proxy).unwrap()).collect();
        assert_eq!(g.admit(proxy).err(), Some(Refusal::PerAddress));
        assert_eq!(g.stats.open(true), 200);
        // Giving connections back frees their places.
        held.truncate(50);
        assert!(g.admit("10.9.9.9".parse().unwrap()).is_ok());
        drop(proxied);
        assert_eq!(g.stats.open(true), 0);
        drop(held);
        assert_eq!(g.counts.lock().unwrap().by_peer.len(), 0);
        assert_eq!(g.counts.lock().unwrap().total, 0);
    }

    #[test]
    fn the_listener_maximum_is_never_exceeded() {
        let g = gate(Budget::auth(64), &["0.0.0.0/0"]);
        let ips: Vec<IpAddr> = (0..64u32)
            .map(|i| {
                IpAddr::from(std::net::Ipv4Addr::from(
                    u32::from_be_bytes([192, 168, 0, 0]) + i,
                ))
            })
            .collect();
        let held: Vec<Permit> = ips.iter().map(|ip| g.admit(*ip).unwrap()).collect();
        assert_eq!(g.admit(ips[0]).err(), Some(Refusal::Capacity));
        drop(held);
        assert!(g.admit(ips[0]).is_ok());
    }

    #[test]
    fn ipv6_peers_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_ne!(peer_key(a), peer_key("2001:db8:1:3::1".parse().unwrap()));
        let mapped = IpAddr::V6("::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(peer_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

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

    #[test]
    fn phases_have_their_own_deadlines() {
        let s = Settings::resolve(&Limits::default(), None);
        let a = Activity::new(&s);
        assert_eq!(a.deadline(), (10_000, Timeout::Header));
        a.arm(10_000);
        a.enter(BUSY);
        // Later than the armed deadline: no wake-up; bytes during a request restart nothing.
        assert!(a.deadline().0 >= 60_000 && a.deadline().1 == Timeout::Request);
        a.read_some();
        assert_eq!(a.deadline().1, Timeout::Request);
        a.enter(IDLE);
        assert_eq!(a.deadline().1, Timeout::Idle);
        a.arm(a.deadline().0);
        // A new head after the pause moves the deadline closer: the watchdog is woken.
        a.read_some();
        assert_eq!(a.deadline().1, Timeout::Header);
        let woken = a.wake.notified();
        tokio::pin!(woken);
        assert!(
            woken
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()))
                .is_ready()
        );
    }
}
