//! Integration tests: the sidecar against the real OpenID Provider (npm `oidc-provider`),
//! spoken to exactly as Traefik's forwardAuth speaks to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

const HOME: &str = "http://app.test/dashboard?tab=1";

async fn sidecar() -> Sidecar {
    let s = Sidecar::start(&config_yaml(shared_op(), "")).await;
    s.wait_ready(15).await;
    s
}

fn session_cookie_names(b: &Browser, mw: &str) -> Vec<String> {
    let prefix = format!("TraefikOidcSidecar.{mw}.session.");
    b.cookies(APP_HOST)
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect()
}

#[tokio::test]
async fn anonymous_navigation_redirects_to_the_op_with_pkce_state_and_nonce() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302);
    let loc = r.location();
    assert!(loc.starts_with(&format!("{}/auth?", shared_op())), "{loc}");
    let q = query(&loc);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "sidecar");
    assert_eq!(q["redirect_uri"], "http://app.test/oidc/callback");
    assert_eq!(q["scope"], "openid profile email groups");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    // The flow cookie carries the state's id in its name; it is HttpOnly, Lax, 10 minutes.
    let flow = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.contains(".flow."))
        .unwrap()
        .to_string();
    assert!(
        flow.starts_with(&format!(
            "TraefikOidcSidecar.default.flow.{}=",
            &q["state"][..16]
        )),
        "{flow}"
    );
    assert!(
        flow.contains("HttpOnly") && flow.contains("SameSite=Lax") && flow.contains("Max-Age=600"),
        "{flow}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn login_then_check_gives_identity_headers_and_strips_our_cookies() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    b.set_cookie(APP_HOST, "theme", "dark");
    let r = b.login(HOME, "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(r.location(), HOME, "back to the original URL");
    assert_eq!(
        session_cookie_names(&b, "default"),
        ["TraefikOidcSidecar.default.session.0"]
    );
    assert!(
        b.cookies(APP_HOST).keys().all(|k| !k.contains(".flow.")),
        "flow cookie dropped"
    );

    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert_eq!(r.header("x-forwarded-email"), Some("alice@example.test"));
    assert_eq!(r.header("x-forwarded-groups"), Some("admins,users"));
    // The Cookie header for the upstream keeps the app's cookies and drops ours.
    assert_eq!(r.header("cookie"), Some("theme=dark"));
    // XHRs with the session pass too.
    assert_eq!(b.app("http://app.test/api/x", Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn xhr_without_session_gets_401_problem_json() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    let r = b.app("http://app.test/api/items", Kind::Xhr).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["status"], 401);
    assert!(r.header("location").is_none());
    // UnauthenticatedBehavior: Unauthorized answers 401 even to navigations.
    let mut api = Browser::new(&s, "api");
    assert_eq!(api.app(HOME, Kind::Navigate).await.status, 401);
}

#[tokio::test]
async fn failing_assertion_is_403_and_passing_one_gets_templated_headers() {
    let s = sidecar().await;
    let mut bob = Browser::new(&s, "admins");
    let r = bob.login(HOME, "bob").await;
    // Decided at the callback: the callback itself is the 403, and the session is still
    // written (another middleware of the scope may admit it).
    assert_eq!(r.status, 403, "{r:#?}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("location").is_none());
    assert!(!session_cookie_names(&bob, "admins").is_empty(), "{r:#?}");
    let r = bob.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 403);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("location").is_none(), "no redirect loop");
    let r = bob.app("http://app.test/api", Kind::Xhr).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));

    let mut alice = Browser::new(&s, "admins");
    alice.login(HOME, "alice").await;
    let r = alice.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-name"), Some("Alice Admin"));
    assert_eq!(r.header("x-auth-groups"), Some("[admins users]"));
    assert_eq!(
        r.all("x-auth-role"),
        ["role:admins", "role:users"],
        "Values: one line per element"
    );
    assert!(
        r.header("x-auth-token")
            .is_some_and(|t| t.starts_with("Bearer ") && t.len() > 20),
        "{r:#?}"
    );
    assert!(
        r.header("x-forwarded-user").is_none(),
        "Headers replaces the default set"
    );
}

