//! What ships to engines: an onnxruntime-genai model folder ([`genai`]), a Triton Inference
//! Server model repository ([`triton`]) and a static web site running in the browser ([`web`]). Both are written as whole folders, staged under a
//! temporary name beside their destination and renamed into place, so a failure leaves nothing
//! half-written and never touches an existing folder.

pub mod genai;
pub mod triton;
pub mod web;

use std::path::{Path, PathBuf};

use crate::base::files::{self, FileError, Temp};
use crate::export::ExportError;

/// A packaging failure; each names the file, tensor or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Card(#[from] crate::graph::GraphCardError),
    /// The image processor's config (its errors name the file).
    #[error(transparent)]
    Processor(#[from] crate::image::ImageError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to write {}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    /// A graph, file or field that cannot be packaged, and why.
    #[error("{}: {why}", path.display())]
    Invalid { path: PathBuf, why: String },
    /// As [`PackageError::Invalid`], the reason an error of its own, kept as the source (boxed:
    /// the packagers' own error types live in the modules below this one).
    #[error("{}: {source}", path.display())]
    InvalidBecause {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl PackageError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| PackageError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, why: impl Into<String>) -> Self {
        PackageError::Invalid {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }

    /// A closure that makes `path` invalid because of an error (for `map_err`).
    pub(crate) fn invalid_because<E>(path: &Path) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let path = path.to_path_buf();
        move |e| PackageError::InvalidBecause {
            path,
            source: Box::new(e),
        }
    }

    /// A closure that makes `path` invalid for not being JSON (for `map_err`).
    pub(crate) fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> Self {
        let path = path.to_path_buf();
        move |source| PackageError::Json { path, source }
    }
}

/// A folder being written under a temporary name in its destination's parent (same file
/// system, so the final rename is atomic). Dropped without [`StagedDir::commit`], it is removed.
#[derive(Debug)]
pub struct StagedDir {
    tmp: Temp,
    dest: PathBuf,
}

impl StagedDir {
    /// Stages `dest`, which must not exist or be an empty folder (rename replaces only an
    /// empty folder, and an existing package is never merged into).
    pub fn new(dest: &Path) -> Result<Self, PackageError> {
        refuse_existing(dest)?;
        if dest.file_name().is_none() {
            return Err(PackageError::Refused {
                path: dest.to_path_buf(),
                why: "it names no folder".into(),
            });
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(PackageError::io("create folder", &parent))?;
        let tmp = files::temp_dir_beside(dest)?;
        Ok(StagedDir {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to write the folder's contents meanwhile.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Puts the folder in place.
    pub fn commit(self) -> Result<PathBuf, PackageError> {
        // Checked again: something may have appeared while we wrote.
        refuse_existing(&self.dest)?;
        // On failure the staged folder stays a temporary and is removed when dropped.
        self.tmp.rename_to(&self.dest)?;
        Ok(self.dest)
    }
}

fn refuse_existing(dest: &Path) -> Result<(), PackageError> {
    let Ok(meta) = std::fs::symlink_metadata(dest) else {
        return Ok(());
    };
    let empty = meta.is_dir()
        && std::fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
    if empty {
        return Ok(());
    }
    Err(PackageError::Refused {
        path: dest.to_path_buf(),
        why: "it already exists (remove it first; packages are never merged)".into(),
    })
}

/// The folder a checkpoint's side files (`generation_config.json`, `preprocessor_config.json`)
/// lie in: the checkpoint folder, or the weights file's.
pub(crate) fn checkpoint_folder(ckpt: &crate::Checkpoint) -> PathBuf {
    if ckpt.source.is_dir() {
        return ckpt.source.clone();
    }
    ckpt.source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Hard-links `src` to `dest` (a multi-GB graph costs nothing), copying when the file system
/// cannot link.
pub(crate) fn link_or_copy(src: &Path, dest: &Path) -> Result<(), PackageError> {
    if std::fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dest)
        .map(|_| ())
        .map_err(PackageError::io("copy", src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_that_cannot_be_read_keeps_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let graph = dir.path().join("causal-lm.onnx");
        let err = crate::onnx::inspect::inspect(&graph)
            .map_err(PackageError::invalid_because(&graph))
            .expect_err("no such graph");
        let shown = graph.display();
        assert_eq!(
            err.to_string(),
            format!("{shown}: cannot read {shown}: No such file or directory (os error 2)")
        );
        crate::base::assert_causes_show_in_the_message(&err);
        let err = serde_json::from_str::<serde_json::Value>("[")
            .map_err(PackageError::json(&graph))
            .expect_err("not JSON");
        assert_eq!(
            err.to_string(),
            format!("{shown}: not JSON: EOF while parsing a list at line 1 column 1")
        );
        crate::base::assert_causes_show_in_the_message(&err);
    }

    #[test]
    fn staged_dir_appears_only_on_commit_and_never_over_a_package() {
        let root = tempfile::tempdir().expect("tempdir");
        let dest = root.path().join("pkg");
        let st = StagedDir::new(&dest).expect("stage");
        std::fs::write(st.path().join("a"), b"x").expect("write");
        assert!(!dest.exists());
        st.commit().expect("commit");
        assert_eq!(std::fs::read(dest.join("a")).expect("read"), b"x");
        let err = StagedDir::new(&dest).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to write {}: it already exists (remove it first; packages are never merged)",
                dest.display()
            )
        );
        // A dropped stage leaves nothing behind.
        let other = root.path().join("other");
        drop(StagedDir::new(&other).expect("stage"));
        let left: Vec<_> = std::fs::read_dir(root.path()).expect("ls").collect();
        assert_eq!(left.len(), 1);
    }
}
