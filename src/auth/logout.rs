//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the scope's session ends (its
//! cookies are cleared; in Redis mode its record is deleted on every replica) and the browser
//! goes to the IdP's `end_session_endpoint` (or straight to the target).

use super::{Middleware, Query, absolute_url};
use crate::error::Error;
use crate::forwarded::Forwarded;
use crate::logging::decision;
use crate::metrics::Outcome;
use crate::reply::Reply;
use crate::session::RequestCookies;

impl Middleware {
    pub(super) async fn logout(
        &self,
        fwd: &Forwarded<'_>,
        cookies: &RequestCookies<'_>,
        now: u64,
    ) -> Result<(Reply, Outcome), Error> {
        let q = Query::parse(fwd.query.unwrap_or(""))?;
        let asked = q
            .get("post_logout_redirect_uri")
            .or_else(|| q.get("redirect_uri"));
        let absolute = match asked {
            Some(t) => self.client_target(t, &self.cfg.valid_post_logout_redirect_uris, fwd)?,
            None => absolute_url(&self.cfg.post_logout_redirect_uri, fwd),
        };
        let session = self.scope.load(cookies).await?.filter(|s| s.exp > now);
        let hint_cookie = self.scope.read_hint(cookies);
        // The scope's session ends for every middleware sharing it: one login, one logout. In
        // Redis mode its record is deleted first (Redis unavailable: 503, the user retries; a
        // logout that cannot revoke is not reported as done).
        let mut set = self.scope.end(cookies).await?;
        set.extend(self.scope.codec().clear_hint());
        set.extend(self.scope.codec().clear_flows(cookies));
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
        decision!(self.cfg.log_level, INFO, middleware = %self.cfg.name, sub = session.as_ref().map(|s| s.sub.as_str()).unwrap_or("-"), "logout");
        let mut r = Reply::redirect(location);
        r.set_cookies(set);
        Ok((r, Outcome::Logout))
    }
}
