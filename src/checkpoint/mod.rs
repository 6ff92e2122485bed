//! Where weights come from: a checkpoint is a validated config plus one typed tensor store
//! ([`store`]) filled by a format reader ([`safetensors`]), checked against the tensor list the
//! config implies (names and shapes as in HF `modeling_imagegpt.py`). [`source`] turns stored
//! tensors into the bytes an exported graph holds.

pub mod safetensors;
pub mod source;
pub mod store;

use std::path::{Path, PathBuf};

pub use source::{SourceError, TensorSource};
pub use store::{TensorMeta, WeightStore, WeightsError};

use crate::config::{ConfigError, ImageGptConfig, Variant};

/// Heads an export can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Head {
    /// `ImageGPTModel`: last_hidden_state (and optionally every hidden state).
    Base,
    /// `ImageGPTForCausalImageModeling`: next-token logits over the 512 colour clusters.
    CausalLm,
    /// `ImageGPTForImageClassification`: mean-pooled features through `score`.
    Classifier,
    /// The causal LM with a KV cache: `past_key_values` in, `present` out, one graph for the
    /// prompt and every generation step.
    Decoder,
}

impl Head {
    /// All heads, in a stable order.
    pub const ALL: [Head; 4] = [Head::Base, Head::CausalLm, Head::Classifier, Head::Decoder];

    /// The name used for files and reports (`causal-lm`).
    pub fn name(self) -> &'static str {
        match self {
            Head::Base => "base",
            Head::CausalLm => "causal-lm",
            Head::Classifier => "classifier",
            Head::Decoder => "decoder",
        }
    }

    /// Parses a head name.
    pub fn parse(name: &str) -> Option<Head> {
        Head::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The weight this head adds to the trunk, if any.
    pub fn weight_name(self) -> Option<&'static str> {
        match self {
            Head::Base => None,
            Head::CausalLm | Head::Decoder => Some("lm_head.weight"),
            Head::Classifier => Some("score.weight"),
        }
    }
}

/// Anything that stops a checkpoint from opening.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    NoConfig(String),
}

/// A checkpoint ready to export.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: ImageGptConfig,
    pub weights: WeightStore,
    /// Where the weights came from (for provenance).
    pub source: PathBuf,
}

