//! `igpt-onnx package`: ship to engines. `--triton DIR` turns an export folder into a Triton
//! model repository; `--genai DIR` writes an onnxruntime-genai model folder from a checkpoint;
//! `--web DIR` a static web site that generates and classifies in the browser.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use igpt_onnx::base::values::ChoiceParser;
use igpt_onnx::export::{ExportOptions, WeightsFile};
use igpt_onnx::graph::profile::MatMulForm;
use igpt_onnx::graph::{Precision, Profile};

use super::flags::{CalibrationFlags, OpsetFlag, PrecisionFlags};
use igpt_onnx::package::{genai, triton, web};
use igpt_onnx::{Checkpoint, Head};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["triton", "genai", "web"])))]
pub struct Args {
    /// Write a Triton model repository here (created if missing), from the export folder --from.
    #[arg(long, value_name = "DIR")]
    triton: Option<PathBuf>,
    /// Write an onnxruntime-genai model folder here (must not exist), from the checkpoint
    /// --weights.
    #[arg(long, value_name = "DIR")]
    genai: Option<PathBuf>,
    /// Write a static web site here (must not exist): the page, its module, the decoder and
    /// classifier graphs and the processor, from the checkpoint --weights.
    #[arg(long, value_name = "DIR")]
    web: Option<PathBuf>,
    /// web: copy onnxruntime-web from this `onnxruntime-web/dist` folder into the site (default:
    /// the page loads the pinned version from a public CDN).
    #[arg(long, value_name = "DIR")]
    ort_web: Option<PathBuf>,
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
    /// genai, web: the checkpoint folder (config.json + weights) or weights file.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// genai, web: config.json to use instead of the one beside the weights.
    #[arg(long)]
    config: Option<PathBuf>,
    /// genai: store the decoder's weights in decoder.onnx.data whatever their size (by default from 16 MiB up).
    #[arg(long)]
    external_data: bool,
    /// genai, web: the graphs' profile and precision (default profile portable; --web: the
    /// first profile the precision fits).
    #[command(flatten)]
    precision: PrecisionFlags,
    /// genai, web: the graphs' default-domain opset.
    #[command(flatten)]
    opset: OpsetFlag,
    /// genai, web: where --quantize int8-static takes its activation ranges from.
    #[command(flatten)]
    calibration: CalibrationFlags,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if let Some(repo) = &a.triton {
        if a.weights.is_some()
            || a.ort_web.is_some()
            || a.config.is_some()
            || a.external_data
            || a.precision.profile.is_some()
            || a.precision.quantize.is_some()
            || a.precision.dtype.is_some()
            || !a.precision.keep_float32.is_empty()
            || a.opset.opset.is_some()
            || a.calibration.calibration.is_some()
        {
            bail!("--weights, --config, --external-data, --profile, --quantize, --dtype, --keep-float32, --opset and --calibration belong to --genai and --web; --triton packages the export folder --from (export it in the profile, precision and opset you want)");
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
    if !a.heads.is_empty() || a.gpus || a.max_batch != 8 || a.name_prefix != "imagegpt" {
        bail!("--heads, --max-batch, --gpus and --name-prefix belong to --triton; --genai and --web package from a checkpoint");
    }
    if let Some(dir) = &a.web {
        return web(&a, dir);
    }
    let Some(dir) = &a.genai else {
        bail!("one of --triton DIR, --genai DIR or --web DIR is required");
    };
    if a.ort_web.is_some() {
        bail!("--ort-web belongs to --web");
    }
    let Some(weights) = &a.weights else {
        bail!("--genai needs --weights (the checkpoint folder or weights file)");
    };
    let (profile, precision) = (a.precision.profile_or_portable(), a.precision.precision()?);
    let (ckpt, mut opts) = checkpoint_and_options(&a, weights, (profile, precision))?;
    if a.external_data {
        opts.weights_file = WeightsFile::External;
    }
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

/// `--web DIR`: the site, from the checkpoint.
fn web(a: &Args, dir: &std::path::Path) -> Result<ExitCode> {
    if a.external_data {
        bail!("--external-data does not apply to --web: a browser reads each graph as one file");
    }
    let Some(weights) = &a.weights else {
        bail!("--web needs --weights (the checkpoint folder or weights file)");
    };
    if a.precision.dtype.is_some() {
        let quantize: Vec<&str> = igpt_onnx::graph::PRECISIONS
            .iter()
            .filter_map(|p| p.quantize)
            .collect();
        bail!(
            "--dtype does not apply to --web: the page is built and tested on float32 and quantised graphs (--quantize {} for size)",
            quantize.join("|")
        );
    }
    let precision = a.precision.precision()?;
    let profile = a.precision.profile_for(precision);
    let (ckpt, opts) = checkpoint_and_options(a, weights, (profile, precision))?;
    let ort = match &a.ort_web {
        Some(d) => web::OrtSource::Local(d.clone()),
        None => web::OrtSource::Cdn,
    };
    let pkg = web::write(&ckpt, dir, &opts, &ort).context("web packaging failed")?;
    for g in &pkg.graphs {
        println!(
            "{:<10} {}  ({} {}, {:.1} MB)",
            g.head.name(),
            g.path.file_name().unwrap_or_default().to_string_lossy(),
            profile.name(),
            precision.name(),
            g.bytes as f64 / 1e6
        );
    }
    let from = match &ort {
        web::OrtSource::Cdn => web::ort_web_cdn(),
        web::OrtSource::Local(d) => format!("{}/ (copied from {})", web::ORT_DIR, d.display()),
    };
    println!(
        "web        {}  index.html + {} modules, onnxruntime-web from {from}; {:.1} MB in all",
        pkg.dir.display(),
        web::PAGE_FILES.len() - 1,
        pkg.bytes as f64 / 1e6
    );
    println!(
        "serve it, e.g. `python3 -m http.server -d {}`, and open http://localhost:8000/",
        pkg.dir.display()
    );
    if matches!(precision.spec().matmul, MatMulForm::Blocks { .. }) {
        println!(
            "note: onnxruntime-web's WebAssembly backend runs {} blocks (MatMulNBits) about 5x slower than --quantize int8-dynamic (measured in the page: small, one thread)",
            precision.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint `--genai` and `--web` package, and the export options their flags ask for
/// in `profile` and `precision`: the opset, the matrices kept float32, the calibration (checked
/// before the checkpoint is opened, then run on it).
fn checkpoint_and_options(
    a: &Args,
    weights: &std::path::Path,
    (profile, precision): (Profile, Precision),
) -> Result<(Checkpoint, ExportOptions)> {
    let opset = a.opset.resolve(profile, precision)?;
    a.calibration.check(precision)?;
    let ckpt = Checkpoint::open(weights, a.config.as_deref(), None)
        .with_context(|| format!("cannot open checkpoint {}", weights.display()))?;
    let opts = ExportOptions {
        profile,
        precision,
        keep_float32: a.precision.keep_float32(precision),
        opset: Some(opset),
        calibration: a
            .calibration
            .calibrate(&ckpt, (profile, precision), &Default::default())?,
        ..Default::default()
    };
    Ok((ckpt, opts))
}
