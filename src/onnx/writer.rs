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
use crate::weights::WeightsError;

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
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Refused(String),
}

/// A model written under temporary names, not yet in place. Dropping it removes the
/// temporaries; [`Staged::commit`] renames them into place.
#[derive(Debug)]
pub struct Staged {
    pub model: PathBuf,
    /// The external data file, when one was needed.
    pub data: Option<PathBuf>,
    /// Bytes written, model and data together.
    pub bytes: u64,
    tmp_model: PathBuf,
    tmp_data: Option<PathBuf>,
    guard: TempFiles,
}

impl Staged {
    /// Renames the files into place, data first so a model in place always finds its data.
    pub fn commit(mut self) -> Result<(), WriteError> {
        // A `<model>.data` with no model beside it is not known to be ours: leave it alone.
        let replaces_model = self.model.is_file();
        if let (Some(tmp), Some(dest)) = (&self.tmp_data, &self.data) {
            rename(tmp, dest)?;
        }
        rename(&self.tmp_model, &self.model)?;
        self.guard.disarm();
        if self.data.is_none() && replaces_model {
            // An inline model replacing an external-data one of ours: its old data is stale.
            let stale = external_data_path(&self.model);
            if stale.is_file() {
                std::fs::remove_file(&stale).map_err(|source| WriteError::Io {
                    path: stale.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(())
    }
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
    let mut guard = TempFiles::default();
    let tmp_model = guard.add(temp_name(path));
    let tmp_data = data_path.as_ref().map(|p| guard.add(temp_name(p)));

    let bytes = {
        let mut model = Sink::create(&tmp_model, path)?;
        let mut data = tmp_data
            .as_ref()
            .zip(data_path.as_ref())
            .map(|(tmp, dest)| Sink::create(tmp, dest))
            .transpose()?;
        let data_name = data_path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        // Tensor headers, with external-data entries laid out ahead of writing.
        let mut offset = 0u64;
        let mut tensors = Vec::with_capacity(inits.len());
        for init in inits {
            let mut t = init.header();
            let len = init.byte_len();
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
        let inline_len = |t: &Framed| {
            t.inline_data
                .map_or(0, |n| field_len(TENSOR_RAW_DATA_TAG, n))
        };
        let framed: Vec<Framed> = tensors
            .iter()
            .zip(inits)
            .map(|((t, ext), init)| Framed {
                header_len: t.encoded_len() as u64,
                inline_data: ext.is_none().then(|| init.byte_len()),
            })
            .collect();
        let graph_len = graph.encoded_len() as u64
            + framed
                .iter()
                .map(|f| field_len(GRAPH_INITIALIZER_TAG, f.header_len + inline_len(f)))
                .sum::<u64>();
        if !external && graph_len >= INLINE_LIMIT {
            return Err(WriteError::Refused(format!(
                "graph is {graph_len} bytes, over protobuf's 2 GiB limit: use external data"
            )));
        }

        let w = &mut model;
        w.put(&header.encode_to_vec())?;
        w.key_len(MODEL_GRAPH_TAG, graph_len)?;
        w.put(&graph.encode_to_vec())?;
        for (((t, ext), f), init) in tensors.iter().zip(&framed).zip(inits) {
            w.key_len(GRAPH_INITIALIZER_TAG, f.header_len + inline_len(f))?;
            w.put(&t.encode_to_vec())?;
            match (ext, data.as_mut()) {
                (Some(at), Some(d)) => {
                    d.pad_to(*at)?;
                    init.write_data(&mut d.out).map_err(|e| d.map_weights(e))?;
                    d.written += init.byte_len();
                }
                _ => {
                    w.key_len(TENSOR_RAW_DATA_TAG, init.byte_len())?;
                    init.write_data(&mut w.out).map_err(|e| w.map_weights(e))?;
                    w.written += init.byte_len();
                }
            }
        }
        let meta = ModelProto {
            metadata_props: metadata()?,
            ..Default::default()
        };
        w.put(&meta.encode_to_vec())?;
        model.finish()? + data.map(Sink::finish).transpose()?.unwrap_or(0)
    };

    Ok(Staged {
        model: path.to_path_buf(),
        data: data_path,
        bytes,
        tmp_model,
        tmp_data,
        guard,
    })
}

/// `<model>.data` beside the model.
pub fn external_data_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".data");
    PathBuf::from(s)
}

/// Encoded sizes of one initializer's TensorProto.
struct Framed {
    header_len: u64,
    /// Raw-data bytes when the data is inline.
    inline_data: Option<u64>,
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

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
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
    fn create(tmp: &Path, dest: &Path) -> Result<Self, WriteError> {
        let file = File::create(tmp).map_err(|source| WriteError::Io {
            path: dest.display().to_string(),
            source,
        })?;
        Ok(Self {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            dest: dest.display().to_string(),
            written: 0,
        })
    }

    fn err(&self, source: io::Error) -> WriteError {
        WriteError::Io {
            path: self.dest.clone(),
            source,
        }
    }

    fn map_weights(&self, e: WeightsError) -> WriteError {
        match e {
            // The weight store names the output "output": say which one.
            WeightsError::Io { path, source } if path == "output" => self.err(source),
            other => WriteError::Weights(other),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.out.write_all(bytes).map_err(|e| self.err(e))?;
        self.written += bytes.len() as u64;
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

/// Removes the temporaries it holds unless disarmed.
#[derive(Debug, Default)]
struct TempFiles(Vec<PathBuf>);

impl TempFiles {
    fn add(&mut self, p: PathBuf) -> PathBuf {
        self.0.push(p.clone());
        p
    }
    fn disarm(&mut self) {
        self.0.clear();
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
