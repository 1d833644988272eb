//! Silent login (`SilentLogin: true`, issue 21 §4) against the real OP (npm `oidc-provider`):
//! a browser the OP knows comes back identified without a page; a browser it does not know lands
//! back anonymously with the marker, and its next navigations do not go to the OP; XHR, `POST`
//! and `HEAD` never go; the marker does not stop `LoginUri`, and a real login clears it; every
//! failure at a silent callback is anonymous, never identity; the load (YAML, reload, inline
//! block) refuses `SilentLogin` without `UnauthenticatedBehavior: Forward`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::reload;

const HOME: &str = "http://app.test/news?page=2";
const MARKER: &str = "TraefikOidcSidecar.silent.silent";
const SESSION: &str = "TraefikOidcSidecar.silent.session.0";

/// The standard middlewares plus `silent` (its own scope: anonymous visitors are forwarded,
/// known ones identified silently) with `LoginUri`.
fn yaml(issuer: &str) -> String {
    let mut y = config_yaml(issuer, "");
    y.push_str(&silent_block(issuer, "Forward"));
    y
}

fn silent_block(issuer: &str, behavior: &str) -> String {
    format!(
        r#"  silent:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.silent
    UnauthenticatedBehavior: {behavior}
    SilentLogin: true
    LoginUri: /login
    SessionCookie:
      Secure: false
"#
    )
}

async fn sidecar() -> Sidecar {
    let s = Sidecar::start(&yaml(shared_op())).await;
    s.wait_ready(15).await;
    s
}

/// Whether the OP's answer to an authorization request went straight back to the app (no login
/// page, no interaction).
fn straight_back(r: &Resp, authorize: &str) -> String {
    assert_eq!(r.status, 303, "{r:#?}");
    let back = resolve(authorize, &r.location());
    assert!(
        back.starts_with(&format!("http://{APP_HOST}/oidc/callback?")),
        "the OP showed something instead of answering: {back}"
    );
    back
}

/// A navigation to `HOME` through `silent`: the redirect to the OP with `prompt=none`.
async fn silent_attempt(b: &mut Browser) -> String {
    b.middleware = "silent".into();
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let loc = r.location();
    assert!(loc.starts_with(&format!("{}/auth?", shared_op())), "{loc}");
    assert_eq!(query(&loc)["prompt"], "none", "{loc}");
    assert!(
        r.cookies_set()
            .iter()
            .any(|c| c.starts_with("TraefikOidcSidecar.silent.flow.")),
        "its own flow cookie: {r:#?}"
    );
    loc
}

/// A fresh browser that tried silently and landed anonymously with the marker.
async fn landed_anonymous(s: &Sidecar) -> Browser {
    let mut b = Browser::new(s, "silent");
    let authorize = silent_attempt(&mut b).await;
    let back = straight_back(&b.op_get(&authorize).await, &authorize);
    assert_eq!(query(&back)["error"], "login_required", "{back}");
    let r = b.app(&back, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(r.location(), HOME, "back on the page it came from");
    let marker = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{MARKER}=")))
        .unwrap_or_else(|| panic!("no marker: {r:#?}"))
        .to_string();
    assert!(
        marker.contains("Max-Age=300") && marker.contains("HttpOnly"),
        "{marker}"
    );
    assert!(!b.cookies(APP_HOST).contains_key(SESSION), "no session");
    assert!(
        b.cookies(APP_HOST).keys().all(|k| !k.contains(".flow.")),
        "flow cookie dropped"
    );
    b
}

#[tokio::test]
async fn a_visitor_the_op_knows_comes_back_identified_without_a_page() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "default");
    // An OP session made through another route (another scope: no session of `silent`).
    assert_eq!(
        b.login("http://app.test/elsewhere", "alice").await.status,
        302
    );
    assert!(!b.cookies(APP_HOST).contains_key(SESSION));

    let authorize = silent_attempt(&mut b).await;
    let back = straight_back(&b.op_get(&authorize).await, &authorize);
    assert!(query(&back).contains_key("code"), "{back}");
    let r = b.app(&back, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(r.location(), HOME);
    assert!(r.cookies_set().contains(&SESSION.to_string()), "{r:#?}");
    assert!(!r.cookies_set().contains(&MARKER.to_string()));

    b.set_cookie(APP_HOST, "theme", "dark");
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert_eq!(r.header("x-forwarded-email"), Some("alice@example.test"));
    // The scope's own cookies are stripped (the other route's scope is not this one's).
    let upstream = r.header("cookie").unwrap();
    assert!(
        upstream.contains("theme=dark") && !upstream.contains("TraefikOidcSidecar.silent."),
        "{upstream}"
    );
    // XHR with the session: identified too.
    assert_eq!(
        b.app(HOME, Kind::Xhr).await.header("x-forwarded-user"),
        Some("alice")
    );
}

