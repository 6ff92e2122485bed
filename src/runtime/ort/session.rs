//! The runtime: ONNX Runtime with one execution provider, making sessions (CPU, through the
//! optimized-model cache, or a GPU provider with fallback when allowed).

use std::path::{Path, PathBuf};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::cache;
use super::env::OrtEnv;
use super::model::OrtModel;
use super::providers::{Provider, CPU, PROVIDERS};
use crate::graph::io::CacheMode;
use crate::graph::ExportCard;
use crate::runtime::model::{
    graph_io_of, Failure, GraphIoError, LoadedModel, Runtime, RuntimeError, RuntimeKind,
};

/// ONNX Runtime with one execution provider.
pub(super) struct Ort {
    pub(super) kind: RuntimeKind,
    pub(super) env: &'static OrtEnv,
    pub(super) provider: &'static Provider,
    pub(super) allow_fallback: bool,
    pub(super) count_nodes: bool,
    /// `--ort-cache`: the folder of saved optimized models (CPU sessions only; `cache`).
    pub(super) cache: Option<PathBuf>,
    /// Whether its sessions' idle pool threads spin ([`pool_threads_spin`]).
    pub(super) spin: bool,
    /// Intra-op threads per session ([`threads`] unless the options say).
    pub(super) threads: usize,
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
        let threads = self.threads;
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
        let key = match cache::key(model, &self.env.library, self.threads, "all") {
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
        gpu: &Provider,
        profile: Option<&Path>,
    ) -> Result<Session, GpuFailure> {
        if !gpu.is_compiled_in().map_err(GpuFailure::Register)? {
            return Err(GpuFailure::Register(Failure::Provider {
                provider: gpu.name,
                why: format!(
                    "the ONNX Runtime library {} was built without it",
                    self.env.library.display()
                ),
            }));
        }
        let b = self.builder(profile).map_err(GpuFailure::Commit)?;
        let mut b = b
            .with_execution_providers((gpu.dispatches)())
            .map_err(|e| {
                GpuFailure::Register(Failure::Provider {
                    provider: gpu.name,
                    why: ort::Error::<()>::from(e).to_string(),
                })
            })?;
        // A provider can register and still fail to start (no device, missing CUDA or cuDNN
        // libraries): ONNX Runtime reports that when the session is created.
        b.commit_from_file(model).map_err(|e| {
            let doing = format!("session creation with {} failed", gpu.name);
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
        // The export card says whether the decoder can write its cache in place; a graph
        // without one (another tool's), or with a card we cannot read, concatenates.
        let cache_mode = ExportCard::from_metadata(&info.metadata)
            .ok()
            .flatten()
            .map_or(CacheMode::Concat, |card| card.cache);
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
        let gpu = self.provider;
        let (session, provider) = if gpu.is_cpu() {
            (self.commit_cpu(model, prefix)?, gpu)
        } else {
            match self.commit_gpu(model, gpu, prefix) {
                Ok(s) => (s, gpu),
                Err(_) if self.allow_fallback => (self.commit_cpu(model, prefix)?, &PROVIDERS[0]),
                Err(GpuFailure::Register(source)) => {
                    return Err(RuntimeError::Unavailable {
                        runtime: self.kind.name().into(),
                        source: source.into(),
                    })
                }
                Err(GpuFailure::Commit(source)) => return Err(self.load_error(model, source)),
            }
        };
        // The cache buffers live in host memory: in place only where the kernels run there,
        // and only where the export says the decoder writes its cache in place.
        let shared_cache = cache_mode == CacheMode::Shared && provider.host_memory;
        let provider = match provider.is_cpu() && !gpu.is_cpu() {
            true => format!("{CPU} (fallback from {})", gpu.name),
            false => provider.name.to_string(),
        };
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
