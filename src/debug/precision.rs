//! `debug precision`: the fewest parts of a model to keep float32 so that a reduced precision
//! meets an accuracy budget on a case's labelled set.
//!
//! Each keep-list tried is exported as `export --keep-float32` writes it and verified against
//! the case as `verify --model G --fixture CASE` verifies it ([`verify::model_against_case`]):
//! the numbers are the ones verify reports for the graph the printed command writes. The
//! budget ([`Target`]) is the precision's own row (its NLL increase and accuracy drop) unless
//! given; `atol` adds the largest absolute difference from the case's goldens.
//!
//! The search is greedy over parts of the model ([`Part`]): without a keep-list first (met:
//! nothing to keep), then every block kept (not met: no keep-list meets the budget); else it
//! adds the block that helps most until the budget holds, then tries each chosen block as
//! fewer of its matrices, adding the matrix that helps most until the budget holds again.
//! "Helps most": the smallest sum over the budget's criteria of the excess over the limit, each
//! as a share of the excess without a keep-list (a tie goes to the widest margin). Lists are
//! measured once each.
//!
//! JSON (schema 1): `{schema, case, profile, precision, runtime, target: {max_nll_increase,
//! max_accuracy_drop, atol}, met, keep_float32: [..], export_command, evaluations, seconds,
//! baseline, found, trace: [..]}`, where `baseline` (no keep-list), `found` (the list found,
//! or the best measured when none met) and each `trace` entry (every evaluation, in order)
//! are `{keep_float32: [..], matrices, nll?: {reference, ours, relative_increase},
//! accuracy?: {examples, reference, ours, drop_points}, max_abs, meets}`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::export::{self, ExportError, ExportOptions};
use crate::graph::keep::{block, block_matrix, PatternError, ScopePattern, BLOCK_MATRICES};
use crate::graph::{Head, KeepFloat32, Precision, Profile};
use crate::runtime::support::precision_flags;
use crate::verify::fixture::{self, Case, FixtureError};
use crate::verify::report::{Check, CheckStatus};
use crate::verify::{self, VerifyError, VerifyOptions};

/// The JSON schema version.
pub const SCHEMA: u32 = 1;

/// Why a search could not run (exit code 2: nothing was judged).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("case {case} has no labelled set (`labelled` in its manifest): debug precision judges a keep-list by the NLL and accuracy on one")]
    NoLabelledSet { case: String },
    #[error("case {case}: the checkpoint has neither the causal LM's nor the classifier's weights, or the case has no goldens for them")]
    NoHeads { case: String },
    #[error("cannot open the case's checkpoint {path}: {source}")]
    Checkpoint {
        path: String,
        #[source]
        source: CheckpointError,
    },
    #[error("cannot export {what}: {source}")]
    Export {
        /// `without a keep-list`, or `keep-list h.0,h.1`.
        what: String,
        #[source]
        source: ExportError,
    },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The runtime did not run a graph (or does not run its profile): nothing to measure.
    #[error("{head} graph on {runtime}: {message}")]
    Check {
        head: String,
        runtime: String,
        message: String,
    },
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("cannot make a temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
}

/// What a keep-list must reach on the case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Highest relative increase of the labelled set's NLL over the reference's (0.001 =
    /// +0.1 %).
    pub max_nll_increase: f64,
    /// Highest drop in classification accuracy, in percentage points.
    pub max_accuracy_drop: f64,
    /// Highest absolute difference of any output from the case's goldens (`None`: not judged).
    pub atol: Option<f64>,
}

impl Target {
    /// The precision's own budget: its row's NLL increase and accuracy drop.
    pub fn of(precision: Precision) -> Target {
        let b = &precision.spec().budget;
        Target {
            max_nll_increase: b.max_nll_increase,
            max_accuracy_drop: b.max_accuracy_drop,
            atol: None,
        }
    }

