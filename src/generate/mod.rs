//! The decoding loop over any runtime: the prompt goes through the decoder graph once (past
//! length 0), then one token per step with the `present` key/values fed back as the next
//! `past_key_values`. Token choice is [`sampling`]; images from tokens are the image module's.

pub mod sampling;

use std::time::Instant;

use ndarray::{Array2, ArrayD, IxDyn};

use crate::runtime::{Cache, LoadedModel, RuntimeError, Tensor};
pub use sampling::{Sampler, Strategy};

/// Why generation could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Graph(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The decoder's dimensions, from its inputs and export metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderDims {
    pub n_layer: usize,
    pub n_head: usize,
    pub head_dim: usize,
    /// Including the start token (`vocab_size - 1`).
    pub vocab_size: usize,
    pub n_positions: usize,
}

impl DecoderDims {
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
    let bad = |m: String| Err(GenerateError::Input(m));
    let Some(first) = prompts.first() else {
        return bad("batch must be at least 1".into());
    };
    if first.is_empty() {
        return bad("the prompt is empty: it needs at least the start token".into());
    }
    if prompts.iter().any(|p| p.len() != first.len()) {
        return bad("prompts of different lengths: every row needs the same length".into());
    }
    if first.len() > dims.n_positions {
        return bad(format!(
            "the prompt has {} tokens, more than n_positions ({})",
            first.len(),
            dims.n_positions
        ));
    }
    for (row, p) in prompts.iter().enumerate() {
        if let Some((i, id)) = p
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id >= dims.vocab_size as i64)
        {
            return bad(format!(
                "prompt token {id} (row {row}, position {i}) is out of range [0, {}) (vocab_size)",
                dims.vocab_size
            ));
        }
    }
    // The last token is sampled, never fed back: positions stay below n_positions.
    if first.len() + new_tokens > dims.n_positions + 1 {
        return bad(format!(
            "{} prompt tokens + {new_tokens} new tokens exceed n_positions + 1 ({}): the model has {} positions",
            first.len(),
            dims.n_positions + 1,
            dims.n_positions
        ));
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
    let empty = ArrayD::<f32>::zeros(IxDyn(&[batch, dims.n_head, 0, dims.head_dim]));
    let names = cache_names(dims.n_layer);
    let mut cache = Cache::Host(names.iter().map(|_| Tensor::F32(empty.clone())).collect());
    let mut ids = Array2::<i64>::zeros((batch, prompt_len));
    for (b, p) in prompts.iter().enumerate() {
        ids.row_mut(b).iter_mut().zip(p).for_each(|(d, s)| *d = *s);
    }
    let mut ids = Tensor::I64(ids.into_dyn());
    let mut steps = 0;
    let (mut prompt_seconds, mut step_seconds) = (0.0, 0.0);
    for step in 0..new_tokens {
        let (past_len, seq) = if step == 0 {
            (0, prompt_len)
        } else {
            (prompt_len + step - 1, 1)
        };
        let mask = Tensor::I64(ArrayD::ones(IxDyn(&[batch, past_len + seq])));
        let positions = Tensor::I64(
            Array2::from_shape_fn((batch, seq), |(_, s)| (past_len + s) as i64).into_dyn(),
        );
        let start = Instant::now();
        let feed: Vec<(&str, &Tensor)> = vec![
            ("input_ids", &ids),
            ("attention_mask", &mask),
            ("position_ids", &positions),
        ];
        // The runtime keeps the cache between steps where it can (no copy per step).
        let logits = model.step(&feed, &names, &mut cache)?.to_f32();
        if logits.ndim() != 3 || logits.shape()[1] != seq {
            return Err(GenerateError::Graph(format!(
                "`logits` has shape {:?}, expected [batch, {seq}, vocab]",
                logits.shape()
            )));
        }
        let mut next = Array2::<i64>::zeros((batch, 1));
        for b in 0..batch {
            let row: Vec<f32> = logits
                .index_axis(ndarray::Axis(0), b)
                .index_axis(ndarray::Axis(0), seq - 1)
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
        steps += 1;
        ids = Tensor::I64(next.into_dyn());
        progress(step + 1, new_tokens);
    }
    Ok(Generation {
        tokens,
        steps,
        prompt_seconds,
        step_seconds,
    })
}

/// `past_key_values.{i}.key`, `.value`, in layer order.
fn cache_names(n_layer: usize) -> Vec<String> {
    (0..n_layer)
        .flat_map(|i| {
            [
                format!("past_key_values.{i}.key"),
                format!("past_key_values.{i}.value"),
            ]
        })
        .collect()
}
