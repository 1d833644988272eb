//! RFC 7662 token introspection for `TokenValidation: Introspection`, with a short cache of
//! active results.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::client_auth::ASSERTION_TYPE;
use super::transport::fetch;
use super::{LEEWAY_SECS, Provider};
use crate::error::Error;
use crate::telemetry::{self, IdpEndpoint};

/// Active introspection results by SHA-256 of the token, with the time they stop counting.
pub(super) type Cache = Mutex<HashMap<[u8; 32], Introspected>>;

/// An active introspection result and the time it stops being trusted.
type Introspected = (u64, Map<String, Value>);

/// Most introspection results kept; beyond it, expired entries go, then everything.
const INTROSPECTION_CACHE_MAX: usize = 10_000;
/// Longest an introspection result is trusted without asking again.
const INTROSPECTION_CACHE_SECS: u64 = 60;

impl Provider {
    /// RFC 7662 introspection with the client's credentials. Active results are cached until the
    /// token expires, at most 60 s, so revocation at the IdP takes effect within a minute.
    pub async fn introspect(&self, token: &str, now: u64) -> Result<Map<String, Value>, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(cache) = self.introspected.lock()
            && let Some((until, claims)) = cache.get(&key)
            && *until > now
        {
            return Ok(claims.clone());
        }
        let d = self
            .current()
            .ok_or_else(|| Error::IdpUnavailable("discovery not loaded yet".into()))?;
        let endpoint = d.introspection_endpoint.clone().ok_or_else(|| {
            Error::Internal(
                "TokenValidation is Introspection but the IdP has no introspection_endpoint".into(),
            )
        })?;
        let mut form = vec![
            ("token", token.to_string()),
            ("token_type_hint", "access_token".to_string()),
        ];
        let assertion = self.client_assertion(&d, now)?;
        let req = match assertion {
            // private_key_jwt (RFC 7523 §2.2): the assertion in the body, no secret.
            Some(a) => {
                form.push(("client_id", self.cfg.client_id.clone()));
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", a));
                self.http.post(endpoint).form(&form)
            }
            // RFC 6749 §2.3.1: client credentials form-urlencoded inside HTTP Basic.
            None => {
                let enc = |s: &str| {
                    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes())
                        .collect::<String>()
                };
                self.http.post(endpoint).form(&form).basic_auth(
                    enc(&self.cfg.client_id),
                    self.cfg.client_secret.as_ref().map(|s| enc(s.secret())),
                )
            }
        };
        let (_, body) = telemetry::idp(IdpEndpoint::Introspection, fetch(req, "introspection"))
            .await
            .map_err(Error::IdpUnavailable)?;
        let claims: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| Error::IdpUnavailable(format!("introspection response: {e}")))?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(Error::InvalidBearer("inactive token".into()));
        }
        // RFC 7662 §2.2's optional `iss`: when the IdP names the token's issuer, it must be ours
        // (the discovered issuer in the internal-URL layout, or ValidIssuer).
        if self.cfg.validate_issuer
            && let Some(iss) = claims.get("iss")
            && iss.as_str() != Some(d.issuer.as_str())
        {
            return Err(Error::InvalidBearer("issuer is not ours".into()));
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64)
            && exp + LEEWAY_SECS <= now
        {
            return Err(Error::InvalidBearer("expired".into()));
        }
        if self.cfg.validate_audience
            && let Some(aud) = claims.get("aud")
        {
            let want = self
                .cfg
                .valid_audience
                .as_deref()
                .unwrap_or(&self.cfg.client_id);
            let ok = match aud {
                Value::String(a) => a == want,
                Value::Array(a) => a.iter().any(|x| x == want),
                _ => false,
            };
            if !ok {
                return Err(Error::InvalidBearer("audience is not ours".into()));
            }
        }
        let until = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
            .min(now + INTROSPECTION_CACHE_SECS);
        if let Ok(mut cache) = self.introspected.lock() {
            if cache.len() >= INTROSPECTION_CACHE_MAX {
                cache.retain(|_, (u, _)| *u > now);
                if cache.len() >= INTROSPECTION_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, (until, claims.clone()));
        }
        Ok(claims)
    }
}
