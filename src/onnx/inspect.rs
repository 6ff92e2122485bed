//! Reads a model's structure without its weights: I/O signature, ops, initializer metadata and
//! `metadata_props`. Decodes over a memory map with message types that leave tensor data out,
//! so prost skips those bytes and a multi-GB model costs almost nothing to inspect.
//!
//! The file is untrusted: every size read from it goes through [`DataType::byte_len`] /
//! [`dtype::numel`], and a size that overflows or is negative is an error naming the tensor.
//! Spec: <https://onnx.ai/onnx/repo-docs/IR.html> (`ModelProto`, `ValueInfoProto`, `TensorProto`).

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

use super::proto::{
    tensor_shape_proto::dimension, type_proto, StringStringEntryProto, ValueInfoProto,
};
use crate::base::dtype::{self, DataType};

#[derive(Clone, PartialEq, prost::Message)]
struct ModelSkim {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<super::proto::OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphSkim>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GraphSkim {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeSkim>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorSkim>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NodeSkim {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeSkim>,
}

/// An AttributeProto's name and integers (all a structural check needs; tensors and strings
/// are skipped undecoded).
#[derive(Clone, PartialEq, prost::Message)]
struct AttributeSkim {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, optional, tag = "3")]
    i: Option<i64>,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
}

/// A TensorProto without its data fields.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorSkim {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

/// One declared dim of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigDim {
    /// `dim_value`.
    Value(i64),
    /// `dim_param` (a symbol or an expression).
    Param(String),
    /// Neither.
    Unknown,
}

impl std::fmt::Display for SigDim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigDim::Value(v) => write!(f, "{v}"),
            SigDim::Param(p) => f.write_str(p),
            SigDim::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input or output: name, element type and declared dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    /// The `TensorProto.DataType` code (0 when the value is not a tensor or declares none).
    pub elem_code: i32,
    /// The element type's readable name ([`DataType::describe`]), or `unknown` for a non-tensor.
    pub elem_type: String,
    /// `None` when the graph declares no shape (any rank).
    pub shape: Option<Vec<SigDim>>,
}

impl Signature {
    /// The element type, when this project knows it.
    pub fn dtype(&self) -> Option<DataType> {
        DataType::from_onnx(self.elem_code)
    }

    /// The declared dims (none when no shape is declared).
    pub fn dims(&self) -> &[SigDim] {
        self.shape.as_deref().unwrap_or_default()
    }

    fn dims_text(&self) -> String {
        let dims: Vec<String> = self.dims().iter().map(ToString::to_string).collect();
        dims.join(", ")
    }
}

/// One op type as the graph uses it, with what a runtime's support for it can depend on: which
/// of its inputs are given and its integer attributes (each distinct use once).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpUse {
    /// The node's domain, `ai.onnx` for the default one.
    pub domain: String,
    pub op_type: String,
    /// The positions of the inputs given (not empty).
    pub inputs: Vec<usize>,
    /// Integer attributes, by name.
    pub ints: Vec<(String, i64)>,
}

impl OpUse {
    /// Whether input `position` is given.
    pub fn has_input(&self, position: usize) -> bool {
        self.inputs.contains(&position)
    }

    /// Integer attribute `name`, if set.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.ints.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

/// What a model file holds, apart from weight values.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub ir_version: i64,
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub inputs: Vec<Signature>,
    pub outputs: Vec<Signature>,
    /// `op_type` (with `domain:` prefix outside the default domain) → count.
    pub ops: BTreeMap<String, usize>,
    /// Every distinct use of an op (domain, type, inputs given, integer attributes), sorted.
    pub uses: Vec<OpUse>,
    pub initializers: usize,
    pub initializer_bytes: u64,
    pub external_initializers: usize,
    pub metadata: BTreeMap<String, String>,
    /// Nodes that break the ONNX spec in a way a runtime does not survive (tract allocates
    /// without bound on a Transpose `perm` with a repeated axis), one line each.
    pub malformed: Vec<String>,
}

/// Why a file could not be inspected, naming it.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ONNX model ({why})")]
    NotOnnx { path: String, why: String },
    #[error(
        "{path}: initializer `{tensor}` has dims {dims:?}, whose size is negative or overflows"
    )]
    Size {
        path: String,
        tensor: String,
        dims: Vec<i64>,
    },
    #[error("{path}: initializer `{tensor}` takes the total initializer size past 2^64 bytes")]
    Total { path: String, tensor: String },
}

