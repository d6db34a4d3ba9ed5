pub fn run(_a: InspectArgs) -> anyhow::Result<std::process::ExitCode> {
    todo!()
}
#[derive(Debug, clap::Args)]
pub struct InspectArgs {}
