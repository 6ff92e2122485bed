//! Tensor sources: what an initializer's bytes come from when a model is written. The graph
//! builder holds only names, types and shapes; the writer asks each source to write its bytes
//! and checks the count against the framing it already wrote. A checkpoint tensor, a
//! transposed head weight and (later) a quantised or half-precision matrix are each one source.

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
