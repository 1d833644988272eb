//! Micro-benchmarks of the `/auth` hot path, plus the session-cookie size report.
//!
//! `cargo bench --bench hot_path` first prints how large the session cookie of a Keycloak-like
//! login gets (50 groups, realm and client roles, long names; also written to
//! `target/bench/cookie_size.json`), then runs the criterion groups:
//! - `session`: `RequestCookies::parse` + `Scope::read_session` for a small session (the
//!   test OP's alice) and for the Keycloak-like ones, remembered (the same cookie again) and not
//!   remembered (base64, AES-GCM, inflate, JSON);
//! - `authz`: `ClaimAssertion::holds` on 50 groups and on nested role claims;
//! - `template`: `template::identity_headers`, default headers and custom templates;
//! - `forwarded`: `forwarded::parse` of Traefik's `X-Forwarded-*` headers;
//! - `decision`: `Middleware::handle` for a valid session (everything `/auth` does between the
//!   HTTP layer's extraction and its response mapping); `rotating/…`: the same with
//!   `PreviousSecrets`, for a cookie of the current `Secret` and one of a previous secret (opened
//!   after one failed tag check, re-sealed on the answer);
//!   HTTP layer's extraction and its response mapping); `…/idle_timeout_on_stamp_fresh` is the
//!   same with `SessionCookie.IdleTimeout` on and a fresh last-activity stamp;
//! - `telemetry`: what `handle` adds for observability with tracing off: one latency histogram
//!   observation, and the same with the two clock reads and the tracing branch around it.
//!
//! Everything is built through the crate's public API from a YAML configuration, exactly as the
//! binary builds it, so the benchmark follows the code when fields are added.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use traefik_oidc_sidecar::auth::Middleware;
use traefik_oidc_sidecar::authz::ClaimAssertion;
use traefik_oidc_sidecar::config::{self, Env, MiddlewareConfig};
use traefik_oidc_sidecar::forwarded::{self, Cidr};
use traefik_oidc_sidecar::session::{RequestCookies, Scope, Session};
use traefik_oidc_sidecar::template::{self, DEFAULT_CLAIMS, Data, HeaderRule, Pass};

/// Fixed "now" so every run seals the same sessions.
const NOW: u64 = 1_800_000_000;
const SECRET: &str = "benchmark-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// The middleware configuration the sidecar would load (defaults for everything cookie-related,
/// `Secure: true` as in production).
fn middleware_config() -> MiddlewareConfig {
    middleware_config_with("")
}

/// The same middleware with `extra` YAML lines added to its block (indented by four spaces).
fn middleware_config_with(extra: &str) -> MiddlewareConfig {
    middleware_config_sealing(SECRET, extra)
}

/// [`middleware_config_with`] with `secret` as its `Secret`.
fn middleware_config_sealing(secret: &str, extra: &str) -> MiddlewareConfig {
    let yaml = format!(
        r#"
middlewares:
  default:
    Provider:
      Url: https://sso.corp.example.com/realms/engineering-production
      ClientId: traefik-oidc-sidecar-production
      ClientSecret: not-used-by-the-benchmarks
    Secret: {secret}
    Scopes: [openid, profile, email, groups]
"#
    ) + extra;
    let loaded = config::parse(&yaml, &Env::process()).unwrap_or_else(|p| panic!("config: {p:?}"));
    loaded
        .config
        .middlewares
        .get("default")
        .cloned()
        .expect("middleware `default`")
}

fn codec(cfg: &MiddlewareConfig) -> Scope {
    traefik_oidc_sidecar::auth::scope_of(&[cfg]).expect("scope")
}

/// A deterministic base64url string of `n` characters (stands in for signatures and ids).
fn b64ish(seed: u64, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            A[(x % 64) as usize] as char
        })
        .collect()
}

