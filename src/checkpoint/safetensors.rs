//! Safetensors checkpoints: one `model.safetensors`, or `model.safetensors.index.json` +
//! shards. Headers are parsed and validated by the `safetensors` crate over a memory map (only
//! the header pages are touched); the tensors then join the [`WeightStore`].
//! Format: <https://github.com/huggingface/safetensors#format>.

use std::path::{Path, PathBuf};

use ::safetensors::tensor::Dtype;
use ::safetensors::SafeTensors;

pub use super::store::HeaderError;
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
    let tensors = parse_header(&map).map_err(|reason| WeightsError::Header {
        path: shown,
        reason,
    })?;
    Ok((file, tensors))
}

/// The tensors a safetensors file's header describes (offsets absolute in the file). Public
/// for the fuzz test: any byte string gives tensors or a reason, never a panic.
pub fn parse_header(bytes: &[u8]) -> Result<Vec<TensorMeta>, HeaderError> {
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| header_error(e, bytes))?;
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

/// The crate's error as a [`HeaderError`], with the lengths read from `bytes` (the whole file).
fn header_error(e: ::safetensors::SafeTensorError, bytes: &[u8]) -> HeaderError {
    use ::safetensors::SafeTensorError as E;
    let file_len = bytes.len() as u64;
    // The first 8 bytes, little-endian; the crate only refuses a file without them as too small.
    let header_len = bytes
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b));
    match e {
        E::HeaderTooSmall => HeaderError::TooSmall { file_len },
        E::InvalidHeaderLength => HeaderError::PastEnd {
            header_len,
            file_len,
        },
        E::HeaderTooLarge => HeaderError::TooLarge { header_len },
        E::MetadataIncompleteBuffer => HeaderError::DataSize {
            header_len,
            file_len,
        },
        E::InvalidHeader(_) | E::InvalidHeaderStart | E::InvalidHeaderDeserialization(_) => {
            HeaderError::Json { source: e }
        }
        E::InvalidOffset(tensor) => HeaderError::Offset { tensor },
        other => HeaderError::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `header` (JSON) and `data` bytes of tensor data.
    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn header_errors_carry_what_is_at_fault() {
        assert!(matches!(
            parse_header(b"abc"),
            Err(HeaderError::TooSmall { file_len: 3 })
        ));
        let mut past = 100u64.to_le_bytes().to_vec();
        past.extend_from_slice(b"{}");
        assert!(matches!(
            parse_header(&past),
            Err(HeaderError::PastEnd {
                header_len: 100,
                file_len: 10
            })
        ));
        let two = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        match parse_header(&file(two, 12)) {
            Err(HeaderError::Offset { tensor }) => assert_eq!(tensor, "b"),
            other => panic!("{other:?}"),
        }
        let one = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let padded = file(one, 8);
        let e = parse_header(&padded).expect_err("padded");
        assert!(matches!(
            e,
            HeaderError::DataSize { header_len, file_len }
                if header_len == one.len() as u64 && file_len == padded.len() as u64
        ));
        assert_eq!(
            e.to_string(),
            "data size does not match the header: truncated or padded file"
        );
        let e = parse_header(&file("#garbage", 0)).expect_err("not JSON");
        assert!(matches!(e, HeaderError::Json { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("header is not valid JSON metadata: invalid JSON in header: "),
            "{e}"
        );
        let tensors = parse_header(&file(one, 4)).expect("valid");
        assert_eq!(tensors.len(), 1);
        assert_eq!(
            tensors[0].layout,
            Layout::Contiguous {
                offset: 8 + one.len() as u64
            }
        );
    }
}
