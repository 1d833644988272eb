//! The decision for one forwardAuth request: check, login redirect, callback or logout.
//!
//! Everything here is transport-neutral: it takes the rebuilt [`Forwarded`] request, the
//! client's headers and the current time, and returns a [`Reply`]. The HTTP layer only
//! extracts and maps. Every path that is not an authorized check ends in a non-2xx.
//!
//! A [`Middleware`] judges requests with its own assertions, headers, bypass rule and
//! behaviours; the session it judges belongs to its [`Scope`], shared with every middleware
//! configured with the same Secret, provider, client and cookie names. Parts:
//! - `check`: the hot path (session, refresh, the decision);
//! - `callback`: starting a login and finishing it (decided at the callback);
//! - `bearer`: API clients with a token; `logout`: RP-initiated logout;
//! - `backchannel`: Back-Channel Logout 1.0 (the IdP ends sessions);
//! - `step_up`: `StepUp`, a middleware asking more of the login than its scope did.
//!
//! Decision lines go through [`crate::logging::decision!`], so a middleware's own `LogLevel`
//! applies to them.

use std::sync::Arc;

use http::HeaderMap;
use openidconnect::url::{Url, form_urlencoded};

use crate::error::Error;
use crate::forwarded::{Forwarded, is_navigation};
use crate::logging::decision;
use crate::metrics::{Counters, Outcome};
use crate::oidc::Provider;
use crate::pages::{ErrorPage, PageData, default_page};
use crate::redirect;
use crate::reply::{Body, Reply};
use crate::session::verdict::{RulesPrint, rules_print};
use crate::session::{Judge, Keep, RequestCookies, Scope, ScopeKey, Session};
use crate::telemetry;
use crate::template::{self, DEFAULT_CLAIMS, Data, Pass, TokenField};

pub use backchannel::MAX_BACKCHANNEL_BODY;
pub use settings::{MiddlewareConfig, UnauthenticatedBehavior, UnauthorizedBehavior};

mod backchannel;
mod bearer;
mod callback;
mod check;
mod logout;
mod settings;
mod silent;
mod step_up;

/// One configured middleware, ready to answer requests.
pub struct Middleware {
    /// Its configuration.
    pub cfg: MiddlewareConfig,
    /// Its IdP.
    pub provider: Arc<Provider>,
    /// Its decision counters.
    pub counters: Arc<Counters>,
    /// The session scope it shares with the middlewares configured like it.
    scope: Arc<Scope>,
    /// This instance's key in the sessions' header memos (see [`crate::session::memo`]).
    memo_key: u64,
    /// The fingerprint of its `AssertClaims`: a remembered verdict counts only when it was
    /// reached under these rules (see [`crate::session::verdict`]).
    rules: RulesPrint,
}

impl std::fmt::Debug for Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Middleware")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

/// The session scope key of a middleware (see [`crate::session::scope`]).
pub fn scope_key(cfg: &MiddlewareConfig) -> ScopeKey {
    ScopeKey::new(
        &cfg.secret,
        &cfg.provider.url,
        &cfg.provider.client_id,
        &cfg.cookie_name_prefix,
        cfg.session_cookie.domain.as_deref(),
        &cfg.session_cookie.path,
    )
    .with_storage(cfg.session_storage)
    .with_previous(cfg.previous_secrets.iter().cloned())
}

/// The key of a scope of `members` (which share one [`scope_key`]): it opens under every
/// previous secret any of them lists (see [`crate::session::rotation`]), in member order.
pub fn members_key(members: &[&MiddlewareConfig]) -> Option<ScopeKey> {
    let first = members.first()?;
    Some(
        scope_key(first).with_previous(
            members
                .iter()
                .flat_map(|m| m.previous_secrets.iter().cloned()),
        ),
    )
}

/// What a middleware reads from a session: `sub`, the claims its headers print (the default
/// identity claims without `Headers`), the root claims its assertions read, and the tokens its
/// templates print.
pub fn keep_of(cfg: &MiddlewareConfig) -> Keep {
    let mut claims: std::collections::BTreeSet<String> = ["sub".to_string()].into();
    if cfg.headers.is_empty() {
        claims.extend(DEFAULT_CLAIMS.iter().map(|s| s.to_string()));
    }
    for h in &cfg.headers {
        claims.extend(h.template.claims_used().map(str::to_string));
    }
    for a in &cfg.assert_claims {
        // A wildcard at the root reads everything.
        claims.insert(a.root_claim().unwrap_or("*").to_string());
    }
    let uses = |t| cfg.headers.iter().any(|h| h.template.uses_token(t));
    Keep {
        claims,
        access_token: uses(TokenField::Access),
        id_token: uses(TokenField::Id),
    }
}

