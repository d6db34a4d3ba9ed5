//! `eventbus serve`: opens the event bus on the data directory (creating the catalog and the
//! built-in `default` event set on a fresh one, recovering every log), starts delivery, and
//! serves the HTTP API until SIGINT / SIGTERM.
//!
//! Settings come from, in order of precedence: flags, `EVENTBUS_*` environment variables,
//! the TOML file given by `--config` / `EVENTBUS_CONFIG`, built-in defaults
//! ([`crate::config::Config`]).
//!
//! Every `retention_interval_secs` (default 60) every event set's retention policy is applied
//! ([`EventBus::schedule_retention`]), so a quiet set's expired events go too.
//!
//! Shutdown: stop accepting connections, end `tail` streams, let requests in flight finish
//! (at most `shutdown_timeout_ms`), stop the retention schedule (after a pass in progress),
//! stop delivery (workers finish or hand back their requests within
//! `delivery.drain_timeout_ms` and commit their cursors), flush the catalog and fsync the
//! logs, exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::api::{ApiOptions, AppState, auth::Auth};
use crate::bus::{BusConfig, EventBus};
use crate::config::{Config, LogFormat, PersistPolicy, parse_persist};
use crate::delivery::{Engine, EngineOptions};
use crate::event::EventLimits;
use crate::targets::TargetEnv;

/// Arguments of `serve`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    eventbus serve                                    # ./data, 127.0.0.1:8080, no auth\n  \
    eventbus serve --listen 127.0.0.1:0               # any free port (printed on stdout)\n  \
    eventbus serve --config /etc/eventbus.toml        # settings and tokens from a file\n  \
    EVENTBUS_LISTEN=0.0.0.0:8080 eventbus serve --config eventbus.toml   # needs [[auth.tokens]]\n\
    Every config key, its default and its variable: docs/CONFIG.md.")]
pub struct ServeArgs {
    /// Data directory (created if missing). Default = ./data.
    #[arg(long, env = "EVENTBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on. Default = 127.0.0.1:8080. A non-loopback address needs tokens
    /// in the config file.
    #[arg(long, env = "EVENTBUS_LISTEN")]
    pub listen: Option<String>,
    /// TOML config file (see docs/CONFIG.md).
    #[arg(long, env = "EVENTBUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Durability: `always` (fsync before acknowledging; default), `never`, or
    /// `interval:MS`.
    #[arg(long, env = "EVENTBUS_PERSIST", value_parser = parse_persist)]
    pub persist: Option<PersistPolicy>,
    /// Largest request body in bytes (413 above it). Default = 4 MiB.
    #[arg(long, env = "EVENTBUS_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format `text` or `json` (also the global `--log-json`). Default = text.
    #[arg(long, env = "EVENTBUS_LOG_FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    /// Threads for HTTP and delivery. Default = 0: one fewer than the CPUs (at least one), as
    /// the log's writer thread wants a core of its own.
    #[arg(long, env = "EVENTBUS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Apply every event set's retention every this many seconds; 0 = no schedule (only at
    /// segment rolls and start-up). Default = 60.
    #[arg(long, env = "EVENTBUS_RETENTION_INTERVAL_SECS")]
    pub retention_interval_secs: Option<u64>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format: use text or json")),
    }
}

/// The effective configuration: file, then environment and flags on top.
pub fn resolve_config(args: &ServeArgs, log_json: bool) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path).context("reading the config file")?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    if let Some(p) = args.persist {
        cfg.persist = p;
    }
    if let Some(b) = args.max_body_bytes {
        cfg.max_body_bytes = b;
    }
    if let Some(f) = args.log_format {
        cfg.log_format = f;
    }
    if let Some(n) = args.worker_threads {
        cfg.worker_threads = n;
    }
    if let Some(n) = args.retention_interval_secs {
        cfg.retention_interval_secs = n;
    }
    if log_json {
        cfg.log_format = LogFormat::Json;
    }
    if cfg.max_body_bytes < 1024 {
        bail!("max_body_bytes must be at least 1024");
    }
    cfg.targets.validate().context("in [targets]")?;
    Ok(cfg)
}

