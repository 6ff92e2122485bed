//! The proved support matrix (`igpt-onnx matrix`): the golden suite for every runtime, profile
//! and precision this machine has, one cell each. Where `runtime::support` says what should
//! run, this says what ran here and how close it came: the largest error over the golden
//! cases, and on a labelled case the NLL increase and the accuracy.
//!
//! Each profile and precision is exported once per case and run on every runtime that runs it
//! (the golden suite's own loop); a runtime that does not run it by design is not applicable
//! (`can_run`'s reason), one that cannot be opened here is skipped (not a failure).
//!
//! JSON schema 1 (fields are only ever added):
//! `{schema, tool_version, date, command, machine?, verdict: "pass"|"fail", seconds,
//!   cells: [{runtime, profile, precision, opset, status: "pass"|"fail"|"not_applicable"|"skipped",
//!            max_abs, nll_increase, accuracy, reason, seconds}]}`
//! (`max_abs`, `nll_increase`, `accuracy` and `reason` are null where there is none).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::report::{xml, Check, CheckStatus};
use super::{golden_suite, VerifyOptions};
use crate::export;
use crate::graph::{Precision, Profile, PRECISIONS};
use crate::runtime::{self, can_run, RuntimeKind, RuntimeOptions};

/// The JSON schema version.
pub const SCHEMA: u32 = 1;

/// What to prove.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// Runtimes, in column order.
    pub runtimes: Vec<RuntimeKind>,
    /// Profiles and precisions to take from the tables (every pair the precision fits).
    pub profiles: Vec<Profile>,
    pub precisions: Vec<Precision>,
    /// Default-domain opsets to prove beside each profile's own (`--opset`); one a pair cannot
    /// be emitted at is a row of not applicable cells with the refusal.
    pub opsets: Vec<i64>,
    /// Folders of golden cases; every one runs for every cell.
    pub fixtures: Vec<PathBuf>,
    pub runtime: RuntimeOptions,
}

/// A cell's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Every check of every case passed.
    Pass,
    /// A check failed or did not run: `reason` is the first one's.
    Fail,
    /// The runtime does not run this profile and precision by design.
    NotApplicable,
    /// The runtime cannot be opened on this machine.
    Skipped,
}

/// One runtime, profile and precision.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub runtime: String,
    pub profile: String,
    pub precision: String,
    /// The default-domain opset the graphs were emitted at.
    pub opset: i64,
    pub status: CellStatus,
    /// The largest absolute error over every output of every case (runs that computed).
    pub max_abs: Option<f64>,
    /// The relative teacher-forced NLL increase on a labelled case (`0.0001` = +0.01 %).
    pub nll_increase: Option<f64>,
    /// Classification accuracy on a labelled case, a fraction in [0, 1].
    pub accuracy: Option<f64>,
    /// Why it failed, is not applicable or was skipped.
    pub reason: Option<String>,
    /// Time spent running this cell's checks (exports not included).
    pub seconds: f64,
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub schema: u32,
    pub tool_version: String,
    /// UTC, `YYYY-MM-DD`.
    pub date: String,
    /// The command line that made it.
    pub command: String,
    /// The CPU and its cores, where the system says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    pub verdict: CellStatus,
    /// Wall time of the whole run.
    pub seconds: f64,
    pub cells: Vec<Cell>,
}

