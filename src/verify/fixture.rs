//! Golden cases made by `fixtures/generate.py` from the reference implementation: the model
//! folder, inputs (a name → tensor map), expected outputs (`<head>/<output>` keys) and a
//! manifest. Format: `fixtures/README.md`. How a case feeds a graph is in `feed.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::base::dtype::safetensors_name;
use crate::base::Tensor;
use crate::config::{ImageGptConfig, RawConfig};
use crate::graph::io::{is_past, ATTENTION_MASK};
use crate::graph::Head;

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
    #[error("case {case} cannot feed graph input `{input}` for the {head} head ({reason})")]
    CannotFeed {
        case: String,
        head: &'static str,
        input: String,
        #[source]
        reason: FeedMiss,
    },
    #[error("no cases (folders with manifest.json) in {path}")]
    NoCases { path: String },
    #[error("{path} is not a case but holds {cases} of them: name one")]
    ManyCases { path: String, cases: usize },
}

/// Why a case has nothing for a graph input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedMiss {
    #[error("it has {}", .0.join(", "))]
    NotInCase(Vec<String>),
    #[error("no int64 `{0}` to derive it from")]
    NoStep(String),
    #[error("the decoder step's ids and mask are not [batch, length]")]
    StepRank,
    #[error("the decoder step's mask is shorter than its ids")]
    StepMask,
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
    /// A labelled set, relative to the case folder (a safetensors file: `input_ids`,
    /// `labels`, the reference's `predicted` and `logprob`).
    #[serde(default)]
    pub labelled: Option<String>,
    /// The reference's greedy generations, relative to the case folder (JSON, the layout of
    /// `generate_greedy.py`).
    #[serde(default)]
    pub generations: Option<String>,
}

/// Held-out examples with labels, and what the reference made of them.
#[derive(Debug, Clone)]
pub struct LabelledSet {
    /// `[N, 1 + T]`: the start token, then each example's `T` tokens.
    pub ids: Array2<i64>,
    /// `[N]`: the true class.
    pub labels: Vec<i64>,
    /// `[N]`: the reference classifier's class on the `T` tokens (no start token).
    pub predicted: Vec<i64>,
    /// `[N, T]`: the reference causal LM's log-probability of each token given the ones
    /// before it (start token first); absent: no NLL from this set.
    pub logprob: Option<Array2<f32>>,
    /// `[N, T]` each: the reference causal LM's argmax at every position and its top-1/top-2
    /// logit gap; absent: no argmax flips over this set.
    pub top2: Option<(Array2<i64>, Array2<f32>)>,
}

/// One of the reference's greedy generations.
#[derive(Debug, Clone, Deserialize)]
pub struct GreedyRun {
    pub description: String,
    /// `[batch][prompt length]`.
    pub prompt: Vec<Vec<i64>>,
    /// `[batch][prompt length + new tokens]`: the prompt, then the greedy tokens.
    pub tokens: Vec<Vec<i64>>,
}

/// A case's inputs file.
pub const INPUTS_FILE: &str = "inputs.safetensors";

/// Input tensors by name, as `inputs.safetensors` holds them.
pub type Inputs = BTreeMap<String, Tensor>;

/// A loaded case.
#[derive(Debug, Clone)]
pub struct Case {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config: ImageGptConfig,
    pub inputs: Inputs,
    /// Expected tensors by `<head>/<output>`.
    pub expected: BTreeMap<String, ArrayD<f32>>,
    /// The manifest's `labelled` set, read.
    pub labelled: Option<LabelledSet>,
    /// The manifest's `generations`, read (the image prompt's run included).
    pub generations: Option<Vec<GreedyRun>>,
}

