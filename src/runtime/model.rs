//! What every runtime implements and every caller uses: the [`Runtime`] and [`LoadedModel`]
//! traits, their errors, the runtimes' names, and the graph I/O read from the file itself.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Once;

use crate::base::values::Choice;
use crate::base::{DataType, DimSpec, IoSpec, Tensor};
use crate::graph::io::{present_for, CacheMode, LOGITS};
use crate::graph::Feature;
use crate::onnx::inspect::{self, SigDim, Signature};

/// A runtime problem. `Unavailable` means the runtime cannot be used on this machine (reported
/// as skipped unless required); the others are failures of a particular model or run. Shown on
/// one line whatever the runtime's own message looks like (ONNX Runtime's can span several).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime} unavailable: {}", one_line(&source.to_string()))]
    Unavailable {
        runtime: String,
        #[source]
        source: Box<Failure>,
    },
    #[error("{runtime} cannot load {path}: {}", one_line(&source.to_string()))]
    Load {
        runtime: String,
        path: String,
        #[source]
        source: Box<Failure>,
    },
    #[error("{runtime} run failed: {}", one_line(&source.to_string()))]
    Run {
        runtime: String,
        #[source]
        source: Box<Failure>,
    },
}

/// A runtime's own error (ONNX Runtime's, tract's), kept whole as the cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong inside a runtime.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The runtime's own error, after what we were doing (nothing to add: empty).
    #[error("{}{source}", if doing.is_empty() { String::new() } else { format!("{doing}: ") })]
    Native {
        doing: String,
        #[source]
        source: Cause,
    },
    /// tract's error chain (an `anyhow::Error`), every cause on the line.
    #[error("{0:#}")]
    Tract(anyhow::Error),
    /// A failure while running one graph file.
    #[error("{file}: {source}")]
    At {
        file: String,
        #[source]
        source: Box<Failure>,
    },
    /// A failure of one input or output.
    #[error("{what} `{name}`: {source}")]
    Io {
        what: &'static str,
        name: String,
        #[source]
        source: Box<Failure>,
    },
    #[error("of type {0}, which igpt-onnx does not read")]
    Unreadable(String),
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("{found} outputs for {declared} graph outputs")]
    OutputCount { found: usize, declared: usize },
    #[error("symbolic plan failed ({symbolic}); concrete plan failed too ({concrete})")]
    NoPlan {
        symbolic: Box<Failure>,
        concrete: Box<Failure>,
    },
    #[error("planning for input shapes {shapes:?}: {source}")]
    Planning {
        shapes: Vec<Vec<usize>>,
        #[source]
        source: Box<Failure>,
    },
    #[error(transparent)]
    GraphIo(#[from] GraphIoError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A failure kept for the whole process (ONNX Runtime's one environment) and told again.
    #[error(transparent)]
    Shared(std::sync::Arc<Failure>),
    /// A panic inside the runtime, caught.
    #[error("{0}")]
    Panic(String),
    #[error("the cache is held by another runtime")]
    ForeignCache,
    #[error("the step needs {needed} cache positions, {reserved} were reserved")]
    CacheFull { needed: usize, reserved: usize },
    #[error("the graph gave no `{0}`")]
    NoOutput(String),
    #[error("{provider} could not be registered: {why}")]
    Provider { provider: &'static str, why: String },
}

impl Failure {
    /// This failure, while running `file`.
    pub fn at(self, file: &str) -> Failure {
        Failure::At {
            file: file.to_string(),
            source: Box::new(self),
        }
    }

    /// This failure, of input or output `name`.
    pub fn of(self, what: &'static str, name: &str) -> Failure {
        Failure::Io {
            what,
            name: name.to_string(),
            source: Box::new(self),
        }
    }

    /// The runtime's error `e`, after `doing`.
    pub fn native(doing: impl Into<String>, e: impl Into<Cause>) -> Failure {
        Failure::Native {
            doing: doing.into(),
            source: e.into(),
        }
    }
}

/// Why a graph file cannot be handed to a runtime.
#[derive(Debug, thiserror::Error)]
pub enum GraphIoError {
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    #[error("malformed graph: {0}")]
    Malformed(String),
    #[error("graph {what} `{name}` is of type {elem_type}, which igpt-onnx does not handle")]
    Type {
        what: &'static str,
        name: String,
        elem_type: String,
    },
}

/// Inputs that do not match what the graph declares.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Mismatch(#[from] crate::base::IoMismatch),
    #[error("{}; the graph's inputs are {}", .problems.join("; "), .inputs.join(", "))]
    Names {
        problems: Vec<String>,
        inputs: Vec<String>,
    },
}

