//! The `eventbus` binary: parses arguments, starts tracing, hands over to the CLI.

fn main() -> std::process::ExitCode {
    eventbus::cli::main()
}
