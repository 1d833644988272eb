//! `SessionCookie.IdleTimeout` against the real OP (and a real `redis-server` for Redis mode,
//! with two replicas sharing it): a session in use outlives the timeout, an idle one ends while
//! its tokens are still good, the last-activity stamp moves at most once per interval (no
//! `Set-Cookie`, no Redis write in between), refreshes keep working, and sessions sealed before
//! stamps existed count from their `iat`.
//!
//! Time is the sidecar's `Clock`: frozen at the real time of the login, then set forward by the
//! test, so every boundary below is exact (the OP's tokens live an hour, or long enough).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::redis::{RedisServer, TICKET, with_cookie};
use common::*;
use traefik_oidc_sidecar::session::{RequestCookies, Session};
use traefik_oidc_sidecar::{Clock, SystemClock};

const HOME: &str = "http://app.test/";

/// A clock that stands still until the test moves it.
struct Frozen {
    base: AtomicU64,
    now: AtomicU64,
}

impl Frozen {
    /// Frozen at the real time now.
    fn new() -> Arc<Frozen> {
        let t = SystemClock.now();
        Arc::new(Frozen {
            base: AtomicU64::new(t),
            now: AtomicU64::new(t),
        })
    }
    /// The base (the real time it was frozen at).
    fn base(&self) -> u64 {
        self.base.load(Ordering::SeqCst)
    }
    /// `secs` after the base.
    fn at(&self, secs: u64) {
        self.now.store(self.base() + secs, Ordering::SeqCst);
    }
}

