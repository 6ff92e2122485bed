//! Runtimes behind one small trait: ONNX Runtime (through `ort`, CPU / CUDA / TensorRT
//! providers), pure-Rust tract, OpenVINO (CPU), any ONNX Runtime release through its Python
//! package (`ort-python@VERSION`, [`ort_python`]), and any other through an adapter program
//! speaking a file protocol (`cmd:PROGRAM`, [`command`]). A test or a verify run is written
//! once against [`Runtime`] and runs on every runtime that is available.
//!
//! Values cross the boundary as typed [`Tensor`]s (int64, float32, float16) and each loaded graph
//! describes its inputs and outputs as [`IoSpec`]s read from the graph file, the same for every
//! runtime. Adding a runtime means one module here and one row of [`RUNTIMES`] (`table.rs`),
//! which says what it runs ([`can_run`] reads it) and how it opens.

pub mod command;
pub mod model;
pub mod native;
pub mod openvino;
pub mod ort;
pub mod ort_python;
pub mod releases;
pub mod support;
mod table;
pub mod tract;

pub use crate::base::tensor::{self, DimSpec, IoSpec, Tensor};
pub use model::{
    graph_io, install_panic_hook, Cache, ComputePrecision, LoadedModel, NamedOutputs, ReleaseSpec,
    Runtime, RuntimeError, RuntimeKind, RuntimeOptions, RuntimeSpec,
};
pub use support::{can_run, Unsupported};
pub use table::{RELEASE_RUNTIMES, RUNTIMES};

/// Opens a runtime, or says why it is unavailable.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    match kind {
        RuntimeKind::Table(row) => (row.open)(kind, opts),
        RuntimeKind::Release(row, text) => {
            let release = text.split_once('@').map_or("", |(_, v)| v);
            (row.open)(kind, release, opts)
        }
        RuntimeKind::Command(text) => command::open(kind, text, opts),
    }
}
