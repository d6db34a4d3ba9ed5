//! The command line: clap subcommands, each a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod inspect;
pub mod pattern;
pub mod serve;

/// eventbus: a durable, embedded event bus for cloud-service events.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the event bus on a data directory (creating `default` on a fresh one) and run
    /// until Ctrl-C / SIGTERM. The HTTP facade is not built yet.
    Serve(serve::ServeArgs),
    /// Offline: list segments, verify CRCs, print records, repair damage.
    Inspect(inspect::InspectArgs),
    /// Load generator; prints one JSON object per result line.
    Bench(bench::BenchArgs),
    /// Event patterns offline: `pattern check` matches JSON lines of {pattern, event}.
    Pattern(pattern::PatternArgs),
}

/// Entry point used by the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Pattern(a) => pattern::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The default data directory, as a path.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from(crate::config::DEFAULT_DATA_DIR)
}
