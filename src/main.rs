//! The `eventbus` binary: parses arguments, starts tracing, hands over to the CLI.

/// mimalloc instead of glibc malloc: the server allocates small buffers on several threads
/// at once (runtime workers, the log writer, sled), and glibc's arena locks showed up as a
/// tenth of the CPU in `bench deliver` profiles (futex wait/wake under malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventbus::cli::main()
}