/// The input names of the `decoder` head's step in `inputs.safetensors`.
pub(crate) const DECODER_PREFIX: &str = "decoder.";

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
    pub fn expected(&self, head: Head, output: &str) -> Option<&ArrayD<f32>> {
        self.expected.get(&format!("{}/{output}", head.name()))
    }

    /// The outputs `head`'s graph must produce, by output name. The past key/values among the
    /// decoder goldens are its inputs, not outputs.
    pub fn expected_outputs(&self, head: Head) -> BTreeMap<String, ArrayD<f32>> {
        let prefix = format!("{}/", head.name());
        self.expected
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v)))
            .filter(|(n, _)| !is_past(n))
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    /// The `[batch, sequence]` mask that says which positions of `head`'s per-position outputs
    /// count, when the case leaves padded positions out (decoder outputs are compared whole).
    pub fn position_mask(&self, head: Head) -> Option<Array2<i64>> {
        if !self.exclude_padded() || head == Head::Decoder {
            return None;
        }
        self.unpadded_positions()
    }

    /// The case's `[batch, sequence]` attention mask, whatever the manifest says of padded
    /// positions: the decoder checked step by step against the full forward is a generation
    /// graph, whose padded positions' logits nothing reads (HF's padded queries, which see no
    /// unpadded key, are compared on the full-sequence graphs).
    pub fn unpadded_positions(&self) -> Option<Array2<i64>> {
        let m = self.inputs.get(ATTENTION_MASK)?.as_i64()?;
        m.clone().into_dimensionality::<Ix2>().ok()
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

        // The name becomes a folder of the golden suite's temporary tree: one plain component.
        if !is_plain_name(&manifest.name) {
            return Err(FixtureError::Manifest {
                path: shown,
                reason: format!(
                    "`name` {:?} is not a plain folder name (letters, digits, `.`, `_`, `-`)",
                    manifest.name
                ),
            });
        }

        let ipath = dir.join(INPUTS_FILE);
        let inputs = read_all(&ipath)?;
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
        let labelled = match &manifest.labelled {
            Some(rel) => Some(read_labelled(&dir.join(rel), &config)?),
            None => None,
        };
        let generations = match &manifest.generations {
            Some(rel) => Some(read_generations(&dir.join(rel), &config)?),
            None => None,
        };
        Ok(Case {
            dir: dir.to_path_buf(),
            manifest,
            config,
            inputs,
            expected,
            labelled,
            generations,
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
        return Err(FixtureError::NoCases {
            path: root.display().to_string(),
        });
    }
    Ok(dirs)
}

/// The case at `path`: the folder itself, or the one case folder inside a folder without a
/// manifest (`fixtures/trained` holds `digits`); a folder of several cases is refused.
pub fn case_folder(path: &Path) -> Result<PathBuf, FixtureError> {
    if path.join("manifest.json").is_file() {
        return Ok(path.to_path_buf());
    }
    match discover(path) {
        Ok(mut cases) if cases.len() == 1 => Ok(cases.remove(0)),
        Ok(cases) => Err(FixtureError::ManyCases {
            path: path.display().to_string(),
            cases: cases.len(),
        }),
        // Not a folder of cases either: loading it says what is missing.
        Err(_) => Ok(path.to_path_buf()),
    }
}

/// A manifest `name` that is safe as one path component.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// For each id/mask pair (`input_ids` / `attention_mask`, and the decoder step's
/// `decoder.input_ids` / `decoder.attention_mask`): int64 `[batch, length]`, token ids in
/// `[0, vocab_size)`, a 0/1 mask over the same batch covering at least the ids (exactly them
/// without a past), at most `n_positions` long.
pub fn check_inputs(
    inputs: &Inputs,
    config: &ImageGptConfig,
    path: &Path,
) -> Result<(), FixtureError> {
    let bad = |message: String| FixtureError::InvalidInputs {
        path: path.display().to_string(),
        message,
    };
    for prefix in ["", DECODER_PREFIX] {
        let ids_name = format!("{prefix}input_ids");
        let mask_name = format!("{prefix}attention_mask");
        let (ids, mask) = match (inputs.get(&ids_name), inputs.get(&mask_name)) {
            (None, None) if !prefix.is_empty() => continue,
            (Some(i), Some(m)) => (matrix(i, &ids_name, path)?, matrix(m, &mask_name, path)?),
            (None, _) => return Err(missing(path, &ids_name)),
            (_, None) => return Err(missing(path, &mask_name)),
        };
        let with_past = !prefix.is_empty();
        let shapes_ok = if with_past {
            ids.nrows() == mask.nrows() && mask.ncols() >= ids.ncols()
        } else {
            ids.shape() == mask.shape()
        };
        if !shapes_ok {
            return Err(bad(format!(
                "{mask_name} shape {:?} differs from {ids_name} shape {:?}",
                mask.shape(),
                ids.shape()
            )));
        }
        let seq = mask.ncols();
        if ids.ncols() == 0 || seq > config.n_positions {
            return Err(bad(format!(
                "sequence length {seq} is outside 1..={} (n_positions)",
                config.n_positions
            )));
        }
        if let Some(((b, s), id)) = ids
            .indexed_iter()
            .find(|(_, &id)| usize::try_from(id).map_or(true, |id| id >= config.vocab_size))
        {
            return Err(bad(format!(
                "token id {id} at [{b}, {s}] is out of range [0, {}) (vocab_size)",
                config.vocab_size
            )));
        }
        if mask.iter().any(|&m| m != 0 && m != 1) {
            return Err(bad(format!("{mask_name} holds values other than 0 and 1")));
        }
    }
    Ok(())
}

fn missing(path: &Path, name: &str) -> FixtureError {
    FixtureError::MissingTensor {
        path: path.display().to_string(),
        name: name.into(),
    }
}

/// An int64 `[batch, length]` input.
fn matrix<'a>(
    t: &'a Tensor,
    name: &str,
    path: &Path,
) -> Result<ndarray::ArrayView2<'a, i64>, FixtureError> {
    t.as_i64()
        .and_then(|a| a.view().into_dimensionality::<Ix2>().ok())
        .ok_or_else(|| FixtureError::BadTensor {
            path: path.display().to_string(),
            name: name.into(),
            expected: "int64 [batch, sequence]".into(),
            found: t.describe(),
        })
}

