//! ONNX Runtime's execution providers as rows: which runtime name each serves, ONNX Runtime's
//! name for it, whether its kernels work in host memory, and how it registers.

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};

use super::env::OrtEnv;
use crate::runtime::model::{Failure, RuntimeKind};

/// One of ONNX Runtime's execution providers: a runtime row (`ort-cpu`, …) and how it
/// registers. A new provider is a row here and a row of the runtimes' table.
pub(crate) struct Provider {
    /// The runtime's name (`ort-cuda`).
    pub(super) runtime: &'static str,
    /// ONNX Runtime's name for it (`CUDAExecutionProvider`).
    pub(super) name: &'static str,
    /// Whether its kernels read and write host memory, so a decoder's cache can stay in host
    /// buffers written in place.
    pub(super) host_memory: bool,
    /// Whether the loaded library was built with it (`None`: always, the CPU).
    compiled_in: Option<fn() -> ort::Result<bool>>,
    /// The providers to register, in priority order (none: the CPU, ONNX Runtime's default).
    /// Each errors instead of being skipped: ort's default logs the failure and lets the
    /// session run on the CPU.
    pub(super) dispatches: fn() -> Vec<ExecutionProviderDispatch>,
}

/// Every provider. TensorRT leaves the nodes it cannot take to CUDA, as ONNX Runtime recommends.
pub(super) const PROVIDERS: &[Provider] = &[
    Provider {
        runtime: "ort-cpu",
        name: CPU,
        host_memory: true,
        compiled_in: None,
        dispatches: Vec::new,
    },
    Provider {
        runtime: "ort-cuda",
        name: ep::CUDA::NAME,
        host_memory: false,
        compiled_in: Some(ep::CUDA::is_available),
        dispatches: || vec![ep::CUDA::default().build().error_on_failure()],
    },
    Provider {
        runtime: "ort-tensorrt",
        name: ep::TensorRT::NAME,
        host_memory: false,
        compiled_in: Some(ep::TensorRT::is_available),
        dispatches: || {
            vec![
                ep::TensorRT::default().build().error_on_failure(),
                ep::CUDA::default().build().error_on_failure(),
            ]
        },
    },
];

/// ONNX Runtime's CPU provider, what every session can run on.
pub(super) const CPU: &str = "CPUExecutionProvider";

impl Provider {
    /// The row of runtime `kind`, if it is one of ONNX Runtime's.
    pub(crate) fn of(kind: RuntimeKind) -> Option<&'static Provider> {
        PROVIDERS.iter().find(|p| p.runtime == kind.name())
    }

    /// Whether the library was built with it. `GetAvailableProviders` lists compiled-in
    /// providers only: a GPU build on a machine without a GPU still says yes.
    pub(super) fn is_compiled_in(&self) -> Result<bool, Failure> {
        match self.compiled_in {
            None => Ok(true),
            Some(f) => f().map_err(|e| Failure::native(format!("cannot list {}", self.name), e)),
        }
    }

    /// Whether it is the CPU, ONNX Runtime's default.
    pub(super) fn is_cpu(&self) -> bool {
        self.compiled_in.is_none()
    }
}

pub(super) fn check_compiled_in(provider: &Provider, env: &OrtEnv) -> Result<(), Failure> {
    if provider.is_compiled_in()? {
        return Ok(());
    }
    Err(Failure::Provider {
        provider: provider.name,
        why: format!(
            "the ONNX Runtime library {} was built without it \
             (install onnxruntime-gpu==1.31.1 and point --ort-lib at its libonnxruntime.so.*, \
             or pass --allow-fallback to run on CPUExecutionProvider)",
            env.library.display()
        ),
    })
}
