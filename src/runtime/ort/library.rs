//! Finding the ONNX Runtime shared library for `ort`'s load-dynamic mode (the library comes
//! from the `onnxruntime` PyPI wheel, `onnxruntime/capi/libonnxruntime.so.<version>`): an
//! explicit path, the project's virtual environment, the `python3` on `PATH`, the system.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runtime::model::RuntimeOptions;

/// How to get a library, appended to every "not found" message.
const INSTALL_HINT: &str = "Install it with ./ci/setup.sh, or `pip install onnxruntime==1.31.1` \
     and pass --ort-lib PATH (or set ORT_DYLIB_PATH) to its onnxruntime/capi/libonnxruntime.so.*";

/// Why no library could be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no ONNX Runtime library found; looked at: {}. {INSTALL_HINT}", .tried.join("; "))]
    NotFound { tried: Vec<String> },
    #[error("{given} names {path}, which is not a file. {INSTALL_HINT}")]
    NotAFile { given: &'static str, path: String },
    #[error("{given} {path}: {source}")]
    Absolute {
        given: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The code `python3` runs to say where its `onnxruntime` package lives.
const PYTHON_PROBE: &str = "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))";

/// Finds the ONNX Runtime shared library: `--ort-lib`, then `ORT_DYLIB_PATH`, then the project's
/// `.venv` (searched from the current directory upwards and at the crate's own folder), then the
/// `onnxruntime` package of the `python3` on `PATH`, then the system library. An explicit
/// `--ort-lib` or `ORT_DYLIB_PATH` that names no file is an error, never skipped over. When
/// nothing is found the message lists what each step looked at.
pub fn discover_library(opts: &RuntimeOptions) -> Result<PathBuf, LibraryError> {
    if let Some(p) = &opts.ort_lib {
        return explicit(p, "--ort-lib");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return explicit(Path::new(&p), "ORT_DYLIB_PATH");
    }
    let mut tried = vec![
        "--ort-lib: not given".to_string(),
        "ORT_DYLIB_PATH: not set".to_string(),
    ];

    let (found, venvs) = search_venvs();
    if let Some(p) = found {
        return Ok(p);
    }
    tried.push(venvs);

    let (found, python) = python_package();
    if let Some(p) = found {
        return Ok(p);
    }
    tried.push(format!("python3 on PATH: {python}"));

    let (found, system) = search_system();
    if let Some(p) = found {
        return Ok(p);
    }
    tried.push(system);

    Err(LibraryError::NotFound { tried })
}

fn explicit(path: &Path, given: &'static str) -> Result<PathBuf, LibraryError> {
    if path.is_file() {
        // ort resolves a relative path against the executable's folder, not ours.
        std::path::absolute(path).map_err(|source| LibraryError::Absolute {
            given,
            path: path.display().to_string(),
            source,
        })
    } else {
        Err(LibraryError::NotAFile {
            given,
            path: path.display().to_string(),
        })
    }
}

/// Step 3: `<dir>/.venv/lib/python3*/site-packages/onnxruntime/capi/`.
fn search_venvs() -> (Option<PathBuf>, String) {
    let mut roots: Vec<PathBuf> = std::env::current_dir()
        .map(|d| d.ancestors().map(Path::to_path_buf).collect())
        .unwrap_or_default();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !roots.contains(&manifest) {
        roots.push(manifest.clone());
    }
    let mut looked = Vec::new();
    for root in &roots {
        let venv = root.join(".venv");
        if !venv.is_dir() {
            continue;
        }
        for capi in venv_capi_dirs(&venv) {
            if let Some(lib) = library_in(&capi) {
                return (Some(lib), String::new());
            }
        }
        looked.push(venv.display().to_string());
    }
    let cwd = roots
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "?".into());
    let what = if looked.is_empty() {
        format!(
            "project .venv: none in {cwd} or its parents, nor in {}",
            manifest.display()
        )
    } else {
        format!(
            "project .venv: no onnxruntime/capi/libonnxruntime.so.* in {}",
            looked.join(", ")
        )
    };
    (None, what)
}

fn venv_capi_dirs(venv: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("python3") {
                dirs.push(e.path().join("site-packages/onnxruntime/capi"));
            }
        }
    }
    dirs.sort();
    // Windows virtual environments.
    dirs.push(venv.join("Lib/site-packages/onnxruntime/capi"));
    dirs
}

