//! One typed tensor store for every checkpoint format: tensors by canonical name, each with its
//! element type, shape and where its bytes lie in which file. Formats ([`super::safetensors`],
//! torch next) only parse their headers into [`TensorMeta`]s; reading, converting and
//! streaming live here once.
//!
//! Data is read with positioned reads in bounded chunks, so exporting a 5.5 GB checkpoint keeps
//! resident memory small. Names are canonical: the `transformer.` prefix of head checkpoints is
//! stripped, so `h.0.ln_1.weight` names the same tensor in an `ImageGPTModel` and an
//! `ImageGPTForCausalImageModeling` checkpoint.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::base::{DataType, SourceError};

/// The prefix head checkpoints put before trunk tensor names.
pub const TRUNK_PREFIX: &str = "transformer.";
/// Source bytes read per chunk while streaming a tensor.
const CHUNK_BYTES: usize = 4 << 20;

/// A problem with the weights, naming the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is not a valid {format} file ({reason})")]
    Corrupt {
        path: String,
        format: &'static str,
        reason: String,
    },
    /// The reason is kept typed but not as the error's source: the command line appends each
    /// source that does not end the message, and this one sits inside the parentheses.
    #[error("{path} is not a valid safetensors file ({reason})")]
    Header { path: String, reason: HeaderError },
    #[error("invalid shard index {path}: {reason}")]
    Index { path: String, reason: String },
    #[error("invalid shard index {path}: {source}")]
    IndexRead {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid shard index {path}: {source}")]
    IndexJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("weights path {path} does not exist")]
    NoPath { path: String },
    #[error("no {expected} in {dir}")]
    NoWeights { dir: String, expected: String },
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
    #[error("tensor `{name}` has dtype {dtype}; only float32, float16 and bfloat16 weights are supported")]
    Dtype { name: String, dtype: String },
    #[error("unexpected tensor `{0}` in the checkpoint (not an ImageGPT weight for this config)")]
    Unexpected(String),
    /// A torch pickle holding something a plain state dict never does.
    #[error("refusing {what} in {file}: not a plain state dict")]
    Refused { what: String, file: String },
}

/// Why a safetensors header is refused, with what is at fault: the lengths that disagree, or
/// the tensor whose offsets are wrong. Messages say what the file probably is (truncated,
/// padded, not safetensors at all) rather than the `safetensors` crate's wording. Parsed in
/// [`super::safetensors`]; it lives here, beside [`WeightsError`] which carries it.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than the 8-byte header length.
    #[error("file too small for a header")]
    TooSmall { file_len: u64 },
    /// The header, as long as the first 8 bytes say, would end past the end of the file.
    #[error("header length exceeds the file: truncated or not safetensors")]
    PastEnd { header_len: u64, file_len: u64 },
    /// Over the `safetensors` crate's 100 MB limit on headers.
    #[error("header length is implausibly large: not safetensors")]
    TooLarge { header_len: u64 },
    /// The tensors' data, as the header lays it out, does not end where the file does.
    #[error("data size does not match the header: truncated or padded file")]
    DataSize { header_len: u64, file_len: u64 },
    /// The header is not UTF-8, not JSON, or not safetensors' JSON.
    #[error("header is not valid JSON metadata: {source}")]
    Json {
        #[source]
        source: ::safetensors::SafeTensorError,
    },
    /// A tensor's data does not start where the previous one's ends.
    #[error("invalid offset for tensor `{tensor}`")]
    Offset { tensor: String },
    /// Anything else the `safetensors` crate refuses, in its words.
    #[error(transparent)]
    Other(::safetensors::SafeTensorError),
}

/// Where a tensor's elements lie in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Row-major, starting at this absolute byte offset.
    Contiguous { offset: u64 },
    /// A strided view (torch): element `[i, j, …]` is at
    /// `offset + (i·strides[0] + j·strides[1] + …) · element size`.
    Strided { offset: u64, strides: Vec<usize> },
}

