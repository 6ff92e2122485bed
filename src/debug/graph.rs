//! A graph's nodes as the file holds them, for bisection and reduction: names, ops, edges,
//! the element type of every tensor that can be told, and each node's and initializer's own
//! bytes (so a reduced graph carries them exactly, fields this project does not model
//! included).
//!
//! Tensors are marked as extra graph outputs without re-encoding the model: a protobuf message
//! parsed from two concatenated encodings is their merge, so the file's bytes followed by an
//! encoded `ModelProto { graph { output: [...] } }` are the same model with those outputs added
//! ([`Structure::marked`]). Every ONNX parser (ONNX Runtime, OpenVINO, tract, the `onnx`
//! package) merges so; nothing else in the file is touched.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::onnx::inspect::{InspectError, TensorSkim};

use crate::onnx::proto::{
    data_type, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TypeProto, ValueInfoProto,
};

/// Why a graph's structure could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    #[error(transparent)]
    File(#[from] InspectError),
    #[error("{path}: node {index} (`{name}`) reads `{input}`, which no earlier node, input or initializer gives (nodes are not in topological order)")]
    Order {
        path: String,
        index: usize,
        name: String,
        input: String,
    },
}

/// A model whose graph's nodes and initializers are their encoded bytes: read to bisect, and
/// written as a reduced graph.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ModelRaw {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphRaw>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct GraphRaw {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub node: Vec<Vec<u8>>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub initializer: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One node, in file order (which ONNX requires to be topological).
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Input tensor names; an empty name is an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// The node's own encoding, copied into reduced graphs as it is.
    pub raw: Vec<u8>,
    decoded: NodeProto,
}

impl Node {
    /// `name (OpType)`, or the first output's name where the node has none.
    pub fn label(&self) -> String {
        let name = if self.name.is_empty() {
            self.outputs.first().map_or("?", String::as_str)
        } else {
            &self.name
        };
        format!("{name} ({})", self.op_type)
    }

    fn attribute(&self, name: &str) -> Option<&AttributeProto> {
        self.decoded.attribute.iter().find(|a| a.name == name)
    }
}

/// An initializer: its element type and dims, and its encoding.
#[derive(Debug, Clone)]
pub struct Initializer {
    pub elem_type: i32,
    pub dims: Vec<i64>,
    pub raw: Vec<u8>,
}

/// What a graph file holds, as bisection and reduction read it.
#[derive(Debug, Clone)]
pub struct Structure {
    pub path: PathBuf,
    pub ir_version: i64,
    pub opsets: Vec<OperatorSetIdProto>,
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    pub initializers: HashMap<String, Initializer>,
    /// The element type of every tensor that can be told: declared (inputs, outputs,
    /// `value_info`, initializers) or following from its node's op.
    pub types: HashMap<String, i32>,
    /// The node that writes each tensor.
    pub producer: HashMap<String, usize>,
    /// The files the initializers' external data lives in, relative to the model's folder.
    pub external_files: BTreeSet<String>,
}

impl Structure {
    pub fn read(path: &Path) -> Result<Structure, StructureError> {
        let shown = || path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| InspectError::Read {
            path: shown(),
            source,
        })?;
        let not_onnx = |why: String| InspectError::NotOnnx { path: shown(), why };
        let model = ModelRaw::decode(bytes.as_slice()).map_err(|e| not_onnx(e.to_string()))?;
        let graph = model
            .graph
            .ok_or_else(|| not_onnx("no graph".to_string()))?;
        let mut initializers = HashMap::new();
        for raw in graph.initializer {
            let head = TensorSkim::decode(raw.as_slice()).map_err(|e| not_onnx(e.to_string()))?;
            initializers.insert(
                head.name,
                Initializer {
                    elem_type: head.data_type.unwrap_or(0),
                    dims: head.dims,
                    raw,
                },
            );
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for raw in graph.node {
            let decoded = NodeProto::decode(raw.as_slice()).map_err(|e| not_onnx(e.to_string()))?;
            nodes.push(Node {
                name: decoded.name.clone(),
                op_type: decoded.op_type.clone(),
                domain: decoded.domain.clone(),
                inputs: decoded.input.clone(),
                outputs: decoded.output.clone(),
                raw,
                decoded,
            });
        }
        let inputs: Vec<ValueInfoProto> = graph
            .input
            .into_iter()
            .filter(|i| !initializers.contains_key(&i.name))
            .collect();
        let mut s = Structure {
            path: path.to_path_buf(),
            ir_version: model.ir_version,
            opsets: model.opset_import,
            nodes,
            inputs,
            outputs: graph.output,
            initializers,
            types: HashMap::new(),
            producer: HashMap::new(),
            external_files: BTreeSet::new(),
        };
        s.external_files = s.read_external_files();
        s.link(&graph.value_info)?;
        Ok(s)
    }

