//! Safetensors checkpoints: one `model.safetensors`, or `model.safetensors.index.json` +
//! shards. Headers are parsed and validated by the `safetensors` crate over a memory map (only
//! the header pages are touched); the tensors then join the [`WeightStore`].
//! Format: <https://github.com/huggingface/safetensors#format>.

use std::path::{Path, PathBuf};

use ::safetensors::tensor::Dtype;
use ::safetensors::SafeTensors;

use super::store::{Layout, SourceFile, TensorMeta, WeightStore, WeightsError};
use crate::base::DataType;

/// The weight files a path resolves to: the file itself, the shards an index names, or the
/// folder's `model.safetensors`.
pub fn resolve_files(path: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(WeightsError::NoPath {
            path: path.display().to_string(),
        });
    }
    let index = path.join("model.safetensors.index.json");
    if index.is_file() {
        return super::index::shard_files(&index);
    }
    let single = path.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(WeightsError::NoWeights {
        dir: path.display().to_string(),
        expected: "model.safetensors or model.safetensors.index.json".into(),
    })
}

/// Opens every file `path` resolves to and validates its header.
pub fn open(path: &Path) -> Result<WeightStore, WeightsError> {
    let mut store = WeightStore::new("safetensors");
    for p in resolve_files(path)? {
        let (file, tensors) = read_header(&p)?;
        store.add_file(file, tensors)?;
    }
    Ok(store)
}

/// One file's tensors.
pub fn read_header(path: &Path) -> Result<(SourceFile, Vec<TensorMeta>), WeightsError> {
    let shown = path.display().to_string();
    let file = SourceFile::open(path)?;
    // SAFETY: the map is read-only and used only while the header is parsed, inside this
    // function; the safetensors crate bounds-checks every access against the map's length.
    let map = unsafe { memmap2::Mmap::map(&file.file) }.map_err(|source| WeightsError::Io {
        path: shown.clone(),
        source,
    })?;
    let tensors = parse_header(&map).map_err(|reason| WeightsError::Corrupt {
        path: shown,
        format: "safetensors",
        reason,
    })?;
    Ok((file, tensors))
}

/// The tensors a safetensors file's header describes (offsets absolute in the file). Public
/// for the fuzz test: any byte string gives tensors or a reason, never a panic.
pub fn parse_header(bytes: &[u8]) -> Result<Vec<TensorMeta>, String> {
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| describe_error(&e))?;
    // 8 bytes of header length, then the header; offsets in it are relative to its end.
    let data_start = 8 + header_len as u64;
    metadata
        .tensors()
        .into_iter()
        .map(|(stored, info)| {
            Ok(TensorMeta {
                dtype: data_type(info.dtype),
                shape: info.shape.clone(),
                layout: Layout::Contiguous {
                    offset: data_start + info.data_offsets.0 as u64,
                },
                stored_name: stored,
                file: 0,
            })
        })
        .collect()
}

/// Safetensors dtypes by ONNX meaning; types no weight can have map to the closest name so
/// the error that refuses them reads right.
fn data_type(d: Dtype) -> DataType {
    match d {
        Dtype::F32 => DataType::Float32,
        Dtype::F16 => DataType::Float16,
        Dtype::BF16 => DataType::BFloat16,
        Dtype::F64 => DataType::Float64,
        Dtype::I64 => DataType::Int64,
        Dtype::I32 => DataType::Int32,
        Dtype::I16 => DataType::Int16,
        Dtype::I8 => DataType::Int8,
        Dtype::BOOL => DataType::Bool,
        _ => DataType::UInt8,
    }
}

fn describe_error(e: &::safetensors::SafeTensorError) -> String {
    use ::safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "file too small for a header".into(),
        E::InvalidHeaderLength => {
            "header length exceeds the file: truncated or not safetensors".into()
        }
        E::HeaderTooLarge => "header length is implausibly large: not safetensors".into(),
        E::MetadataIncompleteBuffer => {
            "data size does not match the header: truncated or padded file".into()
        }
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            format!("header is not valid JSON metadata: {e}")
        }
        other => other.to_string(),
    }
}
