//! OpenID Connect Discovery 1.0: the provider's metadata and signing keys, which issuer later
//! checks compare with, and the rate-limited JWKS refetch for rotated keys.
//!
//! ## The internal-URL layout
//! Discovery §4.3 requires the `issuer` in the document to equal the URL it was fetched from.
//! A common deployment breaks that on purpose: the sidecar reaches the IdP at an internal
//! address (`http://keycloak:8080/realms/x`) while the IdP names its public address
//! (`https://sso.example.com/realms/x`, Keycloak's `KC_HOSTNAME`) as issuer. traefik-oidc-auth
//! logs in with such a setup, so we accept it too: when `ValidIssuer` is not set, the
//! discovered issuer becomes the issuer every later check uses (the ID token's `iss`, RFC 9207's
//! `iss` callback parameter, the `iss` of JWT access tokens and of introspection answers), and
//! one warning names both URLs. What still protects us: the document comes from the configured
//! URL over the configured TLS trust (redirects are never followed), the signing keys come from
//! the `jwks_uri` that document names, and every token must carry exactly the issuer the
//! document names — so a token from any other issuer is still refused. `ValidIssuer` pins the
//! value instead, whatever the document says.

use std::sync::Arc;

use openidconnect::core::{
    CoreClient, CoreClientAuthMethod, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::url::Url;
use openidconnect::{
    AuthType, ClientId, EndpointMaybeSet, EndpointNotSet, EndpointSet, JsonWebKeySetUrl,
    ProviderMetadataWithLogout,
};
use serde_json::Value;

use super::transport::{Capped, fetch};
use super::{JWKS_REFETCH_SECS, Provider};
use crate::error::Error;
use crate::telemetry::{self, IdpEndpoint};

pub(super) type Client = CoreClient<
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
    /// The issuer identifier tokens' `iss` must equal: `ValidIssuer`, else the discovered one.
    pub issuer: String,
    /// The issuer the discovery document names (RFC 9207's `iss` parameter compares with it).
    pub discovered_issuer: String,
    /// Where logins go.
    pub authorization_endpoint: Url,
    /// The token endpoint (also the `aud` of our client assertions).
    pub token_endpoint: Option<Url>,
    /// RP-initiated logout endpoint, when the IdP has one.
    pub end_session_endpoint: Option<Url>,
    /// Whether discovery advertises PKCE S256.
    pub pkce_s256: bool,
    /// RFC 7662 introspection endpoint, when the IdP has one.
    pub introspection_endpoint: Option<Url>,
    /// OIDC Core §5.3 UserInfo endpoint, when the IdP has one.
    pub userinfo_endpoint: Option<Url>,
    pub(super) jwks_uri: JsonWebKeySetUrl,
    pub(super) jwks: CoreJsonWebKeySet,
    pub(super) allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    pub(super) client: Client,
}

/// How the discovered issuer relates to the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IssuerLayout {
    /// The document names `Provider.Url` (Discovery §4.3), or `ValidIssuer` and it agree.
    Matches,
    /// `ValidIssuer` is set and the document names another issuer: tokens must carry
    /// `ValidIssuer` (multi-tenant documents name a template such as `{tenantid}`).
    Pinned,
    /// The internal-URL layout: `Provider.Url` is another address of the IdP; the discovered
    /// issuer is used.
    InternalUrl,
}

/// The issuer tokens must carry, and how it was chosen. Trailing slashes do not make two
/// configured URLs differ; the returned issuer is used exactly as given (tokens must match it
/// byte for byte, OIDC Core §3.1.3.7 step 2).
pub(super) fn expected_issuer(
    url: &str,
    valid_issuer: Option<&str>,
    discovered: &str,
) -> (String, IssuerLayout) {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    match valid_issuer {
        Some(pinned) if pinned == discovered => (pinned.to_string(), IssuerLayout::Matches),
        Some(pinned) => (pinned.to_string(), IssuerLayout::Pinned),
        None if same(discovered, url) => (discovered.to_string(), IssuerLayout::Matches),
        None => (discovered.to_string(), IssuerLayout::InternalUrl),
    }
}

