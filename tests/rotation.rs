//! Rotating `Secret` with `PreviousSecrets` (issue 21 §1) against the real OP, in cookie mode
//! and in Redis mode (a real `redis-server`), through configuration reloads of a running
//! sidecar: login under A; reload to B with A kept: the same cookie jar stays logged in and its
//! next cookie is sealed under B (it opens with a B-only configuration); drop A: still logged
//! in; a cookie sealed only under A is refused; a session a back-channel logout ended stays
//! ended across the rotation (cookie mode: ended before it; Redis mode: ended after it, while
//! still indexed under A).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::redis::{RedisServer, Seen, TICKET, end_at_op, logout_relay, with_cookie};
use common::*;
use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::session::{RequestCookies, Scope};

const HOME: &str = "http://app.test/";
const A: &str = "rotation-test-secret-A-0123456789abcdefgh";
const B: &str = "rotation-test-secret-B-9876543210zyxwvuts";
const SESSION0: &str = "TraefikOidcSidecar.session.0";

/// Two middlewares of one scope (`default`, `second`), sealing under `secret` with `previous`
/// kept; in Redis mode with `redis` (a `redis:` block's body).
fn yaml(issuer: &str, secret: &str, previous: &[&str], redis: Option<&str>) -> String {
    let previous = if previous.is_empty() {
        String::new()
    } else {
        format!("    PreviousSecrets: [{}]\n", previous.join(", "))
    };
    let (root, storage) = match redis {
        Some(r) => (
            format!("redis:\n{r}\n  keyPrefix: \"r:\"\n"),
            "    SessionStorageType: Redis\n",
        ),
        None => (String::new(), ""),
    };
    let mw = |name: &str| {
        format!(
            "  {name}:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {secret}\n{previous}{storage}    Scopes: [openid, profile, email, groups]\n    SessionCookie:\n      Secure: false\n"
        )
    };
    format!("{root}middlewares:\n{}{}", mw("default"), mw("second"))
}

/// The cookie-mode scope a configuration sealing under `secret` alone would build.
fn scope_of(issuer: &str, secret: &str) -> Scope {
    let loaded = config::parse(&yaml(issuer, secret, &[], None), &Env::process()).unwrap();
    let m = &loaded.config.middlewares["default"];
    traefik_oidc_sidecar::auth::scope_of(&[m]).unwrap()
}

fn opens(scope: &Scope, cookie: &str) -> bool {
    scope
        .open_session(&RequestCookies::parse([cookie].into_iter()))
        .is_some()
}

/// The session chunks of a `Cookie` header, without the other cookies.
fn session_cookies(header: &str) -> String {
    header
        .split("; ")
        .filter(|c| c.contains(".session."))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The OP posts back-channel logout tokens to `sidecar`'s direct route through a relay.
async fn op_with_relay() -> (Op, Arc<Mutex<String>>, Seen) {
    let target = Arc::new(Mutex::new(String::new()));
    let seen: Seen = Arc::default();
    let relay = logout_relay(target.clone(), seen.clone()).await;
    let op = Op::start_env(0, 3600, &[("OP_BACKCHANNEL_LOGOUT_URI", &relay)]);
    (op, target, seen)
}

#[tokio::test]
async fn cookie_sessions_survive_a_rotation_and_die_with_the_dropped_secret() {
    let (op, target, seen) = op_with_relay().await;
    let issuer = op.issuer.clone();
    let s = Sidecar::start(&yaml(&issuer, A, &[], None)).await;
    s.wait_ready(15).await;
    *target.lock().unwrap() = format!("http://{}/backchannel-logout/default", s.addr);

    // Login under A; a second user (bob, "carol" here) whose IdP session a back-channel logout ends before the
    // rotation (a copy of the cookie is kept to replay).
    let mut alice = Browser::new(&s, "default");
    assert_eq!(alice.login(HOME, "alice").await.status, 302);
    assert_eq!(alice.app(HOME, Kind::Xhr).await.status, 200);
    let under_a = session_cookies(&alice.cookie_string(APP_HOST));
    let (only_a, only_b) = (scope_of(&issuer, A), scope_of(&issuer, B));
    assert!(opens(&only_a, &under_a) && !opens(&only_b, &under_a));
    let mut carol = Browser::new(&s, "default");
    assert_eq!(carol.login(HOME, "bob").await.status, 302);
    let carol_cookie = session_cookies(&carol.cookie_string(APP_HOST));
    end_at_op(&mut carol, &issuer, &seen).await;
    assert_eq!(
        with_cookie(&s, "default", &carol_cookie, false)
            .await
            .status(),
        401
    );

    // Reload: B seals, A kept. The same jar is still logged in, and this 2xx answer carries
    // the session re-sealed under B (it opens with a B-only configuration, not with A's).
    reload(&s.app, &yaml(&issuer, B, &[A], None)).await;
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.cookies_set().contains(&SESSION0.to_string()), "{r:#?}");
    let under_b = session_cookies(&alice.cookie_string(APP_HOST));
    assert_ne!(under_a, under_b);
    assert!(
        opens(&only_b, &under_b),
        "the next cookie is sealed under B"
    );
    assert!(!opens(&only_a, &under_b));
    // Once under B, nothing more is written; the other member of the scope admits it too.
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!((r.status, r.cookies_set().len()), (200, 0), "{r:#?}");
    alice.middleware = "second".into();
    assert_eq!(alice.app(HOME, Kind::Xhr).await.status, 200);
    alice.middleware = "default".into();
    // The old value still opens meanwhile (another tab that did not get the new cookie yet),
    // and the session a back-channel logout ended did not come back with the rotation.
    assert_eq!(
        with_cookie(&s, "default", &under_a, false).await.status(),
        200
    );
    assert_eq!(
        with_cookie(&s, "default", &carol_cookie, false)
            .await
            .status(),
        401
    );

    // Drop A: still logged in; a cookie sealed only under A is refused (an API call: 401; a
    // page: the login redirect, clearing the dead cookie), and carol stays out.
    reload(&s.app, &yaml(&issuer, B, &[], None)).await;
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!((r.status, r.cookies_set().len()), (200, 0), "{r:#?}");
    assert_eq!(
        with_cookie(&s, "default", &under_a, false).await.status(),
        401
    );
    let r = with_cookie(&s, "default", &under_a, true).await;
    assert_eq!(r.status(), 302);
    let cleared: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{SESSION0}=;")) && c.contains("Max-Age=0")),
        "the dead cookie is cleared: {cleared:#?}"
    );
    assert_eq!(
        with_cookie(&s, "default", &carol_cookie, false)
            .await
            .status(),
        401
    );
}

