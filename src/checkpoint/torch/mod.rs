//! PyTorch checkpoints (`pytorch_model.bin`, sharded with `pytorch_model.bin.index.json`),
//! read as data: both containers `torch.save` writes ([`zip`], [`legacy`]) and a restricted
//! unpickler ([`pickle`]) that imports and calls nothing. Each tensor becomes a
//! [`TensorMeta`] pointing into its storage's bytes in the file, honouring storage offset,
//! sizes and strides; the [`WeightStore`] streams them like safetensors ones.
//! Format: `torch/serialization.py` (`_save`, `_legacy_save`, `_load`).

mod container;
pub mod legacy;
pub mod pickle;
pub mod zip;

pub use container::{Container, Malformed, Problem, Storage};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::store::{Layout, SourceFile, TensorMeta, WeightStore, WeightsError};
use container::pickle_problem;
use pickle::TensorRef;
use zip::ReadAt;

/// The weights file of a torch model folder and its shard index.
pub const WEIGHTS: &str = "pytorch_model.bin";
pub const INDEX: &str = "pytorch_model.bin.index.json";
/// The largest `data.pkl` read (a state dict's is a few KB per hundred tensors).
const MAX_PICKLE: u64 = 256 << 20;

/// The shard files a torch model folder holds, if any: the index's shards, else
/// `pytorch_model.bin`.
pub fn resolve_files(dir: &Path) -> Result<Option<Vec<PathBuf>>, WeightsError> {
    let index = dir.join(INDEX);
    if index.is_file() {
        return super::index::shard_files(&index).map(Some);
    }
    let single = dir.join(WEIGHTS);
    Ok(single.is_file().then(|| vec![single]))
}

/// Whether a file's first bytes are a torch container (zip or legacy).
pub fn sniff(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") || legacy::sniff(head)
}

/// Opens torch weight files into one store; its format says which container(s) were read.
pub fn open(files: &[PathBuf]) -> Result<WeightStore, WeightsError> {
    let mut kinds: Vec<&str> = Vec::new();
    let mut parts = Vec::with_capacity(files.len());
    for path in files {
        let file = SourceFile::open(path)?;
        let (kind, tensors) = read_file(&file)?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        parts.push((file, tensors));
    }
    let mut store = WeightStore::new(&kinds.join(" + "));
    for (file, tensors) in parts {
        store.add_file(file, tensors)?;
    }
    Ok(store)
}

