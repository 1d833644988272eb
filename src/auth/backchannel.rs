//! OpenID Connect Back-Channel Logout 1.0, the RP side: the IdP POSTs a `logout_token` and the
//! sessions it names end.
//!
//! Two doors lead here. The sidecar's own route `POST /backchannel-logout/{middleware}` carries
//! the body to [`Middleware::backchannel_logout`]. A forwardAuth request for
//! `BackchannelLogoutUri` carries no body (forwardAuth never forwards one), so it is answered
//! with [`Error::BackchannelNeedsBody`]: a 400 telling the operator to route that path to the
//! sidecar, with a header the plugin shim takes as its cue to forward the body itself.
//!
//! §2.8: success is a 200 with `Cache-Control: no-store`; anything else a 400 (503 when the
//! logout cannot be recorded now and the IdP should retry). A token that fails any check, a
//! replay, an oversized or non-form body ends nothing: the token is verified and its `jti`
//! recorded before anything is ended, and the `jti` is forgotten again if ending fails. The
//! sessions ended are those made up to the token's `iat` (see [`crate::session::ended`]), so a
//! replay the `jti` memory no longer knows cannot end a login made after the logout.

use std::sync::Arc;

use openidconnect::url::form_urlencoded;

use super::Middleware;
use crate::error::Error;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::oidc::JtiStore;
use crate::reply::{Body, Reply};
use crate::session::{EndBy, Scope};

/// The largest back-channel request body read (a logout token is a few KiB at most).
pub const MAX_BACKCHANNEL_BODY: usize = 64 * 1024;

impl Middleware {
    /// Answers a back-channel logout POST: `content_type` is the request's `Content-Type`;
    /// `body` is the request body, `None` when it was larger than [`MAX_BACKCHANNEL_BODY`] or
    /// could not be read; `scopes` are the session scopes of this IdP client
    /// (`App::client_scopes`, this middleware's among them), where the sessions end; `jtis` is
    /// the client's replay memory (`App::client_jtis`: one per client, whichever route the
    /// token comes through, surviving reloads).
    pub async fn backchannel_logout(
        &self,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        scopes: &[Arc<Scope>],
        jtis: &dyn JtiStore,
        now: u64,
    ) -> Reply {
        let mut reply = match self
            .end_by_token(content_type, body, scopes, jtis, now)
            .await
        {
            Ok(()) => {
                self.counters.count(Outcome::Logout);
                Reply::new(200, Body::Empty)
            }
            Err(e) => {
                self.counters.count(Outcome::from_error(&e));
                decision!(self.cfg.log_level, WARN, middleware = %self.cfg.name, error = %e, "back-channel logout refused");
                e.to_reply(false)
            }
        };
        // §2.8: the answer must not be cached.
        reply.header("Cache-Control", "no-store");
        reply
    }

    async fn end_by_token(
        &self,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        scopes: &[Arc<Scope>],
        jtis: &dyn JtiStore,
        now: u64,
    ) -> Result<(), Error> {
        if !is_form(content_type) {
            return Err(Error::BadLogoutRequest(
                "not application/x-www-form-urlencoded",
            ));
        }
        let body = body.ok_or(Error::BadLogoutRequest("body too large"))?;
        let token = logout_token(body)?;
        let t = self.provider.verify_logout_token(&token, jtis, now).await?;
        // §2.7: with a `sid`, the IdP session it names ends (for that `sub`, if any); without,
        // every session of the `sub`.
        let by = match (&t.sid, &t.sub) {
            (Some(sid), _) => EndBy::Sid(sid.clone()),
            (None, Some(sub)) => EndBy::Sub(sub.clone()),
            (None, None) => return Err(Error::BadLogoutToken("neither sid nor sub".into())),
        };
        // The logout happened at the token's `iat` (§2.4), which the checks bound to
        // `MAX_LOGOUT_TOKEN_AGE` in the past; a little in the future (the leeway) counts as now.
        let cutoff = t.iat.min(now);
        for s in scopes {
            if let Err(e) = s.end_sessions(by.clone(), cutoff, now).await {
                // Not every session ended: the IdP's retry of this token must not count as a
                // replay (ending again is harmless).
                jtis.forget(t.jti).await;
                return Err(e);
            }
        }
        decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = t.sub.as_deref().unwrap_or("-"), by_sid = t.sid.is_some(), "back-channel logout: sessions ended");
        Ok(())
    }
}

/// Whether the media type is `application/x-www-form-urlencoded` (parameters such as
/// `charset` allowed; media types compare case-insensitively, RFC 9110 §8.3.1).
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The one `logout_token` parameter of a form body (§2.5). Missing, empty or repeated is
/// refused; other parameters are ignored.
fn logout_token(body: &[u8]) -> Result<String, Error> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(body) {
        if k == "logout_token" {
            if found.is_some() {
                return Err(Error::BadLogoutRequest("logout_token is repeated"));
            }
            found = Some(v.into_owned());
        }
    }
    found
        .filter(|t| !t.is_empty())
        .ok_or(Error::BadLogoutRequest("no logout_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_form_posts_with_one_token_are_read() {
        for (ct, want) in [
            (Some("application/x-www-form-urlencoded"), true),
            (
                Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
                true,
            ),
            (Some("application/json"), false),
            (Some("multipart/form-data; boundary=x"), false),
            (Some("application/x-www-form-urlencodedx"), false),
            (None, false),
        ] {
            assert_eq!(is_form(ct), want, "{ct:?}");
        }
        assert_eq!(logout_token(b"logout_token=a.b.c&x=1").unwrap(), "a.b.c");
        assert_eq!(logout_token(b"logout_token=a%2Eb.c").unwrap(), "a.b.c");
        for bad in [
            &b""[..],
            b"logout_token=",
            b"token=a.b.c",
            b"logout_token=a&logout_token=b",
        ] {
            assert!(logout_token(bad).is_err(), "{bad:?}");
        }
    }
}
