//! Hostile input from the client side, against the real OpenID Provider (tests/op) where the
//! login itself matters, and against the fake IdP of tests/hostile_idp.rs where the claims have
//! to be shaped: open-redirect payloads on logout, spoofed and ambiguous forwarded headers,
//! oversized and malformed cookies, callback abuse, probe requests, odd claims, and the
//! lifecycle of the sealed cookies (tampering, fixation, replay, parallel logins).
//!
//! The rule every test checks in its own way: no hostile request ever gets a 2xx it should not
//! get, and no redirect leaves the site.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "hostile/fake_idp.rs"]
mod fake_idp;
#[path = "hostile/harness.rs"]
mod harness;

use std::collections::BTreeMap;

use harness::*;
use serde_json::{Value, json};

fn op_yaml(issuer: &str, root: &str) -> String {
    format!(
        r#"
logLevel: warn
{root}
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.default
    Scopes: [openid, profile, email, groups]
    ValidPostLogoutRedirectUris: ["http://{APP}/bye"]
    SessionCookie:
      Secure: false
"#
    )
}

/// A sidecar against the shared real OP, ready.
async fn real() -> Running {
    let sc = Running::start(&op_yaml(common::shared_op(), "")).await;
    sc.ready().await;
    sc
}

/// A browser logged in as `user` at `sc`'s default middleware.
async fn logged_in(sc: &Running, user: &str) -> Agent {
    let mut a = Agent::new(sc, "default");
    let r = a.login(HOME, user).await;
    assert_eq!(r.status, 302, "login: {r:#?}");
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
    a
}

fn with_cookie(mut h: Vec<(String, Vec<u8>)>, cookie: &str) -> Vec<(String, Vec<u8>)> {
    h.push(("Cookie".into(), cookie.as_bytes().to_vec()));
    h
}

// ---------------------------------------------------------------------------------------------
// Redirect targets.

fn payloads() -> Vec<String> {
    include_str!("payloads/redirects.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            if l == "{EMPTY}" {
                return String::new();
            }
            l.replace("{TAB}", "\t")
                .replace("{LF}", "\n")
                .replace("{CR}", "\r")
                .replace("{NUL}", "\0")
                .replace("{SP}", " ")
                .replace("{VT}", "\u{b}")
                .replace("{FF}", "\u{c}")
                .replace("{DEL}", "\u{7f}")
                .replace("{NBSP}", "\u{a0}")
                .replace("{LONGSLASH}", &"%2f".repeat(700))
                .replace("{LONG}", &"a".repeat(3000))
        })
        .collect()
}

/// Checks one logout answer: a 400, or a 302 to the OP's end_session endpoint whose
/// post-logout target is a page of http://app.test. Returns whether the target was accepted.
#[track_caller]
fn stays_home(r: &Resp, op: &str, what: &str) -> bool {
    match r.status {
        400 => {
            assert!(
                r.header("location").is_none(),
                "{what}: 400 with a Location"
            );
            false
        }
        302 => {
            let loc = r.location();
            assert!(
                loc.starts_with(&format!("{op}/session/end?")),
                "{what}: Location {loc}"
            );
            let q = query(&loc);
            let target = q
                .get("post_logout_redirect_uri")
                .unwrap_or_else(|| panic!("{what}: no target in {loc}"));
            assert!(
                target.starts_with(&format!("http://{APP}/")),
                "{what}: leaves the site: {target:?}"
            );
            let u = reqwest::Url::parse(target)
                .unwrap_or_else(|e| panic!("{what}: target {target:?} does not parse: {e}"));
            assert_eq!(u.scheme(), "http", "{what}: {target:?}");
            assert_eq!(u.host_str(), Some(APP), "{what}: {target:?}");
            assert_eq!(u.port(), None, "{what}: {target:?}");
            assert!(
                u.username().is_empty() && u.password().is_none(),
                "{what}: {target:?}"
            );
            true
        }
        s => panic!("{what}: unexpected status {s}: {r:#?}"),
    }
}

#[tokio::test]
async fn logout_redirect_payloads_never_leave_the_site() {
    let sc = real().await;
    let a = Agent::new(&sc, "default");
    let op = common::shared_op();
    let list = payloads();
    assert!(list.len() >= 200, "only {} payloads", list.len());
    let (mut accepted, mut refused) = (0, 0);
    for p in &list {
        for param in ["redirect_uri", "post_logout_redirect_uri"] {
            // Form-encoded, as a browser following a link would send it.
            let uri = format!("/logout?{param}={}", enc(p));
            let r = a.raw(&traefik(APP, &uri, Kind::Navigate)).await;
            if stays_home(&r, op, &format!("{param}={p:?}")) {
                accepted += 1;
            } else {
                refused += 1;
            }
            // Raw, where an HTTP request line could carry it: the sidecar decodes it itself.
            if p.bytes().all(|b| b > b' ' && b < 0x7f && b != b'#') {
                let uri = format!("/logout?{param}={p}");
                let r = a.raw(&traefik(APP, &uri, Kind::Navigate)).await;
                stays_home(&r, op, &format!("raw {param}={p:?}"));
            }
        }
    }
    eprintln!(
        "{} payloads: {accepted} accepted (same-site), {refused} refused",
        list.len()
    );
    // Controls: plain same-site paths and the allow-listed URL are accepted, so the loop above
    // can tell a refusal from a broken endpoint.
    for ok in ["/", "/bye", "/after/logout?x=1", "http://app.test/bye"] {
        let uri = format!("/logout?post_logout_redirect_uri={}", enc(ok));
        let r = a.raw(&traefik(APP, &uri, Kind::Navigate)).await;
        assert!(stays_home(&r, op, ok), "{ok} must be accepted");
    }
    // The explicit parameter wins, and a repeated one is refused rather than guessed.
    let r = a
        .raw(&traefik(
            APP,
            "/logout?redirect_uri=%2F%2Fevil.test&post_logout_redirect_uri=%2Fbye",
            Kind::Navigate,
        ))
        .await;
    assert!(stays_home(&r, op, "both parameters"));
    let r = a
        .raw(&traefik(
            APP,
            "/logout?redirect_uri=%2Fbye&redirect_uri=%2F%2Fevil.test",
            Kind::Navigate,
        ))
        .await;
    assert_eq!(r.status, 400, "repeated parameter: {r:#?}");
}

// ---------------------------------------------------------------------------------------------
// Forwarded headers.