    /// `(measured, limit, unit)` per criterion that applies: the unit is the smallest excess
    /// worth telling apart (one example's worth of accuracy).
    fn criteria(&self, m: &Measured) -> Vec<(f64, f64, f64)> {
        let mut out = Vec::with_capacity(3);
        if let Some(n) = &m.nll {
            out.push((n.relative_increase, self.max_nll_increase, 1e-6));
        }
        if let Some(a) = &m.accuracy {
            let one = 100.0 / a.examples.max(1) as f64;
            // A hair of slack, as verify: 0 points allowed means none lost.
            out.push((a.drop_points, self.max_accuracy_drop + 1e-9, one));
        }
        if let Some(atol) = self.atol {
            out.push((m.max_abs, atol, 1e-7));
        }
        out
    }

    /// Whether `m` is within every limit (NaN never is).
    fn meets(&self, m: &Measured) -> bool {
        self.criteria(m).iter().all(|&(v, limit, _)| v <= limit)
    }
}

/// A part of the model to keep: a whole block, or one of its matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Part {
    pub layer: usize,
    /// An index into [`BLOCK_MATRICES`]; `None`: the whole block.
    pub matrix: Option<usize>,
}

impl Part {
    fn pattern(self) -> String {
        match self.matrix.and_then(|m| BLOCK_MATRICES.get(m)) {
            Some(m) => block_matrix(self.layer, m),
            None => block(self.layer),
        }
    }

    fn matrices(self) -> usize {
        match self.matrix {
            Some(_) => 1,
            None => BLOCK_MATRICES.len(),
        }
    }
}

/// A keep-list as parts, in the model's order.
type Parts = BTreeSet<Part>;

/// The labelled set's NLL with a keep-list, beside the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct Nll {
    pub reference: f64,
    pub ours: f64,
    pub relative_increase: f64,
}

/// Classification accuracy with a keep-list, beside the reference's (fractions in [0, 1]).
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub examples: usize,
    pub reference: f64,
    pub ours: f64,
    pub drop_points: f64,
}

/// One keep-list, exported and verified.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub keep_float32: Vec<String>,
    /// Block matrices the list keeps float32.
    pub matrices: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll: Option<Nll>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Accuracy>,
    /// The largest absolute difference of any output from the case's goldens.
    pub max_abs: f64,
    pub meets: bool,
}

/// What to search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// The case (with a labelled set), or a folder holding one.
    pub case: PathBuf,
    pub profile: Profile,
    pub precision: Precision,
    pub target: Target,
    /// How graphs are run: verify's options with the one runtime (required).
    pub verify: VerifyOptions,
}

/// The search's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub schema: u32,
    pub case: String,
    pub profile: &'static str,
    pub precision: &'static str,
    pub runtime: String,
    pub target: Target,
    /// Whether `found` meets the target.
    pub met: bool,
    pub keep_float32: Vec<String>,
    /// The export that writes the graphs `found` measured.
    pub export_command: String,
    /// Keep-lists exported and verified.
    pub evaluations: usize,
    pub seconds: f64,
    pub baseline: Measured,
    pub found: Measured,
    pub trace: Vec<Measured>,
}

