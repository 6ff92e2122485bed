//! Graph builder: nodes, initializers and I/O with names derived from scoped prefixes, so the
//! graph reads like the checkpoint (`h.3.attn.qkv`). Op types live in one enum.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Display;

use super::opset::DEFAULT_OPSET;
use super::proto::{
    attribute_type, tensor_shape_proto, type_proto, AttributeProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::DataType;
use crate::base::TensorSource;

/// An operator domain (`NodeProto.domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// The standard ONNX ops (`ai.onnx`, written as the empty string).
    Onnx,
    /// ONNX Runtime's contrib ops.
    Microsoft,
}

impl Domain {
    /// The domain string as written in nodes and `opset_import`.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Onnx => "",
            Domain::Microsoft => "com.microsoft",
        }
    }
}

/// The ops this project emits: standard ones (an op whose signature changed between opsets is
/// emitted in the builder's opset's form: `opset.rs`), and the runtime specific ones a profile
/// may choose, each with its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Cast,
    Concat,
    CumSum,
    DequantizeLinear,
    Div,
    DynamicQuantizeLinear,
    Expand,
    Gather,
    Identity,
    MatMul,
    MatMulInteger,
    Max,
    Min,
    Mul,
    Pad,
    QuantizeLinear,
    ReduceMean,
    Reshape,
    Shape,
    Sigmoid,
    Slice,
    Softmax,
    Split,
    Sqrt,
    Sub,
    Transpose,
    Unsqueeze,
    Where,
    // ONNX Runtime fused ops (docs/design.md §8). `SimplifiedLayerNormalization` is registered in
    // the default domain (opset 1), the rest in `com.microsoft`.
    SimplifiedLayerNormalization,
    SkipSimplifiedLayerNormalization,
    QuickGelu,
    MultiHeadAttention,
    GroupQueryAttention,
    MatMulNBits,
    DynamicQuantizeMatMul,
}

impl Op {
    /// The domain the op belongs to.
    pub fn domain(self) -> Domain {
        match self {
            Op::SkipSimplifiedLayerNormalization
            | Op::QuickGelu
            | Op::MultiHeadAttention
            | Op::GroupQueryAttention
            | Op::MatMulNBits
            | Op::DynamicQuantizeMatMul => Domain::Microsoft,
            _ => Domain::Onnx,
        }
    }

    /// The ONNX `op_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "Add",
            Op::Cast => "Cast",
            Op::Concat => "Concat",
            Op::CumSum => "CumSum",
            Op::DequantizeLinear => "DequantizeLinear",
            Op::Div => "Div",
            Op::DynamicQuantizeLinear => "DynamicQuantizeLinear",
            Op::Expand => "Expand",
            Op::Gather => "Gather",
            Op::Identity => "Identity",
            Op::MatMul => "MatMul",
            Op::MatMulInteger => "MatMulInteger",
            Op::Max => "Max",
            Op::Min => "Min",
            Op::Mul => "Mul",
            Op::Pad => "Pad",
            Op::QuantizeLinear => "QuantizeLinear",
            Op::ReduceMean => "ReduceMean",
            Op::Reshape => "Reshape",
            Op::Shape => "Shape",
            Op::Sigmoid => "Sigmoid",
            Op::Slice => "Slice",
            Op::Softmax => "Softmax",
            Op::Split => "Split",
            Op::Sqrt => "Sqrt",
            Op::Sub => "Sub",
            Op::Transpose => "Transpose",
            Op::Unsqueeze => "Unsqueeze",
            Op::Where => "Where",
            Op::SimplifiedLayerNormalization => "SimplifiedLayerNormalization",
            Op::SkipSimplifiedLayerNormalization => "SkipSimplifiedLayerNormalization",
            Op::QuickGelu => "QuickGelu",
            Op::MultiHeadAttention => "MultiHeadAttention",
            Op::GroupQueryAttention => "GroupQueryAttention",
            Op::MatMulNBits => "MatMulNBits",
            Op::DynamicQuantizeMatMul => "DynamicQuantizeMatMul",
        }
    }
}

/// A hierarchical name prefix: `Scope::root("h").pp(3).pp("attn").name("qkv")` is
/// `h.3.attn.qkv`. Each segment is written once.
#[derive(Debug, Clone)]
pub struct Scope(String);

impl Scope {
    /// A top-level scope.
    pub fn root(name: impl Display) -> Self {
        Scope(name.to_string())
    }

    /// A child scope.
    pub fn pp(&self, seg: impl Display) -> Self {
        Scope(format!("{}.{seg}", self.0))
    }

    /// A value or node name inside this scope.
    pub fn name(&self, leaf: impl Display) -> String {
        format!("{}.{leaf}", self.0)
    }

    /// The scope's own name.
    pub fn path(&self) -> &str {
        &self.0
    }
}

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(usize),
    Symbol(&'static str),
}

/// One initializer: name, type and shape; its bytes come from a [`TensorSource`] when the
/// model is written, so the builder never holds weight data.
#[derive(Debug)]
pub struct Initializer<'w> {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<usize>,
    pub data: Box<dyn TensorSource + 'w>,
}

