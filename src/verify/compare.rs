//! Output comparison: every metric is measured and kept, whatever the verdict, so a report can
//! say by how much a check passed or failed. Shape problems are reported apart from tolerance
//! failures.

use ndarray::{ArrayD, Axis};
use serde::Serialize;

use super::fixture::Tolerance;

/// Relative errors divide by `max(|expected|, REL_FLOOR)`, so values near zero do not turn a
/// tiny absolute error into a huge relative one.
pub const REL_FLOOR: f64 = 1e-3;

/// How one output fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Some element is outside `atol + rtol·|expected|` (or not finite where expected is).
    Fail,
    /// The shapes differ: no numbers to compare.
    ShapeMismatch,
    /// The graph declares another element type than float32 (values, cast, still measured).
    DtypeMismatch,
}

/// Measured differences between an output and its reference.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub max_abs: f64,
    pub max_rel: f64,
    pub mean_abs: f64,
    pub cosine: f64,
    /// For logits: the fraction of rows whose argmax agrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argmax_agreement: Option<f64>,
    /// For logits: the mean over rows of KL(softmax(expected) ‖ softmax(actual)), in nats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl_divergence: Option<f64>,
    /// For logits: rows whose argmax differs where the reference's top-1/top-2 gap exceeds the
    /// tie bound (damage), and where it does not (near-ties, which any reduced precision flips).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flips_beyond_ties: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flips_at_ties: Option<usize>,
    /// Elements compared (padded positions excluded where the case says so).
    pub compared: usize,
    /// Elements outside tolerance.
    pub violations: usize,
}

/// One output compared.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub status: Status,
    pub expected_shape: Vec<usize>,
    pub actual_shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// Which positions take part.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions<'a> {
    pub tolerance: Tolerance,
    /// `[batch, sequence]` mask: for outputs shaped `[batch, sequence, ...]`, positions where it
    /// is 0 are skipped.
    pub positions: Option<&'a ndarray::Array2<i64>>,
    /// Compute argmax agreement over the last axis.
    pub argmax: bool,
    /// With `argmax`: the reference's top-1/top-2 logit gap (nats) at or below which a flipped
    /// argmax counts as a near-tie rather than damage.
    pub tie_gap: f64,
}

/// Compares `actual` with `expected`.
pub fn compare(
    actual: &ArrayD<f32>,
    expected: &ArrayD<f32>,
    opts: &CompareOptions<'_>,
) -> Comparison {
    let (es, as_) = (expected.shape().to_vec(), actual.shape().to_vec());
    if es != as_ {
        return Comparison {
            status: Status::ShapeMismatch,
            expected_shape: es,
            actual_shape: as_,
            metrics: None,
        };
    }
    let tol = opts.tolerance;
    let mut acc = Acc::default();
    let mut rows_total = 0usize;
    let mut rows_agree = 0usize;
    let mut kl_sum = 0f64;
    let (mut beyond, mut at_ties) = (0usize, 0usize);
    let last = es.len().saturating_sub(1);
    let per_position = es.len() >= 3;
    for (idx, (a_row, e_row)) in actual
        .lanes(Axis(last))
        .into_iter()
        .zip(expected.lanes(Axis(last)))
        .enumerate()
    {
        if per_position {
            if let Some(mask) = opts.positions {
                // Rows of a [b, s, ..., d] tensor run b-major, s next.
                let inner: usize = es[2..last].iter().product();
                let (b, s) = (idx / (es[1] * inner), (idx / inner) % es[1]);
                if mask.get((b, s)).is_some_and(|&m| m == 0) {
                    continue;
                }
            }
        }
        for (&a, &e) in a_row.iter().zip(e_row.iter()) {
            acc.add(a as f64, e as f64, tol);
        }
        if opts.argmax {
            rows_total += 1;
            if argmax(a_row.iter()) == argmax(e_row.iter()) {
                rows_agree += 1;
            } else if top2_gap(e_row.iter()) > opts.tie_gap {
                beyond += 1;
            } else {
                at_ties += 1;
            }
            kl_sum += kl(e_row.iter(), a_row.iter());
        }
    }
    let mut metrics = acc.finish(opts.argmax.then(|| ratio(rows_agree, rows_total)));
    if opts.argmax {
        metrics.kl_divergence = Some(ratio_f(kl_sum, rows_total));
        metrics.flips_beyond_ties = Some(beyond);
        metrics.flips_at_ties = Some(at_ties);
    }
    Comparison {
        status: if metrics.violations == 0 && metrics.compared > 0 {
            Status::Pass
        } else {
            Status::Fail
        },
        expected_shape: es,
        actual_shape: as_,
        metrics: Some(metrics),
    }
}