#[tokio::test]
async fn unauthorized_challenge_redirects_once_without_prompt_then_403() {
    let s = sidecar().await;
    let mut bob = Browser::new(&s, "challenge");
    // Decided at the callback: the first failure challenges from the callback itself.
    let r = bob.login(HOME, "bob").await;
    assert_eq!(r.status, 302, "first failure challenges: {r:#?}");
    let auth = r.location();
    assert!(auth.starts_with(shared_op()), "{auth}");
    // As traefik-oidc-auth: no prompt of its own, so the OP's SSO session answers at once.
    assert_eq!(query(&auth).get("prompt"), None, "{auth}");
    let r = bob.op_get(&auth).await;
    assert_eq!(r.status, 303, "authorize with an SSO session: {r:#?}");
    let cb = resolve(&auth, &r.location());
    assert!(
        cb.starts_with("http://app.test/oidc/callback?"),
        "the OP asked again instead of answering at once: {cb}"
    );
    // Still failing the assertion: now 403, not another loop.
    let r = bob.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(bob.app(HOME, Kind::Navigate).await.status, 403);
}

#[tokio::test]
async fn unauthorized_challenge_sends_a_configured_prompt() {
    let s = sidecar().await;
    let mut bob = Browser::new(&s, "challengeprompt");
    let r = bob.login(HOME, "bob").await;
    assert_eq!(r.status, 302, "first failure challenges: {r:#?}");
    let auth = r.location();
    assert_eq!(
        query(&auth).get("prompt").map(String::as_str),
        Some("login")
    );
    // prompt=login: the OP shows its login form despite the SSO session; then 403, no loop.
    let cb = bob.login_at_op(&auth, "bob", "bob").await;
    assert_eq!(bob.app(&cb, Kind::Navigate).await.status, 403);
    assert_eq!(bob.app(HOME, Kind::Navigate).await.status, 403);
}

#[tokio::test]
async fn logout_clears_session_and_goes_through_end_session() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    let cb = b.login(HOME, "alice").await;
    // The ID token travels in its own cookie, sent to the logout path only.
    let hint = cb
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("TraefikOidcSidecar.default.hint.0="))
        .expect("a logout-hint cookie");
    assert!(hint.contains("Path=/logout"), "{hint}");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200);
    assert!(!r.header("cookie").unwrap_or("").contains("hint"), "{r:#?}");

    let r = b.app("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(r.status, 302);
    let loc = r.location();
    assert!(
        loc.starts_with(&format!("{}/session/end?", shared_op())),
        "{loc}"
    );
    let q = query(&loc);
    assert_eq!(q["client_id"], "sidecar");
    assert_eq!(q["post_logout_redirect_uri"], "http://app.test/");
    assert!(q["id_token_hint"].starts_with("eyJ"));
    assert!(
        session_cookie_names(&b, "default").is_empty(),
        "session cookies expired"
    );
    assert_eq!(b.app(HOME, Kind::Navigate).await.status, 302, "logged out");

    // At the OP: confirm, and land on the post-logout target.
    let page = b.op_get(&loc).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let xsrf = common::xsrf(&page);
    let confirm = resolve(&loc, "/session/end/confirm");
    let r = b
        .op_post(&confirm, &[("xsrf", &xsrf), ("logout", "yes")])
        .await;
    assert_eq!(r.status, 303, "{r:#?}");
    assert!(
        r.location().starts_with("http://app.test/"),
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn logout_target_validation() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    let ok = [
        ("/bye", "http://app.test/bye"),
        ("http://app.test/bye", "http://app.test/bye"),
    ];
    for (target, want) in ok {
        let url = format!(
            "http://app.test/logout?post_logout_redirect_uri={}",
            urlencode(target)
        );
        let r = b.app(&url, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{target}");
        assert_eq!(query(&r.location())["post_logout_redirect_uri"], want);
    }
    let bad = [
        "//evil.test",
        "/\\evil.test",
        "https://evil.test",
        "http://app.test@evil.test/",
        "/%2f%2fevil.test",
        "/%09/evil.test",
        "javascript:alert(1)",
        "http://app.test/bye/../x",
    ];
    for target in bad {
        for param in ["redirect_uri", "post_logout_redirect_uri"] {
            let url = format!("http://app.test/logout?{param}={}", urlencode(target));
            let r = b.app(&url, Kind::Navigate).await;
            assert_eq!(r.status, 400, "{param}={target}: {r:#?}");
            assert!(r.header("location").is_none());
        }
    }
}

fn urlencode(s: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn tampered_or_foreign_session_is_unauthenticated() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    b.login(HOME, "alice").await;
    let name = "TraefikOidcSidecar.default.session.0";
    let good = b.cookies(APP_HOST)[name].clone();
    let mut chars: Vec<char> = good.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    b.set_cookie(APP_HOST, name, &chars.into_iter().collect::<String>());
    assert_eq!(b.app("http://app.test/api", Kind::Xhr).await.status, 401);
    b.set_cookie(APP_HOST, name, &good[..good.len() - 10]);
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "truncated → login again");
    // A valid session of the `default` middleware does not open for `admins`, even when the
    // cookie is renamed to the other middleware's name.
    b.set_cookie(APP_HOST, name, &good);
    assert_eq!(b.app(HOME, Kind::Navigate).await.status, 200);
    let mut other = Browser::new(&s, "admins");
    other.set_cookie(APP_HOST, "TraefikOidcSidecar.admins.session.0", &good);
    assert_eq!(
        other.app("http://app.test/api", Kind::Xhr).await.status,
        401
    );
}

#[tokio::test]
async fn two_parallel_logins_in_one_browser_both_succeed() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    let r1 = b.app("http://app.test/one", Kind::Navigate).await;
    let r2 = b.app("http://app.test/two", Kind::Navigate).await;
    assert_eq!((r1.status, r2.status), (302, 302));
    let flows = b
        .cookies(APP_HOST)
        .keys()
        .filter(|k| k.contains(".flow."))
        .count();
    assert_eq!(flows, 2);
    let cb1 = b.login_at_op(&r1.location(), "alice", "alice").await;
    let cb2 = b.login_at_op(&r2.location(), "alice", "alice").await;
    let a = b.app(&cb2, Kind::Navigate).await;
    let c = b.app(&cb1, Kind::Navigate).await;
    assert_eq!(
        (a.status, a.location()),
        (302, "http://app.test/two".to_string())
    );
    assert_eq!(
        (c.status, c.location()),
        (302, "http://app.test/one".to_string())
    );
    assert_eq!(b.app(HOME, Kind::Navigate).await.status, 200);
}

