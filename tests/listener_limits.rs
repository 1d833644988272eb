//! Head limits (issue 14): the largest request a legitimate browser sends through Traefik —
//! a session in every chunk, the logout hints, login flows, a browser's headers, Traefik's
//! `X-Forwarded-*`, and 100 KB of the application's own cookies — is answered, and heads with
//! more fields or bytes than the limits get 431 from trusted and untrusted peers alike, with
//! nothing logged at error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "listener/harness.rs"]
mod harness;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;

use harness::*;
use traefik_oidc_sidecar::listener::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_UNTRUSTED_HEAD_BYTES};
use traefik_oidc_sidecar::session::{Flow, RequestCookies, Session};

/// The `name=value` pairs that `Set-Cookie` values set (removals left out).
fn pairs(set_cookies: &[String]) -> Vec<String> {
    set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        // A removal has an empty value; a base64 value may itself end in `=` padding.
        .filter(|p| p.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect()
}

fn noise(len: usize, seed: u64) -> String {
    // xorshift: incompressible enough that deflate does not shrink the session.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                    [(x % 64) as usize],
            )
        })
        .collect()
}

/// The largest `n` for which `fits(n)` holds (it must hold for 0 and fail for `hi`).
fn largest(hi: usize, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, hi);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// The largest request a legitimate browser sends through Traefik: a session in all 8 chunks,
/// the 3 logout-hint chunks, 5 login flows, a browser's usual headers, Traefik's X-Forwarded-*.
fn largest_legitimate_request(s: &Running, app_cookie_bytes: usize) -> (Vec<u8>, usize) {
    use traefik_oidc_sidecar::session::{CHUNK_SIZE, MAX_CHUNKS, MAX_HINT_CHUNKS};
    // The session scope of the middleware `default`, as the sidecar builds it.
    let mw = s.app.middleware("default").unwrap();
    let codec = traefik_oidc_sidecar::auth::scope_of(&[&mw.cfg]).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let none = RequestCookies::default();
    let session = |n: usize| {
        let claims = serde_json::json!({ "groups": ["admins"], "big": noise(n, 7) })
            .as_object()
            .unwrap()
            .clone();
        Session {
            sub: "a-user-with-a-long-subject-identifier-0123456789".into(),
            verdicts: codec.verdicts(&claims),
            claims,
            iat: now,
            exp: now + 3600,
            id_token: None,
            sid: Some("an-idp-session-id-0123456789abcdef".into()),
            access_token: None,
            refresh_token: Some(noise(900, 11)),
            challenged: Default::default(),
            rendered: Default::default(),
            sealed_by_previous: false,
            acr: None,
            auth_time: None,
            step_up_failed: Default::default(),
            active: None,
        }
    };
    let n = largest(MAX_CHUNKS * CHUNK_SIZE * 2, |n| {
        codec.write_session(&session(n), &none, now).is_ok()
    });
    let mut cookies = pairs(&codec.write_session(&session(n), &none, now).unwrap());
    assert_eq!(cookies.len(), MAX_CHUNKS, "{cookies:?}");
    // The longest ID token still kept as a hint (longer ones are left out, not truncated).
    let t = largest(20_000, |t| {
        t < 100 || !pairs(&codec.write_hint(Some(&noise(t, 13))).unwrap()).is_empty()
    });
    let hint = pairs(&codec.write_hint(Some(&noise(t, 13))).unwrap());
    assert_eq!(hint.len(), MAX_HINT_CHUNKS);
    cookies.extend(hint);
    for i in 0..5 {
        let flow = Flow {
            state: noise(43, 100 + i),
            nonce: noise(43, 200 + i),
            verifier: Some(noise(64, 300 + i)),
            return_to: format!("https://{}/{}", common::APP_HOST, noise(500, 400 + i)),
            created: now,
            redirect_uri: format!("https://{}/oidc/callback", common::APP_HOST),
            resources: Vec::new(),
            challenge: None,
            silent: false,
            step_up: None,
        };
        cookies.extend(pairs(&codec.codec().start_flow(&flow, &none, now).unwrap()));
    }
    // Some of the application's own cookies too.
    cookies.push(format!("_ga={}", noise(40, 5)));
    cookies.push(format!("app_prefs={}", noise(200, 6)));
    for i in 0..app_cookie_bytes / 4000 {
        cookies.push(format!("app_{i}={}", noise(3990, 1000 + i as u64)));
    }
    let uri = format!("/search?q={}", noise(1500, 8));
    let mut head = String::from("GET /auth/default HTTP/1.1\r\nHost: oidc-sidecar:4181\r\n");
    for (k, v) in [
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8",
        ),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.8,fr;q=0.7"),
        ("Cache-Control", "max-age=0"),
        ("Priority", "u=0, i"),
        (
            "Referer",
            "https://app.test/some/previous/page?with=a&query=string",
        ),
        (
            "Sec-Ch-Ua",
            "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("Sec-Ch-Ua-Mobile", "?0"),
        ("Sec-Ch-Ua-Platform", "\"Linux\""),
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-User", "?1"),
        ("Upgrade-Insecure-Requests", "1"),
        (
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("X-Forwarded-For", "198.51.100.7, 203.0.113.9"),
        ("X-Forwarded-Host", common::APP_HOST),
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Server", "traefik-7d9f8c6b5-x2x9z"),
        ("X-Forwarded-Uri", uri.as_str()),
        ("X-Real-Ip", "198.51.100.7"),
    ] {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Cookie: {}\r\n\r\n", cookies.join("; ")));
    let fields = head.lines().count() - 2;
    (head.into_bytes(), fields)
}

#[tokio::test]
async fn the_largest_legitimate_request_fits_and_larger_heads_get_431() {
    let s = start("trustedProxies: [127.0.0.1/32]").await;
    let proxy = Ipv4Addr::LOCALHOST;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let (big, fields) = largest_legitimate_request(&s, 0);
    let (bigger, _) = largest_legitimate_request(&s, 100_000);
    eprintln!(
        "largest legitimate request: {} bytes, {fields} header fields; with 100 KB of the \
         application's cookies {} bytes (limits: {MAX_HEAD_BYTES} bytes, {MAX_HEADERS} fields)",
        big.len(),
        bigger.len()
    );
    assert!(big.len() < MAX_HEAD_BYTES / 4, "{} bytes", big.len());
    // Wait for discovery, then the session opens: 200, also next to 100 KB of other cookies.
    let mut status = 0;
    for _ in 0..100 {
        let mut c = connect_from(proxy, s.addr).await.unwrap();
        status = exchange(&mut c, &big).await.unwrap();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the largest legitimate request was refused");
    let mut c = connect_from(proxy, s.addr).await.unwrap();
    assert_eq!(exchange(&mut c, &bigger).await.unwrap(), 200);

    let with_fields = |n: usize| {
        let mut h = String::from("GET /healthz HTTP/1.1\r\nHost: sidecar\r\n");
        for i in 1..n {
            h.push_str(&format!("X-H{i}: v\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    };
    let with_bytes = |n: usize| {
        let base = "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Pad: \r\n\r\n".len();
        format!(
            "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(n - base)
        )
        .into_bytes()
    };
    let one_big_cookie = format!(
        "GET /healthz HTTP/1.1\r\nHost: sidecar\r\nCookie: a={}\r\n\r\n",
        "c".repeat(MAX_HEAD_BYTES)
    )
    .into_bytes();
    for (what, from, req, want) in [
        (
            "exactly MAX_HEADERS fields",
            proxy,
            with_fields(MAX_HEADERS),
            200,
        ),
        ("one field more", proxy, with_fields(MAX_HEADERS + 1), 431),
        ("a thousand fields", proxy, with_fields(1000), 431),
        (
            "just under the limit",
            proxy,
            with_bytes(MAX_HEAD_BYTES - 64),
            200,
        ),
        ("one byte over", proxy, with_bytes(MAX_HEAD_BYTES + 1), 431),
        ("a head of 1 MB", proxy, with_bytes(1 << 20), 431),
        ("one cookie over the limit", proxy, one_big_cookie, 431),
        // Peers outside trustedProxies get a smaller head: they are only ever refused.
        (
            "untrusted, under its limit",
            other,
            with_bytes(MAX_UNTRUSTED_HEAD_BYTES - 64),
            200,
        ),
        (
            "untrusted, one byte over",
            other,
            with_bytes(MAX_UNTRUSTED_HEAD_BYTES + 1),
            431,
        ),
        (
            "untrusted, too many fields",
            other,
            with_fields(MAX_HEADERS + 1),
            431,
        ),
        ("untrusted, a session", other, big.clone(), 431),
    ] {
        let mut c = connect_from(from, s.addr).await.unwrap();
        // The server may answer 431 and close while a large head is still being written.
        let _ = c.write_all(&req).await;
        let got = tokio::time::timeout(Duration::from_secs(10), read_response(&mut c))
            .await
            .unwrap();
        assert_eq!(got.ok(), Some(want), "{what}");
    }
    let errors = error_lines();
    assert!(errors.is_empty(), "logged at error: {errors:#?}");
}
