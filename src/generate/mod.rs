//! The decoding loop over any runtime: the prompt goes through the decoder graph once (past
//! length 0), then one token per step, the cache kept by the [`session`]. Token choice is
//! [`sampling`]; images from tokens are the image module's.

pub mod sampling;
pub mod session;
pub mod speculative;

use std::time::Instant;

use ndarray::{Array2, Axis};

use crate::graph::ExportCard;
use crate::runtime::LoadedModel;
pub use sampling::{Sampler, Strategy};
pub use session::{DecoderSession, SessionError};
pub use speculative::{check_draft, generate_speculative, DraftLength, DraftMismatch, DraftStats};

/// Why generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("batch must be at least 1")]
    NoRows,
    #[error("the prompt is empty: it needs at least the start token")]
    EmptyPrompt,
    #[error("prompts of different lengths: every row needs the same length")]
    Ragged,
    #[error("the prompt has {len} tokens, more than n_positions ({n_positions})")]
    PromptTooLong { len: usize, n_positions: usize },
    #[error("prompt token {id} (row {row}, position {position}) is out of range [0, {vocab_size}) (vocab_size)")]
    TokenOutOfRange {
        id: i64,
        row: usize,
        position: usize,
        vocab_size: usize,
    },
    #[error("{prompt} prompt tokens + {new} new tokens exceed n_positions + 1 ({}): the model has {n_positions} positions", n_positions + 1)]
    TooLong {
        prompt: usize,
        new: usize,
        n_positions: usize,
    },
    /// Shown as the session's own line; kept as the cause so the command's exit code can tell a
    /// runtime's failure from a bad request.
    #[error("{0}")]
    Session(#[from] SessionError),
}

/// What generation needs beyond the graph's own I/O: the vocabulary (start token included)
/// and the positions, from the export card.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderDims {
    /// Including the start token (`vocab_size - 1`).
    pub vocab_size: usize,
    pub n_positions: usize,
}

impl DecoderDims {
    /// The dims an export recorded.
    pub fn of(card: &ExportCard) -> Self {
        DecoderDims {
            vocab_size: card.config.vocab_size,
            n_positions: card.config.n_positions,
        }
    }

    /// The start-of-image token.
    pub fn sos(&self) -> i64 {
        self.vocab_size as i64 - 1
    }
}

/// What came out.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Per row: the prompt followed by the generated tokens.
    pub tokens: Vec<Vec<i64>>,
    /// Forward passes (the prompt counts as one).
    pub steps: usize,
    /// Seconds for the prompt pass, and for all the single-token steps after it.
    pub prompt_seconds: f64,
    pub step_seconds: f64,
}

impl Generation {
    /// Tokens generated per second over the single-token steps (all rows).
    pub fn tokens_per_second(&self) -> f64 {
        let rows = self.tokens.len();
        let singles = self.steps.saturating_sub(1);
        if self.step_seconds > 0.0 {
            (singles * rows) as f64 / self.step_seconds
        } else {
            0.0
        }
    }

    /// Milliseconds per single-token step.
    pub fn ms_per_step(&self) -> f64 {
        let singles = self.steps.saturating_sub(1).max(1);
        self.step_seconds * 1e3 / singles as f64
    }
}

/// The most tokens that can follow a prompt of `prompt_len`: every fed token needs a
/// position, the last sampled one does not (SOS + 1024 tokens on the published models).
pub fn max_new_tokens(dims: &DecoderDims, prompt_len: usize) -> usize {
    (dims.n_positions + 1).saturating_sub(prompt_len)
}

/// Checks the prompts against the model: equal lengths, ids in range, room to generate.
pub fn check_prompts(
    dims: &DecoderDims,
    prompts: &[Vec<i64>],
    new_tokens: usize,
) -> Result<(), GenerateError> {
    let Some(first) = prompts.first() else {
        return Err(GenerateError::NoRows);
    };
    if first.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompts.iter().any(|p| p.len() != first.len()) {
        return Err(GenerateError::Ragged);
    }
    if first.len() > dims.n_positions {
        return Err(GenerateError::PromptTooLong {
            len: first.len(),
            n_positions: dims.n_positions,
        });
    }
    for (row, p) in prompts.iter().enumerate() {
        if let Some((position, &id)) = p
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id >= dims.vocab_size as i64)
        {
            return Err(GenerateError::TokenOutOfRange {
                id,
                row,
                position,
                vocab_size: dims.vocab_size,
            });
        }
    }
    // The last token is sampled, never fed back: positions stay below n_positions.
    if first.len() + new_tokens > dims.n_positions + 1 {
        return Err(GenerateError::TooLong {
            prompt: first.len(),
            new: new_tokens,
            n_positions: dims.n_positions,
        });
    }
    Ok(())
}

/// Generates `new_tokens` after each prompt. `progress(done, total)` is called after every
/// step.
pub fn generate(
    model: &mut dyn LoadedModel,
    dims: &DecoderDims,
    prompts: &[Vec<i64>],
    new_tokens: usize,
    sampler: &mut Sampler,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Generation, GenerateError> {
    check_prompts(dims, prompts, new_tokens)?;
    let batch = prompts.len();
    let prompt_len = prompts[0].len();
    let mut tokens: Vec<Vec<i64>> = prompts.to_vec();
    // Every generated token but the last is fed back.
    let positions = prompt_len + new_tokens.saturating_sub(1);
    let mut session = DecoderSession::with_capacity(model, batch, positions)?;
    let mut ids = Array2::<i64>::zeros((batch, prompt_len));
    for (b, p) in prompts.iter().enumerate() {
        ids.row_mut(b).iter_mut().zip(p).for_each(|(d, s)| *d = *s);
    }
    let (mut prompt_seconds, mut step_seconds) = (0.0, 0.0);
    for step in 0..new_tokens {
        let start = Instant::now();
        let logits = session.feed(ids.view(), None)?;
        let last = logits.len_of(Axis(1)) - 1;
        let mut next = Array2::<i64>::zeros((batch, 1));
        for b in 0..batch {
            let row: Vec<f32> = logits
                .index_axis(Axis(0), b)
                .index_axis(Axis(0), last)
                .iter()
                .copied()
                .collect();
            let t = sampler.pick(&row) as i64;
            next[[b, 0]] = t;
            tokens[b].push(t);
        }
        let took = start.elapsed().as_secs_f64();
        if step == 0 {
            prompt_seconds = took;
        } else {
            step_seconds += took;
        }
        ids = next;
        progress(step + 1, new_tokens);
    }
    Ok(Generation {
        tokens,
        steps: new_tokens,
        prompt_seconds,
        step_seconds,
    })
}