fn uuid(seed: u64) -> String {
    let h = b64ish(seed, 32)
        .bytes()
        .map(|b| b"0123456789abcdef"[(b % 16) as usize] as char)
        .collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// ID token claims of a realistic Keycloak user: full group paths (50 groups), realm roles,
/// client roles of three clients, long names and the usual protocol claims.
fn keycloak_claims() -> Map<String, Value> {
    let units = [
        "platform-infrastructure",
        "data-engineering",
        "customer-experience",
        "security-operations",
        "developer-productivity",
    ];
    let groups: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "/corp/engineering/{}/team-{}-{:02}",
                units[i % units.len()],
                [
                    "kubernetes-operators",
                    "observability",
                    "release-engineering",
                    "on-call"
                ][i % 4],
                i
            )
        })
        .collect();
    let realm_roles: Vec<String> = [
        "offline_access",
        "uma_authorization",
        "default-roles-engineering-production",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..12).map(|i| {
        format!(
            "app-{}-editor",
            ["grafana", "argocd", "vault", "jenkins"][i % 4]
        ) + &format!("-{i:02}")
    }))
    .collect();
    let client_roles: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "traefik-route-{}-access",
                ["admin", "metrics", "logs", "billing", "support"][i % 5]
            ) + &format!("-{i}")
        })
        .collect();
    let iss = "https://sso.corp.example.com/realms/engineering-production";
    let v = json!({
        "exp": NOW + 300,
        "iat": NOW,
        "auth_time": NOW - 5,
        "jti": uuid(1),
        "iss": iss,
        "aud": "traefik-oidc-sidecar-production",
        "sub": uuid(2),
        "typ": "ID",
        "azp": "traefik-oidc-sidecar-production",
        "nonce": b64ish(3, 43),
        "session_state": uuid(4),
        "at_hash": b64ish(5, 22),
        "acr": "1",
        "sid": uuid(4),
        "email_verified": true,
        "name": "Maximiliane Alexandra von Hohenstein-Wittelsbach",
        "given_name": "Maximiliane Alexandra",
        "family_name": "von Hohenstein-Wittelsbach",
        "preferred_username": "maximiliane.vonhohenstein-wittelsbach",
        "email": "maximiliane.alexandra.vonhohenstein-wittelsbach@engineering.corp.example.com",
        "locale": "de",
        "groups": groups,
        "realm_access": { "roles": realm_roles },
        "resource_access": {
            "traefik-oidc-sidecar-production": { "roles": client_roles },
            "account": { "roles": ["manage-account", "manage-account-links", "view-profile"] },
            "grafana": { "roles": ["viewer", "editor", "dashboard-admin"] }
        }
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// An RS256 ID token carrying `claims` (the signature is random: only its size matters).
fn id_token(claims: &Map<String, Value>) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": b64ish(7, 43)});
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(Value::Object(claims.clone()).to_string().as_bytes()),
        b64ish(8, 342)
    )
}

/// A Keycloak refresh token (an HS512 JWT of its own).
fn refresh_token() -> String {
    let iss = "https://sso.corp.example.com/realms/engineering-production";
    let header = json!({"alg": "HS512", "typ": "JWT", "kid": uuid(9)});
    let body = json!({
        "exp": NOW + 1800, "iat": NOW, "jti": uuid(10), "iss": iss, "aud": iss, "sub": uuid(2),
        "typ": "Refresh", "azp": "traefik-oidc-sidecar-production", "nonce": b64ish(3, 43),
        "session_state": uuid(4), "scope": "openid profile email groups", "sid": uuid(4)
    });
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(body.to_string().as_bytes()),
        b64ish(11, 86)
    )
}

