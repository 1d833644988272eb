//! The `Provider` block: the issuer URL, client credentials (secret or `private_key_jwt` key,
//! checked at load), issuer and audience validation, TLS trust (`CABundle`, `CABundleFile`,
//! `InsecureSkipVerify`), `TokenValidation` and the renewal threshold. It is parsed into the OIDC
//! module's [`ProviderConfig`].

use openidconnect::ClientSecret;
use openidconnect::url::Url;
use serde_yaml_ng::Value;

use super::walk::{Cx, Obj, join, opt_string};
use super::{ClientKey, ProviderConfig, TokenValidation};
use crate::oidc;

pub(super) const PROVIDER_KEYS: &[&str] = &[
    "Url",
    "ClientId",
    "ClientSecret",
    "UsePkce",
    "ValidateIssuer",
    "ValidIssuer",
    "ValidateAudience",
    "ValidAudience",
    "InsecureSkipVerify",
    "CABundleFile",
    "TokenRenewalThreshold",
    "CABundle",
    "TokenValidation",
    "UseClaimsFromUserInfo",
    "ClientJwtPrivateKey",
    "ClientJwtPrivateKeyId",
];

pub(super) fn parse_provider(v: &Value, path: &str, cx: &mut Cx<'_>) -> Option<ProviderConfig> {
    let mut obj = Obj::new(v, path, cx)?;
    let url = match opt_string(&mut obj, "Url", cx) {
        Some(u) => {
            // traefik-oidc-auth prepends https:// to a bare host; keep pasted blocks working.
            let u = if u.contains("://") {
                u
            } else {
                format!("https://{u}")
            };
            match Url::parse(&u) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(u),
                _ => {
                    cx.problem(&join(path, "Url"), "expected the issuer's http(s) URL");
                    None
                }
            }
        }
        None => {
            cx.problem(&join(path, "Url"), "required (the issuer URL)");
            None
        }
    };
    let client_id = opt_string(&mut obj, "ClientId", cx);
    if client_id.as_deref().is_none_or(str::is_empty) {
        cx.problem(&join(path, "ClientId"), "required");
    }
    let client_secret = opt_string(&mut obj, "ClientSecret", cx)
        .filter(|s| !s.is_empty())
        .map(ClientSecret::new);
    let client_key = parse_client_key(&mut obj, path, client_secret.is_some(), cx);
    let mut flag = |obj: &mut Obj<'_>, key: &str, default: bool| match obj.get(key) {
        Some((p, v)) => cx.boolean(v, &p).unwrap_or(default),
        None => default,
    };
    let use_pkce = flag(&mut obj, "UsePkce", false);
    let validate_issuer = flag(&mut obj, "ValidateIssuer", true);
    let validate_audience = flag(&mut obj, "ValidateAudience", true);
    let insecure_skip_verify = flag(&mut obj, "InsecureSkipVerify", false);
    let use_claims_from_userinfo = flag(&mut obj, "UseClaimsFromUserInfo", false);
    let valid_issuer = opt_string(&mut obj, "ValidIssuer", cx).filter(|s| !s.is_empty());
    let valid_audience = opt_string(&mut obj, "ValidAudience", cx).filter(|s| !s.is_empty());
    // Read now, once: the transport opens no file, and a block's file is read under its rules.
    let ca_bundle_file = opt_string(&mut obj, "CABundleFile", cx)
        .filter(|s| !s.is_empty())
        .and_then(|f| cx.read_pem(&f, &join(path, "CABundleFile")));
    let token_validation = match obj.get("TokenValidation") {
        Some((p, v)) => cx
            .one_of(
                v,
                &p,
                &[
                    ("IdToken", TokenValidation::IdToken),
                    ("AccessToken", TokenValidation::AccessToken),
                    ("Introspection", TokenValidation::Introspection),
                ],
            )
            .unwrap_or(TokenValidation::IdToken),
        None => TokenValidation::IdToken,
    };
    let ca_bundle = opt_string(&mut obj, "CABundle", cx).filter(|s| !s.is_empty());
    if ca_bundle.is_some() && ca_bundle_file.is_some() {
        cx.problem(
            &join(path, "CABundle"),
            "give CABundle or CABundleFile, not both",
        );
    }
    if let Some(b) = &ca_bundle
        && let Err(e) = oidc::decode_ca_bundle(b)
    {
        cx.problem(&join(path, "CABundle"), e);
    }
    let token_renewal_threshold = match obj.get("TokenRenewalThreshold") {
        Some((p, v)) => {
            let t = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(raw) => cx.expand(raw, &p).and_then(|x| x.trim().parse().ok()),
                _ => None,
            };
            match t {
                Some(t) if (0.5..=1.0).contains(&t) => t,
                _ => {
                    cx.problem(&p, "expected a number from 0.5 to 1.0");
                    0.75
                }
            }
        }
        None => 0.75,
    };
    if insecure_skip_verify {
        cx.warn(
            &join(path, "InsecureSkipVerify"),
            "TLS certificates of the IdP are not checked; use only for testing",
        );
    }
    obj.finish(PROVIDER_KEYS, &[], cx);
    Some(ProviderConfig {
        url: url?,
        client_id: client_id?,
        client_secret,
        client_key,
        use_pkce,
        validate_issuer,
        valid_issuer,
        validate_audience,
        valid_audience,
        insecure_skip_verify,
        ca_bundle_file,
        ca_bundle,
        token_renewal_threshold,
        token_validation,
        use_claims_from_userinfo,
    })
}

/// `ClientJwtPrivateKey` (PEM, usually `${file:…}`) and `ClientJwtPrivateKeyId`: parsed here so
/// a bad key stops the load with its key path instead of failing every login.
pub(super) fn parse_client_key(
    obj: &mut Obj<'_>,
    path: &str,
    has_secret: bool,
    cx: &mut Cx<'_>,
) -> Option<ClientKey> {
    let kid = opt_string(obj, "ClientJwtPrivateKeyId", cx).filter(|s| !s.is_empty());
    let pem = opt_string(obj, "ClientJwtPrivateKey", cx).filter(|s| !s.trim().is_empty());
    let Some(pem) = pem else {
        if kid.is_some() {
            cx.problem(
                &join(path, "ClientJwtPrivateKeyId"),
                "given without ClientJwtPrivateKey",
            );
        }
        return None;
    };
    let key_path = join(path, "ClientJwtPrivateKey");
    match ClientKey::from_pem(&pem, kid) {
        Ok(key) => {
            if has_secret {
                cx.warn(
                    &join(path, "ClientSecret"),
                    "not sent: ClientJwtPrivateKey authenticates the client (private_key_jwt)",
                );
            }
            Some(key)
        }
        Err(e) => {
            cx.problem(&key_path, e);
            None
        }
    }
}