/// One tensor: name as stored, type, shape and location.
#[derive(Debug, Clone)]
pub struct TensorMeta {
    /// Name as stored in the file (with any prefix).
    pub stored_name: String,
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// Index of the file in the store.
    pub(crate) file: usize,
}

impl TensorMeta {
    /// Number of elements (shapes are bounded when a store is built, so this cannot overflow).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes the tensor's elements span in its file, from its first element to past its last;
    /// `None` on overflow.
    fn extent(&self) -> Option<u64> {
        let size = self.dtype.byte_len(1)?;
        if self.shape.contains(&0) {
            return Some(0);
        }
        match &self.layout {
            Layout::Contiguous { .. } => {
                let n = self
                    .shape
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
                self.dtype.byte_len(n)
            }
            Layout::Strided { strides, .. } => {
                // The furthest element: every index at its maximum.
                let last = self
                    .shape
                    .iter()
                    .zip(strides)
                    .try_fold(0u64, |a, (&d, &s)| {
                        (d as u64 - 1)
                            .checked_mul(s as u64)
                            .and_then(|x| a.checked_add(x))
                    })?;
                last.checked_add(1)?.checked_mul(size)
            }
        }
    }

    fn offset(&self) -> u64 {
        match &self.layout {
            Layout::Contiguous { offset } | Layout::Strided { offset, .. } => *offset,
        }
    }

    /// The strides a row-major tensor of this shape has.
    fn is_row_major(&self, strides: &[usize]) -> bool {
        let mut expect = 1usize;
        for (&d, &s) in self.shape.iter().zip(strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect = expect.saturating_mul(d);
        }
        true
    }
}

/// An opened source file.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub file: File,
    /// Its length when opened: every tensor must lie inside it.
    pub len: u64,
}

impl SourceFile {
    /// Opens `path` for positioned reads.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
        })
    }
}

/// All tensors of a checkpoint, by canonical name.
#[derive(Debug, Default)]
pub struct WeightStore {
    files: Vec<SourceFile>,
    tensors: BTreeMap<String, TensorMeta>,
    /// What the files are (`safetensors`, `pytorch zip`, ...), for messages and provenance.
    pub format: String,
}

impl WeightStore {
    /// An empty store of files in `format`, for a format reader to fill.
    pub fn new(format: &str) -> Self {
        Self {
            format: format.to_string(),
            ..Default::default()
        }
    }

