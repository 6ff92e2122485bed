//! `igpt-onnx debug`: where and why runtimes disagree. `bisect` finds the first node whose
//! output differs, `reduce` writes the smallest graph that still shows it, `precision` finds
//! the fewest parts of a model to keep in float32 so a reduced precision meets its budget.

pub mod precision;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DebugCommand,
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Keep the fewest parts of the model in float32 so a reduced precision meets a budget;
    /// prints the `export` command that does.
    Precision(precision::Args),
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        DebugCommand::Precision(a) => precision::run(a),
    }
}
