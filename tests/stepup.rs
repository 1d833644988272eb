//! Step-up (`StepUp: { AcrValues, MaxAge }`) against the real OpenID Provider: two middlewares
//! of one scope, a plain one and strict ones, and the browser going between them.
//!
//! The OP (tests/op/op.mjs) knows the acr values `pwd` and `mfa`; a login records the acr its
//! form names, and `acr_values` the session's acr is not among ask for a login again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use traefik_oidc_sidecar::session::{RequestCookies, Session};

const PLAIN: &str = "http://app.test/docs";
const STRICT: &str = "http://app.test/admin/settings?tab=2";

/// A scope of three middlewares (same Secret, provider, client and prefix): `plain`, `strict`
/// (acr `mfa`) and `fresh` (authenticated at most 4 s ago). Plus `api`: bearer tokens with
/// `StepUp`.
fn yaml(issuer: &str) -> String {
    let common = format!(
        r#"    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: StepUpTest
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
"#
    );
    format!(
        r#"
logLevel: debug
middlewares:
  plain:
{common}
  strict:
{common}    StepUp:
      AcrValues: [mfa]
  fresh:
{common}    StepUp:
      MaxAge: 4s
  api:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenValidation: Introspection
    Secret: {SECRET}
    CookieNamePrefix: StepUpApi
    AuthorizationHeader:
      Name: Authorization
    StepUp:
      AcrValues: [mfa, hwk]
      MaxAge: 5m
"#
    )
}

async fn sidecar() -> Sidecar {
    let s = Sidecar::start(&yaml(shared_op())).await;
    s.wait_ready(15).await;
    s
}

/// The session the browser holds, opened with the scope's key.
fn session_of(s: &Sidecar, b: &Browser) -> std::sync::Arc<Session> {
    let scope = test_codec(s, "plain");
    let header = b.cookie_string(APP_HOST);
    scope
        .open_session(&RequestCookies::parse([header.as_str()].into_iter()))
        .expect("a session")
}

