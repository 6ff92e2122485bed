//! Verification: run graphs in every selected runtime and compare their outputs with the
//! reference goldens ([`fixture`]) or with each other, collecting every result before the
//! verdict ([`report`]).
//!
//! Three modes, below: the golden suite (export every head of every case, run, compare); a
//! given graph against a case; a given graph on seeded random inputs, runtimes compared
//! pairwise. The parts are one concern each: opening runtimes (`runtimes`), what a graph file
//! is (`model`), feeds (`fixture::Case::feed`, `inputs`), judging a run (`judge`,
//! [`compare`]) and the report. Heads are handled by name, so a case's goldens for a head the
//! exporter cannot build yet (such as `decoder`) are noted, and a given graph of that head is
//! verified like any other.

mod budget;
pub mod compare;
mod feed;
pub mod fixture;
mod inputs;
mod judge;
pub mod matrix;
mod model;
pub mod options;
pub mod report;
mod runtimes;
pub mod saved;
mod steps;
pub mod tasks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, ArrayD};

use crate::base::{DataType, IoSpec, Tensor};
use crate::calibrate;
use crate::checkpoint::Checkpoint;
use crate::export::{self, ExportOptions};
use crate::generate::DecoderDims;
use crate::graph::io::{CacheMode, DecoderIoError, ATTENTION_MASK, INPUT_IDS, LOGITS};
use crate::graph::profile::Budget;
use crate::graph::{Calibration, DecoderIo, GraphOptions, Head, Precision, Profile};
use crate::runtime::{LoadedModel, NamedOutputs, Runtime, RuntimeError, RuntimeKind};
use fixture::{Case, Tolerance};
use judge::Judge;
pub(crate) use model::GraphFile;
pub use options::{VerifyError, VerifyOptions};
use report::{Check, Report};
use saved::SavedRun;

/// The golden suite: every case in `fixtures`, every head it has goldens for, every runtime.
pub fn golden_suite(fixtures: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let cases: Vec<Case> = fixture::discover(fixtures)?
        .iter()
        .map(|d| Case::load(d))
        .collect::<Result<_, _>>()?;
    let runtimes = runtimes::open(opts)?;
    let work = tempfile::tempdir().map_err(VerifyError::TempDir)?;
    let mut report = Report::new(runtimes.info.clone());
    for case in &cases {
        let name = &case.manifest.name;
        let export_error = |e: Box<dyn std::error::Error + Send + Sync>| VerifyError::Export {
            case: name.clone(),
            source: e,
        };
        let ckpt =
            Checkpoint::open(&case.model_dir(), None, None).map_err(|e| export_error(e.into()))?;
        let calibration = calibration(&ckpt, case, opts)?;
        for (head_name, outputs) in &case.manifest.outputs {
            let Some(head) = Head::parse(head_name) else {
                report.notes.push(format!(
                    "{name}: goldens for `{head_name}` are not checked (no such head exported yet)"
                ));
                continue;
            };
            let hidden = outputs.iter().any(|o| o.starts_with("hidden_states."));
            // `name` is one plain path component (checked when the case loaded).
            let dir = work.path().join(name);
            let opts_x = ExportOptions {
                graph: GraphOptions {
                    hidden_states: hidden,
                    ..Default::default()
                },
                profile: opts.profile,
                precision: opts.precision,
                calibration: calibration.clone(),
                keep_float32: opts.keep_float32.clone(),
                opset: opts.opset,
                ..Default::default()
            };
            let done = export::export(&ckpt, &[head], &dir, &opts_x)
                .map_err(|e| export_error(e.into()))?;
            let graph = Graph::new(&done[0].path, case, head, opts)?;
            for rt in &runtimes.open {
                report.checks.push(graph.check(rt.as_ref()));
            }
        }
        if case.manifest.outputs.contains_key(Head::CausalLm.name()) {
            let dir = work.path().join(name);
            let opts_x = ExportOptions {
                profile: opts.profile,
                precision: opts.precision,
                calibration: calibration.clone(),
                keep_float32: opts.keep_float32.clone(),
                opset: opts.opset,
                ..Default::default()
            };
            let done = export::export(&ckpt, &[Head::Decoder], &dir, &opts_x)
                .map_err(|e| export_error(e.into()))?;
            for rt in &runtimes.open {
                report
                    .checks
                    .push(steps_check(rt.as_ref(), &done[0].path, case, opts));
            }
        }
    }
    report.finish();
    Ok(report)
}