    /// Adds a file and its tensors. Every tensor must lie inside the file, and no canonical
    /// name may repeat.
    pub fn add_file(
        &mut self,
        file: SourceFile,
        tensors: Vec<TensorMeta>,
    ) -> Result<(), WeightsError> {
        let index = self.files.len();
        for mut meta in tensors {
            let end = meta
                .extent()
                .and_then(|e| meta.offset().checked_add(e))
                .filter(|&end| end <= file.len);
            if end.is_none() {
                return Err(WeightsError::Corrupt {
                    path: file.path.display().to_string(),
                    format: "weights",
                    reason: format!(
                        "tensor `{}` ({} {:?}) lies beyond the end of the file ({} bytes): truncated",
                        meta.stored_name, meta.dtype, meta.shape, file.len
                    ),
                });
            }
            if let Layout::Strided { offset, strides } = &meta.layout {
                if meta.is_row_major(strides) {
                    meta.layout = Layout::Contiguous { offset: *offset };
                }
            }
            meta.file = index;
            let canonical = meta
                .stored_name
                .strip_prefix(TRUNK_PREFIX)
                .unwrap_or(&meta.stored_name)
                .to_string();
            if self.tensors.insert(canonical.clone(), meta).is_some() {
                return Err(WeightsError::Duplicate(canonical));
            }
        }
        self.files.push(file);
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

    fn meta(&self, name: &str) -> Result<&TensorMeta, WeightsError> {
        self.get(name)
            .ok_or_else(|| WeightsError::Missing(name.to_string()))
    }

    /// A tensor that must exist as a float tensor of this shape.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<&TensorMeta, WeightsError> {
        let meta = self.meta(name)?;
        if !is_float_weight(meta.dtype) {
            return Err(WeightsError::Dtype {
                name: meta.stored_name.clone(),
                dtype: meta.dtype.to_string(),
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

    /// Streams a float tensor to `out` as little-endian float32 and returns the bytes written.
    /// Contiguous float32 goes file to file (`copy_file_range` through `std::io::copy`);
    /// float16 / bfloat16 are widened in chunks; strided views are gathered.
    pub fn write_f32(&self, name: &str, out: &mut io::BufWriter<File>) -> Result<u64, SourceError> {
        let meta = self.meta(name).map_err(SourceError::input)?;
        let written = match (&meta.layout, meta.dtype) {
            (Layout::Contiguous { offset }, DataType::Float32) => self.copy_raw(meta, *offset, out),
            _ => self.convert_f32(meta, out),
        };
        written.map_err(|e| match e {
            Fail::Weights(w) => SourceError::input(w),
            Fail::Output(o) => SourceError::Output(o),
        })
    }

    /// Reads a whole float tensor as float32 (for small tensors that are reshaped at export).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, WeightsError> {
        let meta = self.meta(name)?;
        let mut bytes = Vec::with_capacity(meta.numel() * 4);
        self.convert_f32(meta, &mut bytes).map_err(|e| match e {
            Fail::Weights(w) => w,
            // Writing into a Vec cannot fail.
            Fail::Output(source) => WeightsError::Io {
                path: "memory".into(),
                source,
            },
        })?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn io_error(&self, meta: &TensorMeta, source: io::Error) -> Fail {
        Fail::Weights(WeightsError::Io {
            path: self.files[meta.file].path.display().to_string(),
            source,
        })
    }

    fn copy_raw(
        &self,
        meta: &TensorMeta,
        offset: u64,
        out: &mut io::BufWriter<File>,
    ) -> Result<u64, Fail> {
        let len = meta.extent().unwrap_or(0);
        let mut file = &self.files[meta.file].file;
        file.seek(io::SeekFrom::Start(offset))
            .map_err(|e| self.io_error(meta, e))?;
        let copied = io::copy(&mut file.take(len), out).map_err(Fail::Output)?;
        if copied != len {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "`{}` ends early: file truncated while reading",
                    meta.stored_name
                ),
            );
            return Err(self.io_error(meta, e));
        }
        Ok(copied)
    }

    /// Reads the tensor's elements in row-major order, in chunks, converting each to float32.
    fn convert_f32(&self, meta: &TensorMeta, out: &mut dyn Write) -> Result<u64, Fail> {
        let widen = widener(meta)?;
        let src = &self.files[meta.file];
        let size = meta.dtype.byte_len(1).unwrap_or(4) as usize;
        let mut written = 0u64;
        let mut converted: Vec<u8> = Vec::new();
        let mut emit = |chunk: &[u8], out: &mut dyn Write| -> Result<(), Fail> {
            converted.clear();
            widen(chunk, &mut converted);
            out.write_all(&converted).map_err(Fail::Output)?;
            written += converted.len() as u64;
            Ok(())
        };
        match &meta.layout {
            Layout::Contiguous { offset } => {
                let len = meta.extent().unwrap_or(0);
                let chunk = (CHUNK_BYTES / size * size).max(size);
                let mut raw = vec![0u8; chunk.min(len as usize)];
                let mut done = 0u64;
                while done < len {
                    let n = ((len - done) as usize).min(raw.len());
                    src.file
                        .read_exact_at(&mut raw[..n], offset + done)
                        .map_err(|e| self.io_error(meta, e))?;
                    emit(&raw[..n], out)?;
                    done += n as u64;
                }
            }
            Layout::Strided { offset, strides } => {
                // A non-contiguous view (a transpose saved as is): read its span once, gather.
                // The span was checked against the file, and views of published checkpoints
                // are weight-sized, so this stays bounded by the checkpoint itself.
                let span = meta.extent().unwrap_or(0) as usize;
                let needed = meta.numel().saturating_mul(size);
                if span > needed.saturating_mul(4).saturating_add(1 << 20) {
                    return Err(Fail::Weights(WeightsError::Corrupt {
                        path: src.path.display().to_string(),
                        format: "weights",
                        reason: format!(
                            "tensor `{}` is a view spanning {span} bytes for {needed} bytes of data: refusing to materialise it",
                            meta.stored_name
                        ),
                    }));
                }
                let mut raw = vec![0u8; span];
                src.file
                    .read_exact_at(&mut raw, *offset)
                    .map_err(|e| self.io_error(meta, e))?;
                let mut gathered = Vec::with_capacity(meta.numel() * size);
                gather(&raw, &meta.shape, strides, size, &mut gathered);
                for chunk in gathered.chunks(CHUNK_BYTES) {
                    emit(chunk, out)?;
                }
            }
        }
        Ok(written)
    }
}

/// Why streaming a tensor stopped: its input (named) or the output.
enum Fail {
    Weights(WeightsError),
    Output(io::Error),
}

/// Float types a weight may have.
fn is_float_weight(t: DataType) -> bool {
    matches!(
        t,
        DataType::Float32 | DataType::Float16 | DataType::BFloat16
    )
}

type Widen = fn(&[u8], &mut Vec<u8>);

fn widener(meta: &TensorMeta) -> Result<Widen, Fail> {
    Ok(match meta.dtype {
        DataType::Float32 => |src, out| out.extend_from_slice(src),
        DataType::Float16 => |src, out| half_to_f32_le(false, src, out),
        DataType::BFloat16 => |src, out| half_to_f32_le(true, src, out),
        other => {
            return Err(Fail::Weights(WeightsError::Dtype {
                name: meta.stored_name.clone(),
                dtype: other.to_string(),
            }))
        }
    })
}

/// Copies the elements of a strided view, row-major, into `out`.
fn gather(raw: &[u8], shape: &[usize], strides: &[usize], size: usize, out: &mut Vec<u8>) {
    let numel: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>() * size;
        out.extend_from_slice(&raw[at..at + size]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

/// Converts little-endian float16 or bfloat16 bytes to little-endian float32 bytes.
fn half_to_f32_le(bf16: bool, src: &[u8], out: &mut Vec<u8>) {
    let halves = src
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    if bf16 {
        // bfloat16 is the top half of a float32: widening is a shift, exact.
        out.extend(halves.flat_map(|h| ((h as u32) << 16).to_le_bytes()));
    } else {
        out.extend(halves.flat_map(|h| half::f16::from_bits(h).to_f32().to_le_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_and_f16_widen_exactly() {
        let mut out = Vec::new();
        // bf16 0x3FC0 = 1.5; f16 0x3E00 = 1.5; f16 0xC000 = -2.0
        half_to_f32_le(true, &0x3FC0u16.to_le_bytes(), &mut out);
        half_to_f32_le(false, &[0x00, 0x3E, 0x00, 0xC0], &mut out);
        let vals: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(vals, vec![1.5, 1.5, -2.0]);
    }

    #[test]
    fn strided_views_gather_in_row_major_order() {
        // A [2, 3] view of the transposed [3, 2] storage 0..6: element [i, j] at j*2 + i.
        let raw: Vec<u8> = (0u8..6).collect();
        let mut out = Vec::new();
        gather(&raw, &[2, 3], &[1, 2], 1, &mut out);
        assert_eq!(out, vec![0, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn extents_are_checked() {
        let meta = |shape: Vec<usize>, layout| TensorMeta {
            stored_name: "t".into(),
            dtype: DataType::Float32,
            shape,
            layout,
            file: 0,
        };
        let c = meta(vec![2, 3], Layout::Contiguous { offset: 8 });
        assert_eq!(c.extent(), Some(24));
        let s = meta(
            vec![2, 3],
            Layout::Strided {
                offset: 0,
                strides: vec![1, 2],
            },
        );
        assert_eq!(s.extent(), Some(24));
        assert!(!s.is_row_major(&[1, 2]) && s.is_row_major(&[3, 1]));
        let huge = meta(vec![1 << 40, 1 << 40], Layout::Contiguous { offset: 0 });
        assert_eq!(huge.extent(), None);
    }
}