/// The scope of `members`, which must share one [`scope_key`]: one cookie codec and cache for
/// all, sessions that keep what any of them reads, and a login-time judge for each that checks
/// assertions only at login. Cookie attributes other than `Domain`/`Path` come from the first.
pub fn scope_of(members: &[&MiddlewareConfig]) -> Option<Scope> {
    let first = members.first()?;
    let mut keep = Keep::default();
    for m in members {
        keep.merge(&keep_of(m));
    }
    let judges = members
        .iter()
        .filter(|m| !m.check_on_every_request && !m.assert_claims.is_empty())
        .map(|m| Judge::new(&m.name, &m.assert_claims))
        .collect();
    let scope = Scope::new(
        &members_key(members)?,
        first.session_cookie.clone(),
        members.iter().map(|m| m.logout_uri.clone()).collect(),
        keep,
        judges,
        members.iter().map(|m| m.name.clone()).collect(),
    );
    scope.idle_policy().reset(idle_timeouts(members));
    Some(scope)
}

/// Each member's `SessionCookie.IdleTimeout` (the scope applies the shortest, see
/// [`crate::session::idle`]).
pub fn idle_timeouts<'a>(
    members: &'a [&MiddlewareConfig],
) -> impl Iterator<Item = (&'a str, Option<u64>)> {
    members
        .iter()
        .map(|m| (m.name.as_str(), m.session_cookie.idle_timeout))
}

