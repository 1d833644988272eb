//! A hostile or broken identity provider: forged, unsigned, mis-addressed and expired ID tokens,
//! and token endpoints that fail, lie, redirect or hang. Every case drives a full login (the
//! sidecar's redirect, the fake IdP's authorize step, the callback through forwardAuth) and
//! asserts that the callback is refused (4xx/5xx, never a 2xx or a redirect into the app) and
//! that no session cookie appears. One positive control shows the same path can succeed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "hostile/fake_idp.rs"]
mod fake_idp;
#[path = "hostile/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use fake_idp::*;
use harness::*;
use serde_json::{Value, json};

fn yaml(issuer: &str) -> String {
    format!(
        r#"
logLevel: warn
trustedProxies: [127.0.0.0/8]
middlewares:
  default:
    Provider:
      Url: {issuer}
      ClientId: {CLIENT_ID}
      ClientSecret: {CLIENT_SECRET}
    Secret: {SECRET}
    CookieNamePrefix: TraefikOidcSidecar.default
    SessionCookie:
      Secure: false
"#
    )
}

struct Setup {
    idp: FakeIdp,
    sc: Running,
}

async fn setup() -> Setup {
    let idp = FakeIdp::start().await;
    let sc = Running::start(&yaml(&idp.issuer)).await;
    sc.ready().await;
    Setup { idp, sc }
}

impl Setup {
    /// One login in a fresh browser with the current token behaviour: the callback's answer.
    async fn attempt(&self) -> (Resp, Agent) {
        let mut a = Agent::new(&self.sc, "default");
        let r = a.forward(HOME, Kind::Navigate).await;
        assert_eq!(r.status, 302, "{r:#?}");
        let loc = r.location();
        assert!(
            loc.starts_with(&format!("{}/authorize?", self.idp.issuer)),
            "{loc}"
        );
        let cb = a.idp_authorize(&loc).await;
        let r = a.forward(&cb, Kind::Navigate).await;
        (r, a)
    }

    /// Runs a login with `b` and asserts the sidecar refuses it and holds no session after.
    async fn refuses(&self, what: &str, b: Behavior) -> Resp {
        self.idp.set(b);
        let (r, mut a) = self.attempt().await;
        r.assert_refused(what);
        eprintln!(
            "{what}: {} {}",
            r.status,
            r.body
                .split("<h1>")
                .nth(1)
                .unwrap_or("")
                .split("</h1>")
                .next()
                .unwrap_or("")
        );
        assert!(a.session("default").is_empty(), "{what}: session in jar");
        let after = a.forward(HOME, Kind::Xhr).await;
        assert_eq!(after.status, 401, "{what}: not logged in afterwards");
        r
    }
}

fn token(f: impl Fn(&TokenCtx) -> String + Send + Sync + 'static) -> Behavior {
    behavior(move |c| TokenReply::id_token(f(c)))
}

fn obj(m: serde_json::Map<String, Value>) -> Value {
    Value::Object(m)
}

#[tokio::test]
async fn positive_control_a_correct_token_logs_in() {
    let s = setup().await;
    let (r, mut a) = s.attempt().await;
    assert_eq!(r.status, 302, "{r:#?}");
    assert_eq!(r.location(), HOME);
    let r = a.forward(HOME, Kind::Navigate).await;
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-forwarded-user"), Some("alice"));
    assert_eq!(s.idp.token_hits(), 1);
    assert_eq!(s.idp.trap_hits(), 0);
}

