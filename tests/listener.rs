//! The listeners under hostile connection patterns (issue 14): slow and trickled heads, idle
//! keep-alive, drain on shutdown, an idle flood from untrusted addresses while the trusted proxy
//! keeps being served, the open-file limit raised at start by the real binary, and the Go shim
//! against a sidecar that closes idle connections. Head limits are in tests/listener_limits.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "listener/harness.rs"]
mod harness;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use harness::*;
use traefik_oidc_sidecar::listener::{self, Budget, UNTRUSTED_PER_ADDRESS};

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
    let errors = error_lines();
    assert!(errors.is_empty(), "logged at error: {errors:#?}");
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
    let _ = std::fs::remove_dir_all(&dir);
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
