//! ONNX model construction: protobuf messages ([`proto`]), a graph builder with scoped names and
//! typed op constants ([`builder`]), the opsets and IR versions ([`opset`]) and the forms ops
//! take in each opset ([`forms`]), and a streaming, atomic writer ([`writer`]).
//! Spec: <https://onnx.ai/onnx/repo-docs/IR.html>.

pub mod builder;
pub mod forms;
pub mod inspect;
pub mod opset;
pub mod proto;
pub mod writer;

/// Element types live in the leaf module; re-exported where graphs are built.
pub use crate::base::dtype::{self, DataType};
pub use builder::{Dim, Domain, GraphBuilder, Initializer, Op, Scope};