/// Runs the search; `progress` hears of every evaluation as it is made.
pub fn search(
    opts: &SearchOptions,
    progress: &mut dyn FnMut(&Measured),
) -> Result<SearchReport, SearchError> {
    let start = Instant::now();
    let case = Case::load(&fixture::case_folder(&opts.case)?)?;
    let name = case.manifest.name.clone();
    if case.labelled.is_none() {
        return Err(SearchError::NoLabelledSet { case: name });
    }
    let model_dir = case.model_dir();
    let ckpt =
        Checkpoint::open(&model_dir, None, None).map_err(|source| SearchError::Checkpoint {
            path: model_dir.display().to_string(),
            source,
        })?;
    let heads: Vec<Head> = Head::available(&ckpt)
        .into_iter()
        .filter(|h| matches!(h, Head::CausalLm | Head::Classifier))
        .filter(|h| case.manifest.outputs.contains_key(h.name()))
        .collect();
    if heads.is_empty() {
        return Err(SearchError::NoHeads { case: name });
    }
    let n_layer = ckpt.config.n_layer;
    // Static int8 calibrates once, as verify's golden suite does: every keep-list is judged on
    // the same activation ranges.
    let calibration = verify::calibration(&ckpt, &case, &opts.verify)?;
    let mut ev = Evaluator {
        opts,
        ckpt,
        calibration,
        heads,
        work: tempfile::tempdir().map_err(SearchError::TempDir)?,
        memo: BTreeMap::new(),
        trace: Vec::new(),
        progress,
    };
    let baseline = ev.measure(&Parts::new())?;
    let (met, found) = if baseline.meets {
        (true, baseline.clone())
    } else {
        let all: Parts = (0..n_layer)
            .map(|layer| Part {
                layer,
                matrix: None,
            })
            .collect();
        let everything = ev.measure(&all)?;
        match everything.meets {
            // Every block float32 is the float32 graph: no list does better.
            false => (false, everything),
            true => (true, greedy(&mut ev, &baseline, n_layer)?),
        }
    };
    let runtime = opts
        .verify
        .runtimes
        .first()
        .map(|r| r.name().to_string())
        .unwrap_or_default();
    Ok(SearchReport {
        schema: SCHEMA,
        case: name,
        profile: opts.profile.name(),
        precision: opts.precision.name(),
        runtime,
        target: opts.target,
        met,
        keep_float32: found.keep_float32.clone(),
        export_command: export_command(&model_dir, opts, &found.keep_float32),
        evaluations: ev.trace.len(),
        seconds: start.elapsed().as_secs_f64(),
        baseline,
        found,
        trace: ev.trace,
    })
}

/// Blocks first, the one that helps most each round, until the budget holds; then each chosen
/// block as the fewest of its matrices that still hold it.
fn greedy(
    ev: &mut Evaluator<'_>,
    baseline: &Measured,
    n_layer: usize,
) -> Result<Measured, SearchError> {
    let mut chosen = Parts::new();
    let mut current = baseline.clone();
    while !current.meets {
        let candidates: Vec<Parts> = (0..n_layer)
            .map(|layer| Part {
                layer,
                matrix: None,
            })
            .filter(|p| !chosen.contains(p))
            .map(|p| with(&chosen, p))
            .collect();
        let Some((parts, m)) = ev.best(candidates, baseline)? else {
            break;
        };
        (chosen, current) = (parts, m);
    }
    let blocks: Vec<Part> = chosen.iter().copied().collect();
    for whole in blocks {
        let mut others = chosen.clone();
        others.remove(&whole);
        let mut subset = others.clone();
        // Fewer than the block's matrices, one more each round.
        for _ in 1..BLOCK_MATRICES.len() {
            let candidates: Vec<Parts> = (0..BLOCK_MATRICES.len())
                .map(|m| Part {
                    layer: whole.layer,
                    matrix: Some(m),
                })
                .filter(|p| !subset.contains(p))
                .map(|p| with(&subset, p))
                .collect();
            let Some((parts, m)) = ev.best(candidates, baseline)? else {
                break;
            };
            subset = parts;
            if m.meets {
                (chosen, current) = (subset, m);
                break;
            }
        }
    }
    Ok(current)
}

fn with(parts: &Parts, p: Part) -> Parts {
    let mut out = parts.clone();
    out.insert(p);
    out
}

/// Exports and verifies keep-lists, each once.
struct Evaluator<'a> {
    opts: &'a SearchOptions,
    ckpt: Checkpoint,
    /// Activation ranges of a calibrated precision (static int8).
    calibration: Option<std::sync::Arc<crate::graph::Calibration>>,
    heads: Vec<Head>,
    work: tempfile::TempDir,
    memo: BTreeMap<Parts, Measured>,
    trace: Vec<Measured>,
    progress: &'a mut dyn FnMut(&Measured),
}

