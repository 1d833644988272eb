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
fn check_config_accepts_a_valid_file_and_checks_session_storage() {
    let p = write("good.yaml", GOOD);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    // SessionStorageType is implemented: Cookie is accepted silently…
    assert!(
        !err.contains("middlewares.default.SessionStorageType"),
        "{err}"
    );
    // …and Redis without the top-level redis: block is a problem at its key path.
    let p2 = write("redis.yaml", &GOOD.replace("Cookie", "Redis"));
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p2)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("middlewares.default.SessionStorageType") && err.contains("redis:"),
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

#[test]
fn check_config_warns_about_scopes_fighting_over_one_cookie_name() {
    let mw = |name: &str, client: &str, extra: &str| {
        format!(
            "  {name}:\n    Provider:\n      Url: https://idp.example\n      ClientId: {client}\n    Secret: 0123456789abcdef0123456789abcdef\n{extra}"
        )
    };
    let p = write(
        "fight.yaml",
        &format!(
            "middlewares:\n{}{}{}{}",
            mw("shop", "shop-app", ""),
            mw("shopadmin", "shop-app", ""),
            mw("wiki", "wiki-app", ""),
            mw("own", "own-app", "    CookieNamePrefix: Own\n"),
        ),
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "a warning, not an error: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let fights: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("use the same cookie names"))
        .collect();
    assert_eq!(fights.len(), 1, "{err}");
    assert!(
        fights[0].contains("[shop, shopadmin]") && fights[0].contains("[wiki]"),
        "{err}"
    );
    assert!(!fights[0].contains("[own"), "{err}");
    // One middleware (or one scope) has nothing to fight with.
    let p = write("alone.yaml", GOOD);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("same cookie names"),
        "{out:?}"
    );
}

/// One forwardAuth request to the sidecar on `port` (loopback peers are trusted).
fn forward_auth(port: u16, middleware: &str, uri: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /auth/{middleware} HTTP/1.1\r\nHost: x\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.test\r\nX-Forwarded-Uri: {uri}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

#[test]
fn a_middleware_log_level_raises_or_lowers_its_decision_lines() {
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
    // The IdP is unreachable: only decisions that need no IdP are asked for.
    let mw = |name: &str, level: &str| {
        format!(
            "  {name}:\n    Provider:\n      Url: http://127.0.0.1:9/idp\n      ClientId: app\n    Secret: 0123456789abcdef0123456789abcdef\n    CookieNamePrefix: P{name}\n{level}"
        )
    };
    let p = write(
        "levels.yaml",
        &format!(
            "logLevel: info\nmetricsListen: 127.0.0.1:{mport}\nmiddlewares:\n{}{}{}",
            mw("plain", ""),
            mw("loud", "    LogLevel: debug\n"),
            mw("quiet", "    LogLevel: ERROR\n"),
        ),
    );
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&p)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "never listened");
    for m in ["plain", "loud", "quiet"] {
        // No session, not a navigation: a 401 "denied" line (DEBUG).
        let r = forward_auth(port, m, "/x");
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
        // A refused logout target: a "request refused" line (WARN).
        let r = forward_auth(
            port,
            m,
            "/logout?post_logout_redirect_uri=https://evil.example/",
        );
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    }
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let has = |mw: &str, msg: &str| {
        err.lines()
            .any(|l| l.contains(msg) && l.contains(&format!("middleware={mw}")))
    };
    // Global info: no debug lines, warnings shown.
    assert!(
        !has("plain", " denied") && has("plain", "request refused"),
        "{err}"
    );
    // LogLevel DEBUG: its debug lines appear under a global info.
    assert!(
        has("loud", " denied") && has("loud", "request refused"),
        "{err}"
    );
    // LogLevel ERROR: neither its debug nor its warn lines.
    assert!(
        !has("quiet", " denied") && !has("quiet", "request refused"),
        "{err}"
    );
}

/// `--version` names the version and the commit it was built from (`unknown` only when neither
/// `TOS_COMMIT` nor git could tell, e.g. a build from a tarball).
#[test]
fn version_names_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "traefik-oidc-sidecar {} (commit ",
        env!("CARGO_PKG_VERSION")
    );
    let commit = text
        .trim()
        .strip_prefix(&want)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text:?}"
    );
}
