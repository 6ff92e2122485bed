//! OpenVINO on the CPU through the `openvino` crate, its C API loaded at run time
//! (`runtime-linking`) from the `openvino` PyPI wheel (`openvino/libs/libopenvino_c.so.*`, beside
//! the CPU plugin and the ONNX frontend it loads itself).
//!
//! The crate's 0.11 bindings target the C API of OpenVINO 2025.1 and later (they refuse older
//! libraries, whose element-type enum differs) and work unchanged with 2026.4: reading an ONNX
//! file, compiling for `CPU`, setting and reading properties, tensors and infer requests are all
//! the C API has had since 2022.
//!
//! OpenVINO chooses the precision it computes in (`INFERENCE_PRECISION_HINT`): bf16 by default
//! on CPUs with AVX-512 BF16 or AMX, f32 otherwise
//! (<https://docs.openvino.ai/2024/openvino-workflow/running-inference/optimize-inference/precision-control.html>).
//! `--openvino-precision` sets the hint; the precision actually used is read back from the
//! compiled model, named in [`LoadedModel::provider`] and returned by
//! [`LoadedModel::compute_precision`], so a reduced-precision run is judged and reported as one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayD, IxDyn};
use openvino::{
    CompiledModel, Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape,
};

use super::model::RuntimeOptions;
use super::model::{check_input_names, graph_io, quietly, Cause, ComputePrecision, Failure};
use super::model::{LoadedModel, NamedOutputs, Runtime, RuntimeError, RuntimeKind};
use super::native::{LibraryError, NativeLibrary};
use crate::base::values::Choice;
use crate::base::{DataType, IoSpec, Tensor};

const KIND: RuntimeKind = RuntimeKind::OpenVino;

/// OpenVINO's C library, as its PyPI wheel ships it (`openvino/libs/libopenvino_c.so.<n>`).
pub const LIBRARY: NativeLibrary = NativeLibrary {
    what: "OpenVINO",
    flag: "--openvino-lib",
    env: "OPENVINO_LIB_PATH",
    package: "openvino",
    subdir: "libs",
    stem: "openvino_c",
    hint: "Install it with `pip install openvino==2026.4.1` (or `igpt-onnx[openvino]`) into \
           the environment igpt-onnx is installed in (a checkout: ./ci/setup.sh), or pass \
           --openvino-lib PATH (or set OPENVINO_LIB_PATH) to an openvino/libs/libopenvino_c.so.*",
    system: false,
};

/// Finds OpenVINO's C library (see [`NativeLibrary::find`]).
pub fn discover_library(opts: &RuntimeOptions) -> Result<PathBuf, LibraryError> {
    LIBRARY.find(opts.openvino_lib.as_deref())
}

/// The library this process loaded and its version (`2026.4.1`).
struct OvEnv {
    library: PathBuf,
    version: String,
}

/// The C API is loaded once per process (the bindings keep one library); a failure is kept too,
/// so every later request reports the same reason.
static ENV: OnceLock<Result<OvEnv, Arc<Failure>>> = OnceLock::new();

/// Loads the library on first use. Only the first caller's options choose it.
fn environment(opts: &RuntimeOptions) -> Result<&'static OvEnv, Failure> {
    ENV.get_or_init(|| {
        let library = discover_library(opts).map_err(|e| Arc::new(Failure::native("", e)))?;
        let shown = library.display().to_string();
        guarded(&format!("cannot load {shown}"), || {
            openvino_sys::library::load_from(library.clone())
        })
        .map_err(Arc::new)?;
        let build = guarded("cannot read its version", || {
            Ok::<_, Cause>(openvino::version().build_number)
        })
        .map_err(Arc::new)?;
        // `2026.4.1-22982-e213a147257-releases/2026/4`: the release is the first part.
        let version = build.split('-').next().unwrap_or(&build).to_string();
        Ok(OvEnv { library, version })
    })
    .as_ref()
    .map_err(|e| Failure::Shared(e.clone()))
}

/// The library this process loaded, once the `openvino` runtime was opened.
pub fn loaded_library() -> Option<&'static Path> {
    ENV.get()?.as_ref().ok().map(|e| e.library.as_path())
}

