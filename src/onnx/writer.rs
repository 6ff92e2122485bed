//! Streams a model to disk: protobuf framing is computed from lengths up front, so initializer
//! data goes from the checkpoint to the file chunk by chunk and is never held in memory.
//!
//! Protobuf allows a message's fields in any order and merges repeated fields, so the model is
//! written as: header fields, then `graph` (nodes and I/O, then each initializer), then
//! `metadata_props` last — which lets the source checksum be computed while the graph streams.
//! Files are written under a temporary name in the destination folder and renamed into place;
//! on any error the temporaries are removed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use super::builder::Initializer;
use super::proto::{
    GraphProto, ModelProto, StringStringEntryProto, DATA_LOCATION_EXTERNAL, GRAPH_INITIALIZER_TAG,
    MODEL_GRAPH_TAG, TENSOR_RAW_DATA_TAG,
};
use crate::base::files::{self, FileError, Temp};
use crate::base::SourceError;

/// Protobuf refuses messages of 2 GiB or more; stay clear of it with a margin for the graph.
pub const INLINE_LIMIT: u64 = (2u64 << 30) - (64 << 20);
/// External tensors start at multiples of this, so runtimes can mmap them.
const EXTERNAL_ALIGN: u64 = 4096;
/// Tensors smaller than this stay inline even in external-data mode (shape constants).
const EXTERNAL_MIN_BYTES: u64 = 1024;
const WRITE_BUFFER: usize = 8 << 20;

/// A write failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    /// A tensor source could not read its input (a checkpoint tensor, named by its error).
    #[error(transparent)]
    Input(Box<dyn std::error::Error + Send + Sync>),
    /// The source checksum, computed beside the write, failed.
    #[error("cannot checksum the source weights: {0}")]
    Checksum(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("refusing to replace {path}: it is not a regular file")]
    NotAFile { path: String },
    #[error("initializer `{tensor}` has dims {dims:?}: its size overflows")]
    Overflow { tensor: String, dims: Vec<usize> },
    #[error("graph is {bytes} bytes, over protobuf's 2 GiB limit: use external data")]
    TooLarge { bytes: u64 },
    #[error("initializer `{tensor}`: its source wrote {written} bytes, its type and shape call for {declared}")]
    SizeMismatch {
        tensor: String,
        declared: u64,
        written: u64,
    },
}

/// A model written under temporary names, not yet in place. Dropping it removes the
/// temporaries; [`commit_all`] renames them into place.
#[derive(Debug)]
pub struct Staged {
    pub model: PathBuf,
    /// The external data file, when one was needed.
    pub data: Option<PathBuf>,
    /// Bytes written, model and data together.
    pub bytes: u64,
    tmp_model: Temp,
    tmp_data: Option<Temp>,
}

impl Staged {
    /// Puts this one model in place (see [`commit_all`]).
    pub fn commit(self) -> Result<(), WriteError> {
        commit_all(vec![self])
    }
}

