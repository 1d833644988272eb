//! The internal-URL layout against the real OP: the OP names `http://localhost:PORT` as its
//! issuer while the sidecar is configured with `http://127.0.0.1:PORT` (as Keycloak with
//! `KC_HOSTNAME` reached at its internal address). The sidecar becomes ready, logs in, checks
//! the RFC 9207 `iss` parameter and tokens against the discovered issuer, and warns once;
//! `ValidIssuer` set to another value still decides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

const HOME: &str = "http://app.test/";
const API: &str = "https://api.example.test/";

fn op() -> Op {
    let op = Op::start_env(0, 3600, &[("OP_ISSUER", "http://localhost:{port}")]);
    assert_ne!(
        op.issuer, op.url,
        "the OP names another issuer than its address"
    );
    op
}

fn yaml(url: &str, extra_provider: &str) -> String {
    let provider = |extra: &str| {
        format!(
            "    Provider:\n      Url: {url}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n{extra_provider}{extra}    Secret: {SECRET}\n    SessionCookie:\n      Secure: false\n"
        )
    };
    format!(
        "middlewares:\n  default:\n{}  jwt:\n{}    AuthorizationHeader:\n      Name: Authorization\n  intro:\n{}    AuthorizationHeader:\n      Name: Authorization\n",
        provider(""),
        provider(&format!(
            "      TokenValidation: AccessToken\n      ValidAudience: {API}\n"
        )),
        provider("      TokenValidation: Introspection\n"),
    )
}

#[tokio::test]
async fn internal_url_layout_becomes_ready_logs_in_and_checks_the_discovered_issuer() {
    let op = op();
    let s = Sidecar::start(&yaml(&op.url, "")).await;
    s.wait_ready(15).await;

    let mut b = Browser::new(&s, "default");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let callback = b.login_at_op(&r.location(), "alice", "alice").await;
    // RFC 9207: the OP names itself by its issuer, not by the address we reach it at.
    let iss = query(&callback)["iss"].clone();
    assert_eq!(iss, op.issuer);

    // The same callback claiming the configured address as issuer is a mix-up: refused.
    let forged = callback.replace(
        &format!(
            "iss={}",
            openidconnect::url::form_urlencoded::byte_serialize(op.issuer.as_bytes())
                .collect::<String>()
        ),
        &format!(
            "iss={}",
            openidconnect::url::form_urlencoded::byte_serialize(op.url.as_bytes())
                .collect::<String>()
        ),
    );
    assert_ne!(forged, callback);
    let mut other = Browser::new(&s, "default");
    let r = other.app(&forged, Kind::Navigate).await;
    assert_eq!(r.status, 400, "{r:#?}");

    let r = b.app(&callback, Kind::Navigate).await;
    assert_eq!(r.status, 302, "the login completes: {r:#?}");
    assert_eq!(r.location(), HOME);
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));

    // Bearer tokens name the discovered issuer too: a JWT access token, and introspection.
    let jwt = machine_token(&op.url, Some(API)).await;
    let r = bearer(&s, "jwt", &jwt).await;
    assert_eq!(r.status, 200, "JWT access token: {r:#?}");
    let opaque = machine_token(&op.url, None).await;
    let r = bearer(&s, "intro", &opaque).await;
    assert_eq!(r.status, 200, "introspection: {r:#?}");
}

#[tokio::test]
async fn valid_issuer_pinned_to_another_value_still_refuses_the_login() {
    let op = op();
    // Pinned to the address we reach the OP at, which is not what its tokens say.
    let pinned = format!("      ValidIssuer: {}\n", op.url);
    let s = Sidecar::start(&yaml(&op.url, &pinned)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    let r = b.login(HOME, "alice").await;
    common::assert_login_refused(&mut b, &r).await;
    // A JWT access token from the same OP is refused for the same reason.
    let jwt = machine_token(&op.url, Some(API)).await;
    let r = bearer(&s, "jwt", &jwt).await;
    assert_eq!(r.status, 401, "{r:#?}");
    // The introspection answer names the OP's issuer (RFC 7662 §2.2): not the pinned one.
    let opaque = machine_token(&op.url, None).await;
    let r = bearer(&s, "intro", &opaque).await;
    assert_eq!(r.status, 401, "{r:#?}");
}

/// Log lines captured for one test (the subscriber is set for this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_issuer_warning_is_logged_once_not_on_every_refresh() {
    let op = op();
    let loaded = traefik_oidc_sidecar::config::parse(
        &yaml(&op.url, ""),
        &traefik_oidc_sidecar::config::Env::process(),
    )
    .unwrap();
    let cfg = loaded.config.middlewares["default"].provider.clone();
    let provider = traefik_oidc_sidecar::oidc::Provider::new(cfg).unwrap();

    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    for _ in 0..3 {
        provider.discover().await.unwrap();
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    eprintln!("{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains(&op.url) && warnings[0].contains(&op.issuer),
        "names both URLs: {}",
        warnings[0]
    );
    let d = provider.current().unwrap();
    assert_eq!(
        (d.issuer.as_str(), d.discovered_issuer.as_str()),
        (op.issuer.as_str(), op.issuer.as_str())
    );
}

/// A bearer request for the API through a fresh browser named `name`.
async fn bearer(s: &Sidecar, name: &str, token: &str) -> Resp {
    let mut api = Browser::new(s, name);
    api.app_with(
        "http://app.test/api",
        Kind::Xhr,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await
}