impl Evaluator<'_> {
    /// The candidate that helps most (`None`: no candidate).
    fn best(
        &mut self,
        candidates: Vec<Parts>,
        baseline: &Measured,
    ) -> Result<Option<(Parts, Measured)>, SearchError> {
        let mut best: Option<(Parts, Measured, (f64, f64))> = None;
        for parts in candidates {
            let m = self.measure(&parts)?;
            let s = score(&self.opts.target, &m, baseline);
            let better = best
                .as_ref()
                .is_none_or(|(_, _, b)| s.0.total_cmp(&b.0).then(s.1.total_cmp(&b.1)).is_lt());
            if better {
                best = Some((parts, m, s));
            }
        }
        Ok(best.map(|(p, m, _)| (p, m)))
    }

    /// Exports the heads with `parts` kept float32 and verifies each against the case.
    fn measure(&mut self, parts: &Parts) -> Result<Measured, SearchError> {
        if let Some(m) = self.memo.get(parts) {
            return Ok(m.clone());
        }
        let patterns: Vec<String> = parts.iter().map(|p| p.pattern()).collect();
        let keep = KeepFloat32::new(
            patterns
                .iter()
                .map(|p| ScopePattern::parse(p))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let dir = self.work.path().join(self.trace.len().to_string());
        let export_opts = ExportOptions {
            profile: self.opts.profile,
            precision: self.opts.precision,
            keep_float32: keep.clone(),
            calibration: self.calibration.clone(),
            ..Default::default()
        };
        let done =
            export::export(&self.ckpt, &self.heads, &dir, &export_opts).map_err(|source| {
                SearchError::Export {
                    what: match keep.is_empty() {
                        true => "without a keep-list".into(),
                        false => format!("keep-list {}", keep.to_list()),
                    },
                    source,
                }
            })?;
        let mut m = Measured {
            keep_float32: patterns,
            matrices: parts.iter().map(|p| p.matrices()).sum(),
            nll: None,
            accuracy: None,
            max_abs: 0.0,
            meets: false,
        };
        for graph in &done {
            let report =
                verify::model_against_case(&graph.path, &self.opts.case, &self.opts.verify)?;
            for check in &report.checks {
                take(&mut m, check)?;
            }
        }
        m.meets = self.opts.target.meets(&m);
        // The graphs are measured: only the numbers are kept.
        let _ = std::fs::remove_dir_all(&dir);
        (self.progress)(&m);
        self.trace.push(m.clone());
        self.memo.insert(parts.clone(), m.clone());
        Ok(m)
    }
}

/// One verify check's numbers into `m`; a graph the runtime did not run is an error.
fn take(m: &mut Measured, check: &Check) -> Result<(), SearchError> {
    if matches!(
        check.status,
        CheckStatus::Error | CheckStatus::NotApplicable
    ) {
        return Err(SearchError::Check {
            head: check.head.clone(),
            runtime: check.runtime.clone(),
            message: check.error.clone().unwrap_or_default(),
        });
    }
    for o in &check.outputs {
        let max_abs = o
            .comparison
            .metrics
            .as_ref()
            .map_or(f64::NAN, |x| x.max_abs);
        // NaN (a missing comparison) wins: it meets no atol.
        m.max_abs = if max_abs.is_nan() {
            max_abs
        } else {
            m.max_abs.max(max_abs)
        };
    }
    if let Some(n) = &check.nll {
        m.nll = Some(Nll {
            reference: n.reference,
            ours: n.ours,
            relative_increase: n.relative_increase,
        });
    }
    if let Some(a) = &check.classification {
        m.accuracy = Some(Accuracy {
            examples: a.examples,
            reference: a.reference,
            ours: a.ours,
            drop_points: a.drop_points,
        });
    }
    Ok(())
}

