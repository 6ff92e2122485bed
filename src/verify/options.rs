//! What a verify run was asked for, and why one could not start.

use super::fixture::{FixtureError, Tolerance};
use super::inputs::InputsError;
use super::judge::compute_budget;
use crate::base::DataType;
use crate::graph::profile::Budget;
use crate::graph::{GraphCardError, Precision, Profile};
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
    #[error("cannot make a temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
}

/// What to run and how to judge it.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub runtimes: Vec<RuntimeKind>,
    /// Runtimes that must be available (else a set-up error instead of "skipped").
    pub required: Vec<RuntimeKind>,
    pub atol: Option<f64>,
    pub rtol: Option<f64>,
    pub runtime: RuntimeOptions,
    /// The golden suite's exports: profile and precision (portable float32 by default).
    pub profile: Profile,
    pub precision: Precision,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            runtimes: vec![RuntimeKind::OrtCpu, RuntimeKind::Tract],
            required: vec![],
            atol: None,
            rtol: None,
            runtime: RuntimeOptions::default(),
            profile: Profile::Portable,
            precision: Precision::Float32,
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
