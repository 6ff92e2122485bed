//! `igpt-onnx classify`: images → class probabilities with an exported classifier graph.
//! The graph is fed the processor's tokens *without* SOS, exactly as transformers'
//! `ImageGPTForImageClassification` example does (`model(**image_processor(images))`); labels
//! come from the checkpoint's `id2label`, which the export card records, else HF's
//! `LABEL_{id}`. A graph without a card (another tool's) is classified with HF's names.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::ChoiceParser;
use igpt_onnx::graph::io::{ATTENTION_MASK, INPUT_IDS, LOGITS};
use igpt_onnx::graph::{ExportCard, Head};
use igpt_onnx::image::Processor;
use igpt_onnx::runtime::{self, LoadedModel, RuntimeKind, Tensor};
use igpt_onnx::ImageGptConfig;
use ndarray::{Array2, ArrayD, Ix2};
use serde_json::json;

use super::flags::{runtime_help, RuntimeFlags};

/// `classify` options.
#[derive(clap::Args)]
pub struct Args {
    /// An exported classifier graph (`igpt-onnx export --head classifier`).
    #[arg(long)]
    pub model: PathBuf,
    /// preprocessor_config.json, or a checkpoint folder holding one.
    #[arg(long)]
    pub processor: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many labels to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Also write `{"images": [{"path", "logits", "top": [{"id", "label", "probability"}]}]}`.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, default_value = "ort-cpu", value_parser = ChoiceParser::<RuntimeKind>::new(), help = runtime_help())]
    pub runtime: RuntimeKind,
    #[command(flatten)]
    pub runtime_flags: RuntimeFlags,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let kind = args.runtime;
    let processor = Processor::open(&args.processor)?;
    let config = match ExportCard::read(&args.model)? {
        Some(card) if card.head != Head::Classifier => bail!(
            "{} is a {} graph; classify needs `export --head classifier`",
            args.model.display(),
            card.head.name()
        ),
        Some(card) => {
            runtime::can_run(kind, card.profile, card.precision)
                .with_context(|| args.model.display().to_string())?;
            Some(card.config)
        }
        None => None,
    };
    if let Some(config) = &config {
        check_fits(&processor, config, &args.model)?;
    }
    let rows = args
        .images
        .iter()
        .map(|path| processor.encode_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = runtime::open(kind, &args.runtime_flags.options(false))?;
    let mut model = rt.load(&args.model)?;
    let logits = run_classifier(model.as_mut(), &rows)?;
    let labels = labels(config.as_ref(), logits.ncols());

    let mut out = Vec::new();
    for (path, row) in args.images.iter().zip(logits.rows()) {
        let probs = softmax(row.as_slice().unwrap_or_default());
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        order.truncate(args.top.max(1));
        let shown: Vec<String> = order
            .iter()
            .map(|&i| format!("{} {:.4}", labels[i], probs[i]))
            .collect();
        println!("{}: {}", path.display(), shown.join(", "));
        out.push(json!({
            "path": path.display().to_string(),
            "logits": row.to_vec(),
            "top": order.iter().map(|&i| json!({
                "id": i, "label": labels[i], "probability": probs[i],
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json!({ "images": out }))? + "\n";
        write_atomic(path, text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The one call into the runtime trait: `input_ids` [batch, H·W] (+ an all-ones
/// `attention_mask` when the graph takes one) → `logits` [batch, num_labels].
fn run_classifier(model: &mut dyn LoadedModel, rows: &[Vec<i64>]) -> Result<Array2<f32>> {
    let (batch, seq) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<i64> = rows.concat();
    let ids = Tensor::I64(ArrayD::from_shape_vec(vec![batch, seq], flat)?);
    let mask = Tensor::I64(ArrayD::ones(vec![batch, seq]));
    let mut inputs: Vec<(&str, &Tensor)> = vec![(INPUT_IDS, &ids)];
    if model.inputs().iter().any(|i| i.name == ATTENTION_MASK) {
        inputs.push((ATTENTION_MASK, &mask));
    }
    let outputs = model.run(&inputs)?;
    let Some((_, logits)) = outputs.into_iter().find(|(n, _)| n == LOGITS) else {
        bail!("the graph has no `logits` output: is it a classifier?");
    };
    logits
        .to_f32()
        .into_dimensionality::<Ix2>()
        .context("`logits` is not [batch, num_labels]: is the graph a classifier head?")
}

/// The processor's tokens must be the model's: n_clusters + 1 = vocab_size, H·W ≤ n_positions.
fn check_fits(p: &Processor, config: &ImageGptConfig, model: &std::path::Path) -> Result<()> {
    let (h, w) = p.size();
    let vocab = config.vocab_size;
    if p.n_clusters() + 1 != vocab {
        bail!(
            "{}: has {} clusters but {} has vocab_size {vocab} (expected clusters + 1 for SOS)",
            p.source(),
            p.n_clusters(),
            model.display()
        );
    }
    let n = config.n_positions;
    if h * w > n {
        bail!(
            "{}: makes {h}x{w} = {} tokens but {} has n_positions {n}",
            p.source(),
            h * w,
            model.display()
        );
    }
    Ok(())
}

/// The config's label names (`id2label`), else HF's default `LABEL_{id}`.
fn labels(config: Option<&ImageGptConfig>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| config.map_or_else(|| format!("LABEL_{i}"), |c| c.label(i)))
        .collect()
}

/// Probabilities in float64 from float32 logits, max-subtracted.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let exp: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fall_back_to_hf_defaults() {
        let raw: igpt_onnx::config::RawConfig =
            serde_json::from_value(json!({"num_labels": 3, "id2label": {"0": "cat", "2": "dog"}}))
                .expect("raw");
        let cfg = ImageGptConfig::from_raw(&raw).expect("config");
        assert_eq!(labels(Some(&cfg), 3), ["cat", "LABEL_1", "dog"]);
        assert_eq!(labels(None, 2), ["LABEL_0", "LABEL_1"]);
    }

    #[test]
    fn softmax_of_equal_logits_is_uniform() {
        assert_eq!(softmax(&[2.0, 2.0, 2.0, 2.0]), [0.25; 4]);
    }
}
