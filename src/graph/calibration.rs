//! What static int8 (QDQ, [`MatMulForm::QuantDequant`]) takes from a calibration set: the
//! range each block matrix's input reached when the float32 graph ran over the set, keyed by
//! the matrix's name (`h.3.mlp.c_proj`), and the record the export card keeps of where those
//! ranges came from (the set's sha256, the method). Collecting them needs a runtime and lives
//! above this layer (`crate::calibrate`); this file is the contract between the two and the
//! arithmetic that turns a range into a `QuantizeLinear` scale and zero point (ONNX
//! `QuantizeLinear`: `y = saturate(round(x / scale) + zero_point)`).
//!
//! [`MatMulForm::QuantDequant`]: super::profile::MatMulForm::QuantDequant

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::values::Choice;
use crate::base::DataType;

/// How a matrix input's range is read from the values it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CalibrationMethod {
    /// The smallest and largest value seen: nothing clips, a rare outlier widens the scale.
    MinMax,
    /// The values at a percentile of each tail (99.99 by default): the rarest outliers clip,
    /// the rest keeps a finer scale.
    #[default]
    Percentile,
}

impl Choice for CalibrationMethod {
    const WHAT: &'static str = "calibration method";

    fn all() -> Vec<Self> {
        vec![CalibrationMethod::MinMax, CalibrationMethod::Percentile]
    }

    fn name(self) -> &'static str {
        match self {
            CalibrationMethod::MinMax => "minmax",
            CalibrationMethod::Percentile => "percentile",
        }
    }
}

/// The percentile [`CalibrationMethod::Percentile`] reads when none is given.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// Where a graph's activation ranges came from, as its export card records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// sha256 of the calibration set: of the token-id file, or over a folder's image files
    /// (each file's name and bytes, in name order).
    pub sha256: String,
    /// `minmax` or `percentile`.
    pub method: String,
    /// The percentile read, for `percentile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Sequences and tokens the float32 graph ran over.
    pub examples: usize,
    pub tokens: usize,
}

/// The range of one matrix input: the lowest and highest value the method kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
}

/// Activation ranges of every block matrix, and their record.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub record: CalibrationRecord,
    /// Matrix name (the Conv1D's scope, `h.0.attn.c_attn`) → its input's range.
    pub ranges: BTreeMap<String, Range>,
}

/// A `QuantizeLinear` / `DequantizeLinear` pair's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    /// In the quantised type's range: 0 for int8 (symmetric), `0..=255` for uint8.
    pub zero_point: i32,
}

impl Range {
    /// The scale and zero point that map this range onto `dtype`: int8 symmetric around 0
    /// (`max(|lo|, |hi|) / 127`, zero point 0: the form TensorRT and OpenVINO's int8 kernels
    /// take), uint8 asymmetric over `[min(lo, 0), max(hi, 0)]` (so 0 is exact). An empty or
    /// zero range gets scale 1.
    pub fn quant_params(self, dtype: DataType) -> QuantParams {
        let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
        let (lo, hi) = (finite(self.lo).min(0.0), finite(self.hi).max(0.0));
        let nonzero = |s: f32| if s > 0.0 && s.is_finite() { s } else { 1.0 };
        match dtype {
            DataType::UInt8 => {
                let scale = nonzero((hi - lo) / 255.0);
                let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as i32;
                QuantParams { scale, zero_point }
            }
            _ => QuantParams {
                scale: nonzero(hi.max(-lo) / 127.0),
                zero_point: 0,
            },
        }
    }
}

/// Prefix of the extra outputs a calibration graph exposes: `matrix_input.<matrix>` is the
/// input of the matrix `<matrix>` ([`super::GraphOptions::matrix_inputs`]).
pub const MATRIX_INPUT_PREFIX: &str = "matrix_input.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_int8_symmetric_and_uint8_asymmetric_grids() {
        let r = Range { lo: -2.54, hi: 1.0 };
        let q = r.quant_params(DataType::Int8);
        assert!((q.scale - 0.02).abs() < 1e-7 && q.zero_point == 0, "{q:?}");
        let q = r.quant_params(DataType::UInt8);
        assert!((q.scale - 3.54 / 255.0).abs() < 1e-7, "{q:?}");
        // -lo / scale = 2.54 / (3.54 / 255) = 182.97...
        assert_eq!(q.zero_point, 183);
        // All positive: 0 stays in the range, so its zero point is 0.
        let q = Range { lo: 0.5, hi: 2.55 }.quant_params(DataType::UInt8);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 0.01).abs() < 1e-7);
        let zero = Range { lo: 0.0, hi: 0.0 };
        assert_eq!(zero.quant_params(DataType::Int8).scale, 1.0);
        let nan = Range {
            lo: f32::NAN,
            hi: f32::INFINITY,
        };
        assert_eq!(nan.quant_params(DataType::Int8).scale, 1.0);
    }
}
