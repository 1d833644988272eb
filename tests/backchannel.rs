//! OpenID Connect Back-Channel Logout 1.0 against the real OP (tests/op, oidc-provider with its
//! back-channel logout feature): ending the session at the OP sends a logout token to the
//! sidecar's direct route, and the sidecar refuses the session from then on while a new login
//! works; the same token replayed is refused and ends nothing.
//!
//! The OP's `backchannel_logout_uri` points at a small relay in this test, which records every
//! body the OP sends and passes it to the sidecar's `POST /backchannel-logout/default`,
//! answering with the sidecar's status: the OP sees the sidecar's real answer, and the test
//! holds the real logout token to replay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;

const HOME: &str = "http://app.test/dashboard?tab=1";

#[derive(Default)]
struct Relayed {
    /// Where to pass bodies on (the sidecar's direct route), once the sidecar runs.
    target: Mutex<Option<String>>,
    /// Every (content type, body, sidecar status) seen.
    seen: Mutex<Vec<(String, String, u16)>>,
}

/// Starts the relay; returns its URL and what it records.
async fn relay() -> (String, Arc<Relayed>) {
    let state = Arc::new(Relayed::default());
    let app = Router::new()
        .route("/bcl", post(pass_on))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bcl", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, state)
}

async fn pass_on(
    State(s): State<Arc<Relayed>>,
    headers: HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let target = s.target.lock().unwrap().clone().expect("sidecar started");
    let status = reqwest::Client::new()
        .post(target)
        .header("Content-Type", ct.clone())
        .body(body.clone())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(599);
    s.seen.lock().unwrap().push((ct, body, status));
    axum::http::StatusCode::from_u16(status).unwrap()
}

struct Setup {
    _op: Op,
    op: String,
    sidecar: Sidecar,
    relayed: Arc<Relayed>,
}

async fn setup() -> Setup {
    let (url, relayed) = relay().await;
    let op = Op::start_env(0, 3600, &[("OP_BACKCHANNEL_LOGOUT_URI", &url)]);
    let sidecar = Sidecar::start(&config_yaml(&op.issuer, "")).await;
    sidecar.wait_ready(15).await;
    *relayed.target.lock().unwrap() = Some(format!(
        "http://{}/backchannel-logout/default",
        sidecar.addr
    ));
    Setup {
        op: op.issuer.clone(),
        _op: op,
        sidecar,
        relayed,
    }
}

/// The form at the OP's end-session page, confirmed: the OP ends its session and sends the
/// logout tokens before it answers.
async fn end_session_at_op(b: &mut Browser, url: &str) {
    let page = b.op_get(url).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let xsrf = common::xsrf(&page);
    let confirm = resolve(url, "/session/end/confirm");
    let r = b
        .op_post(&confirm, &[("xsrf", &xsrf), ("logout", "yes")])
        .await;
    assert_eq!(r.status, 303, "{r:#?}");
}

fn session_cookies(b: &Browser) -> Vec<(String, String)> {
    b.cookies(APP_HOST)
        .into_iter()
        .filter(|(k, _)| k.starts_with("TraefikOidcSidecar.default.session."))
        .collect()
}

