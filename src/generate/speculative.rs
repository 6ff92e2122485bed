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
/// The adaptive length's first value, before anything was measured.
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
    /// The length with the most tokens per second by what the run has measured so far
    /// ([`LengthPolicy`]): 4 in the first round, then up to [`MAX_ADAPTIVE`]. At 0 the round is
    /// the target alone, and the draft is tried again with 1 token after 4, 8, … 64 such
    /// rounds, so a draft the target never agrees with costs a draft step in dozens of tokens.
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

/// The adaptive draft length: from what the run has measured, the length whose round gives
/// the most tokens per second.
///
/// A round with `k` draft tokens costs `k` draft steps and one target call over `k + 1` new
/// tokens per row, and gives `1 + α + α² + … + αᵏ` tokens when each draft token is kept with
/// probability `α` after the ones before it were. So it picks the `k` in `0..=MAX_ADAPTIVE`
/// with the most `(1 + α + … + αᵏ) / (k·d + t(k + 1))`, where
/// - `α` is the batch's rate of keeping a draft token, counted over rounds (the tokens every
///   row kept, against the rounds that stopped at a rejection; recent rounds count more);
/// - `d` is a draft step's time;
/// - `t(n)`, a target call's time with `n` new tokens per row, is a straight line fitted to the
///   target calls so far (flat until two lengths were seen). A model whose step reads its
///   weights once costs about the same at any `n`; a small one at a large batch computes every
///   token, so `t` grows with `n` and shorter rounds win.
#[derive(Debug, Clone, Default)]
struct LengthPolicy {
    /// Decayed sums over rounds with a draft: positions every row kept, and rejections.
    kept: f64,
    rejected: f64,
    /// Draft step seconds (decayed mean) and its weight.
    step: f64,
    step_weight: f64,
    /// Decayed sums for the target line: weight, n, t, n², n·t.
    fit: [f64; 5],
}

/// How much a round's figures keep of the earlier ones': about the last 20 rounds count.
const DECAY: f64 = 0.95;

impl LengthPolicy {
    /// Records a round that proposed `k` tokens (taking `draft_seconds`), of which every row
    /// kept the first `m`.
    fn draft_round(&mut self, k: usize, m: usize, draft_seconds: f64) {
        self.kept = self.kept * DECAY + m as f64;
        self.rejected = self.rejected * DECAY + f64::from(u8::from(m < k));
        self.step = (self.step * self.step_weight * DECAY + draft_seconds)
            / (self.step_weight * DECAY + k as f64);
        self.step_weight = self.step_weight * DECAY + k as f64;
    }

    /// Records a target call over `n` new tokens per row that took `seconds`.
    fn target_call(&mut self, n: usize, seconds: f64) {
        let n = n as f64;
        for (sum, x) in self
            .fit
            .iter_mut()
            .zip([1.0, n, seconds, n * n, n * seconds])
        {
            *sum = *sum * DECAY + x;
        }
    }

    /// The fitted target call time at `n` new tokens per row (`None` before any call).
    fn target_seconds(&self, n: usize) -> Option<f64> {
        let [w, sn, st, snn, snt] = self.fit;
        if w <= 0.0 {
            return None;
        }
        let (mean_n, mean_t) = (sn / w, st / w);
        let var = snn / w - mean_n * mean_n;
        // One length seen (or all alike): flat. A call's fixed part (reading the weights,
        // launching the kernels) is taken to be at least a quarter of an average call's: a line
        // through two noisy lengths can otherwise run to near 0 at one token and make the
        // target alone look several times faster than it is (the trained pair at batch 8: 0.2
        // ms for a 0.53 ms step).
        let slope = match var > 1e-9 {
            true => ((snt / w - mean_n * mean_t) / var).clamp(0.0, 0.75 * mean_t / mean_n),
            false => 0.0,
        };
        Some((mean_t + slope * (n as f64 - mean_n)).max(1e-9))
    }

