//! `eventbus serve`: until the HTTP facade lands, opens the event bus on the data directory
//! (creating the catalog and the built-in `default` event set on a fresh one, recovering every
//! log), reports what it found, and waits for Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::bus::{BusConfig, EventBus};
use crate::config::DEFAULT_LISTEN;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address to listen on (the HTTP facade is not built yet; accepted for compatibility).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
}

/// Runs `serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Signal handlers go in before anything is opened, so a signal at any moment after
    // start-up leads to a clean shutdown.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let bus = EventBus::open(BusConfig {
        data_dir: args.data_dir.clone(),
        ..BusConfig::default()
    })
    .with_context(|| format!("opening the event bus in {}", args.data_dir.display()))?;
    let bus = std::sync::Arc::new(bus);
    // The delivery engine runs every enabled binding in the catalog.
    let engine = rt.block_on(async {
        crate::delivery::Engine::start(bus.clone(), crate::delivery::EngineOptions::default())
    });
    let sets = bus.list_sets()?;
    println!(
        "eventbus: data dir {} open; {} event set(s): {}; delivery running. HTTP facade not \
         built yet, not listening on {}. Ctrl-C to stop.",
        args.data_dir.display(),
        sets.len(),
        sets.iter()
            .map(|s| format!(
                "{} (offsets {}..{})",
                s.meta.name, s.stats.first_offset, s.stats.next_offset
            ))
            .collect::<Vec<_>>()
            .join(", "),
        args.listen
    );
    let stopped = rt.block_on(async {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    });
    tracing::info!("{stopped} received, shutting down");
    // Workers finish (or abandon after the drain timeout) their requests and commit cursors.
    rt.block_on(engine.shutdown());
    bus.shutdown().context("closing the event bus")?;
    println!("eventbus: closed cleanly");
    Ok(ExitCode::SUCCESS)
}
