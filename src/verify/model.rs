//! What a graph file is, as far as verify cares: its declared inputs and outputs, which head
//! it is (the export's `igpt_onnx.head` metadata, else guessed from its outputs), and the
//! config dims random inputs need (`igpt_onnx.config` metadata).

use std::collections::BTreeMap;
use std::path::Path;

use super::fixture::DECODER;
use super::VerifyError;
use crate::graph::{Precision, Profile};
use crate::onnx::inspect::{self, ModelInfo};
use crate::runtime::{self, IoSpec, RuntimeKind};

/// Largest vocabulary random inputs accept from metadata: ids are drawn below it and must stay
/// exact as int64 and float32 alike.
const MAX_VOCAB: u64 = 1 << 24;
/// Largest `n_positions` accepted from metadata.
const MAX_POSITIONS: u64 = 1 << 20;

/// A graph file, read without its weights.
pub(crate) struct GraphFile {
    pub info: ModelInfo,
    pub inputs: Vec<IoSpec>,
    /// Declared output element types by name.
    pub dtypes: BTreeMap<String, String>,
}

impl GraphFile {
    /// Reads `model`; a file that is not ONNX, or declares types we cannot feed, is a set-up
    /// error naming it.
    pub fn read(model: &Path) -> Result<GraphFile, VerifyError> {
        let info = inspect::inspect(model).map_err(VerifyError::Model)?;
        let (inputs, _) = runtime::graph_io(model)
            .map_err(|e| VerifyError::Model(format!("{}: {e}", model.display())))?;
        let dtypes = info
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.elem_type.clone()))
            .collect();
        Ok(GraphFile {
            info,
            inputs,
            dtypes,
        })
    }

    /// The head's name: the metadata's, else `decoder` for a graph with `present.*` outputs,
    /// `classifier` / `causal-lm` for rank-2 / other `logits`, `base` for `last_hidden_state`.
    pub fn head(&self) -> Option<String> {
        if let Some(h) = self.info.metadata.get("igpt_onnx.head") {
            return Some(h.clone());
        }
        let outputs = &self.info.outputs;
        if outputs.iter().any(|o| o.name.starts_with("present.")) {
            return Some(DECODER.into());
        }
        let head = match outputs.iter().find(|o| o.name == "logits") {
            Some(o) if o.dims().len() == 2 => "classifier",
            Some(_) => "causal-lm",
            None if outputs.iter().any(|o| o.name == "last_hidden_state") => "base",
            None => return None,
        };
        Some(head.into())
    }

    /// The profile and precision the export recorded (portable float32 for foreign graphs).
    pub fn profile(&self) -> (Profile, Precision) {
        let meta = &self.info.metadata;
        let profile = meta
            .get("igpt_onnx.profile")
            .and_then(|p| Profile::parse(p))
            .unwrap_or(Profile::Portable);
        let precision = meta
            .get("igpt_onnx.precision")
            .and_then(|p| Precision::parse(p))
            .unwrap_or(Precision::Float32);
        (profile, precision)
    }
}

/// Why `kind` does not run graphs of `profile` by design (tract and a runtime-specific
/// profile), if so.
pub(crate) fn not_applicable(kind: RuntimeKind, profile: Profile) -> Option<String> {
    (kind == RuntimeKind::Tract && !profile.spec().tract)
        .then(|| format!("not applicable to profile {}", profile.name()))
}

impl GraphFile {
    /// `(vocab_size, n_positions)` from the export metadata; the published defaults (513,
    /// 1024) when the graph carries no config at all. A config that lacks them, or gives a
    /// vocabulary without a token besides SOS, or absurd sizes, is an error naming the field.
    pub fn config_dims(&self, model: &Path) -> Result<(u64, u64), VerifyError> {
        let Some(text) = self.info.metadata.get("igpt_onnx.config") else {
            return Ok((513, 1024));
        };
        let bad = |what: String| {
            VerifyError::Model(format!(
                "{}: metadata igpt_onnx.config: {what}",
                model.display()
            ))
        };
        let cfg: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let field = |k: &str, min: u64, max: u64| {
            let v = cfg.get(k).ok_or_else(|| bad(format!("no `{k}`")))?;
            match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(bad(format!("`{k}` is {v}, expected {min}..={max}"))),
            }
        };
        // SOS is the last id; random ids are drawn below it, so at least one more is needed.
        Ok((
            field("vocab_size", 2, MAX_VOCAB)?,
            field("n_positions", 1, MAX_POSITIONS)?,
        ))
    }
}
