//! One middleware block: traefik-oidc-auth's keys (matched case-insensitively) and their
//! defaults, the `Secret` rules, redirect targets and lists, behaviours, `Authorization`,
//! `AuthorizationParams`, `ErrorPages`, `Headers`, bearer token sources, `SessionCookie` and the
//! cookie name prefix. The `Provider` block is read by [`super::provider`].

use openidconnect::url::Url;
use serde_yaml_ng::Value;

use super::provider::parse_provider;
use super::walk::{Cx, Obj, check_path_or_url, join, opt_string, url_list};
use super::{
    DEFAULT_COOKIE_PREFIX, MiddlewareConfig, SameSite, Secret, SessionCookieConfig,
    UnauthenticatedBehavior, UnauthorizedBehavior,
};
use crate::authz::ClaimAssertion;
use crate::pages::{ErrorPage, PageTemplate};
use crate::rules::Rule;
use crate::session::step_up::{StepUp, valid_acr_value};
use crate::template::{HeaderRule, IncludeWhen, Template};

/// traefik-oidc-auth's published default `Secret`. Anyone can read it, so it protects nothing.
pub(super) const TOA_DEFAULT_SECRET: &str = "MLFs4TT99kOOq8h3UAVRtYoCTDYXiRcZ";

/// Values once published as placeholders (our own Kubernetes examples shipped the first):
/// applied unchanged, every session would be sealed with a key anyone can read.
const PUBLISHED_PLACEHOLDERS: &[&str] = &["replace-me-with-at-least-32-random-bytes-0000"];

/// Words that mark a value someone meant to replace.
const PLACEHOLDER_WORDS: &[&str] = &[
    "replace-me",
    "replace_me",
    "replaceme",
    "change-me",
    "change_me",
    "changeme",
    "changeit",
    "placeholder",
    "your-secret",
    "your_secret",
    "yoursecret",
    "example-secret",
    "insert-your",
    "xxxxxxxx",
];

fn distinct_bytes(s: &str) -> usize {
    let mut seen = [false; 256];
    for b in s.bytes() {
        if let Some(x) = seen.get_mut(usize::from(b)) {
            *x = true;
        }
    }
    seen.iter().filter(|x| **x).count()
}

/// Why `secret` is no secret: published (traefik-oidc-auth's default, a placeholder we shipped),
/// plainly a placeholder, or with so few distinct characters that it cannot hold 32 random
/// bytes' worth of key (`aaaa…`, `0000…`, `abab…`). `None` for a plausible secret.
pub(super) fn published_or_placeholder(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    if secret == TOA_DEFAULT_SECRET {
        Some("is traefik-oidc-auth's published default")
    } else if PUBLISHED_PLACEHOLDERS.contains(&secret) {
        Some("is a published example value")
    } else if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w)) {
        Some("looks like a placeholder")
    } else if distinct_bytes(secret) < 8 {
        Some("has fewer than 8 distinct characters")
    } else {
        None
    }
}

pub(super) const MIDDLEWARE_KEYS: &[&str] = &[
    "Provider",
    "Secret",
    "Scopes",
    "CallbackUri",
    "LogoutUri",
    "BackchannelLogoutUri",
    "PostLogoutRedirectUri",
    "ValidPostLogoutRedirectUris",
    "CookieNamePrefix",
    "SessionCookie",
    "UnauthenticatedBehavior",
    "UnauthorizedBehavior",
    "Authorization",
    "Headers",
    "LogLevel",
    "BypassAuthenticationRule",
    "LoginUri",
    "PostLoginRedirectUri",
    "ValidPostLoginRedirectUris",
    "AuthorizationParams",
    "RequestedResources",
    "AuthorizationHeader",
    "AuthorizationCookie",
    "ErrorPages",
    "SessionStorageType",
    "SilentLogin",
    "PreviousSecrets",
    "StepUp",
];

/// traefik-oidc-auth keys that a later version of the sidecar implements: they warn, not fail.
/// Ignoring any of them only makes the middleware stricter (no bypass, no bearer tokens…).
pub(super) const MIDDLEWARE_LATER: &[&str] = &["ErrorPages"];

