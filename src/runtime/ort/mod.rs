//! ONNX Runtime through `ort` (load-dynamic): the shared library ([`discover_library`]), one
//! environment per process, and sessions on the CPU, CUDA or TensorRT execution provider (docs/design.md §4).
//!
//! ONNX Runtime's own behaviour when a provider cannot be registered is to log and carry on on
//! the CPU; here that is an error unless the caller allows fallback, and [`LoadedModel::provider`]
//! always names what actually runs.

mod cache;
mod library;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ndarray::{ArrayD, CowArray, IxDyn};
use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::memory::{Allocator, MemoryInfo};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{IoBinding, Session, SessionInputValue};
use ort::value::{DynTensor, DynValue, TensorRef};

pub use library::discover_library;

use super::model::{
    check_input_names, graph_io_of, Cache, Failure, GraphIoError, LoadedModel, NamedOutputs,
    Runtime, RuntimeError, RuntimeKind, RuntimeOptions,
};
use crate::base::{IoSpec, Tensor};
use crate::graph::io::{present_for, ATTENTION_MASK, LOGITS};

/// The process-wide environment and the library it came from.
struct OrtEnv {
    env: Environment,
    library: PathBuf,
}

/// ONNX Runtime allows one environment per process; a failure to create it is kept too, so
/// every later request reports the same reason.
static ENV: OnceLock<Result<OrtEnv, Arc<Failure>>> = OnceLock::new();

/// Loads the library and creates the environment on first use. Only the first caller's
/// options choose the library; later callers share it.
fn environment(opts: &RuntimeOptions) -> Result<&'static OrtEnv, Failure> {
    ENV.get_or_init(|| {
        let library = discover_library(opts).map_err(|e| Arc::new(Failure::native("", e)))?;
        let shown = library.display().to_string();
        let builder = ort::init_from(&library)
            .map_err(|e| Arc::new(Failure::native(format!("cannot load {shown}"), e)))?;
        let env = builder
            .with_name("igpt-onnx")
            .with_telemetry(false)
            .build()
            .map_err(|e| {
                let doing = format!("cannot create an environment from {shown}");
                Arc::new(Failure::native(doing, e))
            })?;
        Ok(OrtEnv { env, library })
    })
    .as_ref()
    .map_err(|e| Failure::Shared(e.clone()))
}

/// The library this process loaded, once an `ort-*` runtime was opened.
pub fn loaded_library() -> Option<&'static Path> {
    ENV.get()?.as_ref().ok().map(|e| e.library.as_path())
}

/// A GPU execution provider.
#[derive(Debug, Clone, Copy)]
enum Gpu {
    Cuda,
    TensorRt,
}

impl Gpu {
    fn for_kind(kind: RuntimeKind) -> Option<Gpu> {
        match kind {
            RuntimeKind::OrtCuda => Some(Gpu::Cuda),
            RuntimeKind::OrtTensorrt => Some(Gpu::TensorRt),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Gpu::Cuda => ep::CUDA::NAME,
            Gpu::TensorRt => ep::TensorRT::NAME,
        }
    }

    /// Whether the loaded library was built with this provider. `GetAvailableProviders` lists
    /// compiled-in providers only: a GPU build on a machine without a GPU still says yes.
    fn compiled_in(self) -> Result<bool, Failure> {
        match self {
            Gpu::Cuda => ep::CUDA::is_available(),
            Gpu::TensorRt => ep::TensorRT::is_available(),
        }
        .map_err(|e| Failure::native(format!("cannot list {}", self.name()), e))
    }

    /// Providers to register, in priority order. Each one errors instead of being skipped
    /// (ort's default logs the failure and lets the session run on the CPU). TensorRT leaves
    /// the nodes it cannot take to CUDA, as ONNX Runtime recommends.
    fn dispatches(self) -> Vec<ExecutionProviderDispatch> {
        let cuda = ep::CUDA::default().build().error_on_failure();
        match self {
            Gpu::Cuda => vec![cuda],
            Gpu::TensorRt => vec![ep::TensorRT::default().build().error_on_failure(), cuda],
        }
    }
}

