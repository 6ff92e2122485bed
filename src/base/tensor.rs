//! Values that cross a runtime's boundary: a [`Tensor`] of one of the element types ImageGPT
//! graphs use (int64 ids and masks, float32 activations and caches, float16 for reduced-precision
//! profiles), and an [`IoSpec`] per graph input and output as the graph file declares it
//! (ONNX `ValueInfoProto`: name, `elem_type`, `dim_value` / `dim_param`).

use std::fmt;

use ndarray::ArrayD;

use super::dtype::DataType;

/// A tensor value fed to or returned by a runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F16(ArrayD<half::f16>),
    I64(ArrayD<i64>),
}

impl Tensor {
    /// Zeros of a float or int64 type (other types as float32).
    pub fn zeros(dtype: DataType, shape: &[usize]) -> Tensor {
        let shape = ndarray::IxDyn(shape);
        match dtype {
            DataType::Float16 => Tensor::F16(ArrayD::from_elem(shape, half::f16::ZERO)),
            DataType::Int64 => Tensor::I64(ArrayD::zeros(shape)),
            _ => Tensor::F32(ArrayD::zeros(shape)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        match self {
            Tensor::F32(_) => DataType::Float32,
            Tensor::F16(_) => DataType::Float16,
            Tensor::I64(_) => DataType::Int64,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F16(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }

    /// The elements in order, little-endian, as ONNX `raw_data` and safetensors hold them.
    pub fn le_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::F16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values as float32, for comparison: float16 widens exactly; int64 is cast (ids and
    /// masks are far below 2^24, where float32 stops being exact).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            Tensor::F16(a) => a.mapv(half::f16::to_f32),
            Tensor::I64(a) => a.mapv(|v| v as f32),
        }
    }

    /// The float32 array, if that is what this is.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// The int64 array, if that is what this is.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::I64(a) => Some(a),
            _ => None,
        }
    }

    /// `int64 [2, 5]`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.dtype(), self.shape())
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(a: ArrayD<f32>) -> Self {
        Tensor::F32(a)
    }
}

impl From<ArrayD<half::f16>> for Tensor {
    fn from(a: ArrayD<half::f16>) -> Self {
        Tensor::F16(a)
    }
}

impl From<ArrayD<i64>> for Tensor {
    fn from(a: ArrayD<i64>) -> Self {
        Tensor::I64(a)
    }
}

/// One dim of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimSpec {
    /// `dim_value`.
    Fixed(usize),
    /// `dim_param`, verbatim: a symbol (`batch`) or an expression (`past_sequence + sequence`).
    Symbol(String),
    /// Neither (or a negative `dim_value`).
    Unknown,
}

impl fmt::Display for DimSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimSpec::Fixed(n) => write!(f, "{n}"),
            DimSpec::Symbol(s) => f.write_str(s),
            DimSpec::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input or output as the graph declares it. `dims` is empty when the graph declares
/// no shape at all (ImageGPT graphs have no scalar inputs, so an empty list means "any rank").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<DimSpec>,
}

impl IoSpec {
    /// `input_ids int64 [batch, sequence]`, for messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(ToString::to_string).collect();
        format!("{} {} [{}]", self.name, self.dtype, dims.join(", "))
    }

    /// Whether `t` has this spec's type, rank and fixed dims; otherwise what differs, naming the
    /// input (ONNX Runtime's own message for a wrong type does not say which input).
    pub fn check(&self, t: &Tensor) -> Result<(), IoMismatch> {
        let rank_ok = self.dims.is_empty() || self.dims.len() == t.shape().len();
        let fixed_ok = rank_ok
            && self
                .dims
                .iter()
                .zip(t.shape())
                .all(|(d, &n)| !matches!(d, DimSpec::Fixed(f) if *f != n));
        if t.dtype() == self.dtype && fixed_ok {
            return Ok(());
        }
        Err(IoMismatch {
            name: self.name.clone(),
            expected: self.describe(),
            found: t.describe(),
        })
    }
}

/// A value that does not fit the graph input it is fed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input `{name}`: expected {expected}, found {found}")]
pub struct IoMismatch {
    pub name: String,
    pub expected: String,
    pub found: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn widening_and_mismatch_messages() {
        let h = Tensor::from(
            ArrayD::from_shape_vec(
                IxDyn(&[2]),
                vec![half::f16::from_f32(0.5), half::f16::from_f32(-2.0)],
            )
            .expect("shape"),
        );
        assert_eq!(h.to_f32().as_slice(), Some(&[0.5f32, -2.0][..]));
        let spec = IoSpec {
            name: "past_key_values.0.key".into(),
            dtype: DataType::Float32,
            dims: vec![
                DimSpec::Symbol("batch".into()),
                DimSpec::Fixed(4),
                DimSpec::Symbol("past_sequence".into()),
                DimSpec::Fixed(8),
            ],
        };
        assert_eq!(
            spec.check(&h)
                .expect_err("dtype and rank differ")
                .to_string(),
            "input `past_key_values.0.key`: expected past_key_values.0.key float32 \
             [batch, 4, past_sequence, 8], found float16 [2]"
        );
        let ok = Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 4, 0, 8])));
        assert!(spec.check(&ok).is_ok());
        let wrong_heads = Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 3, 0, 8])));
        assert!(spec.check(&wrong_heads).is_err());
    }
}