#[tokio::test]
async fn a_visitor_the_op_does_not_know_lands_anonymous_and_is_not_sent_again() {
    let s = sidecar().await;
    let mut b = landed_anonymous(&s).await;
    b.set_cookie(APP_HOST, "theme", "dark");
    for page in [HOME, "http://app.test/", "http://app.test/articles/1"] {
        let r = b.app(page, Kind::Navigate).await;
        assert_eq!(r.status, 200, "{page}: forwarded, not to the OP: {r:#?}");
        assert_eq!(r.header("location"), None);
        assert_eq!(r.header("x-forwarded-user"), None, "no identity");
        assert_eq!(
            r.header("cookie"),
            Some("theme=dark"),
            "the marker is ours: stripped"
        );
        assert!(r.all("set-cookie").is_empty(), "{r:#?}");
    }
    // A marker from another browser's scope does not open here: a marker is not transferable
    // between scopes (a forged one counts as absent: one more attempt, never identity).
    let mut c = Browser::new(&s, "silent");
    c.set_cookie(APP_HOST, MARKER, "1999999999");
    silent_attempt(&mut c).await;
}

#[tokio::test]
async fn xhr_post_and_head_never_go_to_the_op() {
    let s = sidecar().await;
    let mut b = Browser::new(&s, "silent");
    let r = b.app(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.all("set-cookie").is_empty());
    // Navigation headers, other methods.
    for method in ["POST", "HEAD", "PUT"] {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(s.auth_url("silent"))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", APP_HOST)
            .header("X-Forwarded-Uri", "/news")
            .header("Sec-Fetch-Mode", "navigate")
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert!(r.headers().get("location").is_none(), "{method}");
        assert!(r.headers().get("set-cookie").is_none(), "{method}");
    }
    // The callback, logout and login paths are never silent attempts.
    let r = b.app("http://app.test/logout", Kind::Navigate).await;
    assert!(
        r.header("location")
            .is_none_or(|l| !l.contains("prompt=none")),
        "{r:#?}"
    );
}

