//! Which format a weights path is, and the reader for it. A folder's safetensors
//! (`model.safetensors`, or its index) win over its torch weights (`pytorch_model.bin`, or
//! its index), as in `transformers`' `from_pretrained`; a single file is recognised by its
//! first bytes, not its name. The store's `format` then says which was read.

use std::io::Read;
use std::path::Path;

use super::store::{WeightStore, WeightsError};
use super::{safetensors, torch};

/// Opens a model folder, a shard index or one weights file in any supported format.
pub fn open(path: &Path) -> Result<WeightStore, WeightsError> {
    if path.is_dir() {
        let has_safetensors = path.join("model.safetensors.index.json").is_file()
            || path.join("model.safetensors").is_file();
        if has_safetensors {
            return safetensors::open(path);
        }
        return match torch::resolve_files(path)? {
            Some(files) => torch::open(&files),
            None => Err(WeightsError::NoWeights {
                dir: path.display().to_string(),
                expected: format!(
                    "model.safetensors, model.safetensors.index.json, {} or {}",
                    torch::WEIGHTS,
                    torch::INDEX
                ),
            }),
        };
    }
    if !path.is_file() {
        return Err(WeightsError::NoPath {
            path: path.display().to_string(),
        });
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if name.ends_with(".bin.index.json") {
        return torch::open(&super::index::shard_files(path)?);
    }
    if name.ends_with(".index.json") {
        let files = super::index::shard_files(path)?;
        let mut store = WeightStore::new("safetensors");
        for p in files {
            let (file, tensors) = safetensors::read_header(&p)?;
            store.add_file(file, tensors)?;
        }
        return Ok(store);
    }
    if torch::sniff(&first_bytes(path)?) {
        torch::open(&[path.to_path_buf()])
    } else {
        safetensors::open(path)
    }
}

fn first_bytes(path: &Path) -> Result<Vec<u8>, WeightsError> {
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(|source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(head)
}
