//! Tensor sources: what an initializer's bytes come from when a model is written. A graph
//! holds only names, types and shapes; the writer asks each source to write its bytes and
//! checks the count against the framing it already wrote. A checkpoint tensor, a transposed
//! head weight and a block-quantised matrix are each one source, defined where their input is
//! (the checkpoint, the graph's quantisers); bytes computed at export time are a `Vec<u8>`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};

/// Why a source could not write: reading its input, or writing the output file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input could not be read (a checkpoint tensor, with its file and name).
    #[error(transparent)]
    Input(Box<dyn std::error::Error + Send + Sync>),
    /// Writing the output failed; the writer names the file.
    #[error(transparent)]
    Output(io::Error),
}

impl SourceError {
    /// An input error, kept whole (its type and causes) for the caller to inspect.
    pub fn input(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SourceError::Input(Box::new(e))
    }
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
