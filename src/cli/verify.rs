//! `igpt-onnx verify`: the golden suite, a graph against a case, or a graph on random inputs
//! across runtimes; the report as text, JSON and JUnit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::{Choice, ChoiceParser, Unknown};
use igpt_onnx::graph::profile::{FloatType, Quantization};
use igpt_onnx::graph::{Precision, Profile};
use igpt_onnx::runtime::{ComputePrecision, RuntimeKind, RuntimeOptions};
use igpt_onnx::verify::options::OutputTolerance;
use igpt_onnx::verify::{self, VerifyOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Folder of golden cases (default: ./fixtures, else the crate's own).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// A graph to check (with --fixture or --random-inputs) instead of the golden suite.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Golden suite: export in this op profile (a given --model's profile is its own).
    #[arg(long, default_value = "portable", value_parser = ChoiceParser::<Profile>::new())]
    profile: Profile,
    /// Golden suite: export with quantised matrices (int8 / int4 blocks need --profile ort).
    #[arg(long, value_parser = ChoiceParser::<Quantization>::new())]
    quantize: Option<Quantization>,
    /// Float16 weights and activations (`fp16`; the heads answer float32; not with --quantize).
    #[arg(long, value_parser = ChoiceParser::<FloatType>::new())]
    dtype: Option<FloatType>,
    /// A case folder whose goldens --model is compared with.
    #[arg(long, requires = "model", conflicts_with = "random_inputs")]
    fixture: Option<PathBuf>,
    /// Run N seeded input batches on every runtime and compare the runtimes pairwise.
    #[arg(long, value_name = "N", requires = "model")]
    random_inputs: Option<usize>,
    /// Comma-separated runtimes (ort-cpu, ort-cuda, ort-tensorrt, tract, openvino,
    /// cmd:PROGRAM: an adapter program speaking igpt-onnx's file protocol).
    #[arg(long, value_delimiter = ',', default_value = "ort-cpu,tract", value_parser = runtime_kind)]
    runtimes: Vec<Option<RuntimeKind>>,
    /// A runtime that must be available (repeatable); otherwise a missing one is skipped.
    #[arg(long, value_parser = runtime_kind)]
    require: Vec<Option<RuntimeKind>>,
    /// Let a GPU provider that cannot be registered run on CPU (reported as fallback).
    #[arg(long)]
    allow_fallback: bool,
    /// ONNX Runtime shared library (first in the discovery order).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// OpenVINO's C library (libopenvino_c.so*) or its folder (first in the discovery order).
    #[arg(long)]
    openvino_lib: Option<PathBuf>,
    /// OpenVINO's inference precision hint (f32, bf16, f16; default: OpenVINO's, bf16 on CPUs
    /// with AVX-512 BF16 or AMX); the precision used is reported.
    #[arg(long, value_parser = ChoiceParser::<ComputePrecision>::new())]
    openvino_precision: Option<ComputePrecision>,
    /// cmd: runtimes: seconds an adapter may take to load the graph or answer one request
    /// (default 120).
    #[arg(long, value_name = "SECS", value_parser = super::seconds)]
    command_timeout: Option<std::time::Duration>,
    /// Absolute tolerance (overrides the cases').
    #[arg(long)]
    atol: Option<f64>,
    /// Relative tolerance (overrides the cases').
    #[arg(long)]
    rtol: Option<f64>,
    /// A budget for some outputs: PATTERN=ATOL[,RTOL], `*` matching any run of characters
    /// (`logits=1e-4,1e-3`, `present.*=1e-3`); repeatable, the last match wins.
    #[arg(long, value_name = "PATTERN=ATOL[,RTOL]", value_parser = OutputTolerance::parse)]
    tolerance: Vec<OutputTolerance>,
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
fn runtime_kind(name: &str) -> Result<Option<RuntimeKind>, Unknown> {
    if name.is_empty() {
        return Ok(None);
    }
    RuntimeKind::parse_or_err(name).map(Some)
}

pub fn run(a: Args) -> Result<ExitCode> {
    igpt_onnx::runtime::install_panic_hook();
    let opts = VerifyOptions {
        runtimes: a.runtimes.iter().flatten().copied().collect(),
        required: a.require.iter().flatten().copied().collect(),
        atol: a.atol,
        rtol: a.rtol,
        per_output: a.tolerance,
        save_outputs: a.save_outputs,
        compare_with: a.compare_with,
        runtime: RuntimeOptions {
            // The report says which execution provider ran how many nodes.
            count_nodes: true,
            ort_lib: a.ort_lib,
            allow_fallback: a.allow_fallback,
            openvino_lib: a.openvino_lib,
            openvino_precision: a.openvino_precision,
            command_timeout: a.command_timeout,
            ort_cache: None,
        },
        profile: a.profile,
        precision: Precision::chosen(a.quantize, a.dtype).map_err(anyhow::Error::msg)?,
    };
    let report = match (&a.model, &a.fixture, a.random_inputs) {
        (Some(m), Some(case), _) => verify::model_against_case(m, case, &opts)?,
        (Some(m), None, Some(n)) => verify::random_inputs(m, n, &opts)?,
        (Some(_), None, None) => bail!("--model needs --fixture CASE_DIR or --random-inputs N"),
        (None, _, _) => {
            let dir = a.fixtures.unwrap_or_else(verify::default_fixtures);
            verify::golden_suite(&dir, &opts)?
        }
    };
    print!("{}", report.to_text());
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_atomic(p, text.as_bytes())?;
    }
    if let Some(p) = &a.junit {
        write_atomic(p, report.to_junit().as_bytes())?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
