//! ImageGPT configuration: the Hugging Face `config.json` as written by `transformers`
//! (`ImageGPTConfig`), resolved into a validated [`ImageGptConfig`], plus the published sizes.
//!
//! Defaults follow `transformers/models/imagegpt/configuration_imagegpt.py`; fields whose
//! value changes the math and that this exporter cannot honour are refused by name.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The names `id2label` gives to ids below `n` (string keys, string values; others ignored).
/// Bounded by the config file's size, whatever `num_labels` says.
fn labels(
    id2label: Option<&serde_json::Map<String, serde_json::Value>>,
    n: usize,
) -> std::collections::BTreeMap<usize, String> {
    id2label
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.parse::<usize>().ok()?, v.as_str()?.to_string())))
        .filter(|(i, _)| *i < n)
        .collect()
}

/// Upper bound on widths, vocabulary, positions, heads and labels: far above any ImageGPT
/// (n_embd 1536) yet low enough that shape arithmetic (3·n_embd, vocab·n_embd·4 bytes) cannot
/// overflow on a hostile config.
const MAX_DIM: usize = 1 << 24;
/// Upper bound on `n_layer` (imagegpt-large has 48): the checkpoint's expected tensor list is
/// built from it before any weight is looked at, so a config cannot make that list huge.
const MAX_LAYERS: usize = 1 << 16;

/// A configuration problem, naming the field or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config JSON in {path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("config field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("unknown variant `{name}` (expected small, medium, large or tiny)")]
    UnknownVariant { name: String },
    #[error(
        "--variant {variant} contradicts the checkpoint's config: `{field}` is {checkpoint} in the checkpoint, {expected} for {variant}"
    )]
    VariantMismatch {
        variant: String,
        field: &'static str,
        checkpoint: String,
        expected: String,
    },
}

/// `config.json` as found on disk. Every field optional: missing ones take HF's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawConfig {
    pub model_type: Option<String>,
    pub vocab_size: Option<i64>,
    pub n_positions: Option<i64>,
    pub n_embd: Option<i64>,
    pub n_layer: Option<i64>,
    pub n_head: Option<i64>,
    pub n_inner: Option<i64>,
    pub activation_function: Option<String>,
    pub layer_norm_epsilon: Option<f64>,
    pub scale_attn_weights: Option<bool>,
    pub scale_attn_by_inverse_layer_idx: Option<bool>,
    pub reorder_and_upcast_attn: Option<bool>,
    pub tie_word_embeddings: Option<bool>,
    pub add_cross_attention: Option<bool>,
    pub num_labels: Option<i64>,
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A validated ImageGPT configuration with every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageGptConfig {
    /// 512 colour clusters + SOS; SOS id = `vocab_size - 1`.
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width (`n_inner`, or 4·n_embd when null).
    pub n_inner: usize,
    pub layer_norm_epsilon: f64,
    pub scale_attn_weights: bool,
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Number of classifier labels (HF `num_labels`, or the size of `id2label`, default 2).
    pub num_labels: usize,
    /// Classifier label names from `id2label`, by id below `num_labels` (see [`Self::label`]).
    /// Kept out of the serialised config: exports carry it in its own metadata entry.
    #[serde(skip)]
    pub labels: std::collections::BTreeMap<usize, String>,
}

impl ImageGptConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let raw: RawConfig = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
            path: shown,
            source,
        })?;
        Self::from_raw(&raw)
    }

    /// Resolves defaults and checks every field.
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        if let Some(t) = &raw.model_type {
            if t != "imagegpt" {
                return Err(field(
                    "model_type",
                    format!("is \"{t}\", expected \"imagegpt\""),
                ));
            }
        }
        let activation = raw.activation_function.as_deref().unwrap_or("quick_gelu");
        if activation != "quick_gelu" {
            return Err(field(
                "activation_function",
                format!("\"{activation}\" is not supported (ImageGPT uses quick_gelu)"),
            ));
        }
        if raw.add_cross_attention == Some(true) {
            return Err(field("add_cross_attention", "true is not supported".into()));
        }
        if raw.tie_word_embeddings == Some(true) {
            return Err(field(
                "tie_word_embeddings",
                "true is not supported (ImageGPT's lm_head has vocab_size-1 rows and is never tied)"
                    .into(),
            ));
        }
        let n_embd = size("n_embd", raw.n_embd.unwrap_or(512), MAX_DIM)?;
        let n_head = size("n_head", raw.n_head.unwrap_or(8), MAX_DIM)?;
        if n_embd % n_head != 0 {
            return Err(field(
                "n_head",
                format!("n_embd ({n_embd}) is not divisible by n_head ({n_head})"),
            ));
        }
        let vocab_size = size("vocab_size", raw.vocab_size.unwrap_or(513), MAX_DIM)?;
        if vocab_size < 2 {
            return Err(field(
                "vocab_size",
                format!("{vocab_size} leaves no colour tokens"),
            ));
        }
        let n_inner = match raw.n_inner {
            Some(v) => size("n_inner", v, MAX_DIM)?,
            None => 4 * n_embd,
        };
        let eps = raw.layer_norm_epsilon.unwrap_or(1e-5);
        if !(eps.is_finite() && eps > 0.0) {
            return Err(field(
                "layer_norm_epsilon",
                format!("{eps} must be a positive number"),
            ));
        }
        let num_labels = match (raw.num_labels, &raw.id2label) {
            (Some(n), _) => size("num_labels", n, MAX_DIM)?,
            (None, Some(map)) if !map.is_empty() => map.len(),
            _ => 2,
        };
        Ok(Self {
            vocab_size,
            n_positions: size("n_positions", raw.n_positions.unwrap_or(1024), MAX_DIM)?,
            n_embd,
            n_layer: size("n_layer", raw.n_layer.unwrap_or(24), MAX_LAYERS)?,
            n_head,
            n_inner,
            layer_norm_epsilon: eps,
            scale_attn_weights: raw.scale_attn_weights.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: raw.scale_attn_by_inverse_layer_idx.unwrap_or(false),
            num_labels,
            labels: labels(raw.id2label.as_ref(), num_labels),
        })
    }

    /// The name of label `id`: `id2label`'s, else HF's `LABEL_{id}`.
    pub fn label(&self, id: usize) -> String {
        self.labels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// `id2label` as JSON (`{"0": "cat", ...}`; only the ids it names), for export metadata.
    pub fn id2label_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(i, l)| (i.to_string(), serde_json::Value::from(l.as_str())))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Number of colour-cluster logits the LM head produces (SOS is never predicted).
    pub fn lm_vocab(&self) -> usize {
        self.vocab_size - 1
    }

    /// The configuration as HF's `config.json` would write it (for random checkpoints and
    /// provenance).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": "imagegpt",
            "architectures": ["ImageGPTForCausalImageModeling"],
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "activation_function": "quick_gelu",
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": false,
            "tie_word_embeddings": false,
            "add_cross_attention": false,
            "num_labels": self.num_labels,
        })
    }
}

