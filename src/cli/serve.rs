//! `eventbus serve`: until the HTTP facade lands, opens the store (the `default` event set)
//! under the data directory, reports recovery, and waits for Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::DEFAULT_LISTEN;
use crate::store::{EventLog, LogOptions};

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
    let dir = args.data_dir.join("sets").join("default");
    let log = EventLog::open(&dir, LogOptions::default())
        .with_context(|| format!("opening event set log {}", dir.display()))?;
    let stats = log.stats();
    let report = log.recovery_report();
    println!(
        "eventbus: store open at {} (event set `default`: offsets {}..{}, {} segment(s){}); \
         HTTP facade not built yet, not listening on {}. Ctrl-C to stop.",
        args.data_dir.display(),
        stats.first_offset,
        stats.next_offset,
        stats.segments,
        match &report.torn_tail {
            Some(t) => format!(", torn tail of {} bytes cut", t.bytes_cut),
            None => String::new(),
        },
        args.listen
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = ctrl_c => r?,
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        ctrl_c.await?;
        anyhow::Ok(())
    })?;
    log.close().context("closing the store")?;
    println!("eventbus: store closed cleanly");
    Ok(ExitCode::SUCCESS)
}