/// The TTL of every session record, in seconds.
fn record_ttls(redis: &RedisServer) -> Vec<i64> {
    redis
        .cli(&["--scan", "--pattern", "r:session:*"])
        .lines()
        .filter(|k| !k.is_empty())
        .map(|k| redis.cli(&["TTL", k]).trim().parse().unwrap())
        .collect()
}

fn ticket_of(r: &Resp) -> Option<String> {
    r.all("set-cookie")
        .into_iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_string()).ok())
        .find(|c| c.name() == TICKET && !c.value().is_empty())
        .map(|c| c.value().to_string())
}

#[tokio::test]
async fn redis_sessions_move_under_the_new_secret() {
    let redis = RedisServer::start();
    let (op, target, seen) = op_with_relay().await;
    let issuer = op.issuer.clone();
    let block = redis.block();
    let s = Sidecar::start(&yaml(&issuer, A, &[], Some(&block))).await;
    s.wait_ready(15).await;
    *target.lock().unwrap() = format!("http://{}/backchannel-logout/default", s.addr);

    let mut alice = Browser::new(&s, "default");
    assert_eq!(alice.login(HOME, "alice").await.status, 302);
    let old = format!("{TICKET}={}", alice.cookies(APP_HOST)[TICKET]);
    let mut dave = Browser::new(&s, "default"); // bob, in his own browser
    assert_eq!(dave.login(HOME, "bob").await.status, 302);
    let dave_ticket = format!("{TICKET}={}", dave.cookies(APP_HOST)[TICKET]);
    assert_eq!(record_ttls(&redis).len(), 2);

    // Reload: B seals, A kept. Alice's ticket verifies, its record opens, and this 2xx answer
    // moves the session: a new ticket, a new record, the old one expiring within the grace.
    reload(&s.app, &yaml(&issuer, B, &[A], Some(&block))).await;
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    let moved = ticket_of(&r).expect("a new ticket on the 2xx answer");
    let new = format!("{TICKET}={moved}");
    assert_ne!(new, old);
    let ttls = record_ttls(&redis);
    assert_eq!(ttls.len(), 3, "{ttls:?}");
    assert_eq!(
        ttls.iter().filter(|t| (0..=30).contains(*t)).count(),
        1,
        "only the old record goes, within the grace: {ttls:?}"
    );
    // The next request carries the new ticket: nothing more is written.
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!((r.status, ticket_of(&r)), (200, None), "{r:#?}");
    alice.middleware = "second".into();
    assert_eq!(alice.app(HOME, Kind::Xhr).await.status, 200);
    // A request the browser sent with the old ticket meanwhile still finds its session and
    // gets the same new ticket (one move per old ticket).
    let late = with_cookie(&s, "default", &old, false).await;
    assert_eq!(late.status(), 200);
    let late_ticket = late
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_string()).ok())
        .find(|c| c.name() == TICKET)
        .map(|c| c.value().to_string());
    assert_eq!(late_ticket.as_deref(), Some(moved.as_str()));
    // Proof it is sealed and indexed under B: a replica configured with B alone opens it, and
    // not the old ticket.
    let b_only = Sidecar::start(&yaml(&issuer, B, &[], Some(&block))).await;
    b_only.wait_ready(15).await;
    assert_eq!(
        with_cookie(&b_only, "default", &new, false).await.status(),
        200
    );
    assert_eq!(
        with_cookie(&b_only, "default", &old, false).await.status(),
        401
    );

    // Dave's session is still indexed under A only (no request since the rotation): the IdP's
    // back-channel logout finds it through the kept secret's index.
    end_at_op(&mut dave, &issuer, &seen).await;
    assert_eq!(
        with_cookie(&s, "default", &dave_ticket, false)
            .await
            .status(),
        401
    );

    // Drop A: still logged in; the A ticket is refused (and cleared on a page: alone with its
    // cookie name, a ticket that does not verify is removed).
    reload(&s.app, &yaml(&issuer, B, &[], Some(&block))).await;
    let r = alice.app(HOME, Kind::Xhr).await;
    assert_eq!((r.status, ticket_of(&r)), (200, None), "{r:#?}");
    assert_eq!(with_cookie(&s, "default", &old, false).await.status(), 401);
    let r = with_cookie(&s, "default", &old, true).await;
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with(&format!("{TICKET}=;"))),
        "{r:#?}"
    );
}
