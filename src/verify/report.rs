//! The verify report: a table for people, JSON (schema below) and JUnit XML for CI.
//!
//! JSON schema 1 (stable; fields are only ever added):
//! `{schema, tool_version, verdict: "pass"|"fail", summary: {passed, failed, errors, skipped_runtimes},
//!   runtimes: [{runtime, available, detail}], notes: [..],
//!   checks: [{case, head, runtime, provider, compute_precision?, reference, model, status: "pass"|"fail"|"error",
//!             error?, missing: [..], non_finite?: [{output, nan, inf}], node_providers?: {provider: nodes},
//!             first_divergent_layer?, seconds,
//!             nll?: {source, tokens, reference, ours, relative_increase, max_increase, pass},
//!             labelled_flips?: {positions, beyond_ties, at_ties, tie_gap, max_gap_at_flip, pass},
//!             classification?: {examples, reference, ours, drop_points, disagreements, max_drop_points, pass},
//!             greedy?: {runs, tokens, diverged_runs,
//!                       first_divergence: null | {run, description, row, position, generated_before, expected, got}},
//!             outputs: [{name, tolerance: {atol, rtol}, dtype,
//!                        status: "pass"|"fail"|"shape_mismatch"|"dtype_mismatch",
//!                        expected_shape, actual_shape,
//!                        metrics?: {max_abs, max_rel, mean_abs, cosine, argmax_agreement?, kl_divergence?,
//!                                   flips_beyond_ties?, flips_at_ties?, compared, violations}}]}]}`

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::compare::{Comparison, Status};
use super::fixture::Tolerance;
use super::tasks::{AccuracyMetric, FlipMetric, GreedyMetric, NllMetric};
use crate::runtime::RuntimeKind;

/// The JSON schema version.
pub const SCHEMA: u32 = 1;

/// A runtime's availability.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub runtime: String,
    pub available: bool,
    pub detail: String,
}

impl RuntimeInfo {
    pub fn available(kind: RuntimeKind) -> Self {
        Self {
            runtime: kind.name().into(),
            available: true,
            detail: String::new(),
        }
    }
    pub fn skipped(kind: RuntimeKind, why: String) -> Self {
        Self {
            runtime: kind.name().into(),
            available: false,
            detail: why,
        }
    }
}

/// One output of one check.
#[derive(Debug, Clone, Serialize)]
pub struct OutputCheck {
    pub name: String,
    pub tolerance: Tolerance,
    /// The element type the graph declares for this output.
    pub dtype: String,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// NaN and infinite values found in one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NonFinite {
    pub output: String,
    pub nan: usize,
    pub inf: usize,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    /// Numbers outside tolerance, a shape mismatch, or a missing output.
    Fail,
    /// The graph did not load or run.
    Error,
    /// The runtime does not run this graph by design (tract and a runtime-specific profile):
    /// said by name, never counted as a pass.
    NotApplicable,
}

/// One graph on one runtime against one reference.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub case: String,
    pub head: String,
    pub runtime: String,
    /// What actually executed (the provider that ran, not the one requested).
    pub provider: String,
    /// The reduced precision the runtime computed in (`bf16`, `f16`; absent: float32), whose
    /// budget judged the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_precision: Option<String>,
    /// `golden` or the runtime compared against.
    pub reference: String,
    pub model: String,
    pub status: CheckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Expected outputs the graph does not produce.
    pub missing: Vec<String>,
    /// ONNX Runtime: the graph's nodes each execution provider ran (from its profile), so a
    /// GPU run that fell back to the CPU for some nodes shows.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_providers: std::collections::BTreeMap<String, usize>,
    /// Outputs holding NaN or infinite values (every output is scanned, compared or not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub non_finite: Vec<NonFinite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_divergent_layer: Option<String>,
    pub seconds: f64,
    pub outputs: Vec<OutputCheck>,
    /// Teacher-forced next-token NLL against the reference's (causal-LM logits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll: Option<NllMetric>,
    /// Next-token argmax flips over the labelled set (causal-LM logits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labelled_flips: Option<FlipMetric>,
    /// Accuracy on the case's labelled set against the reference's (classifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<AccuracyMetric>,
    /// The reference's greedy generations replayed (decoder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greedy: Option<GreedyMetric>,
}

