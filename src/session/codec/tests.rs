//! Unit tests of the cookie codec (moved out of `codec.rs` to keep that file about the code).

use super::*;
use crate::session::{Secret, random_token};
use serde_json::{Map, Value};

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

/// A codec of a scope with the cookie prefix `prefix`.
pub(crate) fn codec(prefix: &str) -> CookieCodec {
    codec_for("0123456789abcdef0123456789abcdef!", "app", prefix)
}

fn codec_for(secret: &str, client: &str, prefix: &str) -> CookieCodec {
    let key = ScopeKey::new(
        &Secret::new(secret),
        "https://idp.example/realm",
        client,
        prefix,
        None,
        "/",
    );
    CookieCodec::new(&key, attrs(), vec!["/logout".into()])
}

/// Opens the request's session with `c` when it has not expired, as the scope does.
pub(crate) fn read(c: &CookieCodec, req: &RequestCookies<'_>, now: u64) -> Option<Session> {
    let (chunks, n) = c.session_chunks(req)?;
    c.open_session(&chunks[..n]).filter(|s| s.exp > now)
}

/// Random base64 text: deflate saves only about a quarter of it.
pub(crate) fn noise(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes {
        out.push_str(&random_token());
    }
    out.truncate(bytes);
    out
}

pub(crate) fn session(claim_bytes: usize) -> Session {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String("u1".into()));
    claims.insert("blob".into(), Value::String(noise(claim_bytes)));
    Session {
        sub: "u1".into(),
        sid: Some("sid-1".into()),
        claims,
        iat: 1000,
        exp: 2000,
        id_token: Some("eyJ.hdr.sig".into()),
        refresh_token: Some("rt-secret".into()),
        access_token: None,
        verdicts: [("m".to_string(), crate::session::Verdict::new(true, [1; 6]))].into(),
        challenged: Default::default(),
        rendered: Default::default(),
        sealed_by_previous: false,
        acr: None,
        auth_time: None,
        step_up_failed: Default::default(),
        active: None,
    }
}