/// `text` with its line breaks (and the indentation after them) as single spaces.
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// One runtime igpt-onnx reaches by name: a row of [`RUNTIMES`](super::RUNTIMES). What it runs
/// is data here, so one function ([`can_run`](super::can_run)) answers for every command.
pub struct RuntimeSpec {
    /// Its command-line name (`ort-cpu`).
    pub name: &'static str,
    /// What it is, for help and the support table.
    pub about: &'static str,
    /// What it runs beyond standard ops on float32 and int64 (see [`Feature`]).
    pub runs: &'static [Feature],
    /// Whether the test suite checks its cells against the goldens on the test machines;
    /// `false` where it needs hardware they lack (a GPU: `ci/gpu-check.sh` checks it there).
    pub checked: bool,
    /// Opens it, or says why it is unavailable here.
    pub open: Opener,
}

/// How a row opens its runtime.
pub type Opener = fn(RuntimeKind, &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError>;

impl std::fmt::Debug for RuntimeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A runtime named with a release, `FAMILY@VERSION` (`ort-python@1.20`): a row of
/// [`RELEASE_RUNTIMES`](super::RELEASE_RUNTIMES) per family. What it runs is what that release
/// runs: it is handed every graph and reports its own failures.
pub struct ReleaseSpec {
    /// The name before the `@`.
    pub family: &'static str,
    /// What it is, for help and the support table.
    pub about: &'static str,
    /// Opens the kind (its whole name) at the release after the `@`, or says why it is
    /// unavailable here.
    pub open: ReleaseOpener,
}

/// How a release row opens its runtime: the kind, the release, the options.
pub type ReleaseOpener =
    fn(RuntimeKind, &str, &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError>;

impl std::fmt::Debug for ReleaseSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@VERSION", self.family)
    }
}

/// A runtime, by its command-line name: a row of the table, a release of a family
/// (`ort-python@1.20`), or `cmd:PROGRAM`. The rows have named constants
/// (`RuntimeKind::OrtCpu`, `RuntimeKind::Tract`, ... in `runtime::table`).
#[derive(Debug, Clone, Copy)]
pub enum RuntimeKind {
    /// A row of [`RUNTIMES`](super::RUNTIMES).
    Table(&'static RuntimeSpec),
    /// `FAMILY@VERSION`, the whole text (leaked once per distinct name, as `Command`'s).
    Release(&'static ReleaseSpec, &'static str),
    /// `cmd:PROGRAM`, the whole text: any runtime through an adapter program (see
    /// `runtime::command`). The text is leaked once per distinct name so the kind stays
    /// `Copy`; a command line names a handful.
    Command(&'static str),
}

impl RuntimeKind {
    /// Command-line name (`ort-cpu`, `cmd:node adapter.mjs`).
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Table(row) => row.name,
            RuntimeKind::Release(_, text) | RuntimeKind::Command(text) => text,
        }
    }

    /// Whether it runs what `feature` asks. An adapter program's runtime is not known here, nor
    /// what an older release lacks (`igpt-onnx inspect` says which release a graph needs): they
    /// are handed every graph and report their own failures.
    pub fn runs(self, feature: Feature) -> bool {
        match self {
            RuntimeKind::Table(row) => row.runs.contains(&feature),
            RuntimeKind::Release(..) | RuntimeKind::Command(_) => true,
        }
    }
}

/// Names are unique (a test checks the table), so a kind is its name.
impl PartialEq for RuntimeKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for RuntimeKind {}

impl std::hash::Hash for RuntimeKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

/// The precision a runtime computes in when it may choose (OpenVINO's
/// `INFERENCE_PRECISION_HINT`): the `--openvino-precision` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputePrecision {
    F32,
    Bf16,
    F16,
}