/// The warning when members of one scope set different `SessionCookie.IdleTimeout`s (absent
/// counts as a value): the shortest applies to every one of them.
pub fn idle_disagreement(members: &[&MiddlewareConfig]) -> Option<String> {
    let first = members.first()?.session_cookie.idle_timeout;
    if members
        .iter()
        .all(|m| m.session_cookie.idle_timeout == first)
    {
        return None;
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let shortest = idle_timeouts(members).filter_map(|(_, t)| t).min()?;
    Some(format!(
        "middlewares [{}] share one session but set different SessionCookie.IdleTimeout: the shortest, {shortest}s, applies to all of them",
        names.join(", ")
    ))
}

impl Middleware {
    /// Builds the middleware in `scope` (no network I/O; discovery runs separately).
    /// `SessionStorageType: Redis` in a scope without a Redis store (the sidecar has no `redis:`
    /// block, e.g. for an inline block) is refused: never silently a cookie session.
    pub fn new(cfg: MiddlewareConfig, scope: Arc<Scope>) -> Result<Self, String> {
        if cfg.session_storage == crate::session::store::SessionStorage::Redis
            && scope.redis().is_none()
        {
            return Err(
                "SessionStorageType Redis needs the sidecar's top-level redis: block".into(),
            );
        }
        let provider = Arc::new(Provider::new(cfg.provider.clone())?);
        Ok(Middleware {
            rules: rules_print(&cfg.assert_claims),
            cfg,
            provider,
            counters: Arc::new(Counters::default()),
            scope,
            memo_key: crate::session::memo::next_key(),
        })
    }

    /// The session scope this middleware belongs to.
    pub fn scope(&self) -> &Arc<Scope> {
        &self.scope
    }

    /// Answers one forwardAuth request, and records how long the decision took (by outcome)
    /// and, when tracing is on, its span (the trace `headers` carry continues).
    ///
    /// The latency is measured with a monotonic clock and never feeds a decision: `now` stays
    /// the only time the decision sees.
    pub async fn handle(&self, fwd: &Forwarded<'_>, headers: &HeaderMap, now: u64) -> Reply {
        let start = std::time::Instant::now();
        let (reply, outcome) = match telemetry::trace::tracer() {
            None => self.judge_request(fwd, headers, now).await,
            Some(t) => {
                let decided = self.judge_request(fwd, headers, now);
                telemetry::trace::decision(t, &self.cfg.name, headers, decided).await
            }
        };
        self.counters.observe(outcome, start.elapsed());
        reply
    }

    /// The decision itself: the reply and the outcome it was counted as.
    async fn judge_request(
        &self,
        fwd: &Forwarded<'_>,
        headers: &HeaderMap,
        now: u64,
    ) -> (Reply, Outcome) {
        let cookie_headers = headers.get_all(http::header::COOKIE);
        let cookies = RequestCookies::parse(cookie_headers.iter().filter_map(|v| v.to_str().ok()));
        let nav = is_navigation(&fwd.method, headers);
        // The paths that talk to the IdP or the store (callback, logout, bearer, refresh) are
        // boxed: their futures hold HTTP-client state tens of kilobytes large, and unboxed they
        // made every request's future that large, copied several times per request on its way
        // through hyper and axum (a third of a valid-session check in the profile).
        let result = if self.is_callback(fwd) {
            Box::pin(self.callback(fwd, &cookies, now)).await
        } else if fwd.path == self.cfg.logout_uri {
            Box::pin(self.logout(fwd, &cookies, now)).await
        } else if matches_uri(&self.cfg.backchannel_logout_uri, fwd) {
            // forwardAuth carries no body: the token cannot be read here (see `backchannel`).
            Err(Error::BackchannelNeedsBody)
        } else if self.cfg.login_uri.as_deref() == Some(fwd.path) {
            self.explicit_login(fwd, &cookies, now)
        } else {
            // The callback and logout paths above win over the bypass rule, so a rule like
            // `PathPrefix(`/`)` can never swallow them.
            let public = self
                .cfg
                .bypass
                .as_ref()
                .is_some_and(|r| r.matches(fwd, headers));
            match self.bearer_token(headers, &cookies) {
                // A bearer token decides alone: valid or 401, never a session, never a redirect.
                Some(token) => Box::pin(self.bearer(token, &cookies, public, now)).await,
                None => self.check(fwd, &cookies, nav, public, now).await,
            }
        };
        let (reply, outcome) = match result {
            Ok((reply, outcome)) => {
                self.counters.count(outcome);
                (reply, outcome)
            }
            Err(e) => {
                let outcome = Outcome::from_error(&e);
                self.counters.count(outcome);
                match &e {
                    Error::Unauthenticated | Error::Forbidden => {
                        decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, decision = %e, "denied")
                    }
                    _ => {
                        decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, error = %e, "request refused")
                    }
                }
                let mut r = match &e {
                    Error::Unauthenticated | Error::Forbidden if nav => self.error_page(&e, fwd),
                    _ => {
                        e.to_reply(nav || self.is_callback(fwd) || fwd.path == self.cfg.logout_uri)
                    }
                };
                if matches!(e, Error::Unauthenticated) {
                    // A present but invalid or expired session is cleared so the browser stops
                    // sending it.
                    r.set_cookies(self.scope.clear_present(&cookies));
                }
                (r, outcome)
            }
        };
        let mut reply = reply;
        if reply.status != 200 {
            // Redirects and errors carry per-user state; no cache may keep them.
            reply.header("Cache-Control", "no-store");
        }
        (reply, outcome)
    }

    fn is_callback(&self, fwd: &Forwarded<'_>) -> bool {
        matches_uri(&self.cfg.callback_uri, fwd)
    }

    /// The 401/403 page for a browser: `ErrorPages` (a page or a redirect) or the built-in one,
    /// with buttons to log in (when `LoginUri` is set) or out.
    fn error_page(&self, e: &Error, fwd: &Forwarded<'_>) -> Reply {
        let origin = fwd.origin();
        let login = self.cfg.login_uri.as_deref();
        let (status, name, configured) = match e {
            Error::Unauthenticated => (401, "Unauthenticated", &self.cfg.page_unauthenticated),
            _ => (403, "Access denied", &self.cfg.page_unauthorized),
        };
        let data = if status == 401 {
            PageData {
                status,
                name: name.into(),
                description: e.detail(),
                primary: login.map(|l| ("Log in".to_string(), format!("{origin}{l}"))),
                secondary: None,
            }
        } else {
            PageData {
                status,
                name: name.into(),
                description: e.detail(),
                primary: Some((
                    "Log out".to_string(),
                    format!("{origin}{}", self.cfg.logout_uri),
                )),
                secondary: login.map(|l| {
                    (
                        "Log in with a different account".to_string(),
                        format!("{origin}{l}?prompt=login"),
                    )
                }),
            }
        };
        match configured {
            Some(ErrorPage::RedirectTo(u)) => Reply::redirect(absolute_url(u, fwd)),
            Some(ErrorPage::Html(t)) => page_reply(status, t.render(&data)),
            None => page_reply(status, default_page(&data)),
        }
    }

    /// Where a login started by this request returns: `PostLoginRedirectUri` if set, else the
    /// request's own URL.
    fn return_url(&self, fwd: &Forwarded<'_>) -> String {
        match &self.cfg.post_login_redirect_uri {
            Some(u) => absolute_url(u, fwd),
            None => fwd.url(),
        }
    }

    /// A redirect target the client asked for: a same-host path or an exact entry of `allowed`
    /// (anything else is a 400, never followed), made absolute.
    fn client_target(
        &self,
        target: &str,
        allowed: &[String],
        fwd: &Forwarded<'_>,
    ) -> Result<String, Error> {
        let t = redirect::validate(target, allowed).map_err(|r| {
            decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, reason = r.0, "redirect target refused");
            Error::BadRedirect
        })?;
        Ok(absolute_url(&t, fwd))
    }

    /// A 200: identity headers allowed for `pass` (none without a session) and the request's
    /// cookies minus ours. A header template that fails to render fails the request (500),
    /// never a 2xx without it.
    fn pass(
        &self,
        cookies: &RequestCookies<'_>,
        data: Option<Data<'_>>,
        pass: Pass,
    ) -> Result<Reply, Error> {
        let mut r = Reply::new(200, Body::Empty);
        if let Some(data) = data {
            let headers = template::identity_headers(&self.cfg.headers, &data, pass)
                .map_err(|e| Error::Internal(e.to_string()))?;
            for (n, v) in headers {
                r.header(n, v);
            }
        }
        let others = self.scope.codec().foreign_cookies(cookies);
        if !others.is_empty() {
            r.header("Cookie", others);
        }
        Ok(r)
    }

    /// [`Middleware::pass`] for a session whose assertions hold: the identity headers come
    /// from the session's memo, rendered and validated once per session value and middleware
    /// (the hot path of every allowed request).
    fn pass_session(&self, cookies: &RequestCookies<'_>, s: &Session) -> Result<Reply, Error> {
        let identity = s.rendered.get_or_render(self.memo_key, || {
            let headers =
                template::identity_headers(&self.cfg.headers, &session_data(s), Pass::Authorized)
                    .map_err(|e| Error::Internal(e.to_string()))?;
            headers
                .into_iter()
                .map(|(n, v)| {
                    let name = http::HeaderName::from_bytes(n.as_bytes());
                    let value = http::HeaderValue::try_from(v);
                    match (name, value) {
                        (Ok(n), Ok(v)) => Ok((n, v)),
                        // Checked when the configuration is read; a 500, never a 2xx without it.
                        _ => Err(Error::Internal(format!(
                            "identity header {n} cannot be sent"
                        ))),
                    }
                })
                .collect::<Result<crate::session::memo::Prepared, Error>>()
        })?;
        let mut r = Reply::new(200, Body::Empty);
        if !identity.is_empty() {
            r.identity = Some(identity);
        }
        let others = self.scope.codec().foreign_cookies(cookies);
        if !others.is_empty() {
            r.header("Cookie", others);
        }
        Ok(r)
    }
}

