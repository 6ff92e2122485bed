//! `debug bisect`: the first node, in topological order, whose output differs beyond tolerance
//! between two runtimes, with its inputs' and outputs' error, and every tensor measured on the
//! way.
//!
//! The search keeps a set of suspects: the nodes up to the earliest tensor known to differ.
//! Each round marks up to `max_marked` tensors spread evenly over the suspects not yet
//! measured; a marked tensor that differs cuts the suspects to the nodes before it, and one
//! that agrees (a float tensor, whose agreement vouches for what it was computed from) clears
//! its ancestors. On a chain of N nodes that is about log_(M+1)(N) rounds of two runs each.
//! The suspect found last is the earliest node that differs: its inputs are measured too, and
//! where one of them differs beyond tolerance (a divergence a vouching tensor hid) the search
//! goes on above it. Values both runtimes give as the same non-finite number (a mask's -inf)
//! agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use super::graph::{self, Structure};
use super::probe::{feeds, DebugError, DebugOptions, Diff, Judging, Pair, Prober, RoundValues};
use super::saved;
use crate::base::Tensor;
use crate::verify::fixture::Tolerance;
use crate::verify::saved::{graph_sha256, inputs_sha256};
use crate::verify::GraphFile;

/// The JSON report's schema name; fields are only ever added.
pub const SCHEMA: &str = "igpt-onnx/debug-bisect/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Diverges,
    Agrees,
}

/// Whether the first divergent node starts the difference or carries one its inputs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Its inputs agree (exactly, or with far less error than its outputs): the culprit.
    Introduced,
    /// Its inputs already carry error of the same order, within tolerance: error that builds
    /// up along the graph and crosses tolerance here.
    Accumulated,
}

/// One tensor's error.
#[derive(Debug, Clone, Serialize)]
pub struct TensorError {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// `graph input`, `initializer`, `node` or `not measured` (a type this cannot fetch).
    pub origin: &'static str,
    pub diverges: bool,
}

/// The node the search ends on.
#[derive(Debug, Clone, Serialize)]
pub struct Culprit {
    pub name: String,
    pub op_type: String,
    pub scope: String,
    /// Its position in the graph's (topological) node order.
    pub index: usize,
    pub inputs: Vec<TensorError>,
    pub outputs: Vec<TensorError>,
}

/// A tensor measured on the way.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub tensor: String,
    pub node: String,
    pub op_type: String,
    pub scope: String,
    pub index: usize,
    pub max_abs: f64,
    pub max_rel: f64,
    /// The reference's largest finite magnitude.
    pub scale: f64,
    pub diverges: bool,
    /// The round that measured it (1-based).
    pub round: usize,
}

/// The largest error relative to scale among a block's measured tensors.
#[derive(Debug, Clone, Serialize)]
pub struct BlockError {
    pub block: String,
    pub max_abs: f64,
    pub max_relative: f64,
    pub tensors: usize,
}

/// What `debug bisect` found.
#[derive(Debug, Clone, Serialize)]
pub struct BisectReport {
    pub schema: &'static str,
    pub model: String,
    pub reference: String,
    pub runtime: String,
    /// Which feed was bisected (`fixture CASE`, `random set N`, `inputs FILE`).
    pub feed: String,
    pub tolerance: Tolerance,
    pub verdict: Verdict,
    pub first_divergent_node: Option<Culprit>,
    pub cause: Option<Cause>,
    /// The cause in words.
    pub explanation: String,
    /// The graph's outputs.
    pub outputs: Vec<TensorError>,
    /// Every tensor measured, in topological order.
    pub measured: Vec<Measured>,
    /// Error by transformer block, in block order (where the graph's names tell blocks).
    pub blocks: Vec<BlockError>,
    pub rounds: usize,
    pub marked_per_round: Vec<usize>,
    /// Loads-and-runs over both runtimes.
    pub runtime_runs: usize,
    pub nodes: usize,
}

