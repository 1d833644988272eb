//! What one middleware is configured to do: [`MiddlewareConfig`] and the two behaviours. The
//! auth module owns these types; `config` parses the file into them.

use crate::authz::ClaimAssertion;
use crate::oidc::ProviderConfig;
use crate::pages::ErrorPage;
use crate::rules::Rule;
use crate::session::{Secret, SessionCookieConfig};
use crate::template::HeaderRule;

/// What to do when a request has no valid session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthenticatedBehavior {
    /// Redirect browser navigations to the IdP; answer everything else 401.
    Auto,
    /// Always redirect to the IdP.
    Challenge,
    /// Always answer 401.
    Unauthorized,
    /// Let the request through without identity.
    Forward,
}

/// What to do when a session exists but the claim assertions fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnauthorizedBehavior {
    /// Answer 403.
    Unauthorized,
    /// Redirect navigations to the IdP once per session, then 403. No `prompt` is added (as in
    /// traefik-oidc-auth): an IdP with an SSO session answers at once; a configured
    /// `AuthorizationParams.prompt` is sent as on every login.
    Challenge,
    /// Let the request through; only headers with `IncludeWhen: Forward` or `Always` are sent.
    Forward,
}

/// One middleware block.
#[derive(Debug, Clone)]
pub struct MiddlewareConfig {
    /// The map key naming this middleware.
    pub name: String,
    /// The `Provider` block.
    pub provider: ProviderConfig,
    /// Key material for the cookies.
    pub secret: Secret,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Callback path (or absolute URL).
    pub callback_uri: String,
    /// Logout path.
    pub logout_uri: String,
    /// `BackchannelLogoutUri`: where the IdP POSTs logout tokens (OpenID Connect Back-Channel
    /// Logout 1.0), a path or an absolute URL matched like `CallbackUri`. forwardAuth carries no
    /// body, so this path is routed to the sidecar's `/backchannel-logout/{middleware}` (or the
    /// plugin shim forwards it there).
    pub backchannel_logout_uri: String,
    /// Default target after logout.
    pub post_logout_redirect_uri: String,
    /// Absolute targets allowed as logout `redirect_uri`.
    pub valid_post_logout_redirect_uris: Vec<String>,
    /// Prefix of every cookie this middleware's session scope sets (default
    /// `TraefikOidcSidecar`: middlewares of one scope share their cookies).
    pub cookie_name_prefix: String,
    /// Session cookie attributes.
    pub session_cookie: SessionCookieConfig,
    /// No-session behaviour.
    pub unauthenticated_behavior: UnauthenticatedBehavior,
    /// Failed-assertion behaviour.
    pub unauthorized_behavior: UnauthorizedBehavior,
    /// `Authorization.AssertClaims`.
    pub assert_claims: Vec<ClaimAssertion>,
    /// `Headers`; empty means the default identity headers.
    pub headers: Vec<HeaderRule>,
    /// `BypassAuthenticationRule`: requests it matches need no session.
    pub bypass: Option<Rule>,
    /// Path that starts a login explicitly.
    pub login_uri: Option<String>,
    /// Fixed target after every login (default: the URL that triggered it).
    pub post_login_redirect_uri: Option<String>,
    /// Absolute targets allowed as `LoginUri?redirect_uri=` (exact match).
    pub valid_post_login_redirect_uris: Vec<String>,
    /// Extra authorization request parameters (`acr_values`, `login_hint`…).
    pub authorization_params: Vec<(String, String)>,
    /// RFC 8707 `resource` values for the authorization and token requests.
    pub requested_resources: Vec<String>,
    /// Evaluate `AssertClaims` on every request instead of once at login.
    pub check_on_every_request: bool,
    /// `AuthorizationHeader.Name`: a header carrying a bearer token.
    pub bearer_header: Option<String>,
    /// `AuthorizationCookie.Name`: a cookie carrying a bearer token.
    pub bearer_cookie: Option<String>,
    /// `ErrorPages.Unauthenticated`: the 401 page for browsers.
    pub page_unauthenticated: Option<ErrorPage>,
    /// `ErrorPages.Unauthorized`: the 403 page for browsers.
    pub page_unauthorized: Option<ErrorPage>,
    /// `LogLevel`: this middleware's own verbosity for its decision lines (see
    /// [`crate::logging`]); `None` follows the global `logLevel`.
    pub log_level: Option<tracing::Level>,
    /// `SessionStorageType`: sealed cookies or Redis (see [`crate::session::store`]).
    pub session_storage: crate::session::store::SessionStorage,
    /// `SilentLogin`: a navigation without a session tries the IdP once with `prompt=none`
    /// (only with `UnauthenticatedBehavior: Forward`; see `auth::silent`).
    pub silent_login: bool,
    /// `PreviousSecrets`: secrets that open sessions sealed before a rotation, never seal
    /// (see [`crate::session::rotation`]).
    pub previous_secrets: Vec<Secret>,
    /// `StepUp`: the login this middleware requires beyond the scope's (`acr`, `auth_time`);
    /// `None` costs nothing on the hot path (see [`crate::session::step_up`]).
    pub step_up: Option<crate::session::step_up::StepUp>,
}
