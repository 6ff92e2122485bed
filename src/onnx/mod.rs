//! ONNX model construction: protobuf messages ([`proto`]), a graph builder with scoped names and
//! typed op constants ([`builder`]), and a streaming, atomic writer ([`writer`]).
//! Spec: <https://onnx.ai/onnx/repo-docs/IR.html>.

pub mod builder;
pub mod dtype;
pub mod inspect;
pub mod proto;
pub mod writer;

pub use builder::{Dim, Domain, GraphBuilder, Initializer, Op, Scope};
pub use dtype::DataType;
