//! The listeners under hostile connection patterns (issue 14): slow and trickled heads, idle
//! keep-alive, an idle flood from untrusted addresses while the trusted proxy keeps being served,
//! head limits (431) against the largest legitimate request, drain on shutdown, and the open-file
//! limit raised at start by the real binary. The sidecar runs in this process against the real
//! OpenID Provider (tests/op); clients are raw loopback sockets, bound to 127.0.0.x addresses
//! to play untrusted peers while 127.0.0.1 is the trusted proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::listener::{
    self, Budget, MAX_HEAD_BYTES, MAX_HEADERS, MAX_UNTRUSTED_HEAD_BYTES, UNTRUSTED_PER_ADDRESS,
};
use traefik_oidc_sidecar::session::{Flow, RequestCookies, Session};
use traefik_oidc_sidecar::{App, SystemClock, serve_with_limits};

// ---------------------------------------------------------------------------------------------
// Harness.

/// Everything the sidecar logs in this test binary, to check that nothing is logged at error.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn error_lines() -> Vec<String> {
    let l = logs();
    let text = String::from_utf8_lossy(&l.lock().unwrap()).to_string();
    text.lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// The sidecar in this process, with `extra_root` (trustedProxies, limits) in its config.
struct Running {
    addr: SocketAddr,
    metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(extra_root: &str) -> Running {
    logs();
    let issuer = tokio::task::spawn_blocking(common::shared_op)
        .await
        .unwrap();
    let yaml = common::config_yaml(issuer, extra_root);
    let loaded = config::parse(&yaml, &Env::process()).unwrap_or_else(|p| panic!("{p:#?}"));
    let app = Arc::new(App::new(&loaded.config, Arc::new(SystemClock)).unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics) = (l.local_addr().unwrap(), m.local_addr().unwrap());
    app.start_discovery();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = loaded.config.limits.clone();
    let done = tokio::spawn(async move {
        serve_with_limits(app, l, m, &limits, async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        addr,
        metrics,
        stop: Some(tx),
        done,
    }
}

impl Running {
    /// One metric's value from `/metrics` (the whole line's labels as written there).
    async fn metric(&self, series: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn open(peer: &str) -> String {
    format!("traefik_oidc_sidecar_connections_open{{listener=\"auth\",peer=\"{peer}\"}}")
}
fn refusals(reason: &str) -> String {
    format!(
        "traefik_oidc_sidecar_connections_refused_total{{listener=\"auth\",reason=\"{reason}\"}}"
    )
}
fn timeouts(phase: &str) -> String {
    format!("traefik_oidc_sidecar_connection_timeouts_total{{listener=\"auth\",phase=\"{phase}\"}}")
}

/// A connection from `src` (any loopback address) to `to`.
async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(to).await
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n";

/// Reads one response; its status, or an error when the server closed or reset instead.
async fn read_response(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + 4 + len {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(status);
    }
}

/// Sends `req` on `s` and reads the answer, within 10 s.
async fn exchange(s: &mut TcpStream, req: &[u8]) -> std::io::Result<u16> {
    s.write_all(req).await?;
    tokio::time::timeout(Duration::from_secs(10), read_response(s))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Waits until the server closes `s` (EOF or reset) and says how long that took, at most `max`.
async fn closed_within(s: &mut TcpStream, started: Instant, max: Duration) -> Duration {
    let mut b = [0u8; 1024];
    let r = tokio::time::timeout(max, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "still open after {max:?}");
    started.elapsed()
}

fn forwarded_get(middleware: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET /auth/{middleware} HTTP/1.1\r\nHost: sidecar:4181\r\nX-Forwarded-Method: GET\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: {}\r\nX-Forwarded-Uri: /\r\n\
         X-Forwarded-For: 203.0.113.9\r\n{extra}\r\n",
        common::APP_HOST
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Timeouts.

#[tokio::test]
async fn slow_heads_are_cut_at_the_header_timeout_and_idle_connections_live_longer() {
    let s = start("limits:\n  headerTimeout: 1s\n  idleTimeout: 3s").await;
    let addr = s.addr;
    let local = Ipv4Addr::LOCALHOST;

    // Part of a head, then nothing: closed about 1 s after the connection opened.
    let partial = async {
        let t = Instant::now();
        let mut c = connect_from(local, addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            .await
            .unwrap();
        closed_within(&mut c, t, Duration::from_secs(5)).await
    };
    // A head trickled one header every 200 ms: the deadline is for the whole head, not a read.
    let trickle = async {
        let t = Instant::now();
        let mut c = connect_from(local, addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if c.write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        closed_within(&mut c, t, Duration::from_secs(5)).await
    };
    // Keep-alive: a pause longer than the header timeout between requests is fine; the
    // connection is closed at the idle timeout, and a head started after a pause gets only the
    // header timeout.
    let keep_alive = async {
        let mut c = connect_from(local, addr).await.unwrap();
        assert_eq!(exchange(&mut c, HEALTHZ).await.unwrap(), 200);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(exchange(&mut c, HEALTHZ).await.unwrap(), 200, "idle < 3 s");
        let idle_from = Instant::now();
        let idle = closed_within(&mut c, idle_from, Duration::from_secs(8)).await;

        let mut c = connect_from(local, addr).await.unwrap();
        assert_eq!(exchange(&mut c, HEALTHZ).await.unwrap(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let head_from = Instant::now();
        c.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let head = closed_within(&mut c, head_from, Duration::from_secs(5)).await;
        (idle, head)
    };
    let (partial, trickle, (idle, head)) = tokio::join!(partial, trickle, keep_alive);
    eprintln!(
        "closed after: partial {partial:?}, trickle {trickle:?}, idle {idle:?}, head after idle {head:?}"
    );
    let around = |d: Duration, secs: f64| {
        d >= Duration::from_secs_f64(secs - 0.1) && d <= Duration::from_secs_f64(secs + 1.0)
    };
    assert!(around(partial, 1.0), "partial head: {partial:?}");
    assert!(around(trickle, 1.0), "trickled head: {trickle:?}");
    assert!(around(idle, 3.0), "idle keep-alive: {idle:?}");
    assert!(around(head, 1.0), "head after an idle pause: {head:?}");
    assert!(s.metric(&timeouts("header")).await >= 3);
    assert!(s.metric(&timeouts("idle")).await >= 1);
    assert_eq!(s.metric(&timeouts("request")).await, 0);
}

#[tokio::test]
async fn shutdown_drains_a_request_in_progress_and_closes_idle_connections() {
    let mut s = start("").await;
    let mut idle = connect_from(Ipv4Addr::LOCALHOST, s.addr).await.unwrap();
    assert_eq!(exchange(&mut idle, HEALTHZ).await.unwrap(), 200);
    let mut busy = connect_from(Ipv4Addr::LOCALHOST, s.addr).await.unwrap();
    busy.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    s.stop.take().unwrap().send(()).unwrap();
    // The idle connection closes at once; the request in progress is still answered.
    let closed = closed_within(&mut idle, t, Duration::from_secs(2)).await;
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    assert_eq!(
        exchange(&mut busy, b"Host: sidecar\r\n\r\n").await.unwrap(),
        200
    );
    let done = tokio::time::timeout(Duration::from_secs(5), &mut s.done).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(TcpStream::connect(s.addr).await.is_err(), "still accepting");
}

// ---------------------------------------------------------------------------------------------
// Head limits.

/// A sealed session that needs every one of the MAX_CHUNKS cookies, as `name=value` pairs.
fn pairs(set_cookies: &[String]) -> Vec<String> {
    set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .filter(|p| !p.ends_with('='))
        .collect()
}

fn noise(len: usize, seed: u64) -> String {
    // xorshift: incompressible enough that deflate does not shrink the session.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                    [(x % 64) as usize],
            )
        })
        .collect()
}

/// The largest `n` for which `fits(n)` holds (it must hold for 0 and fail for `hi`).
fn largest(hi: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, hi);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// The largest request a legitimate browser sends through Traefik: a session in all 8 chunks,
/// the 3 logout-hint chunks, 5 login flows, a browser's usual headers, Traefik's X-Forwarded-*.
fn largest_legitimate_request(app_cookie_bytes: usize) -> (Vec<u8>, usize) {
    use traefik_oidc_sidecar::session::{CHUNK_SIZE, MAX_CHUNKS, MAX_HINT_CHUNKS};
    let codec = common::test_codec("default");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let none = RequestCookies::default();
    let session = |n: usize| Session {
        sub: "a-user-with-a-long-subject-identifier-0123456789".into(),
        claims: serde_json::json!({ "groups": ["admins"], "big": noise(n, 7) })
            .as_object()
            .unwrap()
            .clone(),
        iat: now,
        exp: now + 3600,
        id_token: None,
        access_token: None,
        refresh_token: Some(noise(900, 11)),
        authorized: true,
        challenged: false,
    };
    let n = largest(MAX_CHUNKS * CHUNK_SIZE * 2, |n| {
        codec.write_session(&session(n), &none, now).is_ok()
    });
    let mut cookies = pairs(&codec.write_session(&session(n), &none, now).unwrap());
    assert_eq!(cookies.len(), MAX_CHUNKS, "{cookies:?}");
    // The longest ID token still kept as a hint (longer ones are left out, not truncated).
    let t = largest(20_000, |t| {
        t < 100 || !pairs(&codec.write_hint(Some(&noise(t, 13))).unwrap()).is_empty()
    });
    let hint = pairs(&codec.write_hint(Some(&noise(t, 13))).unwrap());
    assert_eq!(hint.len(), MAX_HINT_CHUNKS);
    cookies.extend(hint);
    for i in 0..5 {
        let flow = Flow {
            state: noise(43, 100 + i),
            nonce: noise(43, 200 + i),
            verifier: Some(noise(64, 300 + i)),
            return_to: format!("https://{}/{}", common::APP_HOST, noise(500, 400 + i)),
            created: now,
            challenge: false,
        };
        cookies.extend(pairs(&codec.start_flow(&flow, &none, now).unwrap()));
    }
    // Some of the application's own cookies too.
    cookies.push(format!("_ga={}", noise(40, 5)));
    cookies.push(format!("app_prefs={}", noise(200, 6)));
    for i in 0..app_cookie_bytes / 4000 {
        cookies.push(format!("app_{i}={}", noise(3990, 1000 + i as u64)));
    }
    let uri = format!("/search?q={}", noise(1500, 8));
    let mut head = String::from("GET /auth/default HTTP/1.1\r\nHost: oidc-sidecar:4181\r\n");
    for (k, v) in [
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
        ),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.8,fr;q=0.7"),
        ("Cache-Control", "max-age=0"),
        ("Priority", "u=0, i"),
        (
            "Referer",
            "https://app.test/some/previous/page?with=a&query=string",
        ),
        (
            "Sec-Ch-Ua",
            "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("Sec-Ch-Ua-Mobile", "?0"),
        ("Sec-Ch-Ua-Platform", "\"Linux\""),
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-User", "?1"),
        ("Upgrade-Insecure-Requests", "1"),
        (
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("X-Forwarded-For", "198.51.100.7, 203.0.113.9"),
        ("X-Forwarded-Host", common::APP_HOST),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Server", "traefik-7d9f8c6b5-x2x9z"),
        ("X-Forwarded-Uri", uri.as_str()),
        ("X-Real-Ip", "198.51.100.7"),
    ] {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Cookie: {}\r\n\r\n", cookies.join("; ")));
    let fields = head.lines().count() - 2;
    (head.into_bytes(), fields)
}

#[tokio::test]
async fn the_largest_legitimate_request_fits_and_larger_heads_get_431() {
    let s = start("trustedProxies: [127.0.0.1/32]").await;
    let proxy = Ipv4Addr::LOCALHOST;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let (big, fields) = largest_legitimate_request(0);
    let (bigger, _) = largest_legitimate_request(100_000);
    eprintln!(
        "largest legitimate request: {} bytes, {fields} header fields; with 100 KB of the \
         application's cookies {} bytes (limits: {MAX_HEAD_BYTES} bytes, {MAX_HEADERS} fields)",
        big.len(),
        bigger.len()
    );
    assert!(big.len() < MAX_HEAD_BYTES / 4, "{} bytes", big.len());
    // Wait for discovery, then the session opens: 200, also next to 100 KB of other cookies.
    let mut status = 0;
    for _ in 0..100 {
        let mut c = connect_from(proxy, s.addr).await.unwrap();
        status = exchange(&mut c, &big).await.unwrap();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the largest legitimate request was refused");
    let mut c = connect_from(proxy, s.addr).await.unwrap();
    assert_eq!(exchange(&mut c, &bigger).await.unwrap(), 200);

    let with_fields = |n: usize| {
        let mut h = String::from("GET /healthz HTTP/1.1\r\nHost: sidecar\r\n");
        for i in 1..n {
            h.push_str(&format!("X-H{i}: v\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    };
    let with_bytes = |n: usize| {
        let base = "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(n - base)
        )
        .into_bytes()
    };
    let one_big_cookie = format!(
        "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nCookie: a={}\r\n\r\n",
        "c".repeat(MAX_HEAD_BYTES)
    )
    .into_bytes();
    for (what, from, req, want) in [
        (
            "exactly MAX_HEADERS fields",
            proxy,
            with_fields(MAX_HEADERS),
            200,
        ),
        ("one field more", proxy, with_fields(MAX_HEADERS + 1), 431),
        ("a thousand fields", proxy, with_fields(1000), 431),
        (
            "just under the limit",
            proxy,
            with_bytes(MAX_HEAD_BYTES - 64),
            200,
        ),
        ("one byte over", proxy, with_bytes(MAX_HEAD_BYTES + 1), 431),
        ("a head of 1 MB", proxy, with_bytes(1 << 20), 431),
        ("one cookie over the limit", proxy, one_big_cookie, 431),
        // Peers outside trustedProxies get a smaller head: they are only ever refused.
        (
            "untrusted, under its limit",
            other,
            with_bytes(MAX_UNTRUSTED_HEAD_BYTES - 64),
            200,
        ),
        (
            "untrusted, one byte over",
            other,
            with_bytes(MAX_UNTRUSTED_HEAD_BYTES + 1),
            431,
        ),
        (
            "untrusted, too many fields",
            other,
            with_fields(MAX_HEADERS + 1),
            431,
        ),
        ("untrusted, a session", other, big.clone(), 431),
    ] {
        let mut c = connect_from(from, s.addr).await.unwrap();
        // The server may answer 431 and close while a large head is still being written.
        let _ = c.write_all(&req).await;
        let got = tokio::time::timeout(Duration::from_secs(10), read_response(&mut c))
            .await
            .unwrap();
        assert_eq!(got.ok(), Some(want), "{what}");
    }
    let errors = error_lines();
    assert!(errors.is_empty(), "logged at error: {errors:#?}");
}

// ---------------------------------------------------------------------------------------------
// Budgets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_idle_flood_leaves_the_trusted_proxy_served() {
    // The test process holds both ends of every connection.
    let _ = listener::raise_open_file_limit();
    // A maximum below what the flood could take, so only the trusted reserve keeps the proxy in.
    let max = 1000;
    let s = start(&format!(
        "trustedProxies: [127.0.0.1/32]\nlimits:\n  maxConnections: {max}"
    ))
    .await;
    let budget = Budget::auth(max);
    assert!(200 * UNTRUSTED_PER_ADDRESS > max);
    let addr = s.addr;
    // First, one untrusted address tries a thousand connections: it keeps its own budget.
    let lone = Ipv4Addr::new(127, 0, 0, 2);
    let mut lone_held = Vec::new();
    for _ in 0..1000 {
        let mut c = connect_from(lone, addr).await.unwrap();
        if let Ok(status) = exchange(&mut c, HEALTHZ).await {
            assert_eq!(status, 200);
            lone_held.push(c);
        }
    }
    assert_eq!(lone_held.len(), UNTRUSTED_PER_ADDRESS);
    assert_eq!(
        s.metric(&refusals("per_address")).await,
        (1000 - UNTRUSTED_PER_ADDRESS) as u64
    );
    drop(lone_held);
    for _ in 0..100 {
        if s.metric(&open("untrusted")).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_alone = s.metric(&refusals("per_address")).await;

    // Then thousands of connections from 200 untrusted addresses (127.0.0.2 …), each trying a few
    // more than its budget; every one that is let in sends a request and then sits idle.
    let addresses = 200u8;
    let per_address = UNTRUSTED_PER_ADDRESS + 4;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for a in 0..addresses {
        tasks.spawn(async move {
            let src = Ipv4Addr::new(127, 0, a / 100 + 1, a % 100 + 2);
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..per_address {
                let mut c = connect_from(src, addr).await.unwrap();
                match exchange(&mut c, HEALTHZ).await {
                    Ok(200) => held.push(c),
                    Ok(other) => panic!("flood got {other}"),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        panic!("neither served nor refused")
                    }
                    Err(_) => refused += 1,
                }
            }
            (held, refused)
        });
    }
    let mut held = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let (h, r) = r.unwrap();
        held.extend(h);
        refused += r;
    }
    let attempts = usize::from(addresses) * per_address;
    let expected = budget
        .untrusted
        .min(usize::from(addresses) * UNTRUSTED_PER_ADDRESS);
    eprintln!(
        "flood: {attempts} connections in {:?}: {} held idle, {refused} refused (untrusted budget {}, max {max})",
        t.elapsed(),
        held.len(),
        budget.untrusted
    );
    assert_eq!(held.len(), expected);
    assert_eq!(refused, attempts - expected);
    assert_eq!(s.metric(&open("untrusted")).await, expected as u64);
    assert_eq!(
        s.metric(&refusals("per_address")).await - refused_alone
            + s.metric(&refusals("untrusted_budget")).await,
        (attempts - expected) as u64
    );

    // With the untrusted share taken, the trusted proxy's requests are served as usual: new
    // connections (as Traefik opens them under load) and one kept alive.
    let mut slowest = Duration::ZERO;
    let mut kept = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    for i in 0..200 {
        let t = Instant::now();
        let status = if i % 2 == 0 {
            let mut c = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
            exchange(&mut c, &forwarded_get("default", ""))
                .await
                .unwrap()
        } else {
            exchange(&mut kept, &forwarded_get("default", ""))
                .await
                .unwrap()
        };
        slowest = slowest.max(t.elapsed());
        assert!(
            [302, 401, 503].contains(&status),
            "trusted proxy got {status}"
        );
    }
    eprintln!("trusted proxy during the flood: 200 requests, slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");

    // After the flood: everyone is served again.
    drop(held);
    for _ in 0..100 {
        if s.metric(&open("untrusted")).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.metric(&open("untrusted")).await, 0);
    let mut c = connect_from(Ipv4Addr::new(127, 0, 1, 2), addr)
        .await
        .unwrap();
    assert_eq!(exchange(&mut c, HEALTHZ).await.unwrap(), 200);
    assert_eq!(
        s.metric("traefik_oidc_sidecar_accept_errors_total{listener=\"auth\"}")
            .await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// The binary.

#[test]
fn the_binary_raises_its_open_file_limit_and_logs_both() {
    let bin = env!("CARGO_BIN_EXE_traefik-oidc-sidecar");
    let Some(hard) = hard_open_file_limit().filter(|h| *h > 512) else {
        eprintln!("no finite hard open-file limit above 512: nothing to raise");
        return;
    };
    let dir = std::env::temp_dir().join(format!("listener-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sidecar.yaml");
    let (listen, metrics) = (common::free_port(), common::free_port());
    let mut f = std::fs::File::create(&cfg).unwrap();
    write!(
        f,
        "listen: 127.0.0.1:{listen}\nmetricsListen: 127.0.0.1:{metrics}\nlogFormat: json\nmiddlewares:\n  default:\n    Provider:\n      Url: http://127.0.0.1:9\n      ClientId: c\n    Secret: {}\n",
        common::SECRET
    )
    .unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 512 && exec {bin} --config {}",
            cfg.display()
        ))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stderr);
    let found = loop {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break None;
        }
        if line.contains("open-file limit") {
            break Some(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let v = found.expect("no open-file limit line");
    assert_eq!(v["fields"]["soft_at_start"], 512, "{v}");
    assert_eq!(v["fields"]["hard"], hard, "{v}");
    assert_eq!(v["fields"]["soft"], hard.min(1 << 20), "{v}");
}

/// The hard open-file limit from /proc (None when unlimited or unreadable).
fn hard_open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The shim.

/// The Go shim (traefik-plugin/, compiled by `go test`) in front of the sidecar, which closes
/// idle connections after 20 ms: 1 000 requests, one at a time, spaced around that timeout must
/// all pass (about 20 s).
#[tokio::test]
async fn the_shim_never_fails_on_a_connection_the_sidecar_closed() {
    let s = start("limits:\n  idleTimeout: 20ms").await;
    // Discovery first, so the middleware answers from the start.
    let http = reqwest::Client::new();
    for _ in 0..100 {
        let r = http.get(format!("http://{}/readyz", s.addr)).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("traefik-plugin");
    let out = tokio::process::Command::new("go")
        .args([
            "test",
            "-count=1",
            "-v",
            "-run",
            "^TestRealSidecarClosingIdleConnections$",
            ".",
        ])
        .current_dir(plugin)
        .env("SIDECAR_URL", format!("http://{}", s.addr))
        .env("SIDECAR_IDLE_TIMEOUT", "20ms")
        .output()
        .await
        .expect("go must be installed (the shim's own suite needs it too)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("--- PASS: TestRealSidecarClosingIdleConnections"),
        "{text}"
    );
    // The sidecar really did close idle connections under the shim during the run.
    let idle_closed = s.metric(&timeouts("idle")).await;
    eprintln!("shim: 1000 requests passed; the sidecar closed {idle_closed} idle connections");
    // 6 of the 13 pauses are longer than the timeout (sleeps only ever run late).
    assert!(idle_closed >= 400, "{idle_closed}");
    assert_eq!(
        s.metric("traefik_oidc_sidecar_requests_total{middleware=\"public\",outcome=\"bypassed\"}")
            .await,
        1000
    );
}