/// Bisects `model` between `opts.runtimes[0]` (the reference) and `opts.runtimes[1]`, or
/// between the tensors `opts.compare_with` holds (the reference) and `opts.runtimes[0]`.
pub fn bisect(model: &Path, opts: &DebugOptions) -> Result<BisectReport, DebugError> {
    if opts.max_marked == 0 {
        return Err(DebugError::MaxMarked);
    }
    let structure = Structure::read(model)?;
    let (profile_precision, feeds, base) = {
        let file = GraphFile::read(model)?;
        let (feeds, base) = feeds(model, &opts.inputs)?;
        (file.profile().1, feeds, base)
    };
    let pair = Pair::open(opts, model)?;
    let mut last = None;
    for (set, feed) in feeds.iter().enumerate() {
        if pair
            .saved_inputs()
            .is_some_and(|sha| sha != inputs_sha256(feed))
        {
            continue;
        }
        let mut search = Search::new(&structure, &pair, feed, opts)?;
        search.first_round(base, profile_precision)?;
        let label = feed_label(&opts.inputs, set);
        if search.outputs.iter().any(|o| o.diverges) {
            let found = search.find()?;
            return Ok(search.report(model, label, Some(found)));
        }
        last = Some(search.report(model, label, None));
    }
    match (last, &opts.compare_with, pair.saved_inputs()) {
        (Some(report), _, _) => Ok(report),
        (None, Some(path), Some(sha)) => Err(DebugError::SavedInputs {
            path: path.display().to_string(),
            saved: sha.to_string(),
        }),
        (None, _, _) => Err(DebugError::NoFeed),
    }
}

/// What `--save-tensors` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SaveReport {
    pub path: String,
    pub runtime: String,
    pub tensors: usize,
    pub rounds: usize,
    pub runtime_runs: usize,
}

impl SaveReport {
    pub fn to_text(&self) -> String {
        format!(
            "saved {} tensors of {} to {} ({} rounds, {} runs); bisect against them elsewhere with --compare-with\n",
            self.tensors, self.runtime, self.path, self.rounds, self.runtime_runs
        )
    }
}

/// Runs `model` on the first feed in the one runtime of `opts`, every float tensor marked in
/// rounds, and saves them with the graph outputs to `out`.
pub fn save_tensors(
    model: &Path,
    out: &Path,
    opts: &DebugOptions,
) -> Result<SaveReport, DebugError> {
    if opts.max_marked == 0 {
        return Err(DebugError::MaxMarked);
    }
    let s = Structure::read(model)?;
    let (feeds, _) = feeds(model, &opts.inputs)?;
    let feed = feeds.first().ok_or(DebugError::NoFeed)?;
    let pair = Pair::open_one(opts)?;
    let mut prober = Prober::new(&s, &pair, feed)?;
    let all: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| n.op_type != "Constant")
        .flat_map(|n| n.outputs.iter())
        .filter(|o| !o.is_empty() && s.types.get(*o).is_some_and(|&t| graph::markable(t)))
        .cloned()
        .collect();
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut rounds = 0;
    for chunk in all.chunks(opts.max_marked) {
        let values = prober.run_on(&[0], chunk)?;
        rounds += 1;
        for (n, t) in values.into_iter().next().into_iter().flatten() {
            tensors.entry(n).or_insert(t);
        }
    }
    if all.is_empty() {
        let values = prober.run_on(&[0], &[])?;
        rounds += 1;
        tensors.extend(values.into_iter().next().into_iter().flatten());
    }
    let runtime = pair.names()[0].clone();
    let shas = (graph_sha256(model)?, inputs_sha256(feed));
    saved::write(out, &runtime, shas, &tensors)?;
    Ok(SaveReport {
        path: out.display().to_string(),
        runtime,
        tensors: tensors.len(),
        rounds,
        runtime_runs: prober.runs,
    })
}

fn feed_label(source: &super::probe::InputSource, set: usize) -> String {
    match source {
        super::probe::InputSource::Fixture(d) => format!("fixture {}", d.display()),
        super::probe::InputSource::Random(_) => format!("random set {set}"),
        super::probe::InputSource::File(p) => format!("inputs {}", p.display()),
    }
}

/// One feed's search.
struct Search<'a> {
    s: &'a Structure,
    prober: Prober<'a>,
    judging: Judging,
    max: usize,
    /// Tensor → its error and the round that measured it.
    known: HashMap<String, (Diff, usize)>,
    marked_per_round: Vec<usize>,
    outputs: Vec<TensorError>,
    /// Per node, the tensors that measure it (markable outputs, at most `max`).
    probes: Vec<Vec<String>>,
    opts: &'a DebugOptions,
}