impl Check {
    pub fn new(case: &str, head: &str, runtime: &str, provider: &str, model: &Path) -> Self {
        Self {
            case: case.into(),
            head: head.into(),
            runtime: runtime.into(),
            provider: provider.into(),
            compute_precision: None,
            reference: "golden".into(),
            model: model.display().to_string(),
            status: CheckStatus::Pass,
            error: None,
            missing: vec![],
            non_finite: vec![],
            node_providers: Default::default(),
            first_divergent_layer: None,
            seconds: 0.0,
            outputs: vec![],
            nll: None,
            labelled_flips: None,
            classification: None,
            greedy: None,
        }
    }

    /// The runtime does not run this graph by design; `why` says so by name.
    pub fn not_applicable(&mut self, why: String) {
        self.status = CheckStatus::NotApplicable;
        self.error = Some(why);
    }

    pub fn error(&mut self, message: String) {
        self.status = CheckStatus::Error;
        self.error = Some(message);
    }

    /// Why a failed check failed, one line each, the first the first failing output (empty for
    /// a check that passed or errored: its error says why).
    pub fn failures(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .outputs
            .iter()
            .filter(|o| o.comparison.status != Status::Pass)
            .map(explain)
            .collect();
        lines.extend(self.missing.iter().map(|m| format!("{m}: missing output")));
        lines.extend(
            self.non_finite
                .iter()
                .map(|n| format!("{}: {} NaN, {} infinite values", n.output, n.nan, n.inf)),
        );
        if let Some(l) = &self.first_divergent_layer {
            lines.push(format!("first divergence: {l}"));
        }
        lines.extend(task_failures(self));
        lines
    }

    /// Sets the status from the outputs.
    pub fn settle(&mut self) {
        if self.status == CheckStatus::Error {
            return;
        }
        let bad = !self.missing.is_empty()
            || !self.non_finite.is_empty()
            || self.nll.as_ref().is_some_and(|m| !m.pass)
            || self.labelled_flips.as_ref().is_some_and(|m| !m.pass)
            || self.classification.as_ref().is_some_and(|m| !m.pass)
            || self.outputs.is_empty()
            || self
                .outputs
                .iter()
                .any(|o| o.comparison.status != Status::Pass);
        self.status = if bad {
            CheckStatus::Fail
        } else {
            CheckStatus::Pass
        };
    }
}

/// Counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    /// Checks of a runtime that does not run the graph's profile.
    pub not_applicable: usize,
    pub skipped_runtimes: usize,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub tool_version: String,
    pub verdict: CheckStatus,
    pub summary: Summary,
    pub runtimes: Vec<RuntimeInfo>,
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(runtimes: Vec<RuntimeInfo>) -> Self {
        Self {
            schema: SCHEMA,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            verdict: CheckStatus::Pass,
            summary: Summary::default(),
            runtimes,
            notes: vec![],
            checks: vec![],
        }
    }

    /// Counts results and sets the verdict: pass only when every check passed.
    pub fn finish(&mut self) {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        self.summary = Summary {
            passed: count(CheckStatus::Pass),
            failed: count(CheckStatus::Fail),
            errors: count(CheckStatus::Error),
            not_applicable: count(CheckStatus::NotApplicable),
            skipped_runtimes: self.runtimes.iter().filter(|r| !r.available).count(),
        };
        self.verdict = if self.summary.failed + self.summary.errors == 0 && self.summary.passed > 0
        {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        };
    }

    /// 0 when everything passed, 1 on any numerical failure or broken graph.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.verdict != CheckStatus::Pass)
    }

    /// The table for people.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for r in &self.runtimes {
            if !r.available {
                let _ = writeln!(s, "runtime {}: skipped ({})", r.runtime, r.detail);
            }
        }
        let header = [
            "case", "head", "runtime", "provider", "output", "", "max abs", "max rel", "mean abs",
            "cosine", "argmax",
        ];
        let mut rows: Vec<[String; 11]> = vec![header.map(String::from)];
        for c in &self.checks {
            let base = |output: String, mark: &str, m: [String; 5]| {
                let [a, b, cc, d, e] = m;
                [
                    c.case.clone(),
                    c.head.clone(),
                    c.runtime.clone(),
                    short_provider(&c.provider),
                    output,
                    mark.into(),
                    a,
                    b,
                    cc,
                    d,
                    e,
                ]
            };
            if c.status == CheckStatus::NotApplicable {
                rows.push(base("(graph)".into(), "-", word_cells("n/a")));
                continue;
            }
            if c.error.is_some() {
                rows.push(base("(graph)".into(), "✗", word_cells("error")));
                continue;
            }
            let (hidden, main): (Vec<&OutputCheck>, Vec<&OutputCheck>) = c
                .outputs
                .iter()
                .partition(|o| o.name.starts_with("hidden_states."));
            for o in main {
                rows.push(base(o.name.clone(), mark(o), cells(&[o])));
            }
            if !hidden.is_empty() {
                let all_pass = hidden.iter().all(|o| o.comparison.status == Status::Pass);
                rows.push(base(
                    format!("hidden_states.0-{}", hidden.len() - 1),
                    if all_pass { "✓" } else { "✗" },
                    cells(&hidden),
                ));
            }
            for m in &c.missing {
                rows.push(base(m.clone(), "✗", word_cells("missing")));
            }
        }
        let widths: Vec<usize> = (0..11)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
                .collect();
            let _ = writeln!(s, "{}", line.join("  ").trim_end());
        }
        let tasks: Vec<String> = self.checks.iter().flat_map(task_lines).collect();
        if !tasks.is_empty() {
            let _ = writeln!(s, "\n{}", tasks.join("\n"));
        }
        for c in self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::NotApplicable)
        {
            let why = c.error.as_deref().unwrap_or("not applicable");
            let _ = writeln!(s, "\n- {} {} on {}: {why}", c.case, c.head, c.runtime);
        }
        for c in self
            .checks
            .iter()
            .filter(|c| !matches!(c.status, CheckStatus::Pass | CheckStatus::NotApplicable))
        {
            let _ = writeln!(s, "\n✗ {} {} on {}:", c.case, c.head, c.runtime);
            if let Some(e) = &c.error {
                let _ = writeln!(s, "  {e}");
            }
            for o in c
                .outputs
                .iter()
                .filter(|o| o.comparison.status != Status::Pass)
            {
                let _ = writeln!(s, "  {}", explain(o));
            }
            for m in &c.missing {
                let _ = writeln!(s, "  {m}: the graph has no such output");
            }
            for n in &c.non_finite {
                let _ = writeln!(
                    s,
                    "  {}: {} NaN, {} infinite values",
                    n.output, n.nan, n.inf
                );
            }
            if let Some(l) = &c.first_divergent_layer {
                let _ = writeln!(s, "  first divergence: {l}");
            }
            for line in task_failures(c) {
                let _ = writeln!(s, "  {line}");
            }
        }
        for c in self.checks.iter().filter(|c| c.node_providers.len() > 1) {
            let nodes: Vec<String> = c
                .node_providers
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "\n- {} {} on {}: nodes by execution provider: {}",
                c.case,
                c.head,
                c.runtime,
                nodes.join(", ")
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let v = &self.summary;
        let _ = writeln!(
            s,
            "\nverify: {}: {} passed, {} failed, {} errors, {} not applicable, {} runtimes skipped",
            if self.verdict == CheckStatus::Pass {
                "PASS"
            } else {
                "FAIL"
            },
            v.passed,
            v.failed,
            v.errors,
            v.not_applicable,
            v.skipped_runtimes
        );
        s
    }

    /// JUnit XML: one testsuite per case, one testcase per (head, runtime).
    pub fn to_junit(&self) -> String {
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"igpt-onnx verify\" tests=\"{}\" failures=\"{}\" errors=\"{}\">",
            self.checks.len(),
            self.summary.failed,
            self.summary.errors
        );
        let mut cases: Vec<&str> = self.checks.iter().map(|c| c.case.as_str()).collect();
        cases.dedup();
        for case in cases {
            let checks: Vec<&Check> = self.checks.iter().filter(|c| c.case == case).collect();
            let fails = checks
                .iter()
                .filter(|c| c.status == CheckStatus::Fail)
                .count();
            let errs = checks
                .iter()
                .filter(|c| c.status == CheckStatus::Error)
                .count();
            let time: f64 = checks.iter().map(|c| c.seconds).sum();
            let _ = writeln!(
                s,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" errors=\"{errs}\" time=\"{time:.3}\">",
                xml(case),
                checks.len()
            );
            for c in checks {
                let _ = write!(
                    s,
                    "    <testcase classname=\"{}\" name=\"{} on {}\" time=\"{:.3}\"",
                    xml(case),
                    xml(&c.head),
                    xml(&c.runtime),
                    c.seconds
                );
                match c.status {
                    CheckStatus::Pass => s.push_str("/>\n"),
                    CheckStatus::NotApplicable => {
                        let why = c.error.clone().unwrap_or_default();
                        let _ = writeln!(
                            s,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            xml(&why)
                        );
                    }
                    CheckStatus::Error => {
                        let e = c.error.clone().unwrap_or_default();
                        let _ = writeln!(
                            s,
                            ">\n      <error message=\"{}\"/>\n    </testcase>",
                            xml(&e)
                        );
                    }
                    CheckStatus::Fail => {
                        let lines = c.failures();
                        let _ = writeln!(
                            s,
                            ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                            xml(lines.first().map_or("", String::as_str)),
                            xml(&lines.join("\n"))
                        );
                    }
                }
            }
            s.push_str("  </testsuite>\n");
        }
        s.push_str("</testsuites>\n");
        s
    }
}