#[tokio::test]
async fn callback_refuses_bad_state_and_replays_before_redeeming() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    // A state that did not start in this browser.
    let r = b.app("http://app.test/oidc/callback?code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Kind::Navigate).await;
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // Missing state.
    assert_eq!(
        b.app("http://app.test/oidc/callback?code=abc", Kind::Navigate)
            .await
            .status,
        400
    );
    // An IdP error is shown escaped.
    let r = b.app("http://app.test/oidc/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E", Kind::Navigate).await;
    assert_eq!(r.status, 401);
    assert!(
        !r.body.contains("<script>") && r.body.contains("&lt;script&gt;"),
        "{}",
        r.body
    );

    // A real login, then the same callback again: the flow cookie is gone, nothing is redeemed.
    let start = b.app(HOME, Kind::Navigate).await;
    let cb = b.login_at_op(&start.location(), "alice", "alice").await;
    assert_eq!(b.app(&cb, Kind::Navigate).await.status, 302);
    assert_eq!(b.app(&cb, Kind::Navigate).await.status, 400);
    // Another browser replaying the callback URL (stolen code) has no flow cookie either.
    let mut thief = Browser::new(&s, "default");
    assert_eq!(thief.app(&cb, Kind::Navigate).await.status, 400);
    // A wrong `iss` (RFC 9207 mix-up) is refused too.
    let mut c = Browser::new(&s, "default");
    let start = c.app(HOME, Kind::Navigate).await;
    let cb = c.login_at_op(&start.location(), "alice", "alice").await;
    let forged = cb.replace(&urlencode(shared_op()), &urlencode("http://127.0.0.1:1"));
    assert_ne!(forged, cb);
    assert_eq!(c.app(&forged, Kind::Navigate).await.status, 400);
}