#[tokio::test]
async fn untrusted_peer_is_refused_even_with_a_valid_session() {
    let trusted = real().await;
    let alice = logged_in(&trusted, "alice").await;
    let op = common::shared_op();
    for root in [
        "trustedProxies: [10.0.0.0/8, 192.168.0.0/16]",
        "trustedProxies: []",
    ] {
        let sc = Running::start(&op_yaml(op, root)).await;
        sc.ready().await;
        let mut b = Agent::new(&sc, "default");
        for (k, v) in alice.session("default") {
            b.set(APP, &k, &v);
        }
        assert!(!b.session("default").is_empty());
        for (url, kind) in [
            (HOME, Kind::Navigate),
            (HOME, Kind::Xhr),
            ("http://app.test/logout", Kind::Navigate),
            (
                "http://app.test/oidc/callback?code=x&state=y",
                Kind::Navigate,
            ),
        ] {
            let r = b.forward(url, kind).await;
            assert_eq!(r.status, 401, "{root} {url}: {r:#?}");
            assert!(r.body.contains("trustedProxies"), "{}", r.body);
            assert!(r.header("location").is_none() && r.all("set-cookie").is_empty());
        }
    }
}

/// Spellings that some stacks fold into the real header name but HTTP does not.
fn aliases(name: &str) -> Vec<String> {
    vec![
        name.replace('-', "_"),
        name.replace('-', "_").to_ascii_lowercase(),
        name.replace('-', "_").to_ascii_uppercase(),
        name.replace('-', "."),
        name.replacen('-', "_", 1),
        name.rsplit_once('-')
            .map(|(a, b)| format!("{a}_{b}"))
            .unwrap(),
        name.replace('-', ""),
        format!("{name}-"),
        format!("X-{name}"),
    ]
}

#[tokio::test]
async fn forwarded_header_aliases_do_not_count() {
    let sc = real().await;
    let alice = logged_in(&sc, "alice").await;
    let cookie = alice.cookie_header(APP).unwrap();
    let base = traefik(APP, "/dashboard", Kind::Xhr);
    assert_eq!(
        alice.raw(&with_cookie(base.clone(), &cookie)).await.status,
        200
    );
    for (real, value) in [
        ("X-Forwarded-Host", "app.test"),
        ("X-Forwarded-Uri", "/dashboard"),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "http"),
    ] {
        for alias in aliases(real) {
            // Only the alias: the real header is missing, whatever the alias says.
            let mut h: Vec<_> = base.iter().filter(|(k, _)| k != real).cloned().collect();
            h.push((alias.clone(), value.as_bytes().to_vec()));
            let r = alice.raw(&with_cookie(h, &cookie)).await;
            assert_eq!(r.status, 400, "{alias} instead of {real}: {r:#?}");
            assert!(
                r.body.contains(real),
                "the problem names {real}: {}",
                r.body
            );
        }
    }
    // Next to the real header, an alias with another value changes nothing.
    let mut anon = Agent::new(&sc, "default");
    for alias in aliases("X-Forwarded-Host") {
        let r = anon
            .forward_with(HOME, Kind::Navigate, &[(alias.as_str(), "evil.test")])
            .await;
        assert_eq!(r.status, 302);
        assert_eq!(
            query(&r.location())["redirect_uri"],
            "http://app.test/oidc/callback",
            "{alias}"
        );
    }
}

#[tokio::test]
async fn duplicated_or_listed_forwarded_headers_are_refused() {
    let sc = real().await;
    let alice = logged_in(&sc, "alice").await;
    let cookie = alice.cookie_header(APP).unwrap();
    let base = with_cookie(traefik(APP, "/", Kind::Navigate), &cookie);
    for (name, good, evil) in [
        ("X-Forwarded-Method", "GET", "POST"),
        ("X-Forwarded-Proto", "http", "https"),
        ("X-Forwarded-Host", "app.test", "evil.test"),
        ("X-Forwarded-Uri", "/", "/admin"),
    ] {
        let variants: Vec<Vec<String>> = vec![
            vec![good.into(), good.into()],
            vec![good.into(), evil.into()],
            vec![evil.into(), good.into()],
            vec![format!("{good}, {evil}")],
            vec![format!("{evil},{good}")],
            vec![format!("{good},{good}")],
            vec![format!("{good},")],
        ];
        for values in variants {
            let mut h: Vec<_> = base.iter().filter(|(k, _)| k != name).cloned().collect();
            for v in &values {
                h.push((name.to_string(), v.as_bytes().to_vec()));
            }
            let r = alice.raw(&h).await;
            assert_eq!(r.status, 400, "{name}: {values:?}: {r:#?}");
        }
    }
}

#[tokio::test]
async fn a_comma_inside_the_request_uri_is_not_a_header_list() {
    let sc = real().await;
    let mut alice = logged_in(&sc, "alice").await;
    for url in [
        "http://app.test/items?ids=1,2,3",
        "http://app.test/maps/@52.5,13.4,12z",
    ] {
        let r = alice.forward(url, Kind::Xhr).await;
        assert_eq!(r.status, 200, "{url}: {r:#?}");
    }
}

