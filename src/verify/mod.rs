//! Verification: run graphs in every selected runtime and compare their outputs with the
//! reference goldens ([`fixture`]) or with each other, collecting every result before the
//! verdict ([`report`]).
//!
//! Three modes: the golden suite (export every head of every case, run, compare); a given graph
//! against a case; a given graph on seeded random inputs, runtimes compared pairwise.

pub mod compare;
pub mod fixture;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayD};

use crate::checkpoint::{Checkpoint, Head};
use crate::export::{self, ExportOptions};
use crate::graph::GraphOptions;
use crate::onnx::inspect::{self, ModelInfo};
use crate::runtime::{self, LoadedModel, Runtime, RuntimeError, RuntimeKind, RuntimeOptions};
use compare::{CompareOptions, Status};
use fixture::{Case, FixtureError, Inputs, Tolerance};
use report::{Check, OutputCheck, Report, RuntimeInfo};

/// Usage or set-up problems (exit code 2): nothing could be judged.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("{0}")]
    Model(String),
    #[error("required runtime {0}")]
    Required(String),
    #[error("no runtime available: {0}")]
    NoRuntime(String),
    #[error("cannot export case {case}: {reason}")]
    Export { case: String, reason: String },
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
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            runtimes: vec![RuntimeKind::OrtCpu, RuntimeKind::Tract],
            required: vec![],
            atol: None,
            rtol: None,
            runtime: RuntimeOptions::default(),
        }
    }
}

impl VerifyOptions {
    fn tolerance(&self, base: Tolerance) -> Tolerance {
        Tolerance {
            atol: self.atol.unwrap_or(base.atol),
            rtol: self.rtol.unwrap_or(base.rtol),
        }
    }
}

/// The runtimes that opened, and what happened to the others.
struct Runtimes {
    open: Vec<Box<dyn Runtime>>,
    info: Vec<RuntimeInfo>,
}

fn open_runtimes(opts: &VerifyOptions) -> Result<Runtimes, VerifyError> {
    let mut kinds = opts.runtimes.clone();
    for r in &opts.required {
        if !kinds.contains(r) {
            kinds.push(*r);
        }
    }
    let mut rt = Runtimes {
        open: vec![],
        info: vec![],
    };
    for kind in kinds {
        match runtime::open(kind, &opts.runtime) {
            Ok(r) => {
                rt.open.push(r);
                rt.info.push(RuntimeInfo::available(kind));
            }
            Err(e) if opts.required.contains(&kind) => {
                return Err(VerifyError::Required(e.to_string()))
            }
            Err(e) => rt.info.push(RuntimeInfo::skipped(kind, e.to_string())),
        }
    }
    if rt.open.is_empty() {
        let why: Vec<String> = rt.info.iter().map(|i| i.detail.clone()).collect();
        return Err(VerifyError::NoRuntime(why.join("; ")));
    }
    Ok(rt)
}

/// The golden suite: every case in `fixtures`, every head it has goldens for, every runtime.
pub fn golden_suite(fixtures: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let cases: Vec<Case> = fixture::discover(fixtures)?
        .iter()
        .map(|d| Case::load(d))
        .collect::<Result<_, _>>()?;
    let runtimes = open_runtimes(opts)?;
    let work = tempfile::tempdir()
        .map_err(|e| VerifyError::Model(format!("cannot make a temporary folder: {e}")))?;
    let mut report = Report::new(runtimes.info.clone());
    for case in &cases {
        let ckpt =
            Checkpoint::open(&case.model_dir(), None, None).map_err(|e| VerifyError::Export {
                case: case.manifest.name.clone(),
                reason: e.to_string(),
            })?;
        for (head_name, outputs) in &case.manifest.outputs {
            let Some(head) = Head::parse(head_name).filter(|h| *h != Head::Decoder) else {
                report.notes.push(format!(
                    "{}: goldens for `{head_name}` are not checked (no such head exported yet)",
                    case.manifest.name
                ));
                continue;
            };
            let hidden = outputs.iter().any(|o| o.starts_with("hidden_states."));
            let dir = work.path().join(&case.manifest.name);
            let opts_x = ExportOptions {
                graph: GraphOptions {
                    hidden_states: hidden,
                },
                ..Default::default()
            };
            let done =
                export::export(&ckpt, &[head], &dir, &opts_x).map_err(|e| VerifyError::Export {
                    case: case.manifest.name.clone(),
                    reason: e.to_string(),
                })?;
            let model = done[0].path.clone();
            let dtypes = output_dtypes(&inspect::inspect(&model).map_err(VerifyError::Model)?);
            for rt in &runtimes.open {
                report.checks.push(check_against_case(
                    rt.as_ref(),
                    &model,
                    &dtypes,
                    case,
                    head,
                    opts,
                ));
            }
        }
    }
    report.finish();
    Ok(report)
}

