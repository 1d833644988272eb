//! Validation of redirect targets supplied by the client (logout `redirect_uri`).
//!
//! An open redirect on an auth domain is a phishing tool, so the rule is an allow-list, not a
//! block-list: a target is accepted only when it is a plain same-host path, or when it equals an
//! entry of the configured list exactly. Browsers are lenient about what counts as a path
//! (`/\evil`, `/%09/evil`, `//evil` all leave the site), so anything that a browser might read as
//! a scheme, an authority or whitespace is refused, both raw and after percent-decoding. The
//! path is also checked after dot-segment removal (RFC 3986 §5.2.4), which browsers apply when
//! resolving it: `/x/..//evil` resolves to `//evil`, and `%2e%2e` is a `..` to them (WHATWG URL).

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
    // Only the path: a `/..//` in the query is data, not navigation.
    let path = p.split(['?', '#']).next().unwrap_or(p);
    let resolved = remove_dot_segments(path);
    if resolved.starts_with("//") || resolved.starts_with("/\\") {
        return Err(Refused("protocol-relative after dot-segment removal"));
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

/// RFC 3986 §5.2.4 `remove_dot_segments`, on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(r) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            // A.
            input = r;
        } else if input.starts_with("/./") || input == "/." {
            // B: "/./x" → "/x", "/." → "/".
            input = &input[2..];
            if input.is_empty() {
                input = "/";
            }
        } else if input.starts_with("/../") || input == "/.." {
            // C: drop the last output segment.
            input = &input[3..];
            if input.is_empty() {
                input = "/";
            }
            let cut = out.rfind('/').unwrap_or(0);
            out.truncate(cut);
        } else if input == "." || input == ".." {
            // D.
            input = "";
        } else {
            // E: move the first segment (with its leading "/") to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
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
            // Dot segments that resolve to a protocol-relative path (RFC 3986 §5.2.4).
            ("/x/..//evil.com", false),
            ("/a/b/../..//evil.com", false),
            ("/./..//evil.com", false),
            ("/a/../\\evil.com", false),
            ("/./\\evil.com", false),
            ("/x/%2e%2e//evil.com", false),
            ("/x/%2E%2E//evil.com", false),
            ("/x/.%2e//evil.com", false),
            ("/x/%2e%2e/%2fevil.com", false),
            ("/x/%252e%252e//evil.com", false),
            ("/x/.//evil.com", true),
            ("/x/..", true),
            ("/a/../b", true),
            ("/a/./b/../c", true),
            ("/x?next=/x/..//evil.com", true),
        ];
        for (target, ok) in cases {
            assert_eq!(validate(target, &allowed).is_ok(), ok, "{target:?}");
        }
    }

    #[test]
    fn dot_segments_follow_rfc3986() {
        // RFC 3986 §5.2.4 and the §5.4 examples, on absolute paths.
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/..", "/"),
            ("/../..//x", "//x"),
            ("/x/..//y", "//y"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a//b", "/a//b"),
            ("/", "/"),
        ] {
            assert_eq!(remove_dot_segments(input), want, "{input}");
        }
    }
}