/// Opens ONNX Runtime with the provider `kind` names. Without `allow_fallback`, a GPU provider
/// the loaded library was not built with makes the runtime unavailable right away.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    let unavailable = |source: Failure| RuntimeError::Unavailable {
        runtime: kind.name().into(),
        source: source.into(),
    };
    let env = environment(opts).map_err(unavailable)?;
    let gpu = Gpu::for_kind(kind);
    if let (Some(gpu), false) = (gpu, opts.allow_fallback) {
        check_compiled_in(gpu, env).map_err(unavailable)?;
    }
    Ok(Box::new(Ort {
        kind,
        env,
        gpu,
        allow_fallback: opts.allow_fallback,
        count_nodes: opts.count_nodes,
        cache: opts.ort_cache.clone(),
        spin: pool_threads_spin(),
    }))
}

fn check_compiled_in(gpu: Gpu, env: &OrtEnv) -> Result<(), Failure> {
    if gpu.compiled_in()? {
        return Ok(());
    }
    Err(Failure::Provider {
        provider: gpu.name(),
        why: format!(
            "the ONNX Runtime library {} was built without it \
             (install onnxruntime-gpu==1.31.1 and point --ort-lib at its libonnxruntime.so.*, \
             or pass --allow-fallback to run on CPUExecutionProvider)",
            env.library.display()
        ),
    })
}

/// Intra-op threads: one per core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether idle intra-op pool threads spin between kernels or sleep. Spinning saves waking a
/// sleeping thread for every kernel (hundreds a decoder step), but a spinning thread holds its
/// core against anything else that wants it. Measured, small-size decoder step on 2 cores,
/// sleeping → spinning: quiet, int8 14.2 → 11.0 ms and float32 25.4 → 20.2 ms; beside one other
/// busy process, int8 13.6 → 18.9 ms and float32 27.2 → 40.6 ms. So they spin only when nothing
/// else wants a core as the runtime opens (`/proc/stat`'s `procs_running`, [`LOOKS`] looks 2 ms
/// apart, this thread the one allowed: see [`quiet`]) on a machine whose hypervisor has taken
/// under a tenth of its CPU time since boot (`steal`: a virtual machine's cores shared with other
/// guests, which no process count shows); `IGPT_ORT_SPIN=1` or `0` decides instead.
fn pool_threads_spin() -> bool {
    match std::env::var("IGPT_ORT_SPIN").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        Ok(other) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!("warning: IGPT_ORT_SPIN is {other:?}, not 1 or 0: deciding by the load");
            });
        }
        Err(_) => {}
    }
    let mut looks = Vec::with_capacity(LOOKS);
    for look in 0..LOOKS {
        if look > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return false;
        };
        looks.push(stat);
    }
    quiet(&looks)
}

/// How many times [`pool_threads_spin`] reads `/proc/stat`.
const LOOKS: usize = 5;

/// Whether successive `/proc/stat` texts show a quiet machine: the hypervisor has taken under a
/// tenth of all CPU time since boot, and at most one look saw another runnable process. A process
/// that wants a core shows in nearly every look; a kernel thread's wake-up or an exiting process
/// in one, and should not make a whole run's threads sleep.
fn quiet(looks: &[String]) -> bool {
    let steal = looks.last().and_then(|s| steal_share(s));
    let busy = looks.iter().filter(|s| procs_running(s) != Some(1)).count();
    steal.is_some_and(|s| s < 0.1) && busy <= 1
}

/// The `procs_running` count of a `/proc/stat` text.
fn procs_running(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("procs_running "))?
        .trim()
        .parse()
        .ok()
}