pub(super) const COOKIE_KEYS: &[&str] = &[
    "Path",
    "Domain",
    "Secure",
    "HttpOnly",
    "SameSite",
    "MaxAge",
    "IdleTimeout",
];
pub(super) const AUTHZ_KEYS: &[&str] = &["AssertClaims", "CheckOnEveryRequest"];
pub(super) const AUTHZ_LATER: &[&str] = &[];
pub(super) const ASSERT_KEYS: &[&str] = &["Name", "AnyOf", "AllOf"];
pub(super) const HEADER_KEYS: &[&str] = &["Name", "Value", "Values", "IncludeWhen"];
pub(super) const HEADER_LATER: &[&str] = &[];
/// `AuthorizationHeader` / `AuthorizationCookie`.
pub(super) const NAMED_KEYS: &[&str] = &["Name"];
pub(super) const ERROR_PAGES_KEYS: &[&str] = &["Unauthenticated", "Unauthorized"];
pub(super) const ERROR_PAGE_KEYS: &[&str] = &["FilePath", "RedirectTo"];
pub(super) const STEP_UP_KEYS: &[&str] = &["AcrValues", "MaxAge"];

/// Cookie names are RFC 6265 tokens; we allow a safe subset.
pub(super) fn valid_cookie_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(super) fn parse_middleware(
    name: &str,
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> Option<MiddlewareConfig> {
    let before = cx.problems.len();
    let mut obj = Obj::new(v, path, cx)?;

    let provider = match obj.get("Provider") {
        Some((p, v)) => parse_provider(v, &p, cx),
        None => {
            cx.problem(&join(path, "Provider"), "required");
            None
        }
    };

    let secret = match obj.get("Secret") {
        Some((p, v)) => match cx.string(v, &p) {
            Some(s) => session_secret(s, &p, cx),
            None => {
                cx.problem(&p, "required");
                None
            }
        },
        None => {
            cx.problem(&join(path, "Secret"), "required (at least 32 bytes)");
            None
        }
    };
    let previous_secrets = previous_secrets(&mut obj, secret.as_ref(), cx);

    let scopes = match obj.get("Scopes") {
        Some((p, v)) => {
            let s = cx.string_list(v, &p).unwrap_or_default();
            if !s.iter().any(|x| x == "openid") {
                cx.problem(&p, "must include openid");
            }
            if let Some(bad) = s.iter().find(|x| x.is_empty() || x.contains(' ')) {
                cx.problem(&p, format!("scope {bad:?} is empty or contains a space"));
            }
            s
        }
        None => vec!["openid".into(), "profile".into(), "email".into()],
    };

    let callback_uri =
        opt_string(&mut obj, "CallbackUri", cx).unwrap_or_else(|| "/oidc/callback".into());
    check_path_or_url(&callback_uri, &join(path, "CallbackUri"), true, cx);
    let logout_uri = opt_string(&mut obj, "LogoutUri", cx).unwrap_or_else(|| "/logout".into());
    check_path_or_url(&logout_uri, &join(path, "LogoutUri"), false, cx);
    let backchannel_logout_uri = opt_string(&mut obj, "BackchannelLogoutUri", cx)
        .unwrap_or_else(|| "/backchannel-logout".into());
    check_path_or_url(
        &backchannel_logout_uri,
        &join(path, "BackchannelLogoutUri"),
        true,
        cx,
    );
    let post_logout_redirect_uri =
        opt_string(&mut obj, "PostLogoutRedirectUri", cx).unwrap_or_else(|| "/".into());
    check_path_or_url(
        &post_logout_redirect_uri,
        &join(path, "PostLogoutRedirectUri"),
        true,
        cx,
    );
    let valid_post_logout_redirect_uris = url_list(&mut obj, "ValidPostLogoutRedirectUris", cx);

    // One default for every middleware: middlewares with the same Secret, provider and client
    // share their session without configuration (the key binds the rest, see session::scope).
    let cookie_name_prefix = opt_string(&mut obj, "CookieNamePrefix", cx)
        .unwrap_or_else(|| DEFAULT_COOKIE_PREFIX.into());
    if !valid_cookie_prefix(&cookie_name_prefix) {
        cx.problem(
            &join(path, "CookieNamePrefix"),
            "use letters, digits, '-', '_' and '.' only",
        );
    }

    let session_cookie = match obj.get("SessionCookie") {
        Some((p, v)) => parse_cookie(v, &p, cx),
        None => Some(default_cookie()),
    };

    let unauthenticated_behavior = match obj.get("UnauthenticatedBehavior") {
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("Auto", UnauthenticatedBehavior::Auto),
                ("Challenge", UnauthenticatedBehavior::Challenge),
                ("Unauthorized", UnauthenticatedBehavior::Unauthorized),
                ("Forward", UnauthenticatedBehavior::Forward),
            ],
        ),
        None => Some(UnauthenticatedBehavior::Auto),
    };
    let unauthorized_behavior = match obj.get("UnauthorizedBehavior") {
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("Unauthorized", UnauthorizedBehavior::Unauthorized),
                ("Challenge", UnauthorizedBehavior::Challenge),
                ("Forward", UnauthorizedBehavior::Forward),
            ],
        ),
        None => Some(UnauthorizedBehavior::Unauthorized),
    };

    let (assert_claims, check_on_every_request) = match obj.get("Authorization") {
        Some((p, v)) => parse_authorization(v, &p, cx),
        None => (Vec::new(), false),
    };
    let login_uri = opt_string(&mut obj, "LoginUri", cx).filter(|s| !s.is_empty());
    if let Some(l) = &login_uri {
        check_path_or_url(l, &join(path, "LoginUri"), false, cx);
    }
    let post_login_redirect_uri =
        opt_string(&mut obj, "PostLoginRedirectUri", cx).filter(|s| !s.is_empty());
    if let Some(u) = &post_login_redirect_uri {
        check_path_or_url(u, &join(path, "PostLoginRedirectUri"), true, cx);
    }
    let valid_post_login_redirect_uris = url_list(&mut obj, "ValidPostLoginRedirectUris", cx);
    let (page_unauthenticated, page_unauthorized) = match obj.get("ErrorPages") {
        Some((p, v)) => parse_error_pages(v, &p, cx),
        None => (None, None),
    };
    let mut named = |key: &str, cx: &mut Cx<'_>| -> Option<String> {
        let (p, v) = obj.get(key)?;
        let mut o = Obj::new(v, &p, cx)?;
        let name = opt_string(&mut o, "Name", cx).filter(|n| !n.is_empty());
        o.finish(NAMED_KEYS, &[], cx);
        if let Some(n) = &name
            && !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            cx.problem(&join(&p, "Name"), "expected a header or cookie name");
        }
        name
    };
    let bearer_header = named("AuthorizationHeader", cx);
    let bearer_cookie = named("AuthorizationCookie", cx);
    let authorization_params = match obj.get("AuthorizationParams") {
        Some((p, v)) => parse_authorization_params(v, &p, cx),
        None => Vec::new(),
    };
    let requested_resources = match obj.get("RequestedResources") {
        Some((p, v)) => {
            let list = cx.string_list(v, &p).unwrap_or_default();
            for (i, u) in list.iter().enumerate() {
                // RFC 8707 §2: an absolute URI without a fragment.
                if Url::parse(u).map_or(true, |x| x.fragment().is_some()) {
                    cx.problem(
                        &format!("{p}[{i}]"),
                        "expected an absolute URI without a fragment",
                    );
                }
            }
            list
        }
        None => Vec::new(),
    };
    let headers = match obj.get("Headers") {
        Some((p, v)) => parse_headers(v, &p, cx),
        None => Vec::new(),
    };
    let bypass = match opt_string(&mut obj, "BypassAuthenticationRule", cx) {
        Some(r) if !r.trim().is_empty() => match Rule::parse(&r) {
            Ok(rule) => Some(rule),
            Err(e) => {
                cx.problem(
                    &join(path, "BypassAuthenticationRule"),
                    format!("rule does not parse: {e}"),
                );
                None
            }
        },
        _ => None,
    };
    let log_level = match obj.get("LogLevel") {
        // traefik-oidc-auth's values, case-insensitive.
        Some((p, v)) => cx.one_of(
            v,
            &p,
            &[
                ("DEBUG", tracing::Level::DEBUG),
                ("INFO", tracing::Level::INFO),
                ("WARN", tracing::Level::WARN),
                ("ERROR", tracing::Level::ERROR),
            ],
        ),
        None => None,
    };
    let session_storage = super::redis::parse_storage(&mut obj, cx);
    let silent_login = parse_silent_login(&mut obj, unauthenticated_behavior, cx);
    let step_up = match obj.get("StepUp") {
        Some((p, v)) => parse_step_up(v, &p, cx),
        None => None,
    };
    obj.finish(MIDDLEWARE_KEYS, MIDDLEWARE_LATER, cx);

    if cx.problems.len() != before {
        return None;
    }
    Some(MiddlewareConfig {
        name: name.to_string(),
        provider: provider?,
        secret: secret?,
        scopes,
        callback_uri,
        logout_uri,
        backchannel_logout_uri,
        post_logout_redirect_uri,
        valid_post_logout_redirect_uris,
        cookie_name_prefix,
        session_cookie: session_cookie?,
        unauthenticated_behavior: unauthenticated_behavior?,
        unauthorized_behavior: unauthorized_behavior?,
        assert_claims,
        headers,
        bypass,
        login_uri,
        post_login_redirect_uri,
        valid_post_login_redirect_uris,
        authorization_params,
        requested_resources,
        check_on_every_request,
        bearer_header,
        bearer_cookie,
        page_unauthenticated,
        page_unauthorized,
        log_level,
        session_storage,
        silent_login,
        previous_secrets,
        step_up,
    })
}