/// A labelled set or generations file that does not read as the case format says.
fn invalid(path: &Path, message: impl Into<String>) -> FixtureError {
    FixtureError::InvalidInputs {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A labelled set (see [`LabelledSet`]), its shapes and token ids checked.
pub fn read_labelled(path: &Path, config: &ImageGptConfig) -> Result<LabelledSet, FixtureError> {
    let bad = |m: String| invalid(path, m);
    let (ids, labels, predicted, logprob) = read_tensors(path, |st| {
        let ints = |name: &str| match any_tensor(st, path, name)? {
            Tensor::I64(a) => Ok(a),
            _ => Err(bad(format!("`{name}` is not int64"))),
        };
        let floats = |name: &str| {
            st.names()
                .contains(&name)
                .then(|| f32_tensor(st, path, name))
                .transpose()
        };
        let top2 = match (st.names().contains(&"argmax"), floats("top2_gap")?) {
            (true, Some(gap)) => Some((ints("argmax")?, gap)),
            (false, None) => None,
            _ => return Err(bad("`argmax` and `top2_gap` go together".into())),
        };
        Ok((
            ints("input_ids")?,
            ints("labels")?,
            ints("predicted")?,
            (floats("logprob")?, top2),
        ))
    })?;
    let (logprob, top2) = logprob;
    let ids = ids
        .into_dimensionality::<Ix2>()
        .map_err(|_| bad("`input_ids` is not [examples, 1 + tokens]".into()))?;
    let (n, cols) = ids.dim();
    if n == 0 || cols < 2 || cols > config.n_positions + 1 {
        return Err(bad(format!(
            "`input_ids` is {n} x {cols}: expected at least one example of 1 + 1..={} tokens",
            config.n_positions
        )));
    }
    if let Some(id) = ids
        .iter()
        .find(|&&id| usize::try_from(id).map_or(true, |id| id >= config.vocab_size))
    {
        return Err(bad(format!(
            "token id {id} is out of range [0, {}) (vocab_size)",
            config.vocab_size
        )));
    }
    let vector = |a: ArrayD<i64>, name: &str| {
        if a.shape() == [n] {
            Ok(a.iter().copied().collect::<Vec<i64>>())
        } else {
            Err(bad(format!("`{name}` is {:?}, expected [{n}]", a.shape())))
        }
    };
    let logprob = match logprob {
        Some(l) if l.shape() == [n, cols - 1] => l.into_dimensionality::<Ix2>().ok(),
        Some(l) => {
            return Err(bad(format!(
                "`logprob` is {:?}, expected [{n}, {}]",
                l.shape(),
                cols - 1
            )))
        }
        None => None,
    };
    let per_position = |name: &str, shape: &[usize]| {
        if shape == [n, cols - 1] {
            Ok(())
        } else {
            Err(bad(format!(
                "`{name}` is {shape:?}, expected [{n}, {}]",
                cols - 1
            )))
        }
    };
    let top2 = match top2 {
        Some((argmax, gap)) => {
            per_position("argmax", argmax.shape())?;
            per_position("top2_gap", gap.shape())?;
            argmax
                .into_dimensionality::<Ix2>()
                .ok()
                .zip(gap.into_dimensionality::<Ix2>().ok())
        }
        None => None,
    };
    Ok(LabelledSet {
        ids,
        labels: vector(labels, "labels")?,
        predicted: vector(predicted, "predicted")?,
        logprob,
        top2,
    })
}

/// The reference's generations: `{"generations": [run..], "image_prompt"?: {prompt, tokens}}`,
/// each run's rows one prompt long and one length in all, ids within the vocabulary.
pub fn read_generations(
    path: &Path,
    config: &ImageGptConfig,
) -> Result<Vec<GreedyRun>, FixtureError> {
    #[derive(Deserialize)]
    struct ImagePrompt {
        image: String,
        prompt: Vec<i64>,
        tokens: Vec<i64>,
    }
    #[derive(Deserialize)]
    struct File {
        generations: Vec<GreedyRun>,
        #[serde(default)]
        image_prompt: Option<ImagePrompt>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file: File = serde_json::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
    let mut runs = file.generations;
    if let Some(p) = file.image_prompt {
        runs.push(GreedyRun {
            description: format!("image prompt {}", p.image),
            prompt: vec![p.prompt],
            tokens: vec![p.tokens],
        });
    }
    for (i, run) in runs.iter().enumerate() {
        let bad = |m: &str| invalid(path, format!("run {i} ({}): {m}", run.description));
        let plen = run.prompt.first().map_or(0, Vec::len);
        let len = run.tokens.first().map_or(0, Vec::len);
        if plen == 0 || run.prompt.len() != run.tokens.len() {
            return Err(bad("needs one non-empty prompt per row of tokens"));
        }
        if run.prompt.iter().any(|p| p.len() != plen) || run.tokens.iter().any(|t| t.len() != len) {
            return Err(bad("rows of different lengths"));
        }
        if len <= plen || len > config.n_positions + 1 {
            return Err(bad("no generated tokens, or more than n_positions allows"));
        }
        if run
            .prompt
            .iter()
            .zip(&run.tokens)
            .any(|(p, t)| t[..plen] != p[..])
        {
            return Err(bad("tokens do not start with the prompt"));
        }
        if run
            .tokens
            .iter()
            .flatten()
            .any(|&id| usize::try_from(id).map_or(true, |id| id >= config.vocab_size))
        {
            return Err(bad("a token id is outside the vocabulary"));
        }
    }
    Ok(runs)
}

/// Every tensor of a safetensors file (int64, float32 or float16), by name: a feed given as a
/// file (`debug --inputs FILE`).
pub(crate) fn read_all(path: &Path) -> Result<BTreeMap<String, Tensor>, FixtureError> {
    read_tensors(path, |st| {
        let mut out = BTreeMap::new();
        for name in st.names() {
            out.insert(name.to_string(), any_tensor(st, path, name)?);
        }
        Ok(out)
    })
}

pub(super) fn read_tensors<T>(
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
            expected: safetensors_name(dtype),
            found: safetensors_name(t.dtype()),
        });
    }
    Ok(t)
}

