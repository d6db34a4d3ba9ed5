//! The command line: clap subcommands, each a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod client;
pub mod events;
pub mod inspect;
pub mod manage;
pub mod pattern;
pub mod put;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod tail;
pub mod transform;

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
    /// Run the server: the HTTP API and delivery over a data directory (creating it and the
    /// `default` set on first start), until Ctrl-C / SIGTERM.
    Serve(serve::ServeArgs),
    /// Offline: list segments, verify CRCs, print records, repair damage.
    Inspect(inspect::InspectArgs),
    /// Load generator; prints one JSON object per result line.
    Bench(bench::BenchArgs),
    /// Event patterns offline: `pattern check` matches JSON lines of {pattern, event}.
    Pattern(pattern::PatternArgs),
    /// Transformations offline: `transform check` applies JSON lines of {transform, event}.
    Transform(transform::TransformArgs),
    /// Put events (a JSON object, an array, or JSON lines) into an event set on a server.
    Put(put::PutArgs),
    /// Follow an event set's new events live, one JSON line per event.
    Tail(tail::TailArgs),
    /// Manage event sets on a server: list, get, create, update, delete.
    Sets(manage::SetsArgs),
    /// Manage an event set's rules: list, get, create, update, delete.
    Rules(manage::RulesArgs),
    /// Manage a rule's targets and their cursors: list, get, create, update, delete, seek.
    Targets(manage::TargetsArgs),
    /// List and redrive a target's dead letters.
    DeadLetters(manage::DeadLettersArgs),
    /// Query an event set's stored events by time and pattern, or get one by id.
    Events(events::EventsArgs),
    /// Replay a window of stored events to rules' targets; follow, list and cancel replays.
    Replay(replay::ReplayArgs),
    /// Put realistic official cloud-service events into `default` on a server; `--list`
    /// prints the catalog of 23 products offline.
    ///
    /// Events of the built-in catalog (CVM, MySQL, Redis, CKafka, Oceanus, …), e.g.
    /// `eventbus simulate --product cvm --count 5`; see the examples below.
    Simulate(simulate::SimulateArgs),
}

/// Entry point used by the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts tracing itself, once its config file has said which format.
    if !matches!(cli.command, Command::Serve(_)) {
        init_tracing(cli.log_json);
    }
    let result = match cli.command {
        Command::Serve(a) => serve::run(a, cli.log_json),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Pattern(a) => pattern::run(a),
        Command::Transform(a) => transform::run(a),
        Command::Put(a) => put::run(a),
        Command::Tail(a) => tail::run(a),
        Command::Sets(a) => manage::run_sets(a),
        Command::Rules(a) => manage::run_rules(a),
        Command::Targets(a) => manage::run_targets(a),
        Command::DeadLetters(a) => manage::run_dead_letters(a),
        Command::Events(a) => events::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Simulate(a) => simulate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn init_tracing(json: bool) {
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
