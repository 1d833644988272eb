//! `SessionStorageType: Redis` against a real `redis-server` (standalone and a three-master
//! cluster) and the real OP, with two sidecar replicas (two `App`s, each with its own Redis
//! connection, memory and subscription).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::{
    RedisCluster, RedisSentinel, RedisServer, Seen, TICKET, dump, end_at_op, login, logout_relay,
    with_cookie, yaml,
};
use common::*;
use traefik_oidc_sidecar::session::EndBy;

const HOME: &str = "http://app.test/";

#[tokio::test]
async fn sessions_are_shared_by_replicas_and_logout_ends_them_everywhere() {
    let redis = RedisServer::start();
    let issuer = shared_op();
    let cfg = yaml(issuer, &redis.block());
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;

    // Login on replica A: one small ticket cookie.
    let (mut browser, set_cookie) = login(&a, "default", "alice").await;
    assert!(
        set_cookie.len() < 200,
        "the whole Set-Cookie is {} bytes: {set_cookie}",
        set_cookie.len()
    );
    let value = browser.cookies(APP_HOST)[TICKET].clone();
    assert_eq!(value.len(), 64);
    let r = browser.app(HOME, Kind::Xhr).await;
    assert_eq!(
        (r.status, r.header("x-forwarded-user")),
        (200, Some("alice"))
    );
    // Authorized on replica B, which never saw the login; nothing is written back.
    browser.switch_to(b.addr);
    let r = browser.app(HOME, Kind::Xhr).await;
    assert_eq!(
        (r.status, r.header("x-forwarded-user")),
        (200, Some("alice")),
        "{r:#?}"
    );
    assert!(r.all("set-cookie").is_empty(), "{r:#?}");
    assert!(
        r.header("cookie").is_none_or(|c| !c.contains(TICKET)),
        "the ticket never reaches the upstream"
    );

    // Plain authorized requests write nothing to Redis.
    let writes = redis.calls("set");
    for _ in 0..3 {
        assert_eq!(browser.app(HOME, Kind::Xhr).await.status, 200);
    }
    assert_eq!(
        redis.calls("set"),
        writes,
        "an authorized request writes nothing"
    );

    // A dump of Redis reveals no token, claim or subject.
    let d = dump(&redis);
    assert!(d.contains("t:session:"), "{d}");
    for needle in ["alice", "Alice", "example.test", "admins", "eyJ", &value] {
        assert!(!d.contains(needle), "{needle:?} in the dump:\n{d}");
    }
    // A dumped record does not open as a ticket either: its key is no ticket.
    let record = d
        .lines()
        .find_map(|l| l.strip_prefix("t:session:"))
        .unwrap()
        .to_string();
    let r = with_cookie(&a, "default", &format!("{TICKET}={record}"), false).await;
    assert_eq!(r.status(), 401);

    // Back-channel style end by subject (the store's index), then a fresh login.
    let scope = a.app.middleware("default").unwrap().scope().clone();
    let ended = scope
        .redis()
        .unwrap()
        .end_sessions(&EndBy::Sub("alice".into()))
        .await
        .unwrap();
    assert_eq!(ended, 1);
    let r = with_cookie(&b, "default", &format!("{TICKET}={value}"), false).await;
    assert_eq!(
        r.status(),
        401,
        "ended by sub: anonymous on the other replica"
    );

    let (mut browser, _) = login(&a, "default", "alice").await;
    let old = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    assert_eq!(with_cookie(&a, "default", &old, false).await.status(), 200);
    assert_eq!(with_cookie(&b, "default", &old, false).await.status(), 200);
    // Logout on B; the old cookie replayed on A is anonymous within one second.
    browser.switch_to(b.addr);
    let r = browser.app("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert!(
        r.all("set-cookie")
            .iter()
            .any(|c| c.starts_with(&format!("{TICKET}=;"))
                || c.starts_with(&format!("{TICKET}=\"\""))
                || (c.starts_with(TICKET) && c.contains("Max-Age=0"))),
        "{r:#?}"
    );
    let t0 = Instant::now();
    loop {
        let r = with_cookie(&a, "default", &old, true).await;
        if r.status() == 302 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "replica A still admits the logged-out session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = with_cookie(&a, "default", &old, false).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn forged_truncated_and_foreign_tickets_are_anonymous_without_a_redis_round_trip() {
    let mut redis = RedisServer::start();
    let issuer = shared_op();
    let s = Sidecar::start(&yaml(issuer, &redis.block())).await;
    s.wait_ready(15).await;
    let (browser, _) = login(&s, "default", "alice").await;
    let good = browser.cookies(APP_HOST)[TICKET].clone();
    let (other, _) = login(&s, "other", "bob").await;
    let foreign = other.cookies(APP_HOST)["Other.ticket"].clone();
    assert_eq!(
        with_cookie(&s, "other", &format!("Other.ticket={foreign}"), false)
            .await
            .status(),
        200
    );
    let mut forged = good.clone().into_bytes();
    forged[10] = if forged[10] == b'x' { b'y' } else { b'x' };
    let forged = String::from_utf8(forged).unwrap();
    let bad = [
        forged,
        good[..40].to_string(),
        format!("{good}AAAA"),
        foreign,
        String::new(),
    ];
    for v in &bad {
        let r = with_cookie(&s, "default", &format!("{TICKET}={v}"), false).await;
        assert_eq!(r.status(), 401, "{v}");
        let r = with_cookie(&s, "default", &format!("{TICKET}={v}"), true).await;
        assert_eq!(r.status(), 302, "{v}: a navigation goes to login");
    }
    // They are refused before any round trip: Redis saw no GET for any of them.
    let before = redis.calls("get");
    for v in &bad {
        let r = with_cookie(&s, "default", &format!("{TICKET}={v}"), false).await;
        assert_eq!(r.status(), 401, "{v}");
    }
    assert_eq!(
        redis.calls("get"),
        before,
        "no Redis round trip for a bad ticket"
    );
    // With Redis gone, every Redis-mode request is a 503, a bad ticket or none at all: a login
    // could not be completed either.
    redis.stop();
    let t0 = Instant::now();
    while with_cookie(&s, "default", "", true).await.status() != 503 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "still redirecting to login"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for v in &bad {
        let r = with_cookie(&s, "default", &format!("{TICKET}={v}"), true).await;
        assert_eq!(r.status(), 503, "{v}");
    }
}

#[tokio::test]
async fn redis_down_is_503_then_service_resumes_with_persisted_sessions() {
    let mut redis = RedisServer::start();
    let issuer = shared_op();
    let s = Sidecar::start(&yaml(issuer, &redis.block())).await;
    s.wait_ready(15).await;
    let (_, _) = login(&s, "default", "alice").await;
    let (browser, _) = login(&s, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    let mut cookie_mode = Browser::new(&s, "cookie");
    assert_eq!(cookie_mode.login(HOME, "bob").await.status, 302);
    let cookie_mode = cookie_mode.cookie_string(APP_HOST);
    assert_eq!(
        with_cookie(&s, "default", &cookie, false).await.status(),
        200
    );

    redis.stop();
    let http = reqwest::Client::new();
    let ready = format!("http://{}/readyz", s.addr);
    let t0 = Instant::now();
    loop {
        let r = http.get(&ready).send().await.unwrap();
        if r.status() == 503 {
            let why = r.text().await.unwrap();
            assert!(why.contains("redis"), "{why}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "readyz still 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for nav in [false, true] {
        let r = with_cookie(&s, "default", &cookie, nav).await;
        assert_eq!(r.status(), 503, "never a redirect, never a 200 (nav {nav})");
        if !nav {
            assert_eq!(
                r.headers()["content-type"].to_str().unwrap(),
                "application/problem+json"
            );
        }
    }
    // Cookie-mode middlewares do not depend on Redis.
    assert_eq!(
        with_cookie(&s, "cookie", &cookie_mode, false)
            .await
            .status(),
        200
    );

    // Back with its append-only file: the session is still valid, without a sidecar restart.
    redis.restart();
    let t0 = Instant::now();
    loop {
        let st = with_cookie(&s, "default", &cookie, false).await.status();
        if st == 200 {
            break;
        }
        assert_eq!(st, 503);
        assert!(t0.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.wait_ready(5).await;
}

#[tokio::test]
async fn concurrent_refreshes_on_two_replicas_redeem_the_refresh_token_once() {
    let redis = RedisServer::start();
    let op = Op::start_with(0, 6);
    let cfg = yaml(&op.issuer, &redis.block());
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;
    let stats = || async {
        let v: serde_json::Value = reqwest::get(format!("{}/__test/stats", op.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["refreshGrants"].as_u64().unwrap(),
            v["refreshErrors"].as_u64().unwrap(),
        )
    };
    let (browser, _) = login(&a, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    // Both replicas remember the fresh session.
    assert_eq!(
        with_cookie(&a, "default", &cookie, false).await.status(),
        200
    );
    assert_eq!(
        with_cookie(&b, "default", &cookie, false).await.status(),
        200
    );
    assert_eq!(stats().await, (0, 0));

    for round in 1..=2u64 {
        // Past half of the 6 s lifetime: 20 parallel requests, spread over both replicas.
        tokio::time::sleep(Duration::from_millis(4200)).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (addr, cookie) = (if i % 2 == 0 { a.addr } else { b.addr }, cookie.clone());
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .get(format!("http://{addr}/auth/default"))
                    .header("X-Forwarded-Method", "GET")
                    .header("X-Forwarded-Proto", "http")
                    .header("X-Forwarded-Host", APP_HOST)
                    .header("X-Forwarded-Uri", "/api")
                    .header("Accept", "application/json")
                    .header("Cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                (
                    r.status().as_u16(),
                    r.headers().get_all("set-cookie").iter().count(),
                )
            }));
        }
        for t in tasks {
            // The ticket does not change: the record is rewritten under it.
            assert_eq!(t.await.unwrap(), (200, 0));
        }
        assert_eq!(
            stats().await,
            (round, 0),
            "one refresh at the OP, round {round}"
        );
        // Both replicas see the refreshed session (no second refresh).
        assert_eq!(
            with_cookie(&a, "default", &cookie, false).await.status(),
            200
        );
        assert_eq!(
            with_cookie(&b, "default", &cookie, false).await.status(),
            200
        );
        assert_eq!(stats().await, (round, 0));
    }
}

#[tokio::test]
async fn a_redis_cluster_shares_sessions_between_replicas() {
    let cluster = RedisCluster::start();
    let issuer = shared_op();
    let cfg = yaml(issuer, &cluster.block());
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;
    let mut cookies = Vec::new();
    for user in ["alice", "bob", "demo"] {
        let (browser, _) = login(&a, "default", user).await;
        cookies.push(format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]));
    }
    for c in &cookies {
        assert_eq!(with_cookie(&b, "default", c, false).await.status(), 200);
    }
    let d = cluster.dump();
    assert!(!d.contains("alice") && !d.contains("eyJ"), "{d}");
    // Each session is one record, on whichever master owns its hash slot.
    let records: usize = cluster
        .nodes
        .iter()
        .map(|n| {
            n.cli(&["--scan", "--pattern", "t:session:*"])
                .lines()
                .count()
        })
        .sum();
    assert_eq!(records, 3);

    // End bob's sessions through replica B's scope; both replicas see it.
    let scope = b.app.middleware("default").unwrap().scope().clone();
    assert_eq!(
        scope
            .redis()
            .unwrap()
            .end_sessions(&EndBy::Sub("bob".into()))
            .await
            .unwrap(),
        1
    );
    let t0 = Instant::now();
    while with_cookie(&a, "default", &cookies[1], false)
        .await
        .status()
        != 401
    {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "replica A still admits bob"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        with_cookie(&b, "default", &cookies[1], false)
            .await
            .status(),
        401
    );
    assert_eq!(
        with_cookie(&a, "default", &cookies[0], false)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn sentinel_mode_finds_the_master_and_shares_sessions() {
    let master = RedisServer::start();
    let sentinel = RedisSentinel::start(&master);
    let issuer = shared_op();
    let cfg = yaml(
        issuer,
        &format!(
            "  sentinel:\n    masterName: mymaster\n    urls: [\"{}\"]",
            sentinel.url()
        ),
    );
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;
    let (mut browser, _) = login(&a, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    assert_eq!(
        with_cookie(&b, "default", &cookie, false).await.status(),
        200
    );
    assert!(
        dump(&master).contains("t:session:"),
        "the record is on the master"
    );
    browser.switch_to(b.addr);
    assert_eq!(
        browser
            .app("http://app.test/logout", Kind::Navigate)
            .await
            .status,
        302
    );
    let t0 = Instant::now();
    while with_cookie(&a, "default", &cookie, false).await.status() != 401 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "replica A still admits it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_back_channel_logout_ends_the_redis_session_on_every_replica_once() {
    let redis = RedisServer::start();
    let target = Arc::new(Mutex::new(String::new()));
    let seen: Seen = Arc::default();
    let relay = logout_relay(target.clone(), seen.clone()).await;
    let op = Op::start_env(0, 3600, &[("OP_BACKCHANNEL_LOGOUT_URI", &relay)]);
    let cfg = yaml(&op.issuer, &redis.block());
    let a = Sidecar::start(&cfg).await;
    let b = Sidecar::start(&cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;
    // The IdP reaches replica A's direct route.
    *target.lock().unwrap() = format!("http://{}/backchannel-logout/default", a.addr);

    let (mut browser, _) = login(&a, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    let (bystander, _) = login(&b, "default", "bob").await;
    let other = format!("{TICKET}={}", bystander.cookies(APP_HOST)[TICKET]);
    assert_eq!(
        with_cookie(&b, "default", &cookie, false).await.status(),
        200
    );

    // The user ends the session at the OP itself: the OP posts the logout token to replica A.
    let body = end_at_op(&mut browser, &op.issuer, &seen).await;

    // Both replicas refuse the session (B within one second); bob's session is untouched.
    let t0 = Instant::now();
    while with_cookie(&b, "default", &cookie, false).await.status() != 401 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "replica B still admits it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        with_cookie(&a, "default", &cookie, false).await.status(),
        401
    );
    assert_eq!(
        with_cookie(&a, "default", &other, false).await.status(),
        200
    );
    assert!(!dump(&redis).contains("alice"));

    // The same token replayed on replica B (its jti is in Redis): 400, and nothing is deleted.
    let (fresh, _) = login(&a, "default", "alice").await;
    let fresh = format!("{TICKET}={}", fresh.cookies(APP_HOST)[TICKET]);
    let r = reqwest::Client::new()
        .post(format!("http://{}/backchannel-logout/default", b.addr))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        with_cookie(&b, "default", &fresh, false).await.status(),
        200
    );
}
