//! Validation of redirect targets supplied by the client (logout `redirect_uri`).
//!
//! An open redirect on an auth domain is a phishing tool, so the rule is an allow-list, not a
//! block-list: a target is accepted only when it is a plain same-host path, or when it equals an
//! entry of the configured list exactly. Browsers are lenient about what counts as a path
//! (`/\evil`, `/%09/evil`, `//evil` all leave the site), so anything that a browser might read as
//! a scheme, an authority or whitespace is refused, both raw and after percent-decoding.

/// Why a target was refused (for logs; the client only learns "refused").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Accepts `target` when it is a safe same-host path or is listed in `allowed` (exact match).
/// Returns the target to redirect to.
pub fn validate(target: &str, allowed: &[String]) -> Result<String, Refused> {
    if allowed.iter().any(|a| a == target) {
        return Ok(target.to_string());
    }
    if target.len() > 2048 {
        return Err(Refused("too long"));
    }
    check_path(target, true)?;
    // Decode repeatedly: a proxy or framework further down may decode once more than we did.
    let mut current = target.to_string();
    for _ in 0..3 {
        let decoded = percent_decode(&current).ok_or(Refused("invalid percent-encoding"))?;
        check_path(&decoded, false)?;
        if decoded == current {
            break;
        }
        current = decoded;
    }
    Ok(target.to_string())
}

/// `raw_form` also refuses spaces, which are never valid unencoded in a URL.
fn check_path(p: &str, raw_form: bool) -> Result<(), Refused> {
    let rest = p
        .strip_prefix('/')
        .ok_or(Refused("not a path starting with /"))?;
    if rest.starts_with('/') || rest.starts_with('\\') {
        return Err(Refused("protocol-relative"));
    }
    if p.contains('\\') {
        // Browsers treat `\` as `/` in special URLs (WHATWG URL), so `/\evil` is `//evil`.
        return Err(Refused("backslash"));
    }
    if p.chars()
        .any(|c| c.is_control() || (raw_form && c.is_whitespace()))
    {
        // Browsers strip tabs and newlines, turning `/\t/evil` into `//evil`.
        return Err(Refused("control character or whitespace"));
    }
    Ok(())
}

/// Percent-decodes into a string (invalid UTF-8 after decoding is refused).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let allowed = vec!["https://app.example.com/bye".to_string()];
        let cases = [
            ("/", true),
            ("/after/logout?x=1", true),
            ("/a%20b", true),
            ("/a b", false),
            ("https://app.example.com/bye", true),
            ("https://app.example.com/bye/", false),
            ("https://app.example.com/byeX", false),
            ("//evil.com", false),
            ("/\\evil.com", false),
            ("/%09/evil.com", false),
            ("/%2f%2fevil.com", false),
            ("/%2F%2Fevil.com", false),
            ("/%252f%252fevil.com", false),
            ("/%5cevil.com", false),
            ("https://evil.com", false),
            ("https://app.example.com@evil.com", false),
            ("javascript:alert(1)", false),
            ("data:text/html,x", false),
            ("evil.com", false),
            ("/\r\nLocation: x", false),
            ("/a\0b", false),
            ("", false),
            ("/%zz", false),
            ("/./\\evil", false),
        ];
        for (target, ok) in cases {
            assert_eq!(validate(target, &allowed).is_ok(), ok, "{target:?}");
        }
    }
}
