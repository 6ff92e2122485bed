//! What a verify run was asked for, and why one could not start.

use super::budget::compute_budget;
use super::fixture::{FixtureError, Tolerance};
use super::inputs::InputsError;
use crate::base::DataType;
use crate::graph::profile::Budget;
use crate::graph::{GraphCardError, KeepFloat32, Precision, Profile};
use crate::runtime::model::GraphIoError;
use crate::runtime::{RuntimeError, RuntimeKind, RuntimeOptions};

/// Usage or set-up problems (exit code 2): nothing could be judged.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// The graph file cannot be read, or its export card is wrong.
    #[error(transparent)]
    Card(#[from] GraphCardError),
    #[error(transparent)]
    Inspect(#[from] crate::onnx::inspect::InspectError),
    #[error("{path}: {source}")]
    Graph {
        path: String,
        #[source]
        source: GraphIoError,
    },
    #[error("{path}: cannot tell which head this graph is (no igpt_onnx.head metadata, no `logits`, `last_hidden_state` or `present.*` output)")]
    UnknownHead { path: String },
    #[error("case {case} has no goldens for the {head} head of {path}")]
    NoGoldens {
        case: String,
        head: &'static str,
        path: String,
    },
    #[error("{path}: {source}")]
    Inputs {
        path: String,
        #[source]
        source: InputsError,
    },
    #[error("required runtime {0}")]
    Required(#[source] RuntimeError),
    #[error("no runtime available: {}", .0.join("; "))]
    NoRuntime(Vec<String>),
    #[error("cannot export case {case}: {source}")]
    Export {
        case: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Saved(#[from] super::saved::SavedError),
    #[error("cannot make a temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("case {case}: {source}")]
    Calibrate {
        case: String,
        #[source]
        source: Box<crate::calibrate::CalibrateError>,
    },
}

/// What to run and how to judge it.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub runtimes: Vec<RuntimeKind>,
    /// Runtimes that must be available (else a set-up error instead of "skipped").
    pub required: Vec<RuntimeKind>,
    pub atol: Option<f64>,
    pub rtol: Option<f64>,
    /// Per-output budgets over the case's or the precision's (`--tolerance`).
    pub per_output: Vec<OutputTolerance>,
    /// Random inputs: write every runtime's outputs here (safetensors, with the graph's and
    /// the inputs' sha256).
    pub save_outputs: Option<std::path::PathBuf>,
    /// Random inputs: compare the runtimes with the outputs saved by an earlier run.
    pub compare_with: Option<std::path::PathBuf>,
    pub runtime: RuntimeOptions,
    /// The golden suite's exports: profile and precision (portable float32 by default).
    pub profile: Profile,
    pub precision: Precision,
    /// A calibrated precision (static int8): the set the golden suite calibrates every case on
    /// (`None`: each case's own inputs) and how the ranges are read.
    pub calibration: Option<std::path::PathBuf>,
    pub calibration_method: crate::calibrate::Method,
    /// The golden suite's exports: the matrices kept float32 (`--keep-float32`).
    pub keep_float32: KeepFloat32,
    /// The golden suite's exports: the default-domain opset (`None`: the profile's).
    pub opset: Option<i64>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            runtimes: vec![RuntimeKind::OrtCpu, RuntimeKind::Tract],
            required: vec![],
            atol: None,
            rtol: None,
            per_output: vec![],
            save_outputs: None,
            compare_with: None,
            // The report says which execution provider ran how many nodes.
            runtime: RuntimeOptions {
                count_nodes: true,
                ..Default::default()
            },
            profile: Profile::Portable,
            precision: Precision::Float32,
            calibration: None,
            calibration_method: Default::default(),
            keep_float32: KeepFloat32::default(),
            opset: None,
        }
    }
}

impl VerifyOptions {
    /// How a run of a graph of `precision` that computed in `computed` (a runtime's reduced
    /// compute precision, `None` for float32) is judged: the elementwise tolerance (the case's
    /// for float32, else the budget's) and the reduced-precision budget, the looser of the
    /// graph's and the run's; `--atol` / `--rtol` override the elementwise part.
    pub(crate) fn judged(
        &self,
        base: Tolerance,
        precision: Precision,
        computed: Option<DataType>,
    ) -> (Tolerance, Option<&'static Budget>) {
        let graph = (precision != Precision::Float32).then(|| &precision.spec().budget);
        let run = computed.and_then(compute_budget).map(|c| &c.budget);
        let budget = match (graph, run) {
            (Some(g), Some(r)) => Some(if r.atol > g.atol { r } else { g }),
            (g, r) => g.or(r),
        };
        let base = budget.map_or(base, |b| Tolerance {
            atol: b.atol,
            rtol: b.rtol,
        });
        (self.tolerance(base), budget)
    }

    pub(crate) fn tolerance(&self, base: Tolerance) -> Tolerance {
        Tolerance {
            atol: self.atol.unwrap_or(base.atol),
            rtol: self.rtol.unwrap_or(base.rtol),
        }
    }
}

/// A budget for the outputs whose names match a pattern (`*` matches any run of characters):
/// `logits=1e-4,1e-3`, `present.*=1e-3`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTolerance {
    pub pattern: String,
    pub tolerance: Tolerance,
}