/// Takes an authorization URL through the OP, logging in as `user` with `acr` when the OP asks;
/// returns the callback URL. `expect_form`: whether the OP must show its login form.
async fn at_op(
    b: &mut Browser,
    authorize: &str,
    user: &str,
    acr: &str,
    expect_form: bool,
) -> String {
    let r = b.op_get(authorize).await;
    assert_eq!(r.status, 303, "authorize: {r:#?}");
    let next = resolve(authorize, &r.location());
    let op = authorize.split("/auth?").next().unwrap();
    if !next.starts_with(op) {
        assert!(!expect_form, "the OP answered without a login: {next}");
        return next;
    }
    assert!(expect_form, "the OP asked for a login: {next}");
    let page = b.op_get(&next).await;
    assert_eq!(page.status, 200, "login page: {page:#?}");
    let r = b
        .op_post(
            &next,
            &[
                ("prompt", "login"),
                ("login", user),
                ("password", user),
                ("acr", acr),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "login POST: {r:#?}");
    let resume = resolve(&next, &r.location());
    let r = b.op_get(&resume).await;
    assert_eq!(r.status, 303, "resume: {r:#?}");
    resolve(&resume, &r.location())
}

/// Logs in through `plain` with acr `pwd` (recorded at the OP; the ID token carries it only when
/// `acr_values` asked): the session satisfies `plain` only.
async fn plain_login(b: &mut Browser) {
    b.middleware = "plain".into();
    let r = b.app(PLAIN, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let q = query(&r.location());
    assert!(
        !q.contains_key("acr_values") && !q.contains_key("max_age"),
        "{q:?}"
    );
    let cb = at_op(b, &r.location(), "alice", "pwd", true).await;
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    assert_eq!(r.location(), PLAIN);
    assert_eq!(b.app(PLAIN, Kind::Navigate).await.status, 200);
}

#[tokio::test]
async fn the_strict_middleware_steps_up_and_the_upgraded_session_passes_both() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "plain");
    plain_login(&mut b).await;
    // Nobody asked for acr_values: the OP leaves the (voluntary) acr claim out.
    assert_eq!(session_of(&s, &b).acr, None);

    // The same session through the strict middleware: sent back with acr_values, no prompt.
    b.middleware = "strict".into();
    let r = b.app(STRICT, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let authorize = r.location();
    let q = query(&authorize);
    assert_eq!(q["acr_values"], "mfa");
    assert!(
        !q.contains_key("max_age") && !q.contains_key("prompt"),
        "{q:?}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // The OP asks again (its session's acr is pwd); this time the user gives mfa.
    let cb = at_op(&mut b, &authorize, "alice", "mfa", true).await;
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    assert_eq!(r.location(), STRICT);

    // Upgraded: the one session now satisfies both middlewares, for navigations and XHR.
    let up = session_of(&s, &b);
    assert_eq!(up.acr.as_deref(), Some("mfa"));
    assert!(up.step_up_failed.is_empty());
    for mw in ["strict", "plain"] {
        b.middleware = mw.into();
        assert_eq!(b.app(STRICT, Kind::Navigate).await.status, 200, "{mw}");
        assert_eq!(b.app(STRICT, Kind::Xhr).await.status, 200, "{mw}");
    }
}

#[tokio::test]
async fn xhr_of_a_session_not_stepped_up_gets_the_rfc_9470_challenge() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "plain");
    plain_login(&mut b).await;
    b.middleware = "strict".into();
    let r = b.app(STRICT, Kind::Xhr).await;
    assert_eq!(r.status, 401, "{r:#?}");
    assert!(r.header("location").is_none(), "no redirect: {r:#?}");
    let www = r.header("www-authenticate").unwrap();
    assert!(www.starts_with("Bearer "), "{www}");
    assert!(
        www.contains("error=\"insufficient_user_authentication\""),
        "{www}"
    );
    assert!(www.contains("acr_values=\"mfa\""), "{www}");
    assert!(!www.contains("max_age"), "{www}");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/problem+json")
    );
    // The session is kept: the plain middleware still admits it.
    b.middleware = "plain".into();
    assert_eq!(b.app(PLAIN, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn a_session_back_from_step_up_without_the_acr_gets_403_never_a_loop() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "plain");
    plain_login(&mut b).await;
    b.middleware = "strict".into();
    let r = b.app(STRICT, Kind::Navigate).await;
    assert_eq!(r.status, 302);
    // The user answers the OP's second login with a password only.
    let cb = at_op(&mut b, &r.location(), "alice", "pwd", true).await;
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    assert_eq!(r.location(), STRICT);
    assert!(
        session_of(&s, &b).step_up_failed.contains("strict"),
        "the login is marked"
    );
    // 403, not a second trip to the IdP, however often the page is opened.
    for _ in 0..2 {
        let r = b.app(STRICT, Kind::Navigate).await;
        assert_eq!(r.status, 403, "{r:#?}");
        assert!(r.header("location").is_none());
    }
    assert_eq!(b.app(STRICT, Kind::Xhr).await.status, 403);
    // The plain middleware is not affected.
    b.middleware = "plain".into();
    assert_eq!(b.app(PLAIN, Kind::Navigate).await.status, 200);
}

#[tokio::test]
async fn a_browser_without_a_session_logs_in_at_the_strict_level_in_one_trip() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "strict");
    let r = b.app(STRICT, Kind::Navigate).await;
    assert_eq!(r.status, 302);
    assert_eq!(query(&r.location())["acr_values"], "mfa");
    let cb = at_op(&mut b, &r.location(), "bob", "mfa", true).await;
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "callback: {r:#?}");
    assert_eq!(b.app(STRICT, Kind::Navigate).await.status, 200);
    b.middleware = "plain".into();
    assert_eq!(b.app(PLAIN, Kind::Navigate).await.status, 200);
}