/// The share of all CPU time since boot the hypervisor took (`steal`, the eighth figure of the
/// `cpu` line of a `/proc/stat` text).
fn steal_share(stat: &str) -> Option<f64> {
    let line = stat.lines().find_map(|l| l.strip_prefix("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = ticks.iter().sum();
    (ticks.len() == 8 && total > 0).then(|| ticks[7] as f64 / total as f64)
}

/// ONNX Runtime with one execution provider.
struct Ort {
    kind: RuntimeKind,
    env: &'static OrtEnv,
    gpu: Option<Gpu>,
    allow_fallback: bool,
    count_nodes: bool,
    /// `--ort-cache`: the folder of saved optimized models (CPU sessions only; `cache`).
    cache: Option<PathBuf>,
    /// Whether its sessions' idle pool threads spin ([`pool_threads_spin`]).
    spin: bool,
}

/// Why a GPU session could not be made.
enum GpuFailure {
    /// The provider could not be registered: the machine cannot run it.
    Register(Failure),
    /// The session could not be created with it registered.
    Commit(Failure),
}

impl Ort {
    fn load_error(&self, model: &Path, source: Failure) -> RuntimeError {
        RuntimeError::Load {
            runtime: self.kind.name().into(),
            path: model.display().to_string(),
            source: source.into(),
        }
    }

    fn builder(&self, profile: Option<&Path>) -> Result<SessionBuilder, Failure> {
        let threads = threads();
        // Idle pool threads spin only on otherwise idle cores (`pool_threads_spin`): where other
        // processes share them, a spinning thread steals the time slices its peers need
        // (measured, small-size decoder on 2 loaded cores, interleaved: 49.6 → 32.4 ms per step
        // at batch 1, 92.6 → 52.0 at batch 8 sleeping); onnxruntime-genai's sessions alike.
        // Builder errors are not `Send`: converted through `ort::Error` (which is) first.
        let err = |e: ort::Error| Failure::native("cannot make a session builder", e);
        let b = Session::builder(&self.env.env)
            .map_err(err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(e.into()))?
            .with_intra_threads(threads)
            .map_err(|e| err(e.into()))?
            .with_intra_op_spinning(self.spin)
            .map_err(|e| err(e.into()))?;
        match profile {
            Some(prefix) => b.with_profiling(prefix).map_err(|e| err(e.into())),
            None => Ok(b),
        }
    }

    fn commit_cpu(&self, model: &Path, profile: Option<&Path>) -> Result<Session, RuntimeError> {
        if let Some(dir) = &self.cache {
            if let Some(session) = self.commit_cached(dir, model, profile) {
                return Ok(session);
            }
        }
        let mut b = self
            .builder(profile)
            .map_err(|e| self.load_error(model, e))?;
        // From a path, so external data resolves relative to the model's folder.
        b.commit_from_file(model)
            .map_err(|e| self.load_error(model, Failure::native("", e)))
    }

    /// A CPU session through the optimized-model cache in `dir`: the saved entry on a hit; on a
    /// miss, the graph's session, saving its optimized model and prepacked weights as a new entry.
    /// `None` (after one warning) when the cache cannot serve: the caller loads the graph.
    fn commit_cached(&self, dir: &Path, model: &Path, profile: Option<&Path>) -> Option<Session> {
        let key = match cache::key(model, &self.env.library, threads(), "all") {
            Ok(key) => key,
            Err(e) => {
                cache::warn(dir, format_args!("cannot read {}: {e}", model.display()));
                return None;
            }
        };
        let entry = cache::entry(dir, &key);
        let saved = entry.join(cache::MODEL);
        if saved.is_file() {
            let session = self.builder(profile).and_then(|mut b| {
                b.commit_from_file(&saved)
                    .map_err(|e| Failure::native("", e))
            });
            return match session {
                Ok(s) => Some(s),
                Err(e) => {
                    cache::warn(dir, format_args!("cannot load {}: {e}", saved.display()));
                    None
                }
            };
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            cache::warn(dir, format_args!("cannot create it: {e}"));
            return None;
        }
        let temp = match crate::base::files::temp_dir_beside(&entry) {
            Ok(t) => t,
            Err(e) => {
                cache::warn(dir, e);
                return None;
            }
        };
        let err = |e: ort::Error| Failure::native("cannot make a session builder", e);
        let session = self.builder(profile).and_then(|b| {
            let mut b = b
                .with_optimized_model_path(temp.path().join(cache::MODEL))
                .map_err(|e| err(e.into()))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_file_name",
                    cache::DATA,
                )
                .map_err(|e| err(e.into()))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes",
                    "1024",
                )
                .map_err(|e| err(e.into()))?
                .with_config_entry("session.save_external_prepacked_constant_initializers", "1")
                .map_err(|e| err(e.into()))?;
            b.commit_from_file(model)
                .map_err(|e| Failure::native("", e))
        });
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                cache::warn(dir, format_args!("cannot save an optimized model: {e}"));
                return None;
            }
        };
        // Another process may have put the same entry in place first: theirs serves as well.
        if let Err(e) = temp.rename_to(&entry) {
            if !saved.is_file() {
                cache::warn(dir, e);
            }
        }
        Some(session)
    }

    fn commit_gpu(
        &self,
        model: &Path,
        gpu: Gpu,
        profile: Option<&Path>,
    ) -> Result<Session, GpuFailure> {
        if !gpu.compiled_in().map_err(GpuFailure::Register)? {
            return Err(GpuFailure::Register(Failure::Provider {
                provider: gpu.name(),
                why: format!(
                    "the ONNX Runtime library {} was built without it",
                    self.env.library.display()
                ),
            }));
        }
        let b = self.builder(profile).map_err(GpuFailure::Commit)?;
        let mut b = b.with_execution_providers(gpu.dispatches()).map_err(|e| {
            GpuFailure::Register(Failure::Provider {
                provider: gpu.name(),
                why: ort::Error::<()>::from(e).to_string(),
            })
        })?;
        // A provider can register and still fail to start (no device, missing CUDA or cuDNN
        // libraries): ONNX Runtime reports that when the session is created.
        b.commit_from_file(model).map_err(|e| {
            let doing = format!("session creation with {} failed", gpu.name());
            GpuFailure::Commit(Failure::native(doing, e))
        })
    }
}