#[tokio::test]
async fn forwarded_headers_are_checked() {
    let s = sidecar().await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |hs: Vec<(&'static str, &'static str)>| {
        let mut r = c
            .get(s.auth_url("default"))
            .header("Accept", "text/html")
            .header("Sec-Fetch-Mode", "navigate");
        for (k, v) in hs {
            r = r.header(k, v);
        }
        r.send()
    };
    let base = || {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.test"),
            ("X-Forwarded-Uri", "/"),
        ]
    };
    assert_eq!(send(base()).await.unwrap().status(), 302);
    let mut no_host = base();
    no_host.retain(|(k, _)| *k != "X-Forwarded-Host");
    let r = send(no_host).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text().await.unwrap().contains("X-Forwarded-Host"),
        "the problem names the header"
    );
    let mut no_uri = base();
    no_uri.retain(|(k, _)| *k != "X-Forwarded-Uri");
    assert_eq!(send(no_uri).await.unwrap().status(), 400);
    let mut dup = base();
    dup.push(("X-Forwarded-Host", "evil.test"));
    assert_eq!(send(dup).await.unwrap().status(), 400);
    let mut comma = base();
    comma.retain(|(k, _)| *k != "X-Forwarded-Host");
    comma.push(("X-Forwarded-Host", "app.test, evil.test"));
    assert_eq!(send(comma).await.unwrap().status(), 400);
    // Unknown middleware.
    assert_eq!(
        c.get(s.auth_url("nope")).send().await.unwrap().status(),
        404
    );
    // /metrics is not on the auth listener; it is on metricsListen.
    assert_eq!(
        c.get(format!("http://{}/metrics", s.addr))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let m = c
        .get(format!("http://{}/metrics", s.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(
            "traefik_oidc_sidecar_requests_total{middleware=\"default\",outcome=\"login_redirect\"}"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn untrusted_peer_never_gets_a_2xx() {
    let s = Sidecar::start(&config_yaml(shared_op(), "trustedProxies: [10.0.0.0/8]")).await;
    s.wait_ready(15).await;
    let mut b = Browser::new(&s, "default");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 401, "{r:#?}");
    assert!(r.body.contains("trustedProxies"));
}

#[tokio::test]
async fn idp_down_at_start_then_up_and_down_again() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let s = Sidecar::start(&config_yaml(&issuer, "")).await;
    let c = reqwest::Client::new();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        c.get(format!("http://{}/readyz", s.addr))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let mut b = Browser::new(&s, "default");
    assert_eq!(
        b.app(HOME, Kind::Navigate).await.status,
        503,
        "no login without discovery"
    );
    assert_eq!(b.app(HOME, Kind::Xhr).await.status, 401);

    let mut op = Op::start(port);
    s.wait_ready(40).await;
    let r = b.login(HOME, "alice").await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(b.app(HOME, Kind::Navigate).await.status, 200);

    // The IdP goes away: existing sessions keep working, new logins get a clear 503 at the
    // callback (the authorize redirect needs nothing from the IdP once discovery is loaded).
    let cb = {
        let mut other = Browser::new(&s, "default");
        let r = other.app("http://app.test/x", Kind::Navigate).await;
        let cb = other.login_at_op(&r.location(), "alice", "alice").await;
        op.stop();
        // The callback belongs to `other`'s flow; replay it in `other`.
        other.app(&cb, Kind::Navigate).await
    };
    assert_eq!(cb.status, 503, "{cb:#?}");
    assert_eq!(
        b.app(HOME, Kind::Navigate).await.status,
        200,
        "session survives the IdP outage"
    );
}

#[tokio::test]
async fn bypass_rule_forward_behaviours_and_include_when() {
    let s = sidecar().await;
    let mut anon = Browser::new(&s, "public");
    for (uri, want) in [
        ("/public/page", 200),
        ("/health", 200),
        ("/public/../admin", 302),
        ("/public/%2e%2e/admin", 302),
        ("/public/..;/admin", 302),
        ("/public%2F..%2Fadmin", 302),
        ("/%70ublic/x", 302),
        ("/admin?next=/public", 302),
        ("/health/", 302),
    ] {
        let r = anon
            .forward("http", APP_HOST, uri, Kind::Navigate, &[])
            .await;
        assert_eq!(r.status, want, "{uri}");
        assert!(
            r.header("x-user").is_none(),
            "no identity without a session"
        );
    }
    // The callback and logout paths are never bypassed, even when the rule names them.
    assert_eq!(
        anon.app(
            "http://app.test/oidc/callback?code=x&state=y",
            Kind::Navigate
        )
        .await
        .status,
        400
    );
    assert_eq!(
        anon.app("http://app.test/logout", Kind::Navigate)
            .await
            .status,
        302
    );
    assert!(
        anon.app("http://app.test/logout", Kind::Navigate)
            .await
            .location()
            .contains("/session/end")
    );

    // bob fails the assertion; UnauthorizedBehavior: Forward lets him through with only the
    // IncludeWhen: Always header. alice passes and gets both.
    let mut bob = Browser::new(&s, "public");
    bob.login("http://app.test/x", "bob").await;
    let r = bob.app("http://app.test/x", Kind::Navigate).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-user"), Some("bob"));
    assert!(r.header("x-email").is_none());
    let r = bob.app("http://app.test/public/y", Kind::Navigate).await;
    assert_eq!((r.status, r.header("x-user")), (200, Some("bob")));
    assert!(
        r.header("x-email").is_none(),
        "Authorized-only header on a public request"
    );
    let mut alice = Browser::new(&s, "public");
    alice.login("http://app.test/x", "alice").await;
    let r = alice.app("http://app.test/x", Kind::Xhr).await;
    assert_eq!(
        (r.header("x-user"), r.header("x-email")),
        (Some("alice"), Some("alice@example.test"))
    );

    // UnauthenticatedBehavior: Forward passes anonymous requests without identity.
    let mut open = Browser::new(&s, "open");
    let r = open.app("http://app.test/x", Kind::Navigate).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-forwarded-user").is_none());
}

#[tokio::test]
async fn login_uri_redirect_validation_prompt_and_authorization_params() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "login");
    // LoginUri always starts a login, even for an XHR; extra parameters are passed, reserved
    // ones (state) are not overridden, the resource indicator is sent.
    let r = b
        .app(
            "http://app.test/login?redirect_uri=%2Fafter&prompt=login",
            Kind::Xhr,
        )
        .await;
    assert_eq!(r.status, 302, "{r:#?}");
    let q = query(&r.location());
    assert_eq!(q["prompt"], "login");
    assert_eq!(q["acr_values"], "urn:test:loa:1");
    assert_eq!(q["login_hint"], "demo");
    assert_eq!(q["resource"], "https://api.example.test/");
    assert_ne!(q["state"], "must-be-ignored");
    // The login completes and returns to the validated target.
    let cb = b.login_at_op(&r.location(), "alice", "alice").await;
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(
        (r.status, r.location()),
        (302, "http://app.test/after".to_string()),
        "{r:#?}"
    );
    // CheckOnEveryRequest with a passing assertion.
    assert_eq!(b.app("http://app.test/x", Kind::Xhr).await.status, 200);

    for bad in [
        "//evil.test",
        "https://evil.test/",
        "http://other.test/welcome/x",
        "/\\evil",
    ] {
        let url = format!("http://app.test/login?redirect_uri={}", urlencode(bad));
        assert_eq!(b.app(&url, Kind::Navigate).await.status, 400, "{bad}");
    }
    assert_eq!(
        b.app("http://app.test/login?prompt=evil", Kind::Navigate)
            .await
            .status,
        400
    );
    // An allow-listed absolute target on another host is accepted.
    let url = format!(
        "http://app.test/login?redirect_uri={}",
        urlencode("http://other.test/welcome")
    );
    assert_eq!(b.app(&url, Kind::Navigate).await.status, 302);
}

