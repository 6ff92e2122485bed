//! `igpt-onnx verify`: the golden suite, a graph against a case, or a graph on random inputs
//! across runtimes; the report as text, JSON and JUnit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::{Choice, Unknown};
use igpt_onnx::runtime::RuntimeKind;
use igpt_onnx::verify::{self, VerifyOptions};

use super::flags::{runtimes_help, CalibrationFlags, PrecisionFlags, RuntimeFlags, ToleranceFlags};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of golden cases (default: ./fixtures, else the crate's own).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// A graph to check (with --fixture or --random-inputs) instead of the golden suite.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Golden suite: export in this profile and precision (a given --model's are its own).
    #[command(flatten)]
    precision: PrecisionFlags,
    /// Golden suite, --quantize int8-static: calibrate every case on this set instead of the
    /// case's own inputs.
    #[command(flatten)]
    calibration: CalibrationFlags,
    /// A case folder (or a folder holding one case) whose goldens --model is compared with.
    #[arg(long, requires = "model", conflicts_with = "random_inputs")]
    fixture: Option<PathBuf>,
    /// Run N seeded input batches on every runtime and compare the runtimes pairwise.
    #[arg(long, value_name = "N", requires = "model")]
    random_inputs: Option<usize>,
    #[arg(long, value_delimiter = ',', default_value = "ort-cpu,tract", value_parser = runtime_kind, help = runtimes_help())]
    runtimes: Vec<Option<RuntimeKind>>,
    /// A runtime that must be available (repeatable); otherwise a missing one is skipped.
    #[arg(long, value_parser = runtime_kind)]
    require: Vec<Option<RuntimeKind>>,
    #[command(flatten)]
    runtime: RuntimeFlags,
    #[command(flatten)]
    tolerance: ToleranceFlags,
    /// With --random-inputs: write every runtime's outputs (safetensors, with the graph's and
    /// the inputs' sha256) to compare on another machine.
    #[arg(long, value_name = "FILE", requires = "random_inputs")]
    save_outputs: Option<PathBuf>,
    /// With --random-inputs: compare the runtimes with outputs an earlier run saved (of the
    /// same graph and inputs, else refused); the saved runtimes are the references.
    #[arg(long, value_name = "FILE", requires = "random_inputs")]
    compare_with: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as JUnit XML.
    #[arg(long)]
    junit: Option<PathBuf>,
}

/// A runtime name; an empty item (`--runtimes tract,`) is skipped.
pub(crate) fn runtime_kind(name: &str) -> Result<Option<RuntimeKind>, Unknown> {
    if name.is_empty() {
        return Ok(None);
    }
    RuntimeKind::parse_or_err(name).map(Some)
}

pub fn run(a: Args) -> Result<ExitCode> {
    igpt_onnx::runtime::install_panic_hook();
    let precision = a.precision.precision()?;
    let opts = VerifyOptions {
        runtimes: a.runtimes.iter().flatten().copied().collect(),
        required: a.require.iter().flatten().copied().collect(),
        atol: a.tolerance.atol,
        rtol: a.tolerance.rtol,
        per_output: a.tolerance.tolerance,
        save_outputs: a.save_outputs,
        compare_with: a.compare_with,
        // The report says which execution provider ran how many nodes.
        runtime: a.runtime.options(true),
        profile: a.precision.profile_or_portable(),
        precision,
        keep_float32: a.precision.keep_float32(precision),
        calibration: a.calibration.calibration.clone(),
        calibration_method: a.calibration.method(),
        opset: None,
    };
    if a.calibration.calibration.is_some() {
        if a.model.is_some() {
            bail!("--calibration applies to the golden suite's exports; a given --model carries the ranges it was exported with");
        }
        if !opts.precision.spec().matmul.calibrated() {
            bail!(
                "--calibration applies to --quantize int8-static only (this run is {})",
                opts.precision.name()
            );
        }
    }
    let report = match (&a.model, &a.fixture, a.random_inputs) {
        (Some(m), Some(case), _) => verify::model_against_case(m, case, &opts)?,
        (Some(m), None, Some(n)) => verify::random_inputs(m, n, &opts)?,
        (Some(_), None, None) => bail!("--model needs --fixture CASE_DIR or --random-inputs N"),
        (None, _, _) => {
            let dir = a.fixtures.unwrap_or_else(verify::default_fixtures);
            verify::golden_suite(&dir, &opts)?
        }
    };
    super::print_out(&report.to_text())?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_atomic(p, text.as_bytes())?;
    }
    if let Some(p) = &a.junit {
        write_atomic(p, report.to_junit().as_bytes())?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
