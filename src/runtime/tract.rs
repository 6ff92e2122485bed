//! tract (pure Rust): a graph is loaded once with symbolic `batch` × `sequence` inputs and
//! optimised into one plan for every shape (DESIGN.md §4). When the optimiser cannot handle
//! the symbolic dims, it plans again for each input shape instead, and says so in
//! [`LoadedModel::provider`].
//!
//! tract can panic on a malformed graph; a panic during load or run becomes a [`RuntimeError`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, Factoid, GenericFactoid};

use super::check_input_names;
use super::{LoadedModel, NamedInput, NamedOutputs, Runtime, RuntimeError, RuntimeKind};

const NAME: &str = "tract";
const SYMBOLIC: &str = "tract (optimized, symbolic)";
const PER_SHAPE: &str = "tract (optimized per shape)";

/// Per-shape plans kept at once; a verify run uses a handful of shapes.
const PLAN_CACHE: usize = 8;

type Plan = Arc<TypedRunnableModel>;

/// The tract runtime.
pub struct Tract;

impl Runtime for Tract {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Tract
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        let file = model.display().to_string();
        let load_error = |reason: String| RuntimeError::Load {
            runtime: NAME.into(),
            path: file.clone(),
            reason,
        };
        // From a path, so tract resolves external data relative to the model's folder.
        let inference = guarded(|| tract_onnx::onnx().model_for_path(model)).map_err(load_error)?;
        let (inputs, outputs) = guarded(|| io_names(&inference)).map_err(load_error)?;
        let inference = guarded(|| with_input_facts(inference)).map_err(load_error)?;

        let plan = guarded(|| inference.clone().into_optimized()?.into_runnable());
        let mode = match plan {
            Ok(plan) => Mode::Symbolic(plan),
            Err(reason) => {
                // Check that a concrete shape plans at all, so a graph tract cannot run fails
                // here rather than on the first run.
                let probe = vec![vec![1, 1]; inputs.len()];
                guarded(|| plan_for_shapes(&inference, &probe)).map_err(|e| {
                    load_error(format!(
                        "symbolic plan failed ({reason}); concrete plan failed too ({e})"
                    ))
                })?;
                Mode::PerShape {
                    model: Box::new(inference),
                    plans: HashMap::new(),
                    reason,
                }
            }
        };
        Ok(Box::new(TractModel {
            file,
            inputs,
            outputs,
            mode,
        }))
    }
}

/// Runs `f`, turning an error or a panic into a message.
fn guarded<T>(f: impl FnOnce() -> TractResult<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("tract panicked: {msg}"))
        }
    }
}

/// Graph input names (tract names a source node after its input) and output names (outlet
/// labels, which tract sets from the graph's outputs).
fn io_names(m: &InferenceModel) -> TractResult<(Vec<String>, Vec<String>)> {
    let inputs = m
        .input_outlets()?
        .iter()
        .map(|o| m.node(o.node).name.clone())
        .collect();
    let outputs = m
        .output_outlets()?
        .iter()
        .map(|o| {
            m.outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| m.node(o.node).name.clone())
        })
        .collect();
    Ok((inputs, outputs))
}

/// Input facts from the graph: its declared type (int64 when absent) and shape, with the
/// `batch` / `sequence` symbols where a dim is declared without a name or the rank is open.
fn with_input_facts(mut m: InferenceModel) -> TractResult<InferenceModel> {
    let batch = m.symbols.sym("batch");
    let sequence = m.symbols.sym("sequence");
    for ix in 0..m.input_outlets()?.len() {
        let fact = m.input_fact(ix)?.clone();
        let dt = fact.datum_type.concretize().unwrap_or(i64::datum_type());
        let dims: Vec<TDim> = if fact.shape.is_open() {
            vec![batch.clone().into(), sequence.clone().into()]
        } else {
            fact.shape
                .dims()
                .enumerate()
                .map(|(axis, d): (usize, &DimFact)| match d {
                    GenericFactoid::Only(d) => d.clone(),
                    GenericFactoid::Any if axis == 0 => batch.clone().into(),
                    GenericFactoid::Any if axis == 1 => sequence.clone().into(),
                    GenericFactoid::Any => m.symbols.new_with_prefix("d").into(),
                })
                .collect()
        };
        m.set_input_fact(ix, InferenceFact::dt_shape(dt, dims))?;
    }
    Ok(m)
}

/// The graph planned for concrete input shapes (graph input order).
fn plan_for_shapes(m: &InferenceModel, shapes: &[Vec<usize>]) -> TractResult<Plan> {
    let mut m = m.clone();
    for (ix, shape) in shapes.iter().enumerate() {
        let dt = m
            .input_fact(ix)?
            .datum_type
            .concretize()
            .unwrap_or(i64::datum_type());
        m.set_input_fact(ix, InferenceFact::dt_shape(dt, shape.iter().copied()))?;
    }
    m.into_optimized()?.into_runnable()
}

/// How a loaded graph is planned.
enum Mode {
    /// One plan for every shape.
    Symbolic(Plan),
    /// A plan per input shape, because the symbolic one failed (`reason`).
    PerShape {
        model: Box<InferenceModel>,
        plans: HashMap<Vec<Vec<usize>>, Plan>,
        reason: String,
    },
}

