//! A graph in an ONNX Runtime session and the values that cross into and out of it: inputs in
//! standard layout, outputs in our types, run errors naming the graph, and the nodes each
//! execution provider ran.

use std::collections::BTreeMap;

use ndarray::{ArrayD, CowArray, IxDyn};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorRef};

use crate::base::{IoSpec, Tensor};
use crate::runtime::model::{Failure, RuntimeError, RuntimeKind};

/// A session and what it runs on.
pub(super) struct OrtModel {
    pub(super) kind: RuntimeKind,
    pub(super) file: String,
    pub(super) session: Session,
    pub(super) provider: String,
    pub(super) spin: bool,
    pub(super) inputs: Vec<IoSpec>,
    pub(super) outputs: Vec<IoSpec>,
    /// Whether the decoder can keep its cache in preallocated buffers written in place.
    pub(super) shared_cache: bool,
    /// Positions [`LoadedModel::reserve_cache`] asked for, until the next empty session.
    pub(super) reserved: Option<usize>,
    /// With node counting: the profile's folder, and the counts once profiling has ended.
    pub(super) profile: Option<(tempfile::TempDir, Option<BTreeMap<String, usize>>)>,
}

/// An input in standard layout: borrowed when the caller's array already is (ONNX Runtime reads
/// it in place), copied otherwise.
pub(super) enum Contiguous<'a> {
    F32(CowArray<'a, f32, IxDyn>),
    F16(CowArray<'a, half::f16, IxDyn>),
    I64(CowArray<'a, i64, IxDyn>),
}

impl<'a> Contiguous<'a> {
    pub(super) fn of(t: &'a Tensor) -> Self {
        match t {
            Tensor::F32(a) => Contiguous::F32(a.as_standard_layout()),
            Tensor::F16(a) => Contiguous::F16(a.as_standard_layout()),
            Tensor::I64(a) => Contiguous::I64(a.as_standard_layout()),
        }
    }

    pub(super) fn value(&self) -> ort::Result<SessionInputValue<'_>> {
        Ok(match self {
            Contiguous::F32(a) => TensorRef::from_array_view(a)?.into(),
            Contiguous::F16(a) => TensorRef::from_array_view(a)?.into(),
            Contiguous::I64(a) => TensorRef::from_array_view(a)?.into(),
        })
    }
}

/// An output in its own type; other numeric types are cast to float32 so verify can report a
/// dtype mismatch with its numbers instead of a failed run.
pub(super) fn output_tensor(value: &DynValue) -> Result<Tensor, Failure> {
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
pub(super) fn count_nodes(profile: &str) -> BTreeMap<String, usize> {
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
    pub(super) fn run_error(&self, reason: impl Into<Failure>) -> RuntimeError {
        run_error(self.kind, &self.file, reason.into())
    }
}

pub(super) fn run_error(kind: RuntimeKind, file: &str, reason: Failure) -> RuntimeError {
    RuntimeError::Run {
        runtime: kind.name().into(),
        source: reason.at(file).into(),
    }
}