#[tokio::test]
async fn the_marker_does_not_stop_an_explicit_login_and_a_real_login_clears_it() {
    let s = sidecar().await;
    let mut b = landed_anonymous(&s).await;
    let r = b.app("http://app.test/login", Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let authorize = r.location();
    assert!(!query(&authorize).contains_key("prompt"), "{authorize}");
    let back = b.login_at_op(&authorize, "bob", "bob").await;
    let r = b.app(&back, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    let cleared = r
        .all("set-cookie")
        .into_iter()
        .any(|c| c.starts_with(&format!("{MARKER}=;")) && c.contains("Max-Age=0"));
    assert!(cleared, "the marker is cleared: {r:#?}");
    assert!(!b.cookies(APP_HOST).contains_key(MARKER));
    let r = b.app(HOME, Kind::Navigate).await;
    assert_eq!(r.header("x-forwarded-user"), Some("bob"), "{r:#?}");
}

#[tokio::test]
async fn every_failure_at_a_silent_callback_is_anonymous() {
    let s = sidecar().await;
    // Another error than the four of OIDC Core §3.1.2.6, and a code that does not redeem.
    for bad in ["error=access_denied", "code=not-a-code"] {
        let mut b = Browser::new(&s, "silent");
        let authorize = silent_attempt(&mut b).await;
        let state = &query(&authorize)["state"];
        let r = b
            .app(
                &format!("http://app.test/oidc/callback?{bad}&state={state}"),
                Kind::Navigate,
            )
            .await;
        assert_eq!(r.status, 302, "{bad}: {r:#?}");
        assert_eq!(r.location(), HOME, "{bad}");
        assert!(r.cookies_set().contains(&MARKER.to_string()), "{bad}");
        assert!(!b.cookies(APP_HOST).contains_key(SESSION), "{bad}");
        let r = b.app(HOME, Kind::Navigate).await;
        assert_eq!((r.status, r.header("x-forwarded-user")), (200, None));
    }
    // An error whose state names no silent flow of this browser stays an error (a page, not a
    // landing): the sidecar cannot know it was silent.
    let mut b = Browser::new(&s, "silent");
    silent_attempt(&mut b).await;
    let r = b
        .app(
            "http://app.test/oidc/callback?error=login_required&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Kind::Navigate,
        )
        .await;
    r.assert_refused("unknown state");
    assert!(!r.cookies_set().contains(&MARKER.to_string()));
    // An ordinary login's error is still the error page.
    let mut b = Browser::new(&s, "default");
    let r = b.app(HOME, Kind::Navigate).await;
    let state = query(&r.location())["state"].clone();
    let r = b
        .app(
            &format!("http://app.test/oidc/callback?error=login_required&state={state}"),
            Kind::Navigate,
        )
        .await;
    r.assert_refused("an interactive login's error");
}

fn problems(yaml: &str) -> Vec<config::Problem> {
    match config::parse(yaml, &Env::process()) {
        Ok(_) => panic!("accepted: {yaml}"),
        Err(p) => p,
    }
}

#[tokio::test]
async fn silent_login_without_forward_is_refused_at_load_reload_and_registration() {
    let issuer = shared_op();
    let why = "needs UnauthenticatedBehavior: Forward";
    for behavior in ["Auto", "Challenge", "Unauthorized"] {
        let mut y = config_yaml(issuer, "");
        y.push_str(&silent_block(issuer, behavior));
        let p = problems(&y);
        assert!(
            p.iter()
                .any(|p| p.path == "middlewares.silent.SilentLogin" && p.message.contains(why)),
            "{behavior}: {p:#?}"
        );
    }
    // The default behaviour (Auto) too, and any spelling of the key.
    let mut y = config_yaml(issuer, "");
    y.push_str(
        &silent_block(issuer, "Forward")
            .replace("    UnauthenticatedBehavior: Forward\n", "")
            .replace("SilentLogin", "silentlogin"),
    );
    assert!(problems(&y).iter().any(|p| p.message.contains(why)), "{y}");

    // A reload refuses it and keeps serving the previous configuration.
    let good = yaml(issuer);
    let s = Sidecar::start(&good).await;
    s.wait_ready(15).await;
    let dir = std::env::temp_dir().join(format!("silent-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sidecar.yaml");
    std::fs::write(
        &path,
        good.replace(
            "UnauthenticatedBehavior: Forward\n    SilentLogin",
            "UnauthenticatedBehavior: Challenge\n    SilentLogin",
        ),
    )
    .unwrap();
    let running = config::parse(&good, &Env::process()).unwrap().config;
    let p = reload::reload_file(&s.app, &path, &running)
        .await
        .unwrap_err();
    assert!(p.iter().any(|p| p.message.contains(why)), "{p:#?}");
    let mut b = Browser::new(&s, "silent");
    silent_attempt(&mut b).await;
    let _ = std::fs::remove_dir_all(&dir);

    // An inline block: 422 naming the key; with Forward it registers.
    let token = "inline-registration-token-0123";
    let s = Sidecar::start(&format!(
        "logLevel: debug\ninline:\n  registrationToken: {token}\n  allowedProviderUrls: [\"{issuer}/\"]\n"
    ))
    .await;
    s.wait_ready(5).await;
    for (behavior, want) in [("Auto", 422), ("Forward", 201)] {
        let body = serde_json::to_vec(&json!({
            "Provider": {"Url": issuer, "ClientId": "sidecar", "ClientSecret": "sidecar-secret"},
            "Secret": SECRET,
            "SilentLogin": "true",
            "UnauthenticatedBehavior": behavior,
        }))
        .unwrap();
        let h = {
            use sha2::Digest as _;
            sha2::Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let r = reqwest::Client::new()
            .post(format!("http://{}/inline/{h}", s.addr))
            .header("Content-Type", "application/json")
            .header("X-Oidc-Sidecar-Middleware", "oidc@docker")
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "{behavior}: {text}");
        if want == 422 {
            assert!(text.contains("SilentLogin") && text.contains(why), "{text}");
        }
    }
}