impl ComputePrecision {
    /// The element type it computes in.
    pub fn data_type(self) -> DataType {
        match self {
            ComputePrecision::F32 => DataType::Float32,
            ComputePrecision::Bf16 => DataType::BFloat16,
            ComputePrecision::F16 => DataType::Float16,
        }
    }
}

impl Choice for ComputePrecision {
    const WHAT: &'static str = "precision";

    fn all() -> Vec<Self> {
        vec![
            ComputePrecision::F32,
            ComputePrecision::Bf16,
            ComputePrecision::F16,
        ]
    }

    /// OpenVINO's own spelling of the element type (`f32`, `bf16`, `f16`).
    fn name(self) -> &'static str {
        match self {
            ComputePrecision::F32 => "f32",
            ComputePrecision::Bf16 => "bf16",
            ComputePrecision::F16 => "f16",
        }
    }
}

/// How runtimes are opened.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// `--ort-lib`: the ONNX Runtime shared library, first in the discovery order.
    pub ort_lib: Option<PathBuf>,
    /// Let a GPU provider that cannot be registered fall back to CPU (reported as such).
    pub allow_fallback: bool,
    /// `--openvino-lib`: OpenVINO's C library (`libopenvino_c.so*`) or its folder, first in the
    /// discovery order.
    pub openvino_lib: Option<PathBuf>,
    /// `--openvino-precision`: the inference precision hint; `None` leaves OpenVINO's default
    /// (bf16 on CPUs with AVX-512 BF16 or AMX, f32 otherwise).
    pub openvino_precision: Option<ComputePrecision>,
    /// ONNX Runtime: profile sessions to count the nodes each execution provider ran
    /// ([`LoadedModel::node_providers`]), so a GPU run that fell back to the CPU shows.
    pub count_nodes: bool,
    /// `--command-timeout`: how long a `cmd:` adapter may take to load a graph or answer one
    /// request (default `command::DEFAULT_TIMEOUT`).
    pub command_timeout: Option<std::time::Duration>,
    /// `--ort-cache`: a folder where ONNX Runtime CPU sessions keep the optimized model (with
    /// its prepacked weights) of each graph they load, and load it from on later runs.
    pub ort_cache: Option<PathBuf>,
    /// ONNX Runtime: intra-op threads per session (`None`: one per core). One thread runs every
    /// kernel on the calling thread, with no pool to wake or to spin: what a small draft model
    /// beside a target wants (`generate --draft`).
    pub intra_threads: Option<usize>,
    /// ONNX Runtime: whether idle pool threads spin (`None`: by the machine's load, or
    /// `IGPT_ORT_SPIN`). A second session beside a busy one must not spin: its idle threads
    /// would take the cores the other's kernels run on.
    pub pool_spin: Option<bool>,
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
    /// Whether the runtime's idle pool threads spin between kernels (ONNX Runtime decides per
    /// process, see its module); `None` where the runtime does not say.
    fn pool_threads_spin(&self) -> Option<bool> {
        None
    }
    /// The element type the runtime actually computes in, when it is not float32 (OpenVINO on a
    /// bf16 CPU): verify then judges by that precision's budget and reports it. `None`: float32.
    fn compute_precision(&self) -> Option<DataType> {
        None
    }
    /// How many of the graph's nodes each execution provider ran, from the runs so far, when
    /// the runtime can tell (ONNX Runtime with [`RuntimeOptions::count_nodes`]); `None` else.
    fn node_providers(&mut self) -> Option<std::collections::BTreeMap<String, usize>> {
        None
    }
    /// Runs the graph. Every input once, by name, in its declared type and rank; outputs in the
    /// graph's order and element type (types other than float32 / float16 / int64 come back as
    /// float32, so a comparison can still measure them).
    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError>;

    /// How this runtime steps this decoder's cache: [`CacheMode::Shared`] where the graph's card
    /// records it and the runtime writes it in place, else concatenation.
    fn cache_mode(&self) -> CacheMode {
        CacheMode::Concat
    }

    /// Before a decoding loop: the session's cache will hold at most `positions` tokens. A
    /// runtime that can keep it in one preallocated buffer per layer, written in place each
    /// step (ONNX Runtime on a decoder whose card records a shared cache), allocates that much
    /// when the next empty session starts;
    /// the others copy as before and ignore it.
    fn reserve_cache(&mut self, _positions: usize) {}

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
                source: Failure::ForeignCache.into(),
            });
        };
        let mut feed: Vec<(&str, &Tensor)> = inputs.to_vec();
        feed.extend(cache_names.iter().map(String::as_str).zip(past.iter()));
        let mut out = self.run(&feed)?;
        let missing = |name: &str| RuntimeError::Run {
            runtime: "decoder".into(),
            source: Failure::NoOutput(name.to_string()).into(),
        };
        let mut presents = Vec::with_capacity(cache_names.len());
        for name in cache_names {
            let present = present_for(name).unwrap_or_default();
            let at = out
                .iter()
                .position(|(n, _)| *n == present)
                .ok_or_else(|| missing(&present))?;
            presents.push(out.swap_remove(at).1);
        }
        let (_, logits) = out
            .into_iter()
            .find(|(n, _)| n == LOGITS)
            .ok_or_else(|| missing(LOGITS))?;
        *cache = Cache::Host(presents);
        Ok(logits)
    }

    /// Rolls the cache back to its first `positions` tokens (speculative decoding drops the
    /// positions of rejected draft tokens). The default slices host tensors; a runtime that
    /// holds its cache ([`Cache::Held`]) says how its own form rolls back.
    fn truncate_cache(&mut self, cache: &mut Cache, positions: usize) -> Result<(), RuntimeError> {
        match cache {
            Cache::Host(past) => {
                truncate_host(past, positions);
                Ok(())
            }
            Cache::Held(_) => Err(RuntimeError::Run {
                runtime: "decoder".into(),
                source: Failure::ForeignCache.into(),
            }),
        }
    }
}

