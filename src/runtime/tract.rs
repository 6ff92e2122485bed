//! tract (pure Rust): a graph is loaded once with the input facts it declares (element type and
//! dims; `dim_param` symbols and expressions such as `past_sequence + sequence` become tract
//! symbols of the same name, so a decoder's dims unify) and optimised into one plan for every
//! shape (docs/design.md §4). When the optimiser cannot handle the symbolic dims, it plans again for
//! each input shape instead, keeping the most recently used plans, and says so in
//! [`LoadedModel::provider`].
//!
//! tract can panic on a malformed graph; a panic during load or run becomes a [`RuntimeError`]
//! (the CLI's panic hook keeps the default message off stderr).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{DimFact, Factoid, GenericFactoid};

use super::model::{check_input_names, graph_io, quietly, Failure};
use super::model::{LoadedModel, NamedOutputs, Runtime, RuntimeError, RuntimeKind};
use crate::base::{DimSpec, IoSpec};

const NAME: &str = "tract";
const SYMBOLIC: &str = "tract (optimized, symbolic)";
const PER_SHAPE: &str = "tract (optimized per shape)";

/// Per-shape plans kept at once (least recently used dropped first): a verify run uses a
/// handful of shapes, a decoding loop one per step.
const PLAN_CACHE: usize = 16;

type Plan = Arc<TypedRunnableModel>;
type Shapes = Vec<Vec<usize>>;

/// The tract runtime.
pub struct Tract;

/// Opens tract: in the binary, always available.
pub fn open(
    _kind: RuntimeKind,
    _opts: &super::model::RuntimeOptions,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    Ok(Box::new(Tract))
}

impl Runtime for Tract {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Tract
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        let file = model.display().to_string();
        let load_error = |source: Failure| RuntimeError::Load {
            runtime: NAME.into(),
            path: file.clone(),
            source: source.into(),
        };
        let (inputs, outputs) = graph_io(model).map_err(|e| load_error(e.into()))?;
        // From a path, so tract resolves external data relative to the model's folder.
        let inference = guarded(|| tract_onnx::onnx().model_for_path(model)).map_err(load_error)?;
        let inference = guarded(|| with_input_facts(inference, &inputs)).map_err(load_error)?;

