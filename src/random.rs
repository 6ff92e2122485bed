//! Random-weight checkpoints of any size, laid out like the hub's
//! `ImageGPTForCausalImageModeling` checkpoints (config.json + model.safetensors): for
//! benchmarks and for trying a deployment pipeline before downloading weights. The weights are
//! generated tensor by tensor while the file is written, so even `large` needs little memory.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, View};

use crate::base::files::{self, FileError};
use crate::checkpoint::expected_tensors;
use crate::config::ImageGptConfig;

/// A random-checkpoint failure.
#[derive(Debug, thiserror::Error)]
pub enum RandomError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot write {path}: it is a file, not a folder")]
    NotAFolder { path: String },
    #[error("cannot write {path}: {source}")]
    Serialize {
        path: String,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

/// A tensor whose values are drawn when the serializer asks for its bytes.
struct RandomTensor {
    name: String,
    shape: Vec<usize>,
    seed: u64,
}

impl View for RandomTensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(draw(&self.name, &self.shape, self.seed))
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

/// Values in the spirit of HF's init, with a spread that exercises the math: norm weights
/// around 1, small biases, matrices with std ≈ 0.02·√3 uniform.
fn draw(name: &str, shape: &[usize], seed: u64) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64(seed ^ fnv1a(name));
    let (center, half_width) = if name.contains("ln_") {
        (1.0, 0.25)
    } else if name.ends_with(".bias") {
        (0.0, 0.05)
    } else {
        (0.0, 0.035)
    };
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let v: f32 = center + half_width * rng.unit();
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// SplitMix64: tiny, fast and stable across versions (the output must never change for a seed).
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `out/config.json` and `out/model.safetensors` (trunk under `transformer.`, plus
/// `lm_head.weight`). Returns the weights path.
pub fn write_random_checkpoint(
    cfg: &ImageGptConfig,
    seed: u64,
    out: &Path,
) -> Result<PathBuf, RandomError> {
    if out.exists() && !out.is_dir() {
        return Err(RandomError::NotAFolder {
            path: out.display().to_string(),
        });
    }
    std::fs::create_dir_all(out).map_err(FileError::at("write", out))?;
    let tensors: Vec<(String, RandomTensor)> = expected_tensors(cfg)
        .into_iter()
        .filter(|(name, _)| name != "score.weight")
        .map(|(name, shape)| {
            let stored = if name == "lm_head.weight" {
                name.clone()
            } else {
                format!("transformer.{name}")
            };
            (stored, RandomTensor { name, shape, seed })
        })
        .collect();
    let weights = out.join("model.safetensors");
    // An unpredictable name created exclusively beside the destination: a planted file or
    // symlink at a fixed temporary name cannot redirect the write.
    let (file, tmp) = files::temp_file_beside(&weights)?;
    drop(file);
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(meta), tmp.path()).map_err(|source| {
        RandomError::Serialize {
            path: weights.display().to_string(),
            source,
        }
    })?;
    tmp.rename_to(&weights)?;
    let config = out.join("config.json");
    let text = serde_json::to_string_pretty(&cfg.to_hf_json()).unwrap_or_default() + "\n";
    files::write_atomic(&config, text.as_bytes())?;
    Ok(weights)
}
