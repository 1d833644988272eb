//! Bearer tokens from API clients (AuthorizationHeader / AuthorizationCookie), validated as JWT
//! access tokens or by RFC 7662 introspection at the real OP, with machine tokens from its
//! client_credentials grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use traefik_oidc_sidecar::session::RequestCookies;

fn yaml(issuer: &str) -> String {
    let provider = |extra: &str| {
        format!(
            "    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n{extra}    Secret: {SECRET}\n    SessionCookie:\n      Secure: false\n"
        )
    };
    format!(
        "middlewares:\n  jwt:\n{}    AuthorizationHeader:\n      Name: Authorization\n    Authorization:\n      AssertClaims:\n        - Name: scope\n          AnyOf: [\"api:read\"]\n  strict:\n{}    AuthorizationHeader:\n      Name: Authorization\n    Authorization:\n      AssertClaims:\n        - Name: scope\n          AnyOf: [\"api:admin\"]\n  cookie:\n{}    AuthorizationCookie:\n      Name: api_token\n  intro:\n{}    AuthorizationHeader:\n      Name: X-Api-Token\n",
        provider(
            "      TokenValidation: AccessToken\n      ValidAudience: https://api.example.test/\n"
        ),
        provider("      ValidAudience: https://api.example.test/\n"),
        provider("      ValidAudience: https://api.example.test/\n"),
        provider("      TokenValidation: Introspection\n"),
    )
}

#[tokio::test]
async fn bearer_tokens_are_validated_on_every_request_and_never_redirect() {
    let issuer = shared_op();
    let s = Sidecar::start(&yaml(issuer)).await;
    s.wait_ready(15).await;
    let jwt = machine_token(issuer, Some("https://api.example.test/")).await;
    let auth = format!("Bearer {jwt}");

    let mut b = Browser::new(&s, "jwt");
    let r = b
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(
        r.header("x-forwarded-user"),
        Some("sidecar"),
        "sub of a client_credentials token"
    );
    assert!(b.cookies(APP_HOST).is_empty(), "no session is created");

    // Tampered signature, wrong audience, not a JWT: 401 with a Bearer challenge, never a
    // redirect, even for a browser navigation.
    // Flip a character in the middle of the signature (the last one may only hold padding bits).
    let sig_at = jwt.rfind('.').unwrap() + 20;
    let mut tampered: Vec<char> = jwt.chars().collect();
    tampered[sig_at] = if tampered[sig_at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let other_aud = machine_token(issuer, Some("https://other.example.test/")).await;
    for (name, token) in [
        ("tampered", tampered),
        ("other audience", other_aud),
        ("garbage", "abc.def".to_string()),
    ] {
        let h = format!("Bearer {token}");
        let r = b
            .app_with("http://app.test/", Kind::Navigate, &[("Authorization", &h)])
            .await;
        assert_eq!(r.status, 401, "{name}: {r:#?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
        assert!(r.header("location").is_none(), "{name}");
    }
    // Another scheme is not a bearer token: the session rules apply (a navigation logs in).
    let r = b
        .app_with(
            "http://app.test/",
            Kind::Navigate,
            &[("Authorization", "Basic dTpw")],
        )
        .await;
    assert_eq!(r.status, 302);

    // An ID token from a browser login is not an access token for this API (audience).
    let mut browser = Browser::new(&s, "jwt");
    browser.login("http://app.test/", "alice").await;
    let codec = test_codec(&s, "jwt");
    let header = browser.cookie_string(APP_HOST);
    let cookies = RequestCookies::parse([header.as_str()].into_iter());
    let session = codec.open_session(&cookies).expect("a session");
    assert_eq!(
        session.id_token, None,
        "no template prints it: not in the session"
    );
    let id_token = codec
        .read_hint(&cookies)
        .expect("the logout-hint cookie keeps the ID token");
    let h = format!("Bearer {id_token}");
    let r = Browser::new(&s, "jwt")
        .app_with("http://app.test/api", Kind::Xhr, &[("Authorization", &h)])
        .await;
    assert_eq!(
        r.status, 401,
        "an ID token (aud = client id) is refused: {r:#?}"
    );

    // Valid token, failing assertion: 403.
    let mut strict = Browser::new(&s, "strict");
    let r = strict
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("Authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 403);

    // The same token from a cookie.
    let mut c = Browser::new(&s, "cookie");
    c.set_cookie(APP_HOST, "api_token", &jwt);
    assert_eq!(c.app("http://app.test/api", Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let issuer = shared_op();
    let s = Sidecar::start(&yaml(issuer)).await;
    s.wait_ready(15).await;
    let opaque = machine_token(issuer, None).await;
    assert!(!opaque.contains('.'), "opaque: {opaque}");
    let mut b = Browser::new(&s, "intro");
    for _ in 0..3 {
        let r = b
            .app_with(
                "http://app.test/api",
                Kind::Xhr,
                &[("X-Api-Token", &opaque)],
            )
            .await;
        assert_eq!(r.status, 200, "{r:#?}");
    }
    let r = b
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("X-Api-Token", "made-up-token")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn introspection_results_are_cached_for_a_bounded_time() {
    // A dedicated OP we can stop: after it is gone, a token introspected once still passes (the
    // cache answers), while a token never seen before cannot be checked (503, never 200).
    let mut op = Op::start(0);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let seen = machine_token(&op.issuer, None).await;
    let unseen = machine_token(&op.issuer, None).await;
    let mut b = Browser::new(&s, "intro");
    assert_eq!(
        b.app_with("http://app.test/api", Kind::Xhr, &[("X-Api-Token", &seen)])
            .await
            .status,
        200
    );
    op.stop();
    let r = b
        .app_with("http://app.test/api", Kind::Xhr, &[("X-Api-Token", &seen)])
        .await;
    assert_eq!(r.status, 200, "served from the cache: {r:#?}");
    let r = b
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("X-Api-Token", &unseen)],
        )
        .await;
    assert_eq!(r.status, 503, "{r:#?}");
}
