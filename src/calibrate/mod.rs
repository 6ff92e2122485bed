//! Calibration for static int8 (QDQ): the float32 graph of the checkpoint, with every block
//! matrix's input exposed as an output (`graph::GraphOptions::matrix_inputs`), runs over a
//! calibration set in ONNX Runtime CPU; each input's values are summarised as they stream past
//! ([`collector`]) and read back as a range per matrix by the chosen method. The result is a
//! [`Calibration`] that `export` turns into `QuantizeLinear` scales and records in the card.
//!
//! The set is read by [`data`]: a folder of images (the checkpoint's own processor) or a
//! safetensors file of token ids. The ranges of the plain forward serve every head, the
//! decoder's steps included: every head shares the trunk, and a step's matrix inputs are the
//! forward's at its position.

pub mod collector;
pub mod data;

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::base::Tensor;
use crate::checkpoint::Checkpoint;
use crate::export::{self, ExportError, ExportOptions};
use crate::graph::calibration::MATRIX_INPUT_PREFIX;
use crate::graph::io::{ATTENTION_MASK, INPUT_IDS};
use crate::graph::{
    Calibration, CalibrationMethod, CalibrationRecord, GraphOptions, Head, Profile,
};
use crate::runtime::{self, RuntimeError, RuntimeKind, RuntimeOptions};
use collector::Collector;
pub use data::CalibrationSet;

/// Tokens per run: one run's matrix inputs are `7 · n_embd · n_layer` floats a token (350 KB a
/// token at the small size), so long rows run alone and short ones in batches.
const TOKENS_PER_RUN: usize = 2048;

/// Why a calibration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("calibration set {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("calibration set {path}: {why}")]
    Invalid { path: String, why: String },
    #[error("calibration images: {0}")]
    Image(#[source] crate::image::ImageError),
    #[error("calibration images need the checkpoint's image processor: {0}")]
    Processor(#[source] crate::image::ImageError),
    #[error("--calibration-percentile {0}: expected a number in (0, 100]")]
    Percentile(f64),
    #[error("cannot export the float32 graph to calibrate: {0}")]
    Export(#[source] ExportError),
    #[error("calibration needs ONNX Runtime (CPU) to run the float32 graph: {0}")]
    Runtime(#[source] RuntimeError),
    #[error("cannot make a temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
}

/// How to read the ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Method {
    pub method: CalibrationMethod,
    /// For [`CalibrationMethod::Percentile`]: each tail's percentile, in (0, 100].
    pub percentile: f64,
}

impl Default for Method {
    fn default() -> Self {
        Method {
            method: CalibrationMethod::Percentile,
            percentile: crate::graph::calibration::DEFAULT_PERCENTILE,
        }
    }
}

/// Runs the float32 `profile` graph of `ckpt` over `set` in ONNX Runtime CPU (opened with
/// `runtime`) and reads each block matrix input's range by `method`.
pub fn calibrate(
    ckpt: &Checkpoint,
    profile: Profile,
    set: &CalibrationSet,
    method: Method,
    runtime: &RuntimeOptions,
) -> Result<Calibration, CalibrateError> {
    if !(method.percentile > 0.0 && method.percentile <= 100.0) {
        return Err(CalibrateError::Percentile(method.percentile));
    }
    set.check(&ckpt.config)?;
    let work = tempfile::tempdir().map_err(CalibrateError::TempDir)?;
    let opts = ExportOptions {
        graph: GraphOptions {
            matrix_inputs: true,
            ..Default::default()
        },
        profile,
        ..Default::default()
    };
    let done =
        export::export(ckpt, &[Head::Base], work.path(), &opts).map_err(CalibrateError::Export)?;
    let rt =
        runtime::open(RuntimeKind::OrtCpu, &plain(runtime)).map_err(CalibrateError::Runtime)?;
    let mut model = rt.load(&done[0].path).map_err(CalibrateError::Runtime)?;
    let mut collectors: BTreeMap<String, Collector> = BTreeMap::new();
    for batch in batches(&set.rows) {
        let ids = Tensor::I64(batch);
        let mask = Tensor::I64(ArrayD::ones(IxDyn(ids.shape())));
        let feed = [(INPUT_IDS, &ids), (ATTENTION_MASK, &mask)];
        let out = model.run(&feed).map_err(CalibrateError::Runtime)?;
        for (name, t) in out {
            let Some(matrix) = name.strip_prefix(MATRIX_INPUT_PREFIX) else {
                continue;
            };
            let values = t.to_f32();
            let c = collectors.entry(matrix.to_string()).or_default();
            match values.as_slice() {
                Some(v) => c.add(v),
                None => c.add(&values.iter().copied().collect::<Vec<_>>()),
            }
        }
    }
    let ranges = collectors
        .iter()
        .filter_map(|(m, c)| Some((m.clone(), c.range(method.method, method.percentile)?)))
        .collect();
    let percentile = (method.method == CalibrationMethod::Percentile).then_some(method.percentile);
    Ok(Calibration {
        record: CalibrationRecord {
            sha256: set.sha256.clone(),
            method: crate::base::values::Choice::name(method.method).to_string(),
            percentile,
            examples: set.rows.iter().filter(|r| !r.is_empty()).count(),
            tokens: set.tokens(),
        },
        ranges,
    })
}

/// Runtime options for the calibration run: the caller's library choice, no profiling and no
/// cache (the graph is a temporary one).
fn plain(runtime: &RuntimeOptions) -> RuntimeOptions {
    RuntimeOptions {
        count_nodes: false,
        ort_cache: None,
        ..runtime.clone()
    }
}

/// The rows as `[batch, seq]` arrays: rows of one length together, up to [`TOKENS_PER_RUN`]
/// tokens a run (a longer row alone), empty rows skipped; in the order lengths first appear.
fn batches(rows: &[Vec<i64>]) -> Vec<ArrayD<i64>> {
    let mut by_len: Vec<(usize, Vec<&Vec<i64>>)> = Vec::new();
    for r in rows.iter().filter(|r| !r.is_empty()) {
        match by_len.iter_mut().find(|(len, _)| *len == r.len()) {
            Some((_, group)) => group.push(r),
            None => by_len.push((r.len(), vec![r])),
        }
    }
    let mut out = Vec::new();
    for (len, group) in by_len {
        let per_run = (TOKENS_PER_RUN / len).max(1);
        for chunk in group.chunks(per_run) {
            let flat: Vec<i64> = chunk.iter().flat_map(|r| r.iter().copied()).collect();
            if let Ok(a) = ArrayD::from_shape_vec(IxDyn(&[chunk.len(), len]), flat) {
                out.push(a);
            }
        }
    }
    out
}

/// The calibration set a checkpoint's processor reads: `path` as [`CalibrationSet::read`] takes
/// it, with the processor beside the checkpoint's weights.
pub fn read_set(path: &Path, ckpt: &Checkpoint) -> Result<CalibrationSet, CalibrateError> {
    let folder = match ckpt.source.is_dir() {
        true => ckpt.source.clone(),
        false => ckpt
            .source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    CalibrationSet::read(path, &ckpt.config, &folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_batch_by_length_within_the_token_budget() {
        let rows = vec![vec![1; 3], vec![2; 5], vec![], vec![3; 3], vec![4; 3000]];
        let b = batches(&rows);
        let shapes: Vec<&[usize]> = b.iter().map(|a| a.shape()).collect();
        assert_eq!(shapes, vec![&[2, 3][..], &[1, 5], &[1, 3000]]);
        assert_eq!(
            b[0].iter().copied().collect::<Vec<_>>(),
            vec![1, 1, 1, 3, 3, 3]
        );
    }
}
