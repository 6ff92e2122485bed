//! What a model is for, measured beside the elementwise metrics: the teacher-forced NLL of
//! labelled tokens, classification accuracy on a labelled set, and where a greedy generation
//! first leaves the reference's. Each is measured against the reference's own numbers (the
//! goldens, or the case's labelled set and generations, see `fixtures/README.md`), and the NLL
//! and accuracy are judged by the precision's budget.

use ndarray::{s, Array2, ArrayD, ArrayView2, ArrayView3, Ix2, Ix3};
use serde::Serialize;

use super::fixture::{GreedyRun, LabelledSet};
use crate::base::{IoSpec, Tensor};
use crate::generate::{self, DecoderDims, Sampler, Strategy};
use crate::graph::io::{ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS};
use crate::graph::profile::Budget;
use crate::runtime::{LoadedModel, RuntimeError};

/// Why a task metric could not be taken; the check reports it as its error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the graph takes inputs other than input_ids, attention_mask, position_ids")]
    Inputs,
    #[error("the graph has no `logits` output")]
    NoLogits,
    /// Logits of another rank than the head gives.
    #[error("{0} logits are not {1}")]
    Rank(&'static str, &'static str),
    #[error("scored {scored} tokens of the labelled set, the reference has {reference}")]
    Scored { scored: usize, reference: usize },
    #[error("logits cover {found} positions, not {expected}")]
    Positions { found: usize, expected: usize },
    #[error("{0}")]
    Run(#[from] RuntimeError),
    #[error("run {index} ({description}): {source}")]
    Generation {
        index: usize,
        description: String,
        #[source]
        source: generate::GenerateError,
    },
}

/// Rows per run when a labelled set goes through a graph.
const CHUNK: usize = 50;

/// Teacher-forced next-token NLL, ours against the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct NllMetric {
    /// Where the tokens came from: `labelled set` (the case's held-out tokens).
    pub source: String,
    /// Predicted tokens counted (padded positions excluded).
    pub tokens: usize,
    /// Mean NLL in nats per token.
    pub reference: f64,
    pub ours: f64,
    /// `(ours − reference) / reference`.
    pub relative_increase: f64,
    /// The precision's budget for it.
    pub max_increase: f64,
    pub pass: bool,
}

/// Next-token argmax flips over a labelled set, told apart by the reference's top-1/top-2 gap.
#[derive(Debug, Clone, Serialize)]
pub struct FlipMetric {
    pub positions: usize,
    /// Flips where the reference's gap exceeds `tie_gap` (damage: a failure when the precision
    /// has a tie gap; float32 has none, and its flips are reported).
    pub beyond_ties: usize,
    /// Flips at near-ties.
    pub at_ties: usize,
    pub tie_gap: f64,
    /// The largest reference gap at any flip, in nats (0 when nothing flipped): the tie gap a
    /// precision would need to pass on this set.
    pub max_gap_at_flip: f64,
    pub pass: bool,
}

/// Classification accuracy on a labelled set, ours against the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyMetric {
    pub examples: usize,
    /// Fractions in [0, 1].
    pub reference: f64,
    pub ours: f64,
    /// `100 · (reference − ours)`, in percentage points.
    pub drop_points: f64,
    /// Examples whose predicted class differs from the reference's prediction.
    pub disagreements: usize,
    pub max_drop_points: f64,
    pub pass: bool,
}

/// Greedy generations against the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct GreedyMetric {
    pub runs: usize,
    /// Generated tokens compared (every row of every run).
    pub tokens: usize,
    /// Runs with a row that left the reference's stream.
    pub diverged_runs: usize,
    /// The first place, in run order, where a generated token differs; `None`: token for
    /// token equal.
    pub first_divergence: Option<Divergence>,
}

/// Where a greedy stream first differs.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// Index of the run in the case's generations, and its description.
    pub run: usize,
    pub description: String,
    pub row: usize,
    /// Position in the row's sequence (0 = the first prompt token).
    pub position: usize,
    /// Generated tokens before it (0: the first generated token already differs).
    pub generated_before: usize,
    pub expected: i64,
    pub got: i64,
}

/// Sum and count of `-log softmax(logits[b, t])[ids[b, t + 1]]` over the positions whose
/// target is a real token (`mask[b, t + 1] == 1`) inside the vocabulary.
pub fn nll_sum(
    logits: ArrayView3<'_, f32>,
    ids: ArrayView2<'_, i64>,
    mask: Option<ArrayView2<'_, i64>>,
) -> (f64, usize) {
    let (batch, seq, vocab) = logits.dim();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for b in 0..batch.min(ids.nrows()) {
        // Position t scores ids[t + 1]: the last position only when the ids go one further.
        for t in 0..seq.min(ids.ncols().saturating_sub(1)) {
            let counted = mask.is_none_or(|m| m.get((b, t + 1)) == Some(&1));
            let target = usize::try_from(ids[(b, t + 1)]).ok().filter(|&i| i < vocab);
            let (true, Some(target)) = (counted, target) else {
                continue;
            };
            let row = logits.slice(s![b, t, ..]);
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let lse = max
                + row
                    .iter()
                    .map(|&x| (f64::from(x) - max).exp())
                    .sum::<f64>()
                    .ln();
            sum += lse - f64::from(row[target]);
            n += 1;
        }
    }
    (sum, n)
}