/// The activation ranges a calibrated precision needs for `case`: from the set the options
/// name, else from the case's own inputs (`inputs.safetensors`); `None` for other precisions.
/// (`debug precision` calibrates its exports the same way.)
pub fn calibration(
    ckpt: &Checkpoint,
    case: &Case,
    opts: &VerifyOptions,
) -> Result<Option<Arc<Calibration>>, VerifyError> {
    if !opts.precision.spec().matmul.calibrated() {
        return Ok(None);
    }
    let err = |source| VerifyError::Calibrate {
        case: case.manifest.name.clone(),
        source: Box::new(source),
    };
    let data = opts
        .calibration
        .clone()
        .unwrap_or_else(|| case.dir.join(fixture::INPUTS_FILE));
    let set = calibrate::read_set(&data, ckpt).map_err(err)?;
    let c = calibrate::calibrate(
        ckpt,
        opts.profile,
        &set,
        opts.calibration_method,
        &opts.runtime,
    )
    .map_err(err)?;
    Ok(Some(Arc::new(c)))
}

/// A decoder on `rt`: the case's sequence as a prompt and single steps, its logits against the
/// full forward's goldens ([`steps`]).
fn steps_check(rt: &dyn Runtime, model: &Path, case: &Case, opts: &VerifyOptions) -> Check {
    let start = Instant::now();
    let ids = case.inputs.get(INPUT_IDS).and_then(Tensor::as_i64);
    let mask = case.inputs.get(ATTENTION_MASK).and_then(Tensor::as_i64);
    let seq = ids.map_or(0, |a| a.shape().get(1).copied().unwrap_or(0));
    let mut check = Check::new(
        &case.manifest.name,
        &steps::label(seq),
        rt.kind().name(),
        "",
        model,
    );
    let two_d = |a: Option<&ArrayD<i64>>| a.and_then(|a| a.clone().into_dimensionality().ok());
    let (Some(ids), Some(mask)) = (two_d(ids), two_d(mask)) else {
        check.error("the case has no [batch, sequence] input_ids / attention_mask".into());
        return check;
    };
    let expected: BTreeMap<String, ArrayD<f32>> = case
        .expected_outputs(Head::CausalLm)
        .into_iter()
        .filter(|(n, _)| n == LOGITS)
        .collect();
    let (profile, precision) =
        GraphFile::read(model).map_or((Profile::Portable, Precision::Float32), |f| f.profile());
    if let Some(why) = model::not_applicable(rt.kind(), profile, precision) {
        check.not_applicable(why);
        return check;
    }
    match rt.load(model) {
        Err(e) => check.error(e.to_string()),
        Ok(mut m) => {
            check.provider = m.provider();
            let computed = m.compute_precision();
            check.compute_precision = budget::compute_name(computed);
            let (tolerance, budget) = opts.judged(case.manifest.tolerance, precision, computed);
            let out = steps::prompt_then_steps(m.as_mut(), &ids, &mask);
            check.node_providers = m.node_providers().unwrap_or_default();
            match out {
                Err(e) => check.error(e.to_string()),
                Ok(out) => Judge {
                    tolerance,
                    overrides: &opts.per_output,
                    positions: case.unpadded_positions().as_ref(),
                    dtypes: &BTreeMap::new(),
                    budget,
                }
                .judge(&mut check, &out, &expected),
            }
            if let (Some(runs), true) = (&case.generations, check.error.is_none()) {
                let dims = DecoderDims {
                    vocab_size: case.config.vocab_size,
                    n_positions: case.config.n_positions,
                };
                match tasks::greedy(m.as_mut(), &dims, runs) {
                    Ok(g) => check.greedy = Some(g),
                    Err(e) => check.error(format!("greedy generations: {e}")),
                }
            }
        }
    }
    check.seconds = start.elapsed().as_secs_f64();
    check
}

