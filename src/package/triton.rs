//! A Triton Inference Server model repository from an export folder: per head,
//! `<repo>/<name>/1/model.onnx` (+ its external data), `<repo>/<name>/config.pbtxt` for the
//! `onnxruntime` backend, and the image processor's `preprocessor_config.json` beside it.
//!
//! Schema: Triton's `model_config.proto` (`ModelConfig`: `name`, `backend`, `max_batch_size`,
//! `input`/`output` `ModelInput`/`ModelOutput` with `data_type` and `dims`, `dynamic_batching`,
//! `instance_group`, `optimization.execution_accelerators`), written in protobuf text format.
//! With `max_batch_size` > 0 Triton adds the batch dim itself, so `dims` leave it out and every
//! input and output must have the batch as its first dim; symbolic dims are `-1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{link_or_copy, PackageError, StagedDir};
use crate::base::files::write_atomic;
use crate::graph::io::{BATCH, LOGITS};
use crate::graph::{ExportCard, GraphCardError, Head};
use crate::onnx::inspect::{self, ModelInfo, SigDim, Signature};
use crate::onnx::writer::external_data_path;

/// Heads a repository may hold (every head export writes), by the name export records in
/// `igpt_onnx.head`.
pub const HEADS: [Head; 4] = Head::ALL;

/// How to package.
#[derive(Debug, Clone)]
pub struct TritonOptions {
    /// Heads to package (their `<head>.onnx` must be in the export folder); empty: every
    /// `<head>.onnx` the folder has.
    pub heads: Vec<Head>,
    /// Triton's `max_batch_size`: 0 disables batching (dims then include the batch).
    pub max_batch: u32,
    /// GPU instances with the TensorRT accelerator, instead of CPU instances.
    pub gpus: bool,
    /// Model names are `<prefix>-<head>`.
    pub prefix: String,
}

impl Default for TritonOptions {
    fn default() -> Self {
        Self {
            heads: Vec::new(),
            max_batch: 8,
            gpus: false,
            prefix: "imagegpt".into(),
        }
    }
}

/// One model written into the repository.
#[derive(Debug, Clone)]
pub struct TritonModel {
    pub name: String,
    pub head: Head,
    pub dir: PathBuf,
    /// The graph it was made from.
    pub source: PathBuf,
}

/// Writes one model folder per head of `export_dir` into `repo` (created if missing; other
/// models in it are left alone). Every graph is checked and every config rendered before
/// anything is written; each folder appears whole or not at all.
pub fn write(
    export_dir: &Path,
    repo: &Path,
    opts: &TritonOptions,
) -> Result<Vec<TritonModel>, PackageError> {
    let graphs = select_graphs(export_dir, &opts.heads)?;
    if graphs.is_empty() {
        return Err(PackageError::invalid(
            export_dir,
            "no exported graphs (<head>.onnx) to package",
        ));
    }
    let mut planned = Vec::new();
    for (head, path) in graphs {
        let info = inspect::inspect(&path).map_err(PackageError::invalid_because(&path))?;
        let card = card_of(&path, &info, head)?;
        if opts.gpus && card.precision.spec().matmul.calibrated() {
            // The GPU instances run TensorRT at precision_mode FP32; a QDQ graph's int8
            // regions need its INT8 mode, which no test here has run.
            return Err(PackageError::invalid(
                &path,
                format!(
                    "is {}: --gpus configures TensorRT in FP32, which is not checked with QDQ graphs; package it for CPU instances (without --gpus)",
                    card.precision.name()
                ),
            ));
        }
        let name = format!("{}-{}", opts.prefix, head.name());
        let labels = labels(&path, &info, &card)?;
        let config = config_pbtxt(&name, &info, opts, labels.is_some())
            .map_err(PackageError::invalid_because(&path))?;
        planned.push((head, path, info, name, config, labels));
    }
    let processor = export_dir.join("preprocessor_config.json");
    let mut staged = Vec::new();
    for (head, path, info, name, config, labels) in planned {
        let dest = repo.join(&name);
        let stage = StagedDir::new(&dest)?;
        let version = stage.path().join("1");
        std::fs::create_dir(&version).map_err(PackageError::io("create folder", &version))?;
        link_or_copy(&path, &version.join("model.onnx"))?;
        if info.external_initializers > 0 {
            // The graph names its data file by the exported name; ORT resolves it beside
            // model.onnx, so it keeps that name.
            let data = external_data_path(&path);
            let data_name = data.file_name().unwrap_or_default();
            link_or_copy(&data, &version.join(data_name))?;
        }
        write_file(&stage.path().join("config.pbtxt"), &config)?;
        if let Some(labels) = labels {
            write_file(&stage.path().join(LABELS_FILE), &labels)?;
        }
        if processor.is_file() {
            link_or_copy(&processor, &stage.path().join("preprocessor_config.json"))?;
        }
        staged.push((stage, name, head, path));
    }
    staged
        .into_iter()
        .map(|(stage, name, head, source)| {
            Ok(TritonModel {
                dir: stage.commit()?,
                name,
                head,
                source,
            })
        })
        .collect()
}

