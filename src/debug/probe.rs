//! What bisection and reduction share: their options and errors, the two runtimes, the
//! feeds, how a tensor is judged, and the prober that runs marked copies of a graph.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::graph::{Structure, StructureError};
use super::saved::{SavedTensors, SavedTensorsError};
use std::io::Write;

use crate::base::files::{temp_file_in, FileError};
use crate::base::Tensor;
use crate::graph::Precision;
use crate::runtime::{self, Runtime, RuntimeError, RuntimeKind, RuntimeOptions};
use crate::verify::compare::{self, CompareOptions, REL_FLOOR};
use crate::verify::fixture::{self, Case, Tolerance};
use crate::verify::options::OutputTolerance;
use crate::verify::{VerifyError, VerifyOptions};

/// How many tensors a round marks by default: with imagegpt-large's widest tensors (the MLP's
/// `[batch, sequence, 6144]` and attention's `[batch, 16, sequence, sequence]` floats) at a
/// sequence of 1,024, sixteen of them hold about 1 GB beside the weights.
pub const DEFAULT_MAX_MARKED: usize = 16;

/// Where a debug run's feed comes from.
#[derive(Debug, Clone)]
pub enum InputSource {
    /// A golden case's inputs for the graph's head.
    Fixture(PathBuf),
    /// Seeded random sets (as `verify --random-inputs`); the first set whose outputs differ is
    /// bisected.
    Random(usize),
    /// A safetensors file holding every graph input by name.
    File(PathBuf),
}

/// What `debug bisect` and `debug reduce` take.
#[derive(Debug, Clone)]
pub struct DebugOptions {
    /// The reference runtime, then the one compared with it.
    pub runtimes: Vec<RuntimeKind>,
    pub runtime: RuntimeOptions,
    pub inputs: InputSource,
    pub atol: Option<f64>,
    pub rtol: Option<f64>,
    pub per_output: Vec<OutputTolerance>,
    pub max_marked: usize,
    /// The reference: tensors saved by `--save-tensors` (elsewhere); the one runtime given is
    /// compared with them.
    pub compare_with: Option<PathBuf>,
}

