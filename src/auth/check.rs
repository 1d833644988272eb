//! The hot path: open the scope's session, refresh it when due, and decide for this middleware.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Middleware, UnauthenticatedBehavior, UnauthorizedBehavior, session_data};
use crate::authz;
use crate::error::Error;
use crate::forwarded::Forwarded;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::reply::Reply;
use crate::session::idle;
use crate::session::step_up::login_facts;
use crate::session::store::SESSION_ENDED;
use crate::session::{RequestCookies, Session, Verdict};
use crate::template::Pass;

impl Middleware {
    /// The hot path: one cookie decryption (Redis mode: a ticket check and, for a session not
    /// remembered, one GET), no IdP I/O unless the session is due for a refresh.
    pub(super) async fn check(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        nav: bool,
        public: bool,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let mut set_cookies = Vec::new();
        let opened = match self.scope.load(cookies).await {
            Ok(s) => s,
            // A public path (bypass rule) does not need the session store: it passes without
            // identity while Redis is away. Everything else fails closed (503).
            Err(e) if public => {
                decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "session store unavailable; public path passes without identity");
                None
            }
            Err(e) => return Err(e),
        };
        let idle = self.scope.idle_timeout();
        let opened = match opened {
            // Idle too long (`SessionCookie.IdleTimeout`): ended before anything else looks at
            // it, so it is never refreshed nor stamped again and stays ended.
            Some(s) if idle.is_some_and(|t| idle::is_idle(&s, t, now)) => {
                decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, sub = %s.sub, "session idle too long");
                None
            }
            o => o,
        };
        let mut refreshed = false;
        let session = match opened {
            Some(s) if self.due_for_refresh(&s, now) => {
                // Boxed: a refresh's future is large (see `Middleware::handle`).
                match Box::pin(self.refresh(&s, cookies, now)).await {
                    Ok(new) => {
                        set_cookies = self.scope.after_refresh(&new, cookies, now)?;
                        refreshed = true;
                        Some(Arc::new(new))
                    }
                    // The session ended while its refresh token was redeemed (Redis mode: a
                    // logout deleted the record; cookie mode: a back-channel logout marked it).
                    // The refreshed tokens are dropped and the request has no session: never
                    // the old identity, never a new cookie.
                    Err(e) if e == SESSION_ENDED => None,
                    Err(e) => {
                        decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, error = %e, "session refresh failed");
                        // Until it expires, the old session stays good: an IdP outage must not log
                        // everyone out. Past expiry, the unauthenticated behaviour applies.
                        (s.exp > now).then_some(s)
                    }
                }
            }
            Some(s) if s.exp > now => Some(s),
            _ => None,
        };
        // Activity: the stamp moves at most once per interval; a refresh just made needs none
        // (its `iat` is now). Without an idle timeout this is one match on `None`.
        let stamp = match (idle, &session) {
            (Some(t), Some(s)) if !refreshed && idle::stamp_due(s, t, now) => Some(s.clone()),
            _ => None,
        };
        // A session a previous secret opened (`PreviousSecrets`) moves under the current one on
        // this answer; a refresh already wrote it anew in cookie mode, and so does a cookie-mode
        // activity stamp (below), so the browser never gets two values for one cookie. One
        // boolean when the scope rotates nothing.
        if self.scope.rotating()
            && set_cookies.is_empty()
            && !(stamp.is_some() && self.scope.redis().is_none())
            && let Some(s) = &session
        {
            match self.scope.reseal(s, cookies, now).await {
                Ok(set) => set_cookies = set,
                // The old value still opens: the next request tries again.
                Err(e) => {
                    decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "session not moved under the current Secret");
                }
            }
        }
        let (mut reply, outcome) = self.decide(fwd, cookies, nav, public, now, session)?;
        if let Some(s) = stamp {
            match Box::pin(self.scope.touch(&s, cookies, now)).await {
                Ok(set) => set_cookies.extend(set),
                // As for the load: a public path passes without the store, the rest fails closed.
                Err(e) if public => {
                    decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "session store unavailable; activity not recorded");
                }
                Err(e) => return Err(e),
            }
        }
        // The refreshed session travels as Set-Cookie on the answer (2xx included: the plugin
        // passes it on, forwardAuth does with addAuthCookiesToResponse).
        reply.set_cookies(set_cookies);
        Ok((reply, outcome))
    }

    pub(super) fn due_for_refresh(&self, s: &Session, now: u64) -> bool {
        if s.refresh_token.is_none() {
            return false;
        }
        let lifetime = s.exp.saturating_sub(s.iat) as f64;
        let elapsed = now.saturating_sub(s.iat) as f64;
        now >= s.exp || elapsed > lifetime * self.cfg.provider.token_renewal_threshold
    }

    /// Refreshes `old`, sharing the work with concurrent requests of the same session, through
    /// any middleware of the scope and, in Redis mode, any replica (a rotating refresh token is
    /// redeemed once; see `Scope::refresh`).
    async fn refresh(
        &self,
        old: &Session,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Session, String> {
        let Some(rt) = old.refresh_token.clone() else {
            return Err("no refresh token".into());
        };
        let redeem = self.refresh_once(old.clone(), rt, now);
        self.scope.refresh(cookies, old, now, redeem).await
    }

    async fn refresh_once(&self, old: Session, rt: String, now: u64) -> Result<Session, String> {
        let d = self.provider.current().ok_or("discovery not loaded")?;
        let r = self
            .provider
            .refresh(d, &rt, &old.sub, &self.cfg.requested_resources, now)
            .await
            .map_err(|e| e.to_string())?;
        let lifetime = old.exp.saturating_sub(old.iat).max(1);
        // A refreshed ID token without acr / auth_time keeps the login's: a refresh is no new
        // authentication (OIDC Core §12.2: auth_time stays that of the original one).
        let (acr, auth_time) = r.claims.as_ref().map(login_facts).unwrap_or_default();
        let acr = acr.or(old.acr);
        let auth_time = auth_time.or(old.auth_time);
        let mut claims = match r.claims {
            Some(c) => c,
            None => old.claims,
        };
        if self.cfg.provider.use_claims_from_userinfo
            && let Some(d) = self.provider.current()
        {
            self.provider
                .merge_userinfo(&d, &r.access_token, &mut claims)
                .await
                .map_err(|e| e.to_string())?;
        }
        let keep = self.scope.keep();
        let claims = keep.claims(claims);
        // Every login-time verdict is made again: a group removed at the IdP takes effect now,
        // for every middleware of the scope.
        let verdicts = self.scope.verdicts(&claims);
        decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, sub = %old.sub, authorized = self.verdict_on(&claims, &verdicts), "session refreshed");
        Ok(Session {
            sub: old.sub,
            sid: old.sid,
            claims,
            iat: now,
            exp: r.expires_at.unwrap_or(now + lifetime),
            // Without an `.idToken` template the hint cookie keeps the login's ID token: an OP
            // accepts an expired ID token as `id_token_hint` (RP-Initiated Logout 1.0 §2).
            id_token: if keep.id_token {
                r.id_token.or(old.id_token)
            } else {
                None
            },
            refresh_token: r.refresh_token.or(Some(rt)),
            access_token: keep.access_token.then_some(r.access_token),
            verdicts,
            challenged: old.challenged,
            rendered: Default::default(),
            sealed_by_previous: false,
            acr,
            auth_time,
            step_up_failed: old.step_up_failed,
            active: old.active,
        })
    }

    pub(super) fn decide(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        nav: bool,
        public: bool,
        now: u64,
        session: Option<Arc<Session>>,
    ) -> Result<(Reply, Outcome), Error> {
        if public {
            decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, path = %fwd.path, "bypass rule matched");
            return Ok((
                self.pass(cookies, session.as_deref().map(session_data), Pass::Public)?,
                Outcome::Bypassed,
            ));
        }
        match session {
            Some(s) if self.authorized(&s) => {
                // Off (no StepUp): one `None` test, nothing else on the hot path.
                if let Some(step) = &self.cfg.step_up
                    && let Err(unmet) = step.check(s.acr.as_deref(), s.auth_time, now)
                {
                    return self.step_up(fwd, cookies, nav, now, &s, (step, unmet));
                }
                decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, sub = %s.sub, path = %fwd.path, "allowed");
                Ok((self.pass_session(cookies, &s)?, Outcome::Allowed))
            }
            Some(s) => match self.cfg.unauthorized_behavior {
                // Challenge once: a session that already came back from a challenge and still
                // fails gets 403, never another redirect (no loop). No prompt is added, as in
                // traefik-oidc-auth: with an SSO session the IdP answers at once (OIDC Core
                // §3.1.2.1 leaves prompt optional); `AuthorizationParams.prompt` still applies.
                UnauthorizedBehavior::Challenge
                    if nav && !s.challenged.contains(&self.cfg.name) =>
                {
                    self.login(fwd, cookies, now, None, true, self.return_url(fwd))
                        .map(|r| (r, Outcome::LoginRedirect))
                }
                UnauthorizedBehavior::Forward => Ok((
                    self.pass(cookies, Some(session_data(&s)), Pass::Forward)?,
                    Outcome::Forwarded,
                )),
                _ => Err(Error::Forbidden),
            },
            None => {
                let redirect = match self.cfg.unauthenticated_behavior {
                    UnauthenticatedBehavior::Auto => nav,
                    UnauthenticatedBehavior::Challenge => true,
                    UnauthenticatedBehavior::Unauthorized => false,
                    UnauthenticatedBehavior::Forward => {
                        if let Some(r) = self.try_silent(fwd, cookies, nav, now) {
                            return Ok((r, Outcome::LoginRedirect));
                        }
                        return Ok((self.pass(cookies, None, Pass::Forward)?, Outcome::Forwarded));
                    }
                };
                if !redirect {
                    return Err(Error::Unauthenticated);
                }
                let mut r = self.login(fwd, cookies, now, None, false, self.return_url(fwd))?;
                r.set_cookies(self.scope.clear_present(cookies));
                Ok((r, Outcome::LoginRedirect))
            }
        }
    }

    /// Whether this middleware admits the session. With `CheckOnEveryRequest` the assertions
    /// run on the session's claims now; otherwise the verdict this middleware's assertions gave
    /// when the session was made (login or refresh, see `Scope::verdicts`). A session made
    /// before this middleware judged at login time (it was added to the scope later, or its
    /// `CheckOnEveryRequest` changed) has no verdict for it: the assertions run now, never
    /// another middleware's verdict. Likewise a verdict reached under other rules (a reload
    /// changed `AssertClaims`) or written before verdicts carried their rules: the current
    /// assertions run on the claims the session kept (`keep_of` keeps what assertions read);
    /// a claim the old session did not keep is absent, so the assertion fails (fail closed).
    pub(super) fn authorized(&self, s: &Session) -> bool {
        self.verdict_on(&s.claims, &s.verdicts)
    }

    /// [`Middleware::authorized`] on claims and login-time verdicts.
    pub(super) fn verdict_on(
        &self,
        claims: &Map<String, Value>,
        verdicts: &BTreeMap<String, Verdict>,
    ) -> bool {
        if self.cfg.check_on_every_request {
            return authz::authorized(&self.cfg.assert_claims, claims);
        }
        match verdicts
            .get(&self.cfg.name)
            .and_then(|v| v.under(&self.rules))
        {
            Some(held) => held,
            None => authz::authorized(&self.cfg.assert_claims, claims),
        }
    }
}