/// The claims of the test OP's `alice` (what the load benchmark's session holds).
fn alice_claims() -> Map<String, Value> {
    match json!({
        "sub": "alice", "email": "alice@example.test", "email_verified": true, "name": "Alice Admin",
        "preferred_username": "alice", "groups": ["admins", "users"],
        "iss": "http://127.0.0.1:40000", "aud": "sidecar", "iat": NOW, "exp": NOW + 3600,
        "nonce": b64ish(12, 43), "at_hash": b64ish(13, 22), "auth_time": NOW, "sid": uuid(14)
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Keeps what the sidecar keeps with default headers and no assertions: `sub` and the default
/// headers' claims (auth.rs builds `kept_claims` from the same public constant).
fn default_headers_only(all: &Map<String, Value>) -> Map<String, Value> {
    all.iter()
        .filter(|(k, _)| k.as_str() == "sub" || DEFAULT_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A session as the callback writes it. Built from JSON so fields added later with a serde
/// default do not break the benchmark.
fn session(
    sub: &str,
    claims: Map<String, Value>,
    id_token: Option<String>,
    refresh: Option<String>,
) -> Session {
    serde_json::from_value(json!({
        "sub": sub,
        "claims": claims,
        "iat": NOW,
        "exp": NOW + 3600,
        "id_token": id_token,
        "refresh_token": refresh,
    }))
    .expect("Session from JSON")
}

/// The `Cookie` header a browser sends after receiving `set` (plus two unrelated cookies).
fn cookie_header(set: &[String]) -> String {
    let mut parts = vec!["_ga=GA1.2.1234567890.1700000000".to_string()];
    for s in set {
        let c = cookie::Cookie::parse(s.clone()).expect("Set-Cookie parses");
        parts.push(format!("{}={}", c.name(), c.value()));
    }
    parts.push("locale=de-DE".to_string());
    parts.join("; ")
}

// ---------------------------------------------------------------------------------------------
// Cookie size report
// ---------------------------------------------------------------------------------------------

struct SizeRow {
    case: &'static str,
    claims_json: usize,
    session_json: usize,
    sealed: usize,
    chunks: usize,
    set_cookie: usize,
    cookie_header: usize,
    id_token_kept: bool,
}

fn size_row(case: &'static str, codec: &Scope, s: &Session) -> SizeRow {
    let set = codec
        .write_session(s, &RequestCookies::default(), NOW)
        .unwrap_or_else(|e| panic!("{case}: write_session: {e}"));
    let values: Vec<String> = set
        .iter()
        .map(|v| {
            cookie::Cookie::parse(v.clone())
                .expect("parses")
                .value()
                .to_string()
        })
        .collect();
    let header = set
        .iter()
        .map(|v| {
            let c = cookie::Cookie::parse(v.clone()).expect("parses");
            format!("{}={}", c.name(), c.value())
        })
        .collect::<Vec<_>>()
        .join("; ");
    let back = codec
        .read_session(
            &RequestCookies::parse([header.as_str()].into_iter()),
            NOW + 1,
        )
        .unwrap_or_else(|| panic!("{case}: the written session does not read back"));
    SizeRow {
        case,
        claims_json: Value::Object(s.claims.clone()).to_string().len(),
        session_json: serde_json::to_string(s).expect("json").len(),
        sealed: values.iter().map(String::len).sum(),
        chunks: set.len(),
        set_cookie: set.iter().map(String::len).max().unwrap_or(0),
        cookie_header: header.len(),
        id_token_kept: back.id_token.is_some(),
    }
}

fn cookie_size_report() {
    let cfg = middleware_config();
    let codec = codec(&cfg);
    let all = keycloak_claims();
    let idt = id_token(&all);
    let rt = refresh_token();
    let dflt = default_headers_only(&all);
    let sub = all["sub"].as_str().unwrap_or_default().to_string();
    let alice = alice_claims();
    let rows = [
        size_row(
            "keycloak, all claims kept (an assertion on a root wildcard), + ID token + refresh token",
            &codec,
            &session(&sub, all.clone(), Some(idt.clone()), Some(rt.clone())),
        ),
        size_row(
            "keycloak, all claims kept, no tokens",
            &codec,
            &session(&sub, all.clone(), None, None),
        ),
        size_row(
            "keycloak, default headers only (sub, preferred_username, email, groups), + ID token (a template prints `.idToken`) + refresh token",
            &codec,
            &session(&sub, dflt.clone(), Some(idt.clone()), Some(rt.clone())),
        ),
        size_row(
            "**keycloak, default headers only, + refresh token (what a login stores; the ID token is in the hint cookie)**",
            &codec,
            &session(&sub, dflt.clone(), None, Some(rt.clone())),
        ),
        size_row(
            "keycloak, default headers only, no tokens",
            &codec,
            &session(&sub, dflt.clone(), None, None),
        ),
        size_row(
            "test OP alice, default headers only, + refresh token (the load benchmark's session)",
            &codec,
            &session(
                "alice",
                default_headers_only(&alice),
                None,
                Some(b64ish(15, 43)),
            ),
        ),
    ];
    println!(
        "\nSession cookie size (Keycloak-like user: 50 groups, {} realm roles, 3 clients' roles; ID token {} B, refresh token {} B, all claims {} B of JSON)",
        all["realm_access"]["roles"].as_array().map_or(0, Vec::len),
        idt.len(),
        rt.len(),
        Value::Object(all.clone()).to_string().len()
    );
    println!(
        "| case | claims JSON B | session JSON B | sealed B (all chunks) | chunks | largest Set-Cookie B | Cookie header B | ID token kept |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut json_rows = Vec::new();
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.case,
            r.claims_json,
            r.session_json,
            r.sealed,
            r.chunks,
            r.set_cookie,
            r.cookie_header,
            if r.id_token_kept { "yes" } else { "no" }
        );
        json_rows.push(json!({
            "case": r.case, "claims_json_bytes": r.claims_json, "session_json_bytes": r.session_json,
            "sealed_bytes": r.sealed, "chunks": r.chunks, "largest_set_cookie_bytes": r.set_cookie,
            "cookie_header_bytes": r.cookie_header, "id_token_kept": r.id_token_kept,
        }));
    }
    // The logout-hint cookies (Path = the logout path: sent with the logout request only).
    let hint = codec.write_hint(Some(&idt)).expect("write_hint");
    let hint_values: Vec<String> = hint
        .iter()
        .map(|v| cookie::Cookie::parse(v.clone()).expect("parses"))
        .filter(|c| !c.value().is_empty())
        .map(|c| c.value().to_string())
        .collect();
    let hint_bytes: usize = hint_values.iter().map(String::len).sum();
    println!(
        "\nLogout-hint cookies for the Keycloak-like ID token ({} B): {} B sealed in {} chunk(s), sent to the logout path only",
        idt.len(),
        hint_bytes,
        hint_values.len()
    );
    let dir = std::env::var("BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench").to_string());
    let _ = std::fs::create_dir_all(&dir);
    let out = json!({
        "id_token_bytes": idt.len(), "refresh_token_bytes": rt.len(),
        "all_claims_json_bytes": Value::Object(all).to_string().len(), "rows": json_rows,
        "hint_sealed_bytes": hint_bytes, "hint_chunks": hint_values.len(),
    });
    let path = format!("{dir}/cookie_size.json");
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    ) {
        Ok(()) => println!("(written to {path})\n"),
        Err(e) => println!("(could not write {path}: {e})\n"),
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

/// What a login stores: claims for the default headers and the refresh token (the ID token
/// lives in the logout-hint cookie), for the test OP's alice and the Keycloak-like user.
fn stored_sessions() -> [(&'static str, Session); 2] {
    let all = keycloak_claims();
    let sub = all["sub"].as_str().unwrap_or_default().to_string();
    [
        (
            "alice+refresh_token",
            session(
                "alice",
                default_headers_only(&alice_claims()),
                None,
                Some(b64ish(15, 43)),
            ),
        ),
        (
            "keycloak_default+refresh_token",
            session(
                &sub,
                default_headers_only(&all),
                None,
                Some(refresh_token()),
            ),
        ),
    ]
}

fn bench_session(c: &mut Criterion) {
    let cfg = middleware_config();
    let codec = codec(&cfg);
    let all = keycloak_claims();
    let sub = all["sub"].as_str().unwrap_or_default().to_string();
    let mut cases = stored_sessions().to_vec();
    cases.extend([
        // A template printing `.idToken` keeps it in the session.
        (
            "keycloak_default+id_token+refresh_token",
            session(
                &sub,
                default_headers_only(&all),
                Some(id_token(&all)),
                Some(refresh_token()),
            ),
        ),
        (
            "keycloak_all+tokens",
            session(
                &sub,
                all.clone(),
                Some(id_token(&all)),
                Some(refresh_token()),
            ),
        ),
    ]);
    let mut g = c.benchmark_group("session/parse+read_session");
    for (name, s) in &cases {
        let set = codec
            .write_session(s, &RequestCookies::default(), NOW)
            .expect("write");
        let header = cookie_header(&set);
        g.throughput(Throughput::Bytes(header.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{name}/{}chunk", set.len())),
            &header,
            |b, h| {
                b.iter(|| {
                    let req = RequestCookies::parse([black_box(h.as_str())].into_iter());
                    let s = codec.read_session(&req, NOW + 1);
                    assert!(s.is_some());
                    s
                })
            },
        );
    }
    g.finish();

    // The same reads when the session was not opened recently (the first request after a login
    // or a restart): more distinct cookies than the sidecar remembers (4096), read in turn, so
    // every read decodes, decrypts, inflates and parses, and the reads also pay for evicting
    // older sessions and for cookies that are no longer in the CPU cache. Fewer cookies in test
    // mode (CI smoke).
    let distinct = if std::env::args().any(|a| a == "--bench") {
        6_000
    } else {
        16
    };
    let mut g = c.benchmark_group("session/parse+read_session_not_remembered");
    for (name, s) in &cases {
        let headers: Vec<String> = (0..distinct)
            .map(|_| {
                let set = codec
                    .write_session(s, &RequestCookies::default(), NOW)
                    .expect("write");
                cookie_header(&set)
            })
            .collect();
        let mut i = 0;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 1) % headers.len();
                let req = RequestCookies::parse([black_box(headers[i].as_str())].into_iter());
                let s = codec.read_session(&req, NOW + 1);
                assert!(s.is_some());
                s
            })
        });
    }
    g.finish();

    // What a refresh (and the callback) pays to write the session back.
    let mut g = c.benchmark_group("session/write_session");
    for (name, s) in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(name), s, |b, s| {
            b.iter(|| codec.write_session(black_box(s), &RequestCookies::default(), NOW))
        });
    }
    g.finish();
}

