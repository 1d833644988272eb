//! The harness of the listener suites (tests/listener.rs, tests/listener_limits.rs): the
//! sidecar in this process with `limits:` from its YAML, against the real OpenID Provider; raw
//! loopback clients that can bind 127.0.0.x to play untrusted peers; the sidecar's metrics; and
//! everything it logs, to check that nothing is logged at error.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::{App, SystemClock, serve_with_limits};

use crate::common;

/// Everything the sidecar logs in this test binary, to check that nothing is logged at error.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
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

pub fn error_lines() -> Vec<String> {
    let l = logs();
    let text = String::from_utf8_lossy(&l.lock().unwrap()).to_string();
    text.lines()
        .filter(|l| l.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// The sidecar in this process, with `extra_root` (trustedProxies, limits) in its config.
pub struct Running {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start(extra_root: &str) -> Running {
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
    let served = app.clone();
    let done = tokio::spawn(async move {
        serve_with_limits(served, l, m, &limits, async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        app,
        addr,
        metrics,
        stop: Some(tx),
        done,
    }
}

impl Running {
    /// One metric's value from `/metrics` (the whole line's labels as written there).
    pub async fn metric(&self, series: &str) -> u64 {
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

pub fn open(peer: &str) -> String {
    format!("traefik_oidc_sidecar_connections_open{{listener=\"auth\",peer=\"{peer}\"}}")
}
pub fn refusals(reason: &str) -> String {
    format!(
        "traefik_oidc_sidecar_connections_refused_total{{listener=\"auth\",reason=\"{reason}\"}}"
    )
}
pub fn timeouts(phase: &str) -> String {
    format!("traefik_oidc_sidecar_connection_timeouts_total{{listener=\"auth\",phase=\"{phase}\"}}")
}

/// A connection from `src` (any loopback address) to `to`.
pub async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(to).await
}

pub const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n\r\n";

/// Reads one response; its status, or an error when the server closed or reset instead.
pub async fn read_response(s: &mut TcpStream) -> std::io::Result<u16> {
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
pub async fn exchange(s: &mut TcpStream, req: &[u8]) -> std::io::Result<u16> {
    s.write_all(req).await?;
    tokio::time::timeout(Duration::from_secs(10), read_response(s))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Waits until the server closes `s` (EOF or reset) and says how long that took, at most `max`.
pub async fn closed_within(s: &mut TcpStream, started: Instant, max: Duration) -> Duration {
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

pub fn forwarded_get(middleware: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET /auth/{middleware} HTTP/1.1\r\nHost: sidecar:4181\r\nX-Forwarded-Method: GET\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: {}\r\nX-Forwarded-Uri: /\r\n\
         X-Forwarded-For: 203.0.113.9\r\n{extra}\r\n",
        common::APP_HOST
    )
    .into_bytes()
}
