//! A refresh racing a logout (issue 18, item 5), against the real OP, a real `redis-server` and
//! a real Redis Cluster.
//!
//! The interleaving is made deterministic by a gate: the OP's issuer is a small HTTP proxy in
//! front of it (`OP_ISSUER`), which passes everything on and, while closed, holds back the
//! answer to a `refresh_token` grant after the OP has produced it. The test waits until the
//! sidecar's refresh is held there, ends the session (the front-channel logout route, or a real
//! logout token the OP posts when the user ends the session at the OP), then lets the token
//! answer through. The session must stay ended: no 2xx with the user's identity, no record in
//! Redis, the cookie anonymous afterwards. And a refresh that completes normally must leave the
//! session findable by a later back-channel logout (its `sid`/`sub` index rewritten with it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use common::redis::{
    RedisCluster, RedisServer, Seen, TICKET, end_at_op, login, logout_relay, with_cookie, yaml,
};
use common::*;
use tokio::sync::{mpsc, oneshot};

const HOME: &str = "http://app.test/";
/// Token lifetime at the OP; with `TokenRenewalThreshold: 0.5` (`yaml`) a session is due for a refresh
/// four whole seconds after it was made (times are whole seconds at the sidecar), before it
/// expires.
const TTL: u64 = 6;
const DUE_AFTER: Duration = Duration::from_millis(4200);

/// What the proxy shares with its handler.
struct Upstream {
    /// The OP's own address.
    url: String,
    http: reqwest::Client,
    /// Closed: `refresh_token` grant answers are held.
    closed: AtomicBool,
    /// One sender per held answer; sending on it lets the answer through.
    held: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// The real OP behind the gate; its issuer is the proxy.
struct GatedOp {
    op: Op,
    upstream: Arc<Upstream>,
    held: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
}

impl GatedOp {
    async fn start(env: &[(&str, &str)]) -> GatedOp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let mut env = env.to_vec();
        env.push(("OP_ISSUER", &issuer));
        let op = Op::start_env(0, TTL, &env);
        assert_eq!(op.issuer, issuer);
        let (tx, held) = mpsc::unbounded_channel();
        let upstream = Arc::new(Upstream {
            url: op.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            closed: AtomicBool::new(false),
            held: tx,
        });
        let up = upstream.clone();
        let app = axum::Router::new().fallback(move |req: Request| relay(up.clone(), req));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GatedOp { op, upstream, held }
    }

    fn close(&self) {
        self.upstream.closed.store(true, Ordering::SeqCst);
    }

    /// Waits until a refresh answer is held; returns what lets it through.
    async fn next_held(&mut self) -> oneshot::Sender<()> {
        tokio::time::timeout(Duration::from_secs(10), self.held.recv())
            .await
            .expect("no refresh reached the OP")
            .unwrap()
    }

    async fn refresh_grants(&self) -> u64 {
        let v: serde_json::Value = reqwest::get(format!("{}/__test/stats", self.op.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["refreshErrors"], 0, "{v}");
        v["refreshGrants"].as_u64().unwrap()
    }
}

/// Connection-level headers are the proxy's own, never passed on.
fn hop(name: &axum::http::HeaderName) -> bool {
    [
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
    ]
    .contains(&name.as_str())
}

async fn relay(up: Arc<Upstream>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut fwd = up
        .http
        .request(parts.method.clone(), format!("{}{path}", up.url))
        .body(body.clone());
    for (n, v) in parts.headers.iter().filter(|(n, _)| !hop(n)) {
        fwd = fwd.header(n, v);
    }
    let answer = fwd.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    let refresh = parts.uri.path() == "/token"
        && String::from_utf8_lossy(&body).contains("grant_type=refresh_token");
    if refresh && up.closed.load(Ordering::SeqCst) {
        // The OP has redeemed the refresh token; its answer waits for the test.
        let (go, wait) = oneshot::channel();
        up.held.send(go).unwrap();
        let _ = wait.await;
    }
    let mut r = Response::builder().status(status);
    for (n, v) in headers.iter().filter(|(n, _)| !hop(n)) {
        r = r.header(n, v);
    }
    r.body(Body::from(bytes)).unwrap()
}

/// The gated OP (posting its logout tokens to the sidecar's back-channel route of `mw`) and a
/// sidecar on the Redis deployment `redis` (the `redis:` block's body); what the relay saw.
async fn rig(redis: &str, mw: &str) -> (GatedOp, Sidecar, Seen) {
    let target = Arc::new(Mutex::new(String::new()));
    let seen: Seen = Arc::default();
    let bcl = logout_relay(target.clone(), seen.clone()).await;
    let op = GatedOp::start(&[("OP_BACKCHANNEL_LOGOUT_URI", &bcl)]).await;
    let s = Sidecar::start(&yaml(&op.op.issuer, redis)).await;
    s.wait_ready(15).await;
    *target.lock().unwrap() = format!("http://{}/backchannel-logout/{mw}", s.addr);
    (op, s, seen)
}

/// Every key of the Redis `r` whose name starts with `prefix`.
fn keys(r: &RedisServer, prefix: &str) -> Vec<String> {
    r.cli(&["--scan", "--pattern", &format!("{prefix}*")])
        .lines()
        .map(str::to_string)
        .collect()
}

fn expire_time(r: &RedisServer, key: &str) -> i64 {
    r.cli(&["EXPIRETIME", key]).trim().parse().unwrap()
}

/// How the session is ended while its refresh is held.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `GET /logout` through the middleware (RP-Initiated Logout).
    FrontChannel,
    /// The user ends the session at the OP, which posts a logout token to the sidecar.
    BackChannel,
}

