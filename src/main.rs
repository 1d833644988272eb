//! The `traefik-oidc-sidecar` binary: command line, logging, listeners, signals (SIGTERM and
//! Ctrl-C drain and stop; SIGHUP reloads the configuration file, as does a change of its
//! content, see `traefik_oidc_sidecar::reload`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use traefik_oidc_sidecar::config::{self, LogFormat};
use traefik_oidc_sidecar::{
    App, SystemClock, listener, logging, reload, scope_warnings, serve_admin, serve_with_limits,
};

/// OpenID Connect login for anything behind Traefik (a forwardAuth server).
#[derive(Debug, Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TOS_COMMIT"), ")"), about)]
struct Cli {
    /// The YAML configuration file.
    #[arg(long, env = "TRAEFIK_OIDC_SIDECAR_CONFIG")]
    config: PathBuf,
    /// Validate the configuration, print every problem, and exit.
    #[arg(long)]
    check_config: bool,
    /// Override `listen` (ADDR:PORT).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Ask the running sidecar's /healthz on `listen` and exit 0 if it answers 200 (for
    /// container health checks: the image has no shell or curl).
    #[arg(long)]
    health_check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = match config::load(&cli.config) {
        Ok(l) => l,
        Err(problems) => {
            eprintln!("{}: {} problem(s):", cli.config.display(), problems.len());
            for p in &problems {
                eprintln!("  error: {p}");
            }
            return ExitCode::from(2);
        }
    };
    if cli.health_check {
        let addr = cli.listen.unwrap_or(loaded.config.listen);
        return match health_check(addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let scope_problems = scope_warnings(&loaded.config);
    if cli.check_config {
        for w in &loaded.warnings {
            eprintln!("  warning: {w}");
        }
        for w in &scope_problems {
            eprintln!("  warning: {w}");
        }
        for w in loaded.config.inline.permissive() {
            eprintln!("  warning: {w}");
        }
        if loaded.config.middlewares.is_empty() {
            // Valid: a sidecar for inline blocks only has none of its own.
            println!(
                "{}: valid (no middlewares of its own: inline blocks only)",
                cli.config.display()
            );
        } else {
            println!(
                "{}: valid ({} middleware(s): {})",
                cli.config.display(),
                loaded.config.middlewares.len(),
                loaded
                    .config
                    .middlewares
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut cfg = loaded.config;
    if let Some(l) = cli.listen {
        cfg.listen = l;
    }
    init_logging(cfg.log_format, &cfg.log_level);
    for w in &loaded.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    for w in &scope_problems {
        tracing::warn!("{w}");
    }
    for w in cfg.inline.permissive() {
        tracing::warn!("{w}");
    }
    // Before any socket opens: the listeners size their connection budgets from it.
    match listener::raise_open_file_limit() {
        Ok(l) => tracing::info!(
            soft_at_start = l.before,
            soft = l.soft,
            hard = l.hard,
            "open-file limit"
        ),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: config::Config, path: PathBuf) -> Result<(), String> {
    let app = Arc::new(App::new(&cfg, Arc::new(SystemClock))?);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", cfg.listen))?;
    let metrics = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .map_err(|e| format!("metricsListen {}: {e}", cfg.metrics_listen))?;
    app.start_discovery();
    if let Some(t) = &cfg.tracing {
        traefik_oidc_sidecar::telemetry::trace::install(t)?;
        tracing::info!(otlp_endpoint = %t.otlp_endpoint, service_name = %t.service_name, sample_ratio = t.sample_ratio, "OpenTelemetry traces on");
    }
    tokio::spawn(reload::watch(
        app.clone(),
        path,
        cfg.clone(),
        reload::POLL_EVERY,
    ));
    tracing::info!(listen = %cfg.listen, metrics = %cfg.metrics_listen, middlewares = cfg.middlewares.len(), "traefik-oidc-sidecar started");
    let settings = listener::Settings::resolve(&cfg.limits, listener::open_file_limit());
    if cfg.limits.max_connections.is_some()
        && settings.max_connections > listener::derived_max_connections(listener::open_file_limit())
    {
        tracing::warn!(
            max_connections = settings.max_connections,
            "limits.maxConnections is more than the open-file limit leaves for connections; \
             accept may fail with \"too many open files\""
        );
    }
    tracing::info!(
        max_connections = settings.max_connections,
        header_timeout = ?settings.header_timeout,
        idle_timeout = ?settings.idle_timeout,
        "connection limits"
    );
    // One shutdown signal for every listener: the admin listener (when on) stops with the others.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin = match &cfg.admin {
        Some(a) => {
            let socket = tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|e| format!("admin.listen {}: {e}", a.listen))?;
            tracing::info!(admin = %a.listen, "admin API on");
            Some(tokio::spawn(serve_admin(
                app.clone(),
                socket,
                a.token.clone(),
                cfg.limits.clone(),
                until_stopped(stopped.clone()),
            )))
        }
        None => None,
    };
    serve_with_limits(app, listener, metrics, &cfg.limits, until_stopped(stopped))
        .await
        .map_err(|e| format!("server: {e}"))?;
    if let Some(a) = admin {
        a.await
            .map_err(|e| format!("admin server: {e}"))?
            .map_err(|e| format!("admin server: {e}"))?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// GET /healthz on `addr` (an unspecified address means this host).
fn health_check(mut addr: std::net::SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = std::time::Duration::from_secs(2);
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head == b"HTTP/1.1 200" {
        Ok(())
    } else {
        Err(format!("answered {}", String::from_utf8_lossy(&head)))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

fn init_logging(format: LogFormat, level: &str) {
    // RUST_LOG, when set, replaces the configured level; middlewares with their own `LogLevel`
    // pass either way (see the logging module).
    let filter = logging::filter(level);
    // Colour codes only on a terminal: log files and container logs get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}
