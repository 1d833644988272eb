//! Back-channel logout with logout tokens a real OP never sends: the hand-written IdP of
//! tests/hostile signs (or fails to sign) whatever the test asks for, so every check of
//! Back-Channel Logout 1.0 §2.6 is driven through the sidecar's real route. Each refused request
//! must answer 400 problem+json with `Cache-Control: no-store` and end nothing (the session
//! stays valid); one positive control per way of naming sessions shows the same request path
//! does end them. The forwardAuth door (no body) and the body checks are covered too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "hostile/fake_idp.rs"]
mod fake_idp;
#[path = "hostile/harness.rs"]
mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake_idp::*;
use harness::*;
use serde_json::{Value, json};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn yaml(issuer: &str) -> String {
    format!(
        r#"
logLevel: warn
trustedProxies: [127.0.0.0/8]
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: {CLIENT_ID}
      ClientSecret: {CLIENT_SECRET}
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.default
    BackchannelLogoutUri: /oidc/backchannel
    SessionCookie:
      Secure: false
  other:
    Provider:
      Url: {issuer}
      ClientId: {CLIENT_ID}
      ClientSecret: {CLIENT_SECRET}
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.other
    SessionCookie:
      Secure: false
"#
    )
}

struct Setup {
    idp: FakeIdp,
    sc: Running,
    logins: Arc<AtomicUsize>,
}

async fn setup() -> Setup {
    let idp = FakeIdp::start().await;
    // Every login is a new IdP session: sid-1, sid-2, …
    let logins = Arc::new(AtomicUsize::new(0));
    let n = logins.clone();
    idp.set(with_claims(move |c| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        c.insert("sid".into(), json!(format!("sid-{i}")));
    }));
    let sc = Running::start(&yaml(&idp.issuer)).await;
    sc.ready().await;
    Setup { idp, sc, logins }
}

impl Setup {
    /// A logged-in browser.
    async fn login(&self) -> Agent {
        self.login_at("default").await
    }