/// Runs the golden suite for every cell of `opts`; `on_row` sees each row as it is done (a
/// long run's progress).
pub fn prove(opts: &MatrixOptions, command: String, mut on_row: impl FnMut(&[Cell])) -> Matrix {
    let start = Instant::now();
    // Open each runtime once to learn whether it exists here; the suite opens its own.
    let skipped: Vec<(RuntimeKind, String)> = opts
        .runtimes
        .iter()
        .filter_map(|&k| {
            runtime::open(k, &opts.runtime)
                .err()
                .map(|e| (k, e.to_string()))
        })
        .collect();
    let mut cells = Vec::new();
    for spec in PRECISIONS {
        let precision = spec.precision();
        if !opts.precisions.contains(&precision) {
            continue;
        }
        for &profile in spec.profiles.iter().filter(|p| opts.profiles.contains(p)) {
            let mut done: Vec<i64> = Vec::new();
            for asked in std::iter::once(None).chain(opts.opsets.iter().copied().map(Some)) {
                let (opset, refused) = match export::resolve_opset(profile, precision, asked) {
                    Ok(o) if done.contains(&o) => continue,
                    Ok(o) => (o, None),
                    Err(e) => (asked.unwrap_or_default(), Some(format!("--{e}"))),
                };
                done.push(opset);
                let row = row(opts, &skipped, profile, precision, opset, refused);
                on_row(&row);
                cells.extend(row);
            }
        }
    }
    let verdict = match cells.iter().any(|c| c.status == CellStatus::Fail) {
        true => CellStatus::Fail,
        false => CellStatus::Pass,
    };
    Matrix {
        schema: SCHEMA,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        date: utc_date(),
        command,
        machine: machine(),
        verdict,
        seconds: start.elapsed().as_secs_f64(),
        cells,
    }
}

/// One row: `profile` in `precision` at `opset` on every runtime (`refused`: the export
/// refuses the opset, so no runtime is asked).
fn row(
    opts: &MatrixOptions,
    skipped: &[(RuntimeKind, String)],
    profile: Profile,
    precision: Precision,
    opset: i64,
    refused: Option<String>,
) -> Vec<Cell> {
    let cell = |k: RuntimeKind, status, reason: Option<String>| Cell {
        runtime: k.name().to_string(),
        profile: profile.name().to_string(),
        precision: precision.name().to_string(),
        opset,
        status,
        max_abs: None,
        nll_increase: None,
        accuracy: None,
        reason,
        seconds: 0.0,
    };
    let mut run = Vec::new();
    let mut row = Vec::new();
    for &k in &opts.runtimes {
        if let Some((_, why)) = skipped.iter().find(|(s, _)| *s == k) {
            row.push(cell(k, CellStatus::Skipped, Some(why.clone())));
        } else if let Some(why) = &refused {
            row.push(cell(k, CellStatus::NotApplicable, Some(why.clone())));
        } else if let Err(e) = can_run(k, profile, precision) {
            row.push(cell(k, CellStatus::NotApplicable, Some(e.to_string())));
        } else {
            run.push(k);
            row.push(cell(k, CellStatus::Pass, None));
        }
    }
    if !run.is_empty() {
        let checks = suite(opts, &run, profile, precision, opset);
        for c in row.iter_mut().filter(|c| c.status == CellStatus::Pass) {
            judge(c, &checks);
        }
    }
    row
}

/// The golden suite of every fixtures folder on `run` in `profile` and `precision`: the checks,
/// or per runtime the error that stopped a folder's suite (an export that failed), as a failed
/// check.
fn suite(
    opts: &MatrixOptions,
    run: &[RuntimeKind],
    profile: Profile,
    precision: Precision,
    opset: i64,
) -> Vec<Check> {
    // Everything else as `verify` has it by default (a calibrated precision calibrates on each
    // case's own inputs there too).
    let verify = VerifyOptions {
        runtimes: run.to_vec(),
        runtime: opts.runtime.clone(),
        profile,
        precision,
        opset: Some(opset),
        ..Default::default()
    };
    let mut checks = Vec::new();
    for dir in &opts.fixtures {
        match golden_suite(dir, &verify) {
            Ok(report) => checks.extend(report.checks),
            Err(e) => {
                for k in run {
                    let mut c = Check::new(&dir.display().to_string(), "suite", k.name(), "", dir);
                    c.error(e.to_string());
                    checks.push(c);
                }
            }
        }
    }
    checks
}

