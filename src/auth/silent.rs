//! Silent login (`SilentLogin: true`, only with `UnauthenticatedBehavior: Forward`): a browser
//! navigation without a session tries the IdP once with `prompt=none` (OIDC Core §3.1.2.1), so a
//! visitor the IdP already knows comes back identified without seeing a page, and everyone else
//! lands back on the page anonymously.
//!
//! - Only a top-level `GET` navigation tries (never XHR/fetch, `HEAD` or any other method), and
//!   only without the scope's marker (see [`crate::session::silent`]): a failed attempt sets it,
//!   so the next navigations are forwarded without a round trip until it lapses.
//! - The attempt is a login like any other (its own flow cookie and `state`), marked silent.
//! - At the callback of a silent flow, every IdP error (`login_required`,
//!   `interaction_required`, `consent_required`, `account_selection_required` of OIDC Core
//!   §3.1.2.6, and any other such as `access_denied` or `server_error`) and every failure after
//!   it (code redemption, ID token validation, session store) lands the visitor back on the page
//!   without identity, with the marker set: fail closed, never an error page, never a loop.
//! - A callback whose `state` has no silent flow in this browser is an ordinary callback (its
//!   errors are pages, as before): the sidecar cannot know that it was silent.
//! - When the attempt cannot start (discovery not loaded yet), the request is forwarded
//!   anonymously: an IdP outage must not take an anonymous page down.

use super::Middleware;
use super::callback::Start;
use crate::error::Error;
use crate::forwarded::Forwarded;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::reply::Reply;
use crate::session::RequestCookies;

/// The errors by which an IdP says that it cannot log the visitor in without showing a page
/// (OIDC Core §3.1.2.6): the expected answers of a silent attempt, logged quietly.
const NO_SESSION_ERRORS: &[&str] = &[
    "login_required",
    "interaction_required",
    "consent_required",
    "account_selection_required",
];

impl Middleware {
    /// The redirect of a silent attempt for this request without a session, or `None` when it
    /// is not to be tried (off, not a `GET` navigation, the marker holds, or it cannot start).
    /// Costs nothing with `SilentLogin` off: one flag, read only for anonymous requests.
    pub(super) fn try_silent(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        nav: bool,
        now: u64,
    ) -> Option<Reply> {
        if !self.cfg.silent_login || !nav || fwd.method != "GET" {
            return None;
        }
        let codec = self.scope.codec();
        if codec.silent_marker_holds(cookies, now) {
            return None;
        }
        let how = Start {
            prompt: Some("none"),
            challenge: false,
            silent: true,
        };
        // Back to the page itself, whatever `PostLoginRedirectUri` says: the visitor asked for
        // this page, not for a login.
        match self.start_login(fwd, cookies, now, how, fwd.url()) {
            Ok(mut r) => {
                r.set_cookies(self.scope.clear_present(cookies));
                Some(r)
            }
            Err(e) => {
                decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "silent login cannot start; forwarded without identity");
                None
            }
        }
    }

    /// An `error` at the callback: when its `state` names a silent flow of this browser, the
    /// landing (see [`Middleware::silent_landing`]); `None` for any other flow.
    pub(super) fn silent_error(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        q: &super::Query,
        error: &str,
        now: u64,
    ) -> Result<Option<(Reply, Outcome)>, Error> {
        let Some(state) = q.get("state") else {
            return Ok(None);
        };
        let Ok((flow, clear_flow)) = self.scope.codec().take_flow(cookies, state, now) else {
            return Ok(None);
        };
        if !flow.silent {
            return Ok(None);
        }
        if NO_SESSION_ERRORS.contains(&error) {
            decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, error = %super::truncate(error, 100), "silent login: the IdP has no session for this visitor");
            return self.land(fwd, &flow.return_to, clear_flow, now).map(Some);
        }
        let e = Error::IdpError {
            error: super::truncate(error, 100),
            description: q.get("error_description").map(|d| super::truncate(d, 300)),
        };
        self.silent_landing(fwd, &flow.return_to, clear_flow, now, &e)
            .map(Some)
    }

    /// A silent flow that did not end in a session: logged, then [`Middleware::land`].
    pub(super) fn silent_landing(
        &self,
        fwd: &Forwarded<'_>,
        return_to: &str,
        clear_flow: String,
        now: u64,
        e: &Error,
    ) -> Result<(Reply, Outcome), Error> {
        decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "silent login failed; the visitor stays anonymous");
        self.land(fwd, return_to, clear_flow, now)
    }

    /// Back to the page the attempt started from, anonymously, with the flow cookie expired and
    /// the marker set (so the next navigations do not try again).
    fn land(
        &self,
        fwd: &Forwarded<'_>,
        return_to: &str,
        clear_flow: String,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let marker = self.scope.codec().silent_marker(now)?;
        let mut r = Reply::redirect(self.return_target(return_to, fwd));
        r.set_cookies(vec![clear_flow, marker]);
        Ok((r, Outcome::Forwarded))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, HeaderValue};

    use crate::config::{Env, parse};
    use crate::forwarded::{Cidr, parse as forwarded};
    use crate::{App, SystemClock};

    fn app(extra: &str) -> App {
        let text = format!(
            "middlewares:\n  site:\n    Provider:\n      Url: https://idp.example\n      ClientId: app\n    Secret: 0123456789abcdef0123456789abcdef\n{extra}"
        );
        let env = Env {
            var: &|_| None,
            file: &|_| Err(std::io::Error::other("no files here")),
            within: &crate::files::read_within,
        };
        App::new(&parse(&text, &env).unwrap().config, Arc::new(SystemClock)).unwrap()
    }

    fn request(method: &'static str, mode: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-method", method),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", "/page"),
            ("sec-fetch-mode", mode),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test]
    async fn an_attempt_that_cannot_start_forwards_anonymously() {
        // Discovery never ran: a login cannot start. The anonymous page stays up (200), where an
        // ordinary login would answer 503.
        let a = app("    UnauthenticatedBehavior: Forward\n    SilentLogin: true\n");
        let m = a.middleware("site").unwrap();
        let trusted = [Cidr::parse("127.0.0.0/8").unwrap()];
        let h = request("GET", "navigate");
        let fwd = forwarded([127, 0, 0, 1].into(), &trusted, &h).unwrap();
        let r = m.handle(&fwd, &h, 1_000).await;
        assert_eq!(r.status, 200);
        assert!(r.get("set-cookie").is_none());
        let plain = app("    UnauthenticatedBehavior: Challenge\n");
        let r = plain
            .middleware("site")
            .unwrap()
            .handle(&fwd, &h, 1_000)
            .await;
        assert_eq!(
            r.status, 503,
            "the contrast: an ordinary login needs discovery"
        );
    }
}
