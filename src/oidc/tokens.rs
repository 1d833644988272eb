//! The token endpoint and token verification: the code exchange, the refresh, ID token and JWT
//! access token checks (OIDC Core §3.1.3.7, RFC 9068).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, SignatureVerificationError,
    TokenResponse,
};
use serde_json::{Map, Value};

use super::settings::ProviderConfig;
use super::transport::{Capped, CappedError};
use super::{Discovered, LEEWAY_SECS, Provider, TokenKind};
use crate::error::Error;
use crate::telemetry::{self, IdpEndpoint};

/// What a successful login yields.
pub struct Verified {
    /// All ID token claims.
    pub claims: Map<String, Value>,
    /// The raw ID token (for the logout hint).
    pub id_token: String,
    /// When the session should end (unix seconds).
    pub expires_at: u64,
    /// The refresh token, if the IdP issued one.
    pub refresh_token: Option<String>,
    /// The access token.
    pub access_token: String,
}

/// What a successful refresh yields. Fields the IdP did not send are `None`: the caller keeps
/// the old value (many IdPs do not rotate refresh tokens or reissue ID tokens).
pub struct Refreshed {
    /// Claims of the new ID token, if one came.
    pub claims: Option<Map<String, Value>>,
    /// The new raw ID token.
    pub id_token: Option<String>,
    /// The new refresh token.
    pub refresh_token: Option<String>,
    /// When the new access token expires, if the IdP said.
    pub expires_at: Option<u64>,
    /// The new access token.
    pub access_token: String,
}