/// Keeps the first `positions` entries of each BNSH cache tensor's sequence axis (axis 2).
pub fn truncate_host(past: &mut [Tensor], positions: usize) {
    use ndarray::{Axis, Slice};
    for t in past.iter_mut() {
        let keep = Slice::from(0..positions.min(t.shape().get(2).copied().unwrap_or(0)));
        *t = match t {
            Tensor::F32(a) => Tensor::F32(a.slice_axis(Axis(2), keep).to_owned()),
            Tensor::F16(a) => Tensor::F16(a.slice_axis(Axis(2), keep).to_owned()),
            Tensor::I64(a) => Tensor::I64(a.slice_axis(Axis(2), keep).to_owned()),
        };
    }
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

/// The inputs and outputs `model` declares, read from the file itself so that every runtime
/// describes a graph the same way.
pub fn graph_io(model: &Path) -> Result<(Vec<IoSpec>, Vec<IoSpec>), GraphIoError> {
    graph_io_of(&inspect::inspect(model)?)
}

/// [`graph_io`] of a graph already inspected (a runtime that also reads its op counts).
pub fn graph_io_of(info: &inspect::ModelInfo) -> Result<(Vec<IoSpec>, Vec<IoSpec>), GraphIoError> {
    // A runtime is not handed a graph it is known not to survive.
    if let Some(m) = info.malformed.first() {
        return Err(GraphIoError::Malformed(m.clone()));
    }
    let specs = |sigs: &[Signature], what| -> Result<Vec<IoSpec>, GraphIoError> {
        sigs.iter().map(|s| io_spec(s, what)).collect()
    };
    Ok((
        specs(&info.inputs, "input")?,
        specs(&info.outputs, "output")?,
    ))
}

fn io_spec(s: &Signature, what: &'static str) -> Result<IoSpec, GraphIoError> {
    let dtype = s.dtype().ok_or_else(|| GraphIoError::Type {
        what,
        name: s.name.clone(),
        elem_type: s.elem_type.clone(),
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
) -> Result<Vec<&'t Tensor>, FeedError> {
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
    Err(FeedError::Names {
        problems: parts,
        inputs: graph.iter().map(|g| g.name.clone()).collect(),
    })
}