impl Runtime for Ort {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        // Before ONNX Runtime sees the file: it also refuses what graph_io does, less clearly.
        let info = crate::onnx::inspect::inspect(model)
            .map_err(|e| self.load_error(model, GraphIoError::from(e).into()))?;
        let (inputs, outputs) = graph_io_of(&info).map_err(|e| self.load_error(model, e.into()))?;
        let in_place_attention = info.ops.contains_key(IN_PLACE_ATTENTION);
        // ONNX Runtime writes `<prefix>_<time>.json` when profiling ends; the folder goes with
        // the model.
        let profile_dir = match self.count_nodes {
            true => Some(tempfile::tempdir().map_err(|e| {
                self.load_error(model, Failure::native("cannot make a profiling folder", e))
            })?),
            false => None,
        };
        let prefix = profile_dir.as_ref().map(|d| d.path().join("ort-profile"));
        let prefix = prefix.as_deref();
        let (session, provider) = match self.gpu {
            None => (
                self.commit_cpu(model, prefix)?,
                "CPUExecutionProvider".to_string(),
            ),
            Some(gpu) => match self.commit_gpu(model, gpu, prefix) {
                Ok(s) => (s, gpu.name().to_string()),
                Err(_) if self.allow_fallback => (
                    self.commit_cpu(model, prefix)?,
                    format!("CPUExecutionProvider (fallback from {})", gpu.name()),
                ),
                Err(GpuFailure::Register(source)) => {
                    return Err(RuntimeError::Unavailable {
                        runtime: self.kind.name().into(),
                        source: source.into(),
                    })
                }
                Err(GpuFailure::Commit(source)) => return Err(self.load_error(model, source)),
            },
        };
        // The cache buffers live in host memory: in place only where the kernels run there.
        let shared_cache = in_place_attention && provider.starts_with("CPUExecutionProvider");
        Ok(Box::new(OrtModel {
            kind: self.kind,
            file: model.display().to_string(),
            shared_cache,
            reserved: None,
            session,
            provider,
            spin: self.spin,
            inputs,
            outputs,
            profile: profile_dir.map(|dir| (dir, None)),
        }))
    }
}

/// A session and what it runs on.
struct OrtModel {
    kind: RuntimeKind,
    file: String,
    session: Session,
    provider: String,
    spin: bool,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    /// Whether the decoder can keep its cache in preallocated buffers written in place.
    shared_cache: bool,
    /// Positions [`LoadedModel::reserve_cache`] asked for, until the next empty session.
    reserved: Option<usize>,
    /// With node counting: the profile's folder, and the counts once profiling has ended.
    profile: Option<(tempfile::TempDir, Option<BTreeMap<String, usize>>)>,
}

