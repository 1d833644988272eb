//! The provider's settings: what a middleware's `Provider` block means to the IdP client.
//!
//! The OIDC module owns these types; `config` parses the YAML into them (and re-exports them), so
//! the dependency runs one way only: config → oidc.

use openidconnect::ClientSecret;

use super::client_auth::ClientKey;

/// How bearer tokens (`AuthorizationHeader` / `AuthorizationCookie`) are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenValidation {
    /// As a JWT (signature, iss, aud, exp) — the default, same as `AccessToken`.
    IdToken,
    /// As a JWT access token.
    AccessToken,
    /// By RFC 7662 introspection (opaque tokens too).
    Introspection,
}

/// The `Provider` block.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Where discovery is fetched (`Url + /.well-known/openid-configuration`). Usually the
    /// issuer; may be an internal address of it (the internal-URL layout, see `discovery`).
    pub url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (confidential clients). Its `Debug` is redacted.
    pub client_secret: Option<ClientSecret>,
    /// private_key_jwt (RFC 7523 §2.2): the key that signs client assertions. When set, the
    /// client secret is never sent.
    pub client_key: Option<ClientKey>,
    /// Force PKCE S256 even when discovery does not advertise it.
    pub use_pkce: bool,
    /// Check the ID token's `iss`.
    pub validate_issuer: bool,
    /// Expected `iss` (default: the discovered issuer).
    pub valid_issuer: Option<String>,
    /// Check the ID token's `aud`.
    pub validate_audience: bool,
    /// Expected audience (default: the client id).
    pub valid_audience: Option<String>,
    /// Skip TLS certificate checks toward the IdP (testing only).
    pub insecure_skip_verify: bool,
    /// Extra CA certificates (PEM text) trusted for the IdP: the content of `CABundleFile`,
    /// read when the configuration was parsed (capped, regular files only; the transport
    /// opens no file).
    pub ca_bundle_file: Option<String>,
    /// Extra CA certificates inline: PEM text, or `base64:` + base64 of PEM.
    pub ca_bundle: Option<String>,
    /// Fraction of the token lifetime after which a session with a refresh token is refreshed.
    pub token_renewal_threshold: f64,
    /// How bearer tokens are validated.
    pub token_validation: TokenValidation,
    /// Merge the UserInfo endpoint's claims into the session at login and refresh.
    pub use_claims_from_userinfo: bool,
}
