//! ONNX Runtime through `ort` (load-dynamic): the shared library ([`discover_library`]), one
//! environment per process, and sessions on the CPU, CUDA or TensorRT execution provider (docs/design.md §4).
//!
//! ONNX Runtime's own behaviour when a provider cannot be registered is to log and carry on on
//! the CPU; here that is an error unless the caller allows fallback, and [`LoadedModel::provider`](super::LoadedModel::provider)
//! always names what actually runs.
//!
//! By concern: the library and its environment (`library.rs`, `env.rs`), the execution
//! providers as rows (`providers.rs`), the thread pool (`threads.rs`), sessions
//! (`session.rs`, with the optimized-model cache in `cache.rs`), a graph in a session and its
//! values (`model.rs`), running it (`loaded.rs`) and the decoder step (`step.rs`).

mod cache;
mod env;
mod library;
mod loaded;
mod model;
mod providers;
mod session;
mod step;
mod threads;

pub use env::loaded_library;
pub use library::{discover_library, LIBRARY};

use env::environment;
use providers::{check_compiled_in, Provider};
use session::Ort;
use threads::{pool_threads_spin, threads};

use super::model::{Failure, Runtime, RuntimeError, RuntimeKind, RuntimeOptions};

/// Opens ONNX Runtime with the provider `kind` names. Without `allow_fallback`, a GPU provider
/// the loaded library was not built with makes the runtime unavailable right away.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    let unavailable = |source: Failure| RuntimeError::Unavailable {
        runtime: kind.name().into(),
        source: source.into(),
    };
    let provider = Provider::of(kind).ok_or_else(|| {
        unavailable(Failure::Provider {
            provider: "ONNX Runtime",
            why: format!("{} is not one of its execution providers", kind.name()),
        })
    })?;
    let env = environment(opts).map_err(unavailable)?;
    if !provider.is_cpu() && !opts.allow_fallback {
        check_compiled_in(provider, env).map_err(unavailable)?;
    }
    Ok(Box::new(Ort {
        kind,
        env,
        provider,
        allow_fallback: opts.allow_fallback,
        count_nodes: opts.count_nodes,
        cache: opts.ort_cache.clone(),
        spin: opts.pool_spin.unwrap_or_else(pool_threads_spin),
        threads: opts.intra_threads.unwrap_or_else(threads).max(1),
    }))
}