impl Provider {
    /// Verifies a bearer token as a JWT access token: signature from the JWKS (refetched at most
    /// once a minute for an unknown `kid`), `iss`, audience (`ValidAudience`, else the client
    /// id), `exp`/`nbf` with leeway. Returns its claims.
    pub async fn verify_access_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Map<String, Value>, Error> {
        let d = self
            .current()
            .ok_or_else(|| Error::IdpUnavailable("discovery not loaded yet".into()))?;
        let jwt: CoreIdToken = token
            .parse()
            .map_err(|_| Error::InvalidBearer("not a JWT".into()))?;
        let any_nonce = |_: Option<&Nonce>| Ok(());
        match self.verify_with(&d, &jwt, any_nonce, now, TokenKind::Access) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let d = self
                    .refetch_jwks(&d, now)
                    .await
                    .map_err(|e| Error::InvalidBearer(e.to_string()))?;
                self.verify_with(&d, &jwt, any_nonce, now, TokenKind::Access)
                    .map_err(|e| Error::InvalidBearer(e.to_string()))?;
            }
            Err(e) => return Err(Error::InvalidBearer(e.to_string())),
            Ok(()) => {}
        }
        let claims = payload(token)
            .ok_or_else(|| Error::InvalidBearer("payload is not a JSON object".into()))?;
        check_claims(&claims, &self.cfg, now, TokenKind::Access).map_err(Error::InvalidBearer)?;
        Ok(claims)
    }

    /// Redeems `code` and verifies the ID token it brings.
    pub async fn exchange(
        &self,
        d: Arc<Discovered>,
        x: Exchange<'_>,
        now: u64,
    ) -> Result<Verified, Error> {
        let redirect = RedirectUrl::new(x.redirect_uri.to_string())
            .map_err(|e| Error::Internal(format!("redirect_uri: {e}")))?;
        let mut req = d
            .client
            .exchange_code(AuthorizationCode::new(x.code.to_string()))
            .map_err(|_| Error::IdpUnavailable("the IdP has no token endpoint".into()))?
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(v) = x.pkce_verifier {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(v.to_string()));
        }
        for (name, value) in self.token_params(&d, x.resources, now)? {
            req = req.add_extra_param(name, value);
        }
        let client = Capped(self.http.clone());
        let tokens = telemetry::idp(IdpEndpoint::Token, req.request_async(&client))
            .await
            .map_err(token_error)?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| Error::InvalidIdToken("no id_token in the token response".into()))?;
        let nonce = Nonce::new(x.nonce.to_string());
        match self.verify_signature(&d, id_token, &nonce, now) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The IdP may have rotated its keys: refetch once (rate-limited) and retry.
                let d = self.refetch_jwks(&d, now).await?;
                self.verify_signature(&d, id_token, &nonce, now)
                    .map_err(|e| Error::InvalidIdToken(e.to_string()))?;
            }
            Err(e) => return Err(Error::InvalidIdToken(e.to_string())),
            Ok(()) => {}
        }
        let raw = id_token.to_string();
        let claims = payload(&raw)
            .ok_or_else(|| Error::InvalidIdToken("payload is not a JSON object".into()))?;
        check_claims(&claims, &self.cfg, now, TokenKind::Id).map_err(Error::InvalidIdToken)?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        let expires_at = match tokens.expires_in() {
            Some(d) => now.saturating_add(d.as_secs()),
            None => exp,
        };
        Ok(Verified {
            claims,
            id_token: raw,
            expires_at,
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            access_token: tokens.access_token().secret().clone(),
        })
    }

    /// Redeems a refresh token (RFC 6749 §6). A new ID token, when present, is verified like at
    /// login (without a nonce, which OIDC Core §12.2 does not require) and must name the same
    /// `sub` as the session.
    pub async fn refresh(
        &self,
        d: Arc<Discovered>,
        refresh_token: &str,
        sub: &str,
        resources: &[String],
        now: u64,
    ) -> Result<Refreshed, Error> {
        let rt = RefreshToken::new(refresh_token.to_string());
        let mut req = d
            .client
            .exchange_refresh_token(&rt)
            .map_err(|_| Error::IdpUnavailable("the IdP has no token endpoint".into()))?;
        for (name, value) in self.token_params(&d, resources, now)? {
            req = req.add_extra_param(name, value);
        }
        let client = Capped(self.http.clone());
        let tokens = telemetry::idp(IdpEndpoint::Refresh, req.request_async(&client))
            .await
            .map_err(token_error)?;
        let mut out = Refreshed {
            claims: None,
            id_token: None,
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            expires_at: tokens.expires_in().map(|d| now.saturating_add(d.as_secs())),
            access_token: tokens.access_token().secret().clone(),
        };
        if let Some(id_token) = tokens.id_token() {
            let no_nonce = |_: Option<&Nonce>| Ok(());
            if let Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) = self.verify_with(&d, id_token, no_nonce, now, TokenKind::Id)
            {
                let d = self.refetch_jwks(&d, now).await?;
                self.verify_with(&d, id_token, no_nonce, now, TokenKind::Id)
                    .map_err(|e| Error::InvalidIdToken(e.to_string()))?;
            } else {
                self.verify_with(&d, id_token, no_nonce, now, TokenKind::Id)
                    .map_err(|e| Error::InvalidIdToken(e.to_string()))?;
            }
            let raw = id_token.to_string();
            let claims = payload(&raw)
                .ok_or_else(|| Error::InvalidIdToken("payload is not a JSON object".into()))?;
            check_claims(&claims, &self.cfg, now, TokenKind::Id).map_err(Error::InvalidIdToken)?;
            if claims.get("sub").and_then(Value::as_str) != Some(sub) {
                return Err(Error::InvalidIdToken(
                    "refreshed ID token names another subject".into(),
                ));
            }
            if out.expires_at.is_none() {
                out.expires_at = claims.get("exp").and_then(Value::as_u64);
            }
            out.claims = Some(claims);
            out.id_token = Some(raw);
        }
        Ok(out)
    }

    fn verify_signature(
        &self,
        d: &Discovered,
        token: &CoreIdToken,
        nonce: &Nonce,
        now: u64,
    ) -> Result<(), ClaimsVerificationError> {
        self.verify_with(d, token, nonce, now, TokenKind::Id)
    }

    /// Signature, algorithm, `iss` and `exp` (with leeway) by the library; `nonce` by `nonce`.
    fn verify_with(
        &self,
        d: &Discovered,
        token: &CoreIdToken,
        nonce: impl openidconnect::NonceVerifier,
        now: u64,
        kind: TokenKind,
    ) -> Result<(), ClaimsVerificationError> {
        let issuer = IssuerUrl::new(d.issuer.clone())
            .map_err(|e| ClaimsVerificationError::Other(format!("issuer: {e}")))?;
        // exp is checked against `now - leeway`; the library has no leeway setting of its own.
        let shifted = now.saturating_sub(LEEWAY_SECS) as i64;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.cfg.client_id.clone()),
            issuer,
            d.jwks.clone(),
        )
        .set_allowed_algs(d.allowed_algs.clone())
        .require_issuer_match(self.cfg.validate_issuer)
        // The audience is checked by `check_claims`, which also knows ValidAudience.
        .require_audience_match(false)
        .set_time_fn(move || chrono::DateTime::from_timestamp(shifted, 0).unwrap_or_default());
        // Access tokens (RFC 9068) carry `typ: at+jwt`; ID tokens `JWT` or none.
        let verifier = match kind {
            TokenKind::Id => verifier,
            TokenKind::Access => verifier.allow_all_jose_types(),
        };
        token.claims(&verifier, nonce).map(|_| ())
    }
}