/// Logs in and returns the sid the session holds (opened with the scope's own codec).
async fn login(s: &Setup, b: &mut Browser) -> Option<String> {
    let r = b.login(HOME, "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    let header = session_cookies(b)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let cookies =
        traefik_oidc_sidecar::session::RequestCookies::parse([header.as_str()].into_iter());
    test_codec(&s.sidecar, "default")
        .open_session(&cookies)
        .expect("the session opens")
        .sid
        .clone()
}

#[tokio::test]
async fn an_end_session_at_the_op_ends_the_sidecar_session_and_a_new_login_works() {
    let s = setup().await;
    let mut b = Browser::new(&s.sidecar, "default");
    let sid = login(&s, &mut b).await;
    assert!(
        sid.is_some(),
        "the ID token carries sid and the session keeps it"
    );

    // The user ends the session at the OP directly (another app's logout, an admin): the
    // browser still holds the sidecar's cookie.
    end_session_at_op(&mut b, &format!("{}/session/end", s.op)).await;
    let seen = s.relayed.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one logout token: {seen:#?}");
    let (ct, body, status) = &seen[0];
    assert_eq!(ct, "application/x-www-form-urlencoded");
    assert!(body.starts_with("logout_token=eyJ"), "{body}");
    assert_eq!(*status, 200, "the sidecar accepted the real token");
    assert!(
        !session_cookies(&b).is_empty(),
        "the cookie is still in the jar"
    );

    // The old cookie is now an anonymous request.
    let old = session_cookies(&b);
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 401, "{r:#?}");
    // (The 401 cleared it from the jar; put it back for the navigation.)
    for (k, v) in &old {
        b.set_cookie(APP_HOST, k, v);
    }
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");

    // A new login (a new IdP session) works at once.
    let mut fresh = Browser::new(&s.sidecar, "default");
    let new_sid = login(&s, &mut fresh).await;
    assert_ne!(new_sid, sid);
    assert_eq!(fresh.app(HOME, Kind::Xhr).await.status, 200);

    // The same token again: a replay, refused, and nothing else ends.
    let token = body.trim_start_matches("logout_token=").to_string();
    let r = send_token(&s, &token).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        fresh.app(HOME, Kind::Xhr).await.status,
        200,
        "nothing deleted"
    );

    // A reload that rebuilds the client's scopes (other cookie attributes for `default`, another
    // cookie prefix for `admins`, the first of the client by name) does not forget the token:
    // the replay memory belongs to the client, not to a scope.
    let scope = |m: &str| s.sidecar.app.middleware(m).unwrap().scope().clone();
    let before = [scope("admins"), scope("default")];
    let rebuilt = config_yaml(&s.op, "")
        .replace(
            "      Secure: false\n",
            "      Secure: false\n      SameSite: Strict\n",
        )
        .replace(
            "CookieNamePrefix: TraefikOidcSidecar.admins\n",
            "CookieNamePrefix: TraefikOidcSidecar.admins2\n",
        );
    reload(&s.sidecar.app, &rebuilt).await;
    for (old, now) in before.iter().zip([scope("admins"), scope("default")]) {
        assert!(!Arc::ptr_eq(old, &now), "the scope was rebuilt");
    }
    assert_eq!(send_token(&s, &token).await.status(), 400, "still a replay");
    assert_eq!(fresh.app(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn a_session_ended_at_the_op_stays_ended_after_a_reload_rebuilt_its_scope() {
    let s = setup().await;
    let mut b = Browser::new(&s.sidecar, "default");
    login(&s, &mut b).await;
    end_session_at_op(&mut b, &format!("{}/session/end", s.op)).await;
    assert_eq!(s.relayed.seen.lock().unwrap().last().unwrap().2, 200);
    let old = session_cookies(&b);
    assert_eq!(b.app(HOME, Kind::Xhr).await.status, 401);

    // Only a cookie attribute changes: the key is the same (the old cookie still opens), but
    // the reload builds a new scope object for it.
    let scope = || s.sidecar.app.middleware("default").unwrap().scope().clone();
    let before = scope();
    let rebuilt = config_yaml(&s.op, "").replace(
        "      Secure: false\n",
        "      Secure: false\n      SameSite: Strict\n",
    );
    reload(&s.sidecar.app, &rebuilt).await;
    assert!(!Arc::ptr_eq(&before, &scope()), "the scope was rebuilt");

    // The ended session's cookie, presented again, is still refused: not revived by the reload.
    assert_cookies_refused(&s, &old).await;
    // A new login works in the rebuilt scope.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut fresh = Browser::new(&s.sidecar, "default");
    login(&s, &mut fresh).await;
    assert_eq!(fresh.app(HOME, Kind::Xhr).await.status, 200);
}

/// Session `cookies` presented by another browser (a copy, a stolen cookie) are anonymous: 401
/// for an API call, a login redirect for a navigation.
async fn assert_cookies_refused(s: &Setup, cookies: &[(String, String)]) {
    let mut thief = Browser::new(&s.sidecar, "default");
    for (k, v) in cookies {
        thief.set_cookie(APP_HOST, k, v);
    }
    assert_eq!(thief.app(HOME, Kind::Xhr).await.status, 401);
    let r = thief.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
}

/// POSTs `token` to the sidecar's direct back-channel route, as the OP does.
async fn send_token(s: &Setup, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "http://{}/backchannel-logout/default",
            s.sidecar.addr
        ))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rp_initiated_logout_through_the_sidecar_reaches_every_copy_of_the_cookie() {
    let s = setup().await;
    let mut b = Browser::new(&s.sidecar, "default");
    login(&s, &mut b).await;
    // A copy of the cookie (another tab's jar, a stolen cookie): RP-initiated logout clears
    // the browser's cookies, but only the back-channel logout makes the copy worthless.
    let copy = session_cookies(&b);
    let r = b.app("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let loc = r.location();
    assert!(loc.starts_with(&format!("{}/session/end?", s.op)), "{loc}");
    end_session_at_op(&mut b, &loc).await;
    assert_eq!(s.relayed.seen.lock().unwrap().last().unwrap().2, 200);

    assert_cookies_refused(&s, &copy).await;

    // The user logs in again in the same browser: fine.
    login(&s, &mut b).await;
    assert_eq!(b.app(HOME, Kind::Xhr).await.status, 200);
}
