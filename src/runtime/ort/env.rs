//! ONNX Runtime's one environment per process, made from the shared library that
//! [`discover_library`](super::discover_library) finds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;

use super::library::discover_library;
use crate::runtime::model::{Failure, RuntimeOptions};

/// The process-wide environment and the library it came from.
pub(super) struct OrtEnv {
    pub(super) env: Environment,
    pub(super) library: PathBuf,
}

/// ONNX Runtime allows one environment per process; a failure to create it is kept too, so
/// every later request reports the same reason.
static ENV: OnceLock<Result<OrtEnv, Arc<Failure>>> = OnceLock::new();

/// Loads the library and creates the environment on first use. Only the first caller's
/// options choose the library; later callers share it.
pub(super) fn environment(opts: &RuntimeOptions) -> Result<&'static OrtEnv, Failure> {
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