/// One file's tensors and its container kind (`pytorch zip` or `pytorch legacy`).
pub fn read_file(file: &SourceFile) -> Result<(&'static str, Vec<TensorMeta>), WeightsError> {
    let name = file.path.file_name().map_or_else(
        || file.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (kind, result) = parse(&file.file);
    result.map(|t| (kind, t)).map_err(|p| match p {
        Problem::Refused(what) => WeightsError::Refused { what, file: name },
        Problem::Corrupt(reason) => WeightsError::Corrupt {
            path: file.path.display().to_string(),
            format: kind,
            reason,
        },
    })
}

/// Any bytes as a torch file: tensors or a reason, never a panic. Public for the fuzz test.
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<TensorMeta>, Problem> {
    parse(bytes).1
}

fn parse(src: &(impl ReadAt + ?Sized)) -> (&'static str, Result<Vec<TensorMeta>, Problem>) {
    let mut head = [0u8; 4];
    let n = src.len().min(4) as usize;
    if src.read_exact_at(&mut head[..n], 0).is_err() {
        return ("pytorch", Err(Problem::Corrupt("unreadable".into())));
    }
    if legacy::sniff(&head[..n]) {
        let r = legacy::read(src);
        ("pytorch legacy", r.and_then(|c| metas(&c)))
    } else {
        let r = read_zip(src);
        ("pytorch zip", r.and_then(|c| metas(&c)))
    }
}

/// The zip container: `<prefix>/data.pkl`, `<prefix>/byteorder`, `<prefix>/data/<key>`.
fn read_zip(src: &(impl ReadAt + ?Sized)) -> Result<Container, Problem> {
    let entries = zip::entries(src)?;
    let mut pickles = entries.iter().filter(|e| {
        e.name == "data.pkl" || e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1
    });
    let pkl = pickles.next().ok_or(Malformed::from(
        "no `data.pkl` record: not a torch checkpoint",
    ))?;
    if pickles.next().is_some() {
        return Err(Malformed::from("two `data.pkl` records: ambiguous").into());
    }
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let by_name: HashMap<&str, &zip::Entry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(order) = by_name.get(format!("{prefix}byteorder").as_str()) {
        let text = zip::read_entry(src, order, 16)?;
        if text != b"little" {
            return Err(Problem::Corrupt(format!(
                "byteorder record says `{}`: only little-endian checkpoints are supported",
                String::from_utf8_lossy(&text)
            )));
        }
    }
    let bytes = zip::read_entry(src, pkl, MAX_PICKLE)?;
    let (pickled, _) = pickle::load(&bytes).map_err(|e| pickle_problem("data.pkl", e))?;
    let tensors = pickled
        .state_dict()
        .map_err(|e| pickle_problem("data.pkl", e))?;
    let mut storages = HashMap::new();
    for (_, t) in &tensors {
        let key = &t.storage.key;
        if storages.contains_key(key) {
            continue;
        }
        let name = format!("{prefix}data/{key}");
        let e = by_name
            .get(name.as_str())
            .ok_or_else(|| Problem::Corrupt(format!("storage record `{name}` is missing")))?;
        if e.method != 0 {
            return Err(Problem::Corrupt(format!(
                "storage record `{name}` is compressed (method {}): torch stores storages uncompressed",
                e.method
            )));
        }
        let offset = zip::data_offset(src, e)?;
        storages.insert(
            key.clone(),
            Storage {
                offset,
                bytes: e.compressed_size,
            },
        );
    }
    Ok(Container { tensors, storages })
}

/// The tensors as store entries: each view checked against its storage.
fn metas(c: &Container) -> Result<Vec<TensorMeta>, Problem> {
    c.tensors
        .iter()
        .map(|(name, t)| {
            meta(name, t, c).map_err(|r| Problem::Corrupt(format!("tensor `{name}`: {r}")))
        })
        .collect()
}

fn meta(name: &str, t: &TensorRef, c: &Container) -> Result<TensorMeta, Malformed> {
    let key = &t.storage.key;
    let storage = c
        .storages
        .get(key)
        .ok_or_else(|| Malformed(format!("storage `{key}` is missing")))?;
    let dtype = t.storage.dtype;
    let declared = dtype
        .byte_len(t.storage.numel)
        .ok_or(Malformed::from("storage size overflows"))?;
    if declared > storage.bytes {
        return Err(Malformed(format!(
            "storage `{key}` holds {} bytes but its pickle declares {declared}: truncated",
            storage.bytes
        )));
    }
    let numel = t
        .size
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .ok_or(Malformed::from("shape overflows"))?;
    // Elements from the view's first to past its last, in the storage.
    let span = if numel == 0 {
        0
    } else {
        t.size
            .iter()
            .zip(&t.stride)
            .try_fold(1u64, |a, (&d, &s)| {
                (d as u64 - 1).checked_mul(s as u64)?.checked_add(a)
            })
            .ok_or(Malformed::from("strides overflow"))?
    };
    let end = t
        .offset
        .checked_add(span)
        .ok_or(Malformed::from("offset overflows"))?;
    if end > t.storage.numel {
        return Err(Malformed(format!(
            "its view (offset {}, size {:?}, stride {:?}) needs {end} elements but storage `{key}` holds {}",
            t.offset, t.size, t.stride, t.storage.numel
        )));
    }
    if numel > span.max(1) {
        // Overlapping strides (an expanded tensor): more elements than bytes behind them.
        return Err(Malformed(format!(
            "a broadcast view (size {:?}, stride {:?}) is not a weight",
            t.size, t.stride
        )));
    }
    let offset = dtype
        .byte_len(t.offset)
        .and_then(|b| storage.offset.checked_add(b))
        .ok_or(Malformed::from("offset overflows"))?;
    Ok(TensorMeta {
        stored_name: name.to_string(),
        dtype,
        shape: t.size.clone(),
        layout: Layout::Strided {
            offset,
            strides: t.stride.clone(),
        },
        file: 0,
    })
}
