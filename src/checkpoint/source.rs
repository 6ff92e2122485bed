//! Tensor sources: what an initializer's bytes come from when a model is written. The graph
//! builder holds only names, types and shapes; the writer asks each source to write its bytes
//! and checks the count against the framing it already wrote. A checkpoint tensor, a
//! transposed head weight and an 8-bit block-quantised matrix are each one source.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::store::{WeightStore, WeightsError};

/// Why a source could not write: its input (the checkpoint) or the output file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// Writing the output failed; the writer names the file.
    #[error("{0}")]
    Output(io::Error),
}

/// Bytes for one initializer, written on demand.
pub trait TensorSource: fmt::Debug + Send + Sync {
    /// Writes the tensor's little-endian bytes and returns how many were written.
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError>;
}

/// Bytes computed at export time (shape constants, masks).
impl TensorSource for Vec<u8> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        out.write_all(self).map_err(SourceError::Output)?;
        Ok(self.len() as u64)
    }
}

/// A checkpoint tensor as float32, streamed from its file.
#[derive(Debug)]
pub struct Float32<'w> {
    pub store: &'w WeightStore,
    pub name: String,
}

impl TensorSource for Float32<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        self.store.write_f32(&self.name, out)
    }
}

/// A `Linear` weight `[rows, cols]` written transposed as `[cols, rows]` float32, so a head is
/// one MatMul. Head weights are small (512 × n_embd at most): read whole when written.
#[derive(Debug)]
pub struct Transposed<'w> {
    pub store: &'w WeightStore,
    pub name: String,
    pub rows: usize,
    pub cols: usize,
}

impl TensorSource for Transposed<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        let w = self.store.read_f32(&self.name)?;
        let mut bytes = vec![0u8; w.len() * 4];
        for (r, row) in w.chunks_exact(self.cols).enumerate() {
            for (c, v) in row.iter().enumerate() {
                let at = (c * self.rows + r) * 4;
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        out.write_all(&bytes).map_err(SourceError::Output)?;
        Ok(bytes.len() as u64)
    }
}

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
        self.store.require(&self.name, &[self.n_in, self.n_out])?;
        let w = self.store.read_f32(&self.name)?;
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
