//! `igpt-onnx debug bisect` and `debug reduce`: the flags they share with verify, and their
//! reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::debug::{self, DebugOptions, InputSource, DEFAULT_MAX_MARKED};
use igpt_onnx::runtime::RuntimeKind;

use crate::cli::flags::{runtimes_help, RuntimeFlags, ToleranceFlags};
use crate::cli::verify::runtime_kind;

/// The graph, runtimes, inputs and tolerance, as verify takes them.
#[derive(clap::Args)]
pub struct Common {
    /// The graph (this tool's export or another tool's).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "ort-cpu,tract", value_parser = runtime_kind, help = runtimes_help())]
    runtimes: Vec<Option<RuntimeKind>>,
    #[command(flatten)]
    runtime: RuntimeFlags,
    /// Feed the inputs of this golden case (for the graph's head).
    #[arg(long, value_name = "CASE", conflicts_with_all = ["random_inputs", "inputs"])]
    fixture: Option<PathBuf>,
    /// Feed seeded random inputs, as verify --random-inputs: the first of N sets whose outputs
    /// differ is bisected (default: 1 set when no inputs are given).
    #[arg(long, value_name = "N", conflicts_with = "inputs")]
    random_inputs: Option<usize>,
    /// Feed every graph input by name from this safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    inputs: Option<PathBuf>,
    #[command(flatten)]
    tolerance: ToleranceFlags,
    /// The reference is a run saved elsewhere by --save-tensors (of this graph and these
    /// inputs); --runtimes names the one runtime compared with it.
    #[arg(long, value_name = "SAVED", conflicts_with = "save_tensors")]
    compare_with: Option<PathBuf>,
    /// With one runtime: run the graph with every float tensor marked (in rounds of
    /// --max-marked) and save them all, to bisect against on another machine with
    /// --compare-with.
    #[arg(long, value_name = "FILE")]
    save_tensors: Option<PathBuf>,
    /// At most N tensors marked as extra outputs per round (memory: N of the graph's largest
    /// intermediate tensors beside the weights).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_MARKED)]
    max_marked: usize,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl Common {
    fn options(&self) -> DebugOptions {
        let inputs = match (&self.fixture, self.random_inputs, &self.inputs) {
            (Some(case), _, _) => InputSource::Fixture(case.clone()),
            (None, _, Some(file)) => InputSource::File(file.clone()),
            (None, n, None) => InputSource::Random(n.unwrap_or(1)),
        };
        DebugOptions {
            runtimes: self.runtimes.iter().flatten().copied().collect(),
            runtime: self.runtime.options(false),
            inputs,
            atol: self.tolerance.atol,
            rtol: self.tolerance.rtol,
            per_output: self.tolerance.tolerance.clone(),
            max_marked: self.max_marked,
            compare_with: self.compare_with.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct BisectArgs {
    #[command(flatten)]
    common: Common,
    /// Draw the error of every measured tensor along the graph (SVG).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

pub fn run_bisect(a: BisectArgs) -> Result<ExitCode> {
    igpt_onnx::runtime::install_panic_hook();
    if let Some(out) = &a.common.save_tensors {
        let saved = debug::bisect::save_tensors(&a.common.model, out, &a.common.options())?;
        crate::cli::print_out(&saved.to_text())?;
        if let Some(p) = &a.common.json {
            write_atomic(p, (serde_json::to_string_pretty(&saved)? + "\n").as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = debug::bisect::bisect(&a.common.model, &a.common.options())?;
    crate::cli::print_out(&report.to_text())?;
    if let Some(p) = &a.common.json {
        write_atomic(
            p,
            (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
        )?;
    }
    if let Some(p) = &a.plot {
        write_atomic(p, debug::plot::svg(&report).as_bytes())?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

#[derive(clap::Args)]
pub struct ReduceArgs {
    #[command(flatten)]
    common: Common,
    /// Where to write the repro (a new or empty folder): model.onnx and test_data_set_0/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run_reduce(a: ReduceArgs) -> Result<ExitCode> {
    use debug::reduce::Reduction;
    igpt_onnx::runtime::install_panic_hook();
    let (text, json, code) =
        match debug::reduce::reduce(&a.common.model, &a.out, &a.common.options())? {
            Reduction::Reduced(r) => (
                r.to_text(),
                serde_json::to_string_pretty(&r)?,
                r.exit_code(),
            ),
            Reduction::Agrees(b) => (
                b.to_text() + "nothing to reduce: no folder written\n",
                serde_json::to_string_pretty(&b)?,
                b.exit_code(),
            ),
        };
    crate::cli::print_out(&text)?;
    if let Some(p) = &a.common.json {
        write_atomic(p, (json + "\n").as_bytes())?;
    }
    Ok(ExitCode::from(code))
}