/// A `--tolerance` that does not read as `PATTERN=ATOL[,RTOL]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tolerance `{spec}`: {why} (expected PATTERN=ATOL[,RTOL], e.g. logits=1e-4,1e-3)")]
pub struct ToleranceSpecError {
    pub spec: String,
    pub why: &'static str,
}

impl OutputTolerance {
    /// Parses `PATTERN=ATOL[,RTOL]` (RTOL 0 when left out).
    pub fn parse(spec: &str) -> Result<OutputTolerance, ToleranceSpecError> {
        let err = |why| ToleranceSpecError {
            spec: spec.to_string(),
            why,
        };
        let (pattern, values) = spec.split_once('=').ok_or(err("no `=`"))?;
        if pattern.is_empty() {
            return Err(err("no output name or pattern"));
        }
        let mut numbers = values.split(',').map(|v| v.trim().parse::<f64>());
        let number = |n: Option<Result<f64, _>>| match n {
            Some(Ok(v)) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            None => Ok(None),
            _ => Err(err("a tolerance is not a non-negative number")),
        };
        let atol = number(numbers.next())?.ok_or(err("no ATOL"))?;
        let rtol = number(numbers.next())?.unwrap_or(0.0);
        if numbers.next().is_some() {
            return Err(err("more than two numbers"));
        }
        Ok(OutputTolerance {
            pattern: pattern.to_string(),
            tolerance: Tolerance { atol, rtol },
        })
    }

    /// The tolerance for `name`: the last override whose pattern matches, else `base`.
    pub fn for_name(overrides: &[OutputTolerance], name: &str, base: Tolerance) -> Tolerance {
        overrides
            .iter()
            .rev()
            .find(|o| o.matches(name))
            .map_or(base, |o| o.tolerance)
    }

    /// Whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.pattern.as_bytes(), name.as_bytes())
    }
}

/// `*`-only glob matching.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_specs_parse_and_patterns_match() {
        let t = OutputTolerance::parse("present.*=1e-3,2e-2").expect("spec");
        assert_eq!(
            t.tolerance,
            Tolerance {
                atol: 1e-3,
                rtol: 2e-2
            }
        );
        assert!(t.matches("present.0.key") && t.matches("present.11.value"));
        assert!(!t.matches("logits") && !t.matches("xpresent.0.key"));
        let exact = OutputTolerance::parse("logits=1e-4").expect("spec");
        assert_eq!(exact.tolerance.rtol, 0.0);
        assert!(exact.matches("logits") && !exact.matches("logits2"));
        assert_eq!(
            OutputTolerance::parse("logits")
                .expect_err("no =")
                .to_string(),
            "tolerance `logits`: no `=` (expected PATTERN=ATOL[,RTOL], e.g. logits=1e-4,1e-3)"
        );
        assert!(OutputTolerance::parse("logits=-1").is_err());
        assert!(OutputTolerance::parse("logits=1,2,3").is_err());
    }
}
