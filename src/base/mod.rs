//! The leaf every other module may use and that uses no other module of the crate: element
//! types ([`dtype`]), tensor values and declared graph I/O ([`tensor`]), the bytes of an
//! initializer written on demand ([`source`]), files written atomically ([`files`]), what a
//! signal must undo ([`interrupt`]), and command-line value lists generated from the crate's own
//! tables ([`values`]).
//!
//! Keeping these at the bottom is what lets `checkpoint` and `onnx` sit side by side without
//! importing each other: both speak `DataType` and `TensorSource`, neither knows the other.

pub mod dtype;
pub mod files;
pub mod interrupt;
pub mod source;
pub mod tensor;
pub mod values;

pub use dtype::DataType;
pub use source::{SourceError, TensorSource};
pub use tensor::{DimSpec, IoMismatch, IoSpec, Tensor};

/// Asserts what one-line error messages rely on: every cause in `e`'s source chain is shown in
/// the message above it (line breaks aside), so the command line, which appends each cause the
/// line does not already hold, shows the message alone.
#[cfg(test)]
pub(crate) fn assert_causes_show_in_the_message(e: &(dyn std::error::Error + 'static)) {
    let flat = |t: String| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let top = flat(e.to_string());
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = flat(c.to_string());
        assert!(
            top.contains(&text),
            "`{top}` does not show its cause `{text}`"
        );
        cause = c.source();
    }
}
