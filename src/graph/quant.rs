//! Weight quantisation for `MatMulNBits` (ONNX Runtime contrib op): a Conv1D weight split into
//! blocks along its input axis, each stored as 8- or 4-bit integers with one float32 scale. The
//! layout is the operator's (`com.microsoft.MatMulNBits`: B `[N, blocks, block · bits / 8]`
//! uint8, 4-bit values two a byte with the first in the low nibble, scales `[N, blocks]`, and
//! with no zero points given the zero point is `2^(bits − 1)`: 128, or 8). The same grid, one
//! scale per output column and signed values in the checkpoint's `[K, N]` order, is the weight
//! of dynamic int8 (`MatMulInteger` / `DynamicQuantizeMatMul`, [`QuantColumns`]).

use std::fs::File;
use std::io::{BufWriter, Write};

use crate::base::{SourceError, TensorSource};
use crate::checkpoint::WeightStore;

/// Which tensor of a block quantisation a source writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPart {
    /// `[n_out, blocks, block · bits / 8]` uint8: `round(w / scale) + 2^(bits − 1)`, the last
    /// block zero-padded.
    Quantized,
    /// `[n_out, blocks]` float32: `max |w| / (2^(bits − 1) − 1)` over each block (1 for an
    /// all-zero block).
    Scales,
}

/// A Conv1D weight `[n_in, n_out]` quantised symmetrically to `bits` (8 or 4) in blocks of
/// `block` consecutive inputs per output column, as ONNX Runtime's `MatMulNBits` reads it (B
/// transposed to `[N, K]`, the default zero point). One matrix is read per write.
#[derive(Debug)]
pub struct QuantBlocks<'w> {
    pub store: &'w WeightStore,
    pub name: String,
    pub n_in: usize,
    pub n_out: usize,
    pub bits: u8,
    pub block: usize,
    pub part: BlockPart,
}

impl TensorSource for QuantBlocks<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        let w = read_matrix(self.store, &self.name, self.n_in, self.n_out)?;
        let grid = Grid::new(self.bits);
        let blocks = self.n_in.div_ceil(self.block);
        let mut column = vec![0f32; blocks * self.block];
        // Only a capacity hint: the writer checks the count against the declared shape.
        let per_column = match self.part {
            BlockPart::Quantized => column.len() * usize::from(self.bits) / 8,
            BlockPart::Scales => blocks * 4,
        };
        let mut bytes = Vec::with_capacity(self.n_out.checked_mul(per_column).unwrap_or(0));
        for n in 0..self.n_out {
            for (k, c) in column.iter_mut().take(self.n_in).enumerate() {
                *c = w[k * self.n_out + n];
            }
            for chunk in column.chunks_exact(self.block) {
                let scale = grid.scale(chunk);
                match self.part {
                    BlockPart::Scales => bytes.extend_from_slice(&scale.to_le_bytes()),
                    BlockPart::Quantized => grid.pack(chunk, scale, &mut bytes),
                }
            }
        }
        out.write_all(&bytes).map_err(SourceError::Output)?;
        Ok(bytes.len() as u64)
    }
}

/// A Conv1D weight `[n_in, n_out]` as signed 8-bit values with one float32 scale per output
/// column (`max |w| / 127` over the column), in the checkpoint's `[n_in, n_out]` order: the `B`
/// of ONNX `MatMulInteger` (zero point 0) and of ONNX Runtime's `DynamicQuantizeMatMul`.
#[derive(Debug)]
pub struct QuantColumns<'w> {
    pub store: &'w WeightStore,
    pub name: String,
    pub n_in: usize,
    pub n_out: usize,
    pub part: BlockPart,
}

impl TensorSource for QuantColumns<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        let w = read_matrix(self.store, &self.name, self.n_in, self.n_out)?;
        let grid = Grid::new(8);
        let mut max = vec![0f32; self.n_out];
        for row in w.chunks_exact(self.n_out) {
            for (m, v) in max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        let scales: Vec<f32> = max.iter().map(|&m| grid.scale(&[m])).collect();
        let bytes: Vec<u8> = match self.part {
            BlockPart::Scales => scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
            // The offset grid's byte with its top bit flipped is the signed value's byte.
            BlockPart::Quantized => w
                .chunks_exact(self.n_out)
                .flat_map(|row| {
                    row.iter()
                        .zip(&scales)
                        .map(|(&v, &s)| grid.quantize(v, s) ^ 0x80)
                })
                .collect(),
        };
        out.write_all(&bytes).map_err(SourceError::Output)?;
        Ok(bytes.len() as u64)
    }
}

/// A `[n_in, n_out]` weight as float32, row-major. The checkpoint checked its shape when it
/// opened; checked again here because the quantisers index by it.
fn read_matrix(
    store: &WeightStore,
    name: &str,
    n_in: usize,
    n_out: usize,
) -> Result<Vec<f32>, SourceError> {
    store
        .require(name, &[n_in, n_out])
        .map_err(SourceError::input)?;
    store.read_f32(name).map_err(SourceError::input)
}

/// The symmetric integer grid of `bits`: values `−qmax..=qmax` stored offset by the zero point.
#[derive(Debug, Clone, Copy)]
struct Grid {
    bits: u8,
    qmax: f32,
    zero: i32,
}

impl Grid {
    fn new(bits: u8) -> Grid {
        let zero = 1i32 << (bits - 1);
        Grid {
            bits,
            qmax: (zero - 1) as f32,
            zero,
        }
    }

    /// `max |w| / qmax`, so the block's extreme maps to ±qmax; an all-zero block gets scale 1.
    fn scale(self, block: &[f32]) -> f32 {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            max / self.qmax
        } else {
            1.0
        }
    }

    /// `round(v / scale)` in `−qmax..=qmax`, offset by the zero point.
    fn quantize(self, v: f32, scale: f32) -> u8 {
        let q = (v / scale).round().clamp(-self.qmax, self.qmax) as i32;
        (q + self.zero) as u8
    }

    /// Appends a block's values: one a byte at 8 bits, two a byte (low nibble first) at 4.
    fn pack(self, block: &[f32], scale: f32, out: &mut Vec<u8>) {
        let q = block.iter().map(|&v| self.quantize(v, scale));
        if self.bits == 8 {
            out.extend(q);
            return;
        }
        let q: Vec<u8> = q.collect();
        out.extend(
            q.chunks(2)
                .map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 4)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_extremes_map_to_qmax_and_zero_blocks_stay_exact() {
        let block = [0.5f32, -1.27, 0.01, 0.0];
        let g8 = Grid::new(8);
        let scale = g8.scale(&block);
        assert!((scale - 0.01).abs() < 1e-9);
        let mut q = Vec::new();
        g8.pack(&block, scale, &mut q);
        assert_eq!(q, vec![178, 1, 129, 128]);
        assert_eq!(g8.scale(&[0.0; 4]), 1.0);
        assert_eq!(g8.quantize(0.0, 1.0), 128);
    }

    #[test]
    fn four_bit_values_pack_two_a_byte_low_nibble_first() {
        let block = [0.7f32, -0.7, 0.1, 0.0];
        let g4 = Grid::new(4);
        let scale = g4.scale(&block);
        assert!((scale - 0.1).abs() < 1e-7);
        // 7 → 15, −7 → 1, 1 → 9, 0 → 8 (the default zero point).
        let mut q = Vec::new();
        g4.pack(&block, scale, &mut q);
        assert_eq!(q, vec![0x1f, 0x89]);
        assert_eq!(g4.quantize(0.0, 1.0), 8);
    }
}