    /// A browser logged in through middleware `mw`.
    async fn login_at(&self, mw: &str) -> Agent {
        let mut a = Agent::new(&self.sc, mw);
        let r = a.forward(HOME, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{r:#?}");
        let cb = a.idp_authorize(&r.location()).await;
        let r = a.forward(&cb, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{r:#?}");
        assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
        a
    }

    /// POSTs `body` with `content_type` to the direct route.
    async fn post(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Resp {
        self.post_to("default", content_type, body).await
    }

    /// POSTs `body` with `content_type` to middleware `mw`'s direct route.
    async fn post_to(&self, mw: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Resp {
        let r = reqwest::Client::new()
            .post(format!("http://{}/backchannel-logout/{mw}", self.sc.addr))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        finish(r).await
    }

    async fn send(&self, token: &str) -> Resp {
        self.post(
            "application/x-www-form-urlencoded",
            format!("logout_token={}", enc(token)),
        )
        .await
    }
}

static JTI: AtomicUsize = AtomicUsize::new(0);

/// The claims of a correct logout token for `sid-1` of alice, with a fresh `jti`.
fn claims(issuer: &str) -> Value {
    let now = fake_idp::unix_now();
    json!({
        "iss": issuer,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "jti": format!("jti-{}-{}", now, JTI.fetch_add(1, Ordering::SeqCst)),
        "sid": "sid-1",
        "sub": "alice",
        "events": {EVENT: {}},
    })
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": "logout+jwt", "kid": RsaKey::idp().kid})
}

fn signed(header: &Value, claims: &Value) -> String {
    jws(header, claims, |m| RsaKey::idp().sign(m))
}

#[track_caller]
fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 400, "{what}: {r:#?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
}

#[tokio::test]
async fn forged_tokens_are_refused_and_end_nothing() {
    let s = setup().await;
    let mut a = s.login().await;
    let iss = s.idp.issuer.clone();
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims(&iss);
        f(c.as_object_mut().unwrap());
        c
    };
    let mut cases: Vec<(&str, String)> = vec![
        (
            "signed by another key under the IdP's kid",
            jws(&header(), &claims(&iss), |m| RsaKey::other().sign(m)),
        ),
        ("signature of another token", {
            let good = signed(&header(), &claims(&iss));
            let other = signed(
                &header(),
                &edit(&|c| {
                    c.insert("sub".into(), json!("mallory"));
                }),
            );
            let (input, _) = other.rsplit_once('.').unwrap();
            let (_, sig) = good.rsplit_once('.').unwrap();
            format!("{input}.{sig}")
        }),
        (
            "alg none",
            jws(
                &json!({"alg": "none", "typ": "logout+jwt"}),
                &claims(&iss),
                |_| Vec::new(),
            ),
        ),
        (
            "HS256 with the client secret",
            jws(
                &json!({"alg": "HS256", "typ": "logout+jwt"}),
                &claims(&iss),
                |m| hmac_sha256(CLIENT_SECRET.as_bytes(), m),
            ),
        ),
        (
            "typ JWT (an ID token's)",
            signed(
                &json!({"alg": "RS256", "typ": "JWT", "kid": RsaKey::idp().kid}),
                &claims(&iss),
            ),
        ),
        (
            "wrong aud",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("aud".into(), json!("another-client"));
                }),
            ),
        ),
        (
            "wrong iss",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("iss".into(), json!("https://evil.test"));
                }),
            ),
        ),
        (
            "with a nonce",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("nonce".into(), json!("n-1"));
                }),
            ),
        ),
        (
            "missing events",
            signed(
                &header(),
                &edit(&|c| {
                    c.remove("events");
                }),
            ),
        ),
        (
            "events without the back-channel member",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("events".into(), json!({"http://example.test/other": {}}));
                }),
            ),
        ),
        (
            "the back-channel event is not an object",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("events".into(), json!({EVENT: true}));
                }),
            ),
        ),
        (
            "neither sid nor sub",
            signed(
                &header(),
                &edit(&|c| {
                    c.remove("sid");
                    c.remove("sub");
                }),
            ),
        ),
        (
            "missing jti",
            signed(
                &header(),
                &edit(&|c| {
                    c.remove("jti");
                }),
            ),
        ),
        (
            "missing iat",
            signed(
                &header(),
                &edit(&|c| {
                    c.remove("iat");
                }),
            ),
        ),
        (
            "iat in the future",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("iat".into(), json!(fake_idp::unix_now() + 3600));
                }),
            ),
        ),
        (
            "expired",
            signed(
                &header(),
                &edit(&|c| {
                    c.insert("exp".into(), json!(fake_idp::unix_now() - 3600));
                }),
            ),
        ),
        ("not a JWT", "not-a-jwt".into()),
        ("a JWE-shaped token", "a.b.c.d.e".into()),
    ];
    // An ID token of this very login is not a logout token either.
    cases.push((
        "an ID token",
        RsaKey::idp().rs256(&edit(&|c| {
            c.remove("events");
            c.insert("nonce".into(), json!("n"));
        })),
    ));
    for (what, token) in &cases {
        let r = s.send(token).await;
        assert_refused(&r, what);
        assert_eq!(
            a.forward(HOME, Kind::Xhr).await.status,
            200,
            "{what}: the session must survive"
        );
    }
    assert_eq!(s.idp.trap_hits(), 0);
}

