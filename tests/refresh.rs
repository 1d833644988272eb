//! Session refresh against the real OP: tokens that live a few seconds, refresh tokens that
//! rotate on every use (reuse revokes the grant), and concurrent requests of one session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use traefik_oidc_sidecar::session::RequestCookies;

const HOME: &str = "http://app.test/";

fn yaml(issuer: &str) -> String {
    format!(
        r#"
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
  api:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
      TokenRenewalThreshold: 0.5
    Secret: {SECRET}
    Scopes: [openid, profile, email, groups]
    SessionCookie:
      Secure: false
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
"#
    )
}

fn session_set_cookies(r: &Resp) -> usize {
    r.all("set-cookie")
        .iter()
        .filter(|c| c.contains(".session."))
        .count()
}

#[tokio::test]
async fn session_is_refreshed_after_the_threshold_and_concurrent_requests_share_one_refresh() {
    let op = Op::start_with(0, 6);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    assert_eq!(b.login(HOME, "alice").await.status, 302);
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(
        (r.status, session_set_cookies(&r)),
        (200, 0),
        "fresh session: no refresh"
    );

    // Past half of the 6 s lifetime: ten parallel requests with the same (old) cookie, half of
    // them through `api`, another middleware of the same session scope. The OP rotates refresh
    // tokens and revokes the grant on reuse, so they only all succeed if a single refresh is
    // shared by the scope, not one per middleware.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let cookie = b.cookie_string(APP_HOST);
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mw = if i % 2 == 0 { "default" } else { "api" };
        let req = http
            .get(s.auth_url(mw))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", APP_HOST)
            .header("X-Forwarded-Uri", "/api")
            .header("Accept", "application/json")
            .header("Cookie", cookie.clone());
        tasks.push(tokio::spawn(async move { req.send().await.unwrap() }));
    }
    // Open each answer's new session with the same key the sidecar uses: they must all hold
    // the same refresh token, i.e. come from one refresh.
    let codec = test_codec(&s, "default");
    let mut set_cookie_values = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status(), 200);
        let sc: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(
            !sc.is_empty(),
            "every request of the refreshing session carries the new cookie"
        );
        let header = sc
            .iter()
            .map(|c| c.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let session = codec
            .open_session(&RequestCookies::parse([header.as_str()].into_iter()))
            .expect("the new session opens");
        set_cookie_values.insert(session.refresh_token.clone().expect("refreshable"));
    }
    assert_eq!(
        set_cookie_values.len(),
        1,
        "one refresh, one new refresh token, shared by all"
    );

    // The browser takes the new cookie; it keeps working past the old token's expiry.
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200);
    assert!(session_set_cookies(&r) > 0);
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(
        r.status, 200,
        "refreshed again with the rotated refresh token: {r:#?}"
    );
    assert!(session_set_cookies(&r) > 0, "second refresh: {r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
}

#[tokio::test]
async fn expired_session_whose_refresh_fails_is_unauthenticated() {
    let mut op = Op::start_with(0, 6);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    b.login(HOME, "alice").await;
    op.stop();
    // Before expiry, a failed refresh (the IdP is gone) keeps the session.
    // (Times are whole seconds at the sidecar: 4.2 s is past the 3 s threshold, before the 6 s expiry.)
    tokio::time::sleep(Duration::from_millis(4200)).await;
    assert_eq!(b.app(HOME, Kind::Xhr).await.status, 200);
    // After expiry, it does not.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 401, "{r:#?}");
}