/// A given graph against a case's goldens (`case_dir`: a case, or a folder holding one).
pub fn model_against_case(
    model: &Path,
    case_dir: &Path,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let case = Case::load(&fixture::case_folder(case_dir)?)?;
    let file = GraphFile::read(model)?;
    let head = file.head().ok_or_else(|| VerifyError::UnknownHead {
        path: model.display().to_string(),
    })?;
    let stepwise = head == Head::Decoder
        && file.dtypes.contains_key(LOGITS)
        && case.manifest.outputs.contains_key(Head::CausalLm.name());
    let has_goldens = case.manifest.outputs.contains_key(head.name());
    if !has_goldens && !stepwise {
        return Err(VerifyError::NoGoldens {
            case: case.manifest.name.clone(),
            head: head.name(),
            path: model.display().to_string(),
        });
    }
    let graph = has_goldens
        .then(|| Graph::with_file(model, file, &case, head, opts))
        .transpose()?;
    let runtimes = runtimes::open(opts)?;
    let mut report = Report::new(runtimes.info.clone());
    for rt in &runtimes.open {
        if let Some(graph) = &graph {
            report.checks.push(graph.check(rt.as_ref()));
        }
        // A decoder is also run as a prompt plus single steps against the full forward.
        if stepwise {
            report
                .checks
                .push(steps_check(rt.as_ref(), model, &case, opts));
        }
    }
    report.finish();
    Ok(report)
}

/// One graph against one case's goldens for one head: the feed and expectations, made once
/// for every runtime.
struct Graph<'a> {
    model: &'a Path,
    case: &'a Case,
    head: Head,
    feed: Vec<(String, Tensor)>,
    expected: BTreeMap<String, ArrayD<f32>>,
    positions: Option<Array2<i64>>,
    dtypes: BTreeMap<String, String>,
    /// The graph's inputs (to feed a labelled set).
    inputs: Vec<IoSpec>,
    /// The case's own tolerance (for float32 runs of float32 graphs).
    tolerance: Tolerance,
    profile: (Profile, Precision),
    opts: &'a VerifyOptions,
}

impl<'a> Graph<'a> {
    fn new(
        model: &'a Path,
        case: &'a Case,
        head: Head,
        opts: &'a VerifyOptions,
    ) -> Result<Self, VerifyError> {
        Self::with_file(model, GraphFile::read(model)?, case, head, opts)
    }

    fn with_file(
        model: &'a Path,
        file: GraphFile,
        case: &'a Case,
        head: Head,
        opts: &'a VerifyOptions,
    ) -> Result<Self, VerifyError> {
        let profile = file.profile();
        Ok(Graph {
            model,
            case,
            head,
            feed: case.feed(head, &file.inputs)?,
            inputs: file.inputs.clone(),
            expected: case.expected_outputs(head),
            positions: case.position_mask(head),
            dtypes: file.dtypes,
            tolerance: case.manifest.tolerance,
            profile,
            opts,
        })
    }

