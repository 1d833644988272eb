//! API clients: a bearer token (`AuthorizationHeader` / `AuthorizationCookie`) decides alone,
//! valid or 401, never a session and never a redirect.

use http::HeaderMap;

use super::{Middleware, UnauthorizedBehavior};
use crate::authz;
use crate::error::Error;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::oidc::TokenValidation;
use crate::reply::Reply;
use crate::session::RequestCookies;
use crate::session::step_up::login_facts;
use crate::template::{Data, Pass};

impl Middleware {
    /// The bearer token of an API client, from `AuthorizationHeader` (a `Bearer ` prefix is
    /// stripped; other schemes are not bearer tokens) or `AuthorizationCookie`.
    pub(super) fn bearer_token<'h>(
        &self,
        headers: &'h HeaderMap,
        cookies: &RequestCookies<'h>,
    ) -> Option<&'h str> {
        if let Some(name) = &self.cfg.bearer_header
            && let Some(v) = headers.get(name.as_str()).and_then(|v| v.to_str().ok())
        {
            let v = v.trim();
            let token = if name.eq_ignore_ascii_case("authorization") {
                v.get(..7)
                    .filter(|p| p.eq_ignore_ascii_case("bearer "))
                    .and_then(|_| v.get(7..))
            } else {
                Some(v)
            };
            if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
                return Some(t);
            }
        }
        let name = self.cfg.bearer_cookie.as_deref()?;
        cookies.get(name).filter(|t| !t.is_empty())
    }

    /// Validates a bearer token (JWT or introspection, per `TokenValidation`) and checks the
    /// assertions on its claims, on every request.
    pub(super) async fn bearer(
        &self,
        token: &str,
        cookies: &RequestCookies<'_>,
        public: bool,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let claims = match self.cfg.provider.token_validation {
            TokenValidation::Introspection => self.provider.introspect(token, now).await,
            TokenValidation::IdToken | TokenValidation::AccessToken => {
                self.provider.verify_access_token(token, now).await
            }
        };
        // For an API client, `.accessToken` is the token it presented.
        let data = |c| Data {
            claims: c,
            access_token: Some(token),
            id_token: None,
            refresh_token: None,
        };
        if public {
            let claims = claims.ok();
            return Ok((
                self.pass(cookies, claims.as_ref().map(data), Pass::Public)?,
                Outcome::Bypassed,
            ));
        }
        let claims = claims?;
        if let Some(step) = &self.cfg.step_up {
            // RFC 9470 §3: a token from a login short of StepUp gets the challenge naming it.
            let (acr, auth_time) = login_facts(&claims);
            if step.check(acr.as_deref(), auth_time, now).is_err() {
                return Err(Error::StepUpRequired(step.challenge()));
            }
        }
        if authz::authorized(&self.cfg.assert_claims, &claims) {
            decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, bearer = true, "allowed");
            return Ok((
                self.pass(cookies, Some(data(&claims)), Pass::Authorized)?,
                Outcome::Allowed,
            ));
        }
        match self.cfg.unauthorized_behavior {
            UnauthorizedBehavior::Forward => Ok((
                self.pass(cookies, Some(data(&claims)), Pass::Forward)?,
                Outcome::Forwarded,
            )),
            _ => Err(Error::Forbidden),
        }
    }
}
