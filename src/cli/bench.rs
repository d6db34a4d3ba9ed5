pub fn run(_a: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    todo!()
}
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}
