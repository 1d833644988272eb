//! `mint-sessions`: N distinct, valid session cookies for the load benchmark's Part 4 (the
//! sidecar's resident memory after it has seen N different sessions).
//!
//! ```text
//! mint-sessions <sidecar config file> <middleware> <Cookie header> <count> <output file>
//! ```
//!
//! The benchmark logs in once through the real OP; this tool opens that session with the
//! crate's own code (the middleware's scope built from the configuration file exactly as the
//! sidecar builds it, so the same key derivation), then seals `count` copies that differ in
//! `sub`, `sid` and `preferred_username` and writes one `Cookie` header per line. Line `i`
//! (counting from 0) carries `sub` `bench-sub-<i>`, `sid` `bench-sid-<i>` and
//! `preferred_username` `bench-user-<i>`, so a middleware with the default identity headers
//! answers it with `X-Forwarded-User: bench-user-<i>`. Every copy keeps the login's claims,
//! tokens and expiry; cookies of the header that are not the scope's own are kept too.
//!
//! Only cookie-mode middlewares: a Redis-mode session is not in the cookie. Exits 2 with a
//! message on any problem (unreadable configuration, no session in the header, a session that
//! does not open under the configured key, or one that has expired).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use traefik_oidc_sidecar::auth::scope_of;
use traefik_oidc_sidecar::config::{self, SessionStorage};
use traefik_oidc_sidecar::session::RequestCookies;

const USAGE: &str =
    "usage: mint-sessions <sidecar config file> <middleware> <Cookie header> <count> <output file>";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(n) => {
            println!("mint-sessions: {n} sessions written");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint-sessions: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<usize, String> {
    let [config_path, name, cookie, count, out] = args.as_slice() else {
        return Err(USAGE.to_string());
    };
    let count: usize = count.parse().map_err(|e| format!("count {count:?}: {e}"))?;
    let loaded = config::load(Path::new(config_path)).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("{config_path}: {}", list.join("; "))
    })?;
    let cfg = loaded
        .config
        .middlewares
        .get(name)
        .ok_or_else(|| format!("{config_path} has no middleware {name:?}"))?;
    if cfg.session_storage != SessionStorage::Cookie {
        return Err(format!(
            "middleware {name:?} keeps its sessions in Redis: only cookie-mode sessions can be minted"
        ));
    }
    let scope = scope_of(&[cfg]).ok_or("no session scope")?;
    let codec = scope.codec();
    let req = RequestCookies::parse(std::iter::once(cookie.as_str()));
    let (chunks, n) = codec
        .session_chunks(&req)
        .ok_or_else(|| format!("the Cookie header carries no session of middleware {name:?}"))?;
    let session = codec
        .open_session(&chunks[..n])
        .ok_or("the session does not open under the configured Secret and scope")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if session.exp <= now {
        return Err(format!("the session expired {} s ago", now - session.exp));
    }
    let foreign = codec.foreign_cookies(&req);

    let file = File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = BufWriter::new(file);
    // Sealed with no prior cookies, so no removals of chunks beyond the new count are mixed in.
    let none = RequestCookies::default();
    for i in 0..count {
        let mut s = session.clone();
        s.sub = format!("bench-sub-{i}");
        s.sid = Some(format!("bench-sid-{i}"));
        if s.claims.contains_key("sub") {
            s.claims.insert("sub".into(), Value::String(s.sub.clone()));
        }
        s.claims.insert(
            "preferred_username".into(),
            Value::String(format!("bench-user-{i}")),
        );
        let set = codec
            .write_session(&s, &none, now)
            .map_err(|e| format!("sealing session {i}: {e}"))?;
        // `Set-Cookie: name=value; Path=/; …` → the `name=value` a browser sends back.
        let pairs: Vec<&str> = set.iter().filter_map(|c| c.split(';').next()).collect();
        let mut line = pairs.join("; ");
        if !foreign.is_empty() {
            line.push_str("; ");
            line.push_str(&foreign);
        }
        writeln!(w, "{line}").map_err(|e| format!("{out}: {e}"))?;
    }
    w.flush().map_err(|e| format!("{out}: {e}"))?;
    Ok(count)
}