/// The classifier's labels file, one label per class id, for Triton's classification
/// extension (`label_filename`).
pub const LABELS_FILE: &str = "labels.txt";

fn write_file(path: &Path, text: &str) -> Result<(), PackageError> {
    Ok(write_atomic(path, text.as_bytes())?)
}

/// `(head, <export_dir>/<head>.onnx)` for the requested heads (each must exist), or for every
/// head file present.
fn select_graphs(export_dir: &Path, heads: &[Head]) -> Result<Vec<(Head, PathBuf)>, PackageError> {
    if !export_dir.is_dir() {
        return Err(PackageError::invalid(export_dir, "not an export folder"));
    }
    let file = |h: Head| export_dir.join(format!("{}.onnx", h.name()));
    if heads.is_empty() {
        return Ok(HEADS
            .iter()
            .map(|&h| (h, file(h)))
            .filter(|(_, p)| p.is_file())
            .collect());
    }
    heads
        .iter()
        .map(|&h| {
            let p = file(h);
            if p.is_file() {
                Ok((h, p))
            } else {
                Err(PackageError::invalid(
                    &p,
                    format!("no {} graph in the export folder", h.name()),
                ))
            }
        })
        .collect()
}

/// The graph's export card, which must say it is the head its file name says.
fn card_of(path: &Path, info: &ModelInfo, head: Head) -> Result<ExportCard, PackageError> {
    let card = ExportCard::from_metadata(&info.metadata)
        .map_err(|source| GraphCardError {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| {
            PackageError::invalid(
                path,
                "no igpt_onnx.head metadata: not a graph igpt-onnx exported",
            )
        })?;
    if card.head != head {
        return Err(PackageError::invalid(
            path,
            format!("holds the {} head, not {}", card.head.name(), head.name()),
        ));
    }
    Ok(card)
}

/// One label per line, in id order, from the card's `id2label` (else `LABEL_{id}`, as
/// transformers names them). `None` for heads other than the classifier.
fn labels(
    path: &Path,
    info: &ModelInfo,
    card: &ExportCard,
) -> Result<Option<String>, PackageError> {
    if card.head != Head::Classifier {
        return Ok(None);
    }
    let n = info
        .outputs
        .iter()
        .find(|o| o.name == LOGITS)
        .and_then(|o| o.dims().last().cloned());
    let Some(SigDim::Value(n)) = n else {
        return Err(PackageError::invalid(
            path,
            "classifier output `logits` has no fixed label count",
        ));
    };
    let mut out = String::new();
    for id in 0..n.max(0) as usize {
        // One label per line: a newline inside a label would shift every later id.
        let _ = writeln!(out, "{}", card.config.label(id).replace(['\n', '\r'], " "));
    }
    Ok(Some(out))
}

/// Triton's `DataType` name for an ONNX `TensorProto.DataType` code; `None` for element types
/// Triton has no equivalent of (complex, float8, 4-bit).
pub fn triton_type(onnx_code: i32) -> Option<&'static str> {
    Some(match onnx_code {
        1 => "TYPE_FP32",
        2 => "TYPE_UINT8",
        3 => "TYPE_INT8",
        4 => "TYPE_UINT16",
        5 => "TYPE_INT16",
        6 => "TYPE_INT32",
        7 => "TYPE_INT64",
        8 => "TYPE_STRING",
        9 => "TYPE_BOOL",
        10 => "TYPE_FP16",
        11 => "TYPE_FP64",
        12 => "TYPE_UINT32",
        13 => "TYPE_UINT64",
        16 => "TYPE_BF16",
        _ => return None,
    })
}