impl<'a> Search<'a> {
    fn new(
        s: &'a Structure,
        pair: &'a Pair,
        feed: &'a [(String, Tensor)],
        opts: &'a DebugOptions,
    ) -> Result<Search<'a>, DebugError> {
        let probes = s
            .nodes
            .iter()
            .map(|n| {
                if n.op_type == "Constant" {
                    return vec![];
                }
                n.outputs
                    .iter()
                    .filter(|o| !o.is_empty())
                    .filter(|o| s.types.get(*o).is_some_and(|&t| graph::markable(t)))
                    .take(opts.max_marked)
                    .cloned()
                    .collect()
            })
            .collect();
        Ok(Search {
            s,
            prober: Prober::new(s, pair, feed)?,
            judging: Judging {
                tolerance: Tolerance::default(),
                overrides: vec![],
            },
            max: opts.max_marked,
            known: HashMap::new(),
            marked_per_round: vec![],
            outputs: vec![],
            probes,
            opts,
        })
    }

    /// The first round: the graph's outputs, and tensors spread over the whole graph. Sets the
    /// tolerance once the runtimes have said what they compute in.
    fn first_round(
        &mut self,
        base: Tolerance,
        precision: crate::graph::Precision,
    ) -> Result<(), DebugError> {
        let all: Vec<usize> = (0..self.s.nodes.len()).collect();
        let marks = self.spread(&all);
        let values = self.prober.run(&marks)?;
        self.judging = Judging::new(self.opts, base, precision, self.prober.computed);
        let outs: Vec<(String, Option<Diff>)> = self
            .s
            .outputs
            .iter()
            .map(|o| (o.name.clone(), self.diff(&values, &o.name)))
            .collect();
        for (name, d) in &outs {
            if let (Some(d), true) = (d, self.s.producer.contains_key(name)) {
                self.known.insert(name.clone(), (*d, 1));
            }
        }
        self.outputs = outs.iter().map(|(n, d)| self.error_of(n, *d)).collect();
        self.record(&values, &marks);
        Ok(())
    }

    fn diff(&self, values: &RoundValues, name: &str) -> Option<Diff> {
        let (r, o) = (values[0].get(name)?, values[1].get(name)?);
        Some(self.judging.diff(name, r, o))
    }

    /// Keeps a round's measurements.
    fn record(&mut self, values: &RoundValues, marks: &[String]) {
        let round = self.marked_per_round.len() + 1;
        self.marked_per_round.push(marks.len());
        for name in marks {
            if let Some(d) = self.diff(values, name) {
                self.known.entry(name.clone()).or_insert((d, round));
            }
        }
    }

    fn round(&mut self, marks: Vec<String>) -> Result<(), DebugError> {
        let values = self.prober.run(&marks)?;
        self.record(&values, &marks);
        Ok(())
    }

    /// Up to `max` tensors measuring nodes spread evenly over `nodes` (those not yet measured).
    fn spread(&self, nodes: &[usize]) -> Vec<String> {
        let open: Vec<usize> = nodes
            .iter()
            .copied()
            .filter(|&n| !self.probes[n].is_empty() && !self.measured(n))
            .collect();
        let mut marks = Vec::new();
        let k = open.len().min(self.max);
        for i in 0..k {
            let n = open[(i + 1) * open.len() / (k + 1)];
            for t in &self.probes[n] {
                if marks.len() < self.max && !marks.contains(t) && !self.known.contains_key(t) {
                    marks.push(t.clone());
                }
            }
        }
        if marks.is_empty() {
            // Evenly spread picks can all be measured already; take the first open one.
            if let Some(&n) = open.first() {
                marks.extend(self.probes[n].iter().take(self.max).cloned());
            }
        }
        marks
    }

    fn measured(&self, n: usize) -> bool {
        !self.probes[n].is_empty() && self.probes[n].iter().all(|t| self.known.contains_key(t))
    }

    fn diverges(&self, n: usize) -> bool {
        self.probes[n]
            .iter()
            .any(|t| self.known.get(t).is_some_and(|(d, _)| d.diverges))
    }

    /// A measured node whose float outputs all agree: what it was computed from is cleared.
    fn vouches(&self, n: usize) -> bool {
        self.measured(n)
            && !self.diverges(n)
            && self.probes[n]
                .iter()
                .any(|t| self.s.types.get(t).is_some_and(|&t| graph::is_float(t)))
    }

    /// Narrows to the earliest node that differs, then checks its inputs; a differing input
    /// moves the search above it.
    fn find(&mut self) -> Result<usize, DebugError> {
        let start = self
            .s
            .outputs
            .iter()
            .zip(&self.outputs)
            .filter(|(_, e)| e.diverges)
            .filter_map(|(o, _)| self.s.producer.get(&o.name).copied())
            .min();
        let Some(mut target) = start else {
            // A graph output that is an input or initializer cannot differ; unreachable in
            // practice, reported as the first output's producer-less state.
            return Err(DebugError::Runtimes(
                "the differing output is computed by no node".into(),
            ));
        };
        for _ in 0..=self.s.nodes.len() {
            let culprit = self.narrow(target)?;
            let unknown: Vec<String> = self.s.nodes[culprit]
                .inputs
                .iter()
                .filter(|i| !i.is_empty() && !self.s.is_given(i) && !self.known.contains_key(*i))
                .filter(|i| self.s.types.get(*i).is_some_and(|&t| graph::markable(t)))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for chunk in unknown.chunks(self.max) {
                self.round(chunk.to_vec())?;
            }
            let upstream = self.s.nodes[culprit]
                .inputs
                .iter()
                .filter(|i| self.known.get(*i).is_some_and(|(d, _)| d.diverges))
                .filter_map(|i| self.s.producer.get(i).copied())
                .min();
            match upstream {
                Some(p) if p != culprit => target = p,
                _ => return Ok(culprit),
            }
        }
        Err(DebugError::Runtimes("the search did not settle".into()))
    }

    /// The earliest differing node up to `target`, in topological order.
    fn narrow(&mut self, target: usize) -> Result<usize, DebugError> {
        let mut suspects: BTreeSet<usize> = (0..=target)
            .filter(|&n| !self.probes[n].is_empty())
            .collect();
        loop {
            if let Some(d) = suspects
                .iter()
                .copied()
                .find(|&n| self.measured(n) && self.diverges(n))
            {
                suspects.retain(|&n| n <= d);
            }
            let vouching: Vec<usize> = suspects
                .iter()
                .copied()
                .filter(|&n| self.vouches(n))
                .collect();
            for a in vouching {
                let cleared = self.s.ancestors(a);
                // A tensor that agrees although something it reads differs (a mask, a shape)
                // vouches for nothing.
                if cleared
                    .iter()
                    .any(|&n| self.measured(n) && self.diverges(n))
                {
                    continue;
                }
                suspects.retain(|n| !cleared.contains(n));
            }
            let open: Vec<usize> = suspects
                .iter()
                .copied()
                .filter(|&n| !self.measured(n))
                .collect();
            if open.is_empty() {
                return suspects
                    .iter()
                    .copied()
                    .find(|&n| self.diverges(n))
                    .or_else(|| self.probes[target].is_empty().then_some(target))
                    .ok_or(DebugError::Runtimes(
                        "no measured node differs although an output does".into(),
                    ));
            }
            let marks = self.spread(&open);
            self.round(marks)?;
        }
    }

    fn error_of(&self, name: &str, d: Option<Diff>) -> TensorError {
        let origin = if self.s.initializers.contains_key(name) {
            "initializer"
        } else if self.s.is_given(name) {
            "graph input"
        } else if d.is_some() {
            "node"
        } else {
            "not measured"
        };
        let given = self.s.is_given(name);
        let d = d.or(given.then_some(Diff {
            max_abs: 0.0,
            max_rel: 0.0,
            scale: 0.0,
            diverges: false,
        }));
        TensorError {
            name: name.to_string(),
            max_abs: d.map_or(f64::NAN, |d| d.max_abs),
            max_rel: d.map_or(f64::NAN, |d| d.max_rel),
            origin,
            diverges: d.is_some_and(|d| d.diverges),
        }
    }

    fn report(&self, model: &Path, feed: String, culprit: Option<usize>) -> BisectReport {
        let mut measured: Vec<Measured> = self
            .known
            .iter()
            .filter_map(|(t, (d, round))| {
                let index = *self.s.producer.get(t)?;
                let node = &self.s.nodes[index];
                Some(Measured {
                    tensor: t.clone(),
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    scope: graph::scope(if node.name.is_empty() { t } else { &node.name }),
                    index,
                    max_abs: d.max_abs,
                    max_rel: d.max_rel,
                    scale: d.scale,
                    diverges: d.diverges,
                    round: *round,
                })
            })
            .collect();
        measured.sort_by(|a, b| a.index.cmp(&b.index).then(a.tensor.cmp(&b.tensor)));
        let first = culprit.map(|c| {
            let node = &self.s.nodes[c];
            let errors = |names: &[String]| -> Vec<TensorError> {
                names
                    .iter()
                    .filter(|n| !n.is_empty())
                    .map(|n| self.error_of(n, self.known.get(n).map(|(d, _)| *d)))
                    .collect()
            };
            Culprit {
                name: node.name.clone(),
                op_type: node.op_type.clone(),
                scope: graph::scope(if node.name.is_empty() {
                    node.outputs.first().map_or("", String::as_str)
                } else {
                    &node.name
                }),
                index: c,
                inputs: errors(&node.inputs),
                outputs: errors(&node.outputs),
            }
        });
        let (cause, explanation) = match &first {
            Some(c) => self.cause(c),
            None => (
                None,
                "every output agrees within tolerance: nothing to bisect".to_string(),
            ),
        };
        BisectReport {
            schema: SCHEMA,
            model: model.display().to_string(),
            reference: self.prober.pair.names()[0].clone(),
            runtime: self.prober.pair.names()[1].clone(),
            feed,
            tolerance: self.judging.tolerance,
            verdict: if first.is_some() {
                Verdict::Diverges
            } else {
                Verdict::Agrees
            },
            cause,
            explanation,
            first_divergent_node: first,
            outputs: self.outputs.clone(),
            blocks: blocks(&measured),
            measured,
            rounds: self.marked_per_round.len(),
            marked_per_round: self.marked_per_round.clone(),
            runtime_runs: self.prober.runs,
            nodes: self.s.nodes.len(),
        }
    }

    /// Introduced or accumulated: its outputs' error against its inputs', both relative to
    /// their scale.
    fn cause(&self, c: &Culprit) -> (Option<Cause>, String) {
        let rel = |name: &str| self.known.get(name).map(|(d, _)| d.relative());
        let input = c
            .inputs
            .iter()
            .filter_map(|i| rel(&i.name))
            .fold(0f64, f64::max);
        let output = c
            .outputs
            .iter()
            .filter_map(|o| rel(&o.name))
            .fold(0f64, f64::max);
        let unmeasured: Vec<&str> = c
            .inputs
            .iter()
            .filter(|i| i.origin == "not measured")
            .map(|i| i.name.as_str())
            .collect();
        let caveat = if unmeasured.is_empty() {
            String::new()
        } else {
            format!(
                " ({} not measured: an integer or boolean tensor)",
                unmeasured.join(", ")
            )
        };
        if input == 0.0 {
            return (
                Some(Cause::Introduced),
                format!("its inputs agree exactly{caveat} and its outputs do not: the difference starts here"),
            );
        }
        let gain = output / input;
        if gain >= ACCUMULATION_GAIN {
            (
                Some(Cause::Introduced),
                format!(
                    "its inputs agree within tolerance (relative error {input:.1e}){caveat} and its outputs' error is {gain:.0}x theirs: the difference starts here"
                ),
            )
        } else {
            (
                Some(Cause::Accumulated),
                format!(
                    "its inputs already differ (relative error {input:.1e}, within tolerance) and it carries that error past tolerance ({gain:.1}x): error accumulated along the graph, no single node introduced it"
                ),
            )
        }
    }
}