#[tokio::test]
async fn unsigned_alg_none_tokens_are_refused() {
    let s = setup().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        s.refuses(
            &format!("alg={alg}, empty signature"),
            token(move |c| {
                jws(&json!({"alg": alg, "typ": "JWT"}), &obj(c.claims()), |_| {
                    Vec::new()
                })
            }),
        )
        .await;
    }
    // `none` with a real RS256 signature attached, and with the IdP's kid.
    s.refuses(
        "alg=none with a signature",
        token(|c| {
            let k = RsaKey::idp();
            jws(
                &json!({"alg": "none", "kid": k.kid}),
                &obj(c.claims()),
                |m| k.sign(m),
            )
        }),
    )
    .await;
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let s = setup().await;
    let k = RsaKey::idp();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("PEM", k.public_pem.clone().into_bytes()),
        ("PEM trimmed", k.public_pem.trim().as_bytes().to_vec()),
        ("DER", k.public_der.clone()),
        ("modulus", k.n.clone()),
        ("JWK JSON", k.jwk().to_string().into_bytes()),
    ];
    for (name, secret) in secrets {
        s.refuses(
            &format!("HS256 with the public key as {name}"),
            token(move |c| {
                jws(
                    &json!({"alg": "HS256", "typ": "JWT", "kid": RsaKey::idp().kid}),
                    &obj(c.claims()),
                    |m| hmac_sha256(&secret, m),
                )
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_client_secret_is_refused() {
    let s = setup().await;
    for header in [
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({"alg": "HS256", "typ": "JWT", "kid": RsaKey::idp().kid}),
    ] {
        s.refuses(
            "HS256 with the client secret",
            token(move |c| {
                jws(&header, &obj(c.claims()), |m| {
                    hmac_sha256(CLIENT_SECRET.as_bytes(), m)
                })
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn signature_by_an_unpublished_key_is_refused() {
    let s = setup().await;
    let cases = [
        ("the IdP's kid", Some(RsaKey::idp().kid.clone())),
        ("no kid", None),
    ];
    for (name, kid) in cases {
        s.refuses(
            &format!("RS256 by another key with {name}"),
            token(move |c| {
                let mut h = json!({"alg": "RS256", "typ": "JWT"});
                if let Some(k) = &kid {
                    h["kid"] = json!(k);
                }
                jws(&h, &obj(c.claims()), |m| RsaKey::other().sign(m))
            }),
        )
        .await;
    }
    // A valid token whose payload was swapped after signing.
    s.refuses(
        "payload swapped after signing",
        token(|c| {
            let good = RsaKey::idp().rs256(&obj(c.claims()));
            let mut forged = c.claims();
            forged.insert("sub".into(), json!("admin"));
            let parts: Vec<&str> = good.split('.').collect();
            format!(
                "{}.{}.{}",
                parts[0],
                b64(obj(forged).to_string().as_bytes()),
                parts[2]
            )
        }),
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_at_most_once_and_never_follows_jku() {
    let s = setup().await;
    let before = s.idp.jwks_hits();
    assert_eq!(before, 1, "discovery fetched the JWKS once");
    for i in 0..5 {
        s.refuses(
            &format!("unknown kid, attempt {i}"),
            token(|c| {
                jws(
                    &json!({"alg": "RS256", "kid": "not-published", "jku": c.trap, "x5u": c.trap}),
                    &obj(c.claims()),
                    |m| RsaKey::other().sign(m),
                )
            }),
        )
        .await;
    }
    let refetches = s.idp.jwks_hits() - before;
    assert!(
        refetches <= 1,
        "{refetches} JWKS refetches for 5 unknown kids within a minute"
    );
    assert_eq!(s.idp.trap_hits(), 0, "jku/x5u must never be fetched");
}

#[tokio::test]
async fn rotated_signing_key_is_picked_up_by_one_refetch() {
    let s = setup().await;
    let before = s.idp.jwks_hits();
    s.idp
        .set_jwks(json!({"keys": [RsaKey::idp().jwk(), RsaKey::other().jwk()]}));
    s.idp
        .set(token(|c| RsaKey::other().rs256(&obj(c.claims()))));
    let (r, _) = s.attempt().await;
    assert_eq!(r.status, 302, "new key accepted after a refetch: {r:#?}");
    assert_eq!(r.location(), HOME);
    assert_eq!(s.idp.jwks_hits() - before, 1);
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let s = setup().await;
    let issuer = s.idp.issuer.clone();
    let variants = vec![
        json!("https://evil.test"),
        json!(format!("{issuer}/")),
        json!(issuer.replace("http://", "HTTP://")),
        json!(issuer.replace("127.0.0.1", "localhost")),
        json!([issuer.clone()]),
        Value::Null,
    ];
    for iss in variants {
        let label = format!("iss={iss}");
        s.refuses(
            &label,
            token(move |c| {
                let mut m = c.claims();
                if iss.is_null() {
                    m.remove("iss");
                } else {
                    m.insert("iss".into(), iss.clone());
                }
                RsaKey::idp().rs256(&obj(m))
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn internal_url_layout_still_requires_the_discovered_issuer_in_tokens() {
    // Provider.Url is another address of the IdP (localhost), so its discovery document names
    // another issuer (127.0.0.1): the sidecar accepts the document, and then only tokens naming
    // exactly the discovered issuer — never the configured address.
    let idp = FakeIdp::start().await;
    let url = idp.issuer.replace("127.0.0.1", "localhost");
    let sc = Running::start(&yaml(&url)).await;
    sc.ready().await;
    let s = Setup { idp, sc };
    let (r, _) = s.attempt().await;
    assert_eq!(r.status, 302, "the discovered issuer logs in: {r:#?}");
    for iss in [url.clone(), format!("{url}/"), "https://evil.test".into()] {
        s.refuses(
            &format!("internal-URL layout, iss={iss}"),
            token(move |c| {
                let mut m = c.claims();
                m.insert("iss".into(), json!(iss.clone()));
                RsaKey::idp().rs256(&obj(m))
            }),
        )
        .await;
    }
}

fn edit(f: impl Fn(&mut serde_json::Map<String, Value>) + Send + Sync + 'static) -> Behavior {
    with_claims(f)
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let s = setup().await;
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("another audience", Some(json!("other-app"))),
        ("another audience in a list", Some(json!(["other-app"]))),
        ("case-changed client id", Some(json!("SIDECAR"))),
        ("client id as a prefix", Some(json!("sidecar-admin"))),
        ("empty list", Some(json!([]))),
        ("missing", None),
    ];
    for (name, aud) in cases {
        s.refuses(
            &format!("aud: {name}"),
            edit(move |m| match &aud {
                Some(a) => {
                    m.insert("aud".into(), a.clone());
                }
                None => {
                    m.remove("aud");
                }
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn several_audiences_need_our_azp() {
    let s = setup().await;
    s.refuses(
        "aud [us, other] without azp",
        edit(|m| {
            m.insert("aud".into(), json!([CLIENT_ID, "other-app"]));
        }),
    )
    .await;
    // Control: the same token naming us as the authorized party is fine.
    s.idp.set(edit(|m| {
        m.insert("aud".into(), json!([CLIENT_ID, "other-app"]));
        m.insert("azp".into(), json!(CLIENT_ID));
    }));
    let (r, _) = s.attempt().await;
    assert_eq!(r.status, 302, "{r:#?}");
}

#[tokio::test]
async fn wrong_azp_is_refused() {
    let s = setup().await;
    for aud in [json!(CLIENT_ID), json!([CLIENT_ID, "other-app"])] {
        s.refuses(
            &format!("azp=other-app, aud={aud}"),
            edit(move |m| {
                m.insert("aud".into(), aud.clone());
                m.insert("azp".into(), json!("other-app"));
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn token_minted_for_another_client_is_refused() {
    let s = setup().await;
    s.refuses(
        "aud and azp of another client",
        edit(|m| {
            m.insert("aud".into(), json!("other-app"));
            m.insert("azp".into(), json!("other-app"));
        }),
    )
    .await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let s = setup().await;
    let shifted: Vec<(&str, &str, i64)> = vec![
        ("expired beyond the leeway", "exp", -120),
        ("expired an hour ago", "exp", -3600),
        ("issued in the future", "iat", 120),
        ("not valid before the future", "nbf", 120),
    ];
    for (name, claim, delta) in shifted {
        s.refuses(
            name,
            behavior(move |c| {
                let mut m = c.claims();
                let t = (c.now as i64 + delta) as u64;
                m.insert(claim.into(), json!(t));
                if claim == "exp" {
                    m.insert("iat".into(), json!(t - 300));
                }
                TokenReply::id_token(RsaKey::idp().rs256(&obj(m)))
            }),
        )
        .await;
    }
    s.refuses(
        "nbf that is not a number",
        edit(|m| {
            m.insert("nbf".into(), json!("soon"));
        }),
    )
    .await;
    s.refuses(
        "exp missing",
        edit(|m| {
            m.remove("exp");
        }),
    )
    .await;
}

#[tokio::test]
async fn missing_or_wrong_nonce_is_refused() {
    let s = setup().await;
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("missing", None),
        ("null", Some(Value::Null)),
        ("wrong", Some(json!("not-the-nonce"))),
        (
            "another login's",
            Some(json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        ),
    ];
    for (name, nonce) in cases {
        s.refuses(
            &format!("nonce {name}"),
            edit(move |m| match &nonce {
                Some(n) => {
                    m.insert("nonce".into(), n.clone());
                }
                None => {
                    m.remove("nonce");
                }
            }),
        )
        .await;
    }
    // The nonce of a previous, completed login in another browser is not this login's.
    let captured = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let keep = captured.clone();
    s.idp.set(behavior(move |c| {
        *keep.lock().unwrap() = c.nonce.clone();
        TokenReply::id_token(RsaKey::idp().rs256(&obj(c.claims())))
    }));
    let (r, _) = s.attempt().await;
    assert_eq!(r.status, 302);
    let old = captured.lock().unwrap().clone().unwrap();
    s.refuses(
        "nonce replayed from an earlier login",
        edit(move |m| {
            m.insert("nonce".into(), json!(old));
        }),
    )
    .await;
}

#[tokio::test]
async fn missing_or_empty_sub_is_refused() {
    let s = setup().await;
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("missing", None),
        ("empty", Some(json!(""))),
        ("a number", Some(json!(42))),
        ("null", Some(Value::Null)),
    ];
    for (name, sub) in cases {
        s.refuses(
            &format!("sub {name}"),
            edit(move |m| match &sub {
                Some(v) => {
                    m.insert("sub".into(), v.clone());
                }
                None => {
                    m.remove("sub");
                }
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn token_endpoint_errors_and_garbage_are_refused() {
    let s = setup().await;
    let cases: Vec<(&str, u16, &'static str)> = vec![
        (
            "500 with an OAuth error",
            500,
            r#"{"error":"server_error"}"#,
        ),
        ("500 with HTML", 500, "<html><body>oops</body></html>"),
        ("400 invalid_grant", 400, r#"{"error":"invalid_grant"}"#),
        ("200 with garbage", 200, "this is not json"),
        ("200 with an empty object", 200, "{}"),
        ("200 with an array", 200, "[]"),
        (
            "200 without id_token",
            200,
            r#"{"access_token":"x","token_type":"Bearer"}"#,
        ),
        (
            "200 with a non-JWT id_token",
            200,
            r#"{"access_token":"x","token_type":"Bearer","id_token":"garbage"}"#,
        ),
        (
            "200 with a three-part non-JWT id_token",
            200,
            r#"{"access_token":"x","token_type":"Bearer","id_token":"a.b.c"}"#,
        ),
        ("204 empty", 204, ""),
    ];
    for (name, status, body) in cases {
        s.refuses(
            name,
            behavior(move |_| TokenReply::json(status, body.as_bytes().to_vec())),
        )
        .await;
    }
}

#[tokio::test]
async fn oversized_token_responses_are_not_read() {
    let s = setup().await;
    // A correct token response, padded past the 1 MiB cap with a field nobody reads: without
    // the cap this login would succeed (the control below shows the same answer unpadded does).
    let padded = |pad: usize| {
        behavior(move |c| {
            let id_token = RsaKey::idp().rs256(&Value::Object(c.claims()));
            let body = json!({
                "access_token": "at-123",
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
                "padding": "x".repeat(pad),
            });
            TokenReply::json(200, body.to_string())
        })
    };
    s.idp.set(padded(1000));
    let (r, _) = s.attempt().await;
    assert_eq!(r.status, 302, "control: a padded but small answer logs in");
    let r = s.refuses("a 2 MiB token response", padded(2 << 20)).await;
    assert_eq!(
        r.status, 401,
        "the IdP answered: a failed login, not an outage"
    );
}

#[tokio::test]
async fn token_endpoint_redirect_is_not_followed() {
    let s = setup().await;
    for status in [301, 302, 303, 307, 308] {
        s.refuses(
            &format!("token endpoint answers {status}"),
            behavior(move |c| {
                let mut r = TokenReply::json(status, Vec::new());
                r.location = Some(c.trap.clone());
                r
            }),
        )
        .await;
    }
    assert_eq!(s.idp.trap_hits(), 0, "a redirect was followed");
}

#[tokio::test]
async fn slow_token_endpoint_answers_503_in_bounded_time() {
    let s = setup().await;
    s.idp.set(behavior(|c| {
        let mut r = TokenReply::id_token(RsaKey::idp().rs256(&obj(c.claims())));
        r.delay = Some(Duration::from_secs(12));
        r
    }));
    let started = Instant::now();
    let (r, mut a) = s.attempt().await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{r:#?}");
    r.assert_refused("slow token endpoint");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(a.forward(HOME, Kind::Xhr).await.status, 401);
}
