//! Runtimes behind one small trait: ONNX Runtime (through `ort`, CPU / CUDA / TensorRT
//! providers) and pure-Rust tract. A test or a verify run is written once against [`Runtime`]
//! and runs on every runtime that is available.

use std::path::{Path, PathBuf};

use ndarray::ArrayD;

pub mod ort;
pub mod tract;

/// A runtime problem. `Unavailable` means the runtime cannot be used on this machine (reported
/// as skipped unless required); the others are failures of a particular model or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime} unavailable: {reason}")]
    Unavailable { runtime: String, reason: String },
    #[error("{runtime} cannot load {path}: {reason}")]
    Load {
        runtime: String,
        path: String,
        reason: String,
    },
    #[error("{runtime} run failed: {reason}")]
    Run { runtime: String, reason: String },
}

/// The runtimes igpt-onnx knows, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuntimeKind {
    OrtCpu,
    OrtCuda,
    OrtTensorrt,
    Tract,
}

impl RuntimeKind {
    /// Every runtime, in report order.
    pub const ALL: [RuntimeKind; 4] = [
        RuntimeKind::OrtCpu,
        RuntimeKind::OrtCuda,
        RuntimeKind::OrtTensorrt,
        RuntimeKind::Tract,
    ];

    /// Command-line name (`ort-cpu`).
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::OrtCpu => "ort-cpu",
            RuntimeKind::OrtCuda => "ort-cuda",
            RuntimeKind::OrtTensorrt => "ort-tensorrt",
            RuntimeKind::Tract => "tract",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<RuntimeKind> {
        RuntimeKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How runtimes are opened.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// `--ort-lib`: the ONNX Runtime shared library, first in the discovery order.
    pub ort_lib: Option<PathBuf>,
    /// Let a GPU provider that cannot be registered fall back to CPU (reported as such).
    pub allow_fallback: bool,
}

/// An int64 input tensor by graph input name.
pub type NamedInput<'a> = (&'a str, ArrayD<i64>);

/// Output tensors in the graph's output order, as float32.
pub type NamedOutputs = Vec<(String, ArrayD<f32>)>;

/// A runtime that can load graphs.
pub trait Runtime {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;
    /// Loads a graph file (external data resolved relative to its folder).
    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError>;
}

/// A graph loaded in a runtime.
pub trait LoadedModel {
    /// The graph's input names, in order.
    fn input_names(&self) -> Vec<String>;
    /// The graph's output names, in order.
    fn output_names(&self) -> Vec<String>;
    /// What actually executes it (e.g. `CPUExecutionProvider`, `CUDAExecutionProvider`,
    /// `tract (optimized)`): the report prints this, never the requested provider.
    fn provider(&self) -> String;
    /// Runs the graph on int64 inputs; outputs as float32.
    fn run(&mut self, inputs: &[NamedInput<'_>]) -> Result<NamedOutputs, RuntimeError>;
}

/// Opens a runtime, or says why it is unavailable.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    match kind {
        RuntimeKind::Tract => Ok(Box::new(tract::Tract)),
        _ => ort::open(kind, opts),
    }
}

/// Every graph input given exactly once, and nothing else: ONNX Runtime's own message for a
/// missing input does not say which names the graph has.
pub(crate) fn check_input_names(graph: &[String], given: &[NamedInput<'_>]) -> Result<(), String> {
    let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !graph.iter().any(|g| g == n))
        .collect();
    let missing: Vec<&str> = graph
        .iter()
        .map(String::as_str)
        .filter(|g| !names.contains(g))
        .collect();
    let repeated = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
        .map(|(_, n)| *n);
    if unknown.is_empty() && missing.is_empty() && repeated.is_none() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!("unknown input(s) {}", unknown.join(", ")));
    }
    if !missing.is_empty() {
        parts.push(format!("missing input(s) {}", missing.join(", ")));
    }
    if let Some(r) = repeated {
        parts.push(format!("input {r} given twice"));
    }
    Err(format!(
        "{}; the graph's inputs are {}",
        parts.join("; "),
        graph.join(", ")
    ))
}