/// Turns Set-Cookie values into a Cookie header, as a browser would (removals dropped).
pub(crate) fn browser(set: &[String]) -> String {
    set.iter()
        .filter_map(|s| Cookie::parse(s.clone()).ok())
        .filter(|c| !c.value().is_empty())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn session_round_trip_and_chunk_counts() {
    let c = codec("P");
    // Sealed size ≈ 4/3 × (nonce + deflated JSON + tag); the random claim deflates to ~3/4.
    for (bytes, chunks) in [(10, 1), (2000, 1), (4000, 2), (12000, 4)] {
        let s = session(bytes);
        let set = c
            .write_session(&s, &RequestCookies::default(), 1000)
            .unwrap();
        assert_eq!(set.len(), chunks, "{bytes} bytes");
        for v in &set {
            assert!(v.len() < 4096, "cookie of {} bytes", v.len());
        }
        let header = browser(&set);
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
        assert_eq!(read(&c, &req, 2000), None, "expired");
    }
}

#[test]
fn repetitive_claims_are_deflated_into_fewer_chunks() {
    let c = codec("P");
    let mut s = session(0);
    let groups: Vec<Value> = (0..200)
        .map(|i| {
            Value::String(format!(
                "/corp/engineering/platform-infrastructure/team-{i:03}"
            ))
        })
        .collect();
    s.claims.insert("groups".into(), Value::Array(groups));
    let json = serde_json::to_vec(&s).unwrap();
    assert!(json.len() > 2 * CHUNK_SIZE, "{} bytes of JSON", json.len());
    let set = c
        .write_session(&s, &RequestCookies::default(), 1000)
        .unwrap();
    assert_eq!(set.len(), 1, "deflated into one chunk");
    let header = browser(&set);
    let req = RequestCookies::parse([header.as_str()].into_iter());
    assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
}

#[test]
fn pack_and_unpack() {
    for (name, plain, deflated) in [
        ("short JSON stays as is", br#"{"sub":"u"}"#.to_vec(), false),
        (
            "long repetitive JSON is deflated",
            format!("{{\"g\":\"{}\"}}", "ab".repeat(2000)).into_bytes(),
            true,
        ),
        (
            "incompressible stays as is",
            // Random bytes after a fixed first one: a plaintext starting with the DEFLATED
            // marker by chance (1 in 256) would make this test flaky.
            std::iter::once(b'x')
                .chain((0..4000).map(|_| rand::random::<u8>()))
                .collect(),
            false,
        ),
    ] {
        let packed = pack(plain.clone());
        assert_eq!(packed.first() == Some(&DEFLATED), deflated, "{name}");
        assert_eq!(unpack(packed), Some(plain), "{name}");
    }
    // Beyond MAX_PLAINTEXT nothing is inflated (a backstop: only authenticated values get here).
    let bomb = pack(vec![b'{'; MAX_PLAINTEXT + 1]);
    assert!(bomb.len() < 1024);
    assert_eq!(unpack(bomb), None);
}

#[test]
fn sessions_sealed_in_the_private_jar_layout_open() {
    // The layout is the cookie crate's private jar, keyed from the scope key's material.
    let c = codec("P");
    let s = session(10);
    let master = ScopeKey::new(
        &Secret::new("0123456789abcdef0123456789abcdef!"),
        "https://idp.example/realm",
        "app",
        "P",
        None,
        "/",
    )
    .master();
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&Key::derive_from(&master))
        .add(Cookie::new("P.session", serde_json::to_string(&s).unwrap()));
    let sealed = jar.get("P.session").unwrap().value().to_string();
    let header = format!("P.session.0={sealed}");
    let req = RequestCookies::parse([header.as_str()].into_iter());
    assert_eq!(read(&c, &req, 1500).as_ref(), Some(&s));
}

#[test]
fn logout_hint_lives_on_the_logout_path() {
    let c = codec("P");
    let token = format!("eyJ{}", noise(4000));
    let set = c.write_hint(Some(&token)).unwrap();
    assert_eq!(set.len(), MAX_HINT_CHUNKS, "{set:#?}");
    for v in &set {
        let parsed = Cookie::parse(v.clone()).unwrap();
        assert_eq!(parsed.path(), Some("/logout"), "{v}");
        assert!(v.len() < 4096);
    }
    assert_eq!(set.iter().filter(|v| v.contains("Max-Age=0")).count(), 1);
    let header = browser(&set);
    let req = RequestCookies::parse([header.as_str()].into_iter());
    assert_eq!(c.read_hint(&req).as_deref(), Some(token.as_str()));
    // The hint is not a session, and a session chunk is not a hint (the name is bound in).
    assert_eq!(read(&c, &req, 1500), None);
    let moved = header.replace("P.hint.", "P.session.");
    let req = RequestCookies::parse([moved.as_str()].into_iter());
    assert_eq!(read(&c, &req, 1500), None);
    // Too long to be a URL parameter, or absent: every hint cookie is expired.
    for t in [None, Some("x".repeat(MAX_HINT_LEN + 1))] {
        let set = c.write_hint(t.as_deref()).unwrap();
        assert_eq!(set.len(), MAX_HINT_CHUNKS);
        assert!(
            set.iter()
                .all(|v| v.contains("Max-Age=0") && v.contains("Path=/logout"))
        );
    }
    assert_eq!(c.clear_hint().len(), MAX_HINT_CHUNKS);
}

#[test]
fn oversized_session_drops_id_token_then_fails() {
    let c = codec("P");
    let mut s = session(10);
    s.id_token = Some(noise(CHUNK_SIZE * MAX_CHUNKS));
    let set = c
        .write_session(&s, &RequestCookies::default(), 1000)
        .unwrap();
    let header = browser(&set);
    let back = read(
        &c,
        &RequestCookies::parse([header.as_str()].into_iter()),
        1500,
    )
    .unwrap();
    assert_eq!(back.id_token, None);
    assert!(
        c.write_session(
            &session(CHUNK_SIZE * MAX_CHUNKS * 4 / 3),
            &RequestCookies::default(),
            1000
        )
        .is_err()
    );
    // Repetitive claims that deflate into one chunk but exceed what we would inflate.
    let mut big = session(0);
    big.claims
        .insert("blob".into(), Value::String("ab".repeat(MAX_PLAINTEXT)));
    assert!(
        c.write_session(&big, &RequestCookies::default(), 1000)
            .is_err()
    );
}

#[test]
fn tampered_truncated_foreign_cookies_do_not_open() {
    let c = codec("P");
    let set = c
        .write_session(&session(5000), &RequestCookies::default(), 1000)
        .unwrap();
    let good = browser(&set);
    let mut cases: Vec<(String, String)> = vec![
        (
            "missing chunk 1".into(),
            good.split("; ").next().unwrap().to_string(),
        ),
        ("reordered".into(), {
            let parts: Vec<&str> = good.split("; ").collect();
            let v0 = parts[0].split_once('=').unwrap().1;
            let v1 = parts[1].split_once('=').unwrap().1;
            format!("P.session.0={v1}; P.session.1={v0}")
        }),
        (
            "tampered".into(),
            good.replacen("P.session.0=A", "P.session.0=B", 1).replacen(
                "P.session.0=",
                "P.session.0=x",
                1,
            ),
        ),
        ("duplicate chunk".into(), format!("{good}; P.session.0=abc")),
        ("chunk beyond the cap".into(), {
            let mut h = good.clone();
            for i in 2..=MAX_CHUNKS {
                h.push_str(&format!("; P.session.{i}=AAAA"));
            }
            h
        }),
    ];
    cases.push(("garbage".into(), "P.session.0=%%%".into()));
    for (name, header) in cases {
        let req = RequestCookies::parse([header.as_str()].into_iter());
        assert_eq!(read(&c, &req, 1500), None, "{name}");
    }
    // Another scope: another client, another secret, another prefix.
    let req = RequestCookies::parse([good.as_str()].into_iter());
    assert!(read(&c, &req, 1500).is_some());
    assert_eq!(
        read(
            &codec_for("0123456789abcdef0123456789abcdef!", "other-client", "P"),
            &req,
            1500
        ),
        None
    );
    let other_secret = codec_for("another-secret-another-secret-another", "app", "P");
    assert_eq!(read(&other_secret, &req, 1500), None);
    let renamed = good.replace("P.session", "Q.session");
    let req = RequestCookies::parse([renamed.as_str()].into_iter());
    assert_eq!(read(&codec("Q"), &req, 1500), None);
}

#[test]
fn foreign_cookies_keep_everything_but_ours() {
    let c = codec("P");
    let req = RequestCookies::parse(["a=1; P.session.0=x; Pz=2; P.flow.abc=y", "b=3"].into_iter());
    assert_eq!(c.foreign_cookies(&req), "a=1; Pz=2; b=3");
}
