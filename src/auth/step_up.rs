//! Step-up on the request path: a middleware with `StepUp` judges the login behind a session
//! (or a bearer token) against what it requires, and sends a browser back to the IdP for more.
//!
//! The rules (see [`crate::session::step_up`] for the judgement itself):
//! - a browser navigation whose session falls short goes to the IdP with `acr_values` and
//!   `max_age` (OIDC Core §3.1.2.1), plus `prompt=login` when the session's `auth_time` is known
//!   to be older than `MaxAge`: an IdP with a fresh SSO session could otherwise answer at once
//!   with the same old login (OIDC Core leaves honouring `max_age` to the IdP; `prompt=login`
//!   obliges it to re-authenticate);
//! - a session whose login came back from this middleware's step-up without what it asked is
//!   answered 403, never sent around again (the flow marks it, as `Challenge` does);
//! - anything else (XHR, fetch, non-GET) gets 401 with an RFC 9470 §3
//!   `insufficient_user_authentication` challenge naming the `acr_values` / `max_age`;
//! - a middleware without `StepUp` never reaches this file.

use super::Middleware;
use crate::error::Error;
use crate::forwarded::Forwarded;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::reply::Reply;
use crate::session::step_up::{StepUp, StepUpFlow, Unmet};
use crate::session::{RequestCookies, Session};

impl Middleware {
    /// The answer to a session that satisfies this middleware's assertions but not its
    /// `StepUp` (`unmet` says why).
    pub(super) fn step_up(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        nav: bool,
        now: u64,
        s: &Session,
        (step, unmet): (&StepUp, Unmet),
    ) -> Result<(Reply, Outcome), Error> {
        if s.step_up_failed.contains(&self.cfg.name) {
            decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = %s.sub, acr = ?s.acr, auth_time = ?s.auth_time, "the login came back from step-up without what it asked for");
            return Err(Error::Forbidden);
        }
        if !nav {
            return Err(Error::StepUpRequired(step.challenge()));
        }
        // Too old by the session's own auth_time: only a new authentication helps. Unknown
        // auth_time (a login that did not ask max_age): the IdP judges max_age itself, and
        // must then send auth_time, which the callback and this middleware check.
        let prompt = (unmet == Unmet::Age && s.auth_time.is_some()).then_some("login");
        decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, sub = %s.sub, reason = ?unmet, "step-up: redirect to login");
        let r = self.login(fwd, cookies, now, prompt, false, self.return_url(fwd))?;
        Ok((r, Outcome::LoginRedirect))
    }

    /// The step-up every login this middleware starts carries: its `StepUp`, asked at once,
    /// so a browser without a session logs in at the level it needs in one trip.
    pub(super) fn step_up_flow(&self) -> Option<StepUpFlow> {
        self.cfg.step_up.as_ref().map(|ask| StepUpFlow {
            middleware: self.cfg.name.clone(),
            ask: ask.clone(),
        })
    }
}
