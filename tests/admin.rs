//! The operators' revocation API (`admin:`): its own listener, the bearer check, body limits
//! and problem+json errors; listing and revoking after real logins against the real OP, in
//! Redis mode (a real `redis-server`, two replicas) and cookie mode; and the binary's wiring.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisServer, TICKET, dump, login, with_cookie, yaml};
use common::*;
use serde_json::{Value, json};
use traefik_oidc_sidecar::config::Limits;
use traefik_oidc_sidecar::session::{RequestCookies, Secret};

const HOME: &str = "http://app.test/";
const TOKEN: &str = "admin-token-for-tests-0123456789";

/// One OP for the tests that need `sid`: it puts `sid` in ID tokens only for a client with a
/// back-channel logout URI (Back-Channel Logout 1.0 §2.4), so one is registered (nothing listens
/// there: no test here ends a session at the OP).
fn sid_op() -> &'static str {
    static OP: std::sync::OnceLock<(String, std::sync::Mutex<Op>)> = std::sync::OnceLock::new();
    let (issuer, _) = OP.get_or_init(|| {
        let op = Op::start_env(
            0,
            3600,
            &[("OP_BACKCHANNEL_LOGOUT_URI", "http://127.0.0.1:9/bcl")],
        );
        (op.issuer.clone(), std::sync::Mutex::new(op))
    });
    issuer
}

/// The admin listener of a sidecar, on a random loopback port; stops when dropped.
struct Admin {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn admin_on(s: &Sidecar) -> Admin {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", socket.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(traefik_oidc_sidecar::serve_admin(
        s.app.clone(),
        socket,
        Secret::new(TOKEN),
        Limits::default(),
        async {
            let _ = rx.await;
        },
    ));
    Admin { base, _stop: tx }
}