/// Runs a call into OpenVINO, turning its error or a panic of the bindings into a [`Failure`]
/// after `doing`.
fn guarded<T, E: Into<Cause>>(doing: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, Failure> {
    match quietly(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::native(doing, e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let sep = if doing.is_empty() { "" } else { ": " };
            Err(Failure::Panic(format!("{doing}{sep}{msg}")))
        }
    }
}

/// Opens OpenVINO's CPU device: loads the library (once) and makes a core with the requested
/// inference precision hint.
pub fn open(_kind: RuntimeKind, opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    let unavailable = |source: Failure| RuntimeError::Unavailable {
        runtime: KIND.name().into(),
        source: source.into(),
    };
    let env = environment(opts).map_err(unavailable)?;
    let mut core = guarded("cannot create a core", Core::new).map_err(unavailable)?;
    if let Some(p) = opts.openvino_precision {
        guarded("cannot set INFERENCE_PRECISION_HINT", || {
            core.set_property(
                &DeviceType::CPU,
                &RwPropertyKey::HintInferencePrecision,
                p.name(),
            )
        })
        .map_err(unavailable)?;
    }
    Ok(Box::new(OpenVino {
        core: Mutex::new(core),
        env,
    }))
}

/// OpenVINO with one core (its CPU plugin and settings).
struct OpenVino {
    core: Mutex<Core>,
    env: &'static OvEnv,
}

impl Runtime for OpenVino {
    fn kind(&self) -> RuntimeKind {
        KIND
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        let load_error = |source: Failure| RuntimeError::Load {
            runtime: KIND.name().into(),
            path: model.display().to_string(),
            source: source.into(),
        };
        let (inputs, outputs) = graph_io(model).map_err(|e| load_error(e.into()))?;
        let path = model
            .to_str()
            .ok_or_else(|| load_error(Failure::native("", "the path is not valid UTF-8")))?;
        // A poisoned lock only means an earlier load panicked (caught); the core is still whole.
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        // An ONNX file and no weights file: external data resolves relative to the model.
        let graph = guarded("", || core.read_model_from_file(path, "")).map_err(load_error)?;
        let mut compiled = guarded("compiling for CPU", || {
            core.compile_model(&graph, DeviceType::CPU)
        })
        .map_err(load_error)?;
        drop(core);
        let hint = guarded("reading INFERENCE_PRECISION_HINT", || {
            compiled
                .get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision))
                .map(|v| v.trim().to_string())
        })
        .map_err(load_error)?;
        let precision = ComputePrecision::parse(&hint).ok_or_else(|| {
            load_error(Failure::native(
                "",
                format!("inference precision `{hint}`, which igpt-onnx cannot judge"),
            ))
        })?;
        let request = guarded("creating an infer request", || {
            compiled.create_infer_request()
        })
        .map_err(load_error)?;
        Ok(Box::new(OpenVinoModel {
            request,
            _compiled: compiled,
            file: model.display().to_string(),
            provider: format!(
                "CPU (OpenVINO {}, inference precision {})",
                self.env.version,
                precision.name()
            ),
            precision,
            inputs,
            outputs,
        }))
    }
}