fn bench_authz(c: &mut Criterion) {
    let all = keycloak_claims();
    let last_group = all["groups"][49].as_str().unwrap_or_default().to_string();
    let cases = [
        (
            "groups_anyof_hit_last_of_50",
            ClaimAssertion::new("groups", vec!["/nope".into(), last_group.clone()], vec![])
                .expect("path"),
        ),
        (
            "groups_anyof_miss_of_50",
            ClaimAssertion::new("groups", vec!["admins".into()], vec![]).expect("path"),
        ),
        (
            "realm_access.roles_allof_2",
            ClaimAssertion::new(
                "realm_access.roles",
                vec![],
                vec!["offline_access".into(), "app-vault-editor-02".into()],
            )
            .expect("path"),
        ),
        (
            "resource_access.client.roles",
            ClaimAssertion::new(
                "resource_access['traefik-oidc-sidecar-production'].roles",
                vec!["traefik-route-admin-access-0".into()],
                vec![],
            )
            .expect("path"),
        ),
        (
            "presence_email",
            ClaimAssertion::new("email", vec![], vec![]).expect("path"),
        ),
    ];
    let mut g = c.benchmark_group("authz/holds");
    for (name, a) in &cases {
        // Sanity: the "hit" cases hold, the "miss" case does not.
        let expect = !name.contains("miss");
        assert_eq!(a.holds(&all), expect, "{name}");
        g.bench_function(*name, |b| b.iter(|| a.holds(black_box(&all))));
    }
    g.finish();
}

