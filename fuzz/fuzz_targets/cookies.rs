//! Cookie decoding: `RequestCookies::parse`, `Scope::read_session`, `take_flow` and the
//! helpers that walk the request's cookies, on arbitrary Cookie headers.
//!
//! Input (text; invalid UTF-8 is read lossily): line 1 is "now" in unix seconds (anything else
//! means a fixed time), line 2 is the callback `state`, every further line is one `Cookie`
//! header value. Invariants: nothing panics; a session that opens has not expired; a flow that
//! opens belongs to `state` and is inside its lifetime; the upstream's Cookie header never
//! carries our cookies; a session we write reads back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use traefik_oidc_sidecar::config::{self, Env};
use traefik_oidc_sidecar::session::{FLOW_TTL, Flow, MAX_CHUNKS, RequestCookies, Scope, Session};

const PREFIX: &str = "TraefikOidcSidecar";

/// The session scope of a middleware as the configuration builds it (so new cookie settings
/// with defaults do not break this target).
fn scope() -> Scope {
    let yaml = format!(
        "middlewares:\n  default:\n    Provider:\n      Url: https://idp.test\n      ClientId: c\n    Secret: {}\n",
        "fuzzing-secret-".repeat(3)
    );
    let env = Env {
        var: &|_| None,
        file: &|_| Err(std::io::Error::other("no files")),
        within: &|_, _, _| Err(traefik_oidc_sidecar::files::Refused("no files".into())),
    };
    let cfg = config::parse(&yaml, &env).expect("the fuzz configuration loads");
    let m = &cfg.config.middlewares["default"];
    traefik_oidc_sidecar::auth::scope_of(&[m]).expect("one member makes a scope")
}

/// What a browser sends back for a list of Set-Cookie values (removals dropped).
fn browser(set: &[String]) -> String {
    set.iter()
        .filter_map(|s| cookie::Cookie::parse(s.clone()).ok())
        .filter(|c| !c.value().is_empty())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let now: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(1_700_000_000);
    let state = lines.next().unwrap_or("");
    let headers: Vec<&str> = lines.collect();
    let scope = scope();
    let c = scope.codec();
    let req = RequestCookies::parse(headers.iter().copied());

    if let Some(s) = scope.read_session(&req, now) {
        assert!(s.exp > now, "an expired session opened");
    }
    if let Ok((flow, clear)) = c.take_flow(&req, state, now) {
        assert_eq!(flow.state, state, "a flow opened for another state");
        assert!(
            flow.created.saturating_add(FLOW_TTL) > now,
            "an expired flow opened"
        );
        assert!(
            clear.contains("Max-Age=0"),
            "flow removal is not a removal: {clear}"
        );
    }
    let foreign = c.foreign_cookies(&req);
    for part in foreign.split("; ") {
        let name = part.split_once('=').map_or(part, |(n, _)| n);
        assert!(
            !c.is_ours(name),
            "our cookie {name:?} would reach the upstream"
        );
    }
    for removal in c
        .clear_present_session(&req)
        .iter()
        .chain(&c.clear_flows(&req))
    {
        assert!(
            removal.starts_with(&format!("{PREFIX}.")),
            "removal of a foreign cookie: {removal}"
        );
    }

    // Starting a flow next to whatever the browser sent keeps at most MAX_FLOWS alive and only
    // ever removes our own flow cookies.
    let flow = Flow {
        state: "A".repeat(43),
        nonce: "n".into(),
        verifier: None,
        return_to: "https://app.test/".into(),
        created: now,
        redirect_uri: "https://app.test/oidc/callback".into(),
        resources: Vec::new(),
        challenge: None,
        silent: false,
        step_up: None,
    };
    if let Ok(set) = c.start_flow(&flow, &req, now) {
        for s in set.iter().skip(1) {
            assert!(
                s.starts_with(&format!("{PREFIX}.flow.")) && s.contains("Max-Age=0"),
                "start_flow touched something else: {s}"
            );
        }
    }

    // A session holding the input round-trips through seal, chunking and reading.
    if now < u64::MAX - 10 {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(state.to_string()));
        claims.insert("groups".into(), Value::String(text.to_string()));
        // Built from JSON so fields the session gains later (with serde defaults) do not break
        // this target.
        let session: Session = serde_json::from_value(serde_json::json!({
            "sub": state,
            "claims": claims,
            "iat": now,
            "exp": now + 10,
            "id_token": text,
        }))
        .expect("a session literal");
        if let Ok(set) = scope.write_session(&session, &req, now) {
            let written: Vec<String> = set
                .iter()
                .filter(|s| !s.contains("Max-Age=0"))
                .cloned()
                .collect();
            assert!(written.len() <= MAX_CHUNKS);
            let back = browser(&written);
            let req2 = RequestCookies::parse(std::iter::once(back.as_str()));
            let read = scope
                .read_session(&req2, now)
                .expect("a written session must read back");
            assert_eq!(read.sub, session.sub);
            assert_eq!(read.claims, session.claims);
        }
    }
});