#[tokio::test]
async fn bodies_that_are_not_one_capped_form_token_are_refused() {
    let s = setup().await;
    let mut a = s.login().await;
    let token = signed(&header(), &claims(&s.idp.issuer));
    let form = format!("logout_token={}", enc(&token));
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "JSON",
            "application/json",
            json!({"logout_token": token}).to_string().into(),
        ),
        ("text", "text/plain", form.clone().into()),
        (
            "multipart",
            "multipart/form-data; boundary=x",
            form.clone().into(),
        ),
        (
            "no token",
            "application/x-www-form-urlencoded",
            b"token=x".to_vec(),
        ),
        (
            "two tokens",
            "application/x-www-form-urlencoded",
            format!("{form}&{form}").into(),
        ),
        (
            "oversized (the valid token padded past 64 KiB)",
            "application/x-www-form-urlencoded",
            format!("{form}&pad={}", "x".repeat(70 * 1024)).into(),
        ),
    ];
    for (what, ct, body) in cases {
        let r = s.post(ct, body).await;
        assert_refused(&r, what);
        assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200, "{what}");
    }
    // The token itself was never used: it still works once, and only once.
    let r = s.send(&token).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 401);
    assert_refused(&s.send(&token).await, "replay");
    // Other methods are not the route; an unknown middleware is a 404.
    let r = reqwest::Client::new()
        .get(format!("http://{}/backchannel-logout/default", s.sc.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = reqwest::Client::new()
        .post(format!("http://{}/backchannel-logout/nope", s.sc.addr))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sid_ends_one_idp_session_and_sub_ends_them_all() {
    let s = setup().await;
    let mut first = s.login().await; // sid-1
    let mut second = s.login().await; // sid-2
    assert_eq!(s.logins.load(Ordering::SeqCst), 2);

    let r = s.send(&signed(&header(), &claims(&s.idp.issuer))).await;
    assert_eq!(r.status, 200, "{r:#?}");
    let r = first.forward(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "sid-1 ended: {r:#?}");
    assert_eq!(
        second.forward(HOME, Kind::Xhr).await.status,
        200,
        "sid-2 lives"
    );

    // sub only (no sid): every session of alice made until now.
    let mut c = claims(&s.idp.issuer);
    c.as_object_mut().unwrap().remove("sid");
    let r = s.send(&signed(&header(), &c)).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(second.forward(HOME, Kind::Xhr).await.status, 401);
    // A login after the logout (next second: the cutoff has one-second resolution) works.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut third = s.login().await;
    assert_eq!(third.forward(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn a_token_signed_with_a_rotated_key_is_accepted_after_one_jwks_refetch() {
    let s = setup().await;
    let mut a = s.login().await;
    let before = s.idp.jwks_hits();
    s.idp
        .set_jwks(json!({"keys": [RsaKey::idp().jwk(), RsaKey::other().jwk()]}));
    let token = jws(
        &json!({"alg": "RS256", "typ": "logout+jwt", "kid": RsaKey::other().kid}),
        &claims(&s.idp.issuer),
        |m| RsaKey::other().sign(m),
    );
    let r = s.send(&token).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(s.idp.jwks_hits(), before + 1);
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 401);
    // Another unknown kid within the minute: no second fetch, refused.
    let token = jws(
        &json!({"alg": "RS256", "typ": "logout+jwt", "kid": "never-published"}),
        &claims(&s.idp.issuer),
        |m| RsaKey::other().sign(m),
    );
    assert_refused(&s.send(&token).await, "unknown kid");
    assert_eq!(s.idp.jwks_hits(), before + 1);
}

#[tokio::test]
async fn the_forward_auth_door_says_the_body_must_come_another_way() {
    let s = setup().await;
    let mut a = s.login().await;
    for method in ["POST", "GET"] {
        let mut h = traefik(APP, "/oidc/backchannel", Kind::Xhr);
        h.retain(|(k, _)| k != "X-Forwarded-Method");
        h.push(("X-Forwarded-Method".into(), method.as_bytes().to_vec()));
        h.push((
            "Content-Type".into(),
            b"application/x-www-form-urlencoded".to_vec(),
        ));
        let r = a.raw(&h).await;
        assert_eq!(r.status, 400, "{method}: {r:#?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("x-oidc-sidecar-forward-body"), Some("1"));
        assert!(r.body.contains("/backchannel-logout/"), "{}", r.body);
    }
    // Not a login redirect, not a bypass: and the session is untouched.
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
    // The default path is not special for a middleware that moved it.
    let r = a
        .forward("http://app.test/backchannel-logout", Kind::Xhr)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_logout_reaches_every_scope_of_the_client() {
    let s = setup().await;
    let mut here = s.login().await; // sid-1, scope "default"
    let mut there = s.login_at("other").await; // sid-2, another scope of the same client
    let mut c = claims(&s.idp.issuer);
    c["sid"] = json!("sid-2");
    // The IdP knows one back-channel URI for the client: the default middleware's.
    let token = signed(&header(), &c);
    let r = s.send(&token).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(there.forward(HOME, Kind::Xhr).await.status, 401);
    assert_eq!(here.forward(HOME, Kind::Xhr).await.status, 200);
    // Replayed through the other middleware's route: still a replay (one memory per client).
    let r = s
        .post_to(
            "other",
            "application/x-www-form-urlencoded",
            format!("logout_token={}", enc(&token)),
        )
        .await;
    assert_refused(&r, "replay through another route");
}

/// POSTs `token` as the form body of `path` on the sidecar at `addr`.
async fn send_at(addr: std::net::SocketAddr, path: &str, token: &str) -> Resp {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/{path}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={}", enc(token)))
        .send()
        .await
        .unwrap();
    finish(r).await
}

#[tokio::test]
async fn a_used_token_stays_used_after_a_reload_rebuilt_the_scopes() {
    let s = setup().await;
    let token = signed(&header(), &claims(&s.idp.issuer));
    assert_eq!(s.send(&token).await.status, 200);
    // Other cookie attributes: the reload builds new scope objects for the client.
    let before = s.sc.app.middleware("default").unwrap().scope().clone();
    let changed = yaml(&s.idp.issuer).replace(
        "      Secure: false\n",
        "      Secure: false\n      SameSite: Strict\n",
    );
    common::reload(&s.sc.app, &changed).await;
    let after = s.sc.app.middleware("default").unwrap().scope().clone();
    assert!(!Arc::ptr_eq(&before, &after), "the scope was rebuilt");
    assert_refused(&s.send(&token).await, "replay after the reload");
    assert_refused(
        &s.post_to(
            "other",
            "application/x-www-form-urlencoded",
            format!("logout_token={}", enc(&token)),
        )
        .await,
        "replay through the other middleware after the reload",
    );
}

#[tokio::test]
async fn a_used_token_stays_used_for_a_client_of_inline_blocks_only() {
    let idp = FakeIdp::start().await;
    // No YAML middleware of the client; one inline block at a time (a second evicts the first).
    let sc = Running::start(&format!(
        "logLevel: warn\ntrustedProxies: [127.0.0.0/8]\ninline:\n  allowedProviderUrls: [\"{}\"]\n  maxBlocks: 1\n",
        idp.issuer
    ))
    .await;
    let register = async |prefix: &str| -> String {
        let block = serde_json::to_vec(&json!({
            "CookieNamePrefix": prefix,
            "Provider": {"ClientId": CLIENT_ID, "ClientSecret": CLIENT_SECRET, "Url": idp.issuer},
            "Secret": SECRET,
            "SessionCookie": {"Secure": "false"},
        }))
        .unwrap();
        let (status, h) = common::register_block(sc.addr, block).await;
        assert_eq!(status, 201, "{prefix}");
        h
    };
    let first = register("First").await;
    let token = signed(&header(), &claims(&idp.issuer));
    let path = |h: &str| format!("backchannel-logout/inline/{h}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        // 503 until the block's discovery has loaded.
        let r = send_at(sc.addr, &path(&first), &token).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{r:#?}");
        assert!(std::time::Instant::now() < deadline, "{r:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Another block of the client, in another scope, evicts the first: the client's memory
    // is not a scope's and stays.
    let second = register("Second").await;
    assert_eq!(sc.app.inline_blocks().len(), 1);
    let r = send_at(sc.addr, &path(&second), &token).await;
    assert_refused(&r, "replay through the client's next inline block");
}

#[tokio::test]
async fn a_replayed_token_ends_only_sessions_made_before_it_was_issued() {
    let s = setup().await;
    let mut ended = s.login().await; // sid-1
    // A logout of every session of alice (sub only), issued now.
    let mut c = claims(&s.idp.issuer);
    c.as_object_mut().unwrap().remove("sid");
    let token = signed(&header(), &c);
    assert_eq!(s.send(&token).await.status, 200);
    assert_eq!(ended.forward(HOME, Kind::Xhr).await.status, 401);
    // alice logs in again, after the logout (the cutoff has one-second resolution).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut again = s.login().await; // sid-2
    // The sidecar restarts: its `jti` memory is gone, and the captured token is replayed.
    let restarted = Running::start(&yaml(&s.idp.issuer)).await;
    restarted.ready().await;
    for a in [&mut ended, &mut again] {
        a.auth = format!("http://{}/auth/default", restarted.addr);
    }
    let r = send_at(restarted.addr, "backchannel-logout/default", &token).await;
    assert_eq!(r.status, 200, "not known here: accepted {r:#?}");
    // It ends what the logout ended, never the login made after it.
    assert_eq!(ended.forward(HOME, Kind::Xhr).await.status, 401);
    assert_eq!(again.forward(HOME, Kind::Xhr).await.status, 200);
}