/// An input in standard layout: borrowed when the caller's array already is (ONNX Runtime reads
/// it in place), copied otherwise.
enum Contiguous<'a> {
    F32(CowArray<'a, f32, IxDyn>),
    F16(CowArray<'a, half::f16, IxDyn>),
    I64(CowArray<'a, i64, IxDyn>),
}

impl<'a> Contiguous<'a> {
    fn of(t: &'a Tensor) -> Self {
        match t {
            Tensor::F32(a) => Contiguous::F32(a.as_standard_layout()),
            Tensor::F16(a) => Contiguous::F16(a.as_standard_layout()),
            Tensor::I64(a) => Contiguous::I64(a.as_standard_layout()),
        }
    }

    fn value(&self) -> ort::Result<SessionInputValue<'_>> {
        Ok(match self {
            Contiguous::F32(a) => TensorRef::from_array_view(a)?.into(),
            Contiguous::F16(a) => TensorRef::from_array_view(a)?.into(),
            Contiguous::I64(a) => TensorRef::from_array_view(a)?.into(),
        })
    }
}

/// An output in its own type; other numeric types are cast to float32 so verify can report a
/// dtype mismatch with its numbers instead of a failed run.
fn output_tensor(value: &DynValue) -> Result<Tensor, Failure> {
    if let Ok(a) = value.try_extract_array::<f32>() {
        return Ok(Tensor::F32(a.to_owned()));
    }
    if let Ok(a) = value.try_extract_array::<half::f16>() {
        return Ok(Tensor::F16(a.to_owned()));
    }
    if let Ok(a) = value.try_extract_array::<i64>() {
        return Ok(Tensor::I64(a.to_owned()));
    }
    let cast: Option<ArrayD<f32>> = if let Ok(a) = value.try_extract_array::<f64>() {
        Some(a.mapv(|v| v as f32))
    } else if let Ok(a) = value.try_extract_array::<i32>() {
        Some(a.mapv(|v| v as f32))
    } else {
        None
    };
    cast.map(Tensor::F32)
        .ok_or_else(|| Failure::Unreadable(format!("{:?}", value.dtype())))
}

/// Distinct nodes per execution provider in an ONNX Runtime profile.
fn count_nodes(profile: &str) -> BTreeMap<String, usize> {
    let events: Vec<serde_json::Value> = serde_json::from_str(profile).unwrap_or_default();
    let mut nodes: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        let provider = e
            .get("args")
            .and_then(|a| a.get("provider"))
            .and_then(|p| p.as_str());
        let node = e.get("cat").and_then(|c| c.as_str()) == Some("Node");
        if let (true, Some(p), Some(n)) = (node, provider, name.strip_suffix("_kernel_time")) {
            nodes
                .entry(p.to_string())
                .or_default()
                .insert(n.to_string());
        }
    }
    nodes.into_iter().map(|(p, n)| (p, n.len())).collect()
}

impl OrtModel {
    fn run_error(&self, reason: impl Into<Failure>) -> RuntimeError {
        run_error(self.kind, &self.file, reason.into())
    }
}

fn run_error(kind: RuntimeKind, file: &str, reason: Failure) -> RuntimeError {
    RuntimeError::Run {
        runtime: kind.name().into(),
        source: reason.at(file).into(),
    }
}