/// How many times its inputs' relative error a node's outputs must carry for the node to be
/// named as introducing the difference rather than passing on accumulated error.
const ACCUMULATION_GAIN: f64 = 10.0;

/// Magnitudes from here on are a mask's fill value, not activations.
const MASK_SCALE: f64 = 1e30;

fn blocks(measured: &[Measured]) -> Vec<BlockError> {
    let mut by: BTreeMap<usize, BlockError> = BTreeMap::new();
    for m in measured {
        let Some(rest) = m.scope.strip_prefix("block h.") else {
            continue;
        };
        let index: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(i) = index.parse::<usize>() else {
            continue;
        };
        // A tensor that carries a mask's fill value (float32's lowest, which a bfloat16
        // runtime rounds) says nothing about the block's error.
        if !m.max_abs.is_finite() || m.scale >= MASK_SCALE {
            continue;
        }
        let relative = if m.max_abs == 0.0 {
            0.0
        } else {
            m.max_abs / m.scale.max(crate::verify::compare::REL_FLOOR)
        };
        let e = by.entry(i).or_insert(BlockError {
            block: format!("h.{i}"),
            max_abs: 0.0,
            max_relative: 0.0,
            tensors: 0,
        });
        e.max_relative = e.max_relative.max(relative);
        e.max_abs = e.max_abs.max(m.max_abs);
        e.tensors += 1;
    }
    by.into_values().collect()
}