#[tokio::test]
async fn error_pages_custom_file_redirect_and_default_buttons() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-pages");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join(format!("403-{}.html", std::process::id()));
    std::fs::write(&page, "<!DOCTYPE html><title>{{ .statusCode }}</title><h1>{{ .statusName }}</h1><p>{{ .description }}</p><a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>").unwrap();
    let yaml = format!(
        "middlewares:\n  pages:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    Scopes: [openid, profile, email, groups]\n    UnauthenticatedBehavior: Unauthorized\n    LoginUri: /login\n    Authorization:\n      AssertClaims:\n        - Name: groups\n          AnyOf: [admins]\n    ErrorPages:\n      Unauthorized:\n        FilePath: {}\n  redirecting:\n    Provider:\n      Url: {issuer}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    UnauthenticatedBehavior: Unauthorized\n    ErrorPages:\n      Unauthenticated:\n        RedirectTo: https://status.example.test/login-required\n",
        page.display(),
        issuer = shared_op(),
    );
    let s = Sidecar::start(&yaml).await;
    s.wait_ready(15).await;

    // Built-in 401 page with a Log in button (LoginUri is set); API clients get problem+json.
    let mut b = Browser::new(&s, "pages");
    let r = b.app("http://app.test/x", Kind::Navigate).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("href=\"http://app.test/login\""),
        "{}",
        r.body
    );
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        b.app("http://app.test/x", Kind::Xhr)
            .await
            .header("content-type"),
        Some("application/problem+json")
    );

    // The custom 403 page, rendered with escaped values.
    let start = b.app("http://app.test/login", Kind::Navigate).await;
    let cb = b.login_at_op(&start.location(), "bob", "bob").await;
    // The callback itself answers with the custom 403 page.
    let r = b.app(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 403, "{r:#?}");
    assert!(
        r.body.starts_with("<!DOCTYPE html><title>403</title>"),
        "{}",
        r.body
    );
    let r = b.app("http://app.test/x", Kind::Navigate).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .starts_with("<!DOCTYPE html><title>403</title><h1>Access denied</h1>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("href=\"http://app.test/logout\">Log out</a>"),
        "{}",
        r.body
    );

    // RedirectTo for navigations only.
    let mut c = Browser::new(&s, "redirecting");
    let r = c.app("http://app.test/x", Kind::Navigate).await;
    assert_eq!(
        (r.status, r.location()),
        (
            302,
            "https://status.example.test/login-required".to_string()
        )
    );
    assert_eq!(c.app("http://app.test/x", Kind::Xhr).await.status, 401);
}

