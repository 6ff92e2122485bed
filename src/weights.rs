//! Safetensors checkpoints (one file, or `model.safetensors.index.json` + shards) as a store of
//! typed, shape-checked tensors that are streamed, never loaded whole.
//!
//! Headers are parsed and validated by the `safetensors` crate over a memory map (only the
//! header pages are touched); tensor data is then read with positioned reads in bounded chunks,
//! so exporting a 5.5 GB checkpoint keeps resident memory small. Names are canonical: the
//! `transformer.` prefix of head checkpoints is stripped, so `h.0.ln_1.weight` names the same
//! tensor in an `ImageGPTModel` and an `ImageGPTForCausalImageModeling` checkpoint.
//! Format: <https://github.com/huggingface/safetensors#format>.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

/// The prefix head checkpoints put before trunk tensor names.
const TRUNK_PREFIX: &str = "transformer.";
/// Source bytes read per chunk while streaming a tensor.
const CHUNK_BYTES: usize = 4 << 20;

/// A problem with the weights, naming the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is not a valid safetensors file ({reason})")]
    Corrupt { path: String, reason: String },
    #[error("invalid shard index {path}: {reason}")]
    Index { path: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("tensor `{0}` appears twice in the checkpoint (with and without the `transformer.` prefix, or in two shards)")]
    Duplicate(String),
    #[error("missing tensor `{0}`")]
    Missing(String),
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 weights are supported")]
    Dtype { name: String, dtype: String },
    #[error("unexpected tensor `{0}` in the checkpoint (not an ImageGPT weight for this config)")]
    Unexpected(String),
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
pub struct TensorMeta {
    /// Name as stored in the file (with any prefix).
    pub stored_name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    file: usize,
    /// Absolute byte offset of the data in the file.
    offset: u64,
    len: u64,
}

impl TensorMeta {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An opened source file.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    file: File,
}

/// All tensors of a checkpoint, by canonical name.
#[derive(Debug)]
pub struct WeightStore {
    files: Vec<SourceFile>,
    tensors: BTreeMap<String, TensorMeta>,
}

/// The weight files a path resolves to.
pub fn resolve_files(path: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(WeightsError::NotFound(format!(
            "weights path {} does not exist",
            path.display()
        )));
    }
    let index = path.join("model.safetensors.index.json");
    if index.is_file() {
        return shard_files(&index);
    }
    let single = path.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let hint = if path.join("pytorch_model.bin").is_file() {
        " (it has pytorch_model.bin, which is not read yet: convert it to safetensors, or use the hub's safetensors revision)"
    } else {
        ""
    };
    Err(WeightsError::NotFound(format!(
        "no model.safetensors or model.safetensors.index.json in {}{hint}",
        path.display()
    )))
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let err = |reason: String| WeightsError::Index {
        path: index.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|e| err(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| err("no `weight_map` object".into()))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut names: Vec<&str> = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| err(format!("`{tensor}` maps to a non-string")))?;
        // Shards live beside the index: refuse anything that would escape the folder.
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(err(format!("shard name `{file}` is not a plain file name")));
        }
        names.push(file);
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(err("`weight_map` is empty".into()));
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

