//! Speculative decoding (Leviathan et al., "Fast Inference from Transformers via Speculative
//! Decoding", 2023; Chen et al., "Accelerating Large Language Model Decoding with Speculative
//! Sampling", 2023): a small draft decoder proposes `k` tokens one step at a time, the target
//! scores all `k + 1` positions in one call, and the longest prefix it agrees with is kept.
//!
//! Greedy keeps a draft token when it is the target's argmax; sampling keeps draft token `x`
//! with probability `min(1, p(x) / q(x))` and otherwise draws from the normalised residual
//! `max(0, p − q)`, where `p` and `q` are the target's and the draft's distributions after the
//! same temperature, top-k and top-p as plain generation ([`Sampler::distribution`]). Either
//! way the tokens follow the target's distribution exactly.
//!
//! Rows of a batch accept different lengths. Every row advances by the batch's minimum `m`
//! plus one token: the first `m` drafts, which every row accepted, then per row the target's
//! own choice at position `m + 1` (its argmax, its residual draw, or the row's accepted draft
//! there). Cutting a row's accepted run short is exact: where it stops depends only on tokens
//! already drawn and on other rows' independent draws, and the next round starts afresh from
//! the tokens kept. Positions stay shared by the whole batch, so the caches keep one length and
//! the mask stays all ones.
//!
//! The caches roll back past the rejected tokens by [`DecoderSession::truncate`].

use std::time::Instant;

use ndarray::{Array2, ArrayD, Axis};

use super::sampling::argmax;
use super::{check_prompts, DecoderDims, DecoderSession, GenerateError, Generation, Sampler};
use crate::graph::io::CacheMode;
use crate::graph::ExportCard;
use crate::runtime::LoadedModel;

/// The most draft tokens a round proposes when the length adapts.
pub const MAX_ADAPTIVE: usize = 16;
/// The adaptive length's first value.
const START: usize = 4;

/// Why a draft cannot go with a target.
#[derive(Debug, thiserror::Error)]
#[error(
    "the draft's {field} is {draft}, the target's {target}: a draft needs the target's {field}"
)]
pub struct DraftMismatch {
    pub field: &'static str,
    pub draft: usize,
    pub target: usize,
}

/// Checks that `draft` can propose tokens for `target`: the same vocabulary, positions and
/// logits width.
pub fn check_draft(target: &ExportCard, draft: &ExportCard) -> Result<(), DraftMismatch> {
    let (t, d) = (&target.config, &draft.config);
    for (field, draft, target) in [
        ("vocab_size", d.vocab_size, t.vocab_size),
        ("n_positions", d.n_positions, t.n_positions),
        ("logits width", draft.logits_width(), target.logits_width()),
    ] {
        if draft != target {
            return Err(DraftMismatch {
                field,
                draft,
                target,
            });
        }
    }
    Ok(())
}

/// How many tokens the draft proposes per round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DraftLength {
    /// Always this many (fewer near the end).
    Fixed(usize),
    /// Starts at 4; grows by 2 (to [`MAX_ADAPTIVE`]) when a round accepts every draft token,
    /// shrinks by 1 when it does not. At 0 the round is the target alone, and the draft is tried
    /// again with 1 token after 4, 8, … 64 such rounds, so a draft the target never agrees with
    /// costs a draft step in dozens of tokens.
    Adaptive,
}

/// What speculative decoding adds to a [`Generation`].
#[derive(Debug, Clone, Default)]
pub struct DraftStats {
    /// Draft tokens proposed, summed over rows.
    pub proposed: usize,
    /// Of those, accepted by the target (per row, before the batch's minimum cuts runs short).
    pub accepted: usize,
    /// Rounds that proposed at least one token.
    pub draft_rounds: usize,
    /// Decoder calls of each model.
    pub target_calls: usize,
    pub draft_calls: usize,
    /// Seconds spent in each model's calls (sampling included).
    pub target_seconds: f64,
    pub draft_seconds: f64,
}

impl DraftStats {
    /// Accepted draft tokens over proposed ones (0 when none were proposed).
    pub fn acceptance_rate(&self) -> f64 {
        match self.proposed {
            0 => 0.0,
            n => self.accepted as f64 / n as f64,
        }
    }

    /// Draft tokens a row accepted per round that proposed any.
    pub fn mean_accepted(&self, rows: usize) -> f64 {
        match self.draft_rounds * rows {
            0 => 0.0,
            n => self.accepted as f64 / n as f64,
        }
    }
}