/// Fills `cell` from its runtime's checks.
fn judge(cell: &mut Cell, checks: &[Check]) {
    let mine: Vec<&Check> = checks
        .iter()
        .filter(|c| c.runtime == cell.runtime)
        .collect();
    cell.seconds = mine.iter().map(|c| c.seconds).sum();
    let metrics = mine
        .iter()
        .flat_map(|c| &c.outputs)
        .filter_map(|o| o.comparison.metrics.as_ref());
    cell.max_abs = metrics.map(|m| m.max_abs).reduce(f64::max);
    cell.nll_increase = mine
        .iter()
        .find_map(|c| c.nll.as_ref())
        .map(|m| m.relative_increase);
    cell.accuracy = mine
        .iter()
        .find_map(|c| c.classification.as_ref())
        .map(|m| m.ours);
    let failed = mine
        .iter()
        .find(|c| matches!(c.status, CheckStatus::Fail | CheckStatus::Error));
    if let Some(c) = failed {
        cell.status = CellStatus::Fail;
        let why = c
            .error
            .clone()
            .or_else(|| c.failures().into_iter().next())
            .unwrap_or_else(|| "failed".into());
        cell.reason = Some(format!("{} {}: {}", c.case, c.head, first_line(&why)));
    } else if mine.is_empty() || mine.iter().all(|c| c.status == CheckStatus::NotApplicable) {
        cell.status = CellStatus::NotApplicable;
        cell.reason = mine
            .iter()
            .find_map(|c| c.error.clone())
            .or_else(|| Some("no golden case ran".into()));
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

impl Matrix {
    /// 0 when no cell failed (not applicable and skipped are fine), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.verdict == CellStatus::Fail)
    }

    /// The runtimes in column order: those that opened here.
    fn columns(&self) -> Vec<&str> {
        let mut cols: Vec<&str> = Vec::new();
        for c in self
            .cells
            .iter()
            .filter(|c| c.status != CellStatus::Skipped)
        {
            if !cols.contains(&c.runtime.as_str()) {
                cols.push(&c.runtime);
            }
        }
        cols
    }

    /// The table as Markdown (the README pastes it): a row per profile and precision, a column
    /// per runtime that opened here; each ✗ and — numbered, its reason below, then the
    /// runtimes skipped here.
    pub fn to_markdown(&self) -> String {
        let cols = self.columns();
        let mut out = String::from("| profile | precision | opset |");
        for r in &cols {
            let _ = write!(out, " {r} |");
        }
        out.push_str("\n| --- | --- | --: |");
        for _ in &cols {
            out.push_str(" --- |");
        }
        out.push('\n');
        let mut notes: Vec<String> = Vec::new();
        let mut rows: Vec<(&str, &str, i64)> = Vec::new();
        for c in &self.cells {
            let key = (c.profile.as_str(), c.precision.as_str(), c.opset);
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
        for (profile, precision, opset) in rows {
            let _ = write!(out, "| {profile} | {precision} | {opset} |");
            for r in &cols {
                let cell = self
                    .cells
                    .iter()
                    .find(|c| c.runtime == *r && c.profile == profile && c.precision == precision);
                let text = match cell {
                    None => String::new(),
                    Some(c) => mark(c, &mut notes),
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push_str(
            "\n✓ every golden case passed: the largest absolute error over them; on the \
             labelled case, the NLL increase over the reference's and the classification \
             accuracy. ✗ a check failed; — not run by design.\n",
        );
        if !notes.is_empty() {
            out.push('\n');
            for (i, n) in notes.iter().enumerate() {
                let _ = writeln!(out, "{}. {n}", i + 1);
            }
        }
        let mut skipped: Vec<String> = Vec::new();
        for c in self
            .cells
            .iter()
            .filter(|c| c.status == CellStatus::Skipped)
        {
            let line = format!(
                "{}: {}",
                c.runtime,
                c.reason.as_deref().unwrap_or("not available")
            );
            if !skipped.contains(&line) {
                skipped.push(line);
            }
        }
        if !skipped.is_empty() {
            out.push_str("\nSkipped here (cannot be opened on this machine):\n\n");
            for s in skipped {
                let _ = writeln!(out, "- {}", s.replace('\n', " "));
            }
        }
        out
    }

    /// The table for people: the Markdown, then the verdict and the time taken.
    pub fn to_text(&self) -> String {
        let mut out = self.to_markdown();
        let count = |s| self.cells.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "\nmatrix: {}: {} passed, {} failed, {} not applicable, {} skipped, in {:.1} s",
            match self.verdict {
                CellStatus::Fail => "FAIL",
                _ => "PASS",
            },
            count(CellStatus::Pass),
            count(CellStatus::Fail),
            count(CellStatus::NotApplicable),
            count(CellStatus::Skipped),
            self.seconds
        );
        out
    }

    /// JUnit XML: one testcase per cell.
    pub fn to_junit(&self) -> String {
        let failures = self
            .cells
            .iter()
            .filter(|c| c.status == CellStatus::Fail)
            .count();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"igpt-onnx matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
            self.cells.len()
        );
        let _ = writeln!(
            s,
            "  <testsuite name=\"matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">",
            self.cells.len(),
            self.seconds
        );
        for c in &self.cells {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{} {} on {}\" time=\"{:.3}\"",
                xml(&c.runtime),
                xml(&c.profile),
                xml(&c.precision),
                xml(&c.runtime),
                c.seconds
            );
            let why = xml(c.reason.as_deref().unwrap_or(""));
            match c.status {
                CellStatus::Pass => s.push_str("/>\n"),
                CellStatus::Fail => {
                    let _ = writeln!(s, ">\n      <failure message=\"{why}\"/>\n    </testcase>");
                }
                CellStatus::NotApplicable | CellStatus::Skipped => {
                    let _ = writeln!(s, ">\n      <skipped message=\"{why}\"/>\n    </testcase>");
                }
            }
        }
        s.push_str("  </testsuite>\n</testsuites>\n");
        s
    }
}

/// A cell's mark: `✓ 3.1e-6`, with NLL and accuracy where measured; `✗ (n)` and `— (n)` with
/// the reason as note `n` (a reason said once is numbered once).
fn mark(c: &Cell, notes: &mut Vec<String>) -> String {
    let mut note = |why: &str| -> usize {
        let why = why.replace('\n', " ").replace('|', "\\|");
        match notes.iter().position(|n| *n == why) {
            Some(i) => i + 1,
            None => {
                notes.push(why);
                notes.len()
            }
        }
    };
    let why = c.reason.as_deref().unwrap_or("");
    match c.status {
        CellStatus::Pass => {
            let mut text = format!("✓ {}", c.max_abs.map_or("–".into(), |m| format!("{m:.1e}")));
            if let Some(n) = c.nll_increase {
                let _ = write!(text, ", NLL {:+.3} %", 100.0 * n);
            }
            if let Some(a) = c.accuracy {
                let _ = write!(text, ", acc {:.1} %", 100.0 * a);
            }
            text
        }
        CellStatus::Fail => format!("✗ ({})", note(why)),
        CellStatus::NotApplicable => format!("— ({})", note(why)),
        CellStatus::Skipped => "skipped".into(),
    }
}

/// Today in UTC as `YYYY-MM-DD` (days since the epoch to a civil date, Hinnant's algorithm).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `CPU model, N cores` from `/proc/cpuinfo`, where there is one.
fn machine() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))?
        .split_once(':')?
        .1
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(format!("{model}, {cores} cores"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_cell_fails_the_matrix_and_not_applicable_or_skipped_do_not() {
        let cell = |status, reason: Option<&str>| Cell {
            runtime: "tract".into(),
            profile: "ort".into(),
            precision: "float32".into(),
            opset: 17,
            status,
            max_abs: None,
            nll_increase: None,
            accuracy: None,
            reason: reason.map(String::from),
            seconds: 0.0,
        };
        let mut m = Matrix {
            schema: SCHEMA,
            tool_version: String::new(),
            date: utc_date(),
            command: String::new(),
            machine: None,
            verdict: CellStatus::Pass,
            seconds: 0.0,
            cells: vec![
                cell(
                    CellStatus::NotApplicable,
                    Some("tract does not run profile ort"),
                ),
                cell(CellStatus::Skipped, Some("no library")),
            ],
        };
        assert_eq!(m.exit_code(), 0);
        let md = m.to_markdown();
        assert!(md.contains("| ort | float32 | 17 | — (1) |"), "{md}");
        assert!(md.contains("1. tract does not run profile ort"), "{md}");
        m.verdict = CellStatus::Fail;
        assert_eq!(m.exit_code(), 1);
        assert_eq!(m.to_junit().matches("<testcase ").count(), 2);
        assert_eq!(utc_date().len(), 10);
    }
}
