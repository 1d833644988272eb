//! A bounded soak: the real binary under saturating load on loopback for SOAK_SECONDS (60 by
//! default) with a mix of logged-in requests (200), anonymous navigations (302) and anonymous
//! XHRs (401). It fails on any unexpected status and on resident memory that keeps growing.
//! The numbers are printed (run with `--nocapture` to see them; the test command does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_traefik-oidc-sidecar");

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_at_saturation_has_no_unexpected_status_and_flat_memory() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let port = free_port();
    let mport = free_port();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join(format!("soak-{}.yaml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nmetricsListen: 127.0.0.1:{mport}\n{}",
            config_yaml(shared_op(), "").replace("logLevel: debug", "logLevel: warn")
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stderr(
            std::fs::File::create(dir.join(format!("soak-{}.log", std::process::id()))).unwrap(),
        )
        .spawn()
        .unwrap();
    let pid = child.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "sidecar not ready");
    let mut b = Browser::at(addr, "default");
    assert_eq!(b.login("http://app.test/", "alice").await.status, 302);
    let cookie = b.cookie_string(APP_HOST);

    let ok = Arc::new(AtomicU64::new(0));
    let unexpected = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let (http, cookie, ok, unexpected) =
            (http.clone(), cookie.clone(), ok.clone(), unexpected.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while Instant::now() < deadline {
                i += 1;
                let base = http
                    .get(format!("http://{addr}/auth/default"))
                    .header("X-Forwarded-Method", "GET")
                    .header("X-Forwarded-Proto", "http")
                    .header("X-Forwarded-Host", "app.test")
                    .header("X-Forwarded-Uri", "/page");
                let (req, want) = match i % 20 {
                    0 => (
                        base.header("Sec-Fetch-Mode", "navigate")
                            .header("Accept", "text/html"),
                        302,
                    ),
                    1 => (base.header("Accept", "application/json"), 401),
                    _ => (
                        base.header("Accept", "application/json")
                            .header("Cookie", &cookie),
                        200,
                    ),
                };
                match req.send().await {
                    Ok(r) if r.status().as_u16() == want => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Resident memory once a second.
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss_kib(pid));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();

    let total = ok.load(Ordering::Relaxed) + unexpected.load(Ordering::Relaxed);
    let third = (samples.len() / 3).max(1);
    let early = *samples[..third].iter().max().unwrap();
    let late = *samples[samples.len() - third..].iter().max().unwrap();
    println!(
        "soak: {seconds} s, {total} requests ({:.0}/s), {} unexpected, RSS KiB early max {early}, late max {late}, overall max {}",
        total as f64 / seconds as f64,
        unexpected.load(Ordering::Relaxed),
        samples.iter().max().unwrap()
    );
    assert_eq!(
        unexpected.load(Ordering::Relaxed),
        0,
        "unexpected statuses or errors"
    );
    assert!(
        total > seconds * 100,
        "load was not saturating: {total} requests"
    );
    // Flat: the last third may not exceed the first third by more than 25 % or 4 MiB.
    assert!(
        late <= (early + early / 4).max(early + 4096),
        "RSS grew from {early} KiB to {late} KiB"
    );
}
