//! `debug reduce`: the smallest subgraph that still shows a disagreement, as a repro any ONNX
//! tool reads — the ONNX backend-test layout (`model.onnx`, `test_data_set_0/input_N.pb`,
//! `output_N.pb`).
//!
//! It starts from the node bisection names, alone, with the values that flowed into it (as the
//! reference computed them) as graph inputs and its initializers inlined. Where that alone
//! does not differ between the runtimes (a runtime fuses it with its neighbours, say), it
//! grows by the nodes that feed it, then by those it feeds too, a step at a time, and keeps
//! the first graph that does.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use prost::Message;
use serde::Serialize;

use super::bisect::{bisect, BisectReport, Verdict};
use super::graph::{self, GraphRaw, ModelRaw, Structure};
use super::probe::{feeds, DebugError, DebugOptions, Diff, Judging, Pair, Prober};
use crate::base::files::{temp_dir_beside, FileError};
use crate::base::Tensor;
use crate::onnx::inspect::InspectError;
use crate::onnx::proto::TensorProto;

/// The JSON report's schema name; fields are only ever added.
pub const SCHEMA: &str = "igpt-onnx/debug-reduce/1";

/// How the subgraph grows around the culprit: (levels of producers, levels of consumers).
const GROWTH: [(usize, usize); 6] = [(0, 0), (1, 0), (2, 0), (1, 1), (2, 2), (3, 3)];

/// What `debug reduce` wrote and whether it reproduces.
#[derive(Debug, Clone, Serialize)]
pub struct ReduceReport {
    pub schema: &'static str,
    pub out: String,
    /// The reduced graph's nodes, in order.
    pub nodes: Vec<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// The culprit's outputs' max abs difference in the whole graph.
    pub max_abs_before: f64,
    /// The reduced graph's outputs' max abs difference, run again in both runtimes.
    pub max_abs_after: f64,
    pub reproduces: bool,
    /// Subgraphs tried (the culprit alone first).
    pub tried: usize,
    pub bisect: BisectReport,
}

