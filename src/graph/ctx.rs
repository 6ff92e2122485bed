//! What every emitter works with ([`Ctx`]): the graph being built, the checkpoint, the profile
//! and precision rows, and whether the trunk has a past (the decoder); and how a checkpoint
//! weight becomes an initializer in that precision.

use super::io::DecoderIo;
use super::profile::{PrecisionSpec, ProfileSpec};
use super::quant::{BlockPart, Int8Blocks};
use crate::base::DataType;
use crate::checkpoint::source::Float32;
use crate::checkpoint::Checkpoint;
use crate::onnx::GraphBuilder;

/// What every emitter works with: the graph being built, the checkpoint, the profile, and
/// whether the trunk has a past (the decoder).
pub struct Ctx<'a, 'w> {
    pub g: &'a mut GraphBuilder<'w>,
    pub ckpt: &'w Checkpoint,
    pub profile: &'static ProfileSpec,
    pub precision: &'static PrecisionSpec,
    pub past: bool,
}

impl<'w> Ctx<'_, 'w> {
    /// The decoder's cache as this graph declares it (float32 activations).
    pub fn decoder_io(&self) -> DecoderIo {
        let c = &self.ckpt.config;
        DecoderIo {
            n_layer: c.n_layer,
            n_head: c.n_head,
            head_dim: c.head_dim(),
            dtype: DataType::Float32,
        }
    }

    /// A checkpoint tensor as a float32 initializer named as in the checkpoint (its shape was
    /// checked when the checkpoint opened).
    pub fn weight(&mut self, name: &str, dims: &[usize]) -> String {
        let source = Float32 {
            store: &self.ckpt.weights,
            name: name.to_string(),
        };
        self.g
            .initializer(name, DataType::Float32, dims, Box::new(source))
    }

    /// A Conv1D weight `[n_in, n_out]` as `MatMulNBits` 8-bit blocks: the quantised matrix
    /// `[n_out, blocks, block]` (uint8, zero point 128) and its scales `[n_out, blocks]`.
    pub fn int8_weight(
        &mut self,
        name: &str,
        n_in: usize,
        n_out: usize,
        block: usize,
    ) -> (String, String) {
        let blocks = n_in.div_ceil(block);
        let part = |part| {
            Box::new(Int8Blocks {
                store: &self.ckpt.weights,
                name: name.to_string(),
                n_in,
                n_out,
                block,
                part,
            })
        };
        let (q, scales) = (part(BlockPart::Quantized), part(BlockPart::Scales));
        let q = self.g.initializer(
            &format!("{name}.int8"),
            DataType::UInt8,
            &[n_out, blocks, block],
            q,
        );
        let scales = self.g.initializer(
            &format!("{name}.scales"),
            DataType::Float32,
            &[n_out, blocks],
            scales,
        );
        (q, scales)
    }
}