impl Initializer<'_> {
    /// Number of data bytes the type and shape call for (`None` on overflow).
    pub fn byte_len(&self) -> Option<u64> {
        let numel = self
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        self.dtype.byte_len(numel)
    }

    /// The TensorProto without its data.
    pub fn header(&self) -> TensorProto {
        TensorProto {
            dims: self.dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.dtype.onnx()),
            name: self.name.clone(),
            ..Default::default()
        }
    }
}

/// Collects a graph. Names must be unique; a repeated name is a bug in the emitter.
#[derive(Debug)]
pub struct GraphBuilder<'w> {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<Initializer<'w>>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    /// Domains the nodes use, for the model's `opset_import`.
    pub domains: BTreeSet<Domain>,
    /// The default-domain opset the graph imports: the form of the ops whose signature changed
    /// follows it.
    pub opset: i64,
    /// The node op with the highest [`Op::since`]: what the graph needs of its opset.
    pub needs: Option<Op>,
    names: HashSet<String>,
}

impl Default for GraphBuilder<'_> {
    fn default() -> Self {
        Self::with_opset(DEFAULT_OPSET)
    }
}

impl<'w> GraphBuilder<'w> {
    /// An empty graph for default-domain `opset`.
    pub fn with_opset(opset: i64) -> Self {
        GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            domains: BTreeSet::new(),
            opset,
            needs: None,
            names: HashSet::new(),
        }
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DataType, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, dtype, dims));
        name.to_string()
    }

    /// Declares a graph output (an existing value).
    pub fn output(&mut self, name: &str, dtype: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(name, dtype, dims));
    }

    /// Adds a single-output node whose output value shares the node's name.
    pub fn op(
        &mut self,
        op: Op,
        name: impl Into<String>,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let name = name.into();
        self.op_multi(op, &name, inputs, std::slice::from_ref(&name), attrs);
        name
    }

    /// Adds a node with several outputs.
    pub fn op_multi(
        &mut self,
        op: Op,
        name: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<AttributeProto>,
    ) {
        debug_assert!(self.names.insert(name.to_string()), "duplicate node {name}");
        self.domains.insert(op.domain());
        if self.needs.is_none_or(|n| op.since() > n.since()) {
            self.needs = Some(op);
        }
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: name.to_string(),
            op_type: op.as_str().to_string(),
            domain: op.domain().as_str().to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// An initializer whose bytes a source writes when the model is written.
    pub fn initializer(
        &mut self,
        name: &str,
        dtype: DataType,
        dims: &[usize],
        data: Box<dyn TensorSource + 'w>,
    ) -> String {
        self.initializers.push(Initializer {
            name: name.to_string(),
            dtype,
            dims: dims.to_vec(),
            data,
        });
        name.to_string()
    }

    /// A float32 initializer from values computed at export time.
    pub fn const_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.const_float(name, DataType::Float32, dims, values)
    }

    /// A float initializer from float32 values computed at export time: float16 (rounded to
    /// nearest) when `dtype` is float16, else float32.
    pub fn const_float(
        &mut self,
        name: &str,
        dtype: DataType,
        dims: &[usize],
        values: &[f32],
    ) -> String {
        let (dtype, bytes) = match dtype {
            DataType::Float16 => (
                dtype,
                values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
            _ => (
                DataType::Float32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        self.constant(name, dtype, dims, bytes)
    }

    /// An int64 initializer; `dims` empty makes a scalar.
    pub fn const_i64(&mut self, name: &str, dims: &[usize], values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DataType::Int64, dims, bytes)
    }

    /// An 8-bit integer initializer (`Int8` or `UInt8`, one byte per element): zero points.
    /// Values outside the type's range saturate.
    pub fn const_8bit(
        &mut self,
        name: &str,
        dtype: DataType,
        dims: &[usize],
        values: &[i32],
    ) -> String {
        let bytes = values
            .iter()
            .map(|&v| match dtype {
                DataType::UInt8 => v.clamp(0, 255) as u8,
                _ => v.clamp(-128, 127) as i8 as u8,
            })
            .collect();
        let dtype = match dtype {
            DataType::UInt8 => dtype,
            _ => DataType::Int8,
        };
        self.constant(name, dtype, dims, bytes)
    }

    /// A bool initializer (one byte per element, 0 or 1).
    pub fn const_bool(&mut self, name: &str, dims: &[usize], values: Vec<u8>) -> String {
        self.constant(name, DataType::Bool, dims, values)
    }

    fn constant(&mut self, name: &str, dtype: DataType, dims: &[usize], bytes: Vec<u8>) -> String {
        // Shared constants (axes, shapes) are requested by every layer: emit each once.
        if self.initializers.iter().any(|i| i.name == name) {
            return name.to_string();
        }
        self.initializer(name, dtype, dims, Box::new(bytes))
    }
}

fn value_info(name: &str, dtype: DataType, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => Value::DimValue(*v as i64),
                Dim::Symbol(s) => Value::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.onnx()),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// An INT attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: Some(attribute_type::INT),
        i: Some(v),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: Some(attribute_type::FLOAT),
        f: Some(v),
        ..Default::default()
    }
}

/// An INTS attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: Some(attribute_type::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}