/// What the check measured beyond the table, one line each: argmax flips of the logits, the
/// NLL, the classification accuracy and the greedy streams against the reference's.
fn task_lines(c: &Check) -> Vec<String> {
    let who = format!("{} {} on {}", c.case, c.head, c.runtime);
    let mut out = Vec::new();
    for o in &c.outputs {
        if let Some(m) = &o.comparison.metrics {
            if let (Some(beyond), Some(ties)) = (m.flips_beyond_ties, m.flips_at_ties) {
                out.push(format!(
                    "{who}: {} argmax flips: {beyond} beyond ties, {ties} at near-ties, of {} positions",
                    o.name,
                    m.compared / o.comparison.expected_shape.last().copied().unwrap_or(1).max(1)
                ));
            }
        }
    }
    if let Some(m) = &c.nll {
        out.push(format!(
            "{who}: NLL {:.6} nats/token (reference {:.6}, {:+.4} %) over {} tokens of the {}",
            m.ours,
            m.reference,
            100.0 * m.relative_increase,
            m.tokens,
            m.source
        ));
    }
    if let Some(f) = &c.labelled_flips {
        out.push(format!(
            "{who}: labelled set argmax flips: {} beyond ties, {} at near-ties (gap ≤ {} nats), of {} positions; largest gap at a flip {:.3} nats",
            f.beyond_ties, f.at_ties, f.tie_gap, f.positions, f.max_gap_at_flip
        ));
    }
    if let Some(m) = &c.classification {
        out.push(format!(
            "{who}: accuracy {:.2} % (reference {:.2} %, drop {:.2} points, {} predictions differ) on {} labelled examples",
            100.0 * m.ours,
            100.0 * m.reference,
            m.drop_points,
            m.disagreements,
            m.examples
        ));
    }
    if let Some(m) = &c.greedy {
        let first = match &m.first_divergence {
            None => "none (token for token equal)".to_string(),
            Some(d) => format!(
                "run {} ({}) row {} at position {} after {} equal generated tokens (expected {}, got {})",
                d.run, d.description, d.row, d.position, d.generated_before, d.expected, d.got
            ),
        };
        out.push(format!(
            "{who}: greedy: {} runs, {} generated tokens, {} runs diverged; first divergence: {first}",
            m.runs, m.tokens, m.diverged_runs
        ));
    }
    out
}

