//! `igpt-onnx classify`: images → class probabilities with an exported classifier graph
//! (issue 11). The graph is fed the processor's tokens *without* SOS, exactly as transformers'
//! `ImageGPTForImageClassification` example does (`model(**image_processor(images))`); labels
//! come from the checkpoint's `id2label`, which the export records in `igpt_onnx.id2label`,
//! else HF's `LABEL_{id}`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use igpt_onnx::image::{write_atomic, Processor};
use igpt_onnx::runtime::{self, LoadedModel, RuntimeKind, RuntimeOptions, Tensor};
use ndarray::{Array2, ArrayD, Ix2};
use serde_json::{json, Value};

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
    /// ort-cpu, ort-cuda, ort-tensorrt or tract.
    #[arg(long, default_value = "ort-cpu")]
    pub runtime: String,
    /// ONNX Runtime shared library (first in the discovery order).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let kind = RuntimeKind::parse(&args.runtime).with_context(|| {
        format!(
            "unknown runtime `{}` (expected ort-cpu, ort-cuda, ort-tensorrt or tract)",
            args.runtime
        )
    })?;
    let processor = Processor::open(&args.processor)?;
    let config = graph_config(&args.model)?;
    check_fits(&processor, &config, &args.model)?;
    let rows = args
        .images
        .iter()
        .map(|path| processor.encode_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = RuntimeOptions {
        ort_lib: args.ort_lib.clone(),
        allow_fallback: false,
    };
    let rt = runtime::open(kind, &opts)?;
    let mut model = rt.load(&args.model)?;
    let logits = run_classifier(model.as_mut(), &rows)?;
    let labels = labels(&config, logits.ncols());

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
    let mut inputs: Vec<(&str, &Tensor)> = vec![("input_ids", &ids)];
    if model.inputs().iter().any(|i| i.name == "attention_mask") {
        inputs.push(("attention_mask", &mask));
    }
    let outputs = model.run(&inputs)?;
    let Some((_, logits)) = outputs.into_iter().find(|(n, _)| n == "logits") else {
        bail!("the graph has no `logits` output: is it a classifier?");
    };
    logits
        .to_f32()
        .into_dimensionality::<Ix2>()
        .context("`logits` is not [batch, num_labels]: is the graph a classifier head?")
}

/// The checkpoint config the export recorded (`igpt_onnx.config`), `{}` for foreign graphs.
fn graph_config(model: &std::path::Path) -> Result<Value> {
    let info = igpt_onnx::onnx::inspect::inspect(model).map_err(anyhow::Error::msg)?;
    if let Some(head) = info.metadata.get("igpt_onnx.head") {
        if head != "classifier" {
            bail!(
                "{} is a {head} graph; classify needs `export --head classifier`",
                model.display()
            );
        }
    }
    let mut config: Value = info
        .metadata
        .get("igpt_onnx.config")
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    // The export records the checkpoint's label names in their own entry.
    let id2label: Option<Value> = info
        .metadata
        .get("igpt_onnx.id2label")
        .and_then(|m| serde_json::from_str(m).ok());
    if let (Some(map), Some(obj)) = (id2label, config.as_object_mut()) {
        obj.insert("id2label".into(), map);
    }
    Ok(config)
}

/// The processor's tokens must be the model's: n_clusters + 1 = vocab_size, H·W ≤ n_positions.
fn check_fits(p: &Processor, config: &Value, model: &std::path::Path) -> Result<()> {
    let (h, w) = p.size();
    if let Some(vocab) = config.get("vocab_size").and_then(Value::as_u64) {
        if p.n_clusters() as u64 + 1 != vocab {
            bail!(
                "{}: has {} clusters but {} has vocab_size {vocab} (expected clusters + 1 for SOS)",
                p.source(),
                p.n_clusters(),
                model.display()
            );
        }
    }
    if let Some(n) = config.get("n_positions").and_then(Value::as_u64) {
        if (h * w) as u64 > n {
            bail!(
                "{}: makes {h}x{w} = {} tokens but {} has n_positions {n}",
                p.source(),
                h * w,
                model.display()
            );
        }
    }
    Ok(())
}

/// `id2label[id]` when the config has it, else HF's default `LABEL_{id}`.
fn labels(config: &Value, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            config
                .get("id2label")
                .and_then(|m| m.get(i.to_string()))
                .and_then(Value::as_str)
                .map_or_else(|| format!("LABEL_{i}"), str::to_string)
        })
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
        let cfg = json!({"id2label": {"0": "cat", "2": "dog"}});
        assert_eq!(labels(&cfg, 3), ["cat", "LABEL_1", "dog"]);
        assert_eq!(labels(&Value::Null, 2), ["LABEL_0", "LABEL_1"]);
    }

    #[test]
    fn softmax_of_equal_logits_is_uniform() {
        assert_eq!(softmax(&[2.0, 2.0, 2.0, 2.0]), [0.25; 4]);
    }
}