impl Checkpoint {
    /// Opens a model folder or a `.safetensors` file. The config comes from `config` when given,
    /// else from `config.json` beside the weights, else from `variant`. A variant given together
    /// with a config must agree with it.
    pub fn open(
        weights: &Path,
        config: Option<&Path>,
        variant: Option<Variant>,
    ) -> Result<Self, CheckpointError> {
        // Said first: otherwise a mistyped path reads as a missing config.json.
        if !weights.exists() {
            return Err(WeightsError::NotFound(format!(
                "weights path {} does not exist",
                weights.display()
            ))
            .into());
        }
        let folder = if weights.is_dir() {
            Some(weights.to_path_buf())
        } else {
            weights.parent().map(Path::to_path_buf)
        };
        let beside = folder
            .map(|f| f.join("config.json"))
            .filter(|p| p.is_file());
        let cfg = match (config, beside, variant) {
            (Some(path), _, _) => ImageGptConfig::from_file(path)?,
            (None, Some(path), _) => ImageGptConfig::from_file(&path)?,
            (None, None, Some(v)) => v.config(),
            (None, None, None) => {
                return Err(CheckpointError::NoConfig(format!(
                "no config.json beside {}: pass --config FILE or --variant tiny|small|medium|large",
                weights.display()
            )))
            }
        };
        if let Some(v) = variant {
            v.check(&cfg)?;
        }
        let store = WeightStore::open(weights)?;
        let ckpt = Self {
            config: cfg,
            weights: store,
            source: weights.to_path_buf(),
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// Heads this checkpoint has weights for (`base` always).
    pub fn available_heads(&self) -> Vec<Head> {
        Head::ALL
            .into_iter()
            .filter(|h| {
                h.weight_name()
                    .is_none_or(|w| self.weights.get(w).is_some())
            })
            .collect()
    }

    /// Every trunk tensor present with the right shape and a float dtype; head tensors, when
    /// present, shaped right; nothing else but the legacy attention buffers.
    fn validate(&self) -> Result<(), WeightsError> {
        let expected = expected_tensors(&self.config);
        for (name, shape) in &expected {
            let is_head = Head::ALL.iter().any(|h| h.weight_name() == Some(name));
            if self.weights.get(name).is_none() {
                if is_head {
                    continue;
                }
                // Name it as this checkpoint would store it, so it can be searched for.
                return Err(WeightsError::Missing(self.weights.trunk_name(name)));
            }
            self.weights.require(name, shape)?;
        }
        for name in self.weights.names() {
            let known = expected.iter().any(|(n, _)| n == name)
                || is_legacy_buffer(name, self.config.n_layer);
            if !known {
                let stored = self
                    .weights
                    .get(name)
                    .map_or(name, |m| m.stored_name.as_str());
                return Err(WeightsError::Unexpected(stored.to_string()));
            }
        }
        Ok(())
    }
}

/// The shard files a `*.index.json` names (`weight_map` values), beside the index.
pub(crate) fn shard_files(index: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let err = |reason: String| WeightsError::Index {
        path: index.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|e| err(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| err("no `weight_map` object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names: Vec<&str> = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| err(format!("`{tensor}` maps to a non-string")))?;
        // Shards live beside the index: refuse anything that would escape the folder.
        if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
            return Err(err(format!("shard name `{file}` is not a plain file name")));
        }
        names.push(file);
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(err("`weight_map` is empty".into()));
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// `h.N.attn.bias` (the uint8 causal mask) and `h.N.attn.masked_bias` for a layer N the config
/// has: buffers the published checkpoints carry that hold no learned weights. One for a layer
/// beyond `n_layer` means the weights are not this config's, and stays an error.
fn is_legacy_buffer(name: &str, n_layer: usize) -> bool {
    let Some(rest) = name.strip_prefix("h.") else {
        return false;
    };
    let Some((layer, tail)) = rest.split_once('.') else {
        return false;
    };
    layer.parse::<usize>().is_ok_and(|l| l < n_layer)
        && matches!(tail, "attn.bias" | "attn.masked_bias")
}

/// Canonical name and shape of every tensor a checkpoint of this config may hold.
pub fn expected_tensors(c: &ImageGptConfig) -> Vec<(String, Vec<usize>)> {
    let (d, inner) = (c.n_embd, c.n_inner);
    let mut out = vec![
        ("wte.weight".to_string(), vec![c.vocab_size, d]),
        ("wpe.weight".to_string(), vec![c.n_positions, d]),
    ];
    for i in 0..c.n_layer {
        let p = |leaf: &str| format!("h.{i}.{leaf}");
        out.extend([
            (p("ln_1.weight"), vec![d]),
            (p("attn.c_attn.weight"), vec![d, 3 * d]),
            (p("attn.c_attn.bias"), vec![3 * d]),
            (p("attn.c_proj.weight"), vec![d, d]),
            (p("attn.c_proj.bias"), vec![d]),
            (p("ln_2.weight"), vec![d]),
            (p("mlp.c_fc.weight"), vec![d, inner]),
            (p("mlp.c_fc.bias"), vec![inner]),
            (p("mlp.c_proj.weight"), vec![inner, d]),
            (p("mlp.c_proj.bias"), vec![d]),
        ]);
    }
    out.push(("ln_f.weight".to_string(), vec![d]));
    out.push(("lm_head.weight".to_string(), vec![c.lm_vocab(), d]));
    out.push(("score.weight".to_string(), vec![c.num_labels, d]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_buffers() {
        assert!(is_legacy_buffer("h.12.attn.bias", 24));
        assert!(is_legacy_buffer("h.0.attn.masked_bias", 24));
        assert!(!is_legacy_buffer("h.24.attn.bias", 24));
        assert!(!is_legacy_buffer("h.0.attn.c_attn.bias", 24));
        assert!(!is_legacy_buffer("h.x.attn.bias", 24));
    }

    #[test]
    fn published_small_has_76_7m_parameters() {
        let cfg = Variant::Small.config();
        let n: usize = expected_tensors(&cfg)
            .iter()
            .filter(|(n, _)| n != "score.weight")
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // The model card's figure: 76.7M parameters (trunk + LM head).
        assert_eq!((n as f64 / 1e5).round() / 10.0, 76.7, "{n}");
    }
}