/// Puts every staged model in place, or none: files being replaced are first moved aside
/// under unpredictable names, and put back if any rename fails. A stale `<model>.data` of a
/// model being replaced by an inline one is removed only when the old model referenced it.
pub fn commit_all(staged: Vec<Staged>) -> Result<(), WriteError> {
    let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new(); // (new temp, destination)
    let mut stale: Vec<PathBuf> = Vec::new();
    for st in &staged {
        if let (Some(tmp), Some(dest)) = (&st.tmp_data, &st.data) {
            moves.push((tmp.path().to_path_buf(), dest.clone()));
        }
        moves.push((st.tmp_model.path().to_path_buf(), st.model.clone()));
        let old_data = external_data_path(&st.model);
        if st.data.is_none() && references_data(&st.model, &old_data) {
            stale.push(old_data);
        }
    }
    let mut aside: Vec<(PathBuf, PathBuf)> = Vec::new(); // (backup, destination)
    let mut placed: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (_, dest) in &moves {
            let Ok(meta) = std::fs::symlink_metadata(dest) else {
                continue;
            };
            if !meta.is_file() {
                return Err(WriteError::NotAFile {
                    path: dest.display().to_string(),
                });
            }
            let backup = reserve_name(dest)?;
            std::fs::rename(dest, &backup).map_err(|source| WriteError::Io {
                path: dest.display().to_string(),
                source,
            })?;
            aside.push((backup, dest.clone()));
        }
        for (tmp, dest) in &moves {
            rename(tmp, dest)?;
            placed.push(dest.clone());
        }
        Ok(())
    })();
    if let Err(e) = result {
        for dest in &placed {
            let _ = std::fs::remove_file(dest);
        }
        for (backup, dest) in &aside {
            let _ = std::fs::rename(backup, dest);
        }
        return Err(e);
    }
    for st in staged {
        // The temporaries were renamed away: nothing left to remove.
        st.tmp_model.keep();
        st.tmp_data.map(Temp::keep);
    }
    for (backup, _) in &aside {
        let _ = std::fs::remove_file(backup);
    }
    for p in stale {
        std::fs::remove_file(&p).map_err(|source| WriteError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// A copy of `src` staged under a temporary name beside `dest`, committed like a model.
pub fn stage_copy(src: &Path, dest: &Path) -> Result<Staged, WriteError> {
    let (mut file, tmp) = create_temp(dest)?;
    let mut input = File::open(src).map_err(|source| WriteError::Io {
        path: src.display().to_string(),
        source,
    })?;
    let bytes = io::copy(&mut input, &mut file).map_err(|source| WriteError::Io {
        path: dest.display().to_string(),
        source,
    })?;
    Ok(Staged {
        model: dest.to_path_buf(),
        data: None,
        bytes,
        tmp_model: tmp,
        tmp_data: None,
    })
}

/// Writes `header` (whose `graph` must be `None`) with `graph` (without initializers) and
/// `inits` under temporary names beside `path`. `metadata` is called after the tensor data is
/// written. External data goes to `<path>.data` when `external` is set.
pub fn write_model(
    path: &Path,
    header: &ModelProto,
    graph: &GraphProto,
    inits: &[Initializer<'_>],
    external: bool,
    metadata: &mut dyn FnMut() -> Result<Vec<StringStringEntryProto>, WriteError>,
) -> Result<Staged, WriteError> {
    let data_path = external.then(|| external_data_path(path));
    let (model_file, tmp_model) = create_temp(path)?;
    let (data_file, tmp_data) = match &data_path {
        Some(p) => {
            let (f, t) = create_temp(p)?;
            (Some(f), Some(t))
        }
        None => (None, None),
    };
    let mut model = Sink::new(model_file, path);
    let mut data = data_file
        .zip(data_path.as_ref())
        .map(|(f, p)| Sink::new(f, p));
    let data_name = data_path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut lens = Vec::with_capacity(inits.len());
    for init in inits {
        lens.push(init.byte_len().ok_or_else(|| WriteError::Overflow {
            tensor: init.name.clone(),
            dims: init.dims.clone(),
        })?);
    }

    // Tensor headers, with external-data entries laid out ahead of writing.
    let mut offset = 0u64;
    let mut tensors = Vec::with_capacity(inits.len());
    for (init, &len) in inits.iter().zip(&lens) {
        let mut t = init.header();
        let mut at = None;
        if data.is_some() && len >= EXTERNAL_MIN_BYTES {
            offset = offset.div_ceil(EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
            t.data_location = Some(DATA_LOCATION_EXTERNAL);
            t.external_data = vec![
                entry("location", &data_name),
                entry("offset", &offset.to_string()),
                entry("length", &len.to_string()),
            ];
            at = Some(offset);
            offset += len;
        }
        tensors.push((t, at));
    }
    let framed: Vec<Framed> = tensors
        .iter()
        .zip(&lens)
        .map(|((t, ext), &len)| Framed {
            header_len: t.encoded_len() as u64,
            inline_data: ext.is_none().then_some(len),
        })
        .collect();
    let graph_len = graph.encoded_len() as u64
        + framed
            .iter()
            .map(|f| field_len(GRAPH_INITIALIZER_TAG, f.header_len + f.inline_len()))
            .sum::<u64>();
    if !external && graph_len >= INLINE_LIMIT {
        return Err(WriteError::TooLarge { bytes: graph_len });
    }

    let w = &mut model;
    w.put(&header.encode_to_vec())?;
    w.key_len(MODEL_GRAPH_TAG, graph_len)?;
    w.put(&graph.encode_to_vec())?;
    for ((((t, ext), f), init), &len) in tensors.iter().zip(&framed).zip(inits).zip(&lens) {
        w.key_len(GRAPH_INITIALIZER_TAG, f.header_len + f.inline_len())?;
        w.put(&t.encode_to_vec())?;
        match (ext, data.as_mut()) {
            (Some(at), Some(d)) => {
                d.pad_to(*at)?;
                d.source(init, len)?;
            }
            _ => {
                w.key_len(TENSOR_RAW_DATA_TAG, len)?;
                w.source(init, len)?;
            }
        }
    }
    let meta = ModelProto {
        metadata_props: metadata()?,
        ..Default::default()
    };
    w.put(&meta.encode_to_vec())?;
    let bytes = model.finish()? + data.map(Sink::finish).transpose()?.unwrap_or(0);

    Ok(Staged {
        model: path.to_path_buf(),
        data: data_path,
        bytes,
        tmp_model,
        tmp_data,
    })
}

/// `<model>.data` beside the model.
pub fn external_data_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".data");
    PathBuf::from(s)
}

/// Whether the model at `model` (if any) keeps initializers in `data`: only then is that data
/// file the model's, and stale when the model is replaced by an inline one.
fn references_data(model: &Path, data: &Path) -> bool {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(message, repeated, tag = "5")]
        initializer: Vec<Tensor>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Tensor {
        #[prost(message, repeated, tag = "13")]
        external_data: Vec<StringStringEntryProto>,
    }
    let (Some(name), Ok(file)) = (data.file_name(), std::fs::File::open(model)) else {
        return false;
    };
    // SAFETY: read-only map used only while decoding here; prost bounds-checks every read.
    let Ok(map) = (unsafe { memmap2::Mmap::map(&file) }) else {
        return false;
    };
    let Ok(m) = Model::decode(&map[..]) else {
        return false;
    };
    m.graph.is_some_and(|g| {
        g.initializer.iter().any(|t| {
            t.external_data
                .iter()
                .any(|e| e.key == "location" && std::ffi::OsStr::new(&e.value) == name)
        })
    })
}

/// Encoded sizes of one initializer's TensorProto.
struct Framed {
    header_len: u64,
    /// Raw-data bytes when the data is inline.
    inline_data: Option<u64>,
}

impl Framed {
    fn inline_len(&self) -> u64 {
        self.inline_data
            .map_or(0, |n| field_len(TENSOR_RAW_DATA_TAG, n))
    }
}

fn field_len(tag: u32, len: u64) -> u64 {
    let key = encoded_len_varint(u64::from(tag << 3));
    key as u64 + encoded_len_varint(len) as u64 + len
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value: value.into(),
    }
}