/// Step 4: the `onnxruntime` package of the `python3` on `PATH`; else what was seen there.
fn python_package() -> (Option<PathBuf>, String) {
    let out = match Command::new("python3").args(["-c", PYTHON_PROBE]).output() {
        Ok(out) => out,
        Err(e) => return (None, format!("cannot run it ({e})")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("failed").trim().to_string();
        return (None, format!("no onnxruntime package ({last})"));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    match library_in(&dir) {
        Some(lib) => (Some(lib), String::new()),
        None => (None, format!("no libonnxruntime in {}", dir.display())),
    }
}

/// Step 5: the system library, as the dynamic loader and the usual folders know it.
fn search_system() -> (Option<PathBuf>, String) {
    if let Some(p) = ldconfig_lookup() {
        return (Some(p), String::new());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/lib",
        "/usr/local/lib64",
        "/usr/lib",
        "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/opt/onnxruntime/lib",
        "/opt/homebrew/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in &dirs {
        if let Some(p) = library_in(d) {
            return (Some(p), String::new());
        }
    }
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    (
        None,
        format!(
            "system: not in the loader cache (ldconfig -p) nor in {}",
            list.join(", ")
        ),
    )
}

fn ldconfig_lookup() -> Option<PathBuf> {
    for exe in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
        let Ok(out) = Command::new(exe).arg("-p").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        // Lines read "\tlibonnxruntime.so.1 (libc6,x86-64) => /usr/lib/libonnxruntime.so.1".
        return text
            .lines()
            .filter(|l| l.trim_start().starts_with("libonnxruntime.so"))
            .filter_map(|l| l.split("=>").nth(1))
            .map(|p| PathBuf::from(p.trim()))
            .find(|p| p.is_file());
    }
    None
}

/// The ONNX Runtime library in `dir`: the unversioned name if present, else the highest
/// versioned one (the PyPI wheel ships only `libonnxruntime.so.1.31.1`).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let version = if let Some(rest) = name.strip_prefix("libonnxruntime.so") {
            rest
        } else if let Some(rest) = name
            .strip_prefix("libonnxruntime")
            .and_then(|r| r.strip_suffix(".dylib"))
        {
            rest
        } else if name == "onnxruntime.dll" {
            ""
        } else {
            continue;
        };
        if !(version.is_empty() || version.starts_with('.')) || !e.path().is_file() {
            continue;
        }
        // The unversioned name sorts above every versioned one.
        let key: Vec<u64> = if version.is_empty() {
            vec![u64::MAX]
        } else {
            version
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap_or(0))
                .collect()
        };
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, e.path()));
        }
    }
    best.and_then(|(_, p)| std::path::absolute(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_versioned_library_and_ignores_providers() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
            "libonnxruntime_providers_cuda.so",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let found = library_in(dir.path()).expect("found");
        assert!(
            found.ends_with("libonnxruntime.so.1.31.1"),
            "{}",
            found.display()
        );
        std::fs::write(dir.path().join("libonnxruntime.so"), b"").expect("write");
        let found = library_in(dir.path()).expect("found");
        assert!(found.ends_with("libonnxruntime.so"), "{}", found.display());
    }

    #[test]
    fn later_steps_say_what_they_looked_at() {
        if let (None, why) = python_package() {
            assert!(why.contains("onnxruntime") || why.contains("run"), "{why}");
        }
        if let (None, why) = search_system() {
            assert!(
                why.contains("ldconfig") && why.contains("/usr/lib"),
                "{why}"
            );
        }
    }
}