#[tokio::test]
async fn userinfo_claims_are_merged_once_at_login() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "userinfo");
    b.login("http://app.test/", "alice").await;
    let r = b.app("http://app.test/", Kind::Xhr).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-info"), Some("info-for-alice"), "{r:#?}");
    assert_eq!(r.header("x-user"), Some("alice"));
    // The ID token itself does not carry the claim: it came from UserInfo.
    let codec = test_codec(&s, "userinfo");
    let header = b.cookie_string(APP_HOST);
    let cookies =
        traefik_oidc_sidecar::session::RequestCookies::parse([header.as_str()].into_iter());
    let session = codec.open_session(&cookies).unwrap();
    assert_eq!(
        session.id_token, None,
        "the ID token is the logout hint, not in the session"
    );
    let id_token = codec.read_hint(&cookies).unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(
        payload.contains("\"preferred_username\":\"alice\""),
        "{payload}"
    );
    assert!(!payload.contains("userinfo_only"), "{payload}");
}

#[tokio::test]
async fn sessions_survive_a_sidecar_restart_with_the_same_secret() {
    let yaml = config_yaml(shared_op(), "");
    let first = Sidecar::start(&yaml).await;
    first.wait_ready(15).await;
    let mut b = Browser::new(&first, "default");
    b.login(HOME, "alice").await;
    let cookies = b.cookies(APP_HOST);
    drop(first);
    // A new process (new keys in memory, nothing shared but the configuration).
    let second = Sidecar::start(&yaml).await;
    second.wait_ready(15).await;
    let mut again = Browser::new(&second, "default");
    for (k, v) in &cookies {
        again.set_cookie(APP_HOST, k, v);
    }
    let r = again.app(HOME, Kind::Xhr).await;
    assert_eq!(
        (r.status, r.header("x-forwarded-user")),
        (200, Some("alice"))
    );
    // Another Secret (a rotation) logs everyone out.
    let rotated =
        Sidecar::start(&yaml.replace(SECRET, "a-rotated-secret-of-at-least-32-bytes-long")).await;
    rotated.wait_ready(15).await;
    let mut after = Browser::new(&rotated, "default");
    for (k, v) in &cookies {
        after.set_cookie(APP_HOST, k, v);
    }
    assert_eq!(after.app(HOME, Kind::Xhr).await.status, 401);
}

