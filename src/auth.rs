//! The decision for one forwardAuth request: check, login redirect, callback or logout.
//!
//! Everything here is transport-neutral: it takes the rebuilt [`Forwarded`] request, the
//! client's headers and the current time, and returns a [`Reply`]. The HTTP layer only
//! extracts and maps. Every path that is not an authorized check ends in a non-2xx.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use http::HeaderMap;
use openidconnect::url::{Url, form_urlencoded};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::authz;
use crate::config::{
    MiddlewareConfig, TokenValidation, UnauthenticatedBehavior, UnauthorizedBehavior,
};
use crate::error::Error;
use crate::forwarded::{Forwarded, is_navigation};
use crate::metrics::{Counters, Outcome};
use crate::oidc::{AuthorizeParams, Exchange, Provider};
use crate::pages::{ErrorPage, PageData, default_page};
use crate::redirect;
use crate::reply::{Body, Reply};
use crate::session::{CookieCodec, Flow, RequestCookies, Session, random_token};
use crate::template::{self, DEFAULT_CLAIMS, Data, Pass, TokenField};

/// One configured middleware, ready to answer requests.
pub struct Middleware {
    /// Its configuration.
    pub cfg: MiddlewareConfig,
    /// Its IdP.
    pub provider: Arc<Provider>,
    /// Its decision counters.
    pub counters: Arc<Counters>,
    codec: CookieCodec,
    /// Top-level claims kept in the session; `*` keeps every claim.
    kept_claims: BTreeSet<String>,
    /// Whether a header template prints the access token (only then is it kept).
    keep_access_token: bool,
    /// Whether a header template prints the ID token. Only then is it kept in the session;
    /// otherwise it goes into the logout-hint cookies, which only the logout path receives.
    keep_id_token: bool,
    /// Refreshes in flight or just finished, by SHA-256 of the refresh token they redeemed.
    refreshes: tokio::sync::Mutex<HashMap<[u8; 32], (u64, RefreshCell)>>,
}

/// One refresh shared by every request of the same session (single-flight): the first request
/// redeems the refresh token, the others await its result. The result stays for
/// [`REFRESH_REUSE_SECS`] so requests still carrying the old cookie get the new session instead
/// of redeeming a refresh token the IdP may already have rotated away.
type RefreshCell = Arc<tokio::sync::OnceCell<Result<Session, String>>>;

/// How long a finished refresh is reused for requests carrying the old cookie.
const REFRESH_REUSE_SECS: u64 = 60;

