//! `--ort-cache DIR`: ONNX Runtime's optimized model, saved once with its prepacked weights
//! (`session.save_external_prepacked_constant_initializers`) and loaded on later runs instead of
//! the graph, which skips graph optimisation and weight prepacking at session creation.
//!
//! An entry is `DIR/<key>/model.onnx` with its weights in `model.data` beside it; it is written
//! into a temporary folder beside its place and renamed there whole (base::files), so a reader
//! sees a complete entry or none. The key hashes the graph file's identity — canonical path, size,
//! modification time in nanoseconds, device and inode — and its first and last MiB (the same of
//! its weights file `<graph>.data` where there is one), with the
//! library's identity (path, size, modification time: its version), the CPU's model name and
//! feature flags (prepacked weights are laid out for them), the thread count and the
//! optimisation level. Hashing the whole graph (sha2: 0.23–0.29 s for the small size's 308 MB
//! here) would nearly double a hit's 0.3 s load. Any rewrite of the graph (igpt-onnx writes
//! through a temporary and a rename: a new inode) or a change of its size, time, head or tail
//! changes the key; an in-place edit of the middle that keeps the size and modification time is
//! the one change it would not see. Entries are never removed: delete the folder to reclaim it.
//!
//! A cache that cannot be read or written never fails a load: one warning on stderr, then the
//! graph is loaded as without it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bumped when an entry's layout or the session options it bakes in change.
const FORMAT: &str = "igpt-onnx ort cache 1";
/// How much of each end of the graph file goes into the key.
const EDGE: u64 = 1 << 20;
/// The optimized model's name in an entry, and its weights' (relative to it).
pub const MODEL: &str = "model.onnx";
pub const DATA: &str = "model.data";

fn identity(h: &mut Sha256, path: &Path) -> std::io::Result<File> {
    let canonical = std::fs::canonicalize(path)?;
    let file = File::open(&canonical)?;
    let m = file.metadata()?;
    h.update(canonical.as_os_str().as_encoded_bytes());
    h.update([0]);
    for n in [
        m.len(),
        m.dev(),
        m.ino(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    Ok(file)
}

/// The entry's name for `graph` loaded by `library` with `threads` intra-op threads at
/// optimisation level `level`.
pub fn key(graph: &Path, library: &Path, threads: usize, level: &str) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update([0]);
    file_edges(&mut h, graph)?;
    // Weights beside the graph (`<graph>.data`, where igpt-onnx writes them) are the bulk of it.
    let data = crate::onnx::writer::external_data_path(graph);
    if data.is_file() {
        file_edges(&mut h, &data)?;
    }
    identity(&mut h, library)?;
    // Prepacked weights and some fused kernels are laid out for this CPU's instruction set.
    h.update(cpu());
    h.update(threads.to_le_bytes());
    h.update(level);
    let digest = h.finalize();
    Ok(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// A file's identity and its first and last [`EDGE`] bytes.
fn file_edges(h: &mut Sha256, path: &Path) -> std::io::Result<()> {
    let mut file = identity(h, path)?;
    let len = file.metadata()?.len();
    let mut edge = Vec::with_capacity(EDGE as usize);
    (&mut file).take(EDGE).read_to_end(&mut edge)?;
    h.update(&edge);
    if len > EDGE {
        edge.clear();
        file.seek(SeekFrom::Start(len.saturating_sub(EDGE).max(EDGE)))?;
        file.take(EDGE).read_to_end(&mut edge)?;
        h.update(&edge);
    }
    Ok(())
}

/// The first processor's model name and feature flags (empty where /proc/cpuinfo is not).
fn cpu() -> Vec<u8> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = info.split("\n\n").next().unwrap_or_default();
    first
        .lines()
        .filter(|l| {
            ["model name", "flags", "Features", "CPU part"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .flat_map(|l| l.bytes().chain([b'\n']))
        .collect()
}

/// Where an entry for `key` lives in `dir`.
pub fn entry(dir: &Path, key: &str) -> PathBuf {
    dir.join(key)
}

/// The one line a cache problem prints before the load carries on without it.
pub fn warn(dir: &Path, what: impl std::fmt::Display) {
    eprintln!(
        "warning: ONNX Runtime cache {}: {what}; loading the graph without it",
        dir.display()
    );
}