/// A given graph against a case's goldens.
pub fn model_against_case(
    model: &Path,
    case_dir: &Path,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let case = Case::load(case_dir)?;
    let info = inspect_inputs(model)?;
    let dtypes = output_dtypes(&info);
    let head = head_of(&info).ok_or_else(|| {
        VerifyError::Model(format!(
            "{}: cannot tell which head this graph is (no igpt_onnx.head metadata, no `logits` or `last_hidden_state` output)",
            model.display()
        ))
    })?;
    if !case.manifest.outputs.contains_key(head.name()) {
        return Err(VerifyError::Model(format!(
            "case {} has no goldens for the {} head of {}",
            case.manifest.name,
            head.name(),
            model.display()
        )));
    }
    let runtimes = open_runtimes(opts)?;
    let mut report = Report::new(runtimes.info.clone());
    for rt in &runtimes.open {
        report.checks.push(check_against_case(
            rt.as_ref(),
            model,
            &dtypes,
            &case,
            head,
            opts,
        ));
    }
    report.finish();
    Ok(report)
}

/// A graph as loaded by one runtime, or why it did not load.
type Loaded = Result<Box<dyn LoadedModel>, RuntimeError>;
/// One run's outputs, or the runtime's error text.
type RunResult = Result<crate::runtime::NamedOutputs, String>;

/// A given graph on `sets` seeded input batches, the runtimes compared pairwise.
pub fn random_inputs(
    model: &Path,
    sets: usize,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let info = inspect_inputs(model)?;
    let dtypes = output_dtypes(&info);
    let (vocab, n_pos) = config_dims(&info);
    let runtimes = open_runtimes(opts)?;
    let mut report = Report::new(runtimes.info.clone());
    let mut loaded: Vec<(RuntimeKind, Loaded)> = runtimes
        .open
        .iter()
        .map(|rt| (rt.kind(), rt.load(model)))
        .collect();
    if loaded.len() < 2 {
        report
            .notes
            .push("only one runtime available: nothing to compare pairwise".into());
    }
    let tol = opts.tolerance(Tolerance::default());
    for set in 0..sets {
        let inputs = seeded_inputs(set as u64, vocab, n_pos.min(32));
        let named = named_inputs(&inputs);
        let mut results: Vec<(RuntimeKind, String, RunResult)> = vec![];
        for (kind, m) in loaded.iter_mut() {
            let r = match m {
                Ok(m) => (m.provider(), m.run(&named).map_err(|e| e.to_string())),
                Err(e) => (String::new(), Err(e.to_string())),
            };
            results.push((*kind, r.0, r.1));
        }
        // Every pair, as Polygraphy compares runtimes: the earlier one is the reference.
        let pairs = (0..results.len()).flat_map(|i| (i + 1..results.len()).map(move |j| (i, j)));
        for (i, j) in pairs {
            let (ref_kind, _, ref_out) = &results[i];
            let (kind, provider, out) = &results[j];
            let start = Instant::now();
            let mut check = Check::new(&format!("random-{set}"), "-", *kind, provider, model);
            check.reference = ref_kind.name().to_string();
            match (ref_out, out) {
                (Ok(r), Ok(o)) => {
                    let expected: BTreeMap<String, ArrayD<f32>> = r.iter().cloned().collect();
                    let judge = Judge {
                        tolerance: tol,
                        exclude_padded: false,
                        dtypes: &dtypes,
                    };
                    compare_outputs(&mut check, o, &expected, &inputs, &judge);
                }
                (Err(e), _) => check.error(format!("{} failed: {e}", ref_kind.name())),
                (_, Err(e)) => check.error(e.clone()),
            }
            check.seconds = start.elapsed().as_secs_f64();
            report.checks.push(check);
        }
    }
    report.finish();
    Ok(report)
}

/// Loads, runs and compares one graph on one runtime. Failures become the check's verdict.
fn check_against_case(
    rt: &dyn Runtime,
    model: &Path,
    dtypes: &BTreeMap<String, String>,
    case: &Case,
    head: Head,
    opts: &VerifyOptions,
) -> Check {
    let start = Instant::now();
    let mut check = Check::new(&case.manifest.name, head.name(), rt.kind(), "", model);
    match rt.load(model) {
        Err(e) => check.error(e.to_string()),
        Ok(mut m) => {
            check.provider = m.provider();
            match m.run(&named_inputs(&case.inputs)) {
                Err(e) => check.error(e.to_string()),
                Ok(out) => {
                    let expected: BTreeMap<String, ArrayD<f32>> = case
                        .expected
                        .iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix(&format!("{}/", head.name()))
                                .map(|n| (n.to_string(), v.clone()))
                        })
                        .collect();
                    let judge = Judge {
                        tolerance: opts.tolerance(case.manifest.tolerance),
                        exclude_padded: case.exclude_padded(),
                        dtypes,
                    };
                    compare_outputs(&mut check, &out, &expected, &case.inputs, &judge);
                }
            }
        }
    }
    check.seconds = start.elapsed().as_secs_f64();
    check
}

/// How outputs are judged: the budget, which positions count, and the graph's declared output
/// types (ImageGPT's outputs are float32; another type is reported as a dtype mismatch).
struct Judge<'a> {
    tolerance: Tolerance,
    exclude_padded: bool,
    dtypes: &'a BTreeMap<String, String>,
}