impl WeightStore {
    /// Opens and validates every file's header.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let paths = resolve_files(path)?;
        let mut store = Self {
            files: Vec::with_capacity(paths.len()),
            tensors: BTreeMap::new(),
        };
        for p in paths {
            store.add_file(p)?;
        }
        Ok(store)
    }

    fn add_file(&mut self, path: PathBuf) -> Result<(), WeightsError> {
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|source| WeightsError::Io {
            path: shown.clone(),
            source,
        })?;
        // SAFETY: the map is read-only and used only while the header is parsed, inside this
        // function; the safetensors crate bounds-checks every access against the map's length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| WeightsError::Io {
            path: shown.clone(),
            source,
        })?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| WeightsError::Corrupt {
                path: shown.clone(),
                reason: describe_safetensors_error(&e),
            })?;
        // 8 bytes of header length, then the header; offsets in it are relative to its end.
        let data_start = 8 + header_len as u64;
        let index = self.files.len();
        for (stored, info) in metadata.tensors() {
            let canonical = stored
                .strip_prefix(TRUNK_PREFIX)
                .unwrap_or(&stored)
                .to_string();
            let meta = TensorMeta {
                stored_name: stored.clone(),
                dtype: info.dtype,
                shape: info.shape.clone(),
                file: index,
                offset: data_start + info.data_offsets.0 as u64,
                len: (info.data_offsets.1 - info.data_offsets.0) as u64,
            };
            if self.tensors.insert(canonical.clone(), meta).is_some() {
                return Err(WeightsError::Duplicate(canonical));
            }
        }
        self.files.push(SourceFile { path, file });
        Ok(())
    }

    /// Canonical names of every tensor, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The source files, in order.
    pub fn file_paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// How this checkpoint stores a trunk tensor with this canonical name: with the
    /// `transformer.` prefix when its trunk tensors carry one (head checkpoints), else as is.
    pub fn trunk_name(&self, canonical: &str) -> String {
        let prefixed = self
            .tensors
            .values()
            .any(|m| m.stored_name.starts_with(TRUNK_PREFIX));
        if prefixed {
            format!("{TRUNK_PREFIX}{canonical}")
        } else {
            canonical.to_string()
        }
    }

    /// A tensor's metadata.
    pub fn get(&self, name: &str) -> Option<&TensorMeta> {
        self.tensors.get(name)
    }

    /// A tensor that must exist as a float tensor of this shape.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<&TensorMeta, WeightsError> {
        let meta = self
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        if !matches!(meta.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(WeightsError::Dtype {
                name: meta.stored_name.clone(),
                dtype: format!("{:?}", meta.dtype),
            });
        }
        if meta.shape != shape {
            return Err(WeightsError::Shape {
                name: meta.stored_name.clone(),
                expected: shape.to_vec(),
                found: meta.shape.clone(),
            });
        }
        Ok(meta)
    }

    /// Streams a float tensor to `out` as little-endian float32, converting F16/BF16 on the fly.
    pub fn write_f32(&self, name: &str, out: &mut dyn Write) -> Result<(), WeightsError> {
        let meta = self
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        let src = &self.files[meta.file];
        let io_err = |source| WeightsError::Io {
            path: src.path.display().to_string(),
            source,
        };
        let mut raw = vec![0u8; CHUNK_BYTES.min(meta.len as usize)];
        let mut converted: Vec<u8> = Vec::new();
        let mut done = 0u64;
        while done < meta.len {
            let n = ((meta.len - done) as usize).min(raw.len());
            src.file
                .read_exact_at(&mut raw[..n], meta.offset + done)
                .map_err(io_err)?;
            let chunk = &raw[..n];
            match meta.dtype {
                Dtype::F32 => out.write_all(chunk),
                Dtype::F16 | Dtype::BF16 => {
                    converted.clear();
                    converted.reserve(n * 2);
                    half_to_f32_le(meta.dtype, chunk, &mut converted);
                    out.write_all(&converted)
                }
                other => {
                    return Err(WeightsError::Dtype {
                        name: meta.stored_name.clone(),
                        dtype: format!("{other:?}"),
                    })
                }
            }
            .map_err(|source| WeightsError::Io {
                path: "output".into(),
                source,
            })?;
            done += n as u64;
        }
        Ok(())
    }

    /// Copies a float32 tensor's bytes straight from the source file into `out` with the
    /// kernel's file-to-file copy (`copy_file_range` through `std::io::copy`), skipping two
    /// user-space copies. Returns `false`, having written nothing, when the tensor needs
    /// conversion (F16/BF16); the caller then streams it with [`WeightStore::write_f32`].
    pub fn copy_f32(
        &self,
        name: &str,
        out: &mut io::BufWriter<File>,
    ) -> Result<bool, WeightsError> {
        let meta = self
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        if meta.dtype != Dtype::F32 {
            return Ok(false);
        }
        let src = &self.files[meta.file];
        let mut file = &src.file;
        file.seek(io::SeekFrom::Start(meta.offset))
            .map_err(|source| WeightsError::Io {
                path: src.path.display().to_string(),
                source,
            })?;
        let copied =
            io::copy(&mut file.take(meta.len), out).map_err(|source| WeightsError::Io {
                path: "output".into(),
                source,
            })?;
        if copied != meta.len {
            return Err(WeightsError::Io {
                path: src.path.display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "`{}` ends early: file truncated while reading",
                        meta.stored_name
                    ),
                ),
            });
        }
        Ok(true)
    }

    /// Reads a whole float tensor as float32 (for small tensors that are reshaped at export).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, WeightsError> {
        let meta = self
            .get(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        let mut bytes = Vec::with_capacity(meta.numel() * 4);
        self.write_f32(name, &mut bytes)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Converts little-endian F16 or BF16 bytes to little-endian F32 bytes.
fn half_to_f32_le(dtype: Dtype, src: &[u8], out: &mut Vec<u8>) {
    let halves = src
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    if dtype == Dtype::BF16 {
        // bfloat16 is the top half of a float32: widening is a shift, exact.
        out.extend(halves.flat_map(|h| ((h as u32) << 16).to_le_bytes()));
    } else {
        out.extend(halves.flat_map(|h| half::f16::from_bits(h).to_f32().to_le_bytes()));
    }
}

fn describe_safetensors_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_and_f16_widen_exactly() {
        let mut out = Vec::new();
        // bf16 0x3FC0 = 1.5; f16 0x3E00 = 1.5; f16 0xC000 = -2.0
        half_to_f32_le(Dtype::BF16, &0x3FC0u16.to_le_bytes(), &mut out);
        half_to_f32_le(Dtype::F16, &[0x00, 0x3E, 0x00, 0xC0], &mut out);
        let vals: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(vals, vec![1.5, 1.5, -2.0]);
    }
}
