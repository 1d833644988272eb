//! Logging: the global filter, and each middleware's own `LogLevel` for its decision lines.
//!
//! The global level (`logLevel`, or `RUST_LOG` when set) filters everything as usual. A
//! middleware's `LogLevel` (traefik-oidc-auth's `DEBUG`/`INFO`/`WARN`/`ERROR`) raises or lowers
//! the verbosity of **that middleware's decision lines** (allowed, denied, redirect to login,
//! login complete, refresh, logout…), in both directions, whatever the global level:
//!
//! - A middleware without `LogLevel` emits its decision lines under the module's own target, so
//!   the global filter decides, exactly as before.
//! - A middleware with `LogLevel` decides itself, with [`decision!`]: a line more verbose than
//!   its level is never emitted; the others are emitted under the target [`OWN_LEVEL_TARGET`],
//!   which [`filter`] always lets through. So `LogLevel: DEBUG` shows that middleware's debug
//!   lines under a global `info`, and `LogLevel: ERROR` silences its info and debug lines under a
//!   global `debug`.
//!
//! The level of a line is part of its static call-site metadata in `tracing`, so the decision
//! cannot be a per-event filter on the subscriber without visiting every event's fields; a
//! runtime check before a second call site costs one comparison.

use tracing_subscriber::EnvFilter;

/// Target of the decision lines of middlewares that set their own `LogLevel`.
pub const OWN_LEVEL_TARGET: &str = "traefik_oidc_sidecar::middleware";

/// The global filter: `RUST_LOG` when set, else `level` (with the HTTP client crates held at
/// `warn`); in both cases [`OWN_LEVEL_TARGET`] passes (those lines were already filtered by
/// their middleware's own level).
pub fn filter(level: &str) -> EnvFilter {
    let base = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=warn,reqwest=warn")));
    match format!("{OWN_LEVEL_TARGET}=trace").parse() {
        Ok(d) => base.add_directive(d),
        Err(_) => base,
    }
}

/// Emits a decision line of a middleware at `$lvl` (`DEBUG`, `INFO`, `WARN`, `ERROR`), obeying
/// its own level `$own: Option<tracing::Level>` when it has one (see the module docs).
macro_rules! decision {
    ($own:expr, $lvl:ident, $($arg:tt)+) => {
        match $own {
            None => ::tracing::event!(::tracing::Level::$lvl, $($arg)+),
            // `tracing` orders levels by verbosity: ERROR < WARN < INFO < DEBUG < TRACE.
            Some(own) => {
                if ::tracing::Level::$lvl <= own {
                    ::tracing::event!(
                        target: $crate::logging::OWN_LEVEL_TARGET,
                        ::tracing::Level::$lvl,
                        $($arg)+
                    )
                }
            }
        }
    };
}
pub(crate) use decision;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing::Level;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every decision line of three middlewares (no level, DEBUG, ERROR) at every level, under
    /// the global `global` filter; returns what was written.
    fn emit_all(global: &str) -> String {
        let out = Captured::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(
                // Not `filter()`: a RUST_LOG set in the test environment must not change this.
                EnvFilter::new(global)
                    .add_directive(format!("{OWN_LEVEL_TARGET}=trace").parse().unwrap()),
            )
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for (name, own) in [
                ("plain", None),
                ("loud", Some(Level::DEBUG)),
                ("quiet", Some(Level::ERROR)),
            ] {
                decision!(own, DEBUG, middleware = name, "line-debug");
                decision!(own, INFO, middleware = name, "line-info");
                decision!(own, WARN, middleware = name, "line-warn");
                decision!(own, ERROR, middleware = name, "line-error");
            }
        });
        let v = out.0.lock().unwrap().clone();
        String::from_utf8(v).unwrap()
    }

    fn lines(log: &str, mw: &str) -> Vec<String> {
        let mut v: Vec<String> = log
            .lines()
            .filter(|l| l.contains(&format!("middleware=\"{mw}\"")))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("line-")))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_middleware_level_overrides_the_global_level_both_ways() {
        let log = emit_all("info");
        assert_eq!(
            lines(&log, "plain"),
            ["line-error", "line-info", "line-warn"],
            "{log}"
        );
        assert_eq!(
            lines(&log, "loud"),
            ["line-debug", "line-error", "line-info", "line-warn"],
            "DEBUG shows debug lines under a global info:\n{log}"
        );
        assert_eq!(lines(&log, "quiet"), ["line-error"], "{log}");

        let log = emit_all("debug");
        assert_eq!(lines(&log, "plain").len(), 4, "{log}");
        assert_eq!(
            lines(&log, "quiet"),
            ["line-error"],
            "ERROR silences info/debug:\n{log}"
        );

        let log = emit_all("error");
        assert_eq!(lines(&log, "plain"), ["line-error"], "{log}");
        assert_eq!(lines(&log, "loud").len(), 4, "{log}");
    }
}