#[tokio::test]
async fn go_templates_in_headers_and_pages_and_a_failing_header_is_a_500() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-pages");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join(format!("toa-403-{}.html", std::process::id()));
    // A page in traefik-oidc-auth's own style: conditions around the buttons.
    std::fs::write(
        &page,
        "<title>{{ .statusName }}</title>\n<h1>{{ .statusCode }}</h1>\n{{- if .primaryButtonUrl }}\n<a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>\n{{- else }}\nno button\n{{- end }}\n{{ with .secondaryButtonUrl }}<a class=\"s\" href=\"{{ . }}\">2</a>{{ end }}",
    )
    .unwrap();
    let common = format!(
        "    Provider:\n      Url: {}\n      ClientId: sidecar\n      ClientSecret: sidecar-secret\n    Secret: {SECRET}\n    Scopes: [openid, profile, email, groups]\n",
        shared_op()
    );
    let yaml = format!(
        "middlewares:\n  tpl:\n{common}    Authorization:\n      AssertClaims:\n        - Name: groups\n          AnyOf: [admins]\n    ErrorPages:\n      Unauthorized:\n        FilePath: {}\n    Headers:\n      - Name: X-Who\n        Value: '{{{{ if eq .claims.preferred_username \"alice\" }}}}admin:{{{{ .claims.name }}}}{{{{ else if .claims.email }}}}mail{{{{ else }}}}anon{{{{ end }}}}'\n      - Name: X-Groups-Json\n        Value: '[{{{{with .claims.groups}}}}{{{{ range $i, $g := . }}}}{{{{if $i}}}},{{{{end}}}}\"{{{{js $g}}}}\"{{{{end}}}}{{{{end}}}}]'\n      - Name: X-Missing\n        Value: '{{{{ .claims.nope.deeper }}}}'\n  broken:\n{common}    Headers:\n      - Name: X-Bad\n        Value: '{{{{ range .claims.email }}}}{{{{ . }}}}{{{{ end }}}}'\n",
        page.display(),
    );
    let s = Sidecar::start(&yaml).await;
    s.wait_ready(15).await;

    let mut alice = Browser::new(&s, "tpl");
    alice.login(HOME, "alice").await;
    let r = alice.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-who"), Some("admin:Alice Admin"));
    assert_eq!(r.header("x-groups-json"), Some("[\"admins\",\"users\"]"));
    assert!(
        r.header("x-missing").is_none(),
        "a missing value prints nothing"
    );

    // Bob fails the assertion: the custom page, rendered through its conditions.
    let mut bob = Browser::new(&s, "tpl");
    bob.login(HOME, "bob").await;
    let r = bob.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.starts_with("<title>Access denied</title>\n<h1>403</h1>\n<a href=\"http://app.test/logout\">Log out</a>\n"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("no button"), "{}", r.body);

    // A header whose template fails on this session's claims fails the request closed.
    let mut c = Browser::new(&s, "broken");
    c.login(HOME, "alice").await;
    let r = c.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 500, "{r:#?}");
    assert!(r.header("x-bad").is_none());
    assert!(!r.body.contains("alice@example.test"), "{}", r.body);
}

/// The forwardAuth routes are answered without the router (`routes::AuthService`) unless their
/// segment is percent-encoded, which only the router decodes: both ways must give the same
/// answer to the same request, allowed, refused or unknown.
#[tokio::test]
async fn the_direct_routes_and_the_router_answer_alike() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    b.set_cookie(APP_HOST, "theme", "dark");
    assert_eq!(b.login(HOME, "alice").await.status, 302);
    let comparable = |r: &Resp| {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
            .cloned()
            .collect();
        h.sort();
        (r.status, h, r.body.clone())
    };
    // (direct spelling, the router's spelling of the same name, expected status)
    for (direct, routed, status) in [("default", "%64efault", 200), ("nope", "%6Eope", 404)] {
        for kind in [Kind::Navigate, Kind::Xhr] {
            b.middleware = direct.into();
            let fast = b.app(HOME, kind).await;
            b.middleware = routed.into();
            let slow = b.app(HOME, kind).await;
            assert_eq!(fast.status, status, "{direct} {kind:?}: {fast:#?}");
            assert_eq!(comparable(&fast), comparable(&slow), "{direct} {kind:?}");
        }
    }
    // A refusal the domain makes (a session for another scope's cookie names is anonymous,
    // an XHR without one gets 401) is the same both ways too.
    let mut anon = Browser::new(&s, "default");
    let fast = anon.app("http://app.test/api/x", Kind::Xhr).await;
    anon.middleware = "%64efault".into();
    let slow = anon.app("http://app.test/api/x", Kind::Xhr).await;
    assert_eq!(fast.status, 401);
    assert_eq!(comparable(&fast), comparable(&slow));
}
