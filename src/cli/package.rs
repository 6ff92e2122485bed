//! `igpt-onnx package`: ship to engines. `--triton DIR` turns an export folder into a Triton
//! model repository; `--genai DIR` writes an onnxruntime-genai model folder from a checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use igpt_onnx::base::values::ChoiceParser;
use igpt_onnx::export::ExportOptions;
use igpt_onnx::graph::profile::{FloatType, Quantization};
use igpt_onnx::graph::{Precision, Profile};
use igpt_onnx::package::{genai, triton};
use igpt_onnx::{Checkpoint, Head};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["triton", "genai"])))]
pub struct Args {
    /// Write a Triton model repository here (created if missing), from the export folder --from.
    #[arg(long, value_name = "DIR")]
    triton: Option<PathBuf>,
    /// Write an onnxruntime-genai model folder here (must not exist), from the checkpoint
    /// --weights.
    #[arg(long, value_name = "DIR")]
    genai: Option<PathBuf>,
    /// Triton: the export folder holding <head>.onnx (and preprocessor_config.json).
    #[arg(long, default_value = "out")]
    from: PathBuf,
    /// Triton: comma-separated heads to package (default: every head the export folder has).
    #[arg(long, value_delimiter = ',', value_parser = ChoiceParser::<Head>::new())]
    heads: Vec<Head>,
    /// Triton: max_batch_size, with dynamic batching (0: no batching, dims include the batch).
    #[arg(long, default_value_t = 8)]
    max_batch: u32,
    /// Triton: GPU instances with the TensorRT accelerator instead of CPU instances.
    #[arg(long)]
    gpus: bool,
    /// Triton: model names are <prefix>-<head>.
    #[arg(long, default_value = "imagegpt")]
    name_prefix: String,
    /// genai: the checkpoint folder (config.json + weights) or weights file.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// genai: config.json to use instead of the one beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// genai: store the decoder's weights in decoder.onnx.data even when they would fit inline.
    #[arg(long)]
    external_data: bool,
    /// genai: the decoder's op profile (`ort`: ONNX Runtime's fused ops, which genai runs).
    #[arg(long, value_parser = ChoiceParser::<Profile>::new())]
    profile: Option<Profile>,
    /// genai: quantised block matrices (needs --profile ort), as CPU deployments use.
    #[arg(long, value_parser = ChoiceParser::<Quantization>::new())]
    quantize: Option<Quantization>,
    /// Float16 weights and activations (`fp16`; the heads answer float32; not with --quantize).
    #[arg(long, value_parser = ChoiceParser::<FloatType>::new())]
    dtype: Option<FloatType>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if let Some(repo) = &a.triton {
        if a.weights.is_some()
            || a.config.is_some()
            || a.external_data
            || a.profile.is_some()
            || a.quantize.is_some()
            || a.dtype.is_some()
        {
            bail!("--weights, --config, --external-data, --profile, --quantize and --dtype belong to --genai; --triton packages the export folder --from (export it in the profile and precision you want)");
        }
        // Names become folder names and Triton model names.
        let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if a.name_prefix.is_empty()
            || !a.name_prefix.chars().all(ok)
            || a.name_prefix.starts_with('.')
        {
            bail!(
                "--name-prefix `{}`: use letters, digits, `-`, `_` and `.` (not first)",
                a.name_prefix
            );
        }
        let opts = triton::TritonOptions {
            heads: a.heads.clone(),
            max_batch: a.max_batch,
            gpus: a.gpus,
            prefix: a.name_prefix.clone(),
        };
        let models = triton::write(&a.from, repo, &opts).context("Triton packaging failed")?;
        for m in &models {
            println!(
                "{:<10} {} -> {}",
                m.head.name(),
                m.source.display(),
                m.dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(dir) = &a.genai else {
        bail!("one of --triton DIR or --genai DIR is required");
    };
    if !a.heads.is_empty() || a.gpus || a.max_batch != 8 || a.name_prefix != "imagegpt" {
        bail!("--heads, --max-batch, --gpus and --name-prefix belong to --triton; --genai packages the decoder");
    }
    let Some(weights) = &a.weights else {
        bail!("--genai needs --weights (the checkpoint folder or weights file)");
    };
    let ckpt = Checkpoint::open(weights, a.config.as_deref(), None)
        .with_context(|| format!("cannot open checkpoint {}", weights.display()))?;
    let opts = ExportOptions {
        force_external_data: a.external_data,
        profile: a.profile.unwrap_or(Profile::Portable),
        precision: Precision::chosen(a.quantize, a.dtype).map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    let pkg = genai::write(&ckpt, dir, &opts).context("onnxruntime-genai packaging failed")?;
    println!(
        "genai      {}  decoder.onnx ({} logits, {} {}) + {}  {:.1} MB",
        pkg.dir.display(),
        ckpt.config.vocab_size,
        opts.profile.name(),
        opts.precision.name(),
        genai::CONFIG_FILE,
        pkg.decoder.bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
