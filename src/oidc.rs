//! Talking to the OpenID Provider: discovery, JWKS, the authorization URL, the code exchange,
//! ID token verification and the RP-initiated logout URL.
//!
//! Discovery and keys load in the background with retry and backoff; until they are loaded the
//! middleware is not ready and logins answer 503, while existing sessions (which need nothing
//! from the IdP) keep working. The HTTP client never follows redirects: a redirect from a
//! discovered endpoint could otherwise point our client secret at another host (SSRF).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use openidconnect::core::{
    CoreClient, CoreClientAuthMethod, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::url::Url;
use openidconnect::{
    AsyncHttpClient, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl,
    JsonWebKeySetUrl, Nonce, OAuth2TokenResponse, PkceCodeVerifier, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, RequestTokenError, SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::ProviderConfig;
use crate::error::Error;

/// How far the clocks of the IdP and the sidecar may disagree (OIDC Core §3.1.3.7 leaves the
/// amount to the client; 60 s is the common choice).
pub const LEEWAY_SECS: u64 = 60;
/// An unknown `kid` refetches the JWKS at most this often, so forged tokens cannot make us
/// hammer the IdP.
const JWKS_REFETCH_SECS: u64 = 60;
/// How often discovery and keys are refreshed once loaded.
const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Everything learned from discovery.
#[derive(Clone)]
pub struct Discovered {
    /// The issuer identifier the ID token's `iss` must equal.
    pub issuer: String,
    /// The issuer the discovery document names (RFC 9207's `iss` parameter compares with it).
    pub discovered_issuer: String,
    /// Where logins go.
    pub authorization_endpoint: Url,
    /// RP-initiated logout endpoint, when the IdP has one.
    pub end_session_endpoint: Option<Url>,
    /// Whether discovery advertises PKCE S256.
    pub pkce_s256: bool,
    /// RFC 7662 introspection endpoint, when the IdP has one.
    pub introspection_endpoint: Option<Url>,
    /// OIDC Core §5.3 UserInfo endpoint, when the IdP has one.
    pub userinfo_endpoint: Option<Url>,
    jwks_uri: JsonWebKeySetUrl,
    jwks: CoreJsonWebKeySet,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    client: Client,
}

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

/// One middleware's view of its IdP.
pub struct Provider {
    cfg: ProviderConfig,
    http: reqwest::Client,
    current: RwLock<Option<Arc<Discovered>>>,
    last_jwks_refetch: Mutex<u64>,
    /// Active introspection results by SHA-256 of the token, with the time they stop counting.
    introspected: Mutex<HashMap<[u8; 32], Introspected>>,
}

/// An active introspection result and the time it stops being trusted.
type Introspected = (u64, Map<String, Value>);

/// Most introspection results kept; beyond it, expired entries go, then everything.
const INTROSPECTION_CACHE_MAX: usize = 10_000;
/// Longest an introspection result is trusted without asking again.
const INTROSPECTION_CACHE_SECS: u64 = 60;

/// Which token a claim set came from: the checks differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An ID token from our own login.
    Id,
    /// A bearer access token presented by an API client.
    Access,
}

