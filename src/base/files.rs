//! Every file igpt-onnx writes goes through here: it is created under an unpredictable name
//! beside its destination (`O_EXCL`, so a planted file or link is never followed), with the mode
//! a plain create gives (`0666` for files, `0777` for folders, minus the umask), and renamed into
//! place only when whole. Until then it is a [`Temp`]: removed when dropped (an error on the
//! way), and removed by [`remove_on_interrupt`]'s handler when the process is interrupted, so
//! nothing half-written is ever left behind.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

/// A file operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl FileError {
    /// A closure that wraps an `io::Error` for `path` (for `map_err`).
    pub fn at(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
        let path = path.display().to_string();
        move |source| FileError {
            action,
            path,
            source,
        }
    }
}

/// Temporaries alive in this process, for the interrupt handler.
static PENDING: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<(PathBuf, bool)>> {
    // A panic while holding the lock leaves the list intact: keep using it.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file or folder beside its destination. Dropped, it is removed; [`Temp::rename_to`]
/// puts it in place, [`Temp::keep`] leaves it where it is.
#[derive(Debug)]
pub struct Temp {
    path: PathBuf,
    dir: bool,
    armed: bool,
}

impl Temp {
    fn new(path: PathBuf, dir: bool) -> Temp {
        pending().push((path.clone(), dir));
        Temp {
            path,
            dir,
            armed: true,
        }
    }

    /// Where it is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames it to `dest` (same folder, so atomic); on failure it stays a temporary.
    pub fn rename_to(mut self, dest: &Path) -> Result<(), FileError> {
        std::fs::rename(&self.path, dest).map_err(FileError::at("write", dest))?;
        self.disarm();
        Ok(())
    }

    /// Leaves it in place under its temporary name (a reserved name, say) and returns the path.
    pub fn keep(mut self) -> PathBuf {
        self.disarm();
        std::mem::take(&mut self.path)
    }

    fn disarm(&mut self) {
        self.armed = false;
        pending().retain(|(p, _)| p != &self.path);
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            remove(&self.path, self.dir);
            self.disarm();
        }
    }
}

fn remove(path: &Path, dir: bool) {
    let _ = if dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

/// The folder a destination lives in (`.` for a bare name).
fn folder_of(dest: &Path) -> &Path {
    dest.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Runs `make` with a builder for an unpredictable name beside `dest` and the given mode.
fn beside<T>(
    dest: &Path,
    mode: u32,
    make: impl FnOnce(&tempfile::Builder<'_, '_>, &Path) -> io::Result<T>,
) -> io::Result<T> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix)
        .suffix(".tmp")
        // Handed to open(2)/mkdir(2), which apply the umask: a plain create's mode.
        .permissions(Permissions::from_mode(mode));
    make(&b, folder_of(dest))
}

/// A new, empty temporary file beside `dest`.
pub fn temp_file_beside(dest: &Path) -> Result<(File, Temp), FileError> {
    let (file, path) = beside(dest, 0o666, |b, dir| {
        let (file, path) = b.tempfile_in(dir)?.into_parts();
        Ok((file, path.keep().map_err(|e| e.error)?))
    })
    .map_err(FileError::at("write", dest))?;
    Ok((file, Temp::new(path, false)))
}

/// A new, empty temporary file in `folder` whose name ends in `suffix`, for a runtime that
/// tells formats by extension (a marked copy of a graph, beside its external data).
pub fn temp_file_in(folder: &Path, suffix: &str) -> Result<(File, Temp), FileError> {
    let mut b = tempfile::Builder::new();
    b.prefix(".igpt-onnx.")
        .suffix(suffix)
        .permissions(Permissions::from_mode(0o666));
    let (file, path) = b
        .tempfile_in(folder)
        .and_then(|t| {
            let (file, path) = t.into_parts();
            Ok((file, path.keep().map_err(|e| e.error)?))
        })
        .map_err(FileError::at("write", folder))?;
    Ok((file, Temp::new(path, false)))
}