/// How far `m` is from the target: the sum over criteria of the excess over the limit, each as
/// a share of the baseline's excess (at least the criterion's unit), then the signed margins
/// the same way (lower is better in both).
fn score(target: &Target, m: &Measured, baseline: &Measured) -> (f64, f64) {
    let base = target.criteria(baseline);
    let (mut excess, mut margin) = (0.0, 0.0);
    for (i, (v, limit, unit)) in target.criteria(m).into_iter().enumerate() {
        let base_excess = base.get(i).map_or(0.0, |b| (b.0 - b.1).max(0.0));
        let norm = base_excess.max(unit);
        let over = if v.is_nan() { f64::INFINITY } else { v - limit };
        excess += over.max(0.0) / norm;
        margin += over / norm;
    }
    (excess, margin)
}

/// The `igpt-onnx export` command line that writes the graphs of `keep`.
fn export_command(model_dir: &Path, opts: &SearchOptions, keep: &[String]) -> String {
    let mut args: Vec<String> = vec![
        "igpt-onnx".into(),
        "export".into(),
        "--weights".into(),
        model_dir.display().to_string(),
        "--profile".into(),
        opts.profile.name().into(),
    ];
    args.extend(
        precision_flags(opts.precision)
            .into_iter()
            .map(String::from),
    );
    if !keep.is_empty() {
        args.push("--keep-float32".into());
        args.push(keep.join(","));
    }
    if opts.precision.spec().matmul.calibrated() {
        // The set the search calibrated on (verify's choice: the case's own inputs by default).
        let case_dir = model_dir.parent().unwrap_or(model_dir);
        let set = (opts.verify.calibration.clone())
            .unwrap_or_else(|| case_dir.join(crate::verify::fixture::INPUTS_FILE));
        args.push("--calibration".into());
        args.push(set.display().to_string());
    }
    args.extend(["--out".into(), "out".into()]);
    let quoted: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    quoted.join(" ")
}

/// `word` as a POSIX shell reads it back: as is when plain, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./,=:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl SearchReport {
    /// The report for people: every evaluation, the list found and the command that writes it.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "debug precision: {} {} on {}, case {}; budget {}",
            self.profile,
            self.precision,
            self.runtime,
            self.case,
            budget_words(&self.target)
        );
        let _ = writeln!(s, "\n{}", table(&self.trace));
        let _ = writeln!(
            s,
            "{} evaluations in {:.1} s",
            self.evaluations, self.seconds
        );
        let _ = writeln!(s, "without a keep-list: {}", numbers(&self.baseline));
        if !self.met {
            let _ = writeln!(
                s,
                "not met: no keep-list meets the budget; the best found, [{}] ({} float32), gives {}",
                self.found.keep_float32.join(","),
                matrices(self.found.matrices),
                numbers(&self.found)
            );
            return s;
        }
        if self.keep_float32.is_empty() {
            let _ = writeln!(
                s,
                "met without a keep-list: {} meets the budget as it is",
                self.precision
            );
        } else {
            let _ = writeln!(
                s,
                "met with {} ({} float32): {}",
                self.keep_float32.join(","),
                matrices(self.found.matrices),
                numbers(&self.found)
            );
        }
        let _ = writeln!(s, "export with:\n  {}", self.export_command);
        s
    }
}

fn budget_words(t: &Target) -> String {
    let mut parts = vec![
        format!("NLL increase ≤ {}", percent(t.max_nll_increase)),
        format!(
            "accuracy drop ≤ {} {}",
            t.max_accuracy_drop,
            if t.max_accuracy_drop == 1.0 {
                "point"
            } else {
                "points"
            }
        ),
    ];
    if let Some(atol) = t.atol {
        parts.push(format!("max abs ≤ {atol:e}"));
    }
    parts.join(", ")
}

/// `1 matrix`, `16 matrices`.
fn matrices(n: usize) -> String {
    match n {
        1 => "1 matrix".into(),
        n => format!("{n} matrices"),
    }
}

fn percent(fraction: f64) -> String {
    format!("{:+.4} %", 100.0 * fraction)
}

