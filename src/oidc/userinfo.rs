//! The UserInfo endpoint (OIDC Core §5.3): claims merged into the session when
//! `UseClaimsFromUserInfo` is set.

use serde_json::{Map, Value};

use super::transport::fetch;
use super::{Discovered, Provider};
use crate::error::Error;
use crate::telemetry::{self, IdpEndpoint};

impl Provider {
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
        let (content_type, body) = telemetry::idp(IdpEndpoint::Userinfo, fetch(req, "userinfo"))
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
}
