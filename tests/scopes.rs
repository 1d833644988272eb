//! Integration tests of session scopes against the real OpenID Provider: middlewares configured
//! with the same Secret, provider, client and cookie names share one login, and each still
//! judges with its own assertions and behaviours; the callback decides at once.
//!
//! Users (tests/op/op.mjs): alice is in `admins` and `users`, bob in `guests`, demo in `users`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// One scope (default cookie prefix) of: `root` (anyone), `alice` (group admins), `bob` (group
/// guests, Challenge), `fwd` (group admins, Forward), `every` (group admins, checked on every
/// request), `cb` (a dedicated callback router, anyone); plus `isolated`, another scope (another
/// Secret and prefix). `assert_group` is the group `alice` and `every` require.
fn yaml(issuer: &str, assert_group: &str, extra: &str) -> String {
    let base = format!(
        "    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    Scopes: [openid, profile, email, groups]\n    SessionCookie:\n      Secure: false\n"
    );
    let group = |g: &str| {
        format!(
            "    Authorization:\n      AssertClaims:\n        - Name: groups\n          AnyOf: [{g}]\n"
        )
    };
    format!(
        "logLevel: info\nmiddlewares:\n  root:\n{base}  alice:\n{base}{}    Headers:\n      - Name: X-Who\n        Value: \"{{{{ .claims.name }}}}\"\n  bob:\n{base}{}    UnauthorizedBehavior: Challenge\n  fwd:\n{base}{}    UnauthorizedBehavior: Forward\n  every:\n{base}    Authorization:\n      CheckOnEveryRequest: true\n      AssertClaims:\n        - Name: groups\n          AnyOf: [{assert_group}]\n  cb:\n{base}  isolated:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: another-secret-for-another-scope-0123456789\n    CookieNamePrefix: Other\n    SessionCookie:\n      Secure: false\n{extra}",
        group(assert_group),
        group("guests"),
        group("admins"),
    )
}

async fn sidecar(assert_group: &str, extra: &str) -> Sidecar {
    let s = Sidecar::start(&yaml(shared_op(), assert_group, extra)).await;
    s.wait_ready(15).await;
    s
}

