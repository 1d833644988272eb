//! private_key_jwt (RFC 7523 §2.2, OIDC Core §9) against the real OP: the `sidecar-jwt` client
//! has no secret, only the public halves of the test-only keys in tests/fixtures/test-keys. The
//! sidecar logs in, refreshes and introspects with RS256 and ES256 client assertions; an
//! assertion signed with a key the OP does not know fails the login (never a 2xx).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

const HOME: &str = "http://app.test/";

fn key_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/test-keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `rsa`: inline PKCS#1 PEM (a YAML block); `ec`: SEC1 PEM through `${file:}`; `intro`: bearer
/// tokens introspected with an ES256 assertion (PKCS#8 file); `wrong`: a key the OP never saw;
/// `both`: a ClientSecret next to the key (the secret must not be sent).
fn yaml(issuer: &str) -> String {
    let inline: String = std::fs::read_to_string(key_path("rsa-pkcs1.pem"))
        .unwrap()
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    let mw = |name: &str, key: &str, extra: &str| {
        format!(
            "  {name}:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar-jwt\n      TokenRenewalThreshold: 0.5\n{key}    Secret: {SECRET}\n    SessionCookie:\n      Secure: false\n    Headers:\n      - Name: X-Auth-Token\n        Value: \"{{{{ .accessToken }}}}\"\n      - Name: X-User\n        Value: \"{{{{ .claims.sub }}}}\"\n{extra}"
        )
    };
    let file = |kid: &str, name: &str| {
        format!(
            "      ClientJwtPrivateKeyId: {kid}\n      ClientJwtPrivateKey: \"${{file:{}}}\"\n",
            key_path(name)
        )
    };
    format!(
        "middlewares:\n{}{}{}{}{}",
        mw(
            "rsa",
            &format!(
                "      ClientJwtPrivateKeyId: test-rsa\n      ClientJwtPrivateKey: |\n{inline}"
            ),
            ""
        ),
        mw("ec", &file("test-ec", "ec-p256-sec1.pem"), ""),
        mw(
            "intro",
            &format!(
                "{}      TokenValidation: Introspection\n",
                file("test-ec", "ec-p256-pkcs8.pem")
            ),
            "    AuthorizationHeader:\n      Name: Authorization\n"
        ),
        mw("wrong", &file("test-rsa", "rsa-unregistered.pem"), ""),
        mw(
            "both",
            &format!(
                "      ClientSecret: not-sent\n{}",
                file("test-rsa", "rsa-pkcs8.pem")
            ),
            ""
        ),
    )
}

fn sets_session(r: &Resp) -> bool {
    r.all("set-cookie").iter().any(|c| c.contains(".session."))
}

#[tokio::test]
async fn login_refresh_and_introspection_use_rs256_and_es256_assertions() {
    // Tokens live 6 s: past half of it, a request refreshes the session.
    let op = Op::start_with(0, 6);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;

    let mut browsers = Vec::new();
    for mw in ["rsa", "ec"] {
        let mut b = Browser::new(&s, mw);
        let r = b.login(HOME, "alice").await;
        assert_eq!(r.status, 302, "{mw}: login with a client assertion: {r:#?}");
        let r = b.app(HOME, Kind::Xhr).await;
        assert_eq!(r.status, 200, "{mw}: {r:#?}");
        assert_eq!(r.header("x-user"), Some("alice"));
        let token = r.header("x-auth-token").unwrap().to_string();
        browsers.push((mw, b, token));
    }

    // Introspection of the user's (opaque) access token, the sidecar authenticating with an
    // ES256 assertion; a token the OP never issued is inactive.
    let (_, _, token) = &browsers[0];
    let mut api = Browser::new(&s, "intro");
    let r = api
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(r.status, 200, "introspected: {r:#?}");
    assert_eq!(r.header("x-user"), Some("alice"));
    let r = api
        .app_with(
            "http://app.test/api",
            Kind::Xhr,
            &[("Authorization", "Bearer never-issued-by-the-op")],
        )
        .await;
    assert_eq!(r.status, 401, "{r:#?}");

    // Refresh: the OP refuses a refresh without client authentication, so a new session (and a
    // new access token) proves the assertion was accepted on the refresh call too.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    for (mw, b, before) in &mut browsers {
        let r = b.app(HOME, Kind::Xhr).await;
        assert_eq!(r.status, 200, "{mw}: {r:#?}");
        assert!(sets_session(&r), "{mw}: refreshed: {r:#?}");
        let after = r.header("x-auth-token").unwrap();
        assert_ne!(after, before.as_str(), "{mw}: a new access token");
    }
}

#[tokio::test]
async fn an_assertion_signed_with_an_unknown_key_fails_the_login() {
    let op = Op::start(0);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "wrong");
    let r = b.login(HOME, "alice").await;
    common::assert_login_refused(&mut b, &r).await;
}

#[tokio::test]
async fn with_a_key_the_client_secret_is_not_sent() {
    // The OP refuses a request that authenticates the client twice (RFC 6749 §2.3: one method
    // per request), so this login only completes if the secret stayed home.
    let op = Op::start(0);
    let s = Sidecar::start(&yaml(&op.issuer)).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "both");
    let r = b.login(HOME, "bob").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(b.app(HOME, Kind::Xhr).await.header("x-user"), Some("bob"));
}