#[tokio::test]
async fn rewrite_headers_are_ignored() {
    let sc = real().await;
    let mut alice = logged_in(&sc, "alice").await;
    let spoofs: &[(&str, &str)] = &[
        ("X-Original-URL", "/logout"),
        ("X-Rewrite-URL", "/logout"),
        ("X-Original-URI", "/logout"),
        ("X-Forwarded-Prefix", "/logout"),
        ("X-Forwarded-Path", "/logout"),
        ("X-Envoy-Original-Path", "/logout"),
        ("X-Original-Method", "POST"),
        ("X-HTTP-Method-Override", "POST"),
        ("Forwarded", "host=evil.test;proto=https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Server", "evil.test"),
        ("X-Host", "evil.test"),
    ];
    let r = alice
        .forward_with("http://app.test/", Kind::Navigate, spoofs)
        .await;
    assert_eq!(r.status, 200, "a normal check, not a logout: {r:#?}");
    assert!(r.all("set-cookie").is_empty(), "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert_eq!(
        alice.forward(HOME, Kind::Xhr).await.status,
        200,
        "still logged in"
    );

    // Anonymous: a rewrite header naming the callback or a health path is just a login.
    let mut anon = Agent::new(&sc, "default");
    for target in [
        "/oidc/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/healthz",
        "/logout",
    ] {
        let extra: Vec<(&str, &str)> = ["X-Original-URL", "X-Rewrite-URL", "X-Original-URI"]
            .iter()
            .map(|h| (*h, target))
            .chain([("Forwarded", "host=evil.test")])
            .collect();
        let r = anon.forward_with(HOME, Kind::Navigate, &extra).await;
        assert_eq!(r.status, 302, "{target}: {r:#?}");
        let loc = r.location();
        assert!(
            loc.starts_with(&format!("{}/auth?", common::shared_op())),
            "{loc}"
        );
        assert_eq!(query(&loc)["redirect_uri"], "http://app.test/oidc/callback");
        assert_eq!(anon.forward_with(HOME, Kind::Xhr, &extra).await.status, 401);
    }
    // The callback path itself, without a login in progress, is refused, never allowed.
    for uri in [
        "/oidc/callback",
        "/oidc/callback?code=x",
        "/oidc/callback?state=",
    ] {
        for kind in [Kind::Navigate, Kind::Xhr] {
            let r = anon.raw(&traefik(APP, uri, kind)).await;
            assert_eq!(r.status, 400, "{uri}: {r:#?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fail closed: size, shape, probes, listeners.

#[tokio::test]
async fn oversized_and_malformed_cookies_fail_closed() {
    let sc = real().await;
    let alice = logged_in(&sc, "alice").await;
    let good = alice.session("default")[&chunk("default", 0)].clone();
    let c0 = chunk("default", 0);
    let junk_cookies = (0..1000)
        .map(|i| format!("junk{i:04}={}", "x".repeat(95)))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(junk_cookies.len() >= 100_000);
    let fifty = |first: &str| {
        (0..50)
            .map(|i| {
                let v = if i == 0 {
                    first.to_string()
                } else {
                    "A".repeat(1000)
                };
                format!("{}={v}", chunk("default", i))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut flipped = good.clone().into_bytes();
    flipped[good.len() / 2] ^= 1;
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "100 KB of junk cookies",
            vec![junk_cookies.clone().into_bytes()],
        ),
        (
            "a 100 KB session chunk",
            vec![format!("{c0}={}", "A".repeat(100_000)).into_bytes()],
        ),
        (
            "50 junk chunks",
            vec![fifty(&"A".repeat(1000)).into_bytes()],
        ),
        (
            "a valid chunk 0 and 49 junk chunks",
            vec![fifty(&good).into_bytes()],
        ),
        (
            "chunk 0 twice, valid and junk",
            vec![format!("{c0}={good}; {c0}=junk").into_bytes()],
        ),
        (
            "chunk 0 twice, both valid",
            vec![format!("{c0}={good}; {c0}={good}").into_bytes()],
        ),
        (
            "chunk 0 in two Cookie headers",
            vec![
                format!("{c0}={good}").into_bytes(),
                format!("{c0}={good}").into_bytes(),
            ],
        ),
        ("no equals sign", vec![c0.clone().into_bytes()]),
        ("empty value", vec![format!("{c0}=").into_bytes()]),
        ("only separators", vec![b";;;; ; ;=;==".to_vec()]),
        (
            "quoted value",
            vec![format!("{c0}=\"{good}\"").into_bytes()],
        ),
        (
            "percent-encoded value",
            vec![format!("{c0}={}", enc(&good)).into_bytes()],
        ),
        (
            "a space inside the value",
            vec![format!("{c0}={} {}", &good[..10], &good[10..]).into_bytes()],
        ),
        (
            "one bit flipped",
            vec![[format!("{c0}=").into_bytes(), flipped].concat()],
        ),
        (
            "invalid UTF-8",
            vec![
                [
                    format!("{c0}=").as_bytes(),
                    &[0xff, 0xfe, 0x80],
                    good.as_bytes(),
                ]
                .concat(),
            ],
        ),
        (
            "chunk index written 00",
            vec![format!("{}={good}", chunk("default", 0).replace(".0", ".00")).into_bytes()],
        ),
        (
            "name in another case",
            vec![format!("{}={good}", c0.to_ascii_lowercase()).into_bytes()],
        ),
        (
            "another middleware's name",
            vec![format!("{}={good}", chunk("admins", 0)).into_bytes()],
        ),
    ];
    for (name, cookies) in &cases {
        let mut h = traefik(APP, "/", Kind::Xhr);
        for c in cookies {
            h.push(("Cookie".into(), c.clone()));
        }
        let r = alice.raw(&h).await;
        assert!(
            r.status == 401 || r.status == 400 || r.status == 431,
            "{name}: {} {}",
            r.status,
            r.body
        );
    }
    // Controls: the same session opens when it is sent normally, split over two Cookie headers
    // (as HTTP/2 does), or next to 100 KB of other cookies.
    for (name, cookies) in [
        ("plain", vec![format!("{c0}={good}")]),
        (
            "two headers",
            vec!["theme=dark".to_string(), format!("{c0}={good}")],
        ),
        (
            "with 100 KB of others",
            vec![format!("{junk_cookies}; {c0}={good}")],
        ),
    ] {
        let mut h = traefik(APP, "/", Kind::Xhr);
        for c in cookies {
            h.push(("Cookie".into(), c.into_bytes()));
        }
        assert_eq!(alice.raw(&h).await.status, 200, "{name}");
    }
    let c = reqwest::Client::new();
    let health = c
        .get(format!("http://{}/healthz", sc.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "still serving");
}

#[tokio::test]
async fn callback_abuse_fails_closed_and_escapes_idp_errors() {
    let sc = real().await;
    let a = Agent::new(&sc, "default");
    for (name, uri) in [
        (
            "an 8000-character state",
            format!("/oidc/callback?code=x&state={}", "A".repeat(8000)),
        ),
        (
            "a 100 KB state",
            format!("/oidc/callback?code=x&state={}", "A".repeat(100_000)),
        ),
        (
            "markup in the state",
            format!(
                "/oidc/callback?code=x&state={}",
                enc("<script>alert(1)</script>AAAAAAAAAAAAAAAA")
            ),
        ),
        (
            "a repeated state",
            "/oidc/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&state=B"
                .to_string(),
        ),
        (
            "a repeated error",
            "/oidc/callback?error=a&error=b".to_string(),
        ),
    ] {
        let r = a.raw(&traefik(APP, &uri, Kind::Navigate)).await;
        assert!(
            (400..500).contains(&r.status) || r.status == 431,
            "{name}: {r:#?}"
        );
        r.assert_refused(name);
    }
    let script = "<script>alert(document.cookie)</script>";
    let img = "\"><img src=x onerror=alert(1)>'";
    for kind in [Kind::Navigate, Kind::Xhr] {
        let uri = format!(
            "/oidc/callback?error={}&error_description={}",
            enc(script),
            enc(&format!("{img}{}", "B".repeat(5_000)))
        );
        let r = a.raw(&traefik(APP, &uri, kind)).await;
        assert_eq!(r.status, 401, "{r:#?}");
        r.assert_refused("error=");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(
            !r.body.contains("<script") && !r.body.contains("<img"),
            "{}",
            r.body
        );
        assert!(r.body.contains("&quot;&gt;&lt;img"), "{}", r.body);
        assert!(r.body.contains("&lt;script&gt;"), "{}", r.body);
        assert!(
            r.body.len() < 4000,
            "the IdP's text is bounded: {}",
            r.body.len()
        );
    }
}

#[tokio::test]
async fn over_long_uris_never_pass() {
    let sc = real().await;
    let alice = logged_in(&sc, "alice").await;
    let cookie = alice.cookie_header(APP).unwrap();
    for len in [8193, 60_000] {
        let uri = format!("/{}", "a".repeat(len));
        let r = alice
            .raw(&with_cookie(traefik(APP, &uri, Kind::Xhr), &cookie))
            .await;
        assert!(r.status == 400 || r.status == 431, "{len}: {}", r.status);
    }
    // Just under the limit a logged-in user passes.
    let uri = format!("/{}", "a".repeat(8000));
    let r = alice
        .raw(&with_cookie(traefik(APP, &uri, Kind::Xhr), &cookie))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn probes_and_health_paths_never_authorize() {
    let sc = real().await;
    let a = Agent::new(&sc, "default");
    let agents = [
        None,
        Some("kube-probe/1.30"),
        Some("GoogleHC/1.0"),
        Some("ELB-HealthChecker/2.0"),
        Some("Traefik"),
        Some("Go-http-client/1.1"),
        Some("oauth2-proxy/v7 ping"),
        Some("Consul Health Check"),
        Some("Prometheus/2.53.0"),
    ];
    let paths = [
        "/",
        "/healthz",
        "/readyz",
        "/ping",
        "/health",
        "/metrics",
        "/auth",
        "/auth/default",
        "/oauth2/auth",
        "/_oauth",
        "/.well-known/openid-configuration",
        "/favicon.ico",
    ];
    for ua in agents {
        for path in paths {
            for kind in [Kind::Navigate, Kind::Xhr] {
                let mut h = traefik(APP, path, kind);
                if let Some(ua) = ua {
                    h.push(("User-Agent".into(), ua.as_bytes().to_vec()));
                }
                let r = a.raw(&h).await;
                let want = if kind == Kind::Navigate { 302 } else { 401 };
                assert_eq!(r.status, want, "{ua:?} {path} {kind:?}: {r:#?}");
            }
        }
        // Without any forwarded headers there is nothing to authorize.
        let h: Vec<(String, Vec<u8>)> = ua
            .map(|u| vec![("User-Agent".to_string(), u.as_bytes().to_vec())])
            .unwrap_or_default();
        for endpoint in ["/auth", "/auth/default"] {
            let r = a.raw_to(&format!("http://{}{endpoint}", sc.addr), &h).await;
            assert_eq!(r.status, 400, "{ua:?} {endpoint}: {r:#?}");
        }
    }
    // Other methods at the forwardAuth endpoint, and preflights, are not navigations.
    let c = reqwest::Client::new();
    for method in ["HEAD", "POST", "OPTIONS", "PUT", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = c.request(m, format!("http://{}/auth/default", sc.addr));
        for (k, v) in traefik(APP, "/", Kind::Xhr) {
            let v = if k == "X-Forwarded-Method" {
                method.as_bytes().to_vec()
            } else {
                v
            };
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method}");
    }
    // Near misses of the endpoint path are not the endpoint.
    for path in [
        "/auth/default/",
        "/auth/..%2fhealthz",
        "/auth/%2e%2e",
        "/AUTH/default",
        "/healthz/../auth",
    ] {
        let r = a
            .raw_to(
                &format!("http://{}{path}", sc.addr),
                &traefik(APP, "/", Kind::Xhr),
            )
            .await;
        assert!(!(200..300).contains(&r.status), "{path}: {}", r.status);
    }
}

#[tokio::test]
async fn metrics_are_only_on_the_metrics_listener() {
    let sc = real().await;
    let a = Agent::new(&sc, "default");
    let c = reqwest::Client::new();
    let status = |u: String| {
        let c = c.clone();
        async move { c.get(u).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("http://{}/metrics", sc.addr)).await, 404);
    assert_eq!(
        status(format!("http://{}/auth/metrics", sc.addr)).await,
        404
    );
    assert_eq!(
        status(format!("http://{}/auth/default", sc.metrics_addr)).await,
        404
    );
    assert_eq!(
        status(format!("http://{}/healthz", sc.metrics_addr)).await,
        404
    );
    let r = a.raw(&traefik(APP, "/metrics", Kind::Xhr)).await;
    assert_eq!(r.status, 401);
    let body = c
        .get(format!("http://{}/metrics", sc.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("traefik_oidc_sidecar_requests_total{middleware=\"default\""));
    // The default metrics address is loopback.
    let cfg = traefik_oidc_sidecar::config::parse(
        &op_yaml("https://idp.example", ""),
        &traefik_oidc_sidecar::config::Env::process(),
    )
    .unwrap()
    .config;
    assert!(
        cfg.metrics_listen.ip().is_loopback(),
        "{}",
        cfg.metrics_listen
    );
}

// ---------------------------------------------------------------------------------------------
// Claims (the fake IdP shapes them).

fn idp_yaml(issuer: &str) -> String {
    // Each middleware its own cookie prefix: three session scopes, isolated.
    let provider = |name: &str| {
        format!(
            r#"
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.{name}
    SessionCookie:
      Secure: false"#
        )
    };
    let (default, admins, corp) = (provider("default"), provider("admins"), provider("corp"));
    format!(
        r#"
logLevel: warn
middlewares:
  default:{default}
  admins:{admins}
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: [admins]
  corp:{corp}
    Authorization:
      AssertClaims:
        - Name: email
          AnyOf: [a@corp.com]
"#
    )
}

struct Fake {
    idp: fake_idp::FakeIdp,
    sc: Running,
}

async fn fake() -> Fake {
    let idp = fake_idp::FakeIdp::start().await;
    let sc = Running::start(&idp_yaml(&idp.issuer)).await;
    sc.ready().await;
    Fake { idp, sc }
}

impl Fake {
    /// Logs in at middleware `mw` with claims edited by `edit`; returns the callback answer.
    async fn login(
        &self,
        mw: &str,
        edit: impl Fn(&mut serde_json::Map<String, Value>) + Send + Sync + 'static,
    ) -> (Resp, Agent) {
        self.idp.set(fake_idp::with_claims(edit));
        let mut a = Agent::new(&self.sc, mw);
        let r = a.forward(HOME, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{r:#?}");
        let cb = a.idp_authorize(&r.location()).await;
        let r = a.forward(&cb, Kind::Navigate).await;
        (r, a)
    }
}

#[tokio::test]
async fn odd_emails_are_passed_verbatim_and_match_nothing_else() {
    let f = fake().await;
    let (r, mut a) = f
        .login("default", |m| {
            m.insert("email".into(), json!("a@evil@corp.com"));
            m.remove("preferred_username");
        })
        .await;
    assert_eq!(r.status, 302);
    let r = a.forward(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-forwarded-email"), Some("a@evil@corp.com"));
    assert_eq!(r.header("x-forwarded-user"), Some("a@evil@corp.com"));
    for email in [
        "a@evil@corp.com",
        "a@corp.com@evil.test",
        "A@CORP.COM",
        "a@corp.com.",
        " a@corp.com",
        "a@corp.com ",
        "a@cοrp.com",
    ] {
        let e = email.to_string();
        let (r, mut a) = f
            .login("corp", move |m| {
                m.insert("email".into(), json!(e));
            })
            .await;
        // Decided at the callback: the callback itself is the 403.
        assert_eq!(r.status, 403, "{email:?} at the callback");
        assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 403, "{email:?}");
    }
    let (_, mut ok) = f
        .login("corp", |m| {
            m.insert("email".into(), json!("a@corp.com"));
        })
        .await;
    assert_eq!(ok.forward(HOME, Kind::Xhr).await.status, 200, "control");
    // Control characters never reach a header, and cannot add one.
    let (_, mut a) = f
        .login("default", |m| {
            m.insert("email".into(), json!("alice@example.test\r\nX-Admin: 1"));
            m.insert("preferred_username".into(), json!("alice\u{0}"));
        })
        .await;
    let r = a.forward(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-forwarded-email").is_none(), "{r:#?}");
    assert!(r.header("x-admin").is_none(), "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), None, "{r:#?}");
}

#[tokio::test]
async fn groups_claim_shapes_against_any_of() {
    let f = fake().await;
    // `AnyOf: [admins]`. A scalar claim compares as itself (authz.rs: "values compare as
    // strings"), so the string "admins" passes, exactly like the list ["admins"]; nothing is
    // ever split, trimmed, case-folded or searched inside a nested value.
    let cases: Vec<(Value, bool)> = vec![
        (json!(["admins"]), true),
        (json!(["users", "admins"]), true),
        (json!("admins"), true),
        (json!("admins,users"), false),
        (json!("users admins"), false),
        (json!(" admins"), false),
        (json!("admins "), false),
        (json!("Admins"), false),
        (json!(["Admins"]), false),
        (json!(["admins\u{0}"]), false),
        (json!([["admins"]]), false),
        (json!({"admins": true}), false),
        (json!([{"name": "admins"}]), false),
        (json!(true), false),
        (Value::Null, false),
        (json!([]), false),
    ];
    for (groups, allowed) in cases {
        let g = groups.clone();
        let (r, mut a) = f
            .login("admins", move |m| {
                m.insert("groups".into(), g.clone());
            })
            .await;
        // Decided at the callback: a refused login is answered 403 there already.
        let at_callback = if allowed { 302 } else { 403 };
        assert_eq!(r.status, at_callback, "{groups}: login");
        let want = if allowed { 200 } else { 403 };
        assert_eq!(
            a.forward(HOME, Kind::Xhr).await.status,
            want,
            "groups={groups}"
        );
    }
    let (_, mut a) = f
        .login("admins", |m| {
            m.remove("groups");
        })
        .await;
    assert_eq!(
        a.forward(HOME, Kind::Xhr).await.status,
        403,
        "no groups claim"
    );
    // The default X-Forwarded-Groups header carries a string claim verbatim.
    let (_, mut a) = f
        .login("default", |m| {
            m.insert("groups".into(), json!("admins"));
        })
        .await;
    let r = a.forward(HOME, Kind::Xhr).await;
    assert_eq!(r.header("x-forwarded-groups"), Some("admins"));
}

#[tokio::test]
async fn a_group_name_with_a_comma_cannot_add_groups_to_the_header() {
    let f = fake().await;
    let claim = json!(["users", "admins,ops"]);
    let c = claim.clone();
    let (_, mut a) = f
        .login("default", move |m| {
            m.insert("groups".into(), c.clone());
        })
        .await;
    let r = a.forward(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200);
    if let Some(h) = r.header("x-forwarded-groups") {
        let listed: Vec<&str> = h.split(',').map(str::trim).collect();
        let real: Vec<&str> = claim
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for g in listed {
            assert!(
                real.contains(&g),
                "header {h:?} lists {g:?}, not a group of the user"
            );
        }
    }
}

#[tokio::test]
async fn huge_claims_never_exceed_eight_chunks() {
    let f = fake().await;
    // 600 KB in a claim nothing reads (the token response stays under the 1 MiB cap): dropped
    // from the session; the ID token is not kept as the logout hint either (over 8 KB).
    let (r, mut a) = f
        .login("default", |m| {
            m.insert("blob".into(), json!("x".repeat(600 << 10)));
        })
        .await;
    assert_eq!(r.status, 302, "{}", r.status);
    let chunks = a.session("default");
    assert!(
        !chunks.is_empty() && chunks.len() <= 8,
        "{} chunks",
        chunks.len()
    );
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
    let out = a.forward("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(out.status, 302);
    assert!(!query(&out.location()).contains_key("id_token_hint"));

    // ~16 KB of random group names (a claim the headers read; random so that deflate cannot
    // fold them into one chunk): several chunks, each a browser can store.
    let (r, mut a) = f
        .login("default", |m| {
            let g: Vec<String> = (0..600).map(|i| format!("group-{i}-{}", noise())).collect();
            m.insert("groups".into(), json!(g));
        })
        .await;
    assert_eq!(r.status, 302);
    for c in r.all("set-cookie") {
        assert!(c.len() < 4096, "a cookie of {} bytes", c.len());
    }
    let n = a.session("default").len();
    assert!((3..=8).contains(&n), "{n} chunks");
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);

    // 450 KB of random group names (a token response under the 1 MiB cap) cannot fit in 8
    // chunks, even deflated: the login fails with a 500, no cookie is set.
    let (r, mut a) = f
        .login("default", |m| {
            let g: Vec<String> = (0..30_000)
                .map(|i| format!("g{i}-{}", &noise()[..8]))
                .collect();
            m.insert("groups".into(), json!(g));
        })
        .await;
    assert_eq!(r.status, 500, "{}", r.status);
    r.assert_refused("450 KB of groups");
    assert!(a.session("default").is_empty());
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 401);
}

/// An ID token whose `groups` claim is `depth` nested arrays around "admins", written as raw
/// JSON text (serde_json could not build the deeper ones as values).
fn nested_groups(depth: usize) -> fake_idp::Behavior {
    fake_idp::behavior(move |c| {
        let mut claims = serde_json::to_string(&c.claims()).unwrap();
        claims.pop();
        let body = format!(
            "{claims},\"groups\":{}\"admins\"{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let k = fake_idp::RsaKey::idp();
        let input = format!(
            "{}.{}",
            fake_idp::b64(json!({"alg": "RS256", "kid": k.kid}).to_string().as_bytes()),
            fake_idp::b64(body.as_bytes())
        );
        let sig = k.sign(input.as_bytes());
        fake_idp::TokenReply::id_token(format!("{input}.{}", fake_idp::b64(&sig)))
    })
}

#[tokio::test]
async fn deeply_nested_claims_do_not_crash_or_pass_as_groups() {
    let f = fake().await;
    for depth in [2usize, 64, 120, 129, 1_000, 200_000] {
        f.idp.set(nested_groups(depth));
        let mut a = Agent::new(&f.sc, "admins");
        let r = a.forward(HOME, Kind::Navigate).await;
        let cb = a.idp_authorize(&r.location()).await;
        let r = a.forward(&cb, Kind::Navigate).await;
        // Shallow nesting logs in but is not `admins` (nested lists are not searched), which
        // the callback answers with 403 already; past serde_json's recursion limit (128) the
        // token does not parse and the login fails.
        match r.status {
            403 if depth <= 128 => assert_eq!(
                a.forward(HOME, Kind::Xhr).await.status,
                403,
                "depth {depth} passed AnyOf: [admins]"
            ),
            s => {
                assert!(s >= 400, "depth {depth}: {s}");
                r.assert_refused("nested groups");
                assert!(depth > 128, "depth {depth} refused: {s}");
            }
        }
    }
    // Still alive, and an ordinary login still works.
    let (r, mut a) = f
        .login("admins", |m| {
            m.insert("groups".into(), json!(["admins"]));
        })
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Cookies.

/// 16 random base64 characters: group names that deflate cannot shrink much.
fn noise() -> String {
    traefik_oidc_sidecar::session::random_token()[..16].to_string()
}

#[tokio::test]
async fn tampered_truncated_reordered_or_missing_chunks_fail() {
    let f = fake().await;
    let (r, a) = f
        .login("default", |m| {
            let g: Vec<String> = (0..500).map(|i| format!("group-{i}-{}", noise())).collect();
            m.insert("groups".into(), json!(g));
        })
        .await;
    assert_eq!(r.status, 302);
    let saved = a.session("default");
    let n = saved.len();
    assert!(n >= 3, "{n} chunks");
    let name = |i: usize| chunk("default", i);
    let header = |m: &BTreeMap<String, String>, order: &[usize]| {
        order
            .iter()
            .filter_map(|i| m.get(&name(*i)).map(|v| format!("{}={v}", name(*i))))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let natural: Vec<usize> = (0..n).collect();
    let check = |cookie: String| {
        let h = with_cookie(traefik(APP, "/", Kind::Xhr), &cookie);
        let a = &a;
        async move { a.raw(&h).await }
    };
    // Controls: the set as written, and in any header order (names index the chunks).
    assert_eq!(check(header(&saved, &natural)).await.status, 200);
    let reversed: Vec<usize> = (0..n).rev().collect();
    assert_eq!(check(header(&saved, &reversed)).await.status, 200);

    type Edit = Box<dyn Fn(&mut BTreeMap<String, String>)>;
    let last = n - 1;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "a character changed in chunk 1",
            Box::new(move |m| {
                let v = m.get_mut(&name(1)).unwrap();
                let c = if v.starts_with('A') { "B" } else { "A" };
                v.replace_range(0..1, c);
            }),
        ),
        (
            "chunk 2 truncated",
            Box::new(move |m| {
                let v = m.get_mut(&name(2)).unwrap();
                v.truncate(v.len() - 10);
            }),
        ),
        (
            "chunks 0 and 1 swapped",
            Box::new(move |m| {
                let a = m[&name(0)].clone();
                let b = m[&name(1)].clone();
                m.insert(name(0), b);
                m.insert(name(1), a);
            }),
        ),
        (
            "chunk 0 missing",
            Box::new(move |m| {
                m.remove(&name(0));
            }),
        ),
        (
            "chunk 1 missing",
            Box::new(move |m| {
                m.remove(&name(1));
            }),
        ),
        (
            "last chunk missing",
            Box::new(move |m| {
                m.remove(&name(last));
            }),
        ),
        (
            "an extra chunk after the last",
            Box::new(move |m| {
                m.insert(name(last + 1), "AAAA".into());
            }),
        ),
        (
            "chunk 1 moved to the end",
            Box::new(move |m| {
                let v = m.remove(&name(1)).unwrap();
                m.insert(name(last + 1), v);
            }),
        ),
        (
            "chunk 0 from another login",
            Box::new(move |m| {
                m.insert(name(0), "A".repeat(3500));
            }),
        ),
    ];
    for (what, edit) in &edits {
        let mut m = saved.clone();
        edit(&mut m);
        let order: Vec<usize> = (0..=8).collect();
        let r = check(header(&m, &order)).await;
        assert_eq!(r.status, 401, "{what}: {r:#?}");
        let cleared = r.all("set-cookie");
        assert!(
            !cleared.is_empty() && cleared.iter().all(|c| c.contains("Max-Age=0")),
            "{what}: the broken session is cleared: {cleared:?}"
        );
    }
}

#[tokio::test]
async fn cookies_planted_before_login_are_replaced() {
    let sc = real().await;
    let bob = logged_in(&sc, "bob").await;
    let bob_chunk0 = bob.session("default")[&chunk("default", 0)].clone();
    let plantings: Vec<(&str, Vec<(usize, String)>)> = vec![
        (
            "junk chunks 0-5",
            (0..6)
                .map(|i| (i, format!("planted{i}{}", "A".repeat(60))))
                .collect(),
        ),
        (
            "another user's valid chunk 0 and junk 1-5",
            std::iter::once((0, bob_chunk0.clone()))
                .chain((1..6).map(|i| (i, "A".repeat(64))))
                .collect(),
        ),
    ];
    for (what, planted) in plantings {
        let mut a = Agent::new(&sc, "default");
        let r = a.forward(HOME, Kind::Navigate).await;
        assert_eq!(r.status, 302);
        // Planted after the redirect (which clears what it sees), right before the callback.
        for (i, v) in &planted {
            a.set(APP, &chunk("default", *i), v);
        }
        let cb = a.op_login(&r.location(), "alice").await;
        let r = a.forward(&cb, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{what}: {r:#?}");
        let removed: Vec<String> = r
            .all("set-cookie")
            .into_iter()
            .filter(|c| c.contains("Max-Age=0") && c.contains(".session."))
            .map(|c| c.split('=').next().unwrap().to_string())
            .collect();
        for i in 1..6 {
            assert!(
                removed.contains(&chunk("default", i)),
                "{what}: chunk {i} not expired"
            );
        }
        let now = a.session("default");
        assert_eq!(
            now.keys().cloned().collect::<Vec<_>>(),
            vec![chunk("default", 0)],
            "{what}"
        );
        assert!(
            planted.iter().all(|(_, v)| now.values().all(|n| n != v)),
            "{what}"
        );
        let r = a.forward(HOME, Kind::Xhr).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-forwarded-user"), Some("alice"), "{what}");
    }
}

#[tokio::test]
async fn a_session_copied_before_logout_stays_valid_until_it_expires() {
    // Documented behaviour (README, SECURITY.md): sessions are stateless, so logout can only
    // expire the cookies in the browser that logs out. If this changes (server-side revocation),
    // update SECURITY.md and this test together.
    let sc = real().await;
    let mut a = logged_in(&sc, "alice").await;
    let copy = a.session("default");
    let r = a.forward("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(r.status, 302);
    assert!(
        a.session("default").is_empty(),
        "logout expired the cookies"
    );
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 401);
    for (k, v) in &copy {
        a.set(APP, k, v);
    }
    let r = a.forward(HOME, Kind::Xhr).await;
    assert_eq!(r.status, 200, "a replayed copy still works");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
}

#[tokio::test]
async fn a_session_opens_on_every_host_behind_the_same_middleware() {
    // Documented behaviour (SECURITY.md): the session is bound to the middleware (its name and
    // Secret), not to a host. Hosts that must not share sessions need separate middlewares.
    let sc = real().await;
    let mut a = logged_in(&sc, "alice").await;
    for (k, v) in a.session("default") {
        a.set("other.test", &k, &v);
    }
    assert_eq!(a.forward("http://other.test/", Kind::Xhr).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Callback.

#[tokio::test]
async fn callbacks_with_a_wrong_state_or_flow_redeem_nothing() {
    let sc = real().await;
    let op = common::shared_op();
    let mut a = Agent::new(&sc, "default");
    let r = a.forward(HOME, Kind::Navigate).await;
    let state = query(&r.location())["state"].clone();
    let flow_name = format!("TraefikOidcSidecar.default.flow.{}", &state[..16]);
    let cb = a.op_login(&r.location(), "alice").await;
    let q = query(&cb);
    assert_eq!(q["state"], state);
    let code = q["code"].clone();
    let call = |params: Vec<(&str, String)>| {
        let qs = params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        format!("http://app.test/oidc/callback?{qs}")
    };
    let iss = q["iss"].clone();
    let forged_state = format!("{}{}", &state[..16], "A".repeat(state.len() - 16));
    let cases: Vec<(&str, String)> = vec![
        (
            "no state",
            call(vec![("code", code.clone()), ("iss", iss.clone())]),
        ),
        (
            "a state sharing the flow's id",
            call(vec![
                ("code", code.clone()),
                ("state", forged_state),
                ("iss", iss.clone()),
            ]),
        ),
        (
            "a state that never started here",
            call(vec![
                ("code", code.clone()),
                ("state", "B".repeat(43)),
                ("iss", iss.clone()),
            ]),
        ),
        (
            "no code",
            call(vec![("state", state.clone()), ("iss", iss.clone())]),
        ),
        (
            "another issuer",
            call(vec![
                ("code", code.clone()),
                ("state", state.clone()),
                ("iss", "https://evil.test".into()),
            ]),
        ),
        ("the state twice", format!("{cb}&state={}", enc(&state))),
    ];
    for (what, url) in &cases {
        let r = a.forward(url, Kind::Navigate).await;
        assert_eq!(r.status, 400, "{what}: {r:#?}");
        r.assert_refused(what);
    }
    // The right callback without the flow cookie, with a tampered one, or with another flow's
    // cookie renamed to this one.
    let flow_value = a.jar(APP)[&flow_name].clone();
    let mut other = Agent::new(&sc, "default");
    let r2 = other.forward("http://app.test/x", Kind::Navigate).await;
    let other_state = query(&r2.location())["state"].clone();
    let other_flow =
        other.jar(APP)[&format!("TraefikOidcSidecar.default.flow.{}", &other_state[..16])].clone();
    let mut tampered = flow_value.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    for (what, value) in [
        ("no flow cookie", None),
        (
            "a tampered flow cookie",
            Some(String::from_utf8(tampered).unwrap()),
        ),
        ("another flow's cookie under this name", Some(other_flow)),
    ] {
        let mut b = Agent::new(&sc, "default");
        if let Some(v) = value {
            b.set(APP, &flow_name, &v);
        }
        let r = b.forward(&cb, Kind::Navigate).await;
        assert_eq!(r.status, 400, "{what}: {r:#?}");
        r.assert_refused(what);
    }
    // Nothing above spent the code: the real callback in the real browser still works.
    let r = a.forward(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(r.location(), HOME);
    assert!(!r.location().starts_with(op));
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn an_expired_flow_is_refused_before_its_code_is_redeemed() {
    let clock = FakeClock::at(unix_now());
    let sc = Running::start_with(&op_yaml(common::shared_op(), ""), clock.clone()).await;
    sc.ready().await;
    let mut a = Agent::new(&sc, "default");
    let r = a.forward(HOME, Kind::Navigate).await;
    let cb = a.op_login(&r.location(), "alice").await;
    clock.advance(601);
    let r = a.forward(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 400, "10 minutes and 1 s later: {r:#?}");
    r.assert_refused("expired flow");
    // A clock that jumped backwards by more than the leeway is refused too.
    clock.set(unix_now() - 120);
    let r = a.forward(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 400, "flow from the future: {r:#?}");
    // Back in time: the same callback completes, so the refusals above redeemed nothing.
    clock.set(unix_now());
    let r = a.forward(&cb, Kind::Navigate).await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 200);
}

#[tokio::test]
async fn a_replayed_code_is_refused_by_the_op() {
    let sc = real().await;
    let mut a = Agent::new(&sc, "default");
    let r = a.forward(HOME, Kind::Navigate).await;
    let cb = a.op_login(&r.location(), "alice").await;
    assert_eq!(a.forward(&cb, Kind::Navigate).await.status, 302);
    let used = query(&cb);
    // A new flow in the same browser, fed the code the first one already redeemed.
    let mut b = Agent::new(&sc, "default");
    let r = b.forward(HOME, Kind::Navigate).await;
    let state = query(&r.location())["state"].clone();
    let replay = format!(
        "http://app.test/oidc/callback?code={}&state={}&iss={}",
        enc(&used["code"]),
        enc(&state),
        enc(&used["iss"])
    );
    let r = b.forward(&replay, Kind::Navigate).await;
    assert_eq!(r.status, 400, "{r:#?}");
    r.assert_refused("replayed code");
    assert_eq!(b.forward(HOME, Kind::Xhr).await.status, 401);
}

/// Twenty logins started in one browser, one per second: the five newest complete; the others
/// were dropped when newer ones started and get 400. Nothing is ever a 2xx.
#[tokio::test]
async fn twenty_parallel_logins_keep_the_newest_five() {
    let clock = FakeClock::at(unix_now() - 30);
    let sc = Running::start_with(&op_yaml(common::shared_op(), ""), clock.clone()).await;
    sc.ready().await;
    let mut a = Agent::new(&sc, "default");
    let mut starts = Vec::new();
    for i in 0..20 {
        clock.advance(1);
        let r = a
            .forward(&format!("http://app.test/p{i}"), Kind::Navigate)
            .await;
        assert_eq!(r.status, 302);
        starts.push(r.location());
    }
    let flows = a.jar(APP).keys().filter(|k| k.contains(".flow.")).count();
    assert_eq!(flows, 5, "flow cookies kept");
    let mut callbacks = Vec::new();
    for s in &starts {
        callbacks.push(a.op_login(s, "alice").await);
    }
    for (i, cb) in callbacks.iter().enumerate() {
        let r = a.forward(cb, Kind::Navigate).await;
        assert!(!(200..300).contains(&r.status), "{i}: {}", r.status);
        if i < 15 {
            assert_eq!(r.status, 400, "flow {i} was dropped: {r:#?}");
        } else {
            assert_eq!(r.status, 302, "flow {i}: {r:#?}");
            assert_eq!(r.location(), format!("http://app.test/p{i}"));
        }
    }
}

/// The same in one second (a page or a restored session opening many tabs at once), with the
/// flow cookies sent oldest first, as browsers order cookies of the same path (RFC 6265 §5.4).
#[tokio::test]
async fn a_burst_of_logins_within_one_second_keeps_the_newest_five() {
    let clock = FakeClock::at(unix_now());
    let sc = Running::start_with(&op_yaml(common::shared_op(), ""), clock).await;
    sc.ready().await;
    let a = Agent::new(&sc, "default");
    // A jar in creation order.
    let mut jar: Vec<(String, String)> = Vec::new();
    let mut starts = Vec::new();
    for i in 0..20 {
        let mut h = traefik(APP, &format!("/p{i}"), Kind::Navigate);
        if !jar.is_empty() {
            let c = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            h.push(("Cookie".into(), c.into_bytes()));
        }
        let r = a.raw(&h).await;
        assert_eq!(r.status, 302);
        for sc in r.all("set-cookie") {
            let c = cookie::Cookie::parse(sc.to_string()).unwrap();
            jar.retain(|(k, _)| k != c.name());
            if !sc.contains("Max-Age=0") {
                jar.push((c.name().to_string(), c.value().to_string()));
            }
        }
        starts.push(query(&r.location())["state"].clone());
    }
    let kept: Vec<usize> = starts
        .iter()
        .enumerate()
        .filter(|(_, s)| jar.iter().any(|(k, _)| k.ends_with(&s[..16])))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(kept, vec![15, 16, 17, 18, 19], "flows kept");
}

// ---------------------------------------------------------------------------------------------
// Bypass rules.

fn bypass_yaml(issuer: &str) -> String {
    let block = |name: &str, rule: &str| {
        format!(
            r#"
  {name}:
    Provider:
      Url: {issuer}
      ClientId: sidecar
      ClientSecret: sidecar-secret
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.{name}
    BypassAuthenticationRule: "{rule}"
"#
        )
    };
    format!(
        "logLevel: warn\nmiddlewares:{}{}{}{}",
        block("public", "PathPrefix(`/public`) || Path(`/health`)"),
        block("notadmin", "!PathPrefix(`/admin`)"),
        block("notadminhost", "!Host(`admin.test`)"),
        block("everything", "PathPrefix(`/`)"),
    )
}

async fn bypass_sidecar() -> Running {
    let sc = Running::start(&bypass_yaml(common::shared_op())).await;
    sc.ready().await;
    sc
}

/// Anonymous XHR status for `uri` on `host` through middleware `mw`.
async fn anon_status(sc: &Running, mw: &str, host: &str, uri: &str) -> u16 {
    Agent::new(sc, mw)
        .raw(&traefik(host, uri, Kind::Xhr))
        .await
        .status
}

#[tokio::test]
async fn an_allow_list_bypass_rule_cannot_be_stretched() {
    let sc = bypass_sidecar().await;
    for uri in [
        "/public",
        "/public/",
        "/public/x/y",
        "/public?x=1",
        "/health",
    ] {
        assert_eq!(anon_status(&sc, "public", APP, uri).await, 200, "{uri}");
    }
    for uri in [
        "/admin",
        "/admin?next=/public",
        "/admin?/public",
        "/admin;/public",
        "/public/../admin",
        "/public/./../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/%2e%2e%2fadmin",
        "/public/..;/admin",
        "/public;/../admin",
        "/public/..\\admin",
        "/public\\..\\admin",
        "/public/..%5cadmin",
        "/public/%00/../admin",
        "/public/../../admin",
        "/%2fpublic",
        "//public/../admin",
        "/health/",
        "/health/../admin",
        "/Health",
        "/health%20",
        "/health?",
    ] {
        let s = anon_status(&sc, "public", APP, uri).await;
        if uri == "/health?" {
            // An empty query is still the path /health.
            assert_eq!(s, 200, "{uri}");
            continue;
        }
        assert_eq!(s, 401, "{uri} passed as public");
    }
    // A rule that matches everything still never swallows the callback or logout.
    let mut a = Agent::new(&sc, "everything");
    assert_eq!(anon_status(&sc, "everything", APP, "/anything").await, 200);
    let r = a
        .forward(
            "http://app.test/oidc/callback?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Kind::Navigate,
        )
        .await;
    assert_eq!(r.status, 400, "{r:#?}");
    let r = a.forward("http://app.test/logout", Kind::Navigate).await;
    assert_eq!(r.status, 302);
    assert!(r.location().contains("/session/end"), "{}", r.location());
}

#[tokio::test]
async fn a_deny_list_bypass_rule_holds_for_encoded_and_dotted_paths() {
    let sc = bypass_sidecar().await;
    assert_eq!(
        anon_status(&sc, "notadmin", APP, "/home").await,
        200,
        "control"
    );
    for uri in [
        "/admin",
        "/admin/",
        "/admin/x",
        "/admin?x",
        "/%61dmin",
        "/%61%64%6d%69%6e/x",
        "/./admin",
        "/x/../admin",
        "/x/%2e%2e/admin",
        "/x/..%2fadmin",
        "/admin/..;/x",
        "/x/..;/admin",
        "/x;/../admin",
        "/x\\..\\admin",
    ] {
        assert_eq!(
            anon_status(&sc, "notadmin", APP, uri).await,
            401,
            "{uri} bypassed a deny-list rule"
        );
    }
    for host in [
        "admin.test",
        "ADMIN.test",
        "admin.test:80",
        "admin.test:8443",
    ] {
        assert_eq!(
            anon_status(&sc, "notadminhost", host, "/").await,
            401,
            "{host} bypassed !Host"
        );
    }
}

#[tokio::test]
async fn a_deny_list_bypass_rule_holds_for_merged_slashes_and_trailing_dots() {
    let sc = bypass_sidecar().await;
    let mut bypassed = Vec::new();
    for uri in ["//admin", "///admin", "/.//admin", "//admin/x"] {
        if anon_status(&sc, "notadmin", APP, uri).await != 401 {
            bypassed.push(format!("!PathPrefix(`/admin`) with {uri}"));
        }
    }
    for host in ["admin.test.", "admin.test.:80"] {
        if anon_status(&sc, "notadminhost", host, "/").await != 401 {
            bypassed.push(format!("!Host(`admin.test`) with {host}"));
        }
    }
    assert!(bypassed.is_empty(), "bypassed: {bypassed:#?}");
}
