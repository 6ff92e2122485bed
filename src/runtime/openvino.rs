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
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{ArrayD, IxDyn};
use openvino::{
    CompiledModel, Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape,
};

use super::model::RuntimeOptions;
use super::model::{check_input_names, graph_io, quietly, Cause, ComputePrecision, Failure};
use super::model::{LoadedModel, NamedOutputs, Runtime, RuntimeError, RuntimeKind};
use crate::base::values::Choice;
use crate::base::{DataType, IoSpec, Tensor};

const KIND: RuntimeKind = RuntimeKind::OpenVino;

/// The environment variable naming the C library (or its folder), after `--openvino-lib`.
pub const LIB_ENV: &str = "OPENVINO_LIB_PATH";

/// How to get the library, appended to every "not found" message.
const INSTALL_HINT: &str = "Install it with ./ci/setup.sh, or `pip install openvino==2026.4.1` \
     and pass --openvino-lib PATH (or set OPENVINO_LIB_PATH) to its openvino/libs/libopenvino_c.so.*";

/// The code `python3` runs to say where its `openvino` package lives.
const PYTHON_PROBE: &str = "import openvino, os; print(os.path.dirname(openvino.__file__))";

/// Why no OpenVINO library could be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no OpenVINO library found; looked at: {}. {INSTALL_HINT}", .tried.join("; "))]
    NotFound { tried: Vec<String> },
    #[error("{given} names {path}, which is neither libopenvino_c nor a folder holding it. {INSTALL_HINT}")]
    NotALibrary { given: &'static str, path: String },
    #[error("{given} {path}: {source}")]
    Absolute {
        given: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Finds OpenVINO's C library: `--openvino-lib`, then `OPENVINO_LIB_PATH` (a file, or a folder
/// holding it), then the project's `.venv` (searched from the current directory upwards and at
/// the crate's own folder), then the `openvino` package of the `python3` on `PATH`. An explicit
/// path that names no library is an error, never skipped over; when nothing is found the
/// message lists what each step looked at.
pub fn discover_library(opts: &RuntimeOptions) -> Result<PathBuf, LibraryError> {
    if let Some(p) = &opts.openvino_lib {
        return explicit(p, "--openvino-lib");
    }
    if let Some(p) = std::env::var_os(LIB_ENV).filter(|v| !v.is_empty()) {
        return explicit(Path::new(&p), LIB_ENV);
    }
    let mut tried = vec![
        "--openvino-lib: not given".to_string(),
        format!("{LIB_ENV}: not set"),
    ];
    let (found, venvs) = search_venvs();
    if let Some(p) = found {
        return Ok(p);
    }
    tried.push(venvs);
    let (found, python) = python_package();
    if let Some(p) = found {
        return Ok(p);
    }
    tried.push(format!("python3 on PATH: {python}"));
    Err(LibraryError::NotFound { tried })
}

fn explicit(path: &Path, given: &'static str) -> Result<PathBuf, LibraryError> {
    let not_a_library = || LibraryError::NotALibrary {
        given,
        path: path.display().to_string(),
    };
    let file = if path.is_file() {
        path.to_path_buf()
    } else if path.is_dir() {
        library_in(path).ok_or_else(not_a_library)?
    } else {
        return Err(not_a_library());
    };
    std::path::absolute(&file).map_err(|source| LibraryError::Absolute {
        given,
        path: path.display().to_string(),
        source,
    })
}

/// `<dir>/.venv/lib/python3*/site-packages/openvino/libs/`.
fn search_venvs() -> (Option<PathBuf>, String) {
    let mut roots: Vec<PathBuf> = std::env::current_dir()
        .map(|d| d.ancestors().map(Path::to_path_buf).collect())
        .unwrap_or_default();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !roots.contains(&manifest) {
        roots.push(manifest.clone());
    }
    let mut looked = Vec::new();
    for root in &roots {
        let venv = root.join(".venv");
        if !venv.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                    .map(|e| e.path().join("site-packages/openvino/libs"))
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        // Windows virtual environments.
        dirs.push(venv.join("Lib/site-packages/openvino/libs"));
        if let Some(lib) = dirs.iter().find_map(|d| library_in(d)) {
            return (Some(lib), String::new());
        }
        looked.push(venv.display().to_string());
    }
    let cwd = roots
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "?".into());
    let what = if looked.is_empty() {
        format!(
            "project .venv: none in {cwd} or its parents, nor in {}",
            manifest.display()
        )
    } else {
        format!(
            "project .venv: no openvino/libs/libopenvino_c.so* in {}",
            looked.join(", ")
        )
    };
    (None, what)
}

/// The `openvino` package of the `python3` on `PATH`; else what was seen there.
fn python_package() -> (Option<PathBuf>, String) {
    let out = match Command::new("python3").args(["-c", PYTHON_PROBE]).output() {
        Ok(out) => out,
        Err(e) => return (None, format!("cannot run it ({e})")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("failed").trim().to_string();
        return (None, format!("no openvino package ({last})"));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("libs");
    match library_in(&dir) {
        Some(lib) => (Some(lib), String::new()),
        None => (None, format!("no libopenvino_c in {}", dir.display())),
    }
}

/// OpenVINO's C library in `dir`: the unversioned name if present, else the highest versioned
/// one (the PyPI wheel ships only `libopenvino_c.so.2641` for 2026.4.1).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let version = if let Some(rest) = name.strip_prefix("libopenvino_c.so") {
            rest
        } else if let Some(rest) = name
            .strip_prefix("libopenvino_c")
            .and_then(|r| r.strip_suffix(".dylib"))
        {
            rest
        } else if name == "openvino_c.dll" {
            ""
        } else {
            continue;
        };
        if !(version.is_empty() || version.starts_with('.')) || !e.path().is_file() {
            continue;
        }
        let key: Vec<u64> = if version.is_empty() {
            vec![u64::MAX]
        } else {
            version
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap_or(0))
                .collect()
        };
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, e.path()));
        }
    }
    best.and_then(|(_, p)| std::path::absolute(p).ok())
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
pub fn open(opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
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
        let found = library_in(dir.path()).expect("found");
        assert!(
            found.ends_with("libopenvino_c.so.2641"),
            "{}",
            found.display()
        );
        let e = explicit(&dir.path().join("nonexistent"), "--openvino-lib").expect_err("bad");
        assert!(e.to_string().contains("nonexistent"), "{e}");
        let via_dir = explicit(dir.path(), "--openvino-lib").expect("a folder");
        assert!(via_dir.ends_with("libopenvino_c.so.2641"));
    }
}