    /// Loads, runs and judges on `rt`. Failures become the check's verdict.
    fn check(&self, rt: &dyn Runtime) -> Check {
        let start = Instant::now();
        let mut check = Check::new(
            &self.case.manifest.name,
            self.head.name(),
            rt.kind().name(),
            "",
            self.model,
        );
        if let Some(why) = model::not_applicable(rt.kind(), self.profile.0, self.profile.1) {
            check.not_applicable(why);
            return check;
        }
        match rt.load(self.model) {
            Err(e) => check.error(e.to_string()),
            Ok(mut m) => {
                check.provider = m.provider();
                let computed = m.compute_precision();
                check.compute_precision = budget::compute_name(computed);
                let (tolerance, budget) =
                    self.opts.judged(self.tolerance, self.profile.1, computed);
                let out = m.run(&borrowed(&self.feed));
                check.node_providers = m.node_providers().unwrap_or_default();
                match out {
                    Err(e) => check.error(e.to_string()),
                    Ok(out) => {
                        Judge {
                            tolerance,
                            overrides: &self.opts.per_output,
                            positions: self.positions.as_ref(),
                            dtypes: &self.dtypes,
                            budget,
                        }
                        .judge(&mut check, &out, &self.expected);
                        let budget = budget.unwrap_or(&self.profile.1.spec().budget);
                        if let Err(e) = self.tasks(&mut check, m.as_mut(), budget) {
                            check.error(format!("labelled set: {e}"));
                        }
                        check.settle();
                    }
                }
            }
        }
        check.seconds = start.elapsed().as_secs_f64();
        check
    }
}

impl Graph<'_> {
    /// The task metrics of this head on the case's labelled set, when it has one: a causal LM's
    /// NLL, a classifier's accuracy. (Random-weight cases have none: the NLL of random ids under
    /// random weights says nothing a precision could be judged by.)
    fn tasks(
        &self,
        check: &mut Check,
        m: &mut dyn LoadedModel,
        budget: &Budget,
    ) -> Result<(), tasks::TaskError> {
        let labelled = self.case.labelled.as_ref();
        match (self.head, labelled) {
            (Head::CausalLm, Some(set)) => {
                (check.nll, check.labelled_flips) =
                    tasks::labelled_nll(m, &self.inputs, set, budget)?;
            }
            (Head::Classifier, Some(set)) => {
                check.classification = Some(tasks::accuracy(m, &self.inputs, set, budget)?);
            }
            _ => {}
        }
        Ok(())
    }
}