impl Provider {
    /// Fetches the discovery document and the JWKS once and stores them.
    pub async fn discover(&self) -> Result<(), String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.url.trim_end_matches('/')
        );
        let (_, body) = telemetry::idp(
            IdpEndpoint::Discovery,
            fetch(self.http.get(&url), "discovery"),
        )
        .await?;
        let raw: Value =
            serde_json::from_slice(&body).map_err(|e| format!("discovery document: {e}"))?;
        let metadata: ProviderMetadataWithLogout =
            serde_json::from_value(raw.clone()).map_err(|e| format!("discovery document: {e}"))?;
        let discovered_issuer = metadata.issuer().as_str().to_string();
        let previous = self.current();
        let (issuer, layout) = expected_issuer(
            &self.cfg.url,
            self.cfg.valid_issuer.as_deref(),
            &discovered_issuer,
        );
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
        let token_endpoint = metadata.token_endpoint().map(|u| u.url().clone());
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
        // With a client key the secret is never sent (RFC 6749 §2.3: one authentication method
        // per request); the library then puts only `client_id` in the body, and the assertion
        // is added per request.
        let secret = match &self.cfg.client_key {
            Some(_) => None,
            None => self.cfg.client_secret.clone(),
        };
        let mut client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.cfg.client_id.clone()),
            secret,
        );
        if !basic_ok || self.cfg.client_key.is_some() {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        // Warn once per change of the discovered issuer, not on every periodic refresh of the
        // same document, and only for a load that succeeds (a failed attempt is retried with
        // backoff and must not repeat the warning).
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.discovered_issuer != discovered_issuer);
        match layout {
            IssuerLayout::InternalUrl if changed => tracing::warn!(
                provider_url = %self.cfg.url,
                issuer = %discovered_issuer,
                "discovery at {} names the issuer {discovered_issuer}; tokens and callbacks must \
                 name {discovered_issuer} (internal-URL layout; set Provider.ValidIssuer to pin \
                 it). The endpoints the document lists must be reachable from the sidecar",
                self.cfg.url
            ),
            IssuerLayout::Pinned if changed => tracing::warn!(
                provider_url = %self.cfg.url,
                issuer = %discovered_issuer,
                valid_issuer = %issuer,
                "discovery names the issuer {discovered_issuer}; tokens must name \
                 Provider.ValidIssuer {issuer}"
            ),
            _ => {}
        }
        if previous.is_none() {
            self.check_client_auth_support(&raw);
        }
        self.store(Discovered {
            issuer,
            discovered_issuer,
            authorization_endpoint,
            token_endpoint,
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

    /// Warns when discovery says the IdP will refuse our client assertions (the login would
    /// fail later with a less helpful message). Absent lists say nothing.
    fn check_client_auth_support(&self, raw: &Value) {
        let Some(key) = &self.cfg.client_key else {
            return;
        };
        let lists = |name: &str, want: &str| {
            raw.get(name)
                .and_then(Value::as_array)
                .is_none_or(|a| a.iter().any(|v| v == want))
        };
        if !lists("token_endpoint_auth_methods_supported", "private_key_jwt") {
            tracing::warn!(
                "ClientJwtPrivateKey is set but discovery does not list private_key_jwt in token_endpoint_auth_methods_supported"
            );
        }
        if !lists(
            "token_endpoint_auth_signing_alg_values_supported",
            key.alg(),
        ) {
            tracing::warn!(
                alg = key.alg(),
                "discovery does not list the client key's algorithm in token_endpoint_auth_signing_alg_values_supported"
            );
        }
    }

    pub(super) async fn fetch_jwks(
        &self,
        uri: &JsonWebKeySetUrl,
    ) -> Result<CoreJsonWebKeySet, String> {
        let client = Capped(self.http.clone());
        telemetry::idp(
            IdpEndpoint::Jwks,
            CoreJsonWebKeySet::fetch_async(uri, &client),
        )
        .await
        .map_err(|e| format!("JWKS {}: {e}", uri.as_str()))
    }

    /// Refetches the JWKS for a token signed with an unknown key (rotation), at most once per
    /// [`JWKS_REFETCH_SECS`] so forged tokens cannot make us hammer the IdP.
    pub(super) async fn refetch_jwks(
        &self,
        d: &Arc<Discovered>,
        now: u64,
    ) -> Result<Arc<Discovered>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discovered_issuer_is_used_when_it_differs_from_the_url_and_nothing_is_pinned() {
        let public = "https://sso.example.com/realms/x";
        assert_eq!(
            expected_issuer("http://keycloak:8080/realms/x", None, public),
            (public.to_string(), IssuerLayout::InternalUrl)
        );
        // A trailing slash in the configuration is not another layout; the token must still
        // carry the issuer exactly as discovered.
        assert_eq!(
            expected_issuer("https://sso.example.com/realms/x/", None, public),
            (public.to_string(), IssuerLayout::Matches)
        );
    }

    #[test]
    fn valid_issuer_pins_the_value_whatever_discovery_says() {
        let pinned = "https://login.example.com/tenant-1/v2.0";
        assert_eq!(
            expected_issuer(
                "https://login.example.com/tenant-1/v2.0",
                Some(pinned),
                "https://login.example.com/{tenantid}/v2.0"
            ),
            (pinned.to_string(), IssuerLayout::Pinned)
        );
        assert_eq!(
            expected_issuer("http://internal", Some(pinned), pinned),
            (pinned.to_string(), IssuerLayout::Matches)
        );
    }
}