/// Starts a login through `start` at `url`, logs in at the OP as `user`, and sends the callback
/// through `callback`; returns the callback's answer.
async fn login_via(b: &mut Browser, start: &str, url: &str, user: &str, callback: &str) -> Resp {
    b.middleware = start.into();
    let r = b.app(url, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{start}: anonymous navigation: {r:#?}");
    let cb = b.login_at_op(&r.location(), user, user).await;
    assert!(cb.starts_with("http://app.test/oidc/callback?"), "{cb}");
    b.middleware = callback.into();
    b.app(&cb, Kind::Navigate).await
}

/// The status `middleware` answers for `url`.
async fn status(b: &mut Browser, middleware: &str, url: &str, kind: Kind) -> u16 {
    b.middleware = middleware.into();
    b.app(url, kind).await.status
}

#[tokio::test]
async fn one_login_shared_by_middlewares_each_with_its_own_assertions() {
    let s = sidecar("admins", "").await;
    let mut b = Browser::new(&s, "alice");
    // Started by `alice`, finished by the dedicated callback middleware.
    let r = login_via(&mut b, "alice", "http://app.test/alice", "alice", "cb").await;
    assert_eq!(
        (r.status, r.location()),
        (302, "http://app.test/alice".to_string())
    );
    // The default prefix: one set of cookies for the whole scope.
    let names: Vec<String> = b.cookies(APP_HOST).keys().cloned().collect();
    assert!(
        names.iter().any(|n| n == "TraefikOidcSidecar.session.0"),
        "{names:?}"
    );
    b.middleware = "alice".into();
    let r = b.app("http://app.test/alice", Kind::Navigate).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-who"), Some("Alice Admin"));
    assert_eq!(
        status(&mut b, "root", "http://app.test/", Kind::Navigate).await,
        200
    );
    assert_eq!(
        status(&mut b, "fwd", "http://app.test/fwd", Kind::Xhr).await,
        200
    );
    assert_eq!(
        status(&mut b, "every", "http://app.test/e", Kind::Xhr).await,
        200
    );
    // `bob` needs guests: its own verdict, not the one of the middleware that saw the login.
    assert_eq!(
        status(&mut b, "bob", "http://app.test/bob", Kind::Xhr).await,
        403
    );
    // Another scope never opens this session: it asks for its own login.
    let r = {
        b.middleware = "isolated".into();
        b.app("http://app.test/other", Kind::Navigate).await
    };
    assert_eq!(r.status, 302, "{r:#?}");
    assert!(r.location().starts_with(shared_op()));

    // `bob` challenges once (no prompt: the OP's SSO session answers at once); the re-login,
    // finished through another middleware's callback, marks `bob`: then 403, never another
    // redirect. The others keep admitting.
    b.middleware = "bob".into();
    let r = b.app("http://app.test/bob", Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(query(&r.location()).get("prompt"), None);
    let cb = b.login_at_op(&r.location(), "alice", "alice").await;
    b.middleware = "cb".into();
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(
        (r.status, r.location()),
        (302, "http://app.test/bob".to_string())
    );
    let r = {
        b.middleware = "bob".into();
        b.app("http://app.test/bob", Kind::Navigate).await
    };
    assert_eq!(r.status, 403, "challenged once: {r:#?}");
    assert!(r.header("location").is_none());
    assert_eq!(
        status(&mut b, "alice", "http://app.test/alice", Kind::Navigate).await,
        200
    );

    // One logout ends the session for every middleware of the scope.
    b.middleware = "root".into();
    assert_eq!(
        b.app("http://app.test/logout", Kind::Navigate).await.status,
        302
    );
    assert_eq!(
        status(&mut b, "alice", "http://app.test/alice", Kind::Xhr).await,
        401
    );
}

#[tokio::test]
async fn the_callback_decides_with_the_middleware_that_receives_it() {
    let s = sidecar("admins", "").await;

    // bob starts at `root` and the callback goes through `alice`, which rejects him: the
    // callback itself is the 403 page, and the session is written anyway.
    let mut b = Browser::new(&s, "root");
    let r = login_via(&mut b, "root", "http://app.test/", "bob", "alice").await;
    assert_eq!(r.status, 403, "{r:#?}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.all("set-cookie")
            .iter()
            .any(|c| c.starts_with("TraefikOidcSidecar.session.0=")),
        "{r:#?}"
    );
    assert_eq!(
        status(&mut b, "root", "http://app.test/", Kind::Xhr).await,
        200
    );
    assert_eq!(
        status(&mut b, "bob", "http://app.test/bob", Kind::Xhr).await,
        200
    );
    assert_eq!(
        status(&mut b, "alice", "http://app.test/alice", Kind::Xhr).await,
        403
    );

    // Challenge at the callback: a login started by `root` and received by `bob` (demo is not a
    // guest) is answered with one challenge, then 403 when it comes back still failing.
    let mut d = Browser::new(&s, "root");
    let r = login_via(&mut d, "root", "http://app.test/start", "demo", "bob").await;
    assert_eq!(r.status, 302, "{r:#?}");
    let again = r.location();
    assert!(again.starts_with(shared_op()), "{again}");
    assert_eq!(query(&again).get("prompt"), None);
    let cb = d.login_at_op(&again, "demo", "demo").await;
    let r = d.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 403, "no second challenge: {r:#?}");
    assert!(r.header("location").is_none());
    assert_eq!(
        status(&mut d, "root", "http://app.test/start", Kind::Xhr).await,
        200
    );

    // Forward still returns to the original URL.
    let mut f = Browser::new(&s, "fwd");
    let r = login_via(&mut f, "fwd", "http://app.test/fwd?x=1", "bob", "fwd").await;
    assert_eq!(
        (r.status, r.location()),
        (302, "http://app.test/fwd?x=1".to_string())
    );
    assert_eq!(
        status(&mut f, "fwd", "http://app.test/fwd", Kind::Xhr).await,
        200
    );
}

/// A sidecar whose `alice` middleware requires `assert_group`, and alice logged in through
/// `root`, admitted by `alice`.
async fn alice_admitted(assert_group: &str) -> (Sidecar, Browser) {
    let s = sidecar(assert_group, "").await;
    let mut b = Browser::new(&s, "root");
    let r = login_via(&mut b, "root", "http://app.test/", "alice", "root").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(
        status(&mut b, "alice", "http://app.test/a", Kind::Xhr).await,
        200
    );
    (s, b)
}

#[tokio::test]
async fn verdicts_are_remembered_per_middleware_unless_checked_on_every_request() {
    // Logged in while `alice` and `every` both require admins.
    let (s, mut b) = alice_admitted("admins").await;
    assert_eq!(
        status(&mut b, "every", "http://app.test/e", Kind::Xhr).await,
        200
    );
    assert_eq!(
        status(&mut b, "bob", "http://app.test/b", Kind::Xhr).await,
        403
    );
    drop(s);

    // Same Secret and scope, both now require guests; `late` is new and has no verdict yet.
    let late = format!(
        "  late:\n    Provider:\n      Url: {}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    Authorization:\n      AssertClaims:\n        - Name: groups\n          AnyOf: [guests]\n",
        shared_op()
    );
    let s = sidecar("guests", &late).await;
    let mut b2 = Browser::new(&s, "root");
    for (name, value) in b.cookies(APP_HOST) {
        b2.set_cookie(APP_HOST, &name, &value);
    }
    // `alice` checks at login only, but its rules changed (admins, now guests): the verdict
    // of the old rules is not used, the new ones run on the session's claims.
    assert_eq!(
        status(&mut b2, "alice", "http://app.test/a", Kind::Xhr).await,
        403
    );
    // `every` evaluates its (new) assertions now.
    assert_eq!(
        status(&mut b2, "every", "http://app.test/e", Kind::Xhr).await,
        403
    );
    // `bob`'s rules did not change: its own verdict at login (false) stands.
    assert_eq!(
        status(&mut b2, "bob", "http://app.test/b", Kind::Xhr).await,
        403
    );
    // A middleware without a verdict in the session evaluates its own assertions, never borrows
    // another's.
    assert_eq!(
        status(&mut b2, "late", "http://app.test/l", Kind::Xhr).await,
        403
    );
}

/// Reloads `s` in place with the configuration of [`yaml`] for `assert_group`.
async fn reload(s: &Sidecar, assert_group: &str) {
    common::reload(&s.app, &yaml(shared_op(), assert_group, "")).await;
}

#[tokio::test]
async fn a_reload_that_tightens_login_time_rules_does_not_reuse_old_verdicts() {
    // `alice` (checked at login only) admits group users: alice is in it.
    let (s, mut b) = alice_admitted("users").await;
    // A reload requires guests, which alice is not in. The scope (and the session) survive; the
    // verdict `true` was reached under the old rules and must not admit her now.
    let scope = s.app.middleware("alice").unwrap().scope().clone();
    reload(&s, "guests").await;
    assert!(std::sync::Arc::ptr_eq(
        &scope,
        s.app.middleware("alice").unwrap().scope()
    ));
    assert_eq!(
        status(&mut b, "root", "http://app.test/", Kind::Xhr).await,
        200,
        "the session survives the reload"
    );
    assert_eq!(
        status(&mut b, "alice", "http://app.test/a", Kind::Xhr).await,
        403
    );
    // Reloaded back to the rules of the login: the verdict made under them counts again.
    reload(&s, "users").await;
    assert_eq!(
        status(&mut b, "alice", "http://app.test/a", Kind::Xhr).await,
        200
    );
}