fn bench_template(c: &mut Criterion) {
    let all = keycloak_claims();
    let dflt = default_headers_only(&all);
    // Custom headers exactly as a user writes them, parsed by the config loader.
    let custom: Vec<HeaderRule> = middleware_config_with(concat!(
        "    Headers:\n",
        "      - { Name: X-Auth-Name, Value: \"{{ .claims.name }}\" }\n",
        "      - { Name: X-Auth-User, Value: \"{{ .claims.preferred_username }}\" }\n",
        "      - { Name: X-Auth-Groups, Value: \"{{ .claims.groups }}\" }\n",
        "      - { Name: X-Auth-Roles, Value: \"{{ .claims.realm_access.roles }}\" }\n",
    ))
    .headers;
    assert_eq!(custom.len(), 4);
    let alice = default_headers_only(&alice_claims());
    let mut g = c.benchmark_group("template/identity_headers");
    g.bench_function("default_rules/alice", |b| {
        b.iter(|| {
            template::identity_headers(&[], &Data::claims(black_box(&alice)), Pass::Authorized)
        })
    });
    g.bench_function("default_rules/keycloak_50_groups", |b| {
        b.iter(|| {
            template::identity_headers(&[], &Data::claims(black_box(&dflt)), Pass::Authorized)
        })
    });
    g.bench_function("4_templates/keycloak", |b| {
        b.iter(|| {
            template::identity_headers(&custom, &Data::claims(black_box(&all)), Pass::Authorized)
        })
    });
    g.finish();
}

