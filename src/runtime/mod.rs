//! Runtimes behind one small trait: ONNX Runtime (through `ort`, CPU / CUDA / TensorRT
//! providers) and pure-Rust tract. A test or a verify run is written once against [`Runtime`]
//! and runs on every runtime that is available.
//!
//! Values cross the boundary as typed [`Tensor`]s (int64, float32, float16) and each loaded graph
//! describes its inputs and outputs as [`IoSpec`]s read from the graph file, the same for every
//! runtime. Adding a runtime means one module here and one arm in [`open`].

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::onnx::inspect::{self, SigDim, Signature};

pub mod ort;
pub mod tensor;
pub mod tract;

pub use tensor::{DimSpec, IoSpec, Tensor};

/// A runtime problem. `Unavailable` means the runtime cannot be used on this machine (reported
/// as skipped unless required); the others are failures of a particular model or run. Shown on
/// one line whatever the runtime's own message looks like (ONNX Runtime's can span several).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime} unavailable: {}", one_line(reason))]
    Unavailable { runtime: String, reason: String },
    #[error("{runtime} cannot load {path}: {}", one_line(reason))]
    Load {
        runtime: String,
        path: String,
        reason: String,
    },
    #[error("{runtime} run failed: {}", one_line(reason))]
    Run { runtime: String, reason: String },
}

/// `text` with its line breaks (and the indentation after them) as single spaces.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
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

/// Output tensors by name, in the graph's output order, each in the graph's own element type.
pub type NamedOutputs = Vec<(String, Tensor)>;

/// A runtime that can load graphs.
pub trait Runtime {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;
    /// Loads a graph file (external data resolved relative to its folder).
    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError>;
}

/// A graph loaded in a runtime.
pub trait LoadedModel {
    /// The graph's inputs, in order, as the graph declares them.
    fn inputs(&self) -> &[IoSpec];
    /// The graph's outputs, in order, as the graph declares them.
    fn outputs(&self) -> &[IoSpec];
    /// What actually executes it (e.g. `CPUExecutionProvider`, `CUDAExecutionProvider`,
    /// `tract (optimized)`): the report prints this, never the requested provider.
    fn provider(&self) -> String;
    /// Runs the graph. Every input once, by name, in its declared type and rank; outputs in the
    /// graph's order and element type (types other than float32 / float16 / int64 come back as
    /// float32, so a comparison can still measure them).
    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError>;

    /// One decoder step: the step's `inputs` (ids, mask, positions) plus the past from `cache`
    /// (as `past_key_values.*`, in the order of `cache_names`); returns `logits`, and `cache`
    /// receives this step's `present.*` in the same order. The default goes through [`run`],
    /// the cache as host tensors; a runtime that can feed its own outputs back as inputs keeps
    /// them ([`Cache::Held`]) and copies nothing per step.
    ///
    /// [`run`]: LoadedModel::run
    fn step(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
    ) -> Result<Tensor, RuntimeError> {
        let Cache::Host(past) = cache else {
            return Err(RuntimeError::Run {
                runtime: "decoder".into(),
                reason: "the cache is held by another runtime".into(),
            });
        };
        let mut feed: Vec<(&str, &Tensor)> = inputs.to_vec();
        feed.extend(cache_names.iter().map(String::as_str).zip(past.iter()));
        let mut out = self.run(&feed)?;
        let missing = |name: &str| RuntimeError::Run {
            runtime: "decoder".into(),
            reason: format!("the graph gave no `{name}`"),
        };
        let mut presents = Vec::with_capacity(cache_names.len());
        for name in cache_names {
            let present = present_name(name);
            let at = out
                .iter()
                .position(|(n, _)| *n == present)
                .ok_or_else(|| missing(&present))?;
            presents.push(out.swap_remove(at).1);
        }
        let (_, logits) = out
            .into_iter()
            .find(|(n, _)| n == "logits")
            .ok_or_else(|| missing("logits"))?;
        *cache = Cache::Host(presents);
        Ok(logits)
    }
}