impl Provider {
    /// Builds the HTTP client (TLS settings from the config); does no network I/O.
    pub fn new(cfg: ProviderConfig) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("traefik-oidc-sidecar/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(cfg.insecure_skip_verify);
        if let Some(path) = &cfg.ca_bundle_file {
            let pem = std::fs::read(path).map_err(|e| format!("CABundleFile: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("CABundleFile: {e}"))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(inline) = &cfg.ca_bundle {
            for c in reqwest::Certificate::from_pem_bundle(&decode_ca_bundle(inline)?)
                .map_err(|e| format!("CABundle: {e}"))?
            {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Provider {
            cfg,
            http,
            current: RwLock::new(None),
            last_jwks_refetch: Mutex::new(0),
            introspected: Mutex::new(HashMap::new()),
        })
    }

    /// The loaded discovery, if any.
    pub fn current(&self) -> Option<Arc<Discovered>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    fn store(&self, d: Discovered) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(Arc::new(d));
        }
    }

    /// Loads discovery with backoff until it succeeds, then refreshes it periodically (keeping
    /// the old document when a refresh fails).
    pub async fn run(self: Arc<Self>, middleware: String) {
        let mut delay = Duration::from_millis(250);
        loop {
            match self.discover().await {
                Ok(()) => {
                    tracing::info!(middleware, issuer = %self.cfg.url, "discovery and signing keys loaded");
                    break;
                }
                Err(e) => {
                    tracing::warn!(middleware, issuer = %self.cfg.url, error = %e, retry_in = ?delay, "discovery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
        loop {
            tokio::time::sleep(REFRESH_EVERY).await;
            if let Err(e) = self.discover().await {
                tracing::warn!(middleware, error = %e, "discovery refresh failed; keeping the previous document");
            }
        }
    }

    /// Fetches the discovery document and the JWKS once.
    pub async fn discover(&self) -> Result<(), String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.url.trim_end_matches('/')
        );
        let (_, body) = fetch(self.http.get(&url), "discovery").await?;
        let raw: Value =
            serde_json::from_slice(&body).map_err(|e| format!("discovery document: {e}"))?;
        let metadata: ProviderMetadataWithLogout =
            serde_json::from_value(raw.clone()).map_err(|e| format!("discovery document: {e}"))?;
        let discovered_issuer = metadata.issuer().as_str().to_string();
        // OIDC Discovery §4.3: the issuer must be the URL we asked. ValidIssuer overrides it for
        // IdPs whose documents disagree with themselves (multi-tenant endpoints).
        let issuer = match &self.cfg.valid_issuer {
            Some(v) => v.clone(),
            None => {
                if discovered_issuer.trim_end_matches('/') != self.cfg.url.trim_end_matches('/') {
                    return Err(format!(
                        "discovery names issuer {discovered_issuer} but Provider.Url is {}; set Provider.ValidIssuer if this is expected",
                        self.cfg.url
                    ));
                }
                discovered_issuer.clone()
            }
        };
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = self.fetch_jwks(&jwks_uri).await?;
        let pkce_s256 = raw
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|m| m == "S256"));
        let userinfo_endpoint = metadata.userinfo_endpoint().map(|u| u.url().clone());
        let introspection_endpoint = raw
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok());
        let end_session_endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        // Only asymmetric algorithms: accepting HS* would let anyone holding the client secret
        // (or, with a confused library, the public key) mint tokens.
        let allowed_algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                        | CoreJwsSigningAlgorithm::None
                )
            })
            .cloned()
            .collect();
        if allowed_algs.is_empty() {
            return Err("the IdP advertises no asymmetric ID token signing algorithm".into());
        }
        let basic_ok = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|m| m.contains(&CoreClientAuthMethod::ClientSecretBasic));
        let authorization_endpoint = metadata.authorization_endpoint().url().clone();
        let mut client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        );
        if !basic_ok {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        self.store(Discovered {
            issuer,
            discovered_issuer,
            authorization_endpoint,
            end_session_endpoint,
            pkce_s256,
            introspection_endpoint,
            userinfo_endpoint,
            jwks_uri,
            jwks,
            allowed_algs,
            client,
        });
        Ok(())
    }

    async fn fetch_jwks(&self, uri: &JsonWebKeySetUrl) -> Result<CoreJsonWebKeySet, String> {
        CoreJsonWebKeySet::fetch_async(uri, &Capped(self.http.clone()))
            .await
            .map_err(|e| format!("JWKS {}: {e}", uri.as_str()))
    }

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
        let mut req = self
            .http
            .post(endpoint)
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        // RFC 6749 §2.3.1: client credentials form-urlencoded inside HTTP Basic.
        let enc = |s: &str| {
            openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        };
        req = req.basic_auth(
            enc(&self.cfg.client_id),
            self.cfg.client_secret.as_ref().map(|s| enc(s.expose())),
        );
        let (_, body) = fetch(req, "introspection")
            .await
            .map_err(Error::IdpUnavailable)?;
        let claims: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| Error::IdpUnavailable(format!("introspection response: {e}")))?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(Error::InvalidBearer("inactive token".into()));
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

    /// Merges the UserInfo response (OIDC Core §5.3) into `claims`. The response is discarded
    /// when its `sub` differs from the token's (§5.3.2); the claims that make a token what it is
    /// (`iss`, `aud`, `exp`, `iat`, `nbf`, `jti`, `azp`) are never taken from it. Signed
    /// (`application/jwt`) responses are not supported and are ignored with a warning.
    pub async fn merge_userinfo(
        &self,
        d: &Discovered,
        access_token: &str,
        claims: &mut Map<String, Value>,
    ) -> Result<(), Error> {
        let Some(url) = d.userinfo_endpoint.clone() else {
            tracing::warn!("UseClaimsFromUserInfo is set but the IdP has no userinfo_endpoint");
            return Ok(());
        };
        let req = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("Accept", "application/json");
        let (content_type, body) = fetch(req, "userinfo")
            .await
            .map_err(Error::IdpUnavailable)?;
        let jwt = content_type.starts_with("application/jwt");
        if jwt {
            tracing::warn!("signed UserInfo responses are not supported; UserInfo claims ignored");
            return Ok(());
        }
        let info: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| Error::IdpUnavailable(format!("userinfo response: {e}")))?;
        if info.get("sub") != claims.get("sub") {
            tracing::warn!("UserInfo names another subject; its claims are ignored");
            return Ok(());
        }
        const PROTECTED: [&str; 7] = ["iss", "aud", "exp", "iat", "nbf", "jti", "azp"];
        for (k, v) in info {
            if !PROTECTED.contains(&k.as_str()) {
                claims.insert(k, v);
            }
        }
        Ok(())
    }

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
                // An explicit prompt (Challenge, LoginUri?prompt=) wins over the configured one.
                if !(k == "prompt" && p.prompt.is_some()) {
                    q.append_pair(k, v);
                }
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
        for r in x.resources {
            req = req.add_extra_param("resource", r.clone());
        }
        let tokens = req
            .request_async(&Capped(self.http.clone()))
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
        for r in resources {
            req = req.add_extra_param("resource", r.clone());
        }
        let tokens = req
            .request_async(&Capped(self.http.clone()))
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

    async fn refetch_jwks(&self, d: &Arc<Discovered>, now: u64) -> Result<Arc<Discovered>, Error> {
        {
            let mut last = self
                .last_jwks_refetch
                .lock()
                .map_err(|_| Error::Internal("jwks lock poisoned".into()))?;
            if *last + JWKS_REFETCH_SECS > now {
                return Err(Error::InvalidIdToken(
                    "unknown signing key (JWKS refetched recently)".into(),
                ));
            }
            *last = now;
        }
        let jwks = self
            .fetch_jwks(&d.jwks_uri)
            .await
            .map_err(Error::IdpUnavailable)?;
        let mut fresh = (**d).clone();
        fresh.jwks = jwks;
        self.store(fresh.clone());
        Ok(Arc::new(fresh))
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

/// Largest IdP answer we read (discovery, introspection, UserInfo): a hostile or broken IdP
/// must not make the sidecar buffer without bound.
const MAX_IDP_BODY: usize = 1024 * 1024;

/// The IdP client as openidconnect calls it (token endpoint, JWKS): the same reqwest client
/// (no redirects, timeouts), but every answer is read through the [`MAX_IDP_BODY`] cap. The
/// crate's own reqwest adapter reads a body whole, however large.
/// (A clone of the client: a reference-counted handle to the same connection pool.)
struct Capped(reqwest::Client);

/// Why a capped IdP request failed (the message names no body content).
#[derive(Debug, thiserror::Error)]
pub enum CappedError {
    /// The IdP answered with more than [`MAX_IDP_BODY`] bytes: an answer, not an outage.
    #[error("answer larger than {MAX_IDP_BODY} bytes")]
    TooLarge,
    /// The request could not be made or the answer not read.
    #[error("{0}")]
    Transport(String),
}

impl<'c> AsyncHttpClient<'c> for Capped {
    type Error = CappedError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, CappedError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let client = &self.0;
        Box::pin(async move {
            let req = reqwest::Request::try_from(request)
                .map_err(|e| CappedError::Transport(e.to_string()))?;
            let mut resp = client
                .execute(req)
                .await
                .map_err(|e| CappedError::Transport(e.to_string()))?;
            let mut b = http::Response::builder().status(resp.status());
            for (n, v) in resp.headers() {
                b = b.header(n, v);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| CappedError::Transport(e.to_string()))?
            {
                if body.len() + chunk.len() > MAX_IDP_BODY {
                    return Err(CappedError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            b.body(body)
                .map_err(|e| CappedError::Transport(e.to_string()))
        })
    }
}

/// Sends `req`, requires a 2xx, and reads the body up to [`MAX_IDP_BODY`]. Returns the
/// content type and the body; errors name `what` and never include the body.
async fn fetch(req: reqwest::RequestBuilder, what: &str) -> Result<(String, Vec<u8>), String> {
    let mut resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{what} answered {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{what}: {e}"))? {
        if body.len() + chunk.len() > MAX_IDP_BODY {
            return Err(format!("{what}: answer larger than {MAX_IDP_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((content_type, body))
}

/// The PEM bytes of an inline `CABundle`: PEM text, or `base64:` followed by base64 of it.
pub fn decode_ca_bundle(s: &str) -> Result<Vec<u8>, String> {
    let pem = match s.strip_prefix("base64:") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| format!("base64: {e}"))?,
        None => s.as_bytes().to_vec(),
    };
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err("expected PEM certificates".into());
    }
    Ok(pem)
}

/// RFC 7636 §4.2: BASE64URL(SHA256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
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
    fn pkce_rfc7636_appendix_b_vector() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn payload_decodes_only_objects() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        assert!(payload(&format!("h.{}.s", enc("{\"sub\":\"x\"}"))).is_some());
        assert!(payload(&format!("h.{}.s", enc("[1]"))).is_none());
        assert!(payload("nodots").is_none());
    }
}
