//! One decoder session: a decoder graph loaded in a runtime, its cache contract read from the
//! graph's inputs ([`DecoderIo`]: names, layers, heads, element type — float16 caches included),
//! and the cache kept in the runtime between calls. Every decoding loop goes through it:
//! `generate`, verify's step-by-step checks and the benchmarks (through `generate --json`).
//!
//! A call feeds `[batch, seq]` new tokens after what the session has seen; positions continue
//! from there (`past .. past + seq`, as HF ImageGPT numbers them) and the mask covers the past
//! and the new tokens.

use ndarray::{Array2, ArrayD, ArrayView2, Axis};

use crate::base::Tensor;
use crate::graph::io::{DecoderIo, DecoderIoError, ATTENTION_MASK, INPUT_IDS, POSITION_IDS};
use crate::runtime::{Cache, LoadedModel, RuntimeError};

/// Why a session could not start or step.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the graph breaks the decoder contract: {0}")]
    Contract(#[from] DecoderIoError),
    /// Shown as the runtime's own line; kept as the cause (see `GenerateError::Session`).
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("`logits` has shape {found:?}, expected [{batch}, {seq}, vocab]")]
    Logits {
        found: Vec<usize>,
        batch: usize,
        seq: usize,
    },
    #[error("the step has {found} rows, the session {batch}")]
    Batch { found: usize, batch: usize },
    #[error("the mask has {found} columns, expected past {past} + {seq} new")]
    Mask {
        found: usize,
        past: usize,
        seq: usize,
    },
}

/// A decoder graph with its cache.
pub struct DecoderSession<'m> {
    model: &'m mut dyn LoadedModel,
    io: DecoderIo,
    names: Vec<String>,
    cache: Cache,
    batch: usize,
    past: usize,
}

impl<'m> DecoderSession<'m> {
    /// Starts an empty session of `batch` rows on a loaded decoder graph.
    pub fn new(model: &'m mut dyn LoadedModel, batch: usize) -> Result<Self, SessionError> {
        let io = DecoderIo::from_inputs(model.inputs(), model.cache_mode())?;
        Ok(DecoderSession {
            names: io.past_names(),
            cache: Cache::Host(io.empty_cache(batch)),
            io,
            model,
            batch,
            past: 0,
        })
    }

    /// Starts an empty session that will hold at most `positions` tokens (prompt and fed-back
    /// tokens): a runtime that can, preallocates the cache once and writes each step in place.
    pub fn with_capacity(
        model: &'m mut dyn LoadedModel,
        batch: usize,
        positions: usize,
    ) -> Result<Self, SessionError> {
        model.reserve_cache(positions);
        Self::new(model, batch)
    }

    /// The cache contract the graph declares.
    pub fn io(&self) -> &DecoderIo {
        &self.io
    }

    /// Tokens seen so far (the cache's length).
    pub fn past(&self) -> usize {
        self.past
    }

    /// Feeds `ids` `[batch, seq]` after the past; `mask` is the whole `[batch, past + seq]`
    /// mask (`None`: every token counts). Returns the logits `[batch, seq, vocab]` as float32.
    pub fn feed(
        &mut self,
        ids: ArrayView2<'_, i64>,
        mask: Option<ArrayView2<'_, i64>>,
    ) -> Result<ArrayD<f32>, SessionError> {
        let (batch, seq) = ids.dim();
        if batch != self.batch {
            return Err(SessionError::Batch {
                found: batch,
                batch: self.batch,
            });
        }
        let total = self.past + seq;
        let mask = match mask {
            Some(m) if m.dim() == (batch, total) => m.to_owned(),
            Some(m) => {
                return Err(SessionError::Mask {
                    found: m.ncols(),
                    past: self.past,
                    seq,
                })
            }
            None => Array2::ones((batch, total)),
        };
        let past = self.past;
        let positions = Array2::from_shape_fn((batch, seq), |(_, s)| (past + s) as i64);
        let ids = Tensor::I64(ids.to_owned().into_dyn());
        let mask = Tensor::I64(mask.into_dyn());
        let positions = Tensor::I64(positions.into_dyn());
        let feed = [
            (INPUT_IDS, &ids),
            (ATTENTION_MASK, &mask),
            (POSITION_IDS, &positions),
        ];
        let logits = self
            .model
            .step(&feed, &self.names, &mut self.cache)?
            .to_f32();
        if logits.ndim() != 3 || logits.len_of(Axis(0)) != batch || logits.len_of(Axis(1)) != seq {
            return Err(SessionError::Logits {
                found: logits.shape().to_vec(),
                batch,
                seq,
            });
        }
        self.past = total;
        Ok(logits)
    }

    /// Rolls the session back to its first `positions` tokens (no-op when it holds fewer): the
    /// next call continues from there, over whatever the dropped positions held.
    pub fn truncate(&mut self, positions: usize) -> Result<(), SessionError> {
        if positions < self.past {
            self.model.truncate_cache(&mut self.cache, positions)?;
            self.past = positions;
        }
        Ok(())
    }
}