/// An int64, float32 or float16 tensor.
pub(super) fn any_tensor(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
) -> Result<Tensor, FixtureError> {
    let t = st.tensor(name).map_err(|_| missing(path, name))?;
    let bad = |found: String| FixtureError::BadTensor {
        path: path.display().to_string(),
        name: name.to_string(),
        expected: "int64, float32 or float16".into(),
        found,
    };
    let shape = IxDyn(t.shape());
    let data = t.data();
    let made = match t.dtype() {
        Dtype::I64 => {
            let v = data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
            ArrayD::from_shape_vec(shape, v.collect()).map(Tensor::I64)
        }
        Dtype::F32 => {
            let v = data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            ArrayD::from_shape_vec(shape, v.collect()).map(Tensor::F32)
        }
        Dtype::F16 => {
            let v = data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]));
            ArrayD::from_shape_vec(shape, v.collect()).map(Tensor::F16)
        }
        other => return Err(bad(safetensors_name(other))),
    };
    made.map_err(|e| bad(e.to_string()))
}

pub(super) fn f32_tensor(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
) -> Result<ArrayD<f32>, FixtureError> {
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
        assert_eq!(case.inputs["input_ids"].shape(), &[3, 20]);
        let valid: Vec<i64> = case
            .position_mask(Head::CausalLm)
            .expect("exclude padded")
            .rows()
            .into_iter()
            .map(|r| r.sum())
            .collect();
        assert_eq!(valid, vec![20, 13, 5]);
        assert_eq!(
            case.expected(Head::CausalLm, "logits")
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
        if let Some(Tensor::I64(ids)) = inputs.get_mut("input_ids") {
            ids[[0, 3]] = 513;
        }
        let err = check_inputs(&inputs, &case.config, Path::new("in.safetensors"))
            .expect_err("513 is out of range")
            .to_string();
        assert_eq!(
            err,
            "in.safetensors: token id 513 at [0, 3] is out of range [0, 513) (vocab_size)"
        );
    }

    #[test]
    fn manifest_name_is_one_plain_component() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/abs"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        for good in ["kv-cache", "n_inner.2", "causal-lm"] {
            assert!(is_plain_name(good), "{good:?}");
        }
    }
}