#[derive(Default)]
struct Acc {
    n: usize,
    violations: usize,
    max_abs: f64,
    max_rel: f64,
    sum_abs: f64,
    dot: f64,
    aa: f64,
    ee: f64,
}

impl Acc {
    fn add(&mut self, a: f64, e: f64, tol: Tolerance) {
        self.n += 1;
        let d = (a - e).abs();
        // A NaN or infinity where the reference is finite is a violation, never a pass; the
        // same non-finite value on both sides (a mask's -inf, a NaN both give) is agreement.
        let same = a == e || (a.is_nan() && e.is_nan());
        let ok = if e.is_finite() {
            d <= tol.atol + tol.rtol * e.abs()
        } else {
            same
        };
        if !ok {
            self.violations += 1;
        }
        if d.is_finite() {
            self.max_abs = self.max_abs.max(d);
            self.max_rel = self.max_rel.max(d / e.abs().max(REL_FLOOR));
            self.sum_abs += d;
            self.dot += a * e;
            self.aa += a * a;
            self.ee += e * e;
        } else if !same {
            self.max_abs = f64::INFINITY;
            self.max_rel = f64::INFINITY;
        }
    }

    fn finish(self, argmax_agreement: Option<f64>) -> Metrics {
        let denom = (self.aa * self.ee).sqrt();
        Metrics {
            max_abs: self.max_abs,
            max_rel: self.max_rel,
            mean_abs: ratio_f(self.sum_abs, self.n),
            cosine: if denom > 0.0 { self.dot / denom } else { 1.0 },
            argmax_agreement,
            kl_divergence: None,
            flips_beyond_ties: None,
            flips_at_ties: None,
            compared: self.n,
            violations: self.violations,
        }
    }
}

/// The gap between the largest and second-largest value of a row (logits: the top-1/top-2
/// log-probability gap, in nats, since softmax shifts every logit alike).
fn top2_gap<'a>(xs: impl Iterator<Item = &'a f32>) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &x in xs {
        let x = f64::from(x);
        if x > first {
            second = first;
            first = x;
        } else if x > second {
            second = x;
        }
    }
    first - second
}