#[tokio::test]
async fn max_age_exceeded_sends_back_with_max_age_and_prompt_login() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "plain");
    plain_login(&mut b).await;
    // Nobody asked max_age: the OP left auth_time out, so `fresh` cannot know how old the login
    // is. It asks max_age without prompt=login, and the IdP decides.
    assert_eq!(session_of(&s, &b).auth_time, None);
    b.middleware = "fresh".into();
    let r = b.app(STRICT, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let q = query(&r.location());
    assert_eq!(q["max_age"], "4");
    assert!(
        !q.contains_key("prompt") && !q.contains_key("acr_values"),
        "{q:?}"
    );
    // Logged in a moment ago: the OP answers at once, with auth_time.
    let cb = at_op(&mut b, &r.location(), "alice", "pwd", false).await;
    assert_eq!(b.app(&cb, Kind::Navigate).await.status, 302);
    let auth_time = session_of(&s, &b)
        .auth_time
        .expect("auth_time: max_age was asked");
    assert_eq!(b.app(STRICT, Kind::Navigate).await.status, 200);

    // Five seconds on, the login is too old for `fresh` (MaxAge 4s): back to the IdP with
    // max_age and prompt=login (the IdP must authenticate again, not reuse its SSO session).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let r = b.app(STRICT, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let q = query(&r.location());
    assert_eq!(q["max_age"], "4");
    assert_eq!(q["prompt"], "login");
    // XHR meanwhile: the RFC 9470 challenge with max_age.
    let x = b.app(STRICT, Kind::Xhr).await;
    assert_eq!(x.status, 401);
    assert!(x.header("www-authenticate").unwrap().ends_with("max_age=4"));
    let cb = at_op(&mut b, &r.location(), "alice", "pwd", true).await;
    assert_eq!(b.app(&cb, Kind::Navigate).await.status, 302);
    let renewed = session_of(&s, &b).auth_time.unwrap();
    assert!(renewed > auth_time, "{renewed} > {auth_time}");
    assert_eq!(b.app(STRICT, Kind::Navigate).await.status, 200);
    b.middleware = "plain".into();
    assert_eq!(b.app(PLAIN, Kind::Navigate).await.status, 200);
}

#[tokio::test]
async fn a_bearer_token_without_the_acr_gets_the_rfc_9470_challenge() {
    let s = sidecar().await;
    // A client_credentials token has no acr and no auth_time: no user authenticated.
    let token = machine_token(shared_op(), None).await;
    let mut b = Browser::new(&s, "api");
    let auth = format!("Bearer {token}");
    let r = b
        .app_with(STRICT, Kind::Xhr, &[("Authorization", auth.as_str())])
        .await;
    assert_eq!(r.status, 401, "{r:#?}");
    let www = r.header("www-authenticate").unwrap();
    assert!(
        www.contains("insufficient_user_authentication")
            && www.contains("acr_values=\"mfa hwk\"")
            && www.contains("max_age=300"),
        "{www}"
    );
}

#[tokio::test]
async fn a_refresh_keeps_the_stepped_up_login() {
    // Tokens of 4 s: the session is refreshed after 3 s (TokenRenewalThreshold 0.75).
    let op = Op::start_with(0, 4);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "strict");
    let r = b.app(STRICT, Kind::Navigate).await;
    let cb = at_op(&mut b, &r.location(), "alice", "mfa", true).await;
    assert_eq!(b.app(&cb, Kind::Navigate).await.status, 302);
    let before = session_of(&s, &b);
    assert_eq!(before.acr.as_deref(), Some("mfa"));
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let r = b.app(STRICT, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(
        r.cookies_set()
            .iter()
            .any(|c| c.contains("StepUpTest.session.")),
        "refreshed: a new session cookie"
    );
    let after = session_of(&s, &b);
    assert!(after.iat > before.iat, "refreshed");
    assert_eq!(after.acr.as_deref(), Some("mfa"));
    assert_eq!(after.auth_time, before.auth_time);
    assert_eq!(b.app(STRICT, Kind::Navigate).await.status, 200);
}