/// A measurement in words: `NLL +0.1234 % (1.8270 vs 1.8248), accuracy 90.67 % (ref 90.33 %),
/// max abs 1.2e0`.
fn numbers(m: &Measured) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &m.nll {
        parts.push(format!(
            "NLL {} ({:.6} vs {:.6})",
            percent(n.relative_increase),
            n.ours,
            n.reference
        ));
    }
    if let Some(a) = &m.accuracy {
        parts.push(format!(
            "accuracy {:.2} % (ref {:.2} %, drop {:+.2} points)",
            100.0 * a.ours,
            100.0 * a.reference,
            a.drop_points
        ));
    }
    parts.push(format!("max abs {:.3e}", m.max_abs));
    parts.join(", ")
}

/// One row per evaluation.
fn table(trace: &[Measured]) -> String {
    let mut rows = vec![[
        "keep-float32".to_string(),
        "matrices".into(),
        "NLL increase".into(),
        "accuracy drop".into(),
        "max abs".into(),
        "budget".into(),
    ]];
    for m in trace {
        let keep = match m.keep_float32.is_empty() {
            true => "(none)".to_string(),
            false => m.keep_float32.join(","),
        };
        rows.push([
            keep,
            m.matrices.to_string(),
            m.nll
                .as_ref()
                .map_or("-".into(), |n| percent(n.relative_increase)),
            m.accuracy
                .as_ref()
                .map_or("-".into(), |a| format!("{:+.2}", a.drop_points)),
            format!("{:.3e}", m.max_abs),
            if m.meets { "✓" } else { "✗" }.into(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(nll: f64, drop: f64) -> Measured {
        Measured {
            keep_float32: vec![],
            matrices: 0,
            nll: Some(Nll {
                reference: 1.0,
                ours: 1.0 + nll,
                relative_increase: nll,
            }),
            accuracy: Some(Accuracy {
                examples: 300,
                reference: 0.9,
                ours: 0.9 - drop / 100.0,
                drop_points: drop,
            }),
            max_abs: 0.5,
            meets: false,
        }
    }

    /// A candidate is ranked by the share of the baseline's shortfall it leaves, summed over
    /// the criteria; within the budget, by its margin.
    #[test]
    fn candidates_are_ranked_by_the_shortfall_they_leave() {
        let target = Target {
            max_nll_increase: 1e-3,
            max_accuracy_drop: 1.0,
            atol: None,
        };
        let baseline = measured(3e-3, 2.0);
        assert!(!target.meets(&baseline));
        // Half the NLL shortfall left, none of the accuracy's.
        let s = score(&target, &measured(2e-3, 1.0), &baseline);
        assert!((s.0 - 0.5).abs() < 1e-9, "{s:?}");
        // Within budget: no excess; the wider margin ranks first.
        let (a, b) = (measured(5e-4, 0.0), measured(9e-4, 0.0));
        assert!(target.meets(&a) && target.meets(&b));
        let (sa, sb) = (score(&target, &a, &baseline), score(&target, &b, &baseline));
        assert_eq!((sa.0, sb.0), (0.0, 0.0));
        assert!(sa.1 < sb.1);
        // A NaN NLL meets nothing and ranks last.
        let nan = measured(f64::NAN, 0.0);
        assert!(!target.meets(&nan));
        assert_eq!(score(&target, &nan, &baseline).0, f64::INFINITY);
        // atol joins the criteria only when given.
        let tight = Target {
            atol: Some(0.1),
            ..target
        };
        assert!(target.meets(&a) && !tight.meets(&a));
    }

    #[test]
    fn parts_read_as_patterns_in_model_order() {
        let parts: Parts = [
            Part {
                layer: 3,
                matrix: None,
            },
            Part {
                layer: 1,
                matrix: Some(2),
            },
        ]
        .into_iter()
        .collect();
        let patterns: Vec<String> = parts.iter().map(|p| p.pattern()).collect();
        assert_eq!(patterns, ["h.1.mlp.c_fc", "h.3"]);
        assert_eq!(parts.iter().map(|p| p.matrices()).sum::<usize>(), 5);
        assert_eq!(shell_word("h.1.mlp.c_fc,h.3"), "h.1.mlp.c_fc,h.3");
        assert_eq!(shell_word("my model/x"), "'my model/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
