//! The binary's command line: `--check-config`, the config env var, and a real start/stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_traefik-oidc-sidecar");

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tos-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: 0123456789abcdef0123456789abcdef\n    SessionStorageType: Cookie\n";

#[test]
fn check_config_accepts_a_valid_file_and_warns_about_later_keys() {
    let p = write("good.yaml", GOOD);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("middlewares.default.SessionStorageType"),
        "{err}"
    );
    // The env var may name the file instead of --config.
    let out = Command::new(BIN)
        .env("TRAEFIK_OIDC_SIDECAR_CONFIG", &p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let p = write(
        "bad.yaml",
        "listen: nope\nmiddlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientID: app\n      ClientSecert: x\n    Secret: short\n",
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "listen:",
        "middlewares.default.Secret",
        "middlewares.default.Provider.ClientSecert",
        "did you mean ClientSecret",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Keys are case-insensitive: ClientID is ClientId, so it is not reported.
    assert!(!err.contains("Provider.ClientID"), "{err}");
}

#[test]
fn secrets_never_reach_the_output() {
    let p = write(
        "secret.yaml",
        &GOOD.replace(
            "ClientId: app",
            "ClientId: app\n      ClientSecret: hunter2-very-secret",
        ),
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.contains("hunter2") && !all.contains("0123456789abcdef0123"),
        "{all}"
    );
}

fn health_check(config: &std::path::Path, port: u16) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--health-check")
        .output()
        .unwrap()
}

#[test]
fn serves_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mport = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = write(
        "serve.yaml",
        &format!("metricsListen: 127.0.0.1:{mport}\n{GOOD}"),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                healthy = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(healthy, "never answered /healthz");
    // The container health check asks the same endpoint through the binary itself.
    let hc = health_check(&p, port);
    assert!(hc.status.success(), "{hc:?}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
    let hc = health_check(&p, port);
    assert!(!hc.status.success(), "a stopped sidecar is unhealthy");
}