/// A session for speculative decoding, and whether it must take new tokens one call at a time.
/// ONNX Runtime's `GroupQueryAttention` (the ort profile's in-place cache,
/// [`CacheMode::Shared`]) refuses several new tokens after a past unless the batch is 1
/// ("batch_size must be 1 when sequence_length > 1 and past context is given", CPU kernel,
/// 1.31), whether its buffer is shared or not: such a graph at a larger batch is fed one token
/// per call, which is exact but leaves the target one call per token.
fn session<'m>(
    model: &'m mut dyn LoadedModel,
    batch: usize,
    positions: usize,
) -> Result<(DecoderSession<'m>, bool), GenerateError> {
    let one_at_a_time = batch > 1 && model.cache_mode() == CacheMode::Shared;
    Ok((
        DecoderSession::with_capacity(model, batch, positions)?,
        one_at_a_time,
    ))
}

/// Feeds the tokens `tokens[..][session.past()..]` followed by `extra[..]` (one column each),
/// returning the logits of every fed position; `single`: one call per token after a past.
/// Counts the calls in `calls`.
fn feed_from(
    session: &mut DecoderSession<'_>,
    tokens: &[Vec<i64>],
    extra: &[Vec<i64>],
    single: bool,
    calls: &mut usize,
) -> Result<ArrayD<f32>, GenerateError> {
    let past = session.past();
    let len = tokens[0].len() - past + extra.len();
    let mut ids = Array2::<i64>::zeros((tokens.len(), len));
    for (b, row) in tokens.iter().enumerate() {
        let fed = row[past..].iter().chain(extra.iter().map(|col| &col[b]));
        ids.row_mut(b)
            .iter_mut()
            .zip(fed)
            .for_each(|(d, s)| *d = *s);
    }
    if !single || len == 1 || past == 0 {
        *calls += 1;
        return Ok(session.feed(ids.view(), None)?);
    }
    let mut parts = Vec::with_capacity(len);
    for s in 0..len {
        *calls += 1;
        parts.push(session.feed(ids.slice(ndarray::s![.., s..s + 1]), None)?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(ndarray::concatenate(Axis(1), &views).expect("logits of one shape"))
}

/// Row `b`, position `s` of `[batch, seq, vocab]` logits.
fn row(logits: &ArrayD<f32>, b: usize, s: usize) -> Vec<f32> {
    logits
        .index_axis(Axis(0), b)
        .index_axis(Axis(0), s)
        .iter()
        .copied()
        .collect()
}

/// Generates `new_tokens` after each prompt with `target`, `draft` proposing. The result's
/// tokens are the ones [`generate`](super::generate) gives with a greedy sampler, and follow
/// the same distribution when sampling (the draws differ). `progress(done, total)` follows
/// every round.
#[allow(clippy::too_many_arguments)]
pub fn generate_speculative(
    target: &mut dyn LoadedModel,
    draft: &mut dyn LoadedModel,
    dims: &DecoderDims,
    prompts: &[Vec<i64>],
    new_tokens: usize,
    length: DraftLength,
    sampler: &mut Sampler,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Generation, DraftStats), GenerateError> {
    check_prompts(dims, prompts, new_tokens)?;
    let batch = prompts.len();
    let prompt_len = prompts[0].len();
    let greedy = matches!(sampler.strategy(), super::Strategy::Greedy);
    let positions = prompt_len + new_tokens.saturating_sub(1);
    let (mut t_session, t_single) = session(target, batch, positions)?;
    let (mut d_session, d_single) = session(draft, batch, positions)?;
    let mut tokens: Vec<Vec<i64>> = prompts.to_vec();
    let mut stats = DraftStats::default();
    let mut want = match length {
        DraftLength::Fixed(k) => k,
        DraftLength::Adaptive => START,
    };
    // Adaptive at 0: rounds left before the next probe, and the wait after it.
    let (mut wait, mut backoff) = (0usize, 4usize);
    let (mut prompt_seconds, mut step_seconds) = (0.0, 0.0);
    let mut generated = 0;
    while generated < new_tokens {
        let started = Instant::now();
        let left = new_tokens - generated;
        let probing = length == DraftLength::Adaptive && want == 0 && wait == 0;
        // Every fed token needs a position and the last token is never fed: at most left − 1.
        let k = if probing { 1 } else { want }.min(left - 1);
        // The draft's proposals, per step one column, and its distributions (sampling only).
        let mut drafts: Vec<Vec<i64>> = Vec::with_capacity(k);
        let mut q: Vec<Vec<Vec<f64>>> = Vec::with_capacity(k);
        if k > 0 {
            let clock = Instant::now();
            let calls = &mut stats.draft_calls;
            // Drop the draft's rejected proposals.
            d_session.truncate(tokens[0].len() - 1)?;
            for step in 0..k {
                // First what the draft has not seen (one or two tokens from the last round, or
                // the prompt), then each proposal as it comes.
                let logits = match step {
                    0 => feed_from(&mut d_session, &tokens, &[], d_single, calls)?,
                    _ => {
                        let prev = &drafts[step - 1];
                        let col = Array2::from_shape_fn((batch, 1), |(b, _)| prev[b]);
                        *calls += 1;
                        d_session.feed(col.view(), None)?
                    }
                };
                let last = logits.len_of(Axis(1)) - 1;
                let mut col = Vec::with_capacity(batch);
                let mut dists = Vec::with_capacity(batch);
                for b in 0..batch {
                    let l = row(&logits, b, last);
                    if greedy {
                        col.push(argmax(&l) as i64);
                    } else {
                        let d = sampler.distribution(&l);
                        col.push(sampler.draw(&d) as i64);
                        dists.push(d);
                    }
                }
                drafts.push(col);
                q.push(dists);
            }
            stats.draft_seconds += clock.elapsed().as_secs_f64();
            stats.draft_rounds += 1;
            stats.proposed += k * batch;
        }
        let clock = Instant::now();
        let logits = feed_from(
            &mut t_session,
            &tokens,
            &drafts,
            t_single,
            &mut stats.target_calls,
        )?;
        // Logits for the position after the last kept token, then after each draft.
        let base = logits.len_of(Axis(1)) - (k + 1);
        let mut accepted = vec![0usize; batch];
        // Per row and position: the target's argmax (greedy) or distribution (sampling).
        let mut top: Vec<Vec<usize>> = vec![Vec::with_capacity(k + 1); batch];
        let mut p: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(k + 1); batch];
        for b in 0..batch {
            for i in 0..=k {
                let l = row(&logits, b, base + i);
                match greedy {
                    true => top[b].push(argmax(&l)),
                    false => p[b].push(sampler.distribution(&l)),
                }
            }
            for (i, col) in drafts.iter().enumerate() {
                let x = col[b] as usize;
                let keep = match greedy {
                    true => top[b][i] == x,
                    // u < p(x) / q(x), without dividing (q(x) > 0: x was drawn from q).
                    false => sampler.uniform() * q[i][b][x] < p[b][i][x],
                };
                if !keep {
                    break;
                }
                accepted[b] += 1;
            }
        }
        let m = accepted.iter().copied().min().unwrap_or(0);
        for b in 0..batch {
            let drafted = (0..m).map(|i| drafts[i][b]);
            tokens[b].extend(drafted);
            let next = if accepted[b] > m {
                drafts[m][b] as usize
            } else if greedy {
                top[b][m]
            } else if m < k {
                let residual: Vec<f64> = p[b][m]
                    .iter()
                    .zip(&q[m][b])
                    .map(|(p, q)| (p - q).max(0.0))
                    .collect();
                match residual.iter().sum::<f64>() > 0.0 {
                    true => sampler.draw(&residual),
                    // Rounding only: a rejection means p < q somewhere, so mass is left.
                    false => sampler.draw(&p[b][m]),
                }
            } else {
                sampler.draw(&p[b][m])
            };
            tokens[b].push(next as i64);
        }
        stats.accepted += accepted.iter().sum::<usize>();
        // Keep the target's cache up to the tokens kept but the newest.
        t_session.truncate(tokens[0].len() - 1)?;
        stats.target_seconds += clock.elapsed().as_secs_f64();
        generated += m + 1;
        if length == DraftLength::Adaptive {
            if probing {
                wait = backoff;
                backoff = (backoff * 2).min(64);
            } else if want == 0 {
                wait = wait.saturating_sub(1);
            }
            if k > 0 && m == k {
                want = (want.max(k) + 2).min(MAX_ADAPTIVE);
                backoff = 4;
            } else if k > 0 && !probing {
                want -= 1;
                if want == 0 {
                    wait = backoff;
                }
            }
        }
        let took = started.elapsed().as_secs_f64();
        if prompt_seconds == 0.0 {
            prompt_seconds = took;
        } else {
            step_seconds += took;
        }
        progress(generated, new_tokens);
    }
    Ok((
        Generation {
            tokens,
            steps: stats.target_calls,
            prompt_seconds,
            step_seconds,
        },
        stats,
    ))
}
