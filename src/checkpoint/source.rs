//! Checkpoint tensors as initializer bytes ([`TensorSource`]s): a tensor streamed as float32 or
//! converted to float16, and a `Linear` weight written transposed. Sources computed from weights (quantised blocks)
//! belong to the graph that decides on them.

use std::fs::File;
use std::io::{BufWriter, Write};

use super::store::WeightStore;
use crate::base::{SourceError, TensorSource};

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

/// A checkpoint tensor as float16 (round to nearest even, as torch's `.half()`), read whole.
#[derive(Debug)]
pub struct Float16<'w> {
    pub store: &'w WeightStore,
    pub name: String,
}

impl TensorSource for Float16<'_> {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        let w = self
            .store
            .read_f32(&self.name)
            .map_err(SourceError::input)?;
        let bytes: Vec<u8> = w
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        out.write_all(&bytes).map_err(SourceError::Output)?;
        Ok(bytes.len() as u64)
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
        let w = self
            .store
            .read_f32(&self.name)
            .map_err(SourceError::input)?;
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
