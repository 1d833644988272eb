//! Logins: starting one (a flow cookie of the scope, a redirect to the IdP) and finishing it
//! at the callback.
//!
//! Any middleware of a scope finishes a login another started: the flow cookie is the scope's,
//! and the flow carries what the token request must repeat (`redirect_uri`, `resource`) and
//! which middleware's Challenge started it.
//!
//! The callback is decided at once by the middleware that receives it: when its own assertions
//! reject the new session, the answer to the callback is its `UnauthorizedBehavior` (the 403 page
//! or problem, the `ErrorPages.Unauthorized` redirect, or one Challenge; `Forward` still returns
//! to the original URL). The session cookie is written on that answer too.

use openidconnect::url::Url;
use serde_json::Value;

use super::{Middleware, Query, UnauthorizedBehavior, authority, truncate};
use crate::error::Error;
use crate::forwarded::Forwarded;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::oidc::{AuthorizeParams, Exchange};
use crate::reply::Reply;
use crate::session::step_up::login_facts;
use crate::session::{Flow, RequestCookies, Session, random_token};

/// How a login starts: what the authorization request asks and what its flow remembers.
#[derive(Clone, Copy)]
pub(super) struct Start<'a> {
    /// The `prompt` parameter (OIDC Core §3.1.2.1), if any.
    pub prompt: Option<&'a str>,
    /// Started by this middleware's `UnauthorizedBehavior: Challenge`.
    pub challenge: bool,
    /// A silent login (`SilentLogin`): errors at its callback land anonymously.
    pub silent: bool,
}

impl Middleware {
    /// `LoginUri`: always starts a login. `?redirect_uri=` must be a same-host path or listed in
    /// `ValidPostLoginRedirectUris`; `?prompt=` is passed on when it is one OIDC Core §3.1.2.1
    /// defines.
    pub(super) fn explicit_login(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.unwrap_or(""))?;
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

    pub(super) fn redirect_uri(&self, fwd: &Forwarded<'_>) -> String {
        if self.cfg.callback_uri.starts_with('/') {
            format!("{}{}", fwd.origin(), self.cfg.callback_uri)
        } else {
            self.cfg.callback_uri.clone()
        }
    }

    pub(super) fn login(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        now: u64,
        prompt: Option<&str>,
        challenge: bool,
        return_to: String,
    ) -> Result<Reply, Error> {
        let how = Start {
            prompt,
            challenge,
            silent: false,
        };
        self.start_login(fwd, cookies, now, how, return_to)
    }