fn traefik_headers(cookie: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "grafana.corp.example.com"),
        (
            "x-forwarded-uri",
            "/d/k8s-cluster/kubernetes-cluster?orgId=1&refresh=30s&var-ns=prod",
        ),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "203.0.113.9"),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("sec-fetch-mode", "navigate"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if let Some(c) = cookie {
        h.insert("cookie", HeaderValue::from_str(c).expect("cookie value"));
    }
    h
}

fn bench_forwarded(c: &mut Criterion) {
    let trusted = Cidr::default_trusted();
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let headers = traefik_headers(None);
    assert!(forwarded::parse(peer, &trusted, &headers).is_ok());
    c.bench_function("forwarded/parse", |b| {
        b.iter(|| forwarded::parse(black_box(peer), &trusted, black_box(&headers)))
    });
}

/// Polls a future that never waits (the valid-session path does no I/O) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the valid-session path waited on something"),
    }
}

fn bench_decision(c: &mut Criterion) {
    let cfg = middleware_config();
    let codec = std::sync::Arc::new(codec(&cfg));
    let mw = Middleware::new(cfg, codec.clone()).expect("middleware");
    let trusted = Cidr::default_trusted();
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cases = stored_sessions();
    let mut g = c.benchmark_group("decision/forwarded+handle_valid_session");
    for (name, s) in &cases {
        let set = codec
            .write_session(s, &RequestCookies::default(), NOW)
            .expect("write");
        let headers = traefik_headers(Some(&cookie_header(&set)));
        let fwd = forwarded::parse(peer, &trusted, &headers).expect("forwarded");
        let reply = ready(mw.handle(&fwd, &headers, NOW + 1));
        assert_eq!(reply.status, 200, "{reply:?}");
        g.bench_function(*name, |b| {
            b.iter(|| {
                let fwd = forwarded::parse(peer, &trusted, black_box(&headers)).expect("forwarded");
                ready(mw.handle(&fwd, &headers, NOW + 1))
            })
        });
    }
    // Secret rotation (`PreviousSecrets`): the same middleware sealing under a new Secret with
    // the old one kept. A cookie of the new Secret costs what it did; a cookie of the old one is
    // opened after one failed tag check and re-sealed on every answer (this browser never takes
    // the new cookie, so every iteration pays the re-seal a real browser pays once).
    let rotated_cfg = middleware_config_sealing(
        "benchmark-rotated-secret-9876543210-zyxwvutsrqponmlkjihgfedcba",
        &format!("    PreviousSecrets: [\"{SECRET}\"]\n"),
    );
    let rotated =
        std::sync::Arc::new(traefik_oidc_sidecar::auth::scope_of(&[&rotated_cfg]).expect("scope"));
    let rotated_mw = Middleware::new(rotated_cfg, rotated.clone()).expect("middleware");
    for (name, s) in cases.iter().take(1) {
        for (sealer, label) in [(&rotated, "current_key"), (&codec, "previous_secret")] {
            let set = sealer
                .write_session(s, &RequestCookies::default(), NOW)
                .expect("write");
            let headers = traefik_headers(Some(&cookie_header(&set)));
            let fwd = forwarded::parse(peer, &trusted, &headers).expect("forwarded");
            let reply = ready(rotated_mw.handle(&fwd, &headers, NOW + 1));
            assert_eq!(reply.status, 200, "{reply:?}");
            let resealed = reply
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("set-cookie"));
            assert_eq!(resealed, label == "previous_secret", "{label}");
            g.bench_function(BenchmarkId::new(format!("rotating/{label}"), name), |b| {
                b.iter(|| {
                    let fwd =
                        forwarded::parse(peer, &trusted, black_box(&headers)).expect("forwarded");
                    ready(rotated_mw.handle(&fwd, &headers, NOW + 1))
                })
            });
        }
    }
    // The admin API on, after operators revoked 1000 other users' sessions in cookie mode: every
    // decision of the scope then consults the ended-session list (a read lock, two lookups).
    // Off (no revocation, no back-channel logout yet), the list costs one atomic load.
    if let Some((name, s)) = cases.first() {
        let by = |i: usize| traefik_oidc_sidecar::session::EndBy::Sub(format!("revoked-{i}"));
        for i in 0..1000 {
            ready(codec.end_sessions(by(i), NOW, NOW)).expect("revoke");
        }
        let set = codec
            .write_session(s, &RequestCookies::default(), NOW)
            .expect("write");
        let headers = traefik_headers(Some(&cookie_header(&set)));
        let fwd = forwarded::parse(peer, &trusted, &headers).expect("forwarded");
        assert_eq!(ready(mw.handle(&fwd, &headers, NOW + 1)).status, 200);
        g.bench_function(BenchmarkId::new("admin_1000_revoked_subs", *name), |b| {
            b.iter(|| {
                let fwd = forwarded::parse(peer, &trusted, black_box(&headers)).expect("forwarded");
                ready(mw.handle(&fwd, &headers, NOW + 1))
            })
        });
    }
    // StepUp on (acr and max_age both judged on every request), for a session that satisfies
    // it: the same Keycloak session, stepped up. Compare with `keycloak_default+refresh_token`.
    let strict_cfg = middleware_config_with(concat!(
        "    StepUp:\n",
        "      AcrValues: [gold, platinum]\n",
        "      MaxAge: 15m\n",
    ));
    let strict_scope =
        std::sync::Arc::new(traefik_oidc_sidecar::auth::scope_of(&[&strict_cfg]).expect("scope"));
    let strict = Middleware::new(strict_cfg, strict_scope.clone()).expect("middleware");
    let mut stepped = cases[1].1.clone();
    stepped.acr = Some("platinum".into());
    stepped.auth_time = Some(NOW - 60);
    let set = strict_scope
        .write_session(&stepped, &RequestCookies::default(), NOW)
        .expect("write");
    let headers = traefik_headers(Some(&cookie_header(&set)));
    let fwd = forwarded::parse(peer, &trusted, &headers).expect("forwarded");
    assert_eq!(ready(strict.handle(&fwd, &headers, NOW + 1)).status, 200);
    g.bench_function(
        BenchmarkId::from_parameter("keycloak_default+refresh_token+step_up_on"),
        |b| {
            b.iter(|| {
                let fwd = forwarded::parse(peer, &trusted, black_box(&headers)).expect("forwarded");
                ready(strict.handle(&fwd, &headers, NOW + 1))
            })
        },
    );
    // `SessionCookie.IdleTimeout` on, stamp fresh (the common case: nothing is written), to
    // compare with `alice+refresh_token` (off).
    let idle_cfg = middleware_config_with("    SessionCookie:\n      IdleTimeout: 30m\n");
    let idle_scope =
        std::sync::Arc::new(traefik_oidc_sidecar::auth::scope_of(&[&idle_cfg]).expect("scope"));
    let idle_mw = Middleware::new(idle_cfg, idle_scope.clone()).expect("middleware");
    let (_, alice) = &cases[0];
    let set = idle_scope
        .write_session(alice, &RequestCookies::default(), NOW)
        .expect("write");
    let headers = traefik_headers(Some(&cookie_header(&set)));
    let fwd = forwarded::parse(peer, &trusted, &headers).expect("forwarded");
    let reply = ready(idle_mw.handle(&fwd, &headers, NOW + 1));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        !reply
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("set-cookie")),
        "a fresh stamp writes nothing"
    );
    g.bench_function(
        BenchmarkId::new("alice+refresh_token", "idle_timeout_on_stamp_fresh"),
        |b| {
            b.iter(|| {
                let fwd = forwarded::parse(peer, &trusted, black_box(&headers)).expect("forwarded");
                ready(idle_mw.handle(&fwd, &headers, NOW + 1))
            })
        },
    );
    g.finish();
}

fn bench_telemetry(c: &mut Criterion) {
    use std::time::Instant;
    use traefik_oidc_sidecar::telemetry::{Histogram, trace};
    let mut g = c.benchmark_group("telemetry");
    let h = Histogram::new();
    g.bench_function("histogram_observe", |b| {
        b.iter(|| h.observe(black_box(Duration::from_micros(3))))
    });
    // Exactly the work `Middleware::handle` wraps around the decision when tracing is off.
    g.bench_function("handle_overhead_tracing_off", |b| {
        b.iter(|| {
            let start = Instant::now();
            let off = black_box(trace::tracer()).is_none();
            h.observe(start.elapsed());
            off
        })
    });
    g.finish();
}

fn main() {
    cookie_size_report();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_session(&mut c);
    bench_authz(&mut c);
    bench_template(&mut c);
    bench_forwarded(&mut c);
    bench_decision(&mut c);
    bench_telemetry(&mut c);
    c.final_summary();
}
