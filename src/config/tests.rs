//! Tests of the whole loader: each feeds YAML text to [`super::parse`] with a controlled
//! environment and checks the configuration, the warnings or every problem with its key path.

use super::middleware::{MIDDLEWARE_KEYS, TOA_DEFAULT_SECRET};
use super::walk::did_you_mean;
use super::*;
use std::collections::HashMap;

fn env_with(
    vars: &[(&str, &str)],
    files: &[(&str, &str)],
) -> (HashMap<String, String>, HashMap<String, String>) {
    (
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn parse_with(
    text: &str,
    vars: &[(&str, &str)],
    files: &[(&str, &str)],
) -> Result<Loaded, Vec<Problem>> {
    let (v, f) = env_with(vars, files);
    let var = move |k: &str| v.get(k).cloned();
    let file = move |p: &Path| {
        f.get(&p.display().to_string())
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    };
    parse(
        text,
        &Env {
            var: &var,
            file: &file,
            within: &crate::files::read_within,
        },
    )
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn minimal() -> String {
    format!(
        "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n"
    )
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let cfg = parse_with(&minimal(), &[], &[])
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:4181");
    assert_eq!(cfg.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(cfg.log_format, LogFormat::Text);
    let m = &cfg.middlewares["default"];
    assert_eq!(m.scopes, ["openid", "profile", "email"]);
    assert_eq!(m.callback_uri, "/oidc/callback");
    assert_eq!(m.logout_uri, "/logout");
    assert_eq!(m.backchannel_logout_uri, "/backchannel-logout");
    assert_eq!(m.post_logout_redirect_uri, "/");
    assert_eq!(m.cookie_name_prefix, "TraefikOidcSidecar");
    assert_eq!(m.log_level, None);
    assert!(m.session_cookie.secure && m.session_cookie.http_only);
    assert_eq!(m.session_cookie.same_site, SameSite::Lax);
    assert_eq!(m.unauthenticated_behavior, UnauthenticatedBehavior::Auto);
    assert_eq!(m.unauthorized_behavior, UnauthorizedBehavior::Unauthorized);
    assert!(m.provider.validate_issuer && m.provider.validate_audience && !m.provider.use_pkce);
    assert_eq!(cfg.trusted_proxies.len(), Cidr::default_trusted().len());
}

#[test]
fn limits_parse_with_units_and_refuse_nonsense() {
    use std::time::Duration;
    let ok = |extra: &str| {
        parse_with(&format!("{extra}\n{}", minimal()), &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    };
    assert_eq!(ok("").config.limits, Limits::default());
    let l = ok("limits:\n  headerTimeout: 1500ms\n  IdleTimeout: 2m\n  maxConnections: 500");
    assert_eq!(l.config.limits.header_timeout, Duration::from_millis(1500));
    assert_eq!(l.config.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(l.config.limits.max_connections, Some(500));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    // A bare number is seconds; an idle timeout at or below the clients' 90 s warns.
    let l = ok("limits:\n  idleTimeout: 30\n  headerTimeout: 5");
    assert_eq!(l.config.limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(l.config.limits.header_timeout, Duration::from_secs(5));
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert_eq!(l.warnings[0].path, "limits.idleTimeout");
    for (extra, path) in [
        ("limits:\n  headerTimeout: 10 s", "limits.headerTimeout"),
        ("limits:\n  headerTimeout: 50ms", "limits.headerTimeout"),
        ("limits:\n  headerTimeout: 1d", "limits.headerTimeout"),
        ("limits:\n  idleTimeout: 2h", "limits.idleTimeout"),
        ("limits:\n  idleTimeout: 5ms", "limits.idleTimeout"),
        ("limits:\n  idleTimeout: -1s", "limits.idleTimeout"),
        ("limits:\n  maxConnections: 15", "limits.maxConnections"),
        ("limits:\n  maxConnections: many", "limits.maxConnections"),
        ("limits:\n  maxConnection: 100", "limits.maxConnection"),
        ("limits: 5", "limits"),
    ] {
        let problems = parse_with(&format!("{extra}\n{}", minimal()), &[], &[])
            .err()
            .unwrap_or_else(|| panic!("{extra:?} was accepted"));
        assert!(
            problems.iter().any(|p| p.path == path),
            "{extra:?}: {problems:?}"
        );
    }
}

/// A block in traefik-oidc-auth's documented shape (keys from its docs, values ours).
const TOA_BLOCK: &str = r#"
middlewares:
  oidc-auth:
    LogLevel: DEBUG
    Secret: "${SECRET}"
    Provider:
      Url: "https://accounts.example.com/realms/main"
      ClientId: "${CLIENT_ID}"
      ClientSecret: "${file:/run/secrets/client_secret}"
      UsePkce: true
      ValidateIssuer: "true"
      ValidateAudience: false
    Scopes: ["openid", "profile", "email", "groups"]
    CallbackUri: /oidc/callback
    LogoutUri: /logout
    PostLogoutRedirectUri: https://app.example.com/bye
    ValidPostLogoutRedirectUris: ["https://app.example.com/bye"]
    SessionCookie:
      Path: /
      Domain: .example.com
      Secure: true
      HttpOnly: true
      SameSite: default
      MaxAge: 0
    UnauthenticatedBehavior: Challenge
    UnauthorizedBehavior: Unauthorized
    Authorization:
      AssertClaims:
        - Name: groups
          AnyOf: ["admins", "ops"]
        - Name: "['my:zitadel:grants']"
    Headers:
      - Name: "X-Oidc-Username"
        Value: "{{ .claims.preferred_username }}"
      - Name: "Authorization-Email"
        Value: "{{ .claims.email }}"
    BypassAuthenticationRule: "PathPrefix(`/health`)"
    AuthorizationHeader:
      Name: Authorization
    ErrorPages:
      Unauthenticated:
        RedirectTo: https://example.com/login
    SessionStorageType: Cookie
"#;

#[test]
fn pasted_traefik_oidc_auth_block_loads_with_expansion() {
    let loaded = parse_with(
        TOA_BLOCK,
        &[
            ("SECRET", "a-very-long-secret-of-more-than-32-bytes!!"),
            ("CLIENT_ID", "app"),
        ],
        &[("/run/secrets/client_secret", "s3cret\n")],
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let m = &loaded.config.middlewares["oidc-auth"];
    assert_eq!(m.provider.client_id, "app");
    assert_eq!(
        m.provider
            .client_secret
            .as_ref()
            .map(|s| s.secret().as_str()),
        Some("s3cret")
    );
    assert!(m.provider.use_pkce && m.provider.validate_issuer && !m.provider.validate_audience);
    assert_eq!(m.scopes.len(), 4);
    assert_eq!(m.assert_claims.len(), 2);
    assert_eq!(m.headers.len(), 2);
    assert_eq!(m.session_cookie.domain.as_deref(), Some(".example.com"));
    assert_eq!(
        m.unauthenticated_behavior,
        UnauthenticatedBehavior::Challenge
    );
    // SessionStorageType is implemented (see config::redis); the per-middleware LogLevel
    // applies.
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert!(
        !warned.contains(&"middlewares.oidc-auth.SessionStorageType"),
        "{warned:?}"
    );
    assert_eq!(m.session_storage, crate::config::SessionStorage::Cookie);
    assert!(
        !warned.contains(&"middlewares.oidc-auth.LogLevel"),
        "{warned:?}"
    );
    assert_eq!(m.log_level, Some(tracing::Level::DEBUG));
}

#[test]
fn middleware_log_level_takes_traefik_oidc_auth_values() {
    for (v, want) in [
        ("DEBUG", tracing::Level::DEBUG),
        ("info", tracing::Level::INFO),
        ("Warn", tracing::Level::WARN),
        ("ERROR", tracing::Level::ERROR),
    ] {
        let text = format!(
            "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n    LogLevel: {v}\n"
        );
        let loaded = parse_with(&text, &[], &[]).unwrap();
        assert_eq!(
            loaded.config.middlewares["default"].log_level,
            Some(want),
            "{v}"
        );
    }
    let text = format!(
        "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: {SECRET}\n    LogLevel: verbose\n"
    );
    let problems = parse_with(&text, &[], &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "middlewares.default.LogLevel"),
        "{problems:?}"
    );
}

#[test]
fn keys_are_case_insensitive() {
    let text = format!(
        "MIDDLEWARES:\n  default:\n    provider:\n      url: https://idp.example\n      clientId: app\n    secret: {SECRET}\n    sessionCookie:\n      secure: false\n"
    );
    let cfg = parse_with(&text, &[], &[])
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    assert!(!cfg.middlewares["default"].session_cookie.secure);
}

#[test]
fn backchannel_logout_uri_is_a_path_or_url_like_the_callback() {
    for (value, want) in [
        ("/bcl", Some("/bcl")),
        ("https://app.example/bcl", Some("https://app.example/bcl")),
        ("bcl", None),
        ("//evil/bcl", None),
    ] {
        let text = format!("{}    backchannellogouturi: \"{value}\"\n", minimal());
        match (parse_with(&text, &[], &[]), want) {
            (Ok(l), Some(w)) => {
                assert_eq!(l.config.middlewares["default"].backchannel_logout_uri, w)
            }
            (Err(p), None) => assert!(
                p.iter()
                    .any(|p| p.path == "middlewares.default.BackchannelLogoutUri"),
                "{p:?}"
            ),
            (r, _) => panic!("{value}: {:?}", r.map(|_| ())),
        }
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
listen: nonsense
logFormat: xml
middlewares:
  default:
    Provider:
      Url: "ftp://idp"
      ClientSecrett: x
    Secret: short
    UnauthenticatedBehavior: Sometimes
    SessionCookie:
      SameSite: none
      Secure: false
    Authorization:
      AssertClaims:
        - Name: "groups[["
    Headers:
      - Name: X-User
        Value: "{{ .claims.email "
"#;
    let problems = parse_with(text, &[], &[]).map(|_| ()).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    let want = [
        "listen",
        "logFormat",
        "middlewares.default.Provider.Url",
        "middlewares.default.Provider.ClientId",
        "middlewares.default.Provider.ClientSecrett",
        "middlewares.default.Secret",
        "middlewares.default.UnauthenticatedBehavior",
        "middlewares.default.SessionCookie.SameSite",
        "middlewares.default.Authorization.AssertClaims[0].Name",
        "middlewares.default.Headers[0].Value",
    ];
    for w in want {
        assert!(paths.contains(&w), "missing {w} in {problems:#?}");
    }
    let typo = problems
        .iter()
        .find(|p| p.path.ends_with("ClientSecrett"))
        .unwrap();
    assert!(
        typo.message.contains("did you mean ClientSecret"),
        "{}",
        typo.message
    );
}

#[test]
fn templates_load_or_fail_with_their_position() {
    let pages = "    ErrorPages:\n      Unauthenticated:\n        FilePath: /p/401.html\n      Unauthorized:\n        FilePath: /p/403.html\n";
    let headers = "    Headers:\n      - Name: X-Groups\n        Value: \"{{ range .claims.groups }}{{ . }},{{ end }}\"\n      - Name: X-Bad\n        Value: \"{{ if .claims.a }}\\n{{ nosuch }}{{ end }}\"\n";
    let text = format!("{}{pages}{headers}", minimal());
    let good = "{{ if .primaryButtonUrl }}<a href=\"{{ .primaryButtonUrl }}\">{{ .primaryButtonText }}</a>{{ end }}";
    let bad = "<h1>{{ .statusName }}</h1>\n<p>{{ .description | nosuch }}</p>";
    let problems = parse_with(&text, &[], &[("/p/401.html", good), ("/p/403.html", bad)])
        .map(|_| ())
        .unwrap_err();
    let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let page = problems
        .iter()
        .find(|p| p.path == "middlewares.default.ErrorPages.Unauthorized.FilePath")
        .unwrap_or_else(|| panic!("{msgs:#?}"));
    assert!(
        page.message.contains("line 2, column 22"),
        "{}",
        page.message
    );
    let header = problems
        .iter()
        .find(|p| p.path == "middlewares.default.Headers[1].Value")
        .unwrap_or_else(|| panic!("{msgs:#?}"));
    assert!(
        header.message.contains("line 2, column 4"),
        "{}",
        header.message
    );
}

#[test]
fn secret_rules() {
    let cases = [
        (TOA_DEFAULT_SECRET, false),
        ("0123456789abcdef0123456789abcde", false),
        // Placeholders someone meant to replace: the one our Kubernetes examples shipped,
        // the usual words, and keys with almost no entropy.
        ("replace-me-with-at-least-32-random-bytes-0000", false),
        ("please-CHANGE-ME-before-production-0123456789", false),
        ("your-secret-here-at-least-32-bytes-long!!", false),
        (&*"a".repeat(48), false),
        (&*"0".repeat(32), false),
        (&*"ab".repeat(24), false),
        ("0123456abcdef0123456abcdef012345", true),
        (SECRET, true),
    ];
    for (secret, ok) in cases {
        let text = minimal().replace(SECRET, secret);
        let got = parse_with(&text, &[], &[]);
        assert_eq!(got.is_ok(), ok, "{secret}");
        if let Err(p) = got {
            assert!(
                !format!("{p:?}").contains(secret),
                "echoes the secret: {p:?}"
            );
        }
    }
}

#[test]
fn previous_secrets_follow_the_secret_rules() {
    let with = |list: &str| format!("{}    PreviousSecrets: {list}\n", minimal());
    let old = "an-older-session-secret-0123456789abcdef";
    let file_old = "a-file-session-secret-0123456789abcdefgh";
    let got = parse_with(
        &with(&format!(
            "[\"${{OLD}}\", \"${{file:/run/old}}\", {SECRET}, \"${{OLD}}\"]"
        )),
        &[("OLD", old)],
        &[("/run/old", &format!("{file_old}\n"))],
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let m = &got.config.middlewares["default"];
    // The sealing secret and a repeat are dropped; order is kept.
    let kept: Vec<&str> = m.previous_secrets.iter().map(Secret::expose).collect();
    assert_eq!(kept, [old, file_old]);
    assert!(
        !format!("{m:?}").contains(old),
        "Debug shows a previous secret"
    );
    // Absent: none.
    let none = parse_with(&minimal(), &[], &[]).unwrap().config;
    assert!(none.middlewares["default"].previous_secrets.is_empty());
    // Each entry obeys Secret's rules, reported at its index, never echoed.
    for (bad, why) in [
        ("[short-secret]", "at least 32 bytes"),
        (
            &*format!("[{old}, {TOA_DEFAULT_SECRET}]"),
            "anyone could forge",
        ),
        ("[\"${NOPE}\"]", "NOPE is not set"),
        ("not-a-list", "expected a list"),
    ] {
        let p = parse_with(&with(bad), &[], &[]).map(|_| ()).unwrap_err();
        assert!(
            p.iter()
                .any(|p| p.path.contains("PreviousSecrets") && p.message.contains(why)),
            "{bad}: {p:?}"
        );
        assert!(!format!("{p:?}").contains(TOA_DEFAULT_SECRET), "{p:?}");
    }
}

#[test]
fn missing_env_var_is_an_error_not_a_literal() {
    let text = minimal().replace(SECRET, "${NOPE}");
    let p = parse_with(&text, &[], &[]).map(|_| ()).unwrap_err();
    assert!(
        p.iter().any(|p| p.message.contains("NOPE is not set")),
        "{p:?}"
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let text = minimal().replace(
        "ClientId: app",
        "ClientId: app\n      ClientSecret: hunter2-client-secret",
    );
    let cfg = parse_with(&text, &[], &[])
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config;
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(SECRET));
    assert!(!dbg.contains("hunter2"));
    assert!(dbg.contains("[redacted]"));
}

#[test]
fn forward_behaviours_and_bypass_rule_load() {
    let text = format!(
        "{}    UnauthenticatedBehavior: forward\n    UnauthorizedBehavior: Forward\n    BypassAuthenticationRule: \"PathPrefix(`/health`) || Method(`OPTIONS`)\"\n",
        minimal()
    );
    let m = parse_with(&text, &[], &[])
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .config
        .middlewares
        .remove("default")
        .unwrap();
    assert_eq!(m.unauthenticated_behavior, UnauthenticatedBehavior::Forward);
    assert_eq!(m.unauthorized_behavior, UnauthorizedBehavior::Forward);
    assert!(m.bypass.is_some());
    let bad = format!(
        "{}    BypassAuthenticationRule: \"PathPrefix(`/health`\"\n",
        minimal()
    );
    let p = parse_with(&bad, &[], &[]).map(|_| ()).unwrap_err();
    assert!(
        p.iter()
            .any(|p| p.path.ends_with("BypassAuthenticationRule")),
        "{p:?}"
    );
}

#[test]
fn did_you_mean_table() {
    let cases = [
        ("CallbakUri", Some("CallbackUri")),
        ("scope", Some("Scopes")),
        ("zzzzzzzzzzz", None),
    ];
    for (key, want) in cases {
        assert_eq!(did_you_mean(key, MIDDLEWARE_KEYS.iter()), want, "{key}");
    }
}

fn provider_block(extra: &str) -> String {
    format!(
        "middlewares:\n  default:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n{extra}    Secret: {SECRET}\n"
    )
}

fn test_key(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/test-keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn client_jwt_private_key_is_parsed_at_load() {
    // From a file, with its key id: a key, not a warning.
    let loaded = parse_with(
        &provider_block(
            "      ClientJwtPrivateKeyId: k1\n      ClientJwtPrivateKey: \"${file:/keys/ec.pem}\"\n",
        ),
        &[],
        &[("/keys/ec.pem", &test_key("ec-p256-sec1.pem"))],
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let p = &loaded.config.middlewares["default"].provider;
    let key = p.client_key.as_ref().unwrap();
    assert_eq!(key.alg(), "ES256");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Debug of the whole configuration names the key, never its material.
    let shown = format!("{:?}", loaded.config);
    assert!(shown.contains("ES256") && shown.contains("k1"), "{shown}");
    let material = test_key("ec-p256-sec1.pem");
    assert!(!shown.contains(&material.lines().nth(1).unwrap()[..16]));

    // Inline from an environment variable, next to a secret: the secret is not sent.
    let loaded = parse_with(
        &provider_block("      ClientSecret: s3cret\n      ClientJwtPrivateKey: \"${KEY}\"\n"),
        &[("KEY", &test_key("rsa-pkcs1.pem"))],
        &[],
    )
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let p = &loaded.config.middlewares["default"].provider;
    assert_eq!(p.client_key.as_ref().map(ClientKey::alg), Some("RS256"));
    assert_eq!(
        loaded
            .warnings
            .iter()
            .map(|w| w.path.as_str())
            .collect::<Vec<_>>(),
        ["middlewares.default.Provider.ClientSecret"]
    );
}

#[test]
fn a_bad_client_jwt_private_key_is_a_load_problem_at_its_path() {
    let problems = |extra: &str, vars: &[(&str, &str)]| {
        parse_with(&provider_block(extra), vars, &[])
            .err()
            .unwrap_or_default()
    };
    let p = problems(
        "      ClientJwtPrivateKey: \"${KEY}\"\n",
        &[("KEY", "-----BEGIN RSA PRIVATE KEY-----")],
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        p[0].path,
        "middlewares.default.Provider.ClientJwtPrivateKey"
    );
    assert!(p[0].message.contains("PKCS#1"), "{p:?}");
    let p = problems(
        "      ClientJwtPrivateKey: \"${KEY}\"\n",
        &[("KEY", &test_key("rsa-1024-too-small.pem"))],
    );
    assert!(p[0].message.contains("2048"), "{p:?}");
    let p = problems("      ClientJwtPrivateKeyId: k1\n", &[]);
    assert_eq!(
        p[0].path,
        "middlewares.default.Provider.ClientJwtPrivateKeyId"
    );
}

#[test]
fn silent_login_needs_forward() {
    let with = |extra: &str| format!("{}{extra}", minimal());
    // Off by default; on with Forward (any spelling of the key, a string from a label).
    let cfg = parse_with(&minimal(), &[], &[]).unwrap().config;
    assert!(!cfg.middlewares["default"].silent_login);
    for on in [
        "    UnauthenticatedBehavior: Forward\n    SilentLogin: true\n",
        "    unauthenticatedbehavior: forward\n    silentLOGIN: \"true\"\n",
    ] {
        let cfg = parse_with(&with(on), &[], &[])
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config;
        assert!(cfg.middlewares["default"].silent_login, "{on}");
    }
    // Every other behaviour, the default included, is refused at the key with the reason.
    for other in [
        "",
        "    UnauthenticatedBehavior: Auto\n",
        "    UnauthenticatedBehavior: Challenge\n",
        "    UnauthenticatedBehavior: Unauthorized\n",
    ] {
        let problems = parse_with(&with(&format!("{other}    SilentLogin: true\n")), &[], &[])
            .err()
            .unwrap_or_else(|| panic!("accepted: {other}"));
        assert!(
            problems
                .iter()
                .any(|p| p.path == "middlewares.default.SilentLogin"
                    && p.message.contains("needs UnauthenticatedBehavior: Forward")),
            "{other}: {problems:?}"
        );
    }
    // Off with any behaviour is fine; a non-boolean is a problem.
    assert!(parse_with(&with("    SilentLogin: false\n"), &[], &[]).is_ok());
    assert!(
        parse_with(
            &with("    UnauthenticatedBehavior: Forward\n    SilentLogin: sometimes\n"),
            &[],
            &[]
        )
        .is_err()
    );
}

#[test]
fn step_up_parses_and_refuses_what_cannot_be_sent() {
    let with = |block: &str| parse_with(&format!("{}    StepUp:\n{block}", minimal()), &[], &[]);
    let cfg =
        with("      acrvalues: [gold, \"urn:mace:incommon:iap:silver\"]\n      MaxAge: 15m\n")
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .config;
    let s = cfg.middlewares["default"].step_up.clone().unwrap();
    assert_eq!(s.acr_values, ["gold", "urn:mace:incommon:iap:silver"]);
    assert_eq!(s.max_age, Some(900));
    let only_age = with("      MaxAge: 300\n")
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let s = only_age.config.middlewares["default"]
        .step_up
        .clone()
        .unwrap();
    assert!(s.acr_values.is_empty() && s.max_age == Some(300));
    // Off by default.
    let off = parse_with(&minimal(), &[], &[]).unwrap().config;
    assert!(off.middlewares["default"].step_up.is_none());
    for (block, path) in [
        ("      {}\n", "middlewares.default.StepUp"),
        (
            "      AcrValues: [\"a b\"]\n",
            "middlewares.default.StepUp.AcrValues[0]",
        ),
        (
            "      AcrValues: ['x\"y']\n",
            "middlewares.default.StepUp.AcrValues[0]",
        ),
        ("      MaxAge: 0s\n", "middlewares.default.StepUp.MaxAge"),
        ("      MaxAge: soon\n", "middlewares.default.StepUp.MaxAge"),
        ("      Level: 2\n", "middlewares.default.StepUp.Level"),
    ] {
        let problems = with(block)
            .err()
            .unwrap_or_else(|| panic!("accepted: {block}"));
        assert!(
            problems.iter().any(|p| p.path == path),
            "{block}: {problems:?}"
        );
    }
}

#[test]
fn idle_timeout_is_a_duration_in_whole_seconds() {
    let with = |v: &str| {
        parse_with(
            &format!("{}    SessionCookie:\n      IdleTimeout: {v}\n", minimal()),
            &[],
            &[],
        )
    };
    let timeout = |v: &str| {
        with(v).unwrap().config.middlewares["default"]
            .session_cookie
            .idle_timeout
    };
    let cfg = parse_with(&minimal(), &[], &[]).unwrap().config;
    assert_eq!(
        cfg.middlewares["default"].session_cookie.idle_timeout, None,
        "off by default"
    );
    assert_eq!(timeout("30m"), Some(1800));
    assert_eq!(timeout("900"), Some(900));
    assert_eq!(timeout("\"1h\""), Some(3600));
    for bad in ["0", "1500ms", "soon", "400d", "9000h"] {
        let problems = with(bad).map(|_| ()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.path == "middlewares.default.SessionCookie.IdleTimeout"),
            "{bad}: {problems:#?}"
        );
    }
}