impl Clock for Frozen {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// `default` (IdleTimeout 1m: interval 15 s, ends 75 s after the stamp) and `lax` (10m) share
/// one scope, so the shorter applies to both; `off` is another scope without one.
fn yaml(issuer: &str, extra_root: &str, storage: &str) -> String {
    format!(
        r#"
{extra_root}
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    SessionStorageType: {storage}
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
      IdleTimeout: 1m
  lax:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    SessionStorageType: {storage}
    SessionCookie:
      Secure: false
      IdleTimeout: 600
  off:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: Off
    SessionCookie:
      Secure: false
"#
    )
}

/// The session chunks a reply sets (removals not counted).
fn stamped(r: &Resp) -> usize {
    r.all("set-cookie")
        .iter()
        .filter(|c| c.contains(".session.") && !c.contains("Max-Age=0"))
        .count()
}

/// Whether a reply removes the session's cookies (chunks or ticket).
fn clears(r: &Resp) -> bool {
    r.all("set-cookie").iter().any(|c| {
        (c.contains(".session.") || c.contains(TICKET))
            && (c.contains("Max-Age=0") || c.contains("=;"))
    })
}

/// The session the browser's cookies hold, opened as the sidecar's scope does.
fn session_of(s: &Sidecar, b: &Browser) -> Session {
    let header = b.cookie_string(APP_HOST);
    let req = RequestCookies::parse([header.as_str()].into_iter());
    let scope = test_codec(s, "default");
    (*scope.open_session(&req).expect("the session opens")).clone()
}

/// One XHR through `mw` at `secs` after the base: status, stamp written.
async fn xhr(b: &mut Browser, clock: &Frozen, mw: &str, secs: u64) -> Resp {
    clock.at(secs);
    b.middleware = mw.to_string();
    b.app(HOME, Kind::Xhr).await
}

#[tokio::test]
async fn cookie_mode_a_used_session_outlives_the_timeout_and_an_idle_one_ends() {
    let issuer = shared_op();
    let clock = Frozen::new();
    let s = Sidecar::start_clocked(&yaml(issuer, "", "Cookie"), clock.clone()).await;
    s.wait_ready(15).await;
    let scope = s.app.middleware("default").unwrap().scope().clone();
    assert_eq!(scope.idle_timeout(), Some(60), "the shorter of 1m and 600");
    let off = s.app.middleware("off").unwrap().scope().clone();
    assert_eq!(off.idle_timeout(), None);

    let mut b = Browser::new(&s, "default");
    assert_eq!(b.login(HOME, "alice").await.status, 302);
    let login = session_of(&s, &b);
    assert_eq!((login.iat, login.active), (clock.base(), None));

    // Within the interval: authorized, nothing written (through both members of the scope).
    for (mw, at) in [("default", 5), ("lax", 10), ("default", 14)] {
        let r = xhr(&mut b, &clock, mw, at).await;
        assert_eq!((r.status, stamped(&r)), (200, 0), "{mw} at +{at}: {r:#?}");
    }
    // One interval after the login: the stamp moves, once, on a 200; the lifetime stays.
    let r = xhr(&mut b, &clock, "lax", 15).await;
    assert_eq!(r.status, 200);
    assert!(stamped(&r) > 0, "{r:#?}");
    let s1 = session_of(&s, &b);
    assert_eq!(s1.active, Some(clock.base() + 15));
    assert_eq!(
        (s1.iat, s1.exp, s1.sid.clone()),
        (login.iat, login.exp, login.sid.clone())
    );
    for at in [16, 29] {
        let r = xhr(&mut b, &clock, "default", at).await;
        assert_eq!((r.status, stamped(&r)), (200, 0), "+{at}");
    }
    // Used every so often, the session outlives the timeout by far.
    for at in [80, 150, 220, 290] {
        let r = xhr(&mut b, &clock, "default", at).await;
        assert_eq!(r.status, 200, "+{at}");
        assert!(stamped(&r) > 0, "+{at}");
        assert_eq!(session_of(&s, &b).active, Some(clock.base() + at));
    }
    // Idle: alive up to timeout + interval after the stamp, then ended (tokens still good for
    // an hour), for every member of the scope; the stale cookies are cleared.
    let r = xhr(&mut b, &clock, "lax", 290 + 74).await;
    assert_eq!(r.status, 200, "alive at stamp + 74 s");
    let kept = b.cookie_string(APP_HOST);
    let r = xhr(&mut b, &clock, "lax", 290 + 74 + 75).await;
    assert_eq!(r.status, 401, "{r:#?}");
    assert!(clears(&r), "{r:#?}");
    let r = with_cookie(&s, "default", &kept, true).await;
    assert_eq!(r.status(), 302, "a navigation goes to the login");
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(issuer),
        "{r:#?}"
    );
    // A fresh login works again.
    let mut b = Browser::new(&s, "default");
    assert_eq!(b.login(HOME, "alice").await.status, 302);
    assert_eq!(b.app(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn sessions_sealed_without_a_stamp_count_from_their_iat() {
    let issuer = shared_op();
    let clock = Frozen::new();
    let s = Sidecar::start_clocked(&yaml(issuer, "", "Cookie"), clock.clone()).await;
    s.wait_ready(15).await;
    let now = clock.base();
    let scope = test_codec(&s, "default");
    let cookie = |iat: u64| {
        let json = serde_json::json!({
            "sub": "legacy", "claims": {"sub": "legacy"}, "iat": iat, "exp": now + 3600,
        });
        let session: Session = serde_json::from_value(json).unwrap();
        assert_eq!(session.active, None);
        let set = scope
            .write_session(&session, &RequestCookies::default(), now)
            .unwrap();
        set.iter()
            .map(|c| c.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    // 50 s since its iat: alive, and the stamp is due (its clock ran from iat).
    let r = with_cookie(&s, "default", &cookie(now - 50), false).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains(".session.")),
        "{r:#?}"
    );
    // 10 s: alive, nothing written.
    let r = with_cookie(&s, "default", &cookie(now - 10), false).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "{r:#?}");
    // 75 s (timeout + interval): ended.
    let r = with_cookie(&s, "default", &cookie(now - 75), false).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn refreshes_keep_working_and_never_revive_an_idle_session() {
    // Tokens of 100 s, refreshed past half of it.
    let op = Op::start_with(0, 100);
    let clock = Frozen::new();
    let s = Sidecar::start_clocked(&yaml(&op.issuer, "", "Cookie"), clock.clone()).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    assert_eq!(b.login(HOME, "alice").await.status, 302);
    let login = session_of(&s, &b);
    let r = xhr(&mut b, &clock, "default", 30).await;
    assert_eq!((r.status, stamped(&r) > 0), (200, true));
    // Past half the token lifetime: refreshed (new iat, new tokens), and the refresh is the
    // activity (no second write).
    let r = xhr(&mut b, &clock, "default", 60).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(stamped(&r) > 0);
    let refreshed = session_of(&s, &b);
    assert_eq!(refreshed.iat, clock.base() + 60);
    assert!(refreshed.exp > login.exp);
    assert_ne!(refreshed.refresh_token, login.refresh_token);
    assert_eq!(
        refreshed.active,
        Some(clock.base() + 30),
        "carried, older than iat"
    );
    let r = xhr(&mut b, &clock, "default", 70).await;
    assert_eq!((r.status, stamped(&r)), (200, 0));
    // Idle past timeout + interval, and due for a refresh: ended, not refreshed (no new
    // session cookie, only removals).
    let r = xhr(&mut b, &clock, "default", 60 + 75).await;
    assert_eq!(r.status, 401, "{r:#?}");
    assert_eq!(stamped(&r), 0, "{r:#?}");
    assert!(clears(&r));
}

/// The raw value of the one session record in `redis` (sealed under a fresh nonce on every
/// write, so a changed value means a write).
fn record(redis: &RedisServer) -> String {
    let keys = redis.cli(&["KEYS", "t:session:*"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis.cli(&["GET", keys[0]])
}

/// Record writes: plain SETs plus conditional rewrites (EVAL; Redis also counts the SET a script
/// runs, so each EVAL that rewrote counts twice here, once when it found the record changed).
fn writes(redis: &RedisServer) -> u64 {
    redis.calls("set") + redis.calls("eval") + redis.calls("evalsha")
}

#[tokio::test]
async fn redis_mode_stamps_at_most_once_per_interval_and_replicas_agree() {
    let redis = RedisServer::start();
    let issuer = shared_op();
    let clock = Frozen::new();
    let root = format!("redis:\n{}\n  keyPrefix: \"t:\"", redis.block());
    let cfg = yaml(issuer, &root, "Redis");
    let a = Sidecar::start_clocked(&cfg, clock.clone()).await;
    let b = Sidecar::start_clocked(&cfg, clock.clone()).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;

    let mut browser = Browser::new(&a, "default");
    assert_eq!(browser.login(HOME, "alice").await.status, 302);
    let ticket = browser.cookies(APP_HOST)[TICKET].clone();
    let first = record(&redis);
    let w0 = writes(&redis);

    // Both replicas, within the interval: authorized, no Redis write, no cookie.
    for (replica, at) in [(&a, 3), (&b, 5), (&a, 10), (&b, 14)] {
        browser.switch_to(replica.addr);
        let r = xhr(&mut browser, &clock, "default", at).await;
        assert_eq!(r.status, 200, "+{at}: {r:#?}");
        assert!(r.all("set-cookie").is_empty(), "+{at}: {r:#?}");
    }
    assert_eq!((record(&redis), writes(&redis)), (first.clone(), w0));

    // B stamps the record once (one conditional write); the ticket does not change.
    browser.switch_to(b.addr);
    let r = xhr(&mut browser, &clock, "lax", 20).await;
    assert_eq!(r.status, 200);
    assert!(r.all("set-cookie").is_empty(), "{r:#?}");
    let stamped_value = record(&redis);
    assert_ne!(stamped_value, first);
    assert_eq!(writes(&redis), w0 + 2, "one EVAL that ran its SET");
    assert_eq!(browser.cookies(APP_HOST)[TICKET], ticket);
    // A (which remembered the unstamped session) forgot it: within the interval of B's stamp
    // it writes nothing either.
    for (replica, at) in [(&a, 21), (&b, 30), (&a, 34)] {
        browser.switch_to(replica.addr);
        let r = xhr(&mut browser, &clock, "default", at).await;
        assert_eq!(r.status, 200, "+{at}");
    }
    assert_eq!((record(&redis), writes(&redis)), (stamped_value, w0 + 2));

    // A sees B's stamp: alive at login + 90 (idle by the login's iat, not by the stamp).
    browser.switch_to(a.addr);
    let r = xhr(&mut browser, &clock, "default", 90).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(writes(&redis), w0 + 4, "A stamped it at +90");
    // Then idle: both replicas refuse it, and clear the ticket cookie.
    let cookie = format!("{TICKET}={ticket}");
    clock.at(90 + 75);
    for replica in [&b, &a] {
        let r = with_cookie(replica, "default", &cookie, false).await;
        assert_eq!(r.status(), 401);
        assert!(
            r.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with(TICKET)),
            "{r:#?}"
        );
    }
    assert_eq!(writes(&redis), w0 + 4, "an idle session is not stamped");
}

#[tokio::test]
async fn a_stamp_never_revives_a_session_logged_out_in_between() {
    let redis = RedisServer::start();
    let issuer = shared_op();
    let clock = Frozen::new();
    let root = format!("redis:\n{}\n  keyPrefix: \"t:\"", redis.block());
    let cfg = yaml(issuer, &root, "Redis");
    let a = Sidecar::start_clocked(&cfg, clock.clone()).await;
    a.wait_ready(15).await;
    let mut browser = Browser::new(&a, "default");
    assert_eq!(browser.login(HOME, "alice").await.status, 302);
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    assert_eq!(
        with_cookie(&a, "default", &cookie, false).await.status(),
        200
    );
    // The record is deleted after the replica remembered it (a logout elsewhere whose
    // invalidation has not arrived yet): the request is decided on the remembered copy, as any
    // request racing a logout, but the stamp due at +20 is a conditional write and does not
    // bring the record back.
    let keys = redis.cli(&["KEYS", "t:session:*"]);
    let key = keys.trim().to_string();
    redis.cli(&["DEL", &key]);
    clock.at(20);
    let w = writes(&redis);
    let r = with_cookie(&a, "default", &cookie, false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(redis.cli(&["KEYS", "t:session:*"]).trim(), "");
    assert_eq!(writes(&redis), w, "nothing written");
    // The invalidation arrives: anonymous.
    let id = key.strip_prefix("t:session:").unwrap();
    redis.cli(&["PUBLISH", "t:invalidate", id]);
    let mut status = 200;
    for _ in 0..50 {
        status = with_cookie(&a, "default", &cookie, false)
            .await
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401);
}