    /// A redirect to the IdP with a new flow cookie: the flow remembers `how` it started.
    pub(super) fn start_login(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        now: u64,
        how: Start<'_>,
        return_to: String,
    ) -> Result<Reply, Error> {
        let Start {
            prompt,
            challenge,
            silent,
        } = how;
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
            redirect_uri: redirect_uri.clone(),
            resources: self.cfg.requested_resources.clone(),
            challenge: challenge.then(|| self.cfg.name.clone()),
            silent,
            step_up: self.step_up_flow(),
        };
        let acr_values = flow.step_up.as_ref().and_then(|f| f.ask.acr_param());
        let set = self.scope.codec().start_flow(&flow, cookies, now)?;
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
                acr_values: acr_values.as_deref(),
                max_age: self.cfg.step_up.as_ref().and_then(|s| s.max_age),
            },
        );
        decision!(self.cfg.log_level, DEBUG, middleware = %self.cfg.name, host = %fwd.host, path = %fwd.path, challenge, silent, "redirect to login");
        let mut r = Reply::redirect(url);
        r.set_cookies(set);
        Ok(r)
    }

    /// The callback: redeems the code of a flow started by any middleware of the scope, writes
    /// the session, and decides at once with this middleware's assertions (see the module docs).
    pub(super) async fn callback(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.unwrap_or(""))?;
        if let Some(error) = q.get("error") {
            // The answer to a silent login is no failure: the visitor lands anonymously.
            if let Some(landed) = self.silent_error(fwd, cookies, &q, error, now)? {
                return Ok(landed);
            }
            // Shown to the user (escaped by the page renderer), bounded in size.
            return Err(Error::IdpError {
                error: truncate(error, 100),
                description: q.get("error_description").map(|d| truncate(d, 300)),
            });
        }
        let state = q.get("state").ok_or(Error::BadState("missing state"))?;
        // The state is checked against this browser's flow cookie before anything is redeemed.
        let (flow, clear_flow) = self.scope.codec().take_flow(cookies, state, now)?;
        if flow.silent {
            let back = flow.return_to.clone();
            let clear = clear_flow.clone();
            return match self
                .finish_login(fwd, cookies, &q, flow, clear_flow, now)
                .await
            {
                Ok(done) => Ok(done),
                // Fail closed, without identity: anonymous on the page, as for a refusal.
                Err(e) => self.silent_landing(fwd, &back, clear, now, &e),
            };
        }
        self.finish_login(fwd, cookies, &q, flow, clear_flow, now)
            .await
    }

    /// The callback once its flow is known: redeems the code, writes the session and decides.
    async fn finish_login(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        q: &Query,
        flow: Flow,
        clear_flow: String,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
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
        // The redirect_uri the authorization request carried (RFC 6749 §4.1.3), whichever
        // middleware of the scope started the flow.
        let redirect_uri = if flow.redirect_uri.is_empty() {
            self.redirect_uri(fwd)
        } else {
            flow.redirect_uri.clone()
        };
        let verified = self
            .provider
            .exchange(
                d,
                Exchange {
                    code,
                    redirect_uri: &redirect_uri,
                    pkce_verifier: flow.verifier.as_deref(),
                    nonce: &flow.nonce,
                    resources: &flow.resources,
                },
                now,
            )
            .await?;
        let mut verified = verified;
        // From the verified ID token, before UserInfo is merged: acr and auth_time describe the
        // authentication, and only the ID token vouches for them (OIDC Core §2).
        let (acr, auth_time) = login_facts(&verified.claims);
        if self.cfg.provider.use_claims_from_userinfo {
            // Fetched once here and kept in the session, not on every request.
            if let Some(d) = self.provider.current() {
                self.provider
                    .merge_userinfo(&d, &verified.access_token, &mut verified.claims)
                    .await?;
            }
        }
        let sub = verified
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // "Challenged once" markers: the middleware whose Challenge started this flow, and those
        // the browser's previous session of the same user already carried.
        let mut challenged = self
            .scope
            .load(cookies)
            .await?
            .filter(|old| old.sub == sub)
            .map(|old| old.challenged.clone())
            .unwrap_or_default();
        challenged.extend(flow.challenge.iter().cloned());
        // Kept outside the claims (whatever `Keep` says): a back-channel logout token names the
        // session by it (Back-Channel Logout 1.0 §2.4).
        let sid = verified
            .claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        // A step-up flow judges what came back by what it asked (whichever middleware of the
        // scope receives the callback): short of it, the asking middleware answers 403 from now
        // on instead of sending the browser around again. A new login starts unmarked.
        let mut step_up_failed = std::collections::BTreeSet::new();
        if let Some(f) = &flow.step_up
            && let Err(unmet) = f.ask.check(acr.as_deref(), auth_time, now)
        {
            decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = %sub, asked_by = %f.middleware, reason = ?unmet, acr = ?acr, "step-up login came back without what was asked");
            step_up_failed.insert(f.middleware.clone());
        }
        let keep = self.scope.keep();
        let claims = keep.claims(verified.claims);
        let session = Session {
            sub: sub.clone(),
            sid,
            verdicts: self.scope.verdicts(&claims),
            claims,
            iat: now,
            exp: verified.expires_at,
            id_token: keep.id_token.then(|| verified.id_token.clone()),
            refresh_token: verified.refresh_token,
            access_token: keep.access_token.then_some(verified.access_token),
            challenged,
            rendered: Default::default(),
            sealed_by_previous: false,
            acr,
            auth_time,
            step_up_failed,
            active: None,
        };
        // Every session chunk is written afresh, so a cookie planted before login is replaced
        // (no session fixation).
        let mut set = self.scope.save_login(&session, cookies, now).await?;
        // The ID token is only the logout hint: outside the session, in cookies only the logout
        // path receives (unless a template prints it, and the session holds it).
        let hint = (!keep.id_token).then_some(verified.id_token.as_str());
        set.extend(self.scope.write_hint(hint)?);
        set.push(clear_flow);
        // A real login ends a failed silent login's wait.
        set.extend(self.scope.codec().clear_silent_marker(cookies));
        let admitted = self.authorized(&session);
        decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = %sub, expires_in = session.exp.saturating_sub(now), refreshable = session.refresh_token.is_some(), authorized = admitted, "login complete");
        let target = self.return_target(&flow.return_to, fwd);
        // Decided at the callback: a session this middleware rejects is answered here, as
        // traefik-oidc-auth does, not one hop later. The session is written either way: another
        // middleware of the scope may admit it.
        let (mut r, outcome) = if admitted {
            (Reply::redirect(target), Outcome::CallbackOk)
        } else {
            decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = %sub, "logged in, but the claim assertions fail");
            match self.cfg.unauthorized_behavior {
                UnauthorizedBehavior::Forward => (Reply::redirect(target), Outcome::CallbackOk),
                // Once per middleware: a session already challenged here gets the 403.
                // The new flow returns where this one was going (checked again at its callback).
                // Without a prompt of its own, as on the hot path (check.rs).
                UnauthorizedBehavior::Challenge if !session.challenged.contains(&self.cfg.name) => {
                    let back = flow.return_to.clone();
                    (
                        self.login(fwd, cookies, now, None, true, back)?,
                        Outcome::LoginRedirect,
                    )
                }
                _ => (self.error_page(&Error::Forbidden, fwd), Outcome::Forbidden),
            }
        };
        r.set_cookies(set);
        Ok((r, outcome))
    }

    /// The flow's return URL when it is on this host (or inside the cookie domain when the
    /// callback is absolute); otherwise `/`. The URL came from our own sealed cookie, so this is
    /// defence in depth against a misconfiguration, not against the client.
    pub(super) fn return_target(&self, return_to: &str, fwd: &Forwarded<'_>) -> String {
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
}