fn borrowed(feed: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    feed.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

/// A graph as loaded by one runtime, or why it did not load.
type Loaded = Result<Box<dyn LoadedModel>, RuntimeError>;
/// One run's outputs, or why there are none.
type RunResult = Result<NamedOutputs, RunFailure>;

/// Why a runtime gave no outputs for a feed.
#[derive(Debug, thiserror::Error)]
enum RunFailure {
    #[error(transparent)]
    Run(#[from] RuntimeError),
    #[error(transparent)]
    Steps(#[from] crate::generate::SessionError),
    /// The graph did not load (the load error is shared by every feed, so said again).
    #[error("{0}")]
    NotLoaded(String),
}

/// A given graph on `sets` seeded input batches, the runtimes compared pairwise.
pub fn random_inputs(
    model: &Path,
    sets: usize,
    opts: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let file = GraphFile::read(model)?;
    let (vocab, n_pos) = file.config_dims();
    let feeds = seeded_feeds(model, &file, sets)?;
    let saved = match &opts.compare_with {
        Some(path) => {
            let run = SavedRun::read(path)?;
            run.check_graph(&saved::graph_sha256(model)?)?;
            Some(run)
        }
        None => None,
    };
    let runtimes = runtimes::open(opts)?;
    let mut report = Report::new(runtimes.info.clone());
    let (profile, precision) = file.profile();
    // Every row names the graph's head; `-` only for a foreign graph whose outputs say nothing.
    let head = file.head().map_or("-", Head::name);
    let mut loaded: Vec<(RuntimeKind, Loaded)> = Vec::new();
    for rt in &runtimes.open {
        match model::not_applicable(rt.kind(), profile, precision) {
            Some(why) => {
                let mut check = Check::new("random", head, rt.kind().name(), "", model);
                check.not_applicable(why);
                report.checks.push(check);
            }
            None => loaded.push((rt.kind(), rt.load(model))),
        }
    }
    if loaded.len() + usize::from(saved.is_some()) < 2 && opts.save_outputs.is_none() {
        report
            .notes
            .push("only one runtime available: nothing to compare pairwise".into());
    }
    let judging = Judging {
        opts,
        precision,
        head,
        dtypes: &file.dtypes,
    };
    let mut recorder = saved::Recorder::default();
    // A decoder is also run step by step: a random sequence as a prompt and single-token
    // steps, each runtime feeding back its own cache, the logits of every position compared.
    let decoder = file.dtypes.contains_key(LOGITS)
        && !matches!(
            DecoderIo::from_inputs(&file.inputs, CacheMode::Concat),
            Err(DecoderIoError::NotADecoder)
        );
    for (set, feed) in feeds.iter().enumerate() {
        let case = format!("random-{set}");
        let results = run_all(&mut loaded, |m| {
            m.run(&borrowed(feed)).map_err(RunFailure::from)
        });
        let sha = saved::inputs_sha256(feed);
        compare_runs(
            &mut report,
            &case,
            results,
            (&judging, model),
            (&saved, &mut recorder),
            &sha,
        )?;
        if decoder {
            let (ids, mask) = inputs::sequence(set as u64, vocab, n_pos);
            let label = steps::label(ids.ncols());
            let results = run_all(&mut loaded, |m| {
                steps::prompt_then_steps(m, &ids, &mask).map_err(RunFailure::from)
            });
            let case = format!("{case} {label}");
            let sequence = [
                (INPUT_IDS.to_string(), Tensor::I64(ids.into_dyn())),
                (ATTENTION_MASK.to_string(), Tensor::I64(mask.into_dyn())),
            ];
            let sha = saved::inputs_sha256(&sequence);
            compare_runs(
                &mut report,
                &case,
                results,
                (&judging, model),
                (&saved, &mut recorder),
                &sha,
            )?;
        }
    }
    report.finish();
    if let Some(path) = &opts.save_outputs {
        recorder.write(path, &saved::graph_sha256(model)?)?;
        let runs = recorder.runs();
        report
            .notes
            .push(format!("{runs} runs' outputs saved to {}", path.display()));
        // A machine with one runtime saves for a comparison elsewhere: every run that ran
        // and was saved is a success, even with nothing to compare here.
        let s = &report.summary;
        if runs > 0 && s.failed + s.errors == 0 {
            report.verdict = report::CheckStatus::Pass;
        }
    }
    Ok(report)
}

/// `sets` seeded input batches for a graph (`verify --random-inputs`), or why it cannot be fed
/// at random.
pub(crate) fn seeded_feeds(
    model: &Path,
    file: &GraphFile,
    sets: usize,
) -> Result<Vec<Vec<(String, Tensor)>>, VerifyError> {
    let (vocab, n_pos) = file.config_dims();
    (0..sets as u64)
        .map(|set| inputs::seeded(set, &file.inputs, vocab, n_pos))
        .collect::<Result<_, _>>()
        .map_err(|source| VerifyError::Inputs {
            path: model.display().to_string(),
            source,
        })
}

/// One runtime's run of one feed: what ran (a runtime, or `saved:<runtime>`), in which
/// precision, and its outputs.
struct RuntimeRun {
    name: String,
    provider: String,
    computed: Option<DataType>,
    out: RunResult,
    /// Nodes per execution provider, where the runtime tells.
    nodes: BTreeMap<String, usize>,
}

/// One run per loaded runtime: `run` on each graph that loaded, the load error on the others.
fn run_all(
    loaded: &mut [(RuntimeKind, Loaded)],
    mut run: impl FnMut(&mut dyn LoadedModel) -> RunResult,
) -> Vec<RuntimeRun> {
    loaded
        .iter_mut()
        .map(|(kind, m)| match m {
            Ok(m) => {
                let out = run(m.as_mut());
                RuntimeRun {
                    name: kind.name().to_string(),
                    provider: m.provider(),
                    computed: m.compute_precision(),
                    out,
                    nodes: m.node_providers().unwrap_or_default(),
                }
            }
            Err(e) => RuntimeRun::not_loaded(*kind, e),
        })
        .collect()
}

impl RuntimeRun {
    fn not_loaded(kind: RuntimeKind, e: &RuntimeError) -> Self {
        RuntimeRun {
            name: kind.name().to_string(),
            provider: String::new(),
            computed: None,
            out: Err(RunFailure::NotLoaded(e.to_string())),
            nodes: BTreeMap::new(),
        }
    }
}

/// How random-input runs are judged: per pair, by the looser precision of the two runs.
struct Judging<'a> {
    opts: &'a VerifyOptions,
    precision: Precision,
    /// The graph's head, named in every row.
    head: &'static str,
    dtypes: &'a BTreeMap<String, String>,
}

/// Records the live runs of one input set (to save), puts the saved ones first (as the
/// references), and compares every pair.
fn compare_runs(
    report: &mut Report,
    case: &str,
    live: Vec<RuntimeRun>,
    (judging, model): (&Judging<'_>, &Path),
    (saved, recorder): (&Option<SavedRun>, &mut saved::Recorder),
    inputs_sha256: &str,
) -> Result<(), VerifyError> {
    let alone = live.len() + usize::from(saved.is_some()) < 2;
    for run in &live {
        if let (Err(e), true) = (&run.out, alone) {
            // Nothing to pair it with: the failure is its own check.
            let mut check = Check::new(case, judging.head, &run.name, &run.provider, model);
            check.error(e.to_string());
            report.checks.push(check);
        }
    }
    let kept = live
        .iter()
        .filter_map(|run| {
            let outputs = run.out.as_ref().ok()?.clone();
            Some(saved::SavedOutputs {
                runtime: run.name.clone(),
                provider: run.provider.clone(),
                outputs,
            })
        })
        .collect();
    recorder.add(case, inputs_sha256.to_string(), kept);
    let mut results: Vec<RuntimeRun> = match saved {
        Some(run) => run
            .set(case, inputs_sha256)?
            .into_iter()
            .map(|s| RuntimeRun {
                name: s.runtime,
                provider: s.provider,
                computed: None,
                out: Ok(s.outputs),
                nodes: BTreeMap::new(),
            })
            .collect(),
        None => vec![],
    };
    results.extend(live);
    pairwise(report, case, &results, judging, model);
    Ok(())
}

/// Every pair of runtimes' results, as Polygraphy compares runtimes: the earlier one is the
/// reference.
fn pairwise(
    report: &mut Report,
    case: &str,
    results: &[RuntimeRun],
    judging: &Judging<'_>,
    model: &Path,
) {
    let pairs = (0..results.len()).flat_map(|i| (i + 1..results.len()).map(move |j| (i, j)));
    for (i, j) in pairs {
        let (reference, run) = (&results[i], &results[j]);
        let start = Instant::now();
        let mut check = Check::new(case, judging.head, &run.name, &run.provider, model);
        check.reference = reference.name.clone();
        check.node_providers = run.nodes.clone();
        // The run in the lower precision sets the budget (float32 pairs: neither).
        let computed = run.computed.or(reference.computed);
        check.compute_precision = budget::compute_name(computed);
        let (tolerance, budget) =
            judging
                .opts
                .judged(Tolerance::default(), judging.precision, computed);
        let judge = Judge {
            tolerance,
            overrides: &judging.opts.per_output,
            positions: None,
            dtypes: judging.dtypes,
            budget,
        };
        match (&reference.out, &run.out) {
            (Ok(r), Ok(o)) => {
                let expected = r.iter().map(|(n, t)| (n.clone(), t.to_f32())).collect();
                judge.judge(&mut check, o, &expected);
            }
            (Err(e), _) => check.error(format!("{} failed: {e}", reference.name)),
            (_, Err(e)) => check.error(e.to_string()),
        }
        check.seconds = start.elapsed().as_secs_f64();
        report.checks.push(check);
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