/// Inputs of the code exchange.
pub struct Exchange<'a> {
    /// The authorization code.
    pub code: &'a str,
    /// The same redirect URI as in the authorization request.
    pub redirect_uri: &'a str,
    /// PKCE verifier of this flow.
    pub pkce_verifier: Option<&'a str>,
    /// Nonce of this flow.
    pub nonce: &'a str,
    /// RFC 8707 resource indicators (sent again at the token endpoint, §2.2).
    pub resources: &'a [String],
}

/// What a failed token request (code exchange or refresh) means for the user.
fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(r) => Error::ExchangeRefused(r.error().to_string()),
        // An oversized answer is the IdP's answer: the login fails (like garbage, below).
        RequestTokenError::Request(e)
            if matches!(
                (&e as &dyn std::error::Error).downcast_ref::<CappedError>(),
                Some(CappedError::TooLarge)
            ) =>
        {
            Error::InvalidIdToken(format!("token response: {e}"))
        }
        RequestTokenError::Request(e) => Error::IdpUnavailable(format!("token endpoint: {e}")),
        // The IdP answered, but not with a token response we can read (a malformed ID token,
        // garbage, a redirect): the login fails; it is not an outage.
        RequestTokenError::Parse(e, _) => Error::InvalidIdToken(format!("token response: {e}")),
        other => Error::IdpUnavailable(format!("token endpoint: {other}")),
    }
}

/// The JSON payload of a compact JWS (only called after its signature was verified).
fn payload(jwt: &str) -> Option<Map<String, Value>> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The checks of OIDC Core §3.1.3.7 that the library leaves to us: audience (with
/// ValidAudience), `azp`, `iat` and `nbf` with leeway, and a non-empty `sub`.
fn check_claims(
    c: &Map<String, Value>,
    cfg: &ProviderConfig,
    now: u64,
    kind: TokenKind,
) -> Result<(), String> {
    let sub = c.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err("missing sub".into());
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if cfg.validate_audience {
        let ok = match kind {
            // An ID token is always issued to us (§3.1.3.7 step 3); ValidAudience may name the
            // client id differently for IdPs that use another identifier.
            TokenKind::Id => {
                auds.contains(&cfg.client_id.as_str())
                    || cfg
                        .valid_audience
                        .as_deref()
                        .is_some_and(|v| auds.contains(&v))
            }
            // A bearer token must be meant for this API: ValidAudience, else our client id.
            TokenKind::Access => {
                auds.contains(&cfg.valid_audience.as_deref().unwrap_or(&cfg.client_id))
            }
        };
        if !ok {
            return Err("audience is not ours".into());
        }
    }
    if kind == TokenKind::Id {
        match c.get("azp").and_then(Value::as_str) {
            // §3.1.3.7 step 5: if azp is present, it must be our client id.
            Some(azp) if azp != cfg.client_id => return Err("azp names another client".into()),
            None if auds.len() > 1 => return Err("several audiences and no azp".into()),
            _ => {}
        }
    }
    let exp = c.get("exp").and_then(Value::as_u64).ok_or("missing exp")?;
    if exp + LEEWAY_SECS <= now {
        return Err("expired".into());
    }
    let iat = c.get("iat").and_then(Value::as_u64);
    match (kind, iat) {
        (_, Some(iat)) if iat > now + LEEWAY_SECS => return Err("issued in the future".into()),
        (TokenKind::Id, None) => return Err("missing iat".into()),
        _ => {}
    }
    if let Some(nbf) = c.get("nbf") {
        let nbf = nbf.as_u64().ok_or("nbf is not a number")?;
        if nbf > now + LEEWAY_SECS {
            return Err("not yet valid".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_decodes_only_objects() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert!(payload(&format!("h.{}.s", enc("{\"sub\":\"x\"}"))).is_some());
        assert!(payload(&format!("h.{}.s", enc("[1]"))).is_none());
        assert!(payload("nodots").is_none());
    }
}
