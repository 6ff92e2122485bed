//! What every emitter works with ([`Ctx`]): the graph being built, the checkpoint, the profile
//! and precision rows, and whether the trunk has a past (the decoder); and how a checkpoint
//! weight or a constant becomes an initializer in that precision.

use super::calibration::Calibration;
use super::io::DecoderIo;
use super::keep::KeepFloat32;
use super::profile::{MatMulForm, PrecisionSpec, ProfileSpec};
use crate::base::{DataType, TensorSource};
use crate::checkpoint::source::{Float16, Float32};
use crate::checkpoint::Checkpoint;
use crate::onnx::builder::attr_int;
use crate::onnx::{GraphBuilder, Op, Scope};

/// What every emitter works with: the graph being built, the checkpoint, the profile, the
/// precision and the matrices kept float32 in it, and whether the trunk has a past (the
/// decoder).
pub struct Ctx<'a, 'w> {
    pub g: &'a mut GraphBuilder<'w>,
    pub ckpt: &'w Checkpoint,
    pub profile: &'static ProfileSpec,
    pub precision: &'static PrecisionSpec,
    pub keep: &'a KeepFloat32,
    pub past: bool,
    /// Query rows per attention block of a full-sequence graph (0: the full square).
    pub query_block: usize,
    /// Activation ranges for a calibrated matrix form (static int8).
    pub calibration: Option<&'w Calibration>,
    /// Every block matrix emitted so far, with its input: what a calibration graph exposes.
    pub matrices: Vec<MatrixInput>,
    /// Matrices a calibrated form found no range for (the build fails naming the first).
    pub uncalibrated: Vec<String>,
}

/// One block matrix's input, as the trunk emitted it.
#[derive(Debug, Clone)]
pub struct MatrixInput {
    /// The matrix (its Conv1D's scope: `h.0.attn.c_attn`).
    pub matrix: String,
    /// The value it multiplies.
    pub input: String,
    /// The input's last dimension.
    pub width: usize,
}

impl<'w> Ctx<'_, 'w> {
    /// The type the trunk computes in: its activations, float weights and constants.
    pub fn act(&self) -> DataType {
        self.precision.activations
    }

    /// How the matrix at `s` is stored and multiplied, and the float type a float form computes
    /// in: the precision's own, or a float32 `MatMul` where the keep-list names the matrix —
    /// whatever the precision, so every matrix form, present or future, honours the list.
    pub fn matrix_form(&self, s: &Scope) -> (MatMulForm, DataType) {
        match self.keep.keeps(s.path()) {
            true => (MatMulForm::Float, DataType::Float32),
            false => (self.precision.matmul, self.act()),
        }
    }

    /// The decoder's cache as this graph declares it (in the activations' type).
    pub fn decoder_io(&self) -> DecoderIo {
        let c = &self.ckpt.config;
        DecoderIo {
            n_layer: c.n_layer,
            n_head: c.n_head,
            head_dim: c.head_dim(),
            dtype: self.act(),
            cache: self.profile.cache_mode(c),
        }
    }

    /// A checkpoint tensor as an initializer in the activations' type, named as in the
    /// checkpoint (its shape was checked when the checkpoint opened).
    pub fn weight(&mut self, name: &str, dims: &[usize]) -> String {
        self.weight_as(name, dims, self.act())
    }

    /// A checkpoint tensor as a float16 initializer when `dtype` is float16, else float32.
    pub fn weight_as(&mut self, name: &str, dims: &[usize], dtype: DataType) -> String {
        let (store, owned) = (&self.ckpt.weights, name.to_string());
        let (dtype, source): (_, Box<dyn TensorSource>) = match dtype {
            DataType::Float16 => (dtype, Box::new(Float16 { store, name: owned })),
            _ => (DataType::Float32, Box::new(Float32 { store, name: owned })),
        };
        self.g.initializer(name, dtype, dims, source)
    }

    /// A constant in the activations' type.
    pub fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let dtype = self.act();
        self.g.const_float(name, dtype, dims, values)
    }

    /// `x` cast to `to`, or `x` itself when it already is (`from`).
    pub fn cast(&mut self, name: &str, x: &str, from: DataType, to: DataType) -> String {
        if from == to {
            return x.to_string();
        }
        let attrs = vec![attr_int("to", to.onnx() as i64)];
        self.g.op(Op::Cast, name, &[x], attrs)
    }
}