/// A new temporary file beside `dest` (see [`files::temp_file_beside`]).
fn create_temp(dest: &Path) -> Result<(File, Temp), WriteError> {
    Ok(files::temp_file_beside(dest)?)
}

/// An unused unpredictable name beside `dest` to move an old file aside to.
fn reserve_name(dest: &Path) -> Result<PathBuf, WriteError> {
    // Keep the name reserved: the rename replaces this empty placeholder atomically.
    Ok(create_temp(dest)?.1.keep())
}

fn rename(from: &Path, to: &Path) -> Result<(), WriteError> {
    std::fs::rename(from, to).map_err(|source| WriteError::Io {
        path: to.display().to_string(),
        source,
    })
}

/// A buffered output file that counts bytes and names its destination in errors.
struct Sink {
    out: BufWriter<File>,
    dest: String,
    written: u64,
}

impl Sink {
    fn new(file: File, dest: &Path) -> Self {
        Self {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            dest: dest.display().to_string(),
            written: 0,
        }
    }

    fn err(&self, source: io::Error) -> WriteError {
        WriteError::Io {
            path: self.dest.clone(),
            source,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.out.write_all(bytes).map_err(|e| self.err(e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Lets the initializer's source write its bytes, and checks it wrote as many as the
    /// framing already promised.
    fn source(&mut self, init: &Initializer<'_>, declared: u64) -> Result<(), WriteError> {
        let written = init.data.write_to(&mut self.out).map_err(|e| match e {
            SourceError::Output(io) => self.err(io),
            SourceError::Input(e) => WriteError::Input(e),
        })?;
        if written != declared {
            return Err(WriteError::SizeMismatch {
                tensor: init.name.clone(),
                declared,
                written,
            });
        }
        self.written += written;
        Ok(())
    }

    fn key_len(&mut self, tag: u32, len: u64) -> Result<(), WriteError> {
        let mut buf = Vec::with_capacity(16);
        encode_key(tag, WireType::LengthDelimited, &mut buf);
        encode_varint(len, &mut buf);
        self.put(&buf)
    }

    fn pad_to(&mut self, at: u64) -> Result<(), WriteError> {
        let pad = at - self.written;
        self.put(&vec![0u8; pad as usize])
    }

    fn finish(mut self) -> Result<u64, WriteError> {
        self.out.flush().map_err(|e| self.err(e))?;
        Ok(self.written)
    }
}