impl std::fmt::Debug for Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Middleware")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Middleware {
    /// Builds the middleware (no network I/O; discovery runs separately).
    pub fn new(cfg: MiddlewareConfig) -> Result<Self, String> {
        let provider = Arc::new(Provider::new(cfg.provider.clone())?);
        let codec = CookieCodec::new(
            &cfg.secret,
            &cfg.name,
            &cfg.cookie_name_prefix,
            &cfg.logout_uri,
            cfg.session_cookie.clone(),
        );
        // Keep only the claims something reads: the cookie stays small and the session holds
        // no more personal data than it needs.
        let mut kept: BTreeSet<String> = ["sub"].iter().map(|s| s.to_string()).collect();
        if cfg.headers.is_empty() {
            kept.extend(DEFAULT_CLAIMS.iter().map(|s| s.to_string()));
        }
        for h in &cfg.headers {
            kept.extend(h.template.claims_used().map(str::to_string));
        }
        for a in &cfg.assert_claims {
            // A wildcard at the root reads everything.
            kept.insert(a.root_claim().unwrap_or("*").to_string());
        }
        let uses = |t| cfg.headers.iter().any(|h| h.template.uses_token(t));
        let keep_access_token = uses(TokenField::Access);
        let keep_id_token = uses(TokenField::Id);
        Ok(Middleware {
            cfg,
            provider,
            counters: Arc::new(Counters::default()),
            codec,
            kept_claims: kept,
            keep_access_token,
            keep_id_token,
            refreshes: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Answers one forwardAuth request.
    pub async fn handle(&self, fwd: &Forwarded, headers: &HeaderMap, now: u64) -> Reply {
        let cookie_headers = headers.get_all(http::header::COOKIE);
        let cookies = RequestCookies::parse(cookie_headers.iter().filter_map(|v| v.to_str().ok()));
        let nav = is_navigation(&fwd.method, headers);
        let result = if self.is_callback(fwd) {
            self.callback(fwd, &cookies, now).await
        } else if fwd.path == self.cfg.logout_uri {
            self.logout(fwd, &cookies, now)
        } else if self.cfg.login_uri.as_deref() == Some(fwd.path.as_str()) {
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
                Some(token) => self.bearer(token, &cookies, public, now).await,
                None => self.check(fwd, &cookies, nav, public, now).await,
            }
        };
        let reply = match result {
            Ok((reply, outcome)) => {
                self.counters.count(outcome);
                reply
            }
            Err(e) => {
                self.counters.count(Outcome::from_error(&e));
                match &e {
                    Error::Unauthenticated | Error::Forbidden => {
                        tracing::debug!(middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, decision = %e, "denied")
                    }
                    _ => {
                        tracing::warn!(middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, error = %e, "request refused")
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
                    r.set_cookies(self.codec.clear_present_session(&cookies));
                }
                r
            }
        };
        let mut reply = reply;
        if reply.status != 200 {
            // Redirects and errors carry per-user state; no cache may keep them.
            reply.header("Cache-Control", "no-store");
        }
        reply
    }

    fn is_callback(&self, fwd: &Forwarded) -> bool {
        let cb = &self.cfg.callback_uri;
        if cb.starts_with('/') {
            return fwd.path == *cb;
        }
        // Absolute CallbackUri: only that scheme, host and path are the callback.
        Url::parse(cb).is_ok_and(|u| {
            u.path() == fwd.path && u.scheme() == fwd.proto.as_str() && authority(&u) == fwd.host
        })
    }

    /// The bearer token of an API client, from `AuthorizationHeader` (a `Bearer ` prefix is
    /// stripped; other schemes are not bearer tokens) or `AuthorizationCookie`.
    fn bearer_token<'h>(
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
    async fn bearer(
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
        if authz::authorized(&self.cfg.assert_claims, &claims) {
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

    /// The 401/403 page for a browser: `ErrorPages` (a page or a redirect) or the built-in one,
    /// with buttons to log in (when `LoginUri` is set) or out.
    fn error_page(&self, e: &Error, fwd: &Forwarded) -> Reply {
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
    fn return_url(&self, fwd: &Forwarded) -> String {
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
        fwd: &Forwarded,
    ) -> Result<String, Error> {
        let t = redirect::validate(target, allowed).map_err(|r| {
            tracing::warn!(middleware = %self.cfg.name, reason = r.0, "redirect target refused");
            Error::BadRedirect
        })?;
        Ok(absolute_url(&t, fwd))
    }

    /// `LoginUri`: always starts a login. `?redirect_uri=` must be a same-host path or listed in
    /// `ValidPostLoginRedirectUris`; `?prompt=` is passed on when it is one OIDC Core §3.1.2.1
    /// defines.
    fn explicit_login(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.as_deref().unwrap_or(""))?;
        let return_to = match q.get("redirect_uri") {
            Some(t) => self.client_target(t, &self.cfg.valid_post_login_redirect_uris, fwd)?,
            None => match &self.cfg.post_login_redirect_uri {
                Some(_) => self.return_url(fwd),
                None => format!("{}/", fwd.origin()),
            },
        };
        let prompt = match q.get("prompt") {
            None => None,
            Some(p @ ("none" | "login" | "consent" | "select_account")) => Some(p),
            Some(_) => return Err(Error::BadLogin("unknown prompt value")),
        };
        let r = self.login(fwd, cookies, now, prompt, false, return_to)?;
        Ok((r, Outcome::LoginRedirect))
    }

    fn redirect_uri(&self, fwd: &Forwarded) -> String {
        if self.cfg.callback_uri.starts_with('/') {
            format!("{}{}", fwd.origin(), self.cfg.callback_uri)
        } else {
            self.cfg.callback_uri.clone()
        }
    }

    /// The hot path: one cookie decryption, no I/O (unless the session is due for a refresh).
    async fn check(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        nav: bool,
        public: bool,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let mut set_cookies = Vec::new();
        let session = match self.codec.open_session(cookies) {
            Some(s) if self.due_for_refresh(&s, now) => match self.refresh((*s).clone(), now).await
            {
                Ok(new) => {
                    set_cookies = self.codec.write_session(&new, cookies, now)?;
                    Some(Arc::new(new))
                }
                Err(e) => {
                    tracing::info!(middleware = %self.cfg.name, error = %e, "session refresh failed");
                    // Until it expires, the old session stays good: an IdP outage must not log
                    // everyone out. Past expiry, the unauthenticated behaviour applies.
                    (s.exp > now).then_some(s)
                }
            },
            Some(s) if s.exp > now => Some(s),
            _ => None,
        };
        let (mut reply, outcome) = self.decide(fwd, cookies, nav, public, now, session)?;
        // The refreshed session travels as Set-Cookie on the answer (2xx included: the plugin
        // passes it on, forwardAuth does with addAuthCookiesToResponse).
        reply.set_cookies(set_cookies);
        Ok((reply, outcome))
    }

    fn due_for_refresh(&self, s: &Session, now: u64) -> bool {
        if s.refresh_token.is_none() {
            return false;
        }
        let lifetime = s.exp.saturating_sub(s.iat) as f64;
        let elapsed = now.saturating_sub(s.iat) as f64;
        now >= s.exp || elapsed > lifetime * self.cfg.provider.token_renewal_threshold
    }

    /// Refreshes `old`, sharing the work with concurrent requests of the same session.
    async fn refresh(&self, old: Session, now: u64) -> Result<Session, String> {
        let Some(rt) = old.refresh_token.clone() else {
            return Err("no refresh token".into());
        };
        let key: [u8; 32] = Sha256::digest(rt.as_bytes()).into();
        let cell = {
            let mut map = self.refreshes.lock().await;
            map.retain(|_, (started, _)| *started + REFRESH_REUSE_SECS > now);
            map.entry(key)
                .or_insert_with(|| (now, Arc::new(tokio::sync::OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_init(|| self.refresh_once(old, rt, now))
            .await
            .clone()
    }

    async fn refresh_once(&self, old: Session, rt: String, now: u64) -> Result<Session, String> {
        let d = self.provider.current().ok_or("discovery not loaded")?;
        let r = self
            .provider
            .refresh(d, &rt, &old.sub, &self.cfg.requested_resources, now)
            .await
            .map_err(|e| e.to_string())?;
        let lifetime = old.exp.saturating_sub(old.iat).max(1);
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
        let claims = self.keep(claims);
        // Assertions are evaluated again: a group removed at the IdP takes effect now.
        let authorized = authz::authorized(&self.cfg.assert_claims, &claims);
        tracing::debug!(middleware = %self.cfg.name, sub = %old.sub, authorized, "session refreshed");
        Ok(Session {
            sub: old.sub,
            claims,
            iat: now,
            exp: r.expires_at.unwrap_or(now + lifetime),
            // Without an `.idToken` template the hint cookie keeps the login's ID token: an OP
            // accepts an expired ID token as `id_token_hint` (RP-Initiated Logout 1.0 §2).
            id_token: if self.keep_id_token {
                r.id_token.or(old.id_token)
            } else {
                None
            },
            refresh_token: r.refresh_token.or(Some(rt)),
            access_token: self.keep_access_token.then_some(r.access_token),
            authorized,
            challenged: old.challenged,
        })
    }

    fn decide(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        nav: bool,
        public: bool,
        now: u64,
        session: Option<Arc<Session>>,
    ) -> Result<(Reply, Outcome), Error> {
        if public {
            tracing::debug!(middleware = %self.cfg.name, path = %fwd.path, "bypass rule matched");
            return Ok((
                self.pass(cookies, session.as_deref().map(session_data), Pass::Public)?,
                Outcome::Bypassed,
            ));
        }
        // CheckOnEveryRequest: evaluate the assertions on the session's claims now instead of
        // trusting the decision made at login.
        let authorized = |s: &Session| {
            if self.cfg.check_on_every_request {
                authz::authorized(&self.cfg.assert_claims, &s.claims)
            } else {
                s.authorized
            }
        };
        match session {
            Some(s) if authorized(&s) => {
                tracing::debug!(middleware = %self.cfg.name, sub = %s.sub, path = %fwd.path, "allowed");
                Ok((
                    self.pass(cookies, Some(session_data(&s)), Pass::Authorized)?,
                    Outcome::Allowed,
                ))
            }
            Some(s) => match self.cfg.unauthorized_behavior {
                // Challenge once: a session that already came back from a challenge and still
                // fails gets 403, never another redirect (no loop).
                UnauthorizedBehavior::Challenge if nav && !s.challenged => self
                    .login(fwd, cookies, now, Some("login"), true, self.return_url(fwd))
                    .map(|r| (r, Outcome::LoginRedirect)),
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
                        return Ok((self.pass(cookies, None, Pass::Forward)?, Outcome::Forwarded));
                    }
                };
                if !redirect {
                    return Err(Error::Unauthenticated);
                }
                let mut r = self.login(fwd, cookies, now, None, false, self.return_url(fwd))?;
                r.set_cookies(self.codec.clear_present_session(cookies));
                Ok((r, Outcome::LoginRedirect))
            }
        }
    }

    /// A 200: identity headers allowed for `pass` (none without a session) and the request's
    /// cookies minus ours.
    /// A header template that fails to render fails the request (500), never a 2xx without it.
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
        let others = self.codec.foreign_cookies(cookies);
        if !others.is_empty() {
            r.header("Cookie", others);
        }
        Ok(r)
    }

    fn login(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        now: u64,
        prompt: Option<&str>,
        challenge: bool,
        return_to: String,
    ) -> Result<Reply, Error> {
        let d = self
            .provider
            .current()
            .ok_or_else(|| Error::IdpUnavailable("discovery not loaded yet".into()))?;
        let state = random_token();
        let nonce = random_token();
        let verifier = (self.cfg.provider.use_pkce || d.pkce_s256).then(random_token);
        let redirect_uri = self.redirect_uri(fwd);
        let flow = Flow {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier: verifier.clone(),
            return_to,
            created: now,
            challenge,
        };
        let set = self.codec.start_flow(&flow, cookies, now)?;
        let url = self.provider.authorize_url(
            &d,
            &AuthorizeParams {
                redirect_uri: &redirect_uri,
                scopes: &self.cfg.scopes,
                state: &state,
                nonce: &nonce,
                pkce_verifier: verifier.as_deref(),
                prompt,
                extra: &self.cfg.authorization_params,
                resources: &self.cfg.requested_resources,
            },
        );
        tracing::debug!(middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, "redirect to login");
        let mut r = Reply::redirect(url);
        r.set_cookies(set);
        Ok(r)
    }

    async fn callback(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.as_deref().unwrap_or(""))?;
        if let Some(error) = q.get("error") {
            // Shown to the user (escaped by the page renderer), bounded in size.
            return Err(Error::IdpError {
                error: truncate(error, 100),
                description: q.get("error_description").map(|d| truncate(d, 300)),
            });
        }
        let state = q.get("state").ok_or(Error::BadState("missing state"))?;
        // The state is checked against this browser's flow cookie before anything is redeemed.
        let (flow, clear_flow) = self.codec.take_flow(cookies, state, now)?;
        let code = q.get("code").ok_or(Error::BadCallback("missing code"))?;
        let d = self
            .provider
            .current()
            .ok_or_else(|| Error::IdpUnavailable("discovery not loaded yet".into()))?;
        // RFC 9207: when the IdP names itself, it must be the IdP this flow went to (mix-up).
        if let Some(iss) = q.get("iss")
            && iss != d.discovered_issuer
        {
            return Err(Error::BadCallback("iss parameter names another issuer"));
        }
        let redirect_uri = self.redirect_uri(fwd);
        let verified = self
            .provider
            .exchange(
                d,
                Exchange {
                    code,
                    redirect_uri: &redirect_uri,
                    pkce_verifier: flow.verifier.as_deref(),
                    nonce: &flow.nonce,
                    resources: &self.cfg.requested_resources,
                },
                now,
            )
            .await?;
        let mut verified = verified;
        if self.cfg.provider.use_claims_from_userinfo {
            // Fetched once here and kept in the session, not on every request.
            if let Some(d) = self.provider.current() {
                self.provider
                    .merge_userinfo(&d, &verified.access_token, &mut verified.claims)
                    .await?;
            }
        }
        let authorized = authz::authorized(&self.cfg.assert_claims, &verified.claims);
        let sub = verified
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !authorized {
            tracing::info!(middleware = %self.cfg.name, sub = %sub, "logged in, but the claim assertions fail");
        }
        let session = Session {
            sub: sub.clone(),
            claims: self.keep(verified.claims),
            iat: now,
            exp: verified.expires_at,
            id_token: self.keep_id_token.then(|| verified.id_token.clone()),
            refresh_token: verified.refresh_token,
            access_token: self.keep_access_token.then_some(verified.access_token),
            authorized,
            challenged: flow.challenge,
        };
        // Every session chunk is written afresh, so a cookie planted before login is replaced
        // (no session fixation).
        let mut set = self.codec.write_session(&session, cookies, now)?;
        // The ID token is only the logout hint: outside the session, in cookies only the logout
        // path receives (unless a template prints it, and the session holds it).
        let hint = (!self.keep_id_token).then_some(verified.id_token.as_str());
        set.extend(self.codec.write_hint(hint)?);
        set.push(clear_flow);
        let target = self.return_target(&flow.return_to, fwd);
        tracing::info!(middleware = %self.cfg.name, sub = %sub, expires_in = session.exp.saturating_sub(now), refreshable = session.refresh_token.is_some(), "login complete");
        let mut r = Reply::redirect(target);
        r.set_cookies(set);
        Ok((r, Outcome::CallbackOk))
    }

    /// The flow's return URL when it is on this host (or inside the cookie domain when the
    /// callback is absolute); otherwise `/`. The URL came from our own sealed cookie, so this is
    /// defence in depth against a misconfiguration, not against the client.
    fn return_target(&self, return_to: &str, fwd: &Forwarded) -> String {
        let Ok(u) = Url::parse(return_to) else {
            return "/".into();
        };
        let host = authority(&u);
        let same = host == fwd.host && u.scheme() == fwd.proto.as_str();
        let in_domain = self.cfg.session_cookie.domain.as_deref().is_some_and(|d| {
            let d = d.trim_start_matches('.');
            let h = u.host_str().unwrap_or("");
            h == d || h.ends_with(&format!(".{d}"))
        }) && !self.cfg.callback_uri.starts_with('/');
        let listed = self.cfg.post_login_redirect_uri.as_deref() == Some(return_to)
            || self
                .cfg
                .valid_post_login_redirect_uris
                .iter()
                .any(|v| v == return_to);
        if same || in_domain || listed {
            return_to.to_string()
        } else {
            "/".into()
        }
    }

    fn keep(&self, claims: Map<String, Value>) -> Map<String, Value> {
        if self.kept_claims.contains("*") {
            return claims;
        }
        claims
            .into_iter()
            .filter(|(k, _)| self.kept_claims.contains(k))
            .collect()
    }

    fn logout(
        &self,
        fwd: &Forwarded,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.as_deref().unwrap_or(""))?;
        let asked = q
            .get("post_logout_redirect_uri")
            .or_else(|| q.get("redirect_uri"));
        let absolute = match asked {
            Some(t) => self.client_target(t, &self.cfg.valid_post_logout_redirect_uris, fwd)?,
            None => absolute_url(&self.cfg.post_logout_redirect_uri, fwd),
        };
        let session = self.codec.read_session(cookies, now);
        let hint_cookie = self.codec.read_hint(cookies);
        let mut set = self.codec.clear_session();
        set.extend(self.codec.clear_hint());
        set.extend(self.codec.clear_flows(cookies));
        // Without a loaded discovery there is no end_session_endpoint to visit; the local
        // session is cleared either way, which is what the user asked for.
        let location = match self
            .provider
            .current()
            .and_then(|d| d.end_session_endpoint.clone())
        {
            Some(es) => {
                let hint = session
                    .as_ref()
                    .and_then(|s| s.id_token.as_deref())
                    .or(hint_cookie.as_deref());
                self.provider.end_session_url(&es, hint, &absolute)
            }
            None => absolute,
        };
        tracing::info!(middleware = %self.cfg.name, sub = session.as_ref().map(|s| s.sub.as_str()).unwrap_or("-"), "logout");
        let mut r = Reply::redirect(location);
        r.set_cookies(set);
        Ok((r, Outcome::Logout))
    }
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
fn absolute_url(target: &str, fwd: &Forwarded) -> String {
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
