//! Golden cases made by `fixtures/generate.py` from the reference implementation: the model
//! folder, inputs, expected outputs (`<head>/<output>` keys) and a manifest. Format:
//! `fixtures/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::config::{ImageGptConfig, RawConfig};

/// A problem with a case, naming the file and the tensor or field.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Safetensors { path: String, reason: String },
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: String, name: String },
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    BadTensor {
        path: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error("{path}: {message}")]
    InvalidInputs { path: String, message: String },
    #[error("no cases (folders with manifest.json) in {0}")]
    NoCases(String),
}

/// Comparison budget: `|actual - expected| <= atol + rtol * |expected|`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            atol: 1e-4,
            rtol: 1e-3,
        }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The head class the checkpoint was saved from.
    pub head: String,
    pub config: serde_json::Value,
    /// Expected output names by head (`{"causal-lm": ["logits"], "base": [...]}`).
    pub outputs: BTreeMap<String, Vec<String>>,
    pub tolerance: Tolerance,
    /// `"exclude"`: per-position outputs at padded positions are not compared.
    #[serde(default)]
    pub padded_positions: String,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub weights_dtype: Option<String>,
}

/// The two graph inputs.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub input_ids: Array2<i64>,
    pub attention_mask: Array2<i64>,
}

/// A loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config: ImageGptConfig,
    pub inputs: Inputs,
    /// Expected tensors by `<head>/<output>`.
    pub expected: BTreeMap<String, ArrayD<f32>>,
}

