//! What a graph file is, as far as verify cares: its declared inputs and outputs, and its
//! export card (head, profile, precision, config) — or, for a graph another tool made, the
//! head guessed from its outputs and the published defaults.

use std::collections::BTreeMap;
use std::path::Path;

use super::options::VerifyError;
use crate::base::IoSpec;
use crate::graph::io::{is_present, LAST_HIDDEN_STATE, LOGITS};
use crate::graph::{ExportCard, GraphCardError, Head, Precision, Profile};
use crate::onnx::inspect::{self, ModelInfo};
use crate::runtime::{self, RuntimeKind};

/// A graph file, read without its weights.
pub(crate) struct GraphFile {
    pub info: ModelInfo,
    pub inputs: Vec<IoSpec>,
    /// Declared output element types by name.
    pub dtypes: BTreeMap<String, String>,
    /// What igpt-onnx recorded; `None` for a graph another tool made.
    pub card: Option<ExportCard>,
}

impl GraphFile {
    /// Reads `model`; a file that is not ONNX, declares types we cannot feed, or carries a
    /// wrong export card is a set-up error naming it.
    pub fn read(model: &Path) -> Result<GraphFile, VerifyError> {
        let path = || model.display().to_string();
        let info = inspect::inspect(model)?;
        let card = ExportCard::from_metadata(&info.metadata).map_err(|source| GraphCardError {
            path: path(),
            source,
        })?;
        let (inputs, _) = runtime::graph_io(model).map_err(|source| VerifyError::Graph {
            path: path(),
            source,
        })?;
        let dtypes = info
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.elem_type.clone()))
            .collect();
        Ok(GraphFile {
            info,
            inputs,
            dtypes,
            card,
        })
    }

    /// The head: the card's, else `decoder` for a graph with `present.*` outputs,
    /// `classifier` / `causal-lm` for rank-2 / other `logits`, `base` for `last_hidden_state`.
    pub fn head(&self) -> Option<Head> {
        if let Some(card) = &self.card {
            return Some(card.head);
        }
        let outputs = &self.info.outputs;
        if outputs.iter().any(|o| is_present(&o.name)) {
            return Some(Head::Decoder);
        }
        match outputs.iter().find(|o| o.name == LOGITS) {
            Some(o) if o.dims().len() == 2 => Some(Head::Classifier),
            Some(_) => Some(Head::CausalLm),
            None if outputs.iter().any(|o| o.name == LAST_HIDDEN_STATE) => Some(Head::Base),
            None => None,
        }
    }

    /// The profile and precision the export recorded (portable float32 for foreign graphs).
    pub fn profile(&self) -> (Profile, Precision) {
        self.card
            .as_ref()
            .map_or((Profile::Portable, Precision::Float32), |c| {
                (c.profile, c.precision)
            })
    }

    /// `(vocab_size, n_positions)` from the card's config (validated when the card was read);
    /// the published defaults (513, 1024) for a graph without one.
    pub fn config_dims(&self) -> (u64, u64) {
        self.card.as_ref().map_or((513, 1024), |c| {
            (c.config.vocab_size as u64, c.config.n_positions as u64)
        })
    }
}

/// Why `kind` does not run graphs of `profile` in `precision` by design, if so (the runtimes'
/// table, [`runtime::can_run`]).
pub(crate) fn not_applicable(
    kind: RuntimeKind,
    profile: Profile,
    precision: Precision,
) -> Option<String> {
    runtime::can_run(kind, profile, precision)
        .err()
        .map(|e| e.to_string())
}