/// ONNX names of the element types [`triton_type`] refuses (the project's own [`DataType`]
/// names only the types it emits).
///
/// [`DataType`]: crate::base::DataType
fn onnx_type_name(onnx_code: i32) -> Option<&'static str> {
    Some(match onnx_code {
        14 => "complex64",
        15 => "complex128",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        _ => return None,
    })
}

/// The `config.pbtxt` text for a graph; an error names the tensor Triton cannot serve.
pub fn config_pbtxt(
    name: &str,
    info: &ModelInfo,
    opts: &TritonOptions,
    labels: bool,
) -> Result<String, TritonError> {
    let mut t = String::new();
    let _ = writeln!(t, "# Written by igpt-onnx {}.", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(t, "name: \"{name}\"");
    let _ = writeln!(t, "backend: \"onnxruntime\"");
    let _ = writeln!(t, "max_batch_size: {}", opts.max_batch);
    for (field, list, is_input) in [
        ("input", &info.inputs, true),
        ("output", &info.outputs, false),
    ] {
        let _ = writeln!(t, "{field} [");
        for (i, s) in list.iter().enumerate() {
            let sep = if i + 1 < list.len() { "," } else { "" };
            let dims = dims(s, field, opts.max_batch > 0)?;
            let ty = triton_type(s.elem_code).ok_or_else(|| TritonError::Type {
                field,
                name: s.name.clone(),
                elem: onnx_type_name(s.elem_code)
                    .unwrap_or(&s.elem_type)
                    .to_string(),
            })?;
            let _ = writeln!(t, "  {{");
            let _ = writeln!(t, "    name: \"{}\"", s.name);
            let _ = writeln!(t, "    data_type: {ty}");
            let _ = writeln!(t, "    dims: [ {dims} ]");
            if labels && !is_input && s.name == LOGITS {
                let _ = writeln!(t, "    label_filename: \"{LABELS_FILE}\"");
            }
            let _ = writeln!(t, "  }}{sep}");
        }
        let _ = writeln!(t, "]");
    }
    if opts.max_batch > 0 {
        // Requests of equal shapes (a decoder step: equal past lengths) run as one batch.
        let _ = writeln!(t, "dynamic_batching {{ }}");
    }
    let kind = if opts.gpus { "KIND_GPU" } else { "KIND_CPU" };
    let _ = writeln!(t, "instance_group [ {{ count: 1 kind: {kind} }} ]");
    if opts.gpus {
        // FP32 keeps TensorRT to the precision the graph was verified in.
        let _ = writeln!(
            t,
            "optimization {{ execution_accelerators {{ gpu_execution_accelerator [ {{ name: \"tensorrt\" parameters {{ key: \"precision_mode\" value: \"FP32\" }} parameters {{ key: \"max_workspace_size_bytes\" value: \"1073741824\" }} }} ] }} }}"
        );
    }
    Ok(t)
}

/// A tensor Triton cannot serve, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TritonError {
    #[error("{field} `{name}` has element type {elem}, which Triton has no data type for")]
    Type {
        field: &'static str,
        name: String,
        elem: String,
    },
    #[error("{field} `{name}` declares no shape")]
    NoShape { field: &'static str, name: String },
    #[error("{field} `{name}` does not start with the `{BATCH}` dim, so Triton cannot batch it (use --max-batch 0)")]
    NoBatch { field: &'static str, name: String },
    #[error("{field} `{name}` has no dims besides the batch")]
    OnlyBatch { field: &'static str, name: String },
}

/// `dims` without the batch dim when batching (it must then be the first dim, symbolic).
fn dims(s: &Signature, field: &'static str, batching: bool) -> Result<String, TritonError> {
    let name = || s.name.clone();
    let Some(shape) = &s.shape else {
        return Err(TritonError::NoShape {
            field,
            name: name(),
        });
    };
    let rest = if batching {
        match shape.first() {
            Some(SigDim::Param(p)) if p == BATCH => &shape[1..],
            _ => {
                return Err(TritonError::NoBatch {
                    field,
                    name: name(),
                })
            }
        }
    } else {
        &shape[..]
    };
    if rest.is_empty() {
        // Triton needs at least one dim; a per-request scalar is `[ 1 ]` with reshape.
        return Err(TritonError::OnlyBatch {
            field,
            name: name(),
        });
    }
    let dims: Vec<String> = rest
        .iter()
        .map(|d| match d {
            SigDim::Value(v) => v.to_string(),
            SigDim::Param(_) | SigDim::Unknown => "-1".to_string(),
        })
        .collect();
    Ok(dims.join(", "))
}
