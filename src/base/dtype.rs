//! Element types: one enum for the ONNX `TensorProto.DataType` codes this project writes or
//! reads, with each type's bit width in one place (framing, inspection and runtimes all size
//! tensors through [`DataType::byte_len`]).
//! Spec: <https://onnx.ai/onnx/api/mapping.html> (`TensorProto.DataType`).

use std::fmt;

/// An element type, by its ONNX meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Float32,
    Float16,
    BFloat16,
    Float64,
    Int64,
    Int32,
    Int16,
    Int8,
    UInt8,
    Bool,
    /// Packed 4-bit unsigned (two per byte), as `MatMulNBits` stores weights.
    UInt4,
}

impl DataType {
    /// Every type, for lookups.
    pub const ALL: [DataType; 11] = [
        DataType::Float32,
        DataType::Float16,
        DataType::BFloat16,
        DataType::Float64,
        DataType::Int64,
        DataType::Int32,
        DataType::Int16,
        DataType::Int8,
        DataType::UInt8,
        DataType::Bool,
        DataType::UInt4,
    ];

    /// The `TensorProto.DataType` code.
    pub fn onnx(self) -> i32 {
        match self {
            DataType::Float32 => 1,
            DataType::UInt8 => 2,
            DataType::Int8 => 3,
            DataType::Int16 => 5,
            DataType::Int32 => 6,
            DataType::Int64 => 7,
            DataType::Bool => 9,
            DataType::Float16 => 10,
            DataType::Float64 => 11,
            DataType::BFloat16 => 16,
            DataType::UInt4 => 21,
        }
    }

    /// The type with this `TensorProto.DataType` code, if this project knows it.
    pub fn from_onnx(code: i32) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.onnx() == code)
    }

    /// Bits per element.
    pub fn bits(self) -> u64 {
        match self {
            DataType::Float64 | DataType::Int64 => 64,
            DataType::Float32 | DataType::Int32 => 32,
            DataType::Float16 | DataType::BFloat16 | DataType::Int16 => 16,
            DataType::Int8 | DataType::UInt8 | DataType::Bool => 8,
            DataType::UInt4 => 4,
        }
    }

    /// Bytes for `numel` elements (sub-byte types round up), or `None` on overflow: sizes read
    /// from files are untrusted.
    pub fn byte_len(self, numel: u64) -> Option<u64> {
        numel.checked_mul(self.bits()).map(|b| b.div_ceil(8))
    }

    /// The readable name used in reports, summaries and errors (`float32`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Float32 => "float32",
            DataType::Float16 => "float16",
            DataType::BFloat16 => "bfloat16",
            DataType::Float64 => "float64",
            DataType::Int64 => "int64",
            DataType::Int32 => "int32",
            DataType::Int16 => "int16",
            DataType::Int8 => "int8",
            DataType::UInt8 => "uint8",
            DataType::Bool => "bool",
            DataType::UInt4 => "uint4",
        }
    }

    /// A name for any code, known or not (`data type 42`), for messages about foreign files.
    pub fn describe(code: i32) -> String {
        DataType::from_onnx(code).map_or_else(|| format!("data type {code}"), |t| t.name().into())
    }
}

/// A safetensors element type as messages spell types (`float64`, as [`DataType::name`]); a type
/// with no ONNX counterpart keeps safetensors' own name, lower-cased (`u16`).
pub fn safetensors_name(d: safetensors::Dtype) -> String {
    use safetensors::Dtype as D;
    let known = match d {
        D::F32 => DataType::Float32,
        D::F16 => DataType::Float16,
        D::BF16 => DataType::BFloat16,
        D::F64 => DataType::Float64,
        D::I64 => DataType::Int64,
        D::I32 => DataType::Int32,
        D::I16 => DataType::Int16,
        D::I8 => DataType::Int8,
        D::U8 => DataType::UInt8,
        D::BOOL => DataType::Bool,
        other => return format!("{other:?}").to_lowercase(),
    };
    known.name().to_string()
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Elements of a shape read from a file, or `None` when a dim is negative or the product
/// overflows.
pub fn numel(dims: &[i64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_widths_are_right() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_onnx(t.onnx()), Some(t));
        }
        assert_eq!(DataType::Float16.byte_len(3), Some(6));
        assert_eq!(DataType::UInt4.byte_len(3), Some(2));
        assert_eq!(DataType::Int64.byte_len(u64::MAX / 4), None);
        assert_eq!(DataType::describe(42), "data type 42");
        assert_eq!(safetensors_name(safetensors::Dtype::F64), "float64");
        assert_eq!(safetensors_name(safetensors::Dtype::U16), "u16");
    }

    #[test]
    fn hostile_shapes_do_not_overflow() {
        assert_eq!(numel(&[1 << 40, 1 << 40]), None);
        assert_eq!(numel(&[-1, 4]), None);
        assert_eq!(numel(&[]), Some(1));
        assert_eq!(numel(&[3, 0]), Some(0));
    }
}