/// A graph loaded in tract.
struct TractModel {
    file: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    mode: Mode,
}

impl TractModel {
    fn run_error(&self, reason: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Run {
            runtime: NAME.into(),
            reason: format!("{}: {reason}", self.file),
        }
    }

    fn plan(&mut self, shapes: Vec<Vec<usize>>) -> Result<Plan, String> {
        match &mut self.mode {
            Mode::Symbolic(plan) => Ok(plan.clone()),
            Mode::PerShape { model, plans, .. } => {
                if let Some(p) = plans.get(&shapes) {
                    return Ok(p.clone());
                }
                let plan = guarded(|| plan_for_shapes(model, &shapes))
                    .map_err(|e| format!("planning for input shapes {shapes:?}: {e}"))?;
                if plans.len() >= PLAN_CACHE {
                    plans.clear();
                }
                plans.insert(shapes, plan.clone());
                Ok(plan)
            }
        }
    }
}

impl LoadedModel for TractModel {
    fn input_names(&self) -> Vec<String> {
        self.inputs.clone()
    }

    fn output_names(&self) -> Vec<String> {
        self.outputs.clone()
    }

    fn provider(&self) -> String {
        match &self.mode {
            Mode::Symbolic(_) => SYMBOLIC.into(),
            Mode::PerShape { reason, .. } => {
                let first = reason.lines().next().unwrap_or_default();
                format!("{PER_SHAPE}; symbolic plan failed: {first}")
            }
        }
    }

    fn run(&mut self, inputs: &[NamedInput<'_>]) -> Result<NamedOutputs, RuntimeError> {
        check_input_names(&self.inputs, inputs).map_err(|e| self.run_error(e))?;
        let ordered: Vec<&ndarray::ArrayD<i64>> = self
            .inputs
            .iter()
            .filter_map(|name| inputs.iter().find(|(n, _)| n == name).map(|(_, a)| a))
            .collect();
        let shapes = ordered.iter().map(|a| a.shape().to_vec()).collect();
        let plan = self.plan(shapes).map_err(|e| self.run_error(e))?;
        let values: TVec<TValue> = ordered
            .iter()
            .map(|a| Tensor::from((*a).clone()).into_tvalue())
            .collect();
        let results = guarded(|| plan.run(values)).map_err(|e| self.run_error(e))?;
        if results.len() != self.outputs.len() {
            return Err(self.run_error(format!(
                "{} outputs for {} graph outputs",
                results.len(),
                self.outputs.len()
            )));
        }
        let mut out = Vec::with_capacity(results.len());
        for (name, value) in self.outputs.iter().zip(results) {
            let array = guarded(|| {
                let t = value.into_tensor();
                t.cast_to::<f32>()?.into_owned().into_plain_array::<f32>()
            })
            .map_err(|e| self.run_error(format!("output `{name}` as float32: {e}")))?;
            out.push((name.clone(), array));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    /// The per-shape mode (used only when the symbolic plan fails, which no fixture triggers)
    /// computes what the symbolic plan does, and plans once per shape.
    #[test]
    fn per_shape_plans_match_the_symbolic_plan() {
        let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/causal-lm/model");
        let ckpt = crate::Checkpoint::open(&weights, None, None).expect("fixture opens");
        let dir = tempfile::tempdir().expect("tempdir");
        let heads = [crate::Head::CausalLm];
        let exported =
            crate::export::export(&ckpt, &heads, dir.path(), &Default::default()).expect("exports");
        let path = &exported[0].path;
        let inference = with_input_facts(tract_onnx::onnx().model_for_path(path).expect("loads"))
            .expect("input facts");
        let (inputs, outputs) = io_names(&inference).expect("names");
        let symbolic = inference.clone().into_optimized().expect("optimizes");
        let mut a = TractModel {
            file: "symbolic".into(),
            inputs: inputs.clone(),
            outputs: outputs.clone(),
            mode: Mode::Symbolic(symbolic.into_runnable().expect("plans")),
        };
        let mut b = TractModel {
            file: "per shape".into(),
            inputs,
            outputs,
            mode: Mode::PerShape {
                model: Box::new(inference),
                plans: HashMap::new(),
                reason: "forced by the test".into(),
            },
        };
        assert!(b.provider().starts_with(PER_SHAPE));
        let ids =
            ArrayD::from_shape_fn(IxDyn(&[2, 5]), |ix| ((ix[0] * 7 + ix[1] * 3) % 512) as i64);
        let mask = ArrayD::<i64>::ones(IxDyn(&[2, 5]));
        let feed = [("input_ids", ids), ("attention_mask", mask)];
        let want = a.run(&feed).expect("symbolic runs");
        for _ in 0..2 {
            let got = b.run(&feed).expect("per-shape runs");
            for ((_, g), (_, w)) in got.iter().zip(&want) {
                let diff = (g - w).mapv(f32::abs).fold(0f32, |m, &d| m.max(d));
                assert!(diff <= 1e-5, "max abs difference {diff}");
            }
        }
        let Mode::PerShape { plans, .. } = &b.mode else {
            panic!("mode changed");
        };
        assert_eq!(plans.len(), 1, "one plan for one shape");
    }
}
