//! `igpt-onnx` command line: a thin layer over the library that adds context to errors and
//! prints one line per problem.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use igpt_onnx::export::{self, ExportOptions};
use igpt_onnx::graph::{GraphOptions, Profile};
use igpt_onnx::{Checkpoint, Head, Variant};

#[derive(Parser)]
#[command(name = "igpt-onnx", version, about = "Export ImageGPT checkpoints to ONNX and verify them numerically")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Emit ONNX graphs from a checkpoint (config.json + safetensors).
    Export(ExportArgs),
    /// Write a random-weight checkpoint of a published size.
    RandomCheckpoint(RandomArgs),
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
        Command::RandomCheckpoint(a) => run_random(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_export(a: ExportArgs) -> Result<ExitCode> {
    let Some(weights) = a.weights else {
        match a.variant.and_then(Variant::hub_repo) {
            Some(repo) => bail!(
                "--variant needs weights: download {repo} (e.g. `huggingface-cli download {repo} --revision refs/pr/1 --local-dir DIR`, or convert its pytorch_model.bin to model.safetensors) and pass --weights DIR"
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
            None => bail!("unknown head `{}` (expected base, causal-lm, classifier or all)", a.head),
        }
    };
    let opts = ExportOptions {
        graph: GraphOptions {
            hidden_states: a.hidden_states,
        },
        profile: a.profile,
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

fn run_random(a: RandomArgs) -> Result<ExitCode> {
    let cfg = a.variant.config();
    let path = igpt_onnx::random::write_random_checkpoint(&cfg, a.seed, &a.out)?;
    println!("wrote {} ({} variant, seed {})", path.display(), a.variant.name(), a.seed);
    Ok(ExitCode::SUCCESS)
}
