//! The decoder checked against the full forward: the case's sequence goes through the decoder
//! as a prompt of `N` tokens and then `K` single-token steps, each step's `present` fed back as
//! the next `past_key_values`; the logits of all `N + K` positions must equal the reference's
//! full-forward `causal-lm/logits`. One golden step cannot catch a cache or mask bug that only
//! shows after several steps (a past offset applied twice, a present concatenated on the wrong
//! axis); this can, on every causal-LM case.

use ndarray::{concatenate, s, Array2, Axis};

use crate::base::Tensor;
use crate::generate::{DecoderSession, SessionError};
use crate::graph::io::LOGITS;
use crate::runtime::{LoadedModel, NamedOutputs};

/// Single-token steps after the prompt (fewer when the sequence is shorter).
pub const STEPS: usize = 4;

/// The check's name in reports: which decoder run this was.
pub fn label(seq: usize) -> String {
    let k = steps_for(seq);
    format!("decoder ({} + {k} steps)", seq - k)
}

fn steps_for(seq: usize) -> usize {
    STEPS.min(seq.saturating_sub(1))
}

/// Runs the prompt and the steps through one [`DecoderSession`] (the path `generate` takes);
/// returns `logits` for every position, `[batch, seq, vocab]`.
pub fn prompt_then_steps(
    model: &mut dyn LoadedModel,
    ids: &Array2<i64>,
    mask: &Array2<i64>,
) -> Result<NamedOutputs, SessionError> {
    let (batch, seq) = ids.dim();
    let k = steps_for(seq);
    let mut session = DecoderSession::new(model, batch)?;
    let mut logits = Vec::with_capacity(k + 1);
    let mut start = 0;
    for len in std::iter::once(seq - k).chain(std::iter::repeat_n(1, k)) {
        let end = start + len;
        let step = session.feed(
            ids.slice(s![.., start..end]),
            Some(mask.slice(s![.., ..end])),
        )?;
        logits.push(step);
        start = end;
    }
    let views: Vec<_> = logits.iter().map(|l| l.view()).collect();
    // Every step's logits are [batch, len, vocab] (the session checked), so they join.
    let all = concatenate(Axis(1), &views).unwrap_or_default();
    Ok(vec![(LOGITS.into(), Tensor::F32(all))])
}