impl OrtModel {
    /// A step with the past fed by reference and the presents kept as the next past.
    fn step_concat(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
    ) -> Result<Tensor, RuntimeError> {
        let contiguous: Vec<(&str, Contiguous<'_>)> = inputs
            .iter()
            .map(|(n, t)| (*n, Contiguous::of(t)))
            .collect();
        let host_past: Vec<Contiguous<'_>> = match &*cache {
            Cache::Host(past) => past.iter().map(Contiguous::of).collect(),
            Cache::Held(_) => vec![],
        };
        let held: Option<&Vec<DynValue>> = match &*cache {
            Cache::Held(b) => b.downcast_ref::<Vec<DynValue>>(),
            Cache::Host(_) => None,
        };
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for spec in &self.inputs {
            let name = spec.name.as_str();
            let value = if let Some((_, c)) = contiguous.iter().find(|(n, _)| *n == name) {
                c.value()
                    .map_err(|e| self.run_error(Failure::native("", e).of("input", name)))?
            } else if let Some(i) = cache_names.iter().position(|n| n == name) {
                match (held, host_past.get(i)) {
                    (Some(h), _) => match h.get(i) {
                        Some(v) => SessionInputValue::from(v),
                        None => return Err(self.run_error(Failure::MissingInput(name.into()))),
                    },
                    (None, Some(c)) => c
                        .value()
                        .map_err(|e| self.run_error(Failure::native("", e).of("input", name)))?,
                    (None, None) => return Err(self.run_error(Failure::MissingInput(name.into()))),
                }
            } else {
                return Err(self.run_error(Failure::MissingInput(name.into())));
            };
            values.push((Cow::Borrowed(name), value));
        }
        let (kind, file) = (self.kind, self.file.as_str());
        let mut results = self
            .session
            .run(values)
            .map_err(|e| run_error(kind, file, Failure::native("", e)))?;
        let logits = results
            .get(LOGITS)
            .ok_or_else(|| run_error(kind, file, Failure::NoOutput(LOGITS.into())))
            .and_then(|v| {
                output_tensor(v).map_err(|e| run_error(kind, file, e.of("output", LOGITS)))
            })?;
        let mut presents = Vec::with_capacity(cache_names.len());
        for name in cache_names {
            let present = present_for(name).unwrap_or_default();
            presents.push(
                results
                    .remove(&present)
                    .ok_or_else(|| run_error(kind, file, Failure::NoOutput(present)))?,
            );
        }
        drop(results);
        drop(host_past);
        *cache = Cache::Held(Box::new(presents));
        Ok(logits)
    }