/// Whether the request is for a configured path (`CallbackUri`, `BackchannelLogoutUri`): the
/// exact path, or for an absolute URL exactly its scheme, host and path.
fn matches_uri(configured: &str, fwd: &Forwarded<'_>) -> bool {
    if configured.starts_with('/') {
        return fwd.path == configured;
    }
    Url::parse(configured).is_ok_and(|u| {
        u.path() == fwd.path && u.scheme() == fwd.proto.as_str() && authority(&u) == fwd.host
    })
}

fn page_reply(status: u16, html: String) -> Reply {
    let mut r = Reply::new(status, Body::Html(html));
    if status == 401 {
        // RFC 9110 §11.6.1, as in Error::to_reply.
        r.header("WWW-Authenticate", "Cookie realm=\"traefik-oidc-sidecar\"");
    }
    r
}

/// A configured or validated target made absolute on the request's origin when it is a path.
/// (forwardAuth resolves a relative Location against the sidecar's own URL, so every Location
/// the sidecar sends is absolute.)
fn absolute_url(target: &str, fwd: &Forwarded<'_>) -> String {
    if target.starts_with('/') {
        format!("{}{target}", fwd.origin())
    } else {
        target.to_string()
    }
}

/// What header templates may read from a session.
fn session_data(s: &Session) -> Data<'_> {
    Data {
        claims: &s.claims,
        access_token: s.access_token.as_deref(),
        id_token: s.id_token.as_deref(),
        refresh_token: s.refresh_token.as_deref(),
    }
}

/// `host[:port]` of a URL, as `X-Forwarded-Host` would carry it.
fn authority(u: &Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Query parameters where a repeated name is an error rather than a guess.
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(q: &str) -> Result<Query, Error> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs.iter().skip(i + 1).any(|(k2, _)| k2 == k) {
                return Err(Error::BadCallback("a query parameter is repeated"));
            }
        }
        Ok(Query { pairs })
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}