/// A graph compiled for the CPU and its one infer request.
struct OpenVinoModel {
    /// Declared before the compiled model, so it is dropped first.
    request: InferRequest,
    _compiled: CompiledModel,
    file: String,
    provider: String,
    precision: ComputePrecision,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl OpenVinoModel {
    fn run_error(&self, reason: Failure) -> RuntimeError {
        RuntimeError::Run {
            runtime: KIND.name().into(),
            source: reason.at(&self.file).into(),
        }
    }
}

/// `t` as an OpenVINO tensor of its own type and shape (its elements copied, in logical order).
fn to_openvino(t: &Tensor) -> Result<openvino::Tensor, Failure> {
    let dims: Vec<i64> = t
        .shape()
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect();
    let shape = guarded("", || Shape::new(&dims))?;
    let ty = match t {
        Tensor::F32(_) => ElementType::F32,
        Tensor::F16(_) => ElementType::F16,
        Tensor::I64(_) => ElementType::I64,
    };
    let mut out = guarded("", || openvino::Tensor::new(ty, &shape))?;
    if t.shape().iter().product::<usize>() == 0 {
        // No storage to fill (and none to borrow: its data pointer may be null).
        return Ok(out);
    }
    let dst = guarded("", || out.get_raw_data_mut())?;
    let written = match t {
        Tensor::F32(a) => fill(dst, a, f32::to_ne_bytes),
        Tensor::F16(a) => fill(dst, a, half::f16::to_ne_bytes),
        Tensor::I64(a) => fill(dst, a, i64::to_ne_bytes),
    };
    if !written {
        return Err(Failure::native(
            "",
            format!("OpenVINO allocated a tensor of another size for shape {dims:?}"),
        ));
    }
    Ok(out)
}

/// Writes `src`'s elements into `dst`; false when the sizes differ.
fn fill<T: Copy, const N: usize>(dst: &mut [u8], src: &ArrayD<T>, bytes: fn(T) -> [u8; N]) -> bool {
    if dst.len() != src.len() * N {
        return false;
    }
    for (chunk, v) in dst.chunks_exact_mut(N).zip(src.iter()) {
        chunk.copy_from_slice(&bytes(*v));
    }
    true
}

/// An output in its own type; other numeric types are cast to float32 so verify can report a
/// dtype mismatch with its numbers instead of a failed run.
fn from_openvino(t: &openvino::Tensor) -> Result<Tensor, Failure> {
    let ty = guarded("", || t.get_element_type())?;
    let shape = guarded("", || t.get_shape())?;
    let dims: Vec<usize> = shape
        .get_dimensions()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    let empty = dims.iter().product::<usize>() == 0;
    let bytes: &[u8] = if empty {
        &[]
    } else {
        guarded("", || t.get_raw_data())?
    };
    fn read<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| from(<[u8; N]>::try_from(c).unwrap_or([0; N])))
            .collect()
    }
    let shaped = |e: ndarray::ShapeError| Failure::native("", e);
    let f32s = |v: Vec<f32>| ArrayD::from_shape_vec(IxDyn(&dims), v).map_err(shaped);
    Ok(match ty {
        ElementType::F32 => Tensor::F32(f32s(read(bytes, f32::from_ne_bytes))?),
        ElementType::F16 => Tensor::F16(
            ArrayD::from_shape_vec(IxDyn(&dims), read(bytes, half::f16::from_ne_bytes))
                .map_err(shaped)?,
        ),
        ElementType::I64 => Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&dims), read(bytes, i64::from_ne_bytes))
                .map_err(shaped)?,
        ),
        ElementType::Bf16 => Tensor::F32(f32s(
            read(bytes, half::bf16::from_ne_bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
        )?),
        ElementType::F64 => Tensor::F32(f32s(
            read(bytes, f64::from_ne_bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        )?),
        ElementType::I32 => Tensor::F32(f32s(
            read(bytes, i32::from_ne_bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        )?),
        other => return Err(Failure::Unreadable(format!("{other:?}"))),
    })
}

impl LoadedModel for OpenVinoModel {
    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }

    fn compute_precision(&self) -> Option<DataType> {
        (self.precision != ComputePrecision::F32).then(|| self.precision.data_type())
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError> {
        let ordered =
            check_input_names(&self.inputs, inputs).map_err(|e| self.run_error(e.into()))?;
        for (spec, t) in self.inputs.iter().zip(ordered) {
            let name = spec.name.as_str();
            let set = to_openvino(t)
                .and_then(|tensor| guarded("", || self.request.set_tensor(name, &tensor)));
            set.map_err(|e| self.run_error(e.of("input", name)))?;
        }
        guarded("", || self.request.infer()).map_err(|e| self.run_error(e))?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let name = spec.name.as_str();
            let t = guarded("", || self.request.get_tensor(name))
                .and_then(|t| from_openvino(&t))
                .map_err(|e| self.run_error(e.of("output", name)))?;
            out.push((name.to_string(), t));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_c_library_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "libopenvino.so.2641",
            "libopenvino_c.so.2541",
            "libopenvino_c.so.2641",
            "libopenvino_intel_cpu_plugin.so",
            "libopenvino_onnx_frontend.so.2641",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let found = LIBRARY.library_in(dir.path()).expect("found");
        assert!(
            found.ends_with("libopenvino_c.so.2641"),
            "{}",
            found.display()
        );
        let missing = dir.path().join("nonexistent");
        let e = LIBRARY.find(Some(&missing)).expect_err("bad");
        assert!(e.to_string().contains("nonexistent"), "{e}");
        let via_dir = LIBRARY.find(Some(dir.path())).expect("a folder");
        assert!(via_dir.ends_with("libopenvino_c.so.2641"));
    }
}