fn argmax<'a>(xs: impl Iterator<Item = &'a f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in xs.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// KL(softmax(e) ‖ softmax(a)) of one row of logits, in float64 (0 for non-finite rows).
fn kl<'a>(
    e: impl Iterator<Item = &'a f32> + Clone,
    a: impl Iterator<Item = &'a f32> + Clone,
) -> f64 {
    let log_softmax = |xs: Vec<f64>| -> Vec<f64> {
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        xs.iter().map(|x| x - lse).collect()
    };
    let le = log_softmax(e.map(|&x| f64::from(x)).collect());
    let la = log_softmax(a.map(|&x| f64::from(x)).collect());
    let d: f64 = le.iter().zip(&la).map(|(p, q)| p.exp() * (p - q)).sum();
    if d.is_finite() {
        d.max(0.0)
    } else {
        0.0
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn ratio_f(a: f64, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        a / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, ArrayD, IxDyn};

    fn t(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
    }

    fn opts() -> CompareOptions<'static> {
        CompareOptions {
            tolerance: Tolerance {
                atol: 1e-4,
                rtol: 0.0,
            },
            positions: None,
            argmax: true,
            tie_gap: 0.0,
        }
    }

    #[test]
    fn metrics_are_measured() {
        let e = t(&[1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let a = t(&[1, 2, 2], vec![1.0, 0.5, 0.0, 1.0]);
        let c = compare(&a, &e, &opts());
        assert_eq!(c.status, Status::Fail);
        let m = c.metrics.expect("metrics");
        assert_eq!((m.max_abs, m.violations, m.compared), (0.5, 1, 4));
        assert_eq!(m.mean_abs, 0.125);
        assert_eq!(m.max_rel, 0.5 / REL_FLOOR);
        assert_eq!(m.argmax_agreement, Some(1.0));
        assert!((m.cosine - 2.0 / (2.25f64.sqrt() * 2f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn kl_of_logit_rows() {
        // softmax([0, ln 3]) = [1/4, 3/4]; against uniform: 1/4 ln(1/2) + 3/4 ln(3/2).
        let e = t(&[1, 1, 2], vec![0.0, (3.0f32).ln()]);
        let a = t(&[1, 1, 2], vec![0.0, 0.0]);
        let c = compare(&a, &e, &opts());
        let want = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        let got = c.metrics.expect("metrics").kl_divergence.expect("kl");
        assert!((got - want).abs() < 1e-7, "{got} vs {want}");
    }

    #[test]
    fn padded_positions_are_skipped() {
        let e = t(&[1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let a = t(&[1, 2, 2], vec![1.0, 0.0, 9.0, 9.0]);
        let mask = arr2(&[[1i64, 0]]);
        let c = compare(
            &a,
            &e,
            &CompareOptions {
                positions: Some(&mask),
                ..opts()
            },
        );
        assert_eq!(c.status, Status::Pass);
        assert_eq!(c.metrics.expect("metrics").compared, 2);
    }

    #[test]
    fn shape_mismatch_and_nan() {
        let e = t(&[2, 2], vec![0.0; 4]);
        let c = compare(&t(&[4], vec![0.0; 4]), &e, &opts());
        assert_eq!(c.status, Status::ShapeMismatch);
        let c = compare(&t(&[2, 2], vec![0.0, f32::NAN, 0.0, 0.0]), &e, &opts());
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.metrics.expect("metrics").max_abs, f64::INFINITY);
        // The same non-finite value on both sides agrees: a mask's -inf, a NaN both give.
        let both = t(&[2, 2], vec![f32::NEG_INFINITY, f32::NAN, 1.0, 0.0]);
        let c = compare(&both, &both.clone(), &opts());
        assert_eq!(c.status, Status::Pass);
        let m = c.metrics.expect("metrics");
        assert_eq!((m.max_abs, m.violations), (0.0, 0));
        // Not where only one side is: -inf against a finite reference, NaN against -inf.
        let other = t(&[2, 2], vec![f32::NAN, f32::NAN, 1.0, 0.0]);
        assert_eq!(compare(&other, &both, &opts()).status, Status::Fail);
    }

    /// A flipped argmax is a near-tie when the reference's top-two gap is within the bound,
    /// damage when it is beyond it.
    #[test]
    fn flips_are_told_apart_from_ties() {
        // Row 0: top two 0.1 apart (a tie at 0.2); row 1: 1.0 apart; row 2: agrees.
        let expected = t(
            &[1, 3, 3],
            vec![2.0, 1.9, 0.0, 3.0, 2.0, 0.0, 0.0, 1.0, 0.0],
        );
        let actual = t(
            &[1, 3, 3],
            vec![1.9, 2.0, 0.0, 2.0, 3.0, 0.0, 0.0, 1.0, 0.0],
        );
        let c = compare(
            &actual,
            &expected,
            &CompareOptions {
                tie_gap: 0.2,
                ..opts()
            },
        );
        let m = c.metrics.expect("metrics");
        assert_eq!((m.flips_at_ties, m.flips_beyond_ties), (Some(1), Some(1)));
        assert!((m.argmax_agreement.unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((top2_gap([2.0f32, 1.9, 0.0].iter()) - 0.1).abs() < 1e-6);
    }
}
