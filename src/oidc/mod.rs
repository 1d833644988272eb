//! Talking to the OpenID Provider. [`Provider`] is one middleware's view of its IdP; its parts:
//! - `settings`: the `Provider` block as the IdP client reads it ([`ProviderConfig`]);
//! - `discovery`: the metadata, the signing keys and which issuer tokens must carry (including
//!   the internal-URL layout);
//! - `front_channel`: the authorization and RP-initiated logout URLs the browser follows;
//! - `backchannel`: Back-Channel Logout 1.0 logout tokens and their `jti` replay memory;
//! - `tokens`: the code exchange, the refresh, ID token and JWT access token verification;
//! - `client_auth`: how the sidecar authenticates to the IdP (secret or private_key_jwt);
//! - `introspection`, `userinfo`: RFC 7662 and OIDC Core §5.3;
//! - `transport`: the capped, redirect-free HTTP client.
//!
//! Discovery and keys load in the background with retry and backoff; until they are loaded the
//! middleware is not ready and logins answer 503, while existing sessions (which need nothing
//! from the IdP) keep working.

mod backchannel;
mod client_auth;
mod discovery;
mod front_channel;
mod introspection;
mod settings;
mod tokens;
mod transport;
mod userinfo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tracing::Instrument as _;

pub use backchannel::{
    BACKCHANNEL_EVENT, BoxFuture, JtiMemory, JtiStore, LogoutToken, MAX_JTI_CLIENTS,
    MAX_LOGOUT_TOKEN_AGE, MAX_LOGOUT_TOKEN_LEN, MAX_REMEMBERED_JTIS, MemoryJtiStore, jti_key,
};
pub use client_auth::{ASSERTION_LIFETIME_SECS, ASSERTION_TYPE, ClientKey};
pub use discovery::Discovered;
pub use front_channel::{AuthorizeParams, pkce_challenge};
pub use settings::{ProviderConfig, TokenValidation};
pub use tokens::{Exchange, Refreshed, Verified};
pub use transport::{CappedError, MAX_IDP_BODY, decode_ca_bundle};

/// How far the clocks of the IdP and the sidecar may disagree (OIDC Core §3.1.3.7 leaves the
/// amount to the client; 60 s is the common choice).
pub const LEEWAY_SECS: u64 = 60;
/// An unknown `kid` refetches the JWKS at most this often, so forged tokens cannot make us
/// hammer the IdP.
const JWKS_REFETCH_SECS: u64 = 60;
/// How often discovery and keys are refreshed once loaded.
const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);

/// One middleware's view of its IdP.
pub struct Provider {
    cfg: ProviderConfig,
    http: reqwest::Client,
    current: RwLock<Option<Arc<Discovered>>>,
    last_jwks_refetch: Mutex<u64>,
    introspected: introspection::Cache,
}

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
        let http = transport::client(&cfg)?;
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
        // Every line discovery logs (the issuer warning too) names the middleware.
        let span = tracing::info_span!("provider", middleware = %middleware);
        let mut delay = Duration::from_millis(250);
        loop {
            match self.discover().instrument(span.clone()).await {
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
            if let Err(e) = self.discover().instrument(span.clone()).await {
                tracing::warn!(middleware, error = %e, "discovery refresh failed; keeping the previous document");
            }
        }
    }
}
