//! Unit tests of the session scope (moved out of `scope.rs` to keep that file about the code).

use super::*;
use crate::session::SameSite;
use crate::session::codec::tests::{browser, session};

const SECRET: &str = "0123456789abcdef0123456789abcdef!";

fn attrs() -> SessionCookieConfig {
    SessionCookieConfig {
        path: "/".into(),
        domain: None,
        secure: true,
        http_only: true,
        same_site: SameSite::Lax,
        max_age: 0,
        idle_timeout: None,
    }
}

fn key(secret: &str, url: &str, client: &str, prefix: &str, domain: Option<&str>) -> ScopeKey {
    ScopeKey::new(&Secret::new(secret), url, client, prefix, domain, "/")
}

fn scope(k: &ScopeKey) -> Scope {
    Scope::new(
        k,
        attrs(),
        vec!["/logout".into()],
        Keep::default(),
        vec![],
        vec!["m".into()],
    )
}

#[test]
fn a_session_opens_only_in_its_own_scope() {
    let base = key(SECRET, "https://idp/r", "app", "P", None);
    let s = scope(&base);
    let set = s
        .write_session(&session(10), &RequestCookies::default(), 1000)
        .unwrap();
    let header = browser(&set);
    let req = RequestCookies::parse([header.as_str()].into_iter());
    assert!(s.read_session(&req, 1500).is_some());
    // Another Scope value with an equal key (another middleware of the scope): opens.
    assert!(scope(&base).read_session(&req, 1500).is_some());
    // A trailing slash on the provider URL and a leading dot on the domain change nothing.
    assert_eq!(base, key(SECRET, "https://idp/r/", "app", "P", None));
    assert_eq!(
        key(SECRET, "u", "c", "P", Some(".Example.com")),
        key(SECRET, "u", "c", "P", Some("example.com"))
    );
    // Any difference in the key: another scope, even with the same cookie names.
    for (name, other) in [
        (
            "secret",
            key(
                "another-secret-another-secret-12345",
                "https://idp/r",
                "app",
                "P",
                None,
            ),
        ),
        (
            "provider",
            key(SECRET, "https://idp/other", "app", "P", None),
        ),
        ("client", key(SECRET, "https://idp/r", "app2", "P", None)),
        (
            "domain",
            key(SECRET, "https://idp/r", "app", "P", Some("example.com")),
        ),
        (
            "path",
            ScopeKey::new(
                &Secret::new(SECRET),
                "https://idp/r",
                "app",
                "P",
                None,
                "/x",
            ),
        ),
    ] {
        assert_ne!(other, base, "{name}");
        assert!(scope(&other).read_session(&req, 1500).is_none(), "{name}");
    }
    // Another prefix: other cookie names, and the value moved under them does not open.
    let q = key(SECRET, "https://idp/r", "app", "Q", None);
    let moved = header.replace("P.session", "Q.session");
    let req = RequestCookies::parse([moved.as_str()].into_iter());
    assert!(scope(&q).read_session(&req, 1500).is_none());
    assert!(base.same_cookie_names(&key("x".repeat(40).as_str(), "u", "c", "P", None)));
    assert!(!base.same_cookie_names(&q));
}

#[test]
fn a_session_opened_again_comes_from_memory() {
    let s = scope(&key(SECRET, "https://idp/r", "app", "P", None));
    let set = s
        .write_session(&session(6000), &RequestCookies::default(), 1000)
        .unwrap();
    assert!(set.len() > 1);
    let header = browser(&set);
    let req = RequestCookies::parse([header.as_str()].into_iter());
    let first = s.open_session(&req).unwrap();
    let again = s.open_session(&req).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    // The expiry is still checked on the remembered session.
    assert!(s.read_session(&req, 1500).is_some());
    assert!(s.read_session(&req, 2000).is_none());
}

fn group(g: &str) -> ClaimAssertion {
    ClaimAssertion::new("groups", vec![g.into()], vec![]).unwrap()
}

/// A scope of `members` with login-time `judges`.
fn judged(judges: Vec<Judge>, members: &[&str]) -> Scope {
    Scope::new(
        &key(SECRET, "u", "c", "P", None),
        attrs(),
        vec!["/logout".into()],
        Keep::default(),
        judges,
        members.iter().map(|m| m.to_string()).collect(),
    )
}

#[test]
fn verdicts_are_per_judge_and_keep_is_a_union() {
    let s = judged(
        vec![
            Judge::new("alice", &[group("a")]),
            Judge::new("bob", &[group("b")]),
        ],
        &["alice", "bob", "root"],
    );
    let mut claims = Map::new();
    claims.insert("groups".into(), serde_json::json!(["a"]));
    let v = s.verdicts(&claims);
    let a = rules_print(&[group("a")]);
    let b = rules_print(&[group("b")]);
    assert_eq!(v.get("alice"), Some(&Verdict::new(true, a)));
    assert_eq!(v.get("bob"), Some(&Verdict::new(false, b)));
    assert_eq!(v.get("root"), None, "no assertions: nothing to remember");

    let mut k = Keep {
        claims: ["sub".to_string()].into(),
        ..Keep::default()
    };
    k.merge(&Keep {
        claims: ["groups".to_string()].into(),
        access_token: true,
        id_token: false,
    });
    assert!(k.access_token && !k.id_token);
    claims.insert("secret_stuff".into(), serde_json::json!("x"));
    claims.insert("sub".into(), serde_json::json!("u"));
    let kept = k.claims(claims);
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["groups", "sub"]);
}

#[test]
fn a_verdict_is_bound_to_the_rules_that_made_it() {
    let s = judged(vec![Judge::new("m", &[group("a")])], &["m"]);
    let mut claims = Map::new();
    claims.insert("groups".into(), serde_json::json!(["a"]));
    let before = s.verdicts(&claims)["m"];
    let permissive = rules_print(&[group("a")]);
    assert_eq!(before.under(&permissive), Some(true));
    // A reload tightens `m`'s rules: the verdict made before is no answer under them, and
    // a session made from now on gets the verdict of the new rules.
    let strict = Judge::new("m", &[group("a"), group("b")]);
    let strict_rules = strict.rules;
    s.reset(Keep::default(), vec![strict], vec!["m".into()]);
    assert_eq!(before.under(&strict_rules), None);
    assert_eq!(s.verdicts(&claims)["m"].under(&strict_rules), Some(false));
    // The same rules written again (another reload, unchanged): the verdict still counts.
    assert_eq!(Judge::new("m", &[group("a")]).rules, permissive);
}

#[tokio::test]
async fn refresh_cells_are_shared_per_token_and_expire() {
    let s = scope(&key(SECRET, "u", "c", "P", None));
    let a = s.refresh_cell("rt-1", 1000).await;
    let b = s.refresh_cell("rt-1", 1010).await;
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &s.refresh_cell("rt-2", 1010).await));
    let later = s.refresh_cell("rt-1", 1000 + REFRESH_REUSE_SECS).await;
    assert!(!Arc::ptr_eq(&a, &later));
}
