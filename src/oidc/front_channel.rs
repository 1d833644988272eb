//! The browser-side URLs toward the IdP: the authorization request (OIDC Core §3.1.2.1, with
//! PKCE per RFC 7636 and resource indicators per RFC 8707) and the RP-initiated logout URL.

use base64::Engine as _;
use openidconnect::url::Url;
use sha2::{Digest, Sha256};

use super::{Discovered, Provider};

impl Provider {
    /// The authorization request URL (OIDC Core §3.1.2.1).
    pub fn authorize_url(&self, d: &Discovered, p: &AuthorizeParams<'_>) -> String {
        let mut url = d.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", p.redirect_uri)
                .append_pair("scope", &p.scopes.join(" "))
                .append_pair("state", p.state)
                .append_pair("nonce", p.nonce);
            if let Some(v) = p.pkce_verifier {
                q.append_pair("code_challenge", &pkce_challenge(v))
                    .append_pair("code_challenge_method", "S256");
            }
            for r in p.resources {
                q.append_pair("resource", r);
            }
            for (k, v) in p.extra {
                // An explicit prompt (LoginUri?prompt=) wins over the configured one, and a
                // step-up's acr_values / max_age over configured ones (a parameter appears once).
                let replaced = match k.as_str() {
                    "prompt" => p.prompt.is_some(),
                    "acr_values" => p.acr_values.is_some(),
                    "max_age" => p.max_age.is_some(),
                    _ => false,
                };
                if !replaced {
                    q.append_pair(k, v);
                }
            }
            // OIDC Core §3.1.2.1: acr_values space-separated, max_age in seconds.
            if let Some(a) = p.acr_values {
                q.append_pair("acr_values", a);
            }
            if let Some(m) = p.max_age {
                q.append_pair("max_age", &m.to_string());
            }
            if let Some(prompt) = p.prompt {
                q.append_pair("prompt", prompt);
            }
        }
        url.to_string()
    }

    /// The RP-initiated logout URL (OpenID Connect RP-Initiated Logout 1.0 §2).
    pub fn end_session_url(
        &self,
        endpoint: &Url,
        id_token_hint: Option<&str>,
        post_logout: &str,
    ) -> String {
        let mut url = endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(h) = id_token_hint {
                q.append_pair("id_token_hint", h);
            }
            q.append_pair("client_id", &self.cfg.client_id)
                .append_pair("post_logout_redirect_uri", post_logout);
        }
        url.to_string()
    }
}

/// Inputs of the authorization URL.
pub struct AuthorizeParams<'a> {
    /// Absolute callback URL.
    pub redirect_uri: &'a str,
    /// Scopes to request.
    pub scopes: &'a [String],
    /// CSRF `state`.
    pub state: &'a str,
    /// Replay `nonce`.
    pub nonce: &'a str,
    /// PKCE verifier (its S256 challenge is sent).
    pub pkce_verifier: Option<&'a str>,
    /// `prompt` value, e.g. `login`.
    pub prompt: Option<&'a str>,
    /// Extra parameters (`AuthorizationParams`), reserved names already removed.
    pub extra: &'a [(String, String)],
    /// RFC 8707 resource indicators.
    pub resources: &'a [String],
    /// `acr_values` of a step-up (space-separated), replacing a configured one.
    pub acr_values: Option<&'a str>,
    /// `max_age` of a step-up, in seconds, replacing a configured one.
    pub max_age: Option<u64>,
}

/// RFC 7636 §4.2: BASE64URL(SHA256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b_vector() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