/// What `file`, `command` and `event-set` targets get from the configuration: the file root
/// (default `<data_dir>/target-files`), the configured commands and the hop limit. The engine
/// adds the sink.
pub fn target_env(cfg: &Config) -> TargetEnv {
    TargetEnv {
        commands: Arc::new(cfg.targets.commands.clone()),
        file_root: Some(cfg.targets.file_root_in(&cfg.data_dir)),
        max_event_set_hops: cfg.targets.max_event_set_hops,
        ..TargetEnv::default()
    }
}

/// Refuses to expose an unauthenticated server beyond this machine.
fn check_exposure(addr: SocketAddr, auth: &Auth) -> anyhow::Result<()> {
    if auth.is_open() && !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr} without authentication: configure at least one \
             [[auth.tokens]] entry in the config file, or listen on a loopback address \
             (127.0.0.1 / ::1)"
        );
    }
    Ok(())
}

/// Runs `serve`. `log_json` is the global `--log-json` flag.
pub fn run(args: ServeArgs, log_json: bool) -> anyhow::Result<ExitCode> {
    let cfg = resolve_config(&args, log_json)?;
    super::init_tracing(cfg.log_format == LogFormat::Json);
    let auth = Auth::new(&cfg.auth.tokens).context("in [auth]")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.runtime_threads())
        .enable_all()
        .build()?;
    rt.block_on(serve(cfg, auth))
}