/// The task metrics outside their budget, said with the budget.
fn task_failures(c: &Check) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = c.nll.as_ref().filter(|m| !m.pass) {
        out.push(format!(
            "NLL {:.6} is {:+.4} % over the reference's {:.6} (budget {:+.4} %)",
            m.ours,
            100.0 * m.relative_increase,
            m.reference,
            100.0 * m.max_increase
        ));
    }
    if let Some(f) = c.labelled_flips.as_ref().filter(|m| !m.pass) {
        out.push(format!(
            "{} next-token argmax flips on the labelled set where the reference's top-two gap exceeds {} nats",
            f.beyond_ties, f.tie_gap
        ));
    }
    if let Some(m) = c.classification.as_ref().filter(|m| !m.pass) {
        out.push(format!(
            "accuracy {:.2} % is {:.2} points below the reference's {:.2} % (budget {} points)",
            100.0 * m.ours,
            m.drop_points,
            100.0 * m.reference,
            m.max_drop_points
        ));
    }
    out
}

/// Metric cells holding one word instead of numbers (`error`, `missing`, `shape`).
fn word_cells(word: &str) -> [String; 5] {
    [
        word.into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]
}

fn mark(o: &OutputCheck) -> &'static str {
    if o.comparison.status == Status::Pass {
        "✓"
    } else {
        "✗"
    }
}

/// Metric cells; over several outputs, the worst of each.
fn cells(outs: &[&OutputCheck]) -> [String; 5] {
    let ms: Vec<_> = outs
        .iter()
        .filter_map(|o| o.comparison.metrics.as_ref())
        .collect();
    if ms.is_empty() {
        return word_cells("shape");
    }
    let max = |f: &dyn Fn(&super::compare::Metrics) -> f64| {
        ms.iter().map(|m| f(m)).fold(0.0f64, f64::max)
    };
    let cos = ms.iter().map(|m| m.cosine).fold(1.0f64, f64::min);
    let argmax = ms
        .iter()
        .filter_map(|m| m.argmax_agreement)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.min(v)))
        });
    [
        format!("{:.2e}", max(&|m| m.max_abs)),
        format!("{:.2e}", max(&|m| m.max_rel)),
        format!("{:.2e}", max(&|m| m.mean_abs)),
        format!("{cos:.6}"),
        argmax.map_or(String::new(), |a| format!("{:.1}%", a * 100.0)),
    ]
}

fn explain(o: &OutputCheck) -> String {
    let c = &o.comparison;
    match (&c.status, &c.metrics) {
        (Status::DtypeMismatch, _) => {
            format!("{}: dtype mismatch: expected float32, the graph gives {}", o.name, o.dtype)
        }
        (Status::ShapeMismatch, _) => format!(
            "{}: shape mismatch: expected {:?}, got {:?}",
            o.name, c.expected_shape, c.actual_shape
        ),
        // Every element within tolerance: the precision's budget on the whole output failed.
        (_, Some(m)) if m.violations == 0 => {
            let mut s = format!(
                "{}: within atol {:e} + rtol {:e}·|expected| but outside the precision's budget: cosine {:.6}",
                o.name, o.tolerance.atol, o.tolerance.rtol, m.cosine
            );
            if let Some(a) = m.argmax_agreement {
                let _ = write!(s, ", argmax agreement {:.1} %", 100.0 * a);
            }
            if let Some(k) = m.kl_divergence {
                let _ = write!(s, ", KL {k:.2e}");
            }
            if let Some(f) = m.flips_beyond_ties {
                let _ = write!(s, ", {f} argmax flips beyond near-ties");
            }
            s
        }
        (_, Some(m)) => format!(
            "{}: {} of {} elements outside atol {:e} + rtol {:e}·|expected| (max abs {:.3e}, max rel {:.3e})",
            o.name, m.violations, m.compared, o.tolerance.atol, o.tolerance.rtol, m.max_abs, m.max_rel
        ),
        _ => format!("{}: no elements compared", o.name),
    }
}

fn short_provider(p: &str) -> String {
    p.replace("ExecutionProvider", "")
}

pub(super) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
