//! Every float tensor of one run, saved on one machine to bisect against on another
//! (`debug bisect --save-tensors FILE`, then `--compare-with FILE`): a safetensors file of the
//! tensors by name, in the types the runtime gave, with the graph's and the feed's sha256 and
//! the runtime's name in its metadata (`igpt_onnx.debug_tensors`, JSON). A comparison with
//! another graph or other inputs is refused.
//!
//! Saving marks every float tensor, `max_marked` per round: the number of runs grows with the
//! graph (N / M), where bisection's grows with its logarithm — the price of not knowing, on the
//! saving machine, where the other will differ.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::base::files::{write_atomic, FileError};
use crate::base::Tensor;
use crate::verify::fixture;

/// Why a saved-tensors file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SavedTensorsError {
    #[error("{path}: not a file of saved tensors ({why})")]
    Format { path: String, why: String },
    #[error(transparent)]
    File(#[from] FileError),
}

/// The metadata key of a saved-tensors file.
const KEY: &str = "igpt_onnx.debug_tensors";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    runtime: String,
    graph_sha256: String,
    inputs_sha256: String,
    tool_version: String,
}

/// A saved run: the runtime it came from and its tensors.
#[derive(Debug, Clone)]
pub struct SavedTensors {
    pub runtime: String,
    pub graph_sha256: String,
    pub inputs_sha256: String,
    pub tensors: BTreeMap<String, Tensor>,
}

impl SavedTensors {
    pub fn read(path: &Path) -> Result<SavedTensors, SavedTensorsError> {
        let bad = |why: String| SavedTensorsError::Format {
            path: path.display().to_string(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let header: Header = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(KEY))
            .ok_or_else(|| bad(format!("no `{KEY}` metadata: not saved by --save-tensors")))
            .and_then(|h| serde_json::from_str(h).map_err(|e| bad(e.to_string())))?;
        let tensors = fixture::read_all(path).map_err(|e| bad(e.to_string()))?;
        Ok(SavedTensors {
            runtime: header.runtime,
            graph_sha256: header.graph_sha256,
            inputs_sha256: header.inputs_sha256,
            tensors,
        })
    }

    /// The saved reference's name in reports.
    pub fn name(&self) -> String {
        format!("saved:{}", self.runtime)
    }
}

/// Writes `tensors` of one run of `runtime` on a graph and feed (their sha256) to `out`.
pub fn write(
    out: &Path,
    runtime: &str,
    (graph_sha256, inputs_sha256): (String, String),
    tensors: &BTreeMap<String, Tensor>,
) -> Result<(), SavedTensorsError> {
    let header = Header {
        runtime: runtime.to_string(),
        graph_sha256,
        inputs_sha256,
        tool_version: env!("CARGO_PKG_VERSION").into(),
    };
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let data: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = match t {
                Tensor::F32(_) => Dtype::F32,
                Tensor::F16(_) => Dtype::F16,
                Tensor::I64(_) => Dtype::I64,
            };
            (n.as_str(), dtype, t.shape().to_vec(), t.le_bytes())
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (*n, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SavedTensorsError::Format {
            path: out.display().to_string(),
            why: e.to_string(),
        })?;
    let meta = HashMap::from([(
        KEY.to_string(),
        serde_json::to_string(&header).unwrap_or_default(),
    )]);
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| SavedTensorsError::Format {
            path: out.display().to_string(),
            why: e.to_string(),
        })?;
    write_atomic(out, &bytes)?;
    Ok(())
}
