//! The leaf every other module may use and that uses no other module of the crate: element
//! types ([`dtype`]), tensor values and declared graph I/O ([`tensor`]), the bytes of an
//! initializer written on demand ([`source`]), files written atomically ([`files`]), and
//! command-line value lists generated from the crate's own tables ([`values`]).
//!
//! Keeping these at the bottom is what lets `checkpoint` and `onnx` sit side by side without
//! importing each other: both speak `DataType` and `TensorSource`, neither knows the other.

pub mod dtype;
pub mod files;
pub mod source;
pub mod tensor;
pub mod values;

pub use dtype::DataType;
pub use source::{SourceError, TensorSource};
pub use tensor::{DimSpec, IoMismatch, IoSpec, Tensor};