/// A subgraph of the model: nodes, and the tensors that cross its border.
struct Subgraph {
    nodes: Vec<usize>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// What `debug reduce` ends with: a repro, or the bisection that found the runtimes agree.
#[derive(Debug, Clone)]
pub enum Reduction {
    Reduced(Box<ReduceReport>),
    Agrees(Box<BisectReport>),
}

/// Bisects, then writes the reduced repro to `out` (a folder that must not exist, or be empty).
pub fn reduce(model: &Path, out: &Path, opts: &DebugOptions) -> Result<Reduction, DebugError> {
    check_out(out)?;
    let b = bisect(model, opts)?;
    let Some(culprit) = b.first_divergent_node.as_ref().map(|c| c.index) else {
        return Ok(Reduction::Agrees(Box::new(b)));
    };
    let s = Structure::read(model)?;
    let (feeds, base) = feeds(model, &opts.inputs)?;
    // The feed bisection used (random sets: the one named in its report).
    let set = match &opts.inputs {
        super::probe::InputSource::Random(_) => b
            .feed
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let feed = feeds
        .get(set)
        .ok_or(DebugError::Runtimes("no feed".into()))?;
    let pair = Pair::open(opts, model)?;
    let mut prober = Prober::new(&s, &pair, feed)?;
    let precision = crate::verify::GraphFile::read(model)?.profile().1;
    let before = s.nodes[culprit]
        .outputs
        .iter()
        .filter_map(|o| b.measured.iter().find(|m| &m.tensor == o))
        .map(|m| m.max_abs)
        .fold(0f64, f64::max);
    let mut tried = 0;
    let mut first: Option<(Subgraph, Attempt)> = None;
    let mut found: Option<(Subgraph, Attempt)> = None;
    let mut seen: Vec<Vec<usize>> = Vec::new();
    for (up, down) in GROWTH {
        let sub = grow(&s, culprit, up, down);
        if seen.contains(&sub.nodes) {
            continue;
        }
        seen.push(sub.nodes.clone());
        tried += 1;
        let attempt = attempt(&mut prober, &sub, feed, opts, base, precision)?;
        if attempt.reproduces {
            found = Some((sub, attempt));
            break;
        }
        first.get_or_insert((sub, attempt));
    }
    // Where nothing reproduces, the culprit alone is the repro to look at.
    let Some((sub, attempt)) = found.or(first) else {
        return Err(DebugError::Runtimes("no subgraph to try".into()));
    };
    let Attempt {
        bytes,
        feed: inputs,
        reference: outputs,
        max_abs: after,
        reproduces,
    } = attempt;
    write_layout(out, &bytes, &inputs, &outputs)?;
    Ok(Reduction::Reduced(Box::new(ReduceReport {
        schema: SCHEMA,
        out: out.display().to_string(),
        nodes: sub.nodes.iter().map(|&n| s.nodes[n].label()).collect(),
        inputs: sub.inputs.clone(),
        outputs: sub.outputs.clone(),
        max_abs_before: before,
        max_abs_after: after,
        reproduces,
        tried,
        bisect: b,
    })))
}

/// One subgraph, run in both runtimes on the values that flow into it.
struct Attempt {
    bytes: Vec<u8>,
    feed: Vec<(String, Tensor)>,
    /// The reference's outputs of the subgraph.
    reference: Vec<(String, Tensor)>,
    max_abs: f64,
    reproduces: bool,
}

fn attempt(
    prober: &mut Prober<'_>,
    sub: &Subgraph,
    feed: &[(String, Tensor)],
    opts: &DebugOptions,
    base: crate::verify::fixture::Tolerance,
    precision: crate::graph::Precision,
) -> Result<Attempt, DebugError> {
    let s = prober.structure;
    // The values that flow in, as the reference computes them.
    let captured: Vec<String> = sub
        .inputs
        .iter()
        .filter(|i| !s.is_given(i))
        .cloned()
        .collect();
    let values = prober.run_on(&[0], &captured)?;
    let sub_feed: Vec<(String, Tensor)> = sub
        .inputs
        .iter()
        .map(|i| {
            let t = values[0]
                .get(i)
                .or_else(|| feed.iter().find(|(n, _)| n == i).map(|(_, t)| t))
                .cloned()
                .ok_or_else(|| DebugError::NoTensor {
                    runtime: prober.pair.names()[0].clone(),
                    tensor: i.clone(),
                })?;
            Ok((i.clone(), t))
        })
        .collect::<Result<_, DebugError>>()?;
    let path = prober.work().join("reduced.onnx");
    let bytes = encode(s, sub, &sub_feed, &[])?;
    std::fs::write(&path, &bytes).map_err(DebugError::Work)?;
    let ran = prober.run_model(&path, &sub_feed, &[0, 1], &sub.outputs)?;
    let judging = Judging::new(opts, base, precision, prober.computed);
    let diffs: Vec<Diff> = sub
        .outputs
        .iter()
        .filter_map(|o| Some(judging.diff(o, ran[0].get(o)?, ran[1].get(o)?)))
        .collect();
    let reference: Vec<(String, Tensor)> = sub
        .outputs
        .iter()
        .filter_map(|o| Some((o.clone(), ran[0].get(o)?.clone())))
        .collect();
    Ok(Attempt {
        // Written with the outputs' shapes, as the ONNX checker wants them.
        bytes: encode(s, sub, &sub_feed, &reference)?,
        feed: sub_feed,
        reference,
        max_abs: diffs.iter().map(|d| d.max_abs).fold(0f64, f64::max),
        reproduces: diffs.iter().any(|d| d.diverges),
    })
}

/// `out` must be new or an empty folder: a repro never mixes with other files.
fn check_out(out: &Path) -> Result<(), DebugError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DebugError::OutExists(out.display().to_string()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(DebugError::OutExists(out.display().to_string()))
        }
        Err(e) => Err(FileError::at("write", out)(e).into()),
    }
}