/// The output a decoder step gives for the past input `past` (`past_key_values.3.key` →
/// `present.3.key`).
pub fn present_name(past: &str) -> String {
    past.replacen("past_key_values.", "present.", 1)
}

/// A decoder's key/value cache between steps.
pub enum Cache {
    /// Host tensors, fed by reference and replaced by each step's presents.
    Host(Vec<Tensor>),
    /// Values a runtime keeps in its own memory (ONNX Runtime's outputs, fed back as inputs).
    Held(Box<dyn std::any::Any + Send>),
}

thread_local! {
    /// Whether this thread is inside [`quietly`], where a panic is caught and reported.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics a runtime wrapper catches and
/// turns into an error, and defers to the previous hook for every other panic. Without it the
/// default hook prints `thread 'main' panicked at …` before the catch, and the user sees more
/// than our one error line.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f` with panics marked as caught (see [`install_panic_hook`]); the caller catches them.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let was = CATCHING.with(|c| c.replace(true));
    let out = f();
    CATCHING.with(|c| c.set(was));
    out
}

/// Opens a runtime, or says why it is unavailable.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    match kind {
        RuntimeKind::Tract => Ok(Box::new(tract::Tract)),
        _ => ort::open(kind, opts),
    }
}

/// The inputs and outputs `model` declares, read from the file itself so that every runtime
/// describes a graph the same way.
pub fn graph_io(model: &Path) -> Result<(Vec<IoSpec>, Vec<IoSpec>), String> {
    let info = inspect::inspect(model)?;
    // A runtime is not handed a graph it is known not to survive.
    if let Some(m) = info.malformed.first() {
        return Err(format!("malformed graph: {m}"));
    }
    let specs = |sigs: &[Signature], what: &str| -> Result<Vec<IoSpec>, String> {
        sigs.iter().map(|s| io_spec(s, what)).collect()
    };
    Ok((
        specs(&info.inputs, "input")?,
        specs(&info.outputs, "output")?,
    ))
}

fn io_spec(s: &Signature, what: &str) -> Result<IoSpec, String> {
    let dtype = s.dtype().ok_or_else(|| {
        format!(
            "graph {what} `{}` is of type {}, which igpt-onnx does not handle",
            s.name, s.elem_type
        )
    })?;
    let dims = s
        .dims()
        .iter()
        .map(|d| match d {
            SigDim::Value(v) => usize::try_from(*v).map_or(DimSpec::Unknown, DimSpec::Fixed),
            SigDim::Param(p) => DimSpec::Symbol(p.clone()),
            SigDim::Unknown => DimSpec::Unknown,
        })
        .collect();
    Ok(IoSpec {
        name: s.name.clone(),
        dtype,
        dims,
    })
}

/// Every graph input given exactly once, nothing else, each of its declared type and rank:
/// ONNX Runtime's own messages for these say neither which input nor which names the graph
/// has. Returns the tensors in the graph's input order.
pub(crate) fn check_input_names<'t>(
    graph: &[IoSpec],
    given: &[(&str, &'t Tensor)],
) -> Result<Vec<&'t Tensor>, String> {
    let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !graph.iter().any(|g| g.name == *n))
        .collect();
    let missing: Vec<&str> = graph
        .iter()
        .map(|g| g.name.as_str())
        .filter(|g| !names.contains(g))
        .collect();
    let repeated = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
        .map(|(_, n)| *n);
    if unknown.is_empty() && missing.is_empty() && repeated.is_none() {
        let mut ordered = Vec::with_capacity(graph.len());
        for spec in graph {
            if let Some((_, t)) = given.iter().find(|(n, _)| *n == spec.name) {
                spec.check(t)?;
                ordered.push(*t);
            }
        }
        return Ok(ordered);
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
    let all: Vec<&str> = graph.iter().map(|g| g.name.as_str()).collect();
    Err(format!(
        "{}; the graph's inputs are {}",
        parts.join("; "),
        all.join(", ")
    ))
}