/// A new, empty temporary folder beside `dest`.
pub fn temp_dir_beside(dest: &Path) -> Result<Temp, FileError> {
    let dir = beside(dest, 0o777, |b, dir| Ok(b.tempdir_in(dir)?.keep()))
        .map_err(FileError::at("create", dest))?;
    Ok(Temp::new(dir, true))
}

/// A file being written to its destination: whole or not at all.
#[derive(Debug)]
pub struct PendingFile {
    file: File,
    temp: Temp,
    dest: PathBuf,
}

impl PendingFile {
    /// Starts writing `dest`.
    pub fn create(dest: &Path) -> Result<PendingFile, FileError> {
        let (file, temp) = temp_file_beside(dest)?;
        Ok(PendingFile {
            file,
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open file and its temporary, for writers that manage both (buffering, staging).
    pub fn into_parts(self) -> (File, Temp) {
        (self.file, self.temp)
    }

    /// Flushes and puts the file in place, replacing what was there.
    pub fn commit(mut self) -> Result<(), FileError> {
        self.file
            .flush()
            .map_err(FileError::at("write", &self.dest))?;
        self.temp.rename_to(&self.dest)
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `bytes` to `dest` atomically. A destination that is already a device, pipe or socket
/// (`/dev/null`, `/dev/stdout`, a FIFO) is written in place, as a shell's `>` writes it: there is
/// no file to replace, and renaming over it would replace the device itself (as root,
/// `--json /dev/null` would otherwise leave a regular file where the null device was).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), FileError> {
    if is_special(dest) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dest)
            .map_err(FileError::at("write", dest))?;
        return f.write_all(bytes).map_err(FileError::at("write", dest));
    }
    let mut f = PendingFile::create(dest)?;
    f.write_all(bytes).map_err(FileError::at("write", dest))?;
    f.commit()
}

/// Whether `path` exists (links followed) as something other than a file or folder.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Installs (once) a handler for SIGINT, SIGTERM and SIGHUP that runs the actions registered
/// with [`super::interrupt::on_interrupt`] (stopping adapter processes), removes every temporary
/// still alive and exits with 130, the shell's code for an interrupted command. Without it an
/// interrupted export would leave its half-written `.tmp` files behind, and an adapter that
/// never answers would outlive the command.
pub fn remove_on_interrupt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A process that cannot install it (another handler owns the signal) keeps the
        // default behaviour; nothing else depends on it.
        let _ = ctrlc::set_handler(|| {
            // Processes first: one may still be writing into a temporary folder. The registry
            // stays locked until exit, so no process is reaped while its group is killed.
            let _held = super::interrupt::run_all_and_hold();
            for (path, dir) in pending().drain(..) {
                remove(&path, dir);
            }
            std::process::exit(130);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_temporaries_vanish_and_committed_files_appear_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out.json");
        let mut f = PendingFile::create(&dest).expect("create");
        f.write_all(b"half").expect("write");
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        write_atomic(&dest, b"{}").expect("write");
        assert_eq!(std::fs::read(&dest).expect("read"), b"{}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
        let t = temp_dir_beside(&dir.path().join("pkg")).expect("dir");
        let inner = t.path().join("a");
        std::fs::write(&inner, b"x").expect("write");
        drop(t);
        assert!(!inner.exists());
        assert!(pending().iter().all(|(p, _)| !p.starts_with(dir.path())));
    }

    #[test]
    fn a_pipe_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
        };
        write_atomic(&fifo, b"{\"ok\": 1}").expect("write");
        // Checked before joining: a reader still waiting on a replaced FIFO would wait forever.
        let kind = std::fs::symlink_metadata(&fifo).expect("stat").file_type();
        assert!(kind.is_fifo(), "the fifo was replaced: {kind:?}");
        assert_eq!(reader.join().expect("reader"), b"{\"ok\": 1}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
