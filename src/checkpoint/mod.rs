//! Where weights come from: a checkpoint is a validated config plus one typed tensor store
//! ([`store`]) filled by a format reader ([`safetensors`]), checked against the tensor list the
//! config implies (names and shapes as in HF `modeling_imagegpt.py`). [`source`] turns stored
//! tensors into the bytes an exported graph holds.

mod format;
pub mod hub;
pub(crate) mod index;

pub mod safetensors;
pub mod source;
pub mod store;
pub mod torch;

use std::path::{Path, PathBuf};

pub use format::open as open_weights;
pub use store::{TensorMeta, WeightStore, WeightsError};

use crate::config::{ConfigError, ImageGptConfig, Variant};

/// Anything that stops a checkpoint from opening.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(
        "no config.json beside {weights}: pass --config FILE or --variant tiny|small|medium|large"
    )]
    NoConfig { weights: String },
}

/// A checkpoint ready to export.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: ImageGptConfig,
    pub weights: WeightStore,
    /// Where the weights came from (for provenance).
    pub source: PathBuf,
    /// The hub repository and commit, when the weights were resolved from the HF cache.
    pub origin: Option<hub::HubOrigin>,
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
            return Err(WeightsError::NoPath {
                path: weights.display().to_string(),
            }
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
                return Err(CheckpointError::NoConfig {
                    weights: weights.display().to_string(),
                })
            }
        };
        if let Some(v) = variant {
            v.check(&cfg)?;
        }
        let store = format::open(weights)?;
        let ckpt = Self {
            config: cfg,
            weights: store,
            source: weights.to_path_buf(),
            origin: None,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// Every trunk tensor present with the right shape and a float dtype; head tensors, when
    /// present, shaped right; nothing else but the legacy attention buffers.
    fn validate(&self) -> Result<(), WeightsError> {
        let expected = expected_tensors(&self.config);
        for (name, shape) in &expected {
            let is_head = HEAD_WEIGHTS.contains(&name.as_str());
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

/// The weights only a head needs: a checkpoint may lack them (a bare `ImageGPTModel`, an LM
/// without a classifier).
pub const HEAD_WEIGHTS: [&str; 2] = ["lm_head.weight", "score.weight"];

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
