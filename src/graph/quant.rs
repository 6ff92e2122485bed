//! Weight quantisation for `MatMulNBits` (ONNX Runtime contrib op): a Conv1D weight split into
//! blocks along its input axis, each stored as 8-bit integers with one float32 scale. The
//! layout is the operator's (`com.microsoft.MatMulNBits`: B `[N, blocks, block]`, scales
//! `[N, blocks]`, zero point 128 when none is given).

use std::fs::File;
use std::io::{BufWriter, Write};

use crate::base::{SourceError, TensorSource};
use crate::checkpoint::WeightStore;

/// Which tensor of an 8-bit block quantisation a source writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPart {
    /// `[n_out, blocks, block]` uint8: `round(w / scale) + 128`, the last block zero-padded.
    Quantized,
    /// `[n_out, blocks]` float32: `max |w| / 127` over each block (1 for an all-zero block).
    Scales,
}

/// A Conv1D weight `[n_in, n_out]` quantised symmetrically to 8 bits in blocks of `block`
/// consecutive inputs per output column, as ONNX Runtime's `MatMulNBits` reads it (B
/// transposed to `[N, K]`, zero point 128 when none is given). One matrix is read per write.
#[derive(Debug)]
pub struct Int8Blocks<'w> {
    pub store: &'w WeightStore,
    pub name: String,
    pub n_in: usize,
    pub n_out: usize,
    pub block: usize,
    pub part: BlockPart,
}

impl TensorSource for Int8Blocks<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        // The checkpoint checked this shape when it opened; checked again here because the
        // loop below indexes by it.
        self.store
            .require(&self.name, &[self.n_in, self.n_out])
            .map_err(SourceError::input)?;
        let w = self
            .store
            .read_f32(&self.name)
            .map_err(SourceError::input)?;
        let blocks = self.n_in.div_ceil(self.block);
        let mut column = vec![0f32; blocks * self.block];
        // Only a capacity hint: the writer checks the count against the declared shape.
        let per_column = match self.part {
            BlockPart::Quantized => column.len(),
            BlockPart::Scales => blocks * 4,
        };
        let mut bytes = Vec::with_capacity(self.n_out.checked_mul(per_column).unwrap_or(0));
        for n in 0..self.n_out {
            for (k, c) in column.iter_mut().take(self.n_in).enumerate() {
                *c = w[k * self.n_out + n];
            }
            for chunk in column.chunks_exact(self.block) {
                let scale = block_scale(chunk);
                match self.part {
                    BlockPart::Scales => bytes.extend_from_slice(&scale.to_le_bytes()),
                    BlockPart::Quantized => bytes.extend(chunk.iter().map(|&v| quantize(v, scale))),
                }
            }
        }
        out.write_all(&bytes).map_err(SourceError::Output)?;
        Ok(bytes.len() as u64)
    }
}

/// `max |w| / 127`, so the block's extreme maps to ±127; an all-zero block gets scale 1.
fn block_scale(block: &[f32]) -> f32 {
    let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

/// `round(v / scale)` in −127..=127, stored offset by the zero point 128.
fn quantize(v: f32, scale: f32) -> u8 {
    let q = (v / scale).round().clamp(-127.0, 127.0) as i32;
    (q + 128) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_extremes_map_to_127_and_zero_blocks_stay_exact() {
        let block = [0.5f32, -1.27, 0.01, 0.0];
        let scale = block_scale(&block);
        assert!((scale - 0.01).abs() < 1e-9);
        let q: Vec<u8> = block.iter().map(|&v| quantize(v, scale)).collect();
        assert_eq!(q, vec![178, 1, 129, 128]);
        assert_eq!(block_scale(&[0.0; 4]), 1.0);
        assert_eq!(quantize(0.0, 1.0), 128);
    }
}