    /// A step on the preallocated cache: `reserved` positions are allocated (zeroed) when the
    /// session starts; every later step binds the same buffers as past and present.
    fn step_shared(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
        reserved: Option<usize>,
    ) -> Result<Tensor, RuntimeError> {
        let (kind, file) = (self.kind, self.file.clone());
        let fail = |f: Failure| run_error(kind, &file, f);
        let native = |name: &str, e: ort::Error| fail(Failure::native("", e).of("input", name));
        if let (Some(positions), Cache::Host(past)) = (reserved, &*cache) {
            let shared = SharedCache::new(&self.session, past, cache_names, positions)
                .map_err(|e| fail(Failure::native("cannot allocate the cache", e)))?;
            *cache = Cache::Held(Box::new(shared));
        }
        let Cache::Held(held) = cache else {
            return Err(fail(Failure::ForeignCache));
        };
        let Some(shared) = held.downcast_mut::<SharedCache>() else {
            return Err(fail(Failure::ForeignCache));
        };
        let needed = inputs
            .iter()
            .find(|(n, _)| *n == ATTENTION_MASK)
            .and_then(|(_, t)| t.shape().get(1).copied())
            .ok_or_else(|| fail(Failure::MissingInput(ATTENTION_MASK.into())))?;
        if needed > shared.positions {
            return Err(fail(Failure::CacheFull {
                needed,
                reserved: shared.positions,
            }));
        }
        for spec in &self.inputs {
            let name = spec.name.as_str();
            if cache_names.iter().any(|n| n == name) {
                continue;
            }
            let Some((_, t)) = inputs.iter().find(|(n, _)| *n == name) else {
                return Err(fail(Failure::MissingInput(name.into())));
            };
            // Owned copies (a few ids and mask columns): ort 2.0.0-rc.15 deadlocks when a
            // binding copies a borrowed tensor itself.
            let bound = match t {
                Tensor::F32(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
                Tensor::F16(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
                Tensor::I64(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
            };
            bound.map_err(|e| native(name, e))?;
        }
        // Allocated by the run, its shape the step's: a binding would otherwise keep the
        // first run's logits as a preallocated output.
        shared
            .binding
            .bind_output_to_device(LOGITS, &MemoryInfo::default())
            .map_err(|e| fail(Failure::native("", e).of("output", LOGITS)))?;
        let mut results = self
            .session
            .run_binding(&shared.binding)
            .map_err(|e| fail(Failure::native("", e)))?;
        let logits = results
            .remove(LOGITS)
            .ok_or_else(|| fail(Failure::NoOutput(LOGITS.into())))?;
        output_tensor(&logits).map_err(|e| fail(e.of("output", LOGITS)))
    }
}

/// Name in [`inspect`](crate::onnx::inspect)'s op counts of the attention that accepts a past
/// buffer longer than the past and writes the present into it.
const IN_PLACE_ATTENTION: &str = "com.microsoft:GroupQueryAttention";

/// The cache of an in-place decoder: per layer a key and a value buffer `[batch, n_head,
/// positions, head_dim]`, bound once as both `past_key_values.*` and `present.*`.
struct SharedCache {
    binding: IoBinding,
    /// Kept alive for the binding.
    _buffers: Vec<DynTensor>,
    positions: usize,
}

impl SharedCache {
    /// `empty` holds the session's empty past (`[batch, n_head, 0, head_dim]`, its element type).
    fn new(
        session: &Session,
        empty: &[Tensor],
        names: &[String],
        positions: usize,
    ) -> ort::Result<SharedCache> {
        let mut binding = session.create_binding()?;
        let allocator = Allocator::default();
        let mut buffers = Vec::with_capacity(names.len());
        for (name, t) in names.iter().zip(empty) {
            let mut shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
            if let Some(d) = shape.get_mut(2) {
                *d = positions as i64;
            }
            let mut buffer: DynTensor = match t {
                Tensor::F16(_) => {
                    let mut b = ort::value::Tensor::<half::f16>::new(&allocator, shape)?;
                    b.extract_tensor_mut().1.fill(half::f16::ZERO);
                    b.upcast()
                }
                _ => {
                    let mut b = ort::value::Tensor::<f32>::new(&allocator, shape)?;
                    b.extract_tensor_mut().1.fill(0.0);
                    b.upcast()
                }
            };
            binding.bind_input(name.as_str(), &buffer)?;
            let present = present_for(name).unwrap_or_default();
            binding.bind_output(present, &mut buffer)?;
            buffers.push(buffer);
        }
        Ok(SharedCache {
            binding,
            _buffers: buffers,
            positions,
        })
    }
}

impl LoadedModel for OrtModel {
    fn reserve_cache(&mut self, positions: usize) {
        self.reserved = Some(positions);
    }

    /// On a decoder whose attention writes the cache in place (`GroupQueryAttention`), after
    /// [`LoadedModel::reserve_cache`]: one buffer per layer and key/value, bound as both the past
    /// and the present, so a step reads the cache once and writes one position. Otherwise the
    /// presents stay ONNX Runtime values and go back in as the next step's past by reference:
    /// no copy out of and into the runtime per step, though the graph's concatenation still
    /// copies the past into each present.
    fn step(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
    ) -> Result<Tensor, RuntimeError> {
        let fresh = matches!(&*cache, Cache::Host(past) if past.iter().all(|t| t.shape().get(2) == Some(&0)));
        let reserved = if fresh { self.reserved.take() } else { None };
        let held_shared = matches!(&*cache, Cache::Held(b) if b.is::<SharedCache>());
        if self.shared_cache && (held_shared || reserved.is_some()) {
            return self.step_shared(inputs, cache_names, cache, reserved);
        }
        self.step_concat(inputs, cache_names, cache)
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }

    fn pool_threads_spin(&self) -> Option<bool> {
        Some(self.spin)
    }

    /// Ends the session's profiling (once: the counts are kept) and counts, per execution
    /// provider, the distinct nodes with a `*_kernel_time` event in ONNX Runtime's profile
    /// (Chrome trace JSON: `{cat: "Node", name, args: {provider, ...}}`).
    fn node_providers(&mut self) -> Option<BTreeMap<String, usize>> {
        let (_, counts) = self.profile.as_mut()?;
        if counts.is_none() {
            let file = self.session.end_profiling().ok()?;
            let text = std::fs::read_to_string(&file).ok()?;
            *counts = Some(count_nodes(&text));
        }
        counts.clone()
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError> {
        let ordered = check_input_names(&self.inputs, inputs).map_err(|e| self.run_error(e))?;
        let contiguous: Vec<Contiguous<'_>> = ordered.iter().map(|t| Contiguous::of(t)).collect();
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for (spec, c) in self.inputs.iter().zip(&contiguous) {
            let v = c
                .value()
                .map_err(|e| self.run_error(Failure::native("", e).of("input", &spec.name)))?;
            values.push((Cow::Borrowed(spec.name.as_str()), v));
        }
        let (kind, file) = (self.kind, self.file.as_str());
        let results = self
            .session
            .run(values)
            .map_err(|e| run_error(kind, file, Failure::native("", e)))?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let name = &spec.name;
            let value = results
                .get(name)
                .ok_or_else(|| run_error(kind, file, Failure::NoOutput(name.clone())))?;
            let t =
                output_tensor(value).map_err(|e| run_error(kind, file, e.of("output", name)))?;
            out.push((name.clone(), t));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_running_and_steal_are_read_from_their_lines() {
        let stat = "cpu  60 0 10 20 0 0 0 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nctxt 99\nprocs_running 3\nprocs_blocked 0\n";
        assert_eq!(procs_running(stat), Some(3));
        assert_eq!(steal_share(stat), Some(0.1));
        assert_eq!(procs_running("cpu 1 2 3\nprocs_blocked 0\n"), None);
        assert_eq!(procs_running("procs_running x\n"), None);
        // An older kernel's shorter line, or nothing counted yet: no figure.
        assert_eq!(steal_share("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(steal_share("cpu  0 0 0 0 0 0 0 0\n"), None);
    }

    #[test]
    fn one_blip_of_another_process_leaves_the_machine_quiet_two_do_not() {
        let stat = |running: u32, steal: u32| {
            format!(
                "cpu  {} 0 10 20 0 0 0 {steal} 0 0\nprocs_running {running}\n",
                70 - steal
            )
        };
        let looks = |running: &[u32], steal: u32| -> Vec<String> {
            running.iter().map(|&r| stat(r, steal)).collect()
        };
        assert!(quiet(&looks(&[1, 1, 1, 1, 1], 0)));
        assert!(quiet(&looks(&[1, 1, 2, 1, 1], 0)));
        assert!(!quiet(&looks(&[1, 2, 1, 2, 1], 0)));
        assert!(!quiet(&looks(&[2, 2, 2, 2, 2], 0)));
        // Steal at a tenth of the time (10 of 100 ticks): shared cores, whatever the count.
        assert!(!quiet(&looks(&[1, 1, 1, 1, 1], 10)));
        assert!(quiet(&looks(&[1, 1, 1, 1, 1], 9)));
        // Unreadable figures: not quiet.
        assert!(!quiet(&["procs_running 1\n".to_string()]));
        assert!(!quiet(&[]));
    }

    #[test]
    fn input_name_mismatches_are_named() {
        use crate::base::DataType;
        use crate::base::DimSpec;
        let spec = |name: &str| IoSpec {
            name: name.into(),
            dtype: DataType::Int64,
            dims: vec![
                DimSpec::Symbol("batch".into()),
                DimSpec::Symbol("sequence".into()),
            ],
        };
        let graph = vec![spec("input_ids"), spec("attention_mask")];
        let a = Tensor::from(ArrayD::<i64>::zeros(IxDyn(&[1, 1])));
        let ok = [("attention_mask", &a), ("input_ids", &a)];
        let ordered = check_input_names(&graph, &ok).expect("names match");
        assert_eq!(ordered.len(), 2);
        let bad = [("input_ids", &a), ("input_ids", &a)];
        let e = check_input_names(&graph, &bad).expect_err("mismatch");
        let e = e.to_string();
        assert!(e.contains("missing input(s) attention_mask"), "{e}");
        assert!(e.contains("input_ids given twice"), "{e}");
        let f = Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 1])));
        let e = check_input_names(&graph, &[("attention_mask", &a), ("input_ids", &f)])
            .expect_err("float ids");
        assert_eq!(
            e.to_string(),
            "input `input_ids`: expected input_ids int64 [batch, sequence], found float32 [1, 1]"
        );
    }
}