/// The published checkpoint sizes (`openai/imagegpt-{small,medium,large}`), plus `tiny` for
/// quick experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    Tiny,
    Small,
    Medium,
    Large,
}

impl Variant {
    /// Parses a variant name.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name {
            "tiny" => Ok(Self::Tiny),
            "small" => Ok(Self::Small),
            "medium" => Ok(Self::Medium),
            "large" => Ok(Self::Large),
            other => Err(ConfigError::UnknownVariant {
                name: other.to_string(),
            }),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Large => "large",
        }
    }

    /// The hub repository holding the published weights, where one exists.
    pub fn hub_repo(self) -> Option<&'static str> {
        match self {
            Self::Tiny => None,
            Self::Small => Some("openai/imagegpt-small"),
            Self::Medium => Some("openai/imagegpt-medium"),
            Self::Large => Some("openai/imagegpt-large"),
        }
    }

    /// The configuration of this size.
    pub fn config(self) -> ImageGptConfig {
        let (n_embd, n_layer, n_head, n_positions) = match self {
            Self::Tiny => (64, 2, 4, 64),
            Self::Small => (512, 24, 8, 1024),
            Self::Medium => (1024, 36, 8, 1024),
            Self::Large => (1536, 48, 16, 1024),
        };
        ImageGptConfig {
            vocab_size: 513,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: 4 * n_embd,
            layer_norm_epsilon: 1e-5,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            num_labels: 2,
            labels: Default::default(),
        }
    }

    /// Checks that a checkpoint's config is this size, naming the first field that differs.
    pub fn check(self, cfg: &ImageGptConfig) -> Result<(), ConfigError> {
        let want = self.config();
        let pairs: [(&'static str, usize, usize); 6] = [
            ("vocab_size", cfg.vocab_size, want.vocab_size),
            ("n_positions", cfg.n_positions, want.n_positions),
            ("n_embd", cfg.n_embd, want.n_embd),
            ("n_layer", cfg.n_layer, want.n_layer),
            ("n_head", cfg.n_head, want.n_head),
            ("n_inner", cfg.n_inner, want.n_inner),
        ];
        for (name, got, expected) in pairs {
            if got != expected {
                return Err(ConfigError::VariantMismatch {
                    variant: self.name().into(),
                    field: name,
                    checkpoint: got.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        Ok(())
    }
}

fn field(field: &'static str, message: String) -> ConfigError {
    ConfigError::Field { field, message }
}

/// A size field: positive and at most `max`.
fn size(name: &'static str, v: i64, max: usize) -> Result<usize, ConfigError> {
    let v = usize::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| field(name, format!("{v} must be a positive integer")))?;
    if v > max {
        return Err(field(
            name,
            format!("{v} is implausibly large (at most {max})"),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ImageGptConfig, ConfigError> {
        ImageGptConfig::from_raw(&serde_json::from_str(json).expect("test JSON"))
    }

    #[test]
    fn defaults_are_hf_defaults() {
        let c = parse("{}").expect("empty config is HF defaults");
        assert_eq!(c, Variant::Small.config());
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.lm_vocab(), 512);
    }

    #[test]
    fn num_labels_from_id2label() {
        let c = parse(r#"{"id2label": {"0": "a", "1": "b", "2": "c"}}"#).expect("valid");
        assert_eq!(c.num_labels, 3);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                r#"{"n_embd": 30, "n_head": 4}"#,
                "n_embd (30) is not divisible by n_head (4)",
            ),
            (
                r#"{"activation_function": "gelu"}"#,
                "`activation_function`",
            ),
            (r#"{"add_cross_attention": true}"#, "`add_cross_attention`"),
            (
                r#"{"n_layer": 0}"#,
                "`n_layer`: 0 must be a positive integer",
            ),
            (r#"{"model_type": "gpt2"}"#, "`model_type`"),
        ];
        for (json, needle) in cases {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn variant_mismatch_names_field() {
        let err = Variant::Medium
            .check(&Variant::Small.config())
            .expect_err("small is not medium")
            .to_string();
        assert_eq!(
            err,
            "--variant medium contradicts the checkpoint's config: `n_embd` is 512 in the checkpoint, 1024 for medium"
        );
    }
}
