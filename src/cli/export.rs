//! `igpt-onnx export`: checkpoint → `<head>.onnx` files, one line per graph written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use igpt_onnx::base::values::{ChoiceParser, OneOrAll};
use igpt_onnx::export::{self, ExportOptions, WeightsFile};
use igpt_onnx::graph::{GraphOptions, QueryBlock};
use igpt_onnx::runtime::RuntimeOptions;
use igpt_onnx::{Checkpoint, Head, Variant};

use super::flags::{CalibrationFlags, OpsetFlag, PrecisionFlags};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder (config.json + model.safetensors / pytorch_model.bin, or an index + shards),
    /// one weights file, or a hub id (org/name) resolved in the Hugging Face cache.
    #[arg(long)]
    weights: Option<String>,
    /// Hub revision (branch, tag or commit) for a hub id or --variant.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Fetch what the Hugging Face cache lacks (honours HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE).
    #[arg(long)]
    download: bool,
    /// config.json to use instead of the one beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Published size; checked against the checkpoint's config, or used as the config.
    #[arg(long, value_enum)]
    variant: Option<Variant>,
    /// Which head(s) to write; `all` writes every head the checkpoint has weights for.
    #[arg(long, default_value = "all", value_parser = ChoiceParser::<OneOrAll<Head>>::new())]
    head: OneOrAll<Head>,
    /// Output folder.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Add hidden_states.{0..n_layer} outputs to the base head.
    #[arg(long)]
    hidden_states: bool,
    /// Query rows per attention block of the full-sequence graphs (base, causal-lm, classifier): each block reads only its own and earlier keys, so the causally masked half of the attention square is not computed; 0 computes the whole square.
    #[arg(long, value_name = "ROWS", default_value_t = QueryBlock::DEFAULT_ROWS)]
    query_block: usize,
    #[command(flatten)]
    precision: PrecisionFlags,
    #[command(flatten)]
    calibration: CalibrationFlags,
    #[command(flatten)]
    opset: OpsetFlag,
    /// Store weights in <head>.onnx.data whatever their size (by default from 16 MiB up, where ONNX Runtime maps them: a faster load and less memory).
    #[arg(long, conflicts_with = "single_file")]
    external_data: bool,
    /// Keep the weights inside <head>.onnx while it fits protobuf's 2 GiB: one file, slower to load in ONNX Runtime.
    #[arg(long)]
    single_file: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    // Usage first: a refused opset costs no checkpoint read (nor download).
    let (profile, precision) = (a.precision.profile_or_portable(), a.precision.precision()?);
    let opset = a.opset.resolve(profile, precision)?;
    a.calibration.check(precision)?;
    let located = igpt_onnx::checkpoint::hub::locate(
        a.weights.as_deref(),
        a.variant,
        &a.revision,
        a.download,
    )?;
    let Some((weights, origin)) = located else {
        match a.variant {
            Some(Variant::Tiny) => bail!(
                "--weights is required (a model folder or a .safetensors file); tiny has no published weights: `igpt-onnx random-checkpoint --variant tiny --out DIR` writes random ones"
            ),
            _ => bail!("--weights is required (a model folder, a weights file or a hub id org/name)"),
        }
    };
    let mut ckpt = Checkpoint::open(&weights, a.config.as_deref(), a.variant)
        .with_context(|| format!("cannot open checkpoint {}", weights.display()))?;
    ckpt.origin = origin;
    let heads = match a.head {
        OneOrAll::One(h) => vec![h],
        OneOrAll::All => Head::available(&ckpt),
    };
    let calibration =
        a.calibration
            .calibrate(&ckpt, (profile, precision), &RuntimeOptions::default())?;
    let opts = ExportOptions {
        graph: GraphOptions {
            hidden_states: a.hidden_states,
            query_block: QueryBlock(a.query_block),
            ..Default::default()
        },
        profile,
        precision,
        calibration,
        keep_float32: a.precision.keep_float32(precision),
        opset: Some(opset),
        weights_file: match (a.external_data, a.single_file) {
            (true, _) => WeightsFile::External,
            (_, true) => WeightsFile::SingleFile,
            _ => WeightsFile::Auto,
        },
        ..Default::default()
    };
    let done = export::export(&ckpt, &heads, &a.out, &opts).context("export failed")?;
    println!(
        "read {} weights from {}",
        ckpt.weights.format,
        weights.display()
    );
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