/// Compares every expected output (missing ones are failures), then names the first hidden
/// state that diverges.
fn compare_outputs(
    check: &mut Check,
    actual: &crate::runtime::NamedOutputs,
    expected: &BTreeMap<String, ArrayD<f32>>,
    inputs: &Inputs,
    judge: &Judge<'_>,
) {
    let by_name: BTreeMap<&str, &ArrayD<f32>> =
        actual.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort_by_key(|n| output_order(n));
    for name in names {
        let exp = &expected[name];
        let Some(act) = by_name.get(name.as_str()) else {
            check.missing.push(name.clone());
            continue;
        };
        let mut c = compare::compare(
            act,
            exp,
            &CompareOptions {
                tolerance: judge.tolerance,
                positions: judge.exclude_padded.then_some(&inputs.attention_mask),
                argmax: name == "logits",
            },
        );
        let dtype = judge
            .dtypes
            .get(name)
            .cloned()
            .unwrap_or_else(|| "float32".into());
        if dtype != "float32" && c.status != Status::ShapeMismatch {
            c.status = Status::DtypeMismatch;
        }
        check.outputs.push(OutputCheck {
            name: name.clone(),
            tolerance: judge.tolerance,
            dtype,
            comparison: c,
        });
    }
    check.first_divergent_layer = first_divergence(&check.outputs);
    check.settle();
}

/// The graph's declared output element types by name.
fn output_dtypes(info: &ModelInfo) -> BTreeMap<String, String> {
    info.outputs
        .iter()
        .map(|o| (o.name.clone(), o.elem_type.clone()))
        .collect()
}

/// `logits` / `last_hidden_state` first, then hidden states by layer.
fn output_order(name: &str) -> (usize, usize) {
    match name
        .strip_prefix("hidden_states.")
        .and_then(|i| i.parse().ok())
    {
        Some(i) => (1, i),
        None => (0, 0),
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

fn named_inputs(inputs: &Inputs) -> Vec<runtime::NamedInput<'static>> {
    vec![
        ("input_ids", inputs.input_ids.clone().into_dyn()),
        ("attention_mask", inputs.attention_mask.clone().into_dyn()),
    ]
}

/// Checks that `model` is ONNX with ImageGPT's inputs.
fn inspect_inputs(model: &Path) -> Result<ModelInfo, VerifyError> {
    let info = inspect::inspect(model).map_err(VerifyError::Model)?;
    let names: Vec<&str> = info.inputs.iter().map(|s| s.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != ["attention_mask", "input_ids"] {
        return Err(VerifyError::Model(format!(
            "{}: graph inputs are [{}]; expected input_ids and attention_mask",
            model.display(),
            names.join(", ")
        )));
    }
    Ok(info)
}

fn head_of(info: &ModelInfo) -> Option<Head> {
    if let Some(h) = info
        .metadata
        .get("igpt_onnx.head")
        .and_then(|h| Head::parse(h))
    {
        return Some(h);
    }
    let logits = info.outputs.iter().find(|o| o.name == "logits");
    match logits {
        Some(o) if o.dims.len() == 2 => Some(Head::Classifier),
        Some(_) => Some(Head::CausalLm),
        None => info
            .outputs
            .iter()
            .any(|o| o.name == "last_hidden_state")
            .then_some(Head::Base),
    }
}

/// `(vocab_size, n_positions)` from the export metadata, else the published defaults.
fn config_dims(info: &ModelInfo) -> (usize, usize) {
    let cfg: Option<serde_json::Value> = info
        .metadata
        .get("igpt_onnx.config")
        .and_then(|s| serde_json::from_str(s).ok());
    let get = |k: &str, d: usize| {
        cfg.as_ref()
            .and_then(|c| c.get(k))
            .and_then(|v| v.as_u64())
            .map_or(d, |v| v as usize)
    };
    (get("vocab_size", 513), get("n_positions", 1024))
}

/// Valid inputs: row 0 full length, row 1 right-padded to three quarters; SOS first.
fn seeded_inputs(seed: u64, vocab: usize, seq: usize) -> Inputs {
    let mut rng = crate::random::SplitMix64::new(0x1617_0000 + seed);
    let mut ids = Array2::<i64>::zeros((2, seq));
    let mut mask = Array2::<i64>::ones((2, seq));
    for ((b, s), v) in ids.indexed_iter_mut() {
        *v = if s == 0 {
            vocab as i64 - 1
        } else {
            (rng.next_u64() % (vocab as u64 - 1)) as i64
        };
        if b == 1 && s >= (seq * 3).div_ceil(4) {
            mask[[b, s]] = 0;
        }
    }
    Inputs {
        input_ids: ids,
        attention_mask: mask,
    }
}

/// Where the golden suite looks by default: `./fixtures`, else the crate's own.
pub fn default_fixtures() -> PathBuf {
    let local = PathBuf::from("fixtures");
    if local.is_dir() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }
}