/// The race on the Redis deployment `redis` (see [`rig`]); `dump` lists every key it holds.
async fn redis_race(redis: &str, ending: Ending, dump: impl Fn() -> String) {
    let (mut op, s, seen) = rig(redis, "default").await;

    let (mut browser, _) = login(&s, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);
    assert_eq!(
        with_cookie(&s, "default", &cookie, false).await.status(),
        200
    );
    assert!(dump().contains("t:session:"));

    tokio::time::sleep(DUE_AFTER).await;
    op.close();
    let issuer = op.op.issuer.clone();
    let (r, ()) = tokio::join!(with_cookie(&s, "default", &cookie, false), async {
        let release = op.next_held().await;
        match ending {
            Ending::FrontChannel => {
                let r = browser.app("http://app.test/logout", Kind::Navigate).await;
                assert_eq!(r.status, 302, "{r:#?}");
            }
            Ending::BackChannel => {
                end_at_op(&mut browser, &issuer, &seen).await;
            }
        }
        assert!(
            !dump().contains("t:session:"),
            "the logout deleted the record"
        );
        release.send(()).unwrap();
    });
    assert_eq!(
        op.refresh_grants().await,
        1,
        "the refresh token was redeemed"
    );
    let user = r.headers().get("x-forwarded-user").cloned();
    assert_eq!(
        (r.status().as_u16(), user),
        (401, None),
        "{ending:?}: the refresh that lost the race answers as the ended session: {r:#?}"
    );
    let d = dump();
    assert!(!d.contains("t:session:"), "the record stays deleted:\n{d}");
    let r = with_cookie(&s, "default", &cookie, false).await;
    assert_eq!(r.status(), 401, "the cookie is anonymous afterwards");
    let r = with_cookie(&s, "default", &cookie, true).await;
    assert_eq!(r.status(), 302, "a navigation goes to login");
    assert_eq!(op.refresh_grants().await, 1, "no second refresh");
}

#[tokio::test]
async fn a_logout_during_a_refresh_stays_done() {
    let redis = RedisServer::start();
    redis_race(&redis.block(), Ending::FrontChannel, || {
        common::redis::dump(&redis)
    })
    .await;
}

#[tokio::test]
async fn a_back_channel_logout_during_a_refresh_stays_done() {
    let redis = RedisServer::start();
    redis_race(&redis.block(), Ending::BackChannel, || {
        common::redis::dump(&redis)
    })
    .await;
}

#[tokio::test]
async fn a_logout_during_a_refresh_stays_done_on_a_cluster() {
    let cluster = RedisCluster::start();
    redis_race(&cluster.block(), Ending::FrontChannel, || cluster.dump()).await;
}

#[tokio::test]
async fn a_refreshed_session_is_still_ended_by_a_back_channel_logout() {
    let redis = RedisServer::start();
    let (op, s, seen) = rig(&redis.block(), "default").await;
    let (mut browser, _) = login(&s, "default", "alice").await;
    let cookie = format!("{TICKET}={}", browser.cookies(APP_HOST)[TICKET]);

    tokio::time::sleep(DUE_AFTER).await;
    let r = with_cookie(&s, "default", &cookie, false).await;
    assert_eq!(r.status(), 200);
    assert_eq!(op.refresh_grants().await, 1, "refreshed");
    // The refreshed record outlives the login's expiry; its index entries must too, or a
    // logout after the login's expiry would not find it.
    let records = keys(&redis, "t:session:");
    let [record] = records.as_slice() else {
        panic!("one record: {}", common::redis::dump(&redis))
    };
    let record_until = expire_time(&redis, record);
    for kind in ["t:sid:", "t:sub:"] {
        let index = keys(&redis, kind);
        let [index] = index.as_slice() else {
            panic!("one {kind} index: {}", common::redis::dump(&redis))
        };
        assert!(
            expire_time(&redis, index) >= record_until,
            "{kind} index expires before the refreshed record"
        );
    }

    end_at_op(&mut browser, &op.op.issuer, &seen).await;
    assert!(
        keys(&redis, "t:session:").is_empty(),
        "the record is deleted"
    );
    let r = with_cookie(&s, "default", &cookie, false).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn cookie_mode_a_back_channel_logout_during_a_refresh_stays_done() {
    let redis = RedisServer::start();
    let (mut op, s, seen) = rig(&redis.block(), "cookie").await;
    let mut browser = Browser::new(&s, "cookie");
    assert_eq!(browser.login(HOME, "alice").await.status, 302);
    let cookie = browser.cookie_string(APP_HOST);
    assert_eq!(
        with_cookie(&s, "cookie", &cookie, false).await.status(),
        200
    );

    tokio::time::sleep(DUE_AFTER).await;
    op.close();
    let issuer = op.op.issuer.clone();
    let (r, ()) = tokio::join!(with_cookie(&s, "cookie", &cookie, false), async {
        let release = op.next_held().await;
        end_at_op(&mut browser, &issuer, &seen).await;
        release.send(()).unwrap();
    });
    assert_eq!(
        op.refresh_grants().await,
        1,
        "the refresh token was redeemed"
    );
    let sessions: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|c| c.contains(".session.") && !c.contains("Max-Age=0"))
        .collect();
    assert_eq!(
        (r.status().as_u16(), sessions),
        (401, vec![]),
        "no identity and no refreshed cookies for an ended session: {r:#?}"
    );
    let r = with_cookie(&s, "cookie", &cookie, false).await;
    assert_eq!(r.status(), 401, "the old cookie is refused afterwards");
}
