//! Outputs saved on one machine and compared on another (a GPU box, a phone, a colleague's
//! laptop, then CI): one safetensors file holding every runtime's outputs of a random-input
//! run, keyed `<set>/<runtime>/<output>`, with the graph's and each input set's sha256 in its
//! metadata (`igpt_onnx.saved`, JSON). A comparison of another graph or other inputs is
//! refused by name rather than judged.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::files::{self, FileError};
use crate::base::Tensor;
use crate::runtime::NamedOutputs;

/// The metadata key of a saved-outputs file.
const KEY: &str = "igpt_onnx.saved";

/// Why saved outputs cannot be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: not a saved-outputs file ({source})")]
    Format {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path} holds the outputs of another graph (sha256 {saved}, this graph {this}): refusing to compare")]
    OtherGraph {
        path: String,
        saved: String,
        this: String,
    },
    #[error("{path}: set `{set}` was run on other inputs (sha256 {saved}, these {this}): refusing to compare")]
    OtherInputs {
        path: String,
        set: String,
        saved: String,
        this: String,
    },
    #[error("{path} has no set `{set}` (it has {have}): run with the same --random-inputs")]
    NoSet {
        path: String,
        set: String,
        have: String,
    },
}

/// One runtime's outputs of one set.
#[derive(Debug, Clone)]
pub struct SavedOutputs {
    pub runtime: String,
    pub provider: String,
    pub outputs: NamedOutputs,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    schema: u32,
    tool_version: String,
    graph_sha256: String,
    sets: BTreeMap<String, SetMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SetMeta {
    inputs_sha256: String,
    /// Per runtime, in run order: its provider and its outputs' names in the graph's order.
    runtimes: Vec<RuntimeMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RuntimeMeta {
    runtime: String,
    provider: String,
    outputs: Vec<String>,
}

/// What a run saves, set by set.
#[derive(Debug, Default)]
pub struct Recorder {
    sets: Vec<(String, String, Vec<SavedOutputs>)>,
}

impl Recorder {
    /// Adds one set: its name, its inputs' sha256 and the runtimes' outputs.
    pub fn add(&mut self, set: &str, inputs_sha256: String, runs: Vec<SavedOutputs>) {
        self.sets.push((set.to_string(), inputs_sha256, runs));
    }

    /// Runtime runs recorded, over every set.
    pub fn runs(&self) -> usize {
        self.sets.iter().map(|(_, _, r)| r.len()).sum()
    }

    /// Writes the file (atomically).
    pub fn write(&self, path: &Path, graph_sha256: &str) -> Result<(), SavedError> {
        let mut meta = Meta {
            schema: 1,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            graph_sha256: graph_sha256.into(),
            sets: BTreeMap::new(),
        };
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (set, sha, runs) in &self.sets {
            let mut runtimes = Vec::new();
            for r in runs {
                for (name, t) in &r.outputs {
                    let a = t.to_f32();
                    let bytes = a.iter().flat_map(|v| v.to_le_bytes()).collect();
                    tensors.push((
                        format!("{set}/{}/{name}", r.runtime),
                        a.shape().to_vec(),
                        bytes,
                    ));
                }
                runtimes.push(RuntimeMeta {
                    runtime: r.runtime.clone(),
                    provider: r.provider.clone(),
                    outputs: r.outputs.iter().map(|(n, _)| n.clone()).collect(),
                });
            }
            meta.sets.insert(
                set.clone(),
                SetMeta {
                    inputs_sha256: sha.clone(),
                    runtimes,
                },
            );
        }
        let format = |e: Box<dyn std::error::Error + Send + Sync>| SavedError::Format {
            path: path.display().to_string(),
            source: e,
        };
        let views = tensors
            .iter()
            .map(|(n, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| format(e.into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = serde_json::to_string(&meta).map_err(|e| format(e.into()))?;
        let info = std::collections::HashMap::from([(KEY.to_string(), text)]);
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| format(e.into()))?;
        Ok(files::write_atomic(path, &bytes)?)
    }
}

/// A saved-outputs file, read.
#[derive(Debug)]
pub struct SavedRun {
    path: String,
    meta: Meta,
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl SavedRun {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<SavedRun, SavedError> {
        let shown = path.display().to_string();
        let format = |e: Box<dyn std::error::Error + Send + Sync>| SavedError::Format {
            path: shown.clone(),
            source: e,
        };
        let bytes = std::fs::read(path).map_err(FileError::at("read", path))?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.into()))?;
        let text = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(KEY))
            .ok_or_else(|| format(format!("no `{KEY}` metadata").into()))?;
        let meta: Meta = serde_json::from_str(text).map_err(|e| format(e.into()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.into()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(format(format!("tensor `{name}` is not float32").into()));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let a = ArrayD::from_shape_vec(IxDyn(view.shape()), values)
                .map_err(|e| format(format!("tensor `{name}`: {e}").into()))?;
            tensors.insert(name, a);
        }
        Ok(SavedRun {
            path: shown,
            meta,
            tensors,
        })
    }

    /// Refuses a file saved from another graph.
    pub fn check_graph(&self, graph_sha256: &str) -> Result<(), SavedError> {
        if self.meta.graph_sha256 == graph_sha256 {
            return Ok(());
        }
        Err(SavedError::OtherGraph {
            path: self.path.clone(),
            saved: self.meta.graph_sha256.clone(),
            this: graph_sha256.into(),
        })
    }

    /// The saved runtimes' outputs of `set`, which must have been run on the same inputs.
    pub fn set(&self, set: &str, inputs_sha256: &str) -> Result<Vec<SavedOutputs>, SavedError> {
        let Some(m) = self.meta.sets.get(set) else {
            return Err(SavedError::NoSet {
                path: self.path.clone(),
                set: set.into(),
                have: self
                    .meta
                    .sets
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if m.inputs_sha256 != inputs_sha256 {
            return Err(SavedError::OtherInputs {
                path: self.path.clone(),
                set: set.into(),
                saved: m.inputs_sha256.clone(),
                this: inputs_sha256.into(),
            });
        }
        let mut out = Vec::new();
        for r in &m.runtimes {
            let mut outputs = Vec::new();
            for name in &r.outputs {
                let key = format!("{set}/{}/{name}", r.runtime);
                let t = self.tensors.get(&key).ok_or_else(|| SavedError::Format {
                    path: self.path.clone(),
                    source: format!("tensor `{key}` is listed but missing").into(),
                })?;
                outputs.push((name.clone(), Tensor::F32(t.clone())));
            }
            out.push(SavedOutputs {
                runtime: format!("saved:{}", r.runtime),
                provider: r.provider.clone(),
                outputs,
            });
        }
        Ok(out)
    }
}

/// The sha256 of a graph: its file, then its external data file when it has one.
pub fn graph_sha256(model: &Path) -> Result<String, SavedError> {
    let mut h = Sha256::new();
    let data = crate::onnx::writer::external_data_path(model);
    for path in std::iter::once(model).chain(data.is_file().then_some(data.as_path())) {
        let mut f = std::fs::File::open(path).map_err(FileError::at("read", path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(FileError::at("read", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex(&h.finalize()))
}

/// The sha256 of a feed: each input's name, type, shape and little-endian values, in order.
pub fn inputs_sha256(feed: &[(String, Tensor)]) -> String {
    let mut h = Sha256::new();
    for (name, t) in feed {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(t.dtype().name().as_bytes());
        for d in t.shape() {
            h.update((*d as u64).to_le_bytes());
        }
        match t {
            Tensor::F32(a) => a.iter().for_each(|v| h.update(v.to_le_bytes())),
            Tensor::F16(a) => a.iter().for_each(|v| h.update(v.to_le_bytes())),
            Tensor::I64(a) => a.iter().for_each(|v| h.update(v.to_le_bytes())),
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
