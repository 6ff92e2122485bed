//! Judging one run: every expected output compared (a missing one is a failure), the declared
//! element type checked, and the first hidden state that diverges named as the block that made
//! it.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD};

use super::compare::{self, CompareOptions, Status};
use super::fixture::Tolerance;
use super::options::OutputTolerance;
use super::report::{Check, NonFinite, OutputCheck};
use crate::graph::io::LOGITS;
use crate::graph::profile::Budget;
use crate::runtime::NamedOutputs;

/// How outputs are judged: the budget, which positions count, and the graph's declared output
/// types (ImageGPT's outputs are floating point; float16 is widened and measured like float32,
/// any other type is reported as a dtype mismatch).
pub(crate) struct Judge<'a> {
    pub tolerance: Tolerance,
    /// Per-output budgets (`--tolerance logits=1e-4,1e-3`), the last match winning.
    pub overrides: &'a [OutputTolerance],
    /// `[batch, sequence]` mask of the positions that count, when padded ones are left out.
    pub positions: Option<&'a Array2<i64>>,
    pub dtypes: &'a BTreeMap<String, String>,
    /// A reduced precision's budget beyond the elementwise one: cosine, argmax agreement and
    /// KL divergence of the logits against the float32 goldens.
    pub budget: Option<&'static Budget>,
}

impl Judge<'_> {
    /// Compares every expected output, then names the first hidden state that diverges.
    pub fn judge(
        &self,
        check: &mut Check,
        actual: &NamedOutputs,
        expected: &BTreeMap<String, ArrayD<f32>>,
    ) {
        for (name, t) in actual {
            let a = t.to_f32();
            let nan = a.iter().filter(|v| v.is_nan()).count();
            let inf = a.iter().filter(|v| v.is_infinite()).count();
            if nan + inf > 0 {
                check.non_finite.push(NonFinite {
                    output: name.clone(),
                    nan,
                    inf,
                });
            }
        }
        let mut names: Vec<&String> = expected.keys().collect();
        names.sort_by_key(|n| output_order(n));
        for name in names {
            let exp = &expected[name];
            let Some((_, act)) = actual.iter().find(|(n, _)| n == name) else {
                check.missing.push(name.clone());
                continue;
            };
            let tolerance = OutputTolerance::for_name(self.overrides, name, self.tolerance);
            let mut c = compare::compare(
                &act.to_f32(),
                exp,
                &CompareOptions {
                    tolerance,
                    positions: self.positions,
                    argmax: name == LOGITS,
                    tie_gap: self.budget.map_or(0.0, |b| b.tie_gap),
                },
            );
            let dtype = self
                .dtypes
                .get(name)
                .cloned()
                .unwrap_or_else(|| "float32".into());
            if let (Some(b), Some(m)) = (self.budget, c.metrics.as_ref()) {
                let logits_ok = m
                    .argmax_agreement
                    .is_none_or(|a| a >= b.min_argmax_agreement)
                    && m.flips_beyond_ties.is_none_or(|f| f == 0)
                    && m.kl_divergence.is_none_or(|k| k <= b.max_kl);
                if c.status == Status::Pass && !(m.cosine >= b.min_cosine && logits_ok) {
                    c.status = Status::Fail;
                }
            }
            let floating = dtype == "float32" || dtype == "float16";
            if !floating && c.status != Status::ShapeMismatch {
                c.status = Status::DtypeMismatch;
            }
            check.outputs.push(OutputCheck {
                name: name.clone(),
                tolerance,
                dtype,
                comparison: c,
            });
        }
        check.first_divergent_layer = first_divergence(&check.outputs);
        check.settle();
    }
}

/// `logits` / `last_hidden_state` first, then hidden states by layer, then the rest by name
/// (the order is stable: a BTreeMap's, then a stable sort).
fn output_order(name: &str) -> (usize, usize) {
    if let Some(i) = name
        .strip_prefix("hidden_states.")
        .and_then(|i| i.parse().ok())
    {
        return (1, i);
    }
    match name {
        "logits" | "last_hidden_state" => (0, 0),
        _ => (2, 0),
    }
}

/// The first `hidden_states.i` outside tolerance, said as the part of the model that made it.
fn first_divergence(outputs: &[OutputCheck]) -> Option<String> {
    let hs: Vec<(usize, &OutputCheck)> = outputs
        .iter()
        .filter_map(|o| Some((o.name.strip_prefix("hidden_states.")?.parse().ok()?, o)))
        .collect();
    let n_layer = hs.iter().map(|(i, _)| *i).max()?;
    let (i, _) = hs
        .iter()
        .find(|(_, o)| o.comparison.status != Status::Pass)?;
    let what = match *i {
        0 => "the embeddings (wte + wpe)".to_string(),
        i if i == n_layer => format!("ln_f after block h.{}", i - 1),
        i => format!("block h.{}", i - 1),
    };
    Some(format!("hidden_states.{i}: {what}"))
}