/// `GET <base>/admin/sessions?sub=<sub>` with the token.
async fn get_sessions(base: &str, sub: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/admin/sessions"))
        .query(&[("sub", sub)])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

/// `POST <base>/admin/revoke` with the token and the JSON `body`.
async fn post_revoke(base: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/admin/revoke"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

impl Admin {
    async fn list(&self, sub: &str) -> (u16, Value) {
        let r = get_sessions(&self.base, sub).await;
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn revoke(&self, body: Value) -> (u16, Value) {
        let r = post_revoke(&self.base, &body).await;
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// Asserts an RFC 9457 problem document with `status`.
async fn problem(r: reqwest::Response, status: u16) -> reqwest::header::HeaderMap {
    assert_eq!(r.status().as_u16(), status, "{r:?}");
    let headers = r.headers().clone();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status, "{v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    headers
}

/// The sessions a listing shows for the scope whose first member is `member`.
fn sessions_of<'a>(listing: &'a Value, member: &str) -> &'a Vec<Value> {
    listing["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["members"][0] == member)
        .unwrap_or_else(|| panic!("no scope {member}: {listing}"))["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{member} not listable: {listing}"))
}

/// Waits (at most one second, the promise of back-channel logout) until `s` refuses `cookie`.
async fn refused_within_a_second(s: &Sidecar, mw: &str, cookie: &str) {
    let t0 = Instant::now();
    while with_cookie(s, mw, cookie, false).await.status() != 401 {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "still admitted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` to `/admin/revoke` with `Transfer-Encoding: chunked` (no `Content-Length`),
/// 1 KiB a chunk; returns the answer's status.
async fn chunked_status(base: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /admin/revoke HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.as_bytes().chunks(1024) {
        // The server may answer and close before the whole body is sent.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("application/problem+json"), "{text}");
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_token_body_limit_and_routes_fail_closed_with_problem_documents() {
    let s = Sidecar::start(&config_yaml(shared_op(), "")).await;
    let admin = admin_on(&s).await;
    let c = reqwest::Client::new();
    let sessions = format!("{}/admin/sessions?sub=alice", admin.base);
    let revoke = format!("{}/admin/revoke", admin.base);

    // No token: 401 with a Bearer challenge and no error code (RFC 6750 §3).
    let h = problem(c.get(&sessions).send().await.unwrap(), 401).await;
    let challenge = h.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(!challenge.contains("error="), "{challenge}");
    // Wrong tokens (same length, a prefix, longer, another scheme): 401 invalid_token.
    let same_length = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    for auth in [
        format!("Bearer {same_length}"),
        format!("Bearer {}", &TOKEN[..16]),
        format!("Bearer {TOKEN}0"),
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
    ] {
        let r = c
            .get(&sessions)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        let h = problem(r, 401).await;
        assert!(
            h.get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{auth}"
        );
    }
    // Unauthenticated requests learn nothing of the routes, nor does a revocation run.
    problem(
        c.get(format!("{}/nope", admin.base)).send().await.unwrap(),
        401,
    )
    .await;
    let r = c.post(&revoke).json(&json!({"sub": "alice"})).send().await;
    problem(r.unwrap(), 401).await;

    // The right token.
    let r = c.get(&sessions).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    // Unknown route 404, wrong method 405 (with Allow), both problem documents.
    let r = c
        .get(format!("{}/admin/nope", admin.base))
        .bearer_auth(TOKEN);
    problem(r.send().await.unwrap(), 404).await;
    let h = problem(c.get(&revoke).bearer_auth(TOKEN).send().await.unwrap(), 405).await;
    assert!(h.get("allow").is_some());
    let r = c.delete(&sessions).bearer_auth(TOKEN).send().await.unwrap();
    problem(r, 405).await;

    // Bodies over the limit: 413, by Content-Length and while streaming (chunked).
    let big = format!("{{\"sub\": \"{}\"}}", "a".repeat(16 * 1024));
    let r = c.post(&revoke).bearer_auth(TOKEN).body(big.clone()).send();
    problem(r.await.unwrap(), 413).await;
    assert_eq!(chunked_status(&admin.base, &big).await, 413);

    // Bad JSON, both identifiers, neither, an unknown member, a bad query: 400.
    for body in [
        "{\"sub\":",
        "{\"sub\":\"a\",\"sid\":\"b\"}",
        "{}",
        "{\"sub\":\"a\",\"everyone\":true}",
        "[\"alice\"]",
        "{\"sub\":\"\"}",
    ] {
        let r = c.post(&revoke).bearer_auth(TOKEN).body(body).send();
        problem(r.await.unwrap(), 400).await;
    }
    for q in ["", "?sub=a&sub=b", "?user=alice"] {
        let r = c.get(format!("{}/admin/sessions{q}", admin.base));
        problem(r.bearer_auth(TOKEN).send().await.unwrap(), 400).await;
    }

    // The auth listener serves none of it.
    let auth = format!("http://{}", s.addr);
    assert_ne!(get_sessions(&auth, "alice").await.status(), 200);
    let r = post_revoke(&auth, &json!({"sub": "alice"})).await;
    assert_ne!(r.status(), 200);
}

#[tokio::test]
async fn redis_mode_lists_and_revokes_by_sid_and_sub_on_every_replica() {
    let redis = RedisServer::start();
    let issuer = sid_op();
    // Redis scopes only (`default` and `other`): every scope can count what it ends.
    let full = yaml(issuer, &redis.block());
    let cfg = full.split("  cookie:\n").next().unwrap();
    let a = Sidecar::start(cfg).await;
    let b = Sidecar::start(cfg).await;
    a.wait_ready(15).await;
    b.wait_ready(15).await;
    let (admin_a, admin_b) = (admin_on(&a).await, admin_on(&b).await);

    let ticket = |b: &Browser, name: &str| format!("{name}={}", b.cookies(APP_HOST)[name]);
    // Alice's first login: the only session listed, so its sid is known.
    let (first, _) = login(&a, "default", "alice").await;
    let first = ticket(&first, TICKET);
    let (_, only) = admin_b.list("alice").await;
    let first_sid = sessions_of(&only, "default")[0]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    // A second login of alice (another browser, another IdP session), one in the other scope,
    // one of bob.
    let (second, _) = login(&b, "default", "alice").await;
    let (third, _) = login(&a, "other", "alice").await;
    let (bob, _) = login(&a, "default", "bob").await;
    let (second, third, bob) = (
        ticket(&second, TICKET),
        ticket(&third, "Other.ticket"),
        ticket(&bob, TICKET),
    );

    // Both replicas admit every session now (and so hold it in memory: the refusals below
    // must come from the invalidation, not from a first read of a deleted record).
    for (replica, mw, cookie) in [
        (&a, "default", &first),
        (&a, "default", &second),
        (&a, "other", &third),
        (&b, "default", &first),
        (&b, "default", &second),
        (&b, "other", &third),
    ] {
        assert_eq!(with_cookie(replica, mw, cookie, false).await.status(), 200);
    }

    // Listed from either replica: sid, login time and expiry per session, nothing secret.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, listing) = admin_b.list("alice").await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["sub"], "alice");
    assert_eq!(listing["scopes"].as_array().unwrap().len(), 2, "{listing}");
    let listed = sessions_of(&listing, "default");
    assert_eq!(listed.len(), 2, "{listing}");
    for s in listed {
        assert!(s["sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{s}");
        let created = s["created"].as_u64().unwrap();
        let expires = s["expires"].as_u64().unwrap();
        assert!(created <= now + 1 && created + 60 > now, "{s}");
        assert!(expires > now, "{s}");
        assert_eq!(
            s.as_object().unwrap().len(),
            3,
            "only sid, created, expires: {s}"
        );
    }
    assert!(listed.iter().any(|s| s["sid"] == first_sid.as_str()));
    assert_ne!(listed[0]["sid"], listed[1]["sid"]);
    assert_eq!(sessions_of(&listing, "other").len(), 1);
    let text = listing.to_string();
    for cookie in [&first, &second, &third] {
        let value = cookie.split('=').nth(1).unwrap();
        assert!(!text.contains(value), "a ticket in the listing");
    }
    assert!(!text.contains("session:"), "a record key in the listing");
    // The listing entries in Redis are sealed: no sid in clear.
    assert!(!dump(&redis).contains(&first_sid));
    let (_, nobody) = admin_a.list("nobody").await;
    assert!(sessions_of(&nobody, "default").is_empty());

    // Revoke the first login by sid on replica A: replica B, which never handled the
    // revocation, refuses it within the second; alice's other sessions stay.
    let (status, r) = admin_a.revoke(json!({ "sid": first_sid })).await;
    assert_eq!((status, &r["revoked"]), (200, &json!(1)), "{r}");
    refused_within_a_second(&b, "default", &first).await;
    assert_eq!(
        with_cookie(&a, "default", &first, false).await.status(),
        401
    );
    assert_eq!(
        with_cookie(&b, "default", &second, false).await.status(),
        200
    );
    // Revoking it again ends nothing.
    let (_, again) = admin_b.revoke(json!({ "sid": first_sid })).await;
    assert_eq!(again["revoked"], 0, "{again}");

    // Revoke by sub on replica B: every remaining alice session in every scope; bob stays.
    let (status, r) = admin_b.revoke(json!({ "sub": "alice" })).await;
    assert_eq!((status, &r["revoked"]), (200, &json!(2)), "{r}");
    assert_eq!(r["scopes"].as_array().unwrap().len(), 2, "per scope: {r}");
    refused_within_a_second(&a, "default", &second).await;
    refused_within_a_second(&a, "other", &third).await;
    refused_within_a_second(&b, "other", &third).await;
    assert_eq!(with_cookie(&a, "default", &bob, false).await.status(), 200);
    assert_eq!(with_cookie(&b, "default", &bob, false).await.status(), 200);
    let (_, after) = admin_a.list("alice").await;
    assert!(sessions_of(&after, "default").is_empty(), "{after}");
    assert!(sessions_of(&after, "other").is_empty(), "{after}");
    assert_eq!(
        sessions_of(&admin_a.list("bob").await.1, "default").len(),
        1
    );

    // A new login after the revocation works.
    let (fresh, _) = login(&b, "default", "alice").await;
    let fresh = ticket(&fresh, TICKET);
    assert_eq!(
        with_cookie(&a, "default", &fresh, false).await.status(),
        200
    );

    // Redis down: 503 problem documents, never an empty listing or a false "revoked".
    let mut redis = redis;
    redis.stop();
    problem(get_sessions(&admin_a.base, "alice").await, 503).await;
    problem(
        post_revoke(&admin_a.base, &json!({"sub": "alice"})).await,
        503,
    )
    .await;
}

#[tokio::test]
async fn cookie_mode_revokes_by_sid_and_sub_in_this_process() {
    let s = Sidecar::start(&config_yaml(sid_op(), "")).await;
    s.wait_ready(15).await;
    let admin = admin_on(&s).await;

    // Cookie mode cannot list: every scope says so.
    let (status, listing) = admin.list("alice").await;
    assert_eq!(status, 200);
    let scopes = listing["scopes"].as_array().unwrap();
    assert!(!scopes.is_empty());
    for sc in scopes {
        assert_eq!(
            (&sc["storage"], &sc["listable"]),
            (&json!("cookie"), &json!(false)),
            "{sc}"
        );
        assert!(sc["sessions"].is_null(), "{sc}");
    }

    let mut alice = Browser::new(&s, "default");
    assert_eq!(alice.login(HOME, "alice").await.status, 302);
    let mut bob = Browser::new(&s, "default");
    assert_eq!(bob.login(HOME, "bob").await.status, 302);
    assert_eq!(alice.app(HOME, Kind::Xhr).await.status, 200);
    let cookies = alice.cookie_string(APP_HOST);
    let session = test_codec(&s, "default")
        .open_session(&RequestCookies::parse([cookies.as_str()].into_iter()))
        .expect("the cookie opens");
    let sid = session.sid.clone().expect("the OP's ID token has a sid");

    // By sid: the count is unknowable (null); the session is refused from now on.
    let (status, r) = admin.revoke(json!({ "sid": sid })).await;
    assert_eq!((status, &r["revoked"]), (200, &Value::Null), "{r}");
    assert!(
        r["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["revoked"].is_null())
    );
    assert_eq!(alice.app(HOME, Kind::Xhr).await.status, 401);
    assert_eq!(bob.app(HOME, Kind::Xhr).await.status, 200);
    // A navigation goes to the login again.
    let r = alice.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");

    // A login after the revocation (a later second: the cutoff is the revocation's second) works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = Browser::new(&s, "default");
    assert_eq!(again.login(HOME, "alice").await.status, 302);
    assert_eq!(again.app(HOME, Kind::Xhr).await.status, 200);

    // By sub: every alice session of every scope, bob untouched.
    let (status, r) = admin.revoke(json!({ "sub": "alice" })).await;
    assert_eq!((status, &r["revoked"]), (200, &Value::Null), "{r}");
    assert_eq!(again.app(HOME, Kind::Xhr).await.status, 401);
    assert_eq!(bob.app(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn the_binary_serves_the_admin_api_on_its_own_loopback_listener_only() {
    let dir = std::env::temp_dir().join(format!("admin-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (listen, metrics, admin) = (free_port(), free_port(), free_port());
    let cfg = config_yaml(
        shared_op(),
        &format!(
            "listen: 127.0.0.1:{listen}\nmetricsListen: 127.0.0.1:{metrics}\nadmin:\n  listen: {admin}\n  token: ${{ADMIN_TOKEN}}\n"
        ),
    );
    let path = dir.join("sidecar.yaml");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_traefik-oidc-sidecar"))
        .arg("--config")
        .arg(&path)
        .env("ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    let c = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{admin}/admin/sessions?sub=alice");
    let mut answered = None;
    for _ in 0..200 {
        if let Ok(r) = c.get(&url).bearer_auth(TOKEN).send().await {
            answered = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, Some(200), "the admin listener answers");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    let r = c
        .post(format!("http://127.0.0.1:{admin}/admin/revoke"))
        .bearer_auth(TOKEN)
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for other in [listen, metrics] {
        let r = c
            .get(format!("http://127.0.0.1:{other}/admin/sessions?sub=alice"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 200, "port {other}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(
        log.contains("admin API: sessions revoked"),
        "the audit line: {log}"
    );
    assert!(!log.contains(TOKEN), "the token is never logged");
}

#[tokio::test]
async fn inline_blocks_scopes_are_listed_and_revoked_too() {
    let issuer = shared_op();
    let s = Sidecar::start(&format!(
        "inline:\n  allowedProviderUrls: [\"{issuer}/\"]\nmiddlewares: {{}}\n"
    ))
    .await;
    let admin = admin_on(&s).await;
    let (_, empty) = admin.list("alice").await;
    assert_eq!(empty["scopes"], json!([]), "no middlewares, no blocks yet");
    let body = serde_json::to_vec(&json!({
        "CookieNamePrefix": "Inline",
        "Provider": {"ClientId": "sidecar", "ClientSecret": "sidecar-secret", "Url": issuer},
        "Secret": SECRET,
    }))
    .unwrap();
    let (status, _) = register_block(s.addr, body).await;
    assert!((200..300).contains(&status), "registration: {status}");
    let (_, listing) = admin.list("alice").await;
    let scopes = listing["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{listing}");
    assert!(
        !scopes[0]["members"].as_array().unwrap().is_empty(),
        "{listing}"
    );
    let (status, r) = admin.revoke(json!({"sub": "alice"})).await;
    assert_eq!(status, 200);
    assert_eq!(r["scopes"].as_array().unwrap().len(), 1, "{r}");
}
