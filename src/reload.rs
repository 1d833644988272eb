//! Reloading the configuration file: on change (its content hash, polled every
//! [`POLL_EVERY`]) and on SIGHUP.
//!
//! A valid new file replaces the old configuration at once ([`App::reload`]): the new
//! generation is built (unchanged session scope keys keep their [`crate::session::Scope`]
//! objects, so their sessions and memory carry on), its providers' discovery is given up to
//! [`READY_WAIT`] to load so the swap causes no burst of 503s, then it is swapped in. Requests
//! already running finish on the generation they read. Registered inline blocks stay, checked
//! against the new `inline:` rules (those now refused are dropped and re-register, or fail, on
//! next use). An invalid file is refused with every problem logged, and the old configuration
//! keeps serving.
//!
//! Polling rather than file-system events: a mounted ConfigMap or secret changes by a symlink
//! swap that inotify watches on the file miss, and two seconds of latency is fine for config.
//! What only a restart changes (the sockets, connection limits, log format and level, tracing,
//! the admin listener and its token) is
//! logged as such when it differs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::App;
use crate::config::{self, Config, Problem};
use crate::scope_groups;

/// How often the file's content is checked.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long a reload waits for the new providers' discovery before swapping anyway.
pub const READY_WAIT: Duration = Duration::from_secs(10);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// YAML middlewares now configured.
    pub middlewares: usize,
    /// Inline blocks dropped because the new `inline:` rules refuse them.
    pub dropped_blocks: usize,
}

impl App {
    /// Replaces the configuration with `cfg` (see the module docs). The sockets, connection
    /// limits and logging of `cfg` are not applied: they change at a restart.
    pub async fn reload(&self, cfg: &Config) -> Result<Reloaded, String> {
        let blocks = self.blocks.blocks();
        let inline: Vec<&crate::config::MiddlewareConfig> =
            blocks.iter().map(|b| &b.middleware.cfg).collect();
        let next = Arc::new(crate::Generation::build(cfg, &self.scopes, &inline)?);
        if self.discovering() {
            next.start_discovery();
            let deadline = tokio::time::Instant::now() + READY_WAIT;
            while !next.ready() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !next.ready() {
                tracing::warn!(
                    "reload: some providers have no discovery yet; their requests answer 503 until it loads"
                );
            }
        }
        let middlewares = next.middlewares.len();
        let rules = next.inline.clone();
        // Each block parsed again under the new rules (a variable or directory no longer
        // allowed, a provider struck off): off the async workers, as parsing may read a file.
        let judged = {
            let (rules, checking) = (rules.clone(), blocks.clone());
            tokio::task::spawn_blocking(move || {
                checking
                    .iter()
                    .filter(|b| {
                        b.body.len() <= rules.max_block_bytes
                            && rules.registration_open()
                            && config::parse_block(
                                &b.body,
                                &b.middleware.cfg.name,
                                &config::Env::process(),
                                &rules,
                            )
                            .is_ok_and(|p| rules.allows_provider(&p.config.provider.url))
                    })
                    .map(|b| b.hash.clone())
                    .collect::<std::collections::HashSet<String>>()
            })
            .await
            .map_err(|e| format!("re-checking inline blocks: {e}"))?
        };
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        // A block registered while the check ran is kept: it was judged by the new rules'
        // generation or by the old one an instant before, and is checked at the next reload.
        let seen: std::collections::HashSet<&str> =
            blocks.iter().map(|b| b.hash.as_str()).collect();
        let dropped = self.blocks.retain(rules.max_blocks, |b| {
            judged.contains(&b.hash) || !seen.contains(b.hash.as_str())
        });
        for b in &dropped {
            self.scopes.leave(&b.middleware.cfg);
            tracing::info!(middleware = %b.label, block = %&b.hash[..12], "inline block dropped: the reloaded inline: rules refuse it");
        }
        Ok(Reloaded {
            middlewares,
            dropped_blocks: dropped.len(),
        })
    }
}

/// Loads `path` and applies it to `app`; every problem is logged and the old configuration
/// stays when the file is invalid. `running` is the configuration the process started with
/// (for the settings only a restart changes).
pub async fn reload_file(
    app: &App,
    path: &Path,
    running: &Config,
) -> Result<Reloaded, Vec<Problem>> {
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || config::load(&owned))
        .await
        .unwrap_or_else(|e| {
            Err(vec![Problem {
                path: "(file)".into(),
                message: format!("reading the file: {e}"),
            }])
        });
    let loaded = match loaded {
        Ok(l) => l,
        Err(problems) => {
            tracing::error!(file = %path.display(), problems = problems.len(), "configuration reload refused; the previous configuration keeps serving");
            for p in &problems {
                tracing::error!(key = %p.path, "{}", p.message);
            }
            return Err(problems);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    let cfg = loaded.config;
    for (what, changed) in [
        ("listen", cfg.listen != running.listen),
        (
            "metricsListen",
            cfg.metrics_listen != running.metrics_listen,
        ),
        ("limits", cfg.limits != running.limits),
        ("logFormat", cfg.log_format != running.log_format),
        ("logLevel", cfg.log_level != running.log_level),
        ("tracing", cfg.tracing != running.tracing),
        ("admin", cfg.admin != running.admin),
    ] {
        if changed {
            tracing::warn!(
                key = what,
                "changed in the file; takes effect at the next restart"
            );
        }
    }
    for w in crate::scope_warnings(&cfg)
        .into_iter()
        .chain(cfg.inline.permissive())
    {
        tracing::warn!("{w}");
    }
    match app.reload(&cfg).await {
        Ok(r) => {
            let groups = scope_groups(&cfg).len();
            tracing::info!(file = %path.display(), middlewares = r.middlewares, scopes = groups, dropped_inline_blocks = r.dropped_blocks, "configuration reloaded");
            Ok(r)
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "configuration reload refused; the previous configuration keeps serving");
            Err(vec![Problem {
                path: "(file)".into(),
                message: e,
            }])
        }
    }
}

/// The SHA-256 of the file's content (`None` when it cannot be read): the same capped,
/// regular-file read as the load, off the async workers.
async fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::files::read_capped(&owned, crate::files::MAX_CONFIG_BYTES)
            .ok()
            .map(|b| Sha256::digest(&b).into())
    })
    .await
    .ok()
    .flatten()
}

/// Watches `path` until the process ends: reloads when its content changes (checked every
/// `every`) and on SIGHUP (unix).
pub async fn watch(app: Arc<App>, path: PathBuf, running: Config, every: Duration) {
    let mut seen = fingerprint(&path).await;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let forced = tokio::select! {
            () = signalled => true,
            _ = tick.tick() => false,
        };
        let now = fingerprint(&path).await;
        if forced {
            tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
        } else if now == seen || now.is_none() {
            // Unchanged, or unreadable for a moment (an editor's rename): look again later.
            continue;
        }
        seen = now;
        let _ = reload_file(&app, &path, &running).await;
    }
}