    /// The draft length to propose next: [`START`] until a round with a draft was measured.
    fn length(&self) -> usize {
        let Some(t1) = self.target_seconds(1) else {
            return START;
        };
        if self.step_weight <= 0.0 {
            return START;
        }
        // Laplace's rule keeps a draft from looking perfect (or useless) after one round.
        let alpha = (self.kept + 1.0) / (self.kept + self.rejected + 2.0);
        let (mut best, mut best_rate) = (0, 1.0 / t1);
        let mut tokens = 1.0;
        for k in 1..=MAX_ADAPTIVE {
            tokens += alpha.powi(k as i32);
            let cost = k as f64 * self.step + self.target_seconds(k + 1).unwrap_or(t1);
            if tokens / cost > best_rate {
                (best, best_rate) = (k, tokens / cost);
            }
        }
        best
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
    let mut policy = LengthPolicy::default();
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
        let mut draft_seconds = 0.0;
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
            draft_seconds = clock.elapsed().as_secs_f64();
            stats.draft_seconds += draft_seconds;
            stats.draft_rounds += 1;
            stats.proposed += k * batch;
        }
        let clock = Instant::now();
        let past = t_session.past();
        let fed = tokens[0].len() - past + k;
        let logits = feed_from(
            &mut t_session,
            &tokens,
            &drafts,
            t_single,
            &mut stats.target_calls,
        )?;
        // The prompt's call (no past, or a longer prompt) does not say what verifying costs.
        if past > 0 && fed == k + 1 {
            policy.target_call(fed, clock.elapsed().as_secs_f64());
        }
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
        if k > 0 {
            policy.draft_round(k, m, draft_seconds);
        }

        if length == DraftLength::Adaptive {
            let was = want;
            want = policy.length();
            if probing {
                // A probe that kept its token earns the draft its rounds back.
                match m == k {
                    true => backoff = 4,
                    false => {
                        wait = backoff;
                        backoff = (backoff * 2).min(64);
                    }
                }
            } else if want == 0 {
                wait = match was {
                    0 => wait.saturating_sub(1),
                    _ => backoff,
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy that has seen `rounds` rounds of `k` draft tokens keeping `m` each, draft steps
    /// of `step` seconds, and target calls costing `t(n)` at 5 and 17 new tokens per row.
    fn policy(
        k: usize,
        m: usize,
        rounds: usize,
        step: f64,
        t: impl Fn(usize) -> f64,
    ) -> LengthPolicy {
        let mut p = LengthPolicy::default();
        for _ in 0..rounds {
            p.draft_round(k, m, step * k as f64);
            for n in [5, 17] {
                p.target_call(n, t(n));
            }
        }
        p
    }

    #[test]
    fn starts_at_four_before_anything_is_measured() {
        assert_eq!(LengthPolicy::default().length(), START);
    }

    #[test]
    fn a_flat_target_and_a_cheap_followed_draft_propose_the_most() {
        // Every token kept, a step a twentieth of a target call that costs the same at any
        // length (a model that reads its weights once per call): longer is always better.
        let p = policy(16, 16, 20, 0.05e-3, |_| 1e-3);
        assert_eq!(p.length(), MAX_ADAPTIVE);
    }

    #[test]
    fn a_target_that_computes_every_token_gets_short_rounds() {
        // t(n) = 0.6 + 0.15 n ms (a small model at batch 8), draft step 0.1 ms, 7 of 8 kept
        // every round: α = 0.868 (the decayed counts 89.6 kept, 12.8 rejections, Laplace), and
        // the rate (1 + α + … + αᵏ) / (0.1 k + 0.6 + 0.15 (k + 1)) tokens per ms is 2.183 at
        // k = 3, 2.195 at 4, 2.167 at 5 and 1.45 at 16.
        let p = policy(8, 7, 20, 0.1e-3, |n| (0.6 + 0.15 * n as f64) * 1e-3);
        let t = |n| p.target_seconds(n).expect("fitted");
        assert!((t(1) - 0.75e-3).abs() < 1e-9, "{}", t(1));
        assert!((t(2) - t(1) - 0.15e-3).abs() < 1e-9, "{}", t(2));
        assert_eq!(p.length(), 4);
    }

    #[test]
    fn a_draft_never_followed_is_dropped() {
        // Six rounds with nothing kept: α = 1 / (1 + 5.30 + 1) = 0.137 (Laplace over the
        // decayed rejections), so one draft token gives 1.137 tokens per 1.2 ms, less than the
        // target alone's 1 per ms. (After three rounds α is still 0.206: 1.206 per 1.2 ms, and
        // one more token is tried.)
        let p = policy(4, 0, 6, 0.2e-3, |_| 1e-3);
        assert_eq!(p.length(), 0);
    }
}
