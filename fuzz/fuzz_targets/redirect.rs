//! Redirect-target validation (`redirect::validate`, used for logout `redirect_uri`).
//!
//! Input (text): line 1 is the target, every further line an allow-list entry. Invariants: no
//! panic; an accepted target is returned unchanged; it is either an allow-list entry (exact) or
//! a same-host path: one leading `/`, no `\`, no control character or whitespace, the same after
//! up to three percent-decodings, and a browser resolving it against `http://app.test` stays on
//! `app.test`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traefik_oidc_sidecar::redirect;
use url::Url;

fn same_host_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/\\")
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control())
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("");
    let allowed: Vec<String> = lines.map(str::to_string).collect();
    let Ok(ok) = redirect::validate(target, &allowed) else {
        return;
    };
    assert_eq!(ok, target, "validate must not rewrite the target");
    if allowed.iter().any(|a| a == target) {
        return;
    }
    assert!(same_host_path(target), "accepted {target:?}");
    assert!(
        !target.chars().any(char::is_whitespace),
        "accepted whitespace in {target:?}"
    );
    let mut cur = target.to_string();
    for _ in 0..3 {
        let d = decode(&cur).expect("accepted a target that does not percent-decode");
        assert!(same_host_path(&d), "{target:?} decodes to {d:?}");
        if d == cur {
            break;
        }
        cur = d;
    }
    // What the browser does with the absolute URL the sidecar builds from it.
    let abs = format!("http://app.test{target}");
    if let Ok(u) = Url::parse(&abs) {
        assert_eq!(
            u.host_str(),
            Some("app.test"),
            "{target:?} leaves the host: {u}"
        );
        assert_eq!(u.port(), None, "{target:?} changes the port: {u}");
        assert_eq!(u.username(), "", "{target:?} adds userinfo: {u}");
    }
});