impl Case {
    /// The checkpoint folder.
    pub fn model_dir(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// Whether padded positions are left out of per-position comparisons.
    pub fn exclude_padded(&self) -> bool {
        self.manifest.padded_positions == "exclude"
    }

    /// The expected tensor for `head`'s `output`.
    pub fn expected(&self, head: &str, output: &str) -> Option<&ArrayD<f32>> {
        self.expected.get(&format!("{head}/{output}"))
    }

    /// Loads and checks a case folder.
    pub fn load(dir: &Path) -> Result<Case, FixtureError> {
        let mpath = dir.join("manifest.json");
        let shown = mpath.display().to_string();
        let text = std::fs::read_to_string(&mpath).map_err(|source| FixtureError::Io {
            path: shown.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| FixtureError::Manifest {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if manifest.schema != 1 {
            return Err(FixtureError::Manifest {
                path: shown,
                reason: format!("schema {} is not supported (expected 1)", manifest.schema),
            });
        }
        let raw: RawConfig = serde_json::from_value(manifest.config.clone()).map_err(|e| {
            FixtureError::Manifest {
                path: shown.clone(),
                reason: format!("`config`: {e}"),
            }
        })?;
        let config = ImageGptConfig::from_raw(&raw).map_err(|e| FixtureError::Manifest {
            path: shown.clone(),
            reason: e.to_string(),
        })?;

        let ipath = dir.join("inputs.safetensors");
        let input_ids = read_tensors(&ipath, |st| i64_matrix(st, &ipath, "input_ids"))?;
        let attention_mask = read_tensors(&ipath, |st| i64_matrix(st, &ipath, "attention_mask"))?;
        let inputs = Inputs {
            input_ids,
            attention_mask,
        };
        check_inputs(&inputs, &config, &ipath)?;

        let epath = dir.join("expected.safetensors");
        let expected = read_tensors(&epath, |st| {
            let mut out = BTreeMap::new();
            for (head, names) in &manifest.outputs {
                for name in names {
                    let key = format!("{head}/{name}");
                    out.insert(key.clone(), f32_tensor(st, &epath, &key)?);
                }
            }
            Ok(out)
        })?;
        Ok(Case {
            dir: dir.to_path_buf(),
            manifest,
            config,
            inputs,
            expected,
        })
    }
}

/// Every case folder under `root` (sorted by name).
pub fn discover(root: &Path) -> Result<Vec<PathBuf>, FixtureError> {
    let entries = std::fs::read_dir(root).map_err(|source| FixtureError::Io {
        path: root.display().to_string(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(FixtureError::NoCases(root.display().to_string()));
    }
    Ok(dirs)
}

/// Token ids in `[0, vocab_size)`, a 0/1 mask of the same shape, at most `n_positions` long.
pub fn check_inputs(
    inputs: &Inputs,
    config: &ImageGptConfig,
    path: &Path,
) -> Result<(), FixtureError> {
    let bad = |message: String| FixtureError::InvalidInputs {
        path: path.display().to_string(),
        message,
    };
    if inputs.input_ids.shape() != inputs.attention_mask.shape() {
        return Err(bad(format!(
            "attention_mask shape {:?} differs from input_ids shape {:?}",
            inputs.attention_mask.shape(),
            inputs.input_ids.shape()
        )));
    }
    let seq = inputs.input_ids.ncols();
    if seq == 0 || seq > config.n_positions {
        return Err(bad(format!(
            "sequence length {seq} is outside 1..={} (n_positions)",
            config.n_positions
        )));
    }
    if let Some(((b, s), id)) = inputs
        .input_ids
        .indexed_iter()
        .find(|(_, &id)| id < 0 || id as usize >= config.vocab_size)
    {
        return Err(bad(format!(
            "token id {id} at [{b}, {s}] is out of range [0, {}) (vocab_size)",
            config.vocab_size
        )));
    }
    if inputs.attention_mask.iter().any(|&m| m != 0 && m != 1) {
        return Err(bad("attention_mask holds values other than 0 and 1".into()));
    }
    Ok(())
}

fn read_tensors<T>(
    path: &Path,
    f: impl FnOnce(&SafeTensors<'_>) -> Result<T, FixtureError>,
) -> Result<T, FixtureError> {
    let bytes = std::fs::read(path).map_err(|source| FixtureError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| FixtureError::Safetensors {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    f(&st)
}

fn view<'a>(
    st: &'a SafeTensors<'_>,
    path: &Path,
    name: &str,
    dtype: Dtype,
) -> Result<safetensors::tensor::TensorView<'a>, FixtureError> {
    let t = st.tensor(name).map_err(|_| FixtureError::MissingTensor {
        path: path.display().to_string(),
        name: name.to_string(),
    })?;
    if t.dtype() != dtype {
        return Err(FixtureError::BadTensor {
            path: path.display().to_string(),
            name: name.to_string(),
            expected: format!("{dtype:?}"),
            found: format!("{:?}", t.dtype()),
        });
    }
    Ok(t)
}

fn i64_matrix(st: &SafeTensors<'_>, path: &Path, name: &str) -> Result<Array2<i64>, FixtureError> {
    let t = view(st, path, name, Dtype::I64)?;
    let shape = t.shape().to_vec();
    let data: Vec<i64> = t
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    match shape[..] {
        [b, s] => Array2::from_shape_vec((b, s), data).map_err(|e| e.to_string()),
        _ => Err(format!("rank {}", shape.len())),
    }
    .map_err(|found| FixtureError::BadTensor {
        path: path.display().to_string(),
        name: name.to_string(),
        expected: "int64 [batch, sequence]".into(),
        found,
    })
}

fn f32_tensor(st: &SafeTensors<'_>, path: &Path, name: &str) -> Result<ArrayD<f32>, FixtureError> {
    let t = view(st, path, name, Dtype::F32)?;
    let data: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    ArrayD::from_shape_vec(IxDyn(t.shape()), data).map_err(|e| FixtureError::BadTensor {
        path: path.display().to_string(),
        name: name.to_string(),
        expected: "float32".into(),
        found: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    /// A copy of a case in a temp folder, to break.
    fn copy_case(name: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        for f in [
            "manifest.json",
            "inputs.safetensors",
            "expected.safetensors",
        ] {
            std::fs::copy(fixtures().join(name).join(f), tmp.path().join(f)).expect("copy");
        }
        tmp
    }

    #[test]
    fn loads_every_case() {
        let dirs = discover(&fixtures()).expect("cases");
        assert!(dirs.len() >= 13, "{dirs:?}");
        let case = Case::load(&fixtures().join("padded-batch")).expect("load");
        assert_eq!(case.inputs.input_ids.shape(), &[3, 20]);
        let valid: Vec<i64> = case
            .inputs
            .attention_mask
            .rows()
            .into_iter()
            .map(|r| r.sum())
            .collect();
        assert_eq!(valid, vec![20, 13, 5]);
        assert_eq!(
            case.expected("causal-lm", "logits")
                .map(|t| t.shape().to_vec()),
            Some(vec![3, 20, 512])
        );
        assert!(case.exclude_padded());
        assert_eq!(case.config.n_embd, 32);
    }

    #[test]
    fn corrupt_manifest_is_named() {
        let tmp = copy_case("causal-lm");
        std::fs::write(
            tmp.path().join("manifest.json"),
            "{\"schema\": 1, \"name\": ",
        )
        .expect("write");
        let err = Case::load(tmp.path()).expect_err("corrupt").to_string();
        assert!(err.starts_with("invalid manifest "), "{err}");
        assert!(err.contains("manifest.json: EOF while parsing"), "{err}");
    }

    #[test]
    fn missing_tensor_is_named() {
        let tmp = copy_case("causal-lm");
        // Rewrite expected.safetensors without the logits.
        let bytes = std::fs::read(tmp.path().join("expected.safetensors")).expect("read");
        let st = SafeTensors::deserialize(&bytes).expect("valid");
        let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "causal-lm/logits")
            .collect();
        safetensors::serialize_to_file(kept, None, &tmp.path().join("expected.safetensors"))
            .expect("write");
        let err = Case::load(tmp.path()).expect_err("missing").to_string();
        assert!(
            err.ends_with("expected.safetensors: missing tensor `causal-lm/logits`"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_token_is_named() {
        let case = Case::load(&fixtures().join("short-seq")).expect("load");
        let mut inputs = case.inputs.clone();
        inputs.input_ids[[0, 3]] = 513;
        let err = check_inputs(&inputs, &case.config, Path::new("in.safetensors"))
            .expect_err("513 is out of range")
            .to_string();
        assert_eq!(
            err,
            "in.safetensors: token id 513 at [0, 3] is out of range [0, 513) (vocab_size)"
        );
    }
}
