//! Inline middleware blocks (issue 12) against the real OP: the registration rules of
//! `POST /inline/{hash}`, serving `/auth/inline/{hash}`, and sessions that belong to the scope,
//! not to the block (shared with a YAML middleware of the same key, surviving a restart of the
//! sidecar and an edit of an unrelated key).
//!
//! Users (tests/op/op.mjs): alice is in `admins` and `users`, bob in `guests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TOKEN: &str = "inline-registration-token-0123";

/// A block like the shim sends: the standard `default` middleware of `config_yaml` (so it has
/// the same scope key), with `extra` merged in at the top level, serialized with sorted keys.
fn block(issuer: &str, extra: Value) -> Vec<u8> {
    let mut b = json!({
        "Provider": {"Url": issuer, "ClientId": "sidecar", "ClientSecret": "sidecar-secret"},
        "Secret": SECRET,
        "CookieNamePrefix": "TraefikOidcSidecar.default",
        "Scopes": ["openid", "profile", "email", "groups"],
        "SessionCookie": {"Secure": "false"},
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    // serde_json's map is ordered by key: the canonical key order.
    serde_json::to_vec(&b).unwrap()
}

fn hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST /inline/{hash}`; returns the status and the JSON body (null when not JSON).
async fn register(s: &Sidecar, h: &str, body: &[u8], token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/inline/{h}", s.addr))
        .header("Content-Type", "application/json")
        .header("X-Oidc-Sidecar-Middleware", "oidc@docker")
        .body(body.to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn inline_root(issuer: &str, rules: &str) -> String {
    format!(
        "logLevel: debug\ninline:\n  registrationToken: {TOKEN}\n  allowedProviderUrls: [\"{issuer}/\"]\n{rules}"
    )
}

fn paths(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems: {v}"))
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect()
}

/// An XHR through the inline block `h`: its status.
async fn xhr(b: &mut Browser, h: &str) -> u16 {
    b.middleware = format!("inline/{h}");
    b.app_with(
        "http://app.test/x",
        Kind::Xhr,
        &[("X-Oidc-Sidecar-Middleware", "oidc@docker")],
    )
    .await
    .status
}

#[tokio::test]
async fn registration_rules() {
    let issuer = shared_op();
    let s = Sidecar::start(&inline_root(
        issuer,
        "  maxBlocks: 2\n  maxBlockBytes: 4096\n",
    ))
    .await;
    // No middlewares of its own: ready once listening.
    s.wait_ready(5).await;
    let a = block(issuer, json!({}));
    let ha = hash(&a);

    // Unknown hash: the cue the shim registers on.
    let r = reqwest::get(s.auth_url(&format!("inline/{ha}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-oidc-sidecar-unknown-block"], ha.as_str());
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Content addressing: the path must be the body's hash.
    let other = hash(b"{}");
    assert_eq!(register(&s, &other, &a, Some(TOKEN)).await.0, 400);
    assert_eq!(
        register(&s, &ha.to_uppercase(), &a, Some(TOKEN)).await.0,
        400
    );
    let not_object = b"[1,2]";
    assert_eq!(
        register(&s, &hash(not_object), not_object, Some(TOKEN))
            .await
            .0,
        400
    );
    // The token: missing or wrong.
    assert_eq!(register(&s, &ha, &a, None).await.0, 403);
    assert_eq!(
        register(&s, &ha, &a, Some("inline-registration-token-0124"))
            .await
            .0,
        403
    );
    // Over the body cap.
    let big = block(
        issuer,
        json!({"AuthorizationParams": {"x": "y".repeat(5000)}}),
    );
    assert_eq!(register(&s, &hash(&big), &big, Some(TOKEN)).await.0, 413);
    // Another IdP than allowedProviderUrls: 422 at Provider.Url.
    let mut foreign: Value = serde_json::from_slice(&a).unwrap();
    foreign["Provider"]["Url"] = json!("https://elsewhere.example/realms/x");
    let foreign = serde_json::to_vec(&foreign).unwrap();
    let (st, v) = register(&s, &hash(&foreign), &foreign, Some(TOKEN)).await;
    assert_eq!(
        (st, paths(&v)),
        (422, vec!["Provider.Url".to_string()]),
        "{v}"
    );
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("allowedProviderUrls")
    );
    // An invalid block: every problem with its key path, as for the YAML file.
    let bad = block(
        issuer,
        json!({"Secret": "short", "Scopes": "profile", "UnauthenticatedBehaviour": "Auto", "SessionCookie": {"SameSite": "sometimes"}}),
    );
    let (st, v) = register(&s, &hash(&bad), &bad, Some(TOKEN)).await;
    assert_eq!(st, 422, "{v}");
    let p = paths(&v);
    for want in [
        "Secret",
        "Scopes",
        "UnauthenticatedBehaviour",
        "SessionCookie.SameSite",
    ] {
        assert!(p.iter().any(|x| x == want), "{want} missing: {v}");
    }
    assert!(
        v.to_string()
            .contains("did you mean UnauthenticatedBehavior"),
        "{v}"
    );
    // A typo and a foreign provider together: both problems in one answer.
    let mut both: Value = serde_json::from_slice(&foreign).unwrap();
    both["UnauthenticatedBehaviour"] = json!("Auto");
    let both = serde_json::to_vec(&both).unwrap();
    let (st, v) = register(&s, &hash(&both), &both, Some(TOKEN)).await;
    assert_eq!(st, 422, "{v}");
    let p = paths(&v);
    for want in ["UnauthenticatedBehaviour", "Provider.Url"] {
        assert!(p.iter().any(|x| x == want), "{want} missing: {v}");
    }
    // Redis sessions without the sidecar's redis: block: a problem at its key, not a 500.
    let mut in_redis: Value = serde_json::from_slice(&a).unwrap();
    in_redis["SessionStorageType"] = json!("Redis");
    let in_redis = serde_json::to_vec(&in_redis).unwrap();
    let (st, v) = register(&s, &hash(&in_redis), &in_redis, Some(TOKEN)).await;
    assert_eq!(
        (st, paths(&v)),
        (422, vec!["SessionStorageType".to_string()]),
        "{v}"
    );
    assert!(
        s.app.inline_blocks().is_empty(),
        "nothing refused was stored"
    );

    // Registered, then known.
    assert_eq!(register(&s, &ha, &a, Some(TOKEN)).await.0, 201);
    assert_eq!(register(&s, &ha, &a, Some(TOKEN)).await.0, 200);
    let mut br = Browser::new(&s, "-");
    s.wait_ready(5).await;
    wait_inline_ready(&s, &ha).await;
    assert_eq!(
        xhr(&mut br, &ha).await,
        401,
        "served by the block: no session"
    );

    // Back-channel logout of an inline middleware: the unknown-block cue, or the block's own
    // logout-token check (a body that is no logout token is refused, never a 2xx).
    let post = |path: String| {
        reqwest::Client::new()
            .post(format!("http://{}{path}", s.addr))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("logout_token=not-a-jwt")
            .send()
    };
    let r = post(format!("/backchannel-logout/inline/{}", hash(b"x")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-oidc-sidecar-unknown-block"));
    let r = post(format!("/backchannel-logout/inline/{ha}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "{:?}", r.text().await);

    // Over maxBlocks (2): the least recently used goes. `a` was used last, so `b` goes.
    let b = block(issuer, json!({"LogoutUri": "/b-logout"}));
    let c = block(issuer, json!({"LogoutUri": "/c-logout"}));
    let (hb, hc) = (hash(&b), hash(&c));
    assert_eq!(register(&s, &hb, &b, Some(TOKEN)).await.0, 201);
    assert_eq!(xhr(&mut br, &ha).await, 401);
    assert_eq!(register(&s, &hc, &c, Some(TOKEN)).await.0, 201);
    assert_eq!(s.app.inline_blocks().len(), 2);
    assert_eq!(xhr(&mut br, &hb).await, 404, "evicted: the cue again");
    assert_eq!(xhr(&mut br, &ha).await, 401);
    // Re-registration after eviction works (and evicts the next least recently used, c).
    assert_eq!(register(&s, &hb, &b, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&s, &hb).await;
    assert_eq!(xhr(&mut br, &hb).await, 401);
    assert_eq!(xhr(&mut br, &hc).await, 404);

    // The same block registered twice at once: one entry, both succeed.
    let d = block(issuer, json!({"LogoutUri": "/d-logout"}));
    let hd = hash(&d);
    let (x, y) = tokio::join!(
        register(&s, &hd, &d, Some(TOKEN)),
        register(&s, &hd, &d, Some(TOKEN))
    );
    let mut st = [x.0, y.0];
    st.sort();
    assert!(st == [200, 201] || st == [201, 201], "{st:?}");
    let stored = s.app.inline_blocks();
    assert_eq!(stored.iter().filter(|b| b.hash == hd).count(), 1);
    assert_eq!(stored.len(), 2);
}

/// Waits until the provider of block `h` has discovery (its requests answer 503 before).
async fn wait_inline_ready(s: &Sidecar, h: &str) {
    for _ in 0..200 {
        if s.app
            .inline_block(h)
            .is_some_and(|b| b.middleware.provider.current().is_some())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("inline block {h} never loaded discovery");
}

#[tokio::test]
async fn registration_only_from_trusted_proxies() {
    let issuer = shared_op();
    let s = Sidecar::start(&format!(
        "trustedProxies: [10.0.0.0/8]\n{}",
        inline_root(issuer, "")
    ))
    .await;
    let a = block(issuer, json!({}));
    let (st, v) = register(&s, &hash(&a), &a, Some(TOKEN)).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("trustedProxies"));
    assert!(!v.to_string().contains(TOKEN));
}

#[tokio::test]
async fn an_inline_and_a_yaml_middleware_of_one_scope_share_one_login() {
    let issuer = shared_op();
    // The Secret from a file on the sidecar's side: `${file:}` is expanded there, because the
    // operator lists exactly that file, for the `Secret` key only.
    let secret_file =
        std::env::temp_dir().join(format!("tos-inline-secret-{}", std::process::id()));
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let s = Sidecar::start(&config_yaml(
        issuer,
        &format!(
            "inline:\n  registrationToken: {TOKEN}\n  allowedVariables:\n    \"file:{}\": [Secret]\n",
            secret_file.display()
        ),
    ))
    .await;
    s.wait_ready(10).await;
    let a = block(
        issuer,
        json!({"Secret": format!("${{file:{}}}", secret_file.display())}),
    );
    let ha = hash(&a);
    assert_eq!(register(&s, &ha, &a, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&s, &ha).await;
    let yaml_scope = s.app.middleware("default").unwrap().scope().clone();
    let inline_scope = s.app.inline_block(&ha).unwrap().middleware.scope().clone();
    assert!(
        std::sync::Arc::ptr_eq(&yaml_scope, &inline_scope),
        "one scope object"
    );

    // Log in through the inline middleware...
    let mut b = Browser::new(&s, &format!("inline/{ha}"));
    let r = b.login("http://app.test/private", "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(xhr(&mut b, &ha).await, 200);
    // ...and the YAML middleware of the same scope admits the same session.
    b.middleware = "default".into();
    assert_eq!(b.app("http://app.test/x", Kind::Xhr).await.status, 200);
    // Another scope (another cookie prefix) does not.
    b.middleware = "admins".into();
    assert_eq!(b.app("http://app.test/x", Kind::Xhr).await.status, 401);
    // Metrics name the inline middleware by its Traefik name and the start of its hash.
    let m = reqwest::get(format!("http://{}/metrics", s.metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = format!("middleware=\"inline:oidc@docker:{}\"", &ha[..8]);
    assert!(
        m.lines()
            .any(|l| l.contains(&name) && l.contains("allowed") && l.ends_with(" 1")),
        "{m}"
    );
}

#[tokio::test]
async fn a_session_survives_a_restart_and_an_unrelated_edit() {
    let issuer = shared_op();
    let yaml = inline_root(issuer, "");
    // String forms, as docker labels give them: lists as comma-joined strings and indexed
    // maps, booleans and numbers as strings.
    let a = block(
        issuer,
        json!({
            "Scopes": "openid, profile,email,groups",
            "SessionCookie": {"Secure": "false", "MaxAge": "0", "HttpOnly": "true"},
            "Provider": {"Url": issuer, "ClientId": "sidecar", "ClientSecret": "sidecar-secret", "UsePkce": "true", "TokenRenewalThreshold": "0.8"},
            "Authorization": {"CheckOnEveryRequest": "false", "AssertClaims": {"0": {"Name": "groups", "AnyOf": "admins,users"}}},
        }),
    );
    let ha = hash(&a);
    let first = Sidecar::start(&yaml).await;
    assert_eq!(register(&first, &ha, &a, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&first, &ha).await;
    let mut b = Browser::new(&first, &format!("inline/{ha}"));
    let r = b.login("http://app.test/private", "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(xhr(&mut b, &ha).await, 200);
    let cookies = b.cookies(APP_HOST);
    drop(first);

    // A new process: the block is unknown (the cue), re-registered, and the cookie opens.
    let second = Sidecar::start(&yaml).await;
    let mut b = Browser::new(&second, "-");
    for (k, v) in &cookies {
        b.set_cookie(APP_HOST, k, v);
    }
    assert_eq!(xhr(&mut b, &ha).await, 404);
    assert_eq!(register(&second, &ha, &a, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&second, &ha).await;
    assert_eq!(
        xhr(&mut b, &ha).await,
        200,
        "still logged in after the restart"
    );

    // An edit of an unrelated key (the assertion): a new hash, the same scope. The session made
    // before has no verdict for it, so its assertion runs on the session's claims: alice is in
    // `admins`...
    let edited = block(
        issuer,
        json!({"Authorization": {"AssertClaims": [{"Name": "groups", "AnyOf": ["admins"]}]}}),
    );
    let he = hash(&edited);
    assert_ne!(he, ha);
    assert_eq!(register(&second, &he, &edited, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&second, &he).await;
    assert_eq!(xhr(&mut b, &he).await, 200, "same scope, still logged in");
    // ...but not in `guests`: never another block's verdict.
    let guests = block(
        issuer,
        json!({"Authorization": {"AssertClaims": [{"Name": "groups", "AnyOf": ["guests"]}]}}),
    );
    let hg = hash(&guests);
    assert_eq!(register(&second, &hg, &guests, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&second, &hg).await;
    assert_eq!(xhr(&mut b, &hg).await, 403);
}

/// The IdP ends the session (Back-Channel Logout 1.0): its logout token reaches the inline
/// block's own back-channel route, and the session made through the block is refused from then
/// on (with the token sent nowhere, the same request answered 200: the first draft of this test
/// did exactly that).
#[tokio::test]
async fn a_back_channel_logout_reaches_an_inline_middleware() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let s = Sidecar::start(&inline_root(&issuer, "")).await;
    let a = block(&issuer, json!({}));
    let ha = hash(&a);
    // The OP's client sends its logout tokens to the inline twin of the back-channel route.
    let _op = Op::start_env(
        port,
        3600,
        &[(
            "OP_BACKCHANNEL_LOGOUT_URI",
            &format!("http://{}/backchannel-logout/inline/{ha}", s.addr),
        )],
    );
    assert_eq!(register(&s, &ha, &a, Some(TOKEN)).await.0, 201);
    wait_inline_ready(&s, &ha).await;
    let mut b = Browser::new(&s, &format!("inline/{ha}"));
    assert_eq!(b.login("http://app.test/p", "alice").await.status, 302);
    assert_eq!(xhr(&mut b, &ha).await, 200);

    // End the session at the OP (its end-session page, confirmed).
    let end = format!("{issuer}/session/end");
    let page = b.op_get(&end).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let xsrf = common::xsrf(&page);
    let r = b
        .op_post(
            &resolve(&end, "/session/end/confirm"),
            &[("xsrf", &xsrf), ("logout", "yes")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:#?}");
    assert_eq!(
        xhr(&mut b, &ha).await,
        401,
        "the IdP's logout ended the session"
    );
}
