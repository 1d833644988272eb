//! Reloading the configuration file (issue 12): a valid change is applied (sessions of
//! unchanged scopes and registered inline blocks carry on), an invalid one is refused and the
//! old configuration keeps serving, new `inline:` rules drop the blocks they refuse, and SIGHUP
//! reloads the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::reload;

const BIN: &str = env!("CARGO_BIN_EXE_traefik-oidc-sidecar");

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tos-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn extra_middleware(issuer: &str) -> String {
    format!(
        "  extra:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    CookieNamePrefix: Extra\n"
    )
}

async fn status(b: &mut Browser, middleware: &str) -> u16 {
    b.middleware = middleware.into();
    b.app("http://app.test/x", Kind::Xhr).await.status
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn a_valid_change_applies_an_invalid_one_is_refused() {
    let issuer = shared_op();
    let yaml = config_yaml(
        issuer,
        &format!("inline:\n  allowedProviderUrls: [\"{issuer}\"]\n"),
    );
    let path = temp("reload.yaml", &yaml);
    let s = Sidecar::start(&yaml).await;
    s.wait_ready(10).await;
    let running = config::parse(&yaml, &Env::process()).unwrap().config;
    tokio::spawn(reload::watch(
        s.app.clone(),
        path.clone(),
        running,
        Duration::from_millis(100),
    ));
    // A logged-in user, and an inline block of the same scope.
    let mut b = Browser::new(&s, "default");
    assert_eq!(b.login("http://app.test/p", "alice").await.status, 302);
    assert_eq!(status(&mut b, "default").await, 200);
    let block = serde_json::to_vec(&json!({
        "CookieNamePrefix": "TraefikOidcSidecar.default",
        "Provider": {"ClientId": "sidecar", "ClientSecret": "sidecar-secret", "Url": issuer},
        "Secret": SECRET,
        "SessionCookie": {"Secure": "false"},
    }))
    .unwrap();
    let (registered, h) = register_block(s.addr, block).await;
    assert_eq!(registered, 201);
    let scope = s.app.middleware("default").unwrap().scope().clone();
    assert_eq!(status(&mut b, "extra").await, 404);

    // A valid change: a new middleware appears; the unchanged scope keeps its object, its
    // session and its inline member.
    std::fs::write(&path, format!("{yaml}{}", extra_middleware(issuer))).unwrap();
    eventually("the new middleware", async || {
        s.app.middleware("extra").is_some()
    })
    .await;
    assert_eq!(
        status(&mut b, "extra").await,
        401,
        "served, not logged in there"
    );
    assert!(Arc::ptr_eq(
        &scope,
        s.app.middleware("default").unwrap().scope()
    ));
    assert_eq!(
        status(&mut b, "default").await,
        200,
        "session survives the reload"
    );
    assert_eq!(status(&mut b, &format!("inline/{h}")).await, 200);
    assert!(
        scope.members().contains(&format!("inline:{}", &h[..32])),
        "{:?}",
        scope.members()
    );

    // An invalid change: refused with every problem, the old configuration keeps serving.
    let bad = format!(
        "{}{}bogusKey: 1\n",
        yaml.replace(SECRET, "short"),
        extra_middleware(issuer)
    );
    std::fs::write(&path, &bad).unwrap();
    let problems = reload::reload_file(&s.app, &path, &s_config(&yaml))
        .await
        .unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in ["middlewares.default.Secret", "bogusKey"] {
        assert!(paths.contains(&want), "{want} missing: {problems:#?}");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&mut b, "default").await, 200);
    assert_eq!(status(&mut b, "extra").await, 401);

    // New inline: rules that refuse the registered block drop it.
    std::fs::write(
        &path,
        yaml.replace(&format!("[\"{issuer}\"]"), "[https://elsewhere.example]"),
    )
    .unwrap();
    eventually("the refused block dropped", async || {
        s.app.inline_blocks().is_empty()
    })
    .await;
    assert_eq!(status(&mut b, &format!("inline/{h}")).await, 404);
    assert!(s.app.middleware("extra").is_none());
    assert_eq!(status(&mut b, "default").await, 200);
}

fn s_config(yaml: &str) -> config::Config {
    config::parse(yaml, &Env::process()).unwrap().config
}

/// `/auth/{middleware}` on the binary at `port`: the status code.
fn forward_auth(port: u16, middleware: &str) -> u16 {
    raw_get(
        port,
        &format!("/auth/{middleware}"),
        "X-Forwarded-Method: GET\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.test\r\nX-Forwarded-Uri: /\r\nAccept: application/json\r\n",
    )
}

/// A GET of `path` with `headers` (CRLF-terminated lines): the status code.
fn raw_get(port: u16, path: &str, headers: &str) -> u16 {
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"),
    )
}

/// Sends `request` as is: the status code of the answer.
fn raw(port: u16, request: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn hup(pid: u32) {
    assert!(
        std::process::Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn sighup_reloads_the_binary() {
    let issuer = shared_op();
    let port = free_port();
    let mport = free_port();
    let base = format!(
        "logLevel: debug\nmetricsListen: 127.0.0.1:{mport}\ninline:\n  allowedProviderUrls: [\"{issuer}\"]\n"
    );
    // No middlewares of its own at all.
    let path = temp("hup.yaml", &base);
    let mut child = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        for _ in 0..160 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("never: {what}\n{}", lines.lock().unwrap());
    };
    wait("listening", &|| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Ready with zero middlewares: as soon as it listens.
    assert_eq!(raw_get(port, "/readyz", ""), 200);
    assert_eq!(forward_auth(port, "extra"), 404);

    std::fs::write(
        &path,
        format!("{base}middlewares:\n{}", extra_middleware(issuer)),
    )
    .unwrap();
    hup(child.id());
    wait("SIGHUP logged", &|| {
        lines
            .lock()
            .unwrap()
            .contains("SIGHUP: reloading the configuration")
    });
    wait("the new middleware", &|| forward_auth(port, "extra") == 401);

    // An invalid file on SIGHUP: refused, logged with its key path, the old one serves on.
    std::fs::write(
        &path,
        format!(
            "{base}middlewares:\n{}",
            extra_middleware(issuer).replace(SECRET, "short")
        ),
    )
    .unwrap();
    hup(child.id());
    wait("refusal logged", &|| {
        let l = lines.lock().unwrap();
        l.contains("configuration reload refused") && l.contains("middlewares.extra.Secret")
    });
    assert_eq!(forward_auth(port, "extra"), 401);

    // An inline block: its decision lines name it by the Traefik name the shim sends.
    let block =
        format!(r#"{{"Provider":{{"ClientId":"sidecar","Url":"{issuer}"}},"Secret":"{SECRET}"}}"#);
    let h: String = Sha256::digest(block.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let posted = raw(
        port,
        &format!(
            "POST /inline/{h} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{block}",
            block.len()
        ),
    );
    assert_eq!(posted, 201);
    let denied = raw(
        port,
        &format!(
            "GET /auth/inline/{h} HTTP/1.1\r\nHost: x\r\nX-Oidc-Sidecar-Middleware: shop-oidc@docker\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.test\r\nX-Forwarded-Uri: /\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(denied, 401);
    wait("the inline decision line", &|| {
        lines
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.contains("denied") && l.contains("shop-oidc@docker"))
    });
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}