        let plan = guarded(|| inference.clone().into_optimized()?.into_runnable());
        let mode = match plan {
            Ok(plan) => Mode::Symbolic(plan),
            Err(reason) => {
                // Check that a concrete shape plans at all, so a graph tract cannot run fails
                // here rather than on the first run.
                let probe = guarded(|| probe_shapes(&inference, &inputs))
                    .and_then(|shapes| guarded(|| plan_for_shapes(&inference, &shapes)));
                if let Err(concrete) = probe {
                    return Err(load_error(Failure::NoPlan {
                        symbolic: Box::new(reason),
                        concrete: Box::new(concrete),
                    }));
                }
                Mode::PerShape {
                    model: Box::new(inference),
                    plans: Lru::default(),
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

/// Runs `f`, turning an error or a panic into a [`Failure`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> TractResult<T>) -> Result<T, Failure> {
    match quietly(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Tract(e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Failure::Panic(format!("tract panicked: {msg}")))
        }
    }
}

fn datum_type(dt: crate::base::DataType) -> TractResult<DatumType> {
    use crate::base::DataType as D;
    Ok(match dt {
        D::Float32 => f32::datum_type(),
        D::Float16 => f16::datum_type(),
        D::Float64 => f64::datum_type(),
        D::Int64 => i64::datum_type(),
        D::Int32 => i32::datum_type(),
        D::Int16 => i16::datum_type(),
        D::Int8 => i8::datum_type(),
        D::UInt8 => u8::datum_type(),
        D::Bool => bool::datum_type(),
        D::BFloat16 | D::UInt4 => anyhow::bail!("{dt} graph inputs are not supported with tract"),
    })
}

/// Input facts from the graph's declarations: its element type, and per dim the value or the
/// `dim_param` tract parsed (symbols shared by name across inputs). A dim declared without
/// either gets a fresh symbol; an input without a shape keeps an open one.
fn with_input_facts(mut m: InferenceModel, specs: &[IoSpec]) -> TractResult<InferenceModel> {
    let n = m.input_outlets()?.len();
    if n != specs.len() {
        anyhow::bail!(
            "tract sees {n} graph inputs, the file declares {}",
            specs.len()
        );
    }
    for (ix, spec) in specs.iter().enumerate() {
        let fact = m.input_fact(ix)?.clone();
        let dt = datum_type(spec.dtype)?;
        if fact.shape.is_open() {
            m.set_input_fact(ix, InferenceFact::dt(dt))?;
            continue;
        }
        let dims: Vec<TDim> = fact
            .shape
            .dims()
            .map(|d: &DimFact| match d {
                GenericFactoid::Only(d) => d.clone(),
                GenericFactoid::Any => m.symbols.new_with_prefix("unknown").into(),
            })
            .collect();
        m.set_input_fact(ix, InferenceFact::dt_shape(dt, dims))?;
    }
    Ok(m)
}

/// A concrete shape per input, every symbol set to 1 (so `past_sequence + sequence` is 2, as
/// the other inputs' dims imply); an input without a declared shape is taken from its spec.
fn probe_shapes(m: &InferenceModel, specs: &[IoSpec]) -> TractResult<Shapes> {
    let mut shapes = Vec::with_capacity(specs.len());
    for (ix, spec) in specs.iter().enumerate() {
        let fact = m.input_fact(ix)?;
        if fact.shape.is_open() {
            let dims = spec.dims.iter().map(|d| match d {
                DimSpec::Fixed(n) => *n,
                DimSpec::Symbol(_) | DimSpec::Unknown => 1,
            });
            shapes.push(dims.collect());
            continue;
        }
        let mut shape = Vec::new();
        for d in fact.shape.dims() {
            let n = match d {
                GenericFactoid::Only(d) => {
                    let mut ones = SymbolValues::default();
                    for s in d.symbols() {
                        ones.set(&s, 1);
                    }
                    usize::try_from(d.eval_to_i64(&ones)?)?
                }
                GenericFactoid::Any => 1,
            };
            shape.push(n);
        }
        shapes.push(shape);
    }
    Ok(shapes)
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

/// Plans by input shapes, the most recently used last; the least recently used is dropped past
/// [`PLAN_CACHE`]. A linear scan: the cache is small.
#[derive(Default)]
struct Lru {
    entries: Vec<(Shapes, Plan)>,
    /// Plans made so far (for tests and diagnostics).
    planned: usize,
}

impl Lru {
    fn get_or_plan(
        &mut self,
        shapes: Shapes,
        plan: impl FnOnce(&Shapes) -> Result<Plan, Failure>,
    ) -> Result<Plan, Failure> {
        if let Some(i) = self.entries.iter().position(|(s, _)| *s == shapes) {
            let hit = self.entries.remove(i);
            let p = hit.1.clone();
            self.entries.push(hit);
            return Ok(p);
        }
        let p = plan(&shapes)?;
        self.planned += 1;
        if self.entries.len() >= PLAN_CACHE {
            self.entries.remove(0);
        }
        self.entries.push((shapes, p.clone()));
        Ok(p)
    }
}

/// How a loaded graph is planned.
enum Mode {
    /// One plan for every shape.
    Symbolic(Plan),
    /// A plan per input shape, because the symbolic one failed (`reason`).
    PerShape {
        model: Box<InferenceModel>,
        plans: Lru,
        reason: Failure,
    },
}

/// A graph loaded in tract.
struct TractModel {
    file: String,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    mode: Mode,
}

impl TractModel {
    fn run_error(&self, reason: impl Into<Failure>) -> RuntimeError {
        RuntimeError::Run {
            runtime: NAME.into(),
            source: reason.into().at(&self.file).into(),
        }
    }

    fn plan(&mut self, shapes: Shapes) -> Result<Plan, Failure> {
        match &mut self.mode {
            Mode::Symbolic(plan) => Ok(plan.clone()),
            Mode::PerShape { model, plans, .. } => plans.get_or_plan(shapes, |shapes| {
                guarded(|| plan_for_shapes(model, shapes)).map_err(|e| Failure::Planning {
                    shapes: shapes.clone(),
                    source: Box::new(e),
                })
            }),
        }
    }
}

fn to_tract(t: &crate::base::Tensor) -> TValue {
    match t {
        crate::base::Tensor::F32(a) => Tensor::from(a.clone()).into_tvalue(),
        crate::base::Tensor::F16(a) => Tensor::from(a.clone()).into_tvalue(),
        crate::base::Tensor::I64(a) => Tensor::from(a.clone()).into_tvalue(),
    }
}

/// An output in its own type; other numeric types are cast to float32 (see [`LoadedModel::run`]).
fn from_tract(value: TValue) -> TractResult<crate::base::Tensor> {
    let t = value.into_tensor();
    let dt = t.datum_type();
    Ok(if dt == f32::datum_type() {
        crate::base::Tensor::F32(t.into_plain_array::<f32>()?)
    } else if dt == f16::datum_type() {
        crate::base::Tensor::F16(t.into_plain_array::<f16>()?)
    } else if dt == i64::datum_type() {
        crate::base::Tensor::I64(t.into_plain_array::<i64>()?)
    } else {
        crate::base::Tensor::F32(t.cast_to::<f32>()?.into_owned().into_plain_array::<f32>()?)
    })
}

impl LoadedModel for TractModel {
    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn provider(&self) -> String {
        match &self.mode {
            Mode::Symbolic(_) => SYMBOLIC.into(),
            Mode::PerShape { reason, .. } => {
                let reason = reason.to_string();
                let first = reason.lines().next().unwrap_or_default();
                format!("{PER_SHAPE}; symbolic plan failed: {first}")
            }
        }
    }

    fn run(
        &mut self,
        inputs: &[(&str, &crate::base::Tensor)],
    ) -> Result<NamedOutputs, RuntimeError> {
        let ordered = check_input_names(&self.inputs, inputs).map_err(|e| self.run_error(e))?;
        let shapes = ordered.iter().map(|t| t.shape().to_vec()).collect();
        let plan = self.plan(shapes).map_err(|e| self.run_error(e))?;
        let values: TVec<TValue> = ordered.iter().map(|t| to_tract(t)).collect();
        let results = guarded(|| plan.run(values)).map_err(|e| self.run_error(e))?;
        if results.len() != self.outputs.len() {
            return Err(self.run_error(Failure::OutputCount {
                found: results.len(),
                declared: self.outputs.len(),
            }));
        }
        let mut out = Vec::with_capacity(results.len());
        for (spec, value) in self.outputs.iter().zip(results) {
            let t = guarded(|| from_tract(value))
                .map_err(|e| self.run_error(e.of("output", &spec.name)))?;
            out.push((spec.name.clone(), t));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Tensor as T;
    use ndarray::{ArrayD, IxDyn};

    fn causal_lm(dir: &Path) -> std::path::PathBuf {
        let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/causal-lm/model");
        let ckpt = crate::Checkpoint::open(&weights, None, None).expect("fixture opens");
        let heads = [crate::Head::CausalLm];
        let exported =
            crate::export::export(&ckpt, &heads, dir, &Default::default()).expect("exports");
        exported[0].path.clone()
    }

    /// The graph as tract infers it, with the input facts `load` gives it.
    fn inference_for(path: &Path) -> (InferenceModel, Vec<IoSpec>, Vec<IoSpec>) {
        let (inputs, outputs) = graph_io(path).expect("io");
        let raw = tract_onnx::onnx().model_for_path(path).expect("loads");
        let inference = with_input_facts(raw, &inputs).expect("input facts");
        (inference, inputs, outputs)
    }

    fn feed(batch: usize, seq: usize) -> (T, T) {
        let ids = ArrayD::from_shape_fn(IxDyn(&[batch, seq]), |ix| {
            ((ix[0] * 7 + ix[1] * 3) % 512) as i64
        });
        (
            T::from(ids),
            T::from(ArrayD::<i64>::ones(IxDyn(&[batch, seq]))),
        )
    }

    /// The per-shape mode (used only when the symbolic plan fails, which no fixture triggers)
    /// computes what the symbolic plan does, plans once per shape, and keeps the most recently
    /// used plans rather than starting over when full.
    #[test]
    fn per_shape_plans_match_the_symbolic_plan_and_are_kept_lru() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = causal_lm(dir.path());
        let (inference, inputs, outputs) = inference_for(&path);
        let symbolic = inference.clone().into_optimized().expect("optimizes");
        let mut a = TractModel {
            file: "symbolic".into(),
            inputs: inputs.clone(),
            outputs: outputs.clone(),
            mode: Mode::Symbolic(symbolic.into_runnable().expect("plans")),
        };
        assert_eq!(a.provider(), SYMBOLIC);
        let mut b = TractModel {
            file: "per shape".into(),
            inputs,
            outputs,
            mode: Mode::PerShape {
                model: Box::new(inference),
                plans: Lru::default(),
                reason: Failure::Panic("forced by the test".into()),
            },
        };
        assert!(b.provider().starts_with(PER_SHAPE));
        let (ids, mask) = feed(2, 5);
        let want = a
            .run(&[("input_ids", &ids), ("attention_mask", &mask)])
            .expect("symbolic runs");
        for _ in 0..2 {
            let got = b
                .run(&[("input_ids", &ids), ("attention_mask", &mask)])
                .expect("per-shape runs");
            for ((_, g), (_, w)) in got.iter().zip(&want) {
                let diff = (g.to_f32() - w.to_f32())
                    .mapv(f32::abs)
                    .fold(0f32, |m, &d| m.max(d));
                assert!(diff <= 1e-5, "max abs difference {diff}");
            }
        }
        let planned = |m: &TractModel| match &m.mode {
            Mode::PerShape { plans, .. } => plans.planned,
            Mode::Symbolic(_) => 0,
        };
        assert_eq!(planned(&b), 1, "one plan for one shape");
        // A growing sequence, as a decoding loop feeds, then the first shape again: still
        // cached (the old cache cleared itself after 8 shapes).
        for seq in 1..=10 {
            let (i, m) = feed(1, seq);
            b.run(&[("input_ids", &i), ("attention_mask", &m)])
                .expect("runs");
        }
        b.run(&[("input_ids", &ids), ("attention_mask", &mask)])
            .expect("runs");
        assert_eq!(planned(&b), 11, "[2, 5] was still cached");
    }

    #[test]
    fn lru_drops_the_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = causal_lm(dir.path());
        let (inference, _, _) = inference_for(&path);
        let plan = inference
            .into_optimized()
            .expect("optimizes")
            .into_runnable()
            .expect("plans");
        let mut lru = Lru::default();
        let shape = |n: usize| vec![vec![n]];
        for n in 0..PLAN_CACHE {
            lru.get_or_plan(shape(n), |_| Ok(plan.clone()))
                .expect("plans");
        }
        // Touch 0, then add one more: 1 (now the oldest) goes, 0 stays.
        lru.get_or_plan(shape(0), |_| Err(Failure::Panic("must be cached".into())))
            .expect("hit");
        lru.get_or_plan(shape(PLAN_CACHE), |_| Ok(plan.clone()))
            .expect("plans");
        assert_eq!(lru.entries.len(), PLAN_CACHE);
        assert!(lru
            .get_or_plan(shape(0), |_| Err(Failure::Panic("gone".into())))
            .is_ok());
        assert!(lru
            .get_or_plan(shape(1), |_| Err(Failure::Panic("gone".into())))
            .is_err());
    }

    /// A decoder-shaped graph: declared dims become tract symbols shared by name, so the
    /// `past_sequence + sequence` mask unifies with the ids and the past; the fallback probe
    /// sets every symbol to 1 (the old probe gave every input [1, 1]).
    #[test]
    fn decoder_dims_are_symbols_and_the_probe_follows_them() {
        use crate::base::DataType;
        use crate::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto};
        use crate::onnx::{Dim, GraphBuilder, Op};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("decoder.onnx");
        let mut g = GraphBuilder::default();
        let bs = [Dim::Symbol("batch"), Dim::Symbol("sequence")];
        let kv = [
            Dim::Symbol("batch"),
            Dim::Fixed(4),
            Dim::Symbol("past_sequence"),
            Dim::Fixed(8),
        ];
        let mask = [
            Dim::Symbol("batch"),
            Dim::Symbol("past_sequence + sequence"),
        ];
        let ids = g.input("input_ids", DataType::Int64, &bs);
        let m = g.input("attention_mask", DataType::Int64, &mask);
        let past = g.input("past_key_values.0.key", DataType::Float32, &kv);
        for (name, x, dims) in [
            ("ids", &ids, &bs[..]),
            ("mask", &m, &mask[..]),
            ("past", &past, &kv[..]),
        ] {
            let out = g.op(Op::Identity, name, &[x], vec![]);
            let dt = if name == "past" {
                DataType::Float32
            } else {
                DataType::Int64
            };
            g.output(&out, dt, dims);
        }
        let graph = GraphProto {
            node: g.nodes,
            name: "decoder".into(),
            input: g.inputs,
            output: g.outputs,
            ..Default::default()
        };
        let header = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            ..Default::default()
        };
        crate::onnx::writer::write_model(
            &path,
            &header,
            &graph,
            &g.initializers,
            false,
            &mut || Ok(vec![]),
        )
        .expect("write")
        .commit()
        .expect("commit");

        let (inference, specs, _) = inference_for(&path);
        let probe = probe_shapes(&inference, &specs).expect("probe");
        assert_eq!(probe, vec![vec![1, 1], vec![1, 2], vec![1, 4, 1, 8]]);
        let mut model = Tract.load(&path).expect("loads");
        assert_eq!(model.provider(), SYMBOLIC);
        let ids = T::from(ArrayD::<i64>::zeros(IxDyn(&[2, 3])));
        let mask = T::from(ArrayD::<i64>::ones(IxDyn(&[2, 8])));
        let past = T::from(ArrayD::<f32>::zeros(IxDyn(&[2, 4, 5, 8])));
        let out = model
            .run(&[
                ("input_ids", &ids),
                ("attention_mask", &mask),
                ("past_key_values.0.key", &past),
            ])
            .expect("runs");
        let shapes: Vec<&[usize]> = out.iter().map(|(_, t)| t.shape()).collect();
        assert_eq!(shapes, [&[2, 3][..], &[2, 8], &[2, 4, 5, 8]]);
    }
}
