//! `igpt-onnx` command line: a thin layer over the library that adds context to errors and
//! prints one line per problem.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use igpt_onnx::export::{self, ExportOptions};
use igpt_onnx::graph::{GraphOptions, Precision, Profile};
use igpt_onnx::runtime::{RuntimeKind, RuntimeOptions};
use igpt_onnx::verify::{self, VerifyOptions};
use igpt_onnx::{Checkpoint, Head, Variant};

#[derive(Parser)]
#[command(
    name = "igpt-onnx",
    version,
    about = "Export ImageGPT checkpoints to ONNX and verify them numerically"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Emit ONNX graphs from a checkpoint (config.json + safetensors).
    Export(ExportArgs),
    /// Run graphs in ONNX Runtime and tract and compare with goldens or across runtimes.
    Verify(VerifyArgs),
    /// Print a graph's I/O signature, op histogram, initializers and metadata.
    Inspect {
        /// The .onnx file.
        model: PathBuf,
    },
    /// Write a random-weight checkpoint of a published size.
    RandomCheckpoint(RandomArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Folder of golden cases (default: ./fixtures, else the crate's own).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// A graph to check (with --fixture or --random-inputs) instead of the golden suite.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A case folder whose goldens --model is compared with.
    #[arg(long, requires = "model", conflicts_with = "random_inputs")]
    fixture: Option<PathBuf>,
    /// Run N seeded input batches on every runtime and compare the runtimes pairwise.
    #[arg(long, value_name = "N", requires = "model")]
    random_inputs: Option<usize>,
    /// Comma-separated runtimes: ort-cpu, ort-cuda, ort-tensorrt, tract.
    #[arg(long, value_delimiter = ',', default_value = "ort-cpu,tract")]
    runtimes: Vec<String>,
    /// A runtime that must be available (repeatable); otherwise a missing one is skipped.
    #[arg(long)]
    require: Vec<String>,
    /// Let a GPU provider that cannot be registered run on CPU (reported as fallback).
    #[arg(long)]
    allow_fallback: bool,
    /// ONNX Runtime shared library (first in the discovery order).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Absolute tolerance (overrides the cases').
    #[arg(long)]
    atol: Option<f64>,
    /// Relative tolerance (overrides the cases').
    #[arg(long)]
    rtol: Option<f64>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as JUnit XML.
    #[arg(long)]
    junit: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Model folder (config.json + model.safetensors or an index + shards) or one .safetensors file.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// config.json to use instead of the one beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Published size; checked against the checkpoint's config, or used as the config.
    #[arg(long, value_enum)]
    variant: Option<Variant>,
    /// Which head(s) to write; `all` writes every head the checkpoint has weights for.
    #[arg(long, default_value = "all")]
    head: String,
    /// Output folder.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Add hidden_states.{0..n_layer} outputs to the base head.
    #[arg(long)]
    hidden_states: bool,
    /// Op profile.
    #[arg(long, value_enum, default_value = "portable")]
    profile: Profile,
    /// Store weights in <head>.onnx.data even when they would fit inline.
    #[arg(long)]
    external_data: bool,
    /// Weight-only 8-bit block matrices (MatMulNBits; needs --profile ort).
    #[arg(long, value_parser = ["int8"])]
    quantize: Option<String>,
}

#[derive(clap::Args)]
struct RandomArgs {
    #[arg(long, value_enum)]
    variant: Variant,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(a) => run_export(a),
        Command::Verify(a) => run_verify(a),
        Command::Inspect { model } => run_inspect(&model),
        Command::RandomCheckpoint(a) => run_random(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, `: `-separated. Library errors already end with
/// their cause (`cannot read {path}: {source}`), so a cause whose text the line already ends
/// with is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn run_export(a: ExportArgs) -> Result<ExitCode> {
    let Some(weights) = a.weights else {
        match a.variant.and_then(Variant::hub_repo) {
            Some(repo) => bail!(
                "--variant needs weights: the published ones are in the Hugging Face hub repository {repo} (pytorch_model.bin); with internet, save them as safetensors with `python -c \"from transformers import ImageGPTForCausalImageModeling as M; M.from_pretrained('{repo}').save_pretrained('DIR')\"` and pass --weights DIR"
            ),
            None if a.variant == Some(Variant::Tiny) => bail!(
                "--weights is required (a model folder or a .safetensors file); tiny has no published weights: `igpt-onnx random-checkpoint --variant tiny --out DIR` writes random ones"
            ),
            None => bail!("--weights is required (a model folder or a .safetensors file)"),
        }
    };
    let ckpt = Checkpoint::open(&weights, a.config.as_deref(), a.variant)
        .with_context(|| format!("cannot open checkpoint {}", weights.display()))?;
    let heads = if a.head == "all" {
        ckpt.available_heads()
    } else {
        match Head::parse(&a.head) {
            Some(h) => vec![h],
            None => bail!(
                "unknown head `{}` (expected base, causal-lm, classifier or all)",
                a.head
            ),
        }
    };
    let opts = ExportOptions {
        graph: GraphOptions {
            hidden_states: a.hidden_states,
        },
        profile: a.profile,
        precision: match a.quantize {
            Some(_) => Precision::Int8,
            None => Precision::Float32,
        },
        force_external_data: a.external_data,
    };
    let done = export::export(&ckpt, &heads, &a.out, &opts).context("export failed")?;
    for e in &done {
        let data = e
            .data_path
            .as_ref()
            .map(|p| format!(" + {}", p.display()))
            .unwrap_or_default();
        println!(
            "{:<10} {}{data}  {:.1} MB  in: {}  out: {}  {:.2} s",
            e.head.name(),
            e.path.display(),
            e.bytes as f64 / 1e6,
            e.inputs.join(", "),
            e.outputs.join(", "),
            e.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime_kinds(names: &[String]) -> Result<Vec<RuntimeKind>> {
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| {
            RuntimeKind::parse(n).with_context(|| {
                format!("unknown runtime `{n}` (expected ort-cpu, ort-cuda, ort-tensorrt or tract)")
            })
        })
        .collect()
}

fn run_verify(a: VerifyArgs) -> Result<ExitCode> {
    let opts = VerifyOptions {
        runtimes: runtime_kinds(&a.runtimes)?,
        required: runtime_kinds(&a.require)?,
        atol: a.atol,
        rtol: a.rtol,
        runtime: RuntimeOptions {
            ort_lib: a.ort_lib,
            allow_fallback: a.allow_fallback,
        },
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
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.junit {
        std::fs::write(p, report.to_junit())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn run_inspect(model: &std::path::Path) -> Result<ExitCode> {
    let info = igpt_onnx::onnx::inspect::inspect(model).map_err(anyhow::Error::msg)?;
    print!("{}", info.summary());
    Ok(ExitCode::SUCCESS)
}

fn run_random(a: RandomArgs) -> Result<ExitCode> {
    let cfg = a.variant.config();
    let path = igpt_onnx::random::write_random_checkpoint(&cfg, a.seed, &a.out)?;
    println!(
        "wrote {} ({} variant, seed {})",
        path.display(),
        a.variant.name(),
        a.seed
    );
    Ok(ExitCode::SUCCESS)
}