fn nll_metric(
    source: &str,
    reference: f64,
    ours: f64,
    tokens: usize,
    budget: &Budget,
) -> NllMetric {
    let relative_increase = if reference > 0.0 {
        (ours - reference) / reference
    } else {
        ours - reference
    };
    NllMetric {
        source: source.into(),
        tokens,
        reference,
        ours,
        relative_increase,
        max_increase: budget.max_nll_increase,
        pass: ours.is_finite() && relative_increase <= budget.max_nll_increase,
    }
}

/// A feed of `ids` for a graph whose inputs are `input_ids` / `attention_mask` (all ones) /
/// `position_ids` (`0..len` per row); `None` for a graph with any other input.
fn sequence_feed(inputs: &[IoSpec], ids: ArrayView2<'_, i64>) -> Option<Vec<(String, Tensor)>> {
    let (b, len) = ids.dim();
    inputs
        .iter()
        .map(|spec| {
            let t = match spec.name.as_str() {
                INPUT_IDS => ids.to_owned(),
                ATTENTION_MASK => Array2::<i64>::ones((b, len)),
                POSITION_IDS => Array2::from_shape_fn((b, len), |(_, j)| j as i64),
                _ => return None,
            };
            Some((spec.name.clone(), Tensor::I64(t.into_dyn())))
        })
        .collect()
}

/// The graph's `logits` for `ids`, run in chunks of rows.
fn logits_of(
    model: &mut dyn LoadedModel,
    inputs: &[IoSpec],
    ids: ArrayView2<'_, i64>,
) -> Result<Vec<ArrayD<f32>>, TaskError> {
    let mut out = Vec::new();
    for start in (0..ids.nrows()).step_by(CHUNK) {
        let rows = ids.slice(s![start..(start + CHUNK).min(ids.nrows()), ..]);
        let feed = sequence_feed(inputs, rows).ok_or(TaskError::Inputs)?;
        let borrowed: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let got = model.run(&borrowed)?;
        let logits = got
            .into_iter()
            .find(|(n, _)| n == LOGITS)
            .ok_or(TaskError::NoLogits)?;
        out.push(logits.1.to_f32());
    }
    Ok(out)
}

/// The labelled set's NLL through a causal-LM graph: SOS + the first `T − 1` tokens in, each
/// next token scored, against the reference's log-probabilities.
pub fn labelled_nll(
    model: &mut dyn LoadedModel,
    inputs: &[IoSpec],
    set: &LabelledSet,
    budget: &Budget,
) -> Result<(Option<NllMetric>, Option<FlipMetric>), TaskError> {
    if set.logprob.is_none() && set.top2.is_none() {
        return Ok((None, None));
    }
    let cols = set.ids.ncols();
    let fed = set.ids.slice(s![.., ..cols - 1]);
    let (mut sum, mut n) = (0.0, 0);
    let mut flips = set.top2.as_ref().map(|_| FlipMetric {
        positions: 0,
        beyond_ties: 0,
        at_ties: 0,
        tie_gap: budget.tie_gap,
        max_gap_at_flip: 0.0,
        pass: true,
    });
    for (i, chunk) in logits_of(model, inputs, fed)?.into_iter().enumerate() {
        let chunk = chunk
            .into_dimensionality::<Ix3>()
            .map_err(|_| TaskError::Rank("the", "[batch, sequence, vocab]"))?;
        let (rows, positions, _) = chunk.dim();
        if positions != cols - 1 {
            return Err(TaskError::Positions {
                found: positions,
                expected: cols - 1,
            });
        }
        let start = i * CHUNK;
        // nll_sum scores ids[t + 1] at position t: the fed ids plus the last token.
        let ids = set.ids.slice(s![start..start + rows, ..]);
        let (s_, n_) = nll_sum(chunk.view(), ids, None);
        sum += s_;
        n += n_;
        if let (Some(f), Some((argmax, gap))) = (flips.as_mut(), &set.top2) {
            for ((b, t), &want) in argmax.slice(s![start..start + rows, ..]).indexed_iter() {
                let got = generate::sampling::argmax(&chunk.slice(s![b, t, ..]).to_vec()) as i64;
                f.positions += 1;
                if got == want {
                    continue;
                }
                let gap = f64::from(gap[(start + b, t)]);
                f.max_gap_at_flip = f.max_gap_at_flip.max(gap);
                if gap > f.tie_gap {
                    f.beyond_ties += 1;
                } else {
                    f.at_ties += 1;
                }
            }
        }
    }
    if let Some(f) = flips.as_mut() {
        // Float32 has no tie gap: its flips are reported, never judged.
        f.pass = f.beyond_ties == 0 || f.tie_gap == 0.0;
    }
    let Some(reference) = &set.logprob else {
        return Ok((None, flips));
    };
    let want = reference.len();
    if n != want {
        return Err(TaskError::Scored {
            scored: n,
            reference: want,
        });
    }
    let reference = -reference.iter().map(|&x| f64::from(x)).sum::<f64>() / want as f64;
    let nll = nll_metric("labelled set", reference, sum / n as f64, n, budget);
    Ok((Some(nll), flips))
}