/// The culprit with `up` levels of the nodes that feed it and `down` levels of those it
/// feeds; Constant nodes that feed any of them come along.
fn grow(s: &Structure, culprit: usize, up: usize, down: usize) -> Subgraph {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in s.nodes.iter().enumerate() {
        for input in &n.inputs {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut set = BTreeSet::from([culprit]);
    for _ in 0..up {
        let more: Vec<usize> = set
            .iter()
            .flat_map(|&n| s.nodes[n].inputs.iter())
            .filter_map(|i| s.producer.get(i).copied())
            .collect();
        set.extend(more);
    }
    for _ in 0..down {
        let more: Vec<usize> = set
            .iter()
            .flat_map(|&n| s.nodes[n].outputs.iter())
            .filter_map(|o| consumers.get(o.as_str()))
            .flatten()
            .copied()
            .collect();
        set.extend(more);
    }
    let constants: Vec<usize> = set
        .iter()
        .flat_map(|&n| s.nodes[n].inputs.iter())
        .filter_map(|i| s.producer.get(i).copied())
        .filter(|&p| s.nodes[p].op_type == "Constant")
        .collect();
    set.extend(constants);
    let produced: BTreeSet<&str> = set
        .iter()
        .flat_map(|&n| s.nodes[n].outputs.iter().map(String::as_str))
        .collect();
    let mut inputs = Vec::new();
    for &n in &set {
        for i in &s.nodes[n].inputs {
            if !i.is_empty()
                && !produced.contains(i.as_str())
                && !s.initializers.contains_key(i)
                && !inputs.contains(i)
            {
                inputs.push(i.clone());
            }
        }
    }
    // What leaves the subgraph: read outside it, a graph output, or the culprit's own.
    let is_output = |o: &str| s.outputs.iter().any(|g| g.name == o);
    let mut outputs = Vec::new();
    for &n in &set {
        for o in &s.nodes[n].outputs {
            let leaves = consumers
                .get(o.as_str())
                .is_some_and(|c| c.iter().any(|c| !set.contains(c)));
            let markable = s.types.get(o).is_some_and(|&t| graph::markable(t));
            if !o.is_empty()
                && markable
                && (n == culprit || leaves || is_output(o))
                && !outputs.contains(o)
            {
                outputs.push(o.clone());
            }
        }
    }
    Subgraph {
        nodes: set.into_iter().collect(),
        inputs,
        outputs,
    }
}

/// The reduced model: its nodes as written, its initializers inlined, its inputs typed and
/// shaped as fed, its outputs typed and, where `outputs` holds them, shaped.
fn encode(
    s: &Structure,
    sub: &Subgraph,
    feed: &[(String, Tensor)],
    outputs: &[(String, Tensor)],
) -> Result<Vec<u8>, DebugError> {
    let mut used: Vec<&str> = Vec::new();
    for &n in &sub.nodes {
        for i in &s.nodes[n].inputs {
            if s.initializers.contains_key(i) && !used.contains(&i.as_str()) {
                used.push(i);
            }
        }
    }
    let initializer = used
        .iter()
        .map(|name| inline(s, name))
        .collect::<Result<_, _>>()?;
    let input = feed
        .iter()
        .map(|(n, t)| graph::value_info(n, t.dtype().onnx(), Some(t.shape())))
        .collect();
    let output = sub
        .outputs
        .iter()
        .map(|o| {
            let shape = outputs.iter().find(|(n, _)| n == o).map(|(_, t)| t.shape());
            graph::value_info(o, s.types.get(o).copied().unwrap_or(0), shape)
        })
        .collect();
    let model = ModelRaw {
        ir_version: s.ir_version,
        producer_name: "igpt-onnx debug reduce".into(),
        graph: Some(GraphRaw {
            node: sub.nodes.iter().map(|&n| s.nodes[n].raw.clone()).collect(),
            name: "reduced".into(),
            initializer,
            input,
            output,
            value_info: vec![],
        }),
        opset_import: s.opsets.clone(),
    };
    Ok(model.encode_to_vec())
}

/// An initializer's encoding with its data in `raw_data` (read from its external file when it
/// has one).
fn inline(s: &Structure, name: &str) -> Result<Vec<u8>, DebugError> {
    let init = &s.initializers[name];
    let mut t = TensorProto::decode(init.raw.as_slice()).map_err(|e| InspectError::NotOnnx {
        path: s.path.display().to_string(),
        why: e.to_string(),
    })?;
    if t.external_data.is_empty() {
        return Ok(init.raw.clone());
    }
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.clone())
    };
    let location = get("location").unwrap_or_default();
    let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let dir = s.path.parent().unwrap_or(Path::new("."));
    let file = dir.join(&location);
    // Only the tensor's own bytes are read: the data file may hold gigabytes.
    let mut f = std::fs::File::open(&file).map_err(FileError::at("read", &file))?;
    let size = f.metadata().map_err(FileError::at("read", &file))?.len();
    let length: u64 = get("length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(size.saturating_sub(offset));
    let past_end = || InspectError::NotOnnx {
        path: file.display().to_string(),
        why: format!("initializer `{name}` lies past the end of its external data"),
    };
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(past_end().into());
    }
    let mut data = vec![0u8; usize::try_from(length).map_err(|_| past_end())?];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut data))
        .map_err(FileError::at("read", &file))?;
    t.raw_data = data;
    t.external_data.clear();
    t.data_location = None;
    Ok(t.encode_to_vec())
}