    /// Producers, the order check and element types.
    fn link(&mut self, value_info: &[ValueInfoProto]) -> Result<(), StructureError> {
        let mut known: BTreeSet<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        known.extend(self.initializers.keys().map(String::as_str));
        for v in self.inputs.iter().chain(&self.outputs).chain(value_info) {
            if let Some(t) = elem_type_of(v) {
                self.types.insert(v.name.clone(), t);
            }
        }
        for (name, init) in &self.initializers {
            self.types.insert(name.clone(), init.elem_type);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(input) = node
                .inputs
                .iter()
                .find(|n| !n.is_empty() && !known.contains(n.as_str()))
            {
                return Err(StructureError::Order {
                    path: self.path.display().to_string(),
                    index: i,
                    name: node.name.clone(),
                    input: input.clone(),
                });
            }
            for (k, out) in node.outputs.iter().enumerate() {
                if out.is_empty() {
                    continue;
                }
                known.insert(out);
                self.producer.insert(out.clone(), i);
                if !self.types.contains_key(out) {
                    if let Some(t) = infer_type(node, k, &self.types) {
                        self.types.insert(out.clone(), t);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node `target` depends on, itself included.
    pub fn ancestors(&self, target: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![target];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            for input in &self.nodes[n].inputs {
                if let Some(&p) = self.producer.get(input) {
                    stack.push(p);
                }
            }
        }
        seen
    }

    /// Whether `tensor` is a graph input or an initializer (the same in every runtime).
    pub fn is_given(&self, tensor: &str) -> bool {
        self.initializers.contains_key(tensor) || self.inputs.iter().any(|i| i.name == tensor)
    }

    /// The model with `tensors` added as graph outputs (element type declared, shape left to
    /// the runtime), as bytes: the file's own followed by the outputs' merge.
    pub fn marked(&self, tensors: &[String]) -> Result<Vec<u8>, StructureError> {
        let mut bytes = std::fs::read(&self.path).map_err(|source| InspectError::Read {
            path: self.path.display().to_string(),
            source,
        })?;
        let output = tensors
            .iter()
            .filter(|t| !self.outputs.iter().any(|o| &o.name == *t))
            .map(|t| value_info(t, self.types.get(t).copied().unwrap_or(0), None))
            .collect();
        let extra = ModelProto {
            graph: Some(GraphProto {
                output,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Encoding into a Vec grows it; it cannot run out of room.
        extra.encode_raw(&mut bytes);
        Ok(bytes)
    }

    fn read_external_files(&self) -> BTreeSet<String> {
        let mut files = BTreeSet::new();
        for init in self.initializers.values() {
            if let Ok(t) = TensorProto::decode(init.raw.as_slice()) {
                if let Some(e) = t.external_data.iter().find(|e| e.key == "location") {
                    files.insert(e.value.clone());
                }
            }
        }
        files
    }
}

/// Whether a tensor of `elem_type` is marked: float32 and float16, which every runtime gives
/// back as they are. (Integer tensors are shapes and indices: tract folds them into symbolic
/// expressions it cannot hand out, and a difference in one shows in the floats it shapes.)
pub fn markable(elem_type: i32) -> bool {
    matches!(elem_type, data_type::FLOAT | data_type::FLOAT16)
}

/// Whether a tensor of `elem_type` holds measurements (not indices or shapes).
pub fn is_float(elem_type: i32) -> bool {
    matches!(
        elem_type,
        data_type::FLOAT | data_type::FLOAT16 | data_type::BFLOAT16
    )
}

/// A value info with an element type and, when given, fixed dims.
pub fn value_info(name: &str, elem_type: i32, dims: Option<&[usize]>) -> ValueInfoProto {
    use crate::onnx::proto::{tensor_shape_proto, TensorShapeProto};
    let shape = dims.map(|d| TensorShapeProto {
        dim: d
            .iter()
            .map(|&n| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(n as i64)),
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape,
            })),
        }),
        doc_string: String::new(),
    }
}

fn elem_type_of(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.elem_type.filter(|&t| t != 0),
    }
}

/// The element type of output `k` of `node`, from its op and its inputs' types; `None` for an
/// op this does not know (such a tensor is not marked).
fn infer_type(node: &Node, k: usize, types: &HashMap<String, i32>) -> Option<i32> {
    let input = |i: usize| {
        node.inputs
            .get(i)
            .filter(|n| !n.is_empty())
            .and_then(|n| types.get(n).copied())
    };
    let int_attr = |name: &str| node.attribute(name).and_then(|a| a.i).map(|i| i as i32);
    let tensor_attr = |name: &str| node.attribute(name).and_then(|a| a.t.as_ref()?.data_type);
    let op = node.op_type.as_str();
    let ms = node.domain == "com.microsoft";
    match op {
        "Shape" | "Size" | "ArgMax" | "ArgMin" | "NonZero" => Some(data_type::INT64),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Not"
        | "Xor" | "IsNaN" | "IsInf" => Some(data_type::BOOL),
        "Cast" => int_attr("to"),
        "CastLike" => input(1),
        "Constant" => {
            if let Some(t) = tensor_attr("value") {
                Some(t)
            } else if node.attribute("value_float").is_some()
                || node.attribute("value_floats").is_some()
            {
                Some(data_type::FLOAT)
            } else if node.attribute("value_int").is_some()
                || node.attribute("value_ints").is_some()
            {
                Some(data_type::INT64)
            } else {
                None
            }
        }
        "ConstantOfShape" => tensor_attr("value").or(Some(data_type::FLOAT)),
        "QuantizeLinear" => input(2).or(Some(data_type::UINT8)),
        "DequantizeLinear" => input(1),
        "DynamicQuantizeLinear" => match k {
            1 => Some(data_type::FLOAT),
            _ => Some(data_type::UINT8),
        },
        "MatMulInteger" | "ConvInteger" => Some(data_type::INT32),
        "Where" => input(1),
        "TopK" if k == 1 => Some(data_type::INT64),
        "MatMulIntegerToFloat" | "DynamicQuantizeMatMul" if ms => input(2),
        // Ops whose outputs all take the first input's type.
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Exp"
        | "Log" | "Tanh" | "Sigmoid" | "Erf" | "Relu" | "LeakyRelu" | "Gelu" | "Softmax"
        | "LogSoftmax" | "MatMul" | "Gemm" | "Transpose" | "Reshape" | "Flatten" | "Squeeze"
        | "Unsqueeze" | "Concat" | "Split" | "Slice" | "Gather" | "GatherElements" | "GatherND"
        | "Expand" | "Tile" | "Identity" | "ReduceMean" | "ReduceSum" | "ReduceMax"
        | "ReduceMin" | "ReduceProd" | "ReduceL2" | "ReduceSumSquare" | "Max" | "Min" | "Clip"
        | "Trilu" | "CumSum" | "Pad" | "Range" | "Sin" | "Cos" | "Floor" | "Ceil" | "Round"
        | "Sign" | "Mod" | "Einsum" | "Dropout" | "LayerNormalization" | "RMSNormalization"
            if k == 0 || matches!(op, "Split") =>
        {
            input(0)
        }
        "TopK" => input(0),
        "QuickGelu"
        | "FastGelu"
        | "BiasGelu"
        | "SkipLayerNormalization"
        | "SkipSimplifiedLayerNormalization"
        | "SimplifiedLayerNormalization"
        | "MatMulNBits"
        | "MultiHeadAttention"
        | "GroupQueryAttention"
        | "Attention"
        | "RotaryEmbedding"
            if ms || op == "SimplifiedLayerNormalization" =>
        {
            // Their main outputs (and the attention caches) are in the input's type; a
            // normalization's statistics are not modelled.
            let stats = op.contains("LayerNormalization") && (1..3).contains(&k);
            (!stats).then(|| input(0)).flatten()
        }
        _ => None,
    }
}

/// A model scope from a tensor or node name: `block h.2 mlp` for `h.2.mlp.c_fc.out` (this
/// project's names) or `/transformer/h.2/mlp/c_fc/MatMul` (torch's), else the leading
/// segment (`wte`, `ln_f`, `lm_head`), else empty.
pub fn scope(name: &str) -> String {
    let parts: Vec<&str> = name.split(['.', '/']).filter(|p| !p.is_empty()).collect();
    let is_index = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    for i in 0..parts.len() {
        let (index, rest) = match parts[i] {
            "h" => match parts.get(i + 1) {
                Some(n) if is_index(n) => (*n, i + 2),
                _ => continue,
            },
            p => match p.strip_prefix("h_") {
                Some(n) if is_index(n) => (n, i + 1),
                _ => continue,
            },
        };
        return match parts.get(rest).copied() {
            Some(p @ ("attn" | "mlp" | "ln_1" | "ln_2")) => format!("block h.{index} {p}"),
            _ => format!("block h.{index}"),
        };
    }
    match parts.iter().find(|p| **p != "transformer") {
        Some(p) if parts.len() > 1 && !p.starts_with(char::is_uppercase) => p.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::scope;

    #[test]
    fn scopes_of_this_projects_and_torchs_names() {
        assert_eq!(scope("h.2.mlp.c_fc.out"), "block h.2 mlp");
        assert_eq!(scope("h.11.attn.softmax"), "block h.11 attn");
        assert_eq!(scope("h.0.ln_1.square"), "block h.0 ln_1");
        assert_eq!(scope("h.3.residual"), "block h.3");
        assert_eq!(scope("/transformer/h.2/mlp/c_fc/MatMul"), "block h.2 mlp");
        assert_eq!(scope("/transformer/h_7/attn/Softmax"), "block h.7 attn");
        assert_eq!(scope("ln_f.out"), "ln_f");
        assert_eq!(scope("/transformer/wte/Gather"), "wte");
        assert_eq!(scope("lm_head.logits"), "lm_head");
        assert_eq!(scope("Add_12"), "");
    }
}