/// Why a debug run could not be done (the divergence itself is the report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("debug compares two runtimes, the first the reference (--runtimes A,B); {0}")]
    Runtimes(String),
    #[error("{0}")]
    Structure(#[from] StructureError),
    #[error(transparent)]
    Read(#[from] crate::onnx::inspect::InspectError),
    #[error(transparent)]
    Verify(Box<VerifyError>),
    #[error("cannot read the inputs {path}: {source}")]
    Inputs {
        path: String,
        #[source]
        source: Box<fixture::FixtureError>,
    },
    #[error("{path}: input `{input}` of the graph is not in the file (it holds {have})")]
    MissingInput {
        path: String,
        input: String,
        have: String,
    },
    /// A runtime failed to load or run a graph (the chain keeps the runtime's error, so the
    /// command exits 1 as verify does).
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("{runtime} gave no tensor `{tensor}` for the marked graph")]
    NoTensor { runtime: String, tensor: String },
    #[error("cannot make a working folder: {0}")]
    Work(std::io::Error),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("--max-marked must be at least 1")]
    MaxMarked,
    #[error(transparent)]
    Saved(#[from] SavedTensorsError),
    #[error("{path} holds tensors of another graph (sha256 {saved}, this one {this}): save them again from this graph")]
    SavedGraph {
        path: String,
        saved: String,
        this: String,
    },
    #[error("{path} holds tensors of other inputs (sha256 {saved}): give the --fixture, --random-inputs or --inputs they were saved with")]
    SavedInputs { path: String, saved: String },
    #[error("the inputs give no feed")]
    NoFeed,
    #[error(transparent)]
    GraphSha(#[from] crate::verify::saved::SavedError),
    #[error("{0} exists and is not an empty folder; give a new folder for the repro")]
    OutExists(String),
}

impl From<VerifyError> for DebugError {
    fn from(e: VerifyError) -> Self {
        DebugError::Verify(Box::new(e))
    }
}

impl DebugError {
    /// A runtime failed to load or run the graph (verify's exit 1), apart from set-up and
    /// input errors (2).
    pub fn is_runtime_failure(&self) -> bool {
        matches!(
            self,
            DebugError::Runtime(RuntimeError::Load { .. } | RuntimeError::Run { .. })
        )
    }
}

/// One side of a comparison: a runtime, or a run saved elsewhere.
pub(crate) enum Side {
    Live(Box<dyn Runtime>),
    Saved(SavedTensors),
}

/// The reference and the runtime compared with it.
pub(crate) struct Pair {
    pub sides: Vec<Side>,
}

impl Pair {
    /// `--runtimes A,B`, or `--compare-with SAVED --runtimes B` (the saved run the reference,
    /// checked to be of `model`).
    pub fn open(opts: &DebugOptions, model: &Path) -> Result<Pair, DebugError> {
        let wanted = if opts.compare_with.is_some() { 1 } else { 2 };
        if opts.runtimes.len() != wanted {
            let given: Vec<&str> = opts.runtimes.iter().map(|k| k.name()).collect();
            let given = match given.is_empty() {
                true => "none".to_string(),
                false => given.join(","),
            };
            return Err(DebugError::Runtimes(match wanted {
                1 => format!("with --compare-with, one runtime; given {given}"),
                _ => format!("given {given}"),
            }));
        }
        let mut sides = Vec::new();
        if let Some(path) = &opts.compare_with {
            let saved = SavedTensors::read(path)?;
            let this = crate::verify::saved::graph_sha256(model)?;
            if saved.graph_sha256 != this {
                return Err(DebugError::SavedGraph {
                    path: path.display().to_string(),
                    saved: saved.graph_sha256,
                    this,
                });
            }
            sides.push(Side::Saved(saved));
        }
        for &k in &opts.runtimes {
            sides.push(Side::Live(runtime::open(k, &opts.runtime)?));
        }
        Ok(Pair { sides })
    }

    /// The one runtime of `opts` (saving tensors).
    pub fn open_one(opts: &DebugOptions) -> Result<Pair, DebugError> {
        match opts.runtimes.as_slice() {
            [k] => Ok(Pair {
                sides: vec![Side::Live(runtime::open(*k, &opts.runtime)?)],
            }),
            more => Err(DebugError::Runtimes(format!(
                "--save-tensors runs one runtime; given {}",
                more.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
            ))),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.sides
            .iter()
            .map(|s| match s {
                Side::Live(rt) => rt.kind().name().to_string(),
                Side::Saved(saved) => saved.name(),
            })
            .collect()
    }

    /// The saved reference's feed sha256, when the reference is saved.
    pub fn saved_inputs(&self) -> Option<&str> {
        self.sides.iter().find_map(|s| match s {
            Side::Saved(saved) => Some(saved.inputs_sha256.as_str()),
            Side::Live(_) => None,
        })
    }
}

/// One feed: every graph input by name.
pub(crate) type Feed = Vec<(String, Tensor)>;

/// The feeds a debug run tries, in order, and the tolerance its case sets.
pub(crate) fn feeds(
    model: &Path,
    source: &InputSource,
) -> Result<(Vec<Feed>, Tolerance), DebugError> {
    let file = crate::verify::GraphFile::read(model)?;
    match source {
        InputSource::Fixture(dir) => {
            let case = Case::load(dir).map_err(VerifyError::from)?;
            let feed = match file.head() {
                Some(head) => case.feed(head, &file.inputs).map_err(VerifyError::from)?,
                None => by_name(&file.inputs, &case.inputs, dir)?,
            };
            Ok((vec![feed], case.manifest.tolerance))
        }
        InputSource::Random(n) => {
            let feeds = crate::verify::seeded_feeds(model, &file, *n)?;
            Ok((feeds, Tolerance::default()))
        }
        InputSource::File(path) => {
            let tensors = fixture::read_all(path).map_err(|source| DebugError::Inputs {
                path: path.display().to_string(),
                source: Box::new(source),
            })?;
            Ok((
                vec![by_name(&file.inputs, &tensors, path)?],
                Tolerance::default(),
            ))
        }
    }
}

fn by_name(
    inputs: &[crate::base::IoSpec],
    have: &BTreeMap<String, Tensor>,
    path: &Path,
) -> Result<Vec<(String, Tensor)>, DebugError> {
    inputs
        .iter()
        .map(|spec| {
            let t = have
                .get(&spec.name)
                .ok_or_else(|| DebugError::MissingInput {
                    path: path.display().to_string(),
                    input: spec.name.clone(),
                    have: have.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
            Ok((spec.name.clone(), t.clone()))
        })
        .collect()
}

/// How far one tensor differs between the two runtimes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Diff {
    pub max_abs: f64,
    pub max_rel: f64,
    /// The reference's largest finite magnitude: the scale `max_abs` is read against.
    pub scale: f64,
    /// Some element is outside tolerance (or the shapes differ).
    pub diverges: bool,
}

impl Diff {
    /// `max_abs` against the tensor's scale (0 where both are 0).
    pub fn relative(&self) -> f64 {
        if self.max_abs == 0.0 {
            0.0
        } else {
            self.max_abs / self.scale.max(REL_FLOOR)
        }
    }
}

/// How tensors are judged: a tolerance, and the per-name overrides (`--tolerance`).
pub(crate) struct Judging {
    pub tolerance: Tolerance,
    pub overrides: Vec<OutputTolerance>,
}

impl Judging {
    /// The case's (or the default) tolerance, the graph's reduced-precision budget or the one
    /// a runtime computed in (as verify judges), then `--atol` / `--rtol`.
    pub fn new(
        opts: &DebugOptions,
        base: Tolerance,
        precision: Precision,
        computed: Option<crate::base::DataType>,
    ) -> Judging {
        let v = VerifyOptions {
            atol: opts.atol,
            rtol: opts.rtol,
            ..Default::default()
        };
        let (tolerance, _) = v.judged(base, precision, computed);
        Judging {
            tolerance,
            overrides: opts.per_output.clone(),
        }
    }

    pub fn diff(&self, name: &str, reference: &Tensor, other: &Tensor) -> Diff {
        let (reference, other) = (reference.to_f32(), other.to_f32());
        let tolerance = OutputTolerance::for_name(&self.overrides, name, self.tolerance);
        let scale = reference
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f64, |m, &v| m.max(f64::from(v).abs()));
        let c = compare::compare(
            &other,
            &reference,
            &CompareOptions {
                tolerance,
                positions: None,
                argmax: false,
                tie_gap: 0.0,
            },
        );
        match c.metrics {
            Some(m) => Diff {
                max_abs: m.max_abs,
                max_rel: m.max_rel,
                scale,
                diverges: m.violations > 0,
            },
            None => Diff {
                max_abs: f64::INFINITY,
                max_rel: f64::INFINITY,
                scale,
                diverges: true,
            },
        }
    }
}

/// Runs marked copies of one graph in both runtimes on one feed, counting the calls.
pub(crate) struct Prober<'a> {
    pub structure: &'a Structure,
    pub pair: &'a Pair,
    pub feed: &'a [(String, Tensor)],
    work: tempfile::TempDir,
    /// Loads and runs, over both runtimes.
    pub runs: usize,
    /// What each runtime computed in, when it said (OpenVINO on a bf16 CPU).
    pub computed: Option<crate::base::DataType>,
}

/// Both runtimes' values of the tensors a round asked for, by name.
pub(crate) type RoundValues = [BTreeMap<String, Tensor>; 2];

impl<'a> Prober<'a> {
    pub fn new(
        structure: &'a Structure,
        pair: &'a Pair,
        feed: &'a [(String, Tensor)],
    ) -> Result<Prober<'a>, DebugError> {
        let work = tempfile::tempdir().map_err(DebugError::Work)?;
        Ok(Prober {
            structure,
            pair,
            feed,
            work,
            runs: 0,
            computed: None,
        })
    }

    /// The graph's outputs and `tensors` from both runtimes.
    pub fn run(&mut self, tensors: &[String]) -> Result<RoundValues, DebugError> {
        self.run_on(&[0, 1], tensors)
    }

    /// The graph's outputs and `tensors` from the runtimes `which` (0: the reference); the
    /// others' maps stay empty.
    pub fn run_on(
        &mut self,
        which: &[usize],
        tensors: &[String],
    ) -> Result<RoundValues, DebugError> {
        let bytes = self.structure.marked(tensors)?;
        // A graph with external data is marked beside it, where the data is found (ONNX
        // Runtime refuses a link to data outside the model's folder); others in the working
        // folder.
        let (mut file, temp) = if self.structure.external_files.is_empty() {
            temp_file_in(self.work.path(), ".onnx")?
        } else {
            temp_file_in(
                self.structure.path.parent().unwrap_or(Path::new(".")),
                ".onnx",
            )?
        };
        file.write_all(&bytes)
            .and_then(|()| file.flush())
            .map_err(FileError::at("write", temp.path()))?;
        drop(file);
        let feed = self.feed;
        let path = temp.path().to_path_buf();
        let values = self.run_model(&path, feed, which, tensors);
        drop(temp);
        values
    }

    /// Runs the graph at `path` on `feed` in the runtimes `which`, each loaded, run and dropped
    /// in turn; every name in `expect` must come back.
    pub fn run_model(
        &mut self,
        path: &Path,
        feed: &[(String, Tensor)],
        which: &[usize],
        expect: &[String],
    ) -> Result<RoundValues, DebugError> {
        let feed: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut values: RoundValues = Default::default();
        let outputs: Vec<&str> = self
            .structure
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        for &i in which {
            let name = self.pair.names()[i].clone();
            match &self.pair.sides[i] {
                Side::Live(rt) => {
                    let mut m = rt.load(path)?;
                    let out = m.run(&feed)?;
                    self.runs += 1;
                    self.computed = self.computed.or(m.compute_precision());
                    drop(m);
                    values[i] = out.into_iter().collect();
                }
                Side::Saved(saved) => {
                    // The graph's outputs, and what the round asks for.
                    for n in outputs
                        .iter()
                        .copied()
                        .chain(expect.iter().map(String::as_str))
                    {
                        if let Some(t) = saved.tensors.get(n) {
                            values[i].insert(n.to_string(), t.clone());
                        }
                    }
                }
            }
            if let Some(t) = expect.iter().find(|t| !values[i].contains_key(*t)) {
                return Err(DebugError::NoTensor {
                    runtime: name,
                    tensor: t.clone(),
                });
            }
        }
        Ok(values)
    }

    /// The working folder (marked and reduced graphs are written there).
    pub fn work(&self) -> &Path {
        self.work.path()
    }
}