/// A tensor as the backend-test layout stores it: a `TensorProto` with its name.
fn tensor_pb(name: &str, t: &Tensor) -> Vec<u8> {
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype().onnx()),
        name: name.to_string(),
        raw_data: t.le_bytes(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Writes `out/model.onnx` and `out/test_data_set_0/{input,output}_N.pb`, whole or not at all.
fn write_layout(
    out: &Path,
    model: &[u8],
    inputs: &[(String, Tensor)],
    outputs: &[(String, Tensor)],
) -> Result<(), DebugError> {
    let temp = temp_dir_beside(out)?;
    let root = temp.path();
    let write = |p: &Path, b: &[u8]| std::fs::write(p, b).map_err(FileError::at("write", p));
    write(&root.join("model.onnx"), model)?;
    let data = root.join("test_data_set_0");
    std::fs::create_dir(&data).map_err(FileError::at("create", &data))?;
    for (i, (n, t)) in inputs.iter().enumerate() {
        write(&data.join(format!("input_{i}.pb")), &tensor_pb(n, t))?;
    }
    for (i, (n, t)) in outputs.iter().enumerate() {
        write(&data.join(format!("output_{i}.pb")), &tensor_pb(n, t))?;
    }
    if out.is_dir() {
        std::fs::remove_dir(out).map_err(FileError::at("write", out))?;
    }
    temp.rename_to(out)?;
    Ok(())
}

impl ReduceReport {
    /// Exit code as verify's: the runtimes differ (1).
    pub fn exit_code(&self) -> u8 {
        match self.bisect.verdict {
            Verdict::Agrees => 0,
            Verdict::Diverges => 1,
        }
    }

    pub fn to_text(&self) -> String {
        let mut t = self.bisect.to_text();
        let c = self
            .bisect
            .first_divergent_node
            .as_ref()
            .map_or(String::new(), |c| format!("{} ({})", c.name, c.op_type));
        t.push_str(&format!(
            "reduced {c} to {} node(s) ({}) in {} (tried {} subgraph(s)): inputs {}; outputs {}\n",
            self.nodes.len(),
            self.nodes.join(", "),
            self.out,
            self.tried,
            self.inputs.join(", "),
            self.outputs.join(", ")
        ));
        if self.reproduces {
            t.push_str(&format!(
                "reproduces: max abs {:.3e} in the whole graph, {:.3e} in the reduced graph\n",
                self.max_abs_before, self.max_abs_after
            ));
        } else {
            t.push_str(&format!(
                "does NOT reproduce: max abs {:.3e} in the whole graph, {:.3e} in the largest reduced graph tried; the culprit alone is written\n",
                self.max_abs_before, self.max_abs_after
            ));
        }
        t
    }
}