async fn serve(cfg: Config, auth: Auth) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signal handlers go in before anything is opened, so a signal at any moment after
    // start-up leads to a clean shutdown.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;

    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&cfg.listen)
        .await
        .with_context(|| format!("resolving the listen address {:?}", cfg.listen))?
        .collect();
    let Some(addr) = addrs.first().copied() else {
        bail!("the listen address {:?} resolves to nothing", cfg.listen);
    };
    for a in &addrs {
        check_exposure(*a, &auth)?;
    }

    let data_dir = cfg.data_dir.clone();
    let bus_cfg = BusConfig {
        data_dir: cfg.data_dir.clone(),
        persist: cfg.persist,
        max_segment_bytes: cfg.max_segment_bytes,
        event_limits: EventLimits {
            max_event_bytes: cfg.max_event_bytes,
        },
        catalog_limits: cfg.limits,
    };
    let bus = tokio::task::spawn_blocking(move || EventBus::open(bus_cfg))
        .await?
        .with_context(|| format!("opening the event bus in {}", data_dir.display()))?;
    let bus = Arc::new(bus);
    let engine = Arc::new(Engine::start(
        bus.clone(),
        EngineOptions {
            share_reads: cfg.delivery.share_reads,
            drain_timeout: Duration::from_millis(cfg.delivery.drain_timeout_ms),
            restart_delay: Duration::from_millis(cfg.delivery.restart_delay_ms),
            trace: cfg.delivery.trace,
            trace_retention: Duration::from_secs(
                cfg.delivery.trace_retention_hours.saturating_mul(3600),
            ),
            target_env: target_env(&cfg),
            ..EngineOptions::default()
        },
    ));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            engine.shutdown().await;
            bus.shutdown().context("closing the event bus")?;
            return Err(e).with_context(|| format!("listening on {addr}"));
        }
    };
    let local = listener.local_addr()?;
    let sets = bus.list_sets()?;
    // 0 = no schedule (the handle then runs nothing).
    let retention = bus.schedule_retention(Duration::from_secs(cfg.retention_interval_secs));
    tracing::info!(
        data_dir = %cfg.data_dir.display(),
        sets = sets.len(),
        auth = if auth.is_open() { "off" } else { "bearer tokens" },
        persist = ?cfg.persist,
        retention_interval_secs = cfg.retention_interval_secs,
        "eventbus ready"
    );
    // Scripts (and the benches) wait for this exact line.
    println!("eventbus: listening on http://{local}");
    let state = AppState::new(
        bus.clone(),
        engine.clone(),
        ApiOptions {
            max_body_bytes: cfg.max_body_bytes,
            auth,
        },
    );
    let shutdown = async move {
        let which = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!("{which} received, shutting down");
    };
    let served = crate::api::serve(
        listener,
        state,
        shutdown,
        Duration::from_millis(cfg.shutdown_timeout_ms),
    )
    .await;
    // Whatever happened to the listener, delivery state and logs are closed properly. The
    // retention schedule goes first: a pass in progress finishes before the logs close.
    retention.stop().await;
    engine.shutdown().await;
    let closed = tokio::task::spawn_blocking(move || bus.shutdown()).await?;
    served.context("serving HTTP")?;
    closed.context("closing the event bus")?;
    println!("eventbus: closed cleanly");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_policies_parse_and_bad_ones_are_named() {
        assert_eq!(parse_persist("always"), Ok(PersistPolicy::Always));
        assert_eq!(
            parse_persist("interval:50"),
            Ok(PersistPolicy::IntervalMs(50))
        );
        assert!(
            parse_persist("interval:0")
                .unwrap_err()
                .contains("interval:0")
        );
        assert!(parse_persist("sometimes").is_err());
    }

    #[test]
    fn an_open_server_refuses_non_loopback_addresses() {
        let open = Auth::new(&[]).unwrap();
        assert!(check_exposure("127.0.0.1:8080".parse().unwrap(), &open).is_ok());
        assert!(check_exposure("[::1]:8080".parse().unwrap(), &open).is_ok());
        let e = check_exposure("0.0.0.0:8080".parse().unwrap(), &open).unwrap_err();
        assert!(e.to_string().contains("auth.tokens"), "{e}");
        let closed = Auth::new(&[crate::config::TokenConfig {
            token: "0123456789abcdef".into(),
            role: crate::config::Role::Admin,
            name: None,
        }])
        .unwrap();
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), &closed).is_ok());
    }

    #[test]
    fn the_retention_interval_flag_parses() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "eventbus",
            "serve",
            "--retention-interval-secs",
            "0",
        ])
        .unwrap();
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("not serve: {cli:?}");
        };
        assert_eq!(args.retention_interval_secs, Some(0));
        assert!(
            crate::cli::Cli::try_parse_from([
                "eventbus",
                "serve",
                "--retention-interval-secs",
                "-1"
            ])
            .is_err()
        );
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventbus.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nmax_body_bytes = 2048\nretention_interval_secs = 5\n\
             [delivery]\nshare_reads = false\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: None,
            listen: Some("127.0.0.1:7000".into()),
            config: Some(path.clone()),
            persist: None,
            max_body_bytes: None,
            log_format: None,
            worker_threads: None,
            retention_interval_secs: None,
        };
        let cfg = resolve_config(&args, false).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:7000");
        assert_eq!(cfg.max_body_bytes, 2048);
        assert!(!cfg.delivery.share_reads);
        assert_eq!(cfg.data_dir, PathBuf::from(crate::config::DEFAULT_DATA_DIR));
        assert_eq!(cfg.retention_interval_secs, 5);
        let flagged = ServeArgs {
            retention_interval_secs: Some(0),
            ..args
        };
        assert_eq!(
            resolve_config(&flagged, false)
                .unwrap()
                .retention_interval_secs,
            0
        );
        let args = flagged;
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let e = resolve_config(&args, false).unwrap_err();
        assert!(format!("{e:#}").contains("listne"), "{e:#}");
    }

    #[test]
    fn the_targets_section_reaches_the_target_env_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventbus.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/eb\"\n[targets]\nmax_event_set_hops = 4\n\
             [targets.commands.backup]\nprogram = \"/usr/local/bin/backup\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: None,
            listen: None,
            config: Some(path.clone()),
            persist: None,
            max_body_bytes: None,
            log_format: None,
            worker_threads: None,
            retention_interval_secs: None,
        };
        let env = target_env(&resolve_config(&args, false).unwrap());
        assert_eq!(env.max_event_set_hops, 4);
        assert_eq!(
            env.file_root.as_deref(),
            Some(std::path::Path::new("/srv/eb/target-files"))
        );
        assert!(env.commands.contains_key("backup"));
        std::fs::write(
            &path,
            "[targets.commands.backup]\nprogram = \"backup.sh\"\n",
        )
        .unwrap();
        let e = resolve_config(&args, false).unwrap_err();
        assert!(
            format!("{e:#}").contains("targets.commands.backup.program"),
            "{e:#}"
        );
    }
}