impl BisectReport {
    /// Exit code as verify's: 0 when the runtimes agree, 1 when they differ.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Agrees => 0,
            Verdict::Diverges => 1,
        }
    }

    /// The report for people: the verdict, the node and why, then the error curve.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "debug bisect {}: {} against {} (reference), {}, atol {:e} rtol {:e}",
            self.model,
            self.runtime,
            self.reference,
            self.feed,
            self.tolerance.atol,
            self.tolerance.rtol
        );
        let verdict = match self.verdict {
            Verdict::Diverges => "DIVERGES",
            Verdict::Agrees => "AGREES",
        };
        let _ = writeln!(t, "verdict: {verdict}");
        for o in &self.outputs {
            let _ = writeln!(t, "  output {}", error_text(o));
        }
        if let Some(c) = &self.first_divergent_node {
            let scope = if c.scope.is_empty() {
                String::new()
            } else {
                format!(" in {}", c.scope)
            };
            let _ = writeln!(
                t,
                "first divergent node: {} ({}){scope}, node {} of {}",
                c.name, c.op_type, c.index, self.nodes
            );
            for i in &c.inputs {
                let _ = writeln!(t, "  input  {}", error_text(i));
            }
            for o in &c.outputs {
                let _ = writeln!(t, "  output {}", error_text(o));
            }
        }
        let _ = writeln!(t, "cause: {}", self.explanation);
        if !self.blocks.is_empty() {
            let parts: Vec<String> = self
                .blocks
                .iter()
                .map(|b| format!("{} {:.1e} ({:.1e})", b.block, b.max_abs, b.max_relative))
                .collect();
            let _ = writeln!(
                t,
                "error by block, max abs (relative to scale): {}",
                parts.join("  ")
            );
        }
        let _ = writeln!(
            t,
            "measured {} tensors (topological order; bar: log10 max abs, ! beyond tolerance):",
            self.measured.len()
        );
        for m in &self.measured {
            let _ = writeln!(
                t,
                "  {:>5} {:<40} {:<16} {:>9.2e} {:>9.2e} {}{}",
                m.index,
                m.tensor,
                m.scope,
                m.max_abs,
                m.max_rel,
                bar(m.max_abs),
                if m.diverges { " !" } else { "" }
            );
        }
        let rounds: Vec<String> = self.marked_per_round.iter().map(usize::to_string).collect();
        let _ = writeln!(
            t,
            "{} rounds marking {} tensors; {} runtime runs for {} nodes",
            self.rounds,
            rounds.join("+"),
            self.runtime_runs,
            self.nodes
        );
        t
    }
}

fn error_text(e: &TensorError) -> String {
    let state = match (e.origin, e.diverges) {
        ("not measured", _) => "not measured".to_string(),
        (_, true) => "DIFFERS".to_string(),
        (origin, false) if origin != "node" => format!("agrees ({origin})"),
        _ => "agrees".to_string(),
    };
    format!(
        "{:<40} max abs {:.3e}  max rel {:.3e}  {state}",
        e.name, e.max_abs, e.max_rel
    )
}

/// A log-scale bar from 1e-9 (empty) to 1 and beyond (36 marks).
fn bar(max_abs: f64) -> String {
    if max_abs == 0.0 {
        return String::new();
    }
    let n = ((max_abs.log10() + 9.0) * 4.0).clamp(0.0, 40.0) as usize;
    "#".repeat(n)
}