/// `StepUp: { AcrValues, MaxAge }`: at least one part. `acr` values travel space-separated in
/// `acr_values` (OIDC Core §3.1.2.1) and quoted in an RFC 9470 challenge, so each is visible
/// ASCII without space, quote or backslash.
pub(super) fn parse_step_up(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<StepUp> {
    let mut obj = Obj::new(v, path, cx)?;
    let acr_values = match obj.get("AcrValues") {
        Some((p, v)) => {
            let list = cx.string_list(v, &p).unwrap_or_default();
            for (i, a) in list.iter().enumerate() {
                if !valid_acr_value(a) {
                    cx.problem(
                        &format!("{p}[{i}]"),
                        "an acr value is visible ASCII without spaces, quotes or backslashes",
                    );
                }
            }
            list
        }
        None => Vec::new(),
    };
    let max_age = match obj.get("MaxAge") {
        Some((p, v)) => {
            let second = std::time::Duration::from_secs(1);
            // A year at most: beyond that, MaxAge is a typo, not a policy.
            super::root::duration_in(v, &p, second, 366 * 24 * 3600 * second, cx)
                .map(|d| d.as_secs())
        }
        None => None,
    };
    obj.finish(STEP_UP_KEYS, &[], cx);
    if acr_values.is_empty() && max_age.is_none() {
        cx.problem(path, "give AcrValues, MaxAge or both");
        return None;
    }
    Some(StepUp {
        acr_values,
        max_age,
    })
}

/// `SilentLogin`: a `prompt=none` attempt (OIDC Core §3.1.2.1) only makes sense where a visitor
/// without a session is let through: with any other behaviour the visitor would be sent to the
/// IdP's form (or refused) anyway, and a failed silent attempt would have nowhere to land.
fn parse_silent_login(
    obj: &mut Obj<'_>,
    behavior: Option<UnauthenticatedBehavior>,
    cx: &mut Cx<'_>,
) -> bool {
    let Some((p, v)) = obj.get("SilentLogin") else {
        return false;
    };
    let on = cx.boolean(v, &p).unwrap_or(false);
    if on && behavior.is_some_and(|b| b != UnauthenticatedBehavior::Forward) {
        cx.problem(
            &p,
            "needs UnauthenticatedBehavior: Forward (a silent login that fails lands the visitor \
             on the page anonymously; with other behaviours there is no anonymous page to land on)",
        );
    }
    on
}

/// A `Secret` (or one of `PreviousSecrets`) that passes the rules: at least 32 bytes, and not a
/// published or placeholder value. The value is never echoed: it is (meant to be) a secret.
fn session_secret(s: String, p: &str, cx: &mut Cx<'_>) -> Option<Secret> {
    if s.len() < 32 {
        cx.problem(p, format!("must be at least 32 bytes (has {})", s.len()));
        return None;
    }
    match published_or_placeholder(&s) {
        Some(why) => {
            cx.problem(
                p,
                format!("{why}: anyone could forge sessions; generate your own (openssl rand -base64 48)"),
            );
            None
        }
        None => Some(Secret::new(s)),
    }
}

/// `PreviousSecrets`: secrets that still open sessions sealed before a rotation, never seal
/// (see `crate::session::rotation`). Each entry obeys `Secret`'s rules, `${VAR}` and
/// `${file:}` included (in an inline block only as `inline.allowedVariables` allows for the
/// key `PreviousSecrets`). An entry equal to `Secret` is dropped; a repeated one counts once.
fn previous_secrets(obj: &mut Obj<'_>, current: Option<&Secret>, cx: &mut Cx<'_>) -> Vec<Secret> {
    let Some((p, v)) = obj.get("PreviousSecrets") else {
        return Vec::new();
    };
    let mut out: Vec<Secret> = Vec::new();
    let entries = cx.string_list(v, &p).unwrap_or_default();
    for (i, s) in entries.into_iter().enumerate() {
        if let Some(s) = session_secret(s, &format!("{p}[{i}]"), cx)
            && Some(&s) != current
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

pub(super) fn parse_error_pages(
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> (Option<ErrorPage>, Option<ErrorPage>) {
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return (None, None);
    };
    let mut one = |key: &str, cx: &mut Cx<'_>| -> Option<ErrorPage> {
        let (p, v) = obj.get(key)?;
        let mut o = Obj::new(v, &p, cx)?;
        let file = opt_string(&mut o, "FilePath", cx).filter(|s| !s.is_empty());
        let redirect = opt_string(&mut o, "RedirectTo", cx).filter(|s| !s.is_empty());
        o.finish(ERROR_PAGE_KEYS, &[], cx);
        match (file, redirect) {
            (Some(_), Some(_)) => {
                cx.problem(&p, "give FilePath or RedirectTo, not both");
                None
            }
            (Some(f), None) => {
                let key = join(&p, "FilePath");
                let html = cx.read_file(&f, &key)?;
                match PageTemplate::parse(&html) {
                    Ok(t) => Some(ErrorPage::Html(t)),
                    Err(e) => {
                        // The template error, not the file: it may quote the content.
                        cx.problem(&key, format!("not a valid page template: {e}"));
                        None
                    }
                }
            }
            (None, Some(r)) => {
                check_path_or_url(&r, &join(&p, "RedirectTo"), true, cx);
                Some(ErrorPage::RedirectTo(r))
            }
            (None, None) => None,
        }
    };
    let a = one("Unauthenticated", cx);
    let b = one("Unauthorized", cx);
    obj.finish(ERROR_PAGES_KEYS, &[], cx);
    (a, b)
}

/// Parameters the sidecar sets itself; overriding them would break the flow or its security.
pub(super) const RESERVED_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "scope",
    "resource",
    "code_challenge",
    "code_challenge_method",
];

pub(super) fn parse_authorization_params(
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> Vec<(String, String)> {
    let Value::Mapping(m) = v else {
        if !matches!(v, Value::Null) {
            cx.problem(path, "expected a mapping of parameter names to values");
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in m {
        let Value::String(k) = k else {
            cx.problem(path, "parameter names must be strings");
            continue;
        };
        let p = join(path, k);
        if RESERVED_PARAMS.iter().any(|r| r.eq_ignore_ascii_case(k)) {
            cx.warn(&p, "set by the sidecar itself; ignored");
            continue;
        }
        if let Some(s) = cx.string(val, &p) {
            out.push((k.clone(), s));
        }
    }
    out
}

pub(super) fn default_cookie() -> SessionCookieConfig {
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

pub(super) fn parse_cookie(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<SessionCookieConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let mut c = default_cookie();
    if let Some(p) = opt_string(&mut obj, "Path", cx) {
        if !p.starts_with('/') || p.contains([';', ',']) {
            cx.problem(&join(path, "Path"), "expected a path starting with /");
        }
        c.path = p;
    }
    c.domain = opt_string(&mut obj, "Domain", cx).filter(|d| !d.is_empty());
    if let Some(d) = &c.domain
        && !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        cx.problem(&join(path, "Domain"), "expected a domain name");
    }
    if let Some((p, v)) = obj.get("Secure") {
        c.secure = cx.boolean(v, &p).unwrap_or(true);
    }
    if let Some((p, v)) = obj.get("HttpOnly") {
        c.http_only = cx.boolean(v, &p).unwrap_or(true);
    }
    if let Some((p, v)) = obj.get("SameSite")
        && let Some(s) = cx.one_of(
            v,
            &p,
            &[
                ("default", SameSite::Lax),
                ("lax", SameSite::Lax),
                ("strict", SameSite::Strict),
                ("none", SameSite::None),
            ],
        )
    {
        c.same_site = s;
    }
    if let Some((p, v)) = obj.get("MaxAge") {
        match cx.integer(v, &p) {
            Some(n) if n >= 0 => c.max_age = n,
            Some(_) => cx.problem(
                &p,
                "must be 0 (browser session) or a positive number of seconds",
            ),
            None => {}
        }
    }
    if let Some((p, v)) = obj.get("IdleTimeout") {
        c.idle_timeout = idle_timeout(v, &p, cx);
    }
    if c.same_site == SameSite::None && !c.secure {
        // Browsers drop SameSite=None cookies that are not Secure.
        cx.problem(&join(path, "SameSite"), "none requires Secure: true");
    }
    obj.finish(COOKIE_KEYS, &[], cx);
    Some(c)
}

/// `SessionCookie.IdleTimeout`: whole seconds, from one second to a year. The stamp that
/// measures it has one-second resolution, so a fraction would promise a precision it lacks.
fn idle_timeout(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<u64> {
    let year = std::time::Duration::from_secs(365 * 24 * 3600);
    let d = super::root::duration_in(v, path, std::time::Duration::from_secs(1), year, cx)?;
    if d.subsec_millis() != 0 {
        cx.problem(path, "must be a whole number of seconds");
        return None;
    }
    Some(d.as_secs())
}

pub(super) fn parse_authorization(
    v: &Value,
    path: &str,
    cx: &mut Cx<'_>,
) -> (Vec<ClaimAssertion>, bool) {
    let Some(mut obj) = Obj::new(v, path, cx) else {
        return (Vec::new(), false);
    };
    let every = match obj.get("CheckOnEveryRequest") {
        Some((p, v)) => cx.boolean(v, &p).unwrap_or(false),
        None => false,
    };
    let mut out = Vec::new();
    if let Some((p, v)) = obj.get("AssertClaims") {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(mut a) = Obj::new(item, &ip, cx) else {
                        continue;
                    };
                    let name = opt_string(&mut a, "Name", cx);
                    let any_of = match a.get("AnyOf") {
                        Some((pp, vv)) => cx.string_list(vv, &pp).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    let all_of = match a.get("AllOf") {
                        Some((pp, vv)) => cx.string_list(vv, &pp).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    a.finish(ASSERT_KEYS, &[], cx);
                    match name {
                        Some(n) => match ClaimAssertion::new(&n, any_of, all_of) {
                            Ok(c) => out.push(c),
                            Err(e) => cx.problem(&join(&ip, "Name"), e),
                        },
                        None => cx.problem(&join(&ip, "Name"), "required (a JSONPath below $.)"),
                    }
                }
            }
            Value::Null => {}
            _ => cx.problem(&p, "expected a list of assertions"),
        }
    }
    obj.finish(AUTHZ_KEYS, AUTHZ_LATER, cx);
    (out, every)
}

pub(super) fn parse_headers(v: &Value, path: &str, cx: &mut Cx<'_>) -> Vec<HeaderRule> {
    let items = match v {
        Value::Sequence(items) => items,
        Value::Null => return Vec::new(),
        _ => {
            cx.problem(path, "expected a list of { Name, Value }");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let Some(mut h) = Obj::new(item, &ip, cx) else {
            continue;
        };
        let name = opt_string(&mut h, "Name", cx);
        let value = opt_string(&mut h, "Value", cx);
        let values = opt_string(&mut h, "Values", cx);
        if value.is_some() && values.is_some() {
            cx.problem(&join(&ip, "Values"), "give Value or Values, not both");
            continue;
        }
        let (value, is_values) = match (value, values) {
            (Some(v), None) => (Some(v), false),
            (None, Some(v)) => (Some(v), true),
            _ => (None, false),
        };
        let include_when = match h.get("IncludeWhen") {
            Some((p, v)) => cx
                .one_of(
                    v,
                    &p,
                    &[
                        ("Always", IncludeWhen::Always),
                        ("Authorized", IncludeWhen::Authorized),
                        ("Public", IncludeWhen::Public),
                        ("Forward", IncludeWhen::Forward),
                    ],
                )
                .unwrap_or(IncludeWhen::Authorized),
            None => IncludeWhen::Authorized,
        };
        h.finish(HEADER_KEYS, HEADER_LATER, cx);
        let Some(name) = name else {
            cx.problem(&join(&ip, "Name"), "required");
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            cx.problem(
                &join(&ip, "Name"),
                "expected a header name (letters, digits, '-')",
            );
            continue;
        }
        let Some(value) = value else {
            cx.problem(
                &join(&ip, "Value"),
                "required (a template such as {{ .claims.email }})",
            );
            continue;
        };
        match Template::parse(&value) {
            Ok(t) => out.push(HeaderRule {
                name,
                template: t,
                include_when,
                values: is_values,
            }),
            Err(e) => cx.problem(&join(&ip, "Value"), format!("template does not parse: {e}")),
        }
    }
    out
}