/// Reads `path`'s structure; any decode failure is "not an ONNX model".
pub fn inspect(path: &Path) -> Result<ModelInfo, InspectError> {
    let shown = || path.display().to_string();
    let read = |source| InspectError::Read {
        path: shown(),
        source,
    };
    let not_onnx = |why: String| InspectError::NotOnnx { path: shown(), why };
    let file = std::fs::File::open(path).map_err(read)?;
    // SAFETY: read-only map, used only inside this function for decoding; prost bounds-checks.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read)?;
    let m = ModelSkim::decode(&map[..])
        .map_err(|e| not_onnx(format!("protobuf decode failed: {e}")))?;
    let Some(g) = m.graph else {
        return Err(not_onnx("no graph".into()));
    };
    if m.ir_version == 0 {
        return Err(not_onnx("no ir_version".into()));
    }
    let mut ops = BTreeMap::new();
    let mut uses = std::collections::BTreeSet::new();
    for n in &g.node {
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        let key = if default_domain {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *ops.entry(key).or_insert(0) += 1;
        uses.insert(OpUse {
            domain: if default_domain { "ai.onnx" } else { &n.domain }.to_string(),
            op_type: n.op_type.clone(),
            inputs: (0..n.input.len())
                .filter(|&i| !n.input[i].is_empty())
                .collect(),
            ints: n
                .attribute
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.i?)))
                .collect(),
        });
    }
    let malformed = g.node.iter().filter_map(malformed).collect();
    let initializer_bytes = initializer_bytes(&g.initializer).map_err(|(t, total)| {
        let (path, tensor) = (shown(), t.name.clone());
        if total {
            InspectError::Total { path, tensor }
        } else {
            InspectError::Size {
                path,
                tensor,
                dims: t.dims.clone(),
            }
        }
    })?;
    Ok(ModelInfo {
        ir_version: m.ir_version,
        opsets: m
            .opset_import
            .iter()
            .map(|o| (o.domain.clone(), o.version))
            .collect(),
        producer: m.producer_name,
        inputs: g.input.iter().map(signature).collect(),
        outputs: g.output.iter().map(signature).collect(),
        ops,
        uses: uses.into_iter().collect(),
        initializers: g.initializer.len(),
        initializer_bytes,
        external_initializers: g
            .initializer
            .iter()
            .filter(|t| t.data_location == Some(1))
            .count(),
        metadata: m
            .metadata_props
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect(),
        malformed,
    })
}

/// What is wrong with `n`, if anything this check knows: a Transpose `perm` must be a
/// permutation of `0..len` (ONNX operator spec).
fn malformed(n: &NodeSkim) -> Option<String> {
    if n.op_type != "Transpose" || !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return None;
    }
    let perm = &n.attribute.iter().find(|a| a.name == "perm")?.ints;
    let mut seen = vec![false; perm.len()];
    let ok = perm.iter().all(|&p| {
        let slot = usize::try_from(p).ok().and_then(|p| seen.get_mut(p));
        slot.is_some_and(|s| !std::mem::replace(s, true))
    });
    (!ok).then(|| {
        format!(
            "node `{}` (Transpose): perm {perm:?} is not a permutation of 0..{}",
            n.name,
            perm.len()
        )
    })
}

/// Bytes the initializers declare (types this project cannot size count as 0): a negative or
/// overflowing size is an error naming the tensor, never a wrapped number.
/// On error, the tensor and whether it was the running total that overflowed.
fn initializer_bytes(inits: &[TensorSkim]) -> Result<u64, (&TensorSkim, bool)> {
    let mut total = 0u64;
    for t in inits {
        let Some(dt) = t.data_type.and_then(DataType::from_onnx) else {
            continue;
        };
        let bytes = dtype::numel(&t.dims)
            .and_then(|n| dt.byte_len(n))
            .ok_or((t, false))?;
        total = total.checked_add(bytes).ok_or((t, true))?;
    }
    Ok(total)
}

fn signature(v: &ValueInfoProto) -> Signature {
    let (elem_code, elem_type, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let code = t.elem_type.unwrap_or(0);
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => SigDim::Value(*v),
                        Some(dimension::Value::DimParam(p)) => SigDim::Param(p.clone()),
                        None => SigDim::Unknown,
                    })
                    .collect()
            });
            (code, DataType::describe(code), shape)
        }
        None => (0, "unknown".into(), None),
    };
    Signature {
        name: v.name.clone(),
        elem_code,
        elem_type,
        shape,
    }
}

impl ModelInfo {
    /// A readable summary: I/O signature, op histogram, initializer count and bytes, metadata.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let opsets: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        s += &format!(
            "ir_version: {}\nopsets: {}\nproducer: {}\n",
            self.ir_version,
            opsets.join(", "),
            self.producer
        );
        s += "inputs:\n";
        for i in &self.inputs {
            s += &format!("  {} {} [{}]\n", i.name, i.elem_type, i.dims_text());
        }
        s += "outputs:\n";
        for o in &self.outputs {
            s += &format!("  {} {} [{}]\n", o.name, o.elem_type, o.dims_text());
        }
        let total: usize = self.ops.values().sum();
        s += &format!("nodes: {total}\n");
        for (op, n) in &self.ops {
            s += &format!("  {op:<12} {n}\n");
        }
        s += &format!(
            "initializers: {} ({} bytes, {} external)\n",
            self.initializers, self.initializer_bytes, self.external_initializers
        );
        s += "metadata:\n";
        for (k, v) in &self.metadata {
            s += &format!("  {k}: {v}\n");
        }
        if !self.malformed.is_empty() {
            s += "malformed:\n";
            for m in &self.malformed {
                s += &format!("  {m}\n");
            }
        }
        s
    }
}
