//! `igpt-onnx debug`: where and why runtimes disagree. `bisect` finds the first node whose
//! output differs, `reduce` writes the smallest graph that still shows it, `precision` finds
//! the fewest parts of a model to keep in float32 so a reduced precision meets its budget.

mod bisect;
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
    /// Find the first node, in topological order, whose output differs beyond tolerance
    /// between two runtimes (the first the reference), marking tensors in rounds.
    Bisect(bisect::BisectArgs),
    /// Bisect, then write the smallest subgraph that still shows the difference, with its
    /// inputs and the reference's outputs (ONNX backend-test layout).
    Reduce(bisect::ReduceArgs),
    /// Keep the fewest parts of the model in float32 so a reduced precision meets a budget;
    /// prints the `export` command that does.
    Precision(precision::Args),
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        DebugCommand::Bisect(a) => bisect::run_bisect(a),
        DebugCommand::Reduce(a) => bisect::run_reduce(a),
        DebugCommand::Precision(a) => precision::run(a),
    }
}
