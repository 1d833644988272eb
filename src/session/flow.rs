//! Login-flow cookies: one per login in progress, named after its `state`.
//!
//! Parallel logins from one browser (several tabs, a page firing many requests) never
//! overwrite each other, and a callback whose state has no cookie in this browser is refused
//! (login CSRF, OIDC Core §3.1.2.1). The flow cookies belong to the scope, so any middleware of
//! the scope finishes a login another started.

use subtle::ConstantTimeEq;

use super::codec::CookieCodec;
use super::{Flow, RequestCookies, SameSite};
use crate::error::Error;

/// Lifetime of a login flow, in seconds.
pub const FLOW_TTL: u64 = 600;
/// Login flows kept per browser; starting another drops the oldest.
pub const MAX_FLOWS: usize = 5;
/// Characters of `state` used in the flow cookie's name.
const FLOW_ID_LEN: usize = 16;
/// Flow cookies we are willing to open when pruning (the rest are simply expired).
const MAX_FLOW_SCAN: usize = 16;

impl CookieCodec {
    /// `Set-Cookie` values starting `flow`, and expiring stale or surplus flows of this browser.
    pub fn start_flow(
        &self,
        flow: &Flow,
        req: &RequestCookies<'_>,
        now: u64,
    ) -> Result<Vec<String>, Error> {
        let id = flow_id(&flow.state).ok_or_else(|| Error::Internal("state too short".into()))?;
        let name = format!("{}{id}", self.flow_prefix());
        let json = serde_json::to_vec(flow).map_err(|e| Error::Internal(e.to_string()))?;
        let sealed = self
            .seal(&name, &json)
            .ok_or_else(|| Error::Internal("sealing failed".into()))?;
        let mut out = vec![self.cookie(name, sealed, Some(FLOW_TTL as i64), "/", SameSite::Lax)];

        let prefix = self.flow_prefix();
        // (created, position in the request, name): browsers send older cookies first, so the
        // position breaks ties between flows started within the same second.
        let mut live: Vec<(u64, usize, &str)> = Vec::new();
        for (i, (n, v)) in req
            .pairs
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .enumerate()
        {
            let created = if i < MAX_FLOW_SCAN {
                self.open(n, std::iter::once(*v))
                    .and_then(|j| serde_json::from_slice::<Flow>(&j).ok())
                    .map(|f| f.created)
                    .filter(|c| c + FLOW_TTL > now)
            } else {
                None
            };
            match created {
                Some(c) => live.push((c, i, n)),
                None => out.push(self.removal(n.to_string(), "/")),
            }
        }
        // Keep the newest MAX_FLOWS - 1 beside the new one.
        live.sort_by_key(|l| std::cmp::Reverse((l.0, l.1)));
        for (_, _, n) in live.into_iter().skip(MAX_FLOWS - 1) {
            out.push(self.removal(n.to_string(), "/"));
        }
        Ok(out)
    }

    /// Finds and opens the flow that `state` belongs to, checking it started in this browser
    /// and has not expired. Returns it with the `Set-Cookie` value that deletes it.
    pub fn take_flow(
        &self,
        req: &RequestCookies<'_>,
        state: &str,
        now: u64,
    ) -> Result<(Flow, String), Error> {
        let id = flow_id(state).ok_or(Error::BadState("malformed state"))?;
        let name = format!("{}{id}", self.flow_prefix());
        let sealed = req
            .unique(&name)
            .ok_or(Error::BadState("no flow cookie for this state"))?;
        let flow: Flow = self
            .open(&name, std::iter::once(sealed))
            .and_then(|j| serde_json::from_slice(&j).ok())
            .ok_or(Error::BadState("flow cookie does not open"))?;
        // Constant-time: the comparison must not reveal how much of a guessed state matched.
        if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(Error::BadState("state mismatch"));
        }
        if flow.created + FLOW_TTL <= now || flow.created > now + 60 {
            return Err(Error::BadState("flow expired"));
        }
        Ok((flow, self.removal(name, "/")))
    }

    /// `Set-Cookie` values expiring every flow cookie of this request.
    pub fn clear_flows(&self, req: &RequestCookies<'_>) -> Vec<String> {
        req.pairs
            .iter()
            .filter(|(n, _)| n.starts_with(self.flow_prefix()))
            .map(|(n, _)| self.removal(n.to_string(), "/"))
            .collect()
    }
}

/// The part of `state` that names its flow cookie; `None` for a state we could not have made.
fn flow_id(state: &str) -> Option<&str> {
    if state.len() < FLOW_ID_LEN || state.len() > 128 {
        return None;
    }
    if !state
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    state.get(..FLOW_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::codec::tests::{browser, codec};
    use crate::session::random_token;

    fn flow(state: &str, created: u64) -> Flow {
        Flow {
            state: state.into(),
            nonce: "n".into(),
            verifier: Some("v".into()),
            return_to: "https://a/x".into(),
            created,
            redirect_uri: String::new(),
            resources: Vec::new(),
            challenge: None,
            silent: false,
            step_up: None,
        }
    }

    #[test]
    fn flows_are_per_state_and_expire() {
        let c = codec("P");
        let s1 = random_token();
        let s2 = random_token();
        let set1 = c
            .start_flow(&flow(&s1, 1000), &RequestCookies::default(), 1000)
            .unwrap();
        let h1 = browser(&set1);
        let set2 = c
            .start_flow(
                &flow(&s2, 1001),
                &RequestCookies::parse([h1.as_str()].into_iter()),
                1001,
            )
            .unwrap();
        let both = format!("{h1}; {}", browser(&set2[..1]));
        let req = RequestCookies::parse([both.as_str()].into_iter());
        assert_eq!(c.take_flow(&req, &s1, 1100).unwrap().0.state, s1);
        assert_eq!(c.take_flow(&req, &s2, 1100).unwrap().0.state, s2);
        // A state that did not start here, a forged state sharing the id, an expired flow.
        assert!(c.take_flow(&req, &random_token(), 1100).is_err());
        let forged = format!("{}{}", &s1[..FLOW_ID_LEN], "A".repeat(27));
        assert!(matches!(
            c.take_flow(&req, &forged, 1100),
            Err(Error::BadState(_))
        ));
        assert!(c.take_flow(&req, &s1, 1000 + FLOW_TTL).is_err());
        assert!(c.take_flow(&req, "short", 1100).is_err());
    }

    #[test]
    fn at_most_max_flows_are_kept() {
        let c = codec("P");
        let mut header = String::new();
        for i in 0..MAX_FLOWS as u64 {
            let set = c
                .start_flow(
                    &flow(&random_token(), 1000 + i),
                    &RequestCookies::parse([header.as_str()].into_iter()),
                    1000 + i,
                )
                .unwrap();
            let new = browser(&set[..1]);
            header = if header.is_empty() {
                new
            } else {
                format!("{header}; {new}")
            };
        }
        let req = RequestCookies::parse([header.as_str()].into_iter());
        let set = c
            .start_flow(&flow(&random_token(), 1010), &req, 1010)
            .unwrap();
        let removals = set.iter().filter(|s| s.contains("Max-Age=0")).count();
        assert_eq!(removals, 1, "{set:#?}");
    }
}