/// The labelled set through a classifier graph (the tokens without SOS, as the reference
/// classifier is fed): accuracy against the labels, beside the reference's.
pub fn accuracy(
    model: &mut dyn LoadedModel,
    inputs: &[IoSpec],
    set: &LabelledSet,
    budget: &Budget,
) -> Result<AccuracyMetric, TaskError> {
    let fed = set.ids.slice(s![.., 1..]);
    let mut predicted = Vec::with_capacity(set.labels.len());
    for chunk in logits_of(model, inputs, fed)? {
        let chunk = chunk
            .into_dimensionality::<Ix2>()
            .map_err(|_| TaskError::Rank("classifier", "[batch, labels]"))?;
        for row in chunk.rows() {
            predicted.push(generate::sampling::argmax(&row.to_vec()) as i64);
        }
    }
    let n = set.labels.len();
    let correct = |p: &[i64]| p.iter().zip(&set.labels).filter(|(a, b)| a == b).count();
    let ours = correct(&predicted) as f64 / n as f64;
    let reference = correct(&set.predicted) as f64 / n as f64;
    let drop_points = 100.0 * (reference - ours);
    Ok(AccuracyMetric {
        examples: n,
        reference,
        ours,
        drop_points,
        disagreements: predicted
            .iter()
            .zip(&set.predicted)
            .filter(|(a, b)| a != b)
            .count(),
        max_drop_points: budget.max_accuracy_drop,
        // A hair of float slack: 0 points allowed means none lost.
        pass: drop_points <= budget.max_accuracy_drop + 1e-9,
    })
}

/// Every reference generation replayed greedily through the decoder.
pub fn greedy(
    model: &mut dyn LoadedModel,
    dims: &DecoderDims,
    runs: &[GreedyRun],
) -> Result<GreedyMetric, TaskError> {
    let mut metric = GreedyMetric {
        runs: runs.len(),
        tokens: 0,
        diverged_runs: 0,
        first_divergence: None,
    };
    for (i, run) in runs.iter().enumerate() {
        let plen = run.prompt.first().map_or(0, Vec::len);
        let new = run
            .tokens
            .first()
            .map_or(0, |t| t.len().saturating_sub(plen));
        let mut sampler = Sampler::new(Strategy::Greedy, 0);
        let got = generate::generate(model, dims, &run.prompt, new, &mut sampler, &mut |_, _| {})
            .map_err(|source| TaskError::Generation {
            index: i,
            description: run.description.clone(),
            source,
        })?;
        let mut diverged = false;
        for (row, (want, got)) in run.tokens.iter().zip(&got.tokens).enumerate() {
            metric.tokens += want.len().saturating_sub(plen);
            let Some(p) = (plen..want.len()).find(|&p| got.get(p) != want.get(p)) else {
                continue;
            };
            diverged = true;
            if metric.first_divergence.is_none() {
                metric.first_divergence = Some(Divergence {
                    run: i,
                    description: run.description.clone(),
                    row,
                    position: p,
                    generated_before: p - plen,
                    expected: want[p],
                    got: got.get(p).copied().unwrap_or(-1),
                });
            }
        }
        metric.diverged_runs += usize::from(diverged);
    }
    Ok(metric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array3};

    #[test]
    fn nll_scores_the_next_token_and_skips_padding() {
        // Two positions, vocab 2: logits [0, ln 3] -> p = [1/4, 3/4].
        let l3 = 3f32.ln();
        let logits =
            Array3::from_shape_vec((1, 3, 2), vec![0.0, l3, 0.0, l3, 0.0, 0.0]).expect("shape");
        let ids = arr2(&[[0i64, 1, 0]]);
        let (sum, n) = nll_sum(logits.view(), ids.view(), None);
        assert_eq!(n, 2);
        let want = -(0.75f64.ln()) - (0.25f64.ln());
        assert!((sum - want).abs() < 1e-6, "{sum} vs {want}");
        let mask = arr2(&[[1i64, 1, 0]]);
        let (sum, n) = nll_sum(logits.view(), ids.view(), Some(mask.view()));
        assert_eq!(n, 1);
        assert!((sum + 0.75f64.ln()).abs() < 1e-6);
        // A target outside the vocabulary (SOS) is not scored.
        let ids = arr2(&[[0i64, 2, 1]]);
        assert_eq!(nll_sum(logits.view(), ids.view(), None).1, 1);
    }
}
