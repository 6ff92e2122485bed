//! Finding a runtime's shared library loaded at run time (ONNX Runtime's, OpenVINO's C API),
//! the same way for each: an explicit path (flag, then environment variable), the Python
//! environment the binary itself is installed in (`pip install igpt-onnx` puts it in the
//! environment's `bin/` beside the `onnxruntime` package it depends on), the project's virtual
//! environment, the Python package of the `python3` on `PATH`, then (where it makes sense) the
//! system. An explicit path that names no library is an error, never skipped over;
//! when nothing is found the message lists what each step looked at and how to install it.
//! A runtime describes its library once, as a [`NativeLibrary`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// A search step: the library if found, else what it looked at.
type Step = fn(&NativeLibrary) -> (Option<PathBuf>, String);

/// A library found, and by which step (for `igpt-onnx --version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// `--ort-lib`, `ORT_DYLIB_PATH`, `this binary's environment`, `project .venv`,
    /// `python3 on PATH` or `system`.
    pub via: &'static str,
}

/// The prefix of the Python environment this binary is installed in: `<prefix>/bin/igpt-onnx`
/// beside `<prefix>/pyvenv.cfg` or `<prefix>/lib/python3*` (`Scripts\` on Windows).
fn own_prefix() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?;
    if !bin
        .file_name()
        .is_some_and(|n| n == "bin" || n == "Scripts")
    {
        return None;
    }
    let prefix = bin.parent()?;
    let python_lib = |lib: &str| {
        std::fs::read_dir(prefix.join(lib)).is_ok_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("python3")))
        })
    };
    let environment = prefix.join("pyvenv.cfg").is_file()
        || python_lib("lib")
        || python_lib("lib64")
        || prefix.join("Lib").join("site-packages").is_dir();
    environment.then(|| prefix.to_path_buf())
}

/// How messages name the search step of the binary's own Python environment.
const OWN_ENVIRONMENT: &str = "this binary's environment";

/// One runtime's shared library and where its PyPI wheel keeps it.
#[derive(Debug, Clone, Copy)]
pub struct NativeLibrary {
    /// For messages (`ONNX Runtime`).
    pub what: &'static str,
    /// The command-line flag that names it (`--ort-lib`).
    pub flag: &'static str,
    /// The environment variable that names it (`ORT_DYLIB_PATH`).
    pub env: &'static str,
    /// The Python package holding it (`onnxruntime`) and the folder inside (`capi`).
    pub package: &'static str,
    pub subdir: &'static str,
    /// The library's name without prefix and suffix: `lib<stem>.so[.version]`,
    /// `lib<stem>[.version].dylib`, `<stem>.dll`.
    pub stem: &'static str,
    /// How to get it, appended to every "not found" message.
    pub hint: &'static str,
    /// Whether the system's loader cache and usual folders are searched last.
    pub system: bool,
}

/// Why no library could be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no {what} library found; looked at: {}. {hint}", .tried.join("; "))]
    NotFound {
        what: &'static str,
        tried: Vec<String>,
        hint: &'static str,
    },
    #[error("{given} names {path}, which is neither lib{stem} nor a folder holding it. {hint}")]
    NotALibrary {
        given: &'static str,
        path: String,
        stem: &'static str,
        hint: &'static str,
    },
    #[error("{given} {path}: {source}")]
    Absolute {
        given: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl NativeLibrary {
    /// Finds the library: `explicit` (the flag's value), the environment variable, the project's
    /// `.venv` (from the current directory upwards, and at the crate's own folder), the
    /// `python3` on `PATH`, the system.
    pub fn find(&self, explicit: Option<&Path>) -> Result<PathBuf, LibraryError> {
        self.locate(explicit).map(|f| f.path)
    }

    /// [`find`](Self::find), saying which step found it.
    pub fn locate(&self, explicit: Option<&Path>) -> Result<Found, LibraryError> {
        if let Some(p) = explicit {
            let path = self.explicit(p, self.flag)?;
            return Ok(Found {
                path,
                via: self.flag,
            });
        }
        if let Some(p) = std::env::var_os(self.env).filter(|v| !v.is_empty()) {
            let path = self.explicit(Path::new(&p), self.env)?;
            return Ok(Found {
                path,
                via: self.env,
            });
        }
        let mut tried = vec![
            format!("{}: not given", self.flag),
            format!("{}: not set", self.env),
        ];
        let steps: [(&str, Step); 4] = [
            (OWN_ENVIRONMENT, Self::search_own_environment),
            ("project .venv", Self::search_venvs),
            ("python3 on PATH", Self::python_package),
            ("system", Self::search_system),
        ];
        for (via, step) in steps.iter().take(if self.system { 4 } else { 3 }) {
            let (found, looked) = step(self);
            if let Some(path) = found {
                return Ok(Found { path, via });
            }
            tried.push(looked);
        }
        Err(LibraryError::NotFound {
            what: self.what,
            tried,
            hint: self.hint,
        })
    }

    /// A file, or a folder holding the library.
    fn explicit(&self, path: &Path, given: &'static str) -> Result<PathBuf, LibraryError> {
        let not_a_library = || LibraryError::NotALibrary {
            given,
            path: path.display().to_string(),
            stem: self.stem,
            hint: self.hint,
        };
        let file = if path.is_file() {
            path.to_path_buf()
        } else if path.is_dir() {
            self.library_in(path).ok_or_else(not_a_library)?
        } else {
            return Err(not_a_library());
        };
        // Loaders resolve a relative path against the executable's folder, not ours.
        std::path::absolute(&file).map_err(|source| LibraryError::Absolute {
            given,
            path: path.display().to_string(),
            source,
        })
    }

    /// The package in the Python environment this binary is installed in: a wheel puts the
    /// binary in `<prefix>/bin/` and its dependencies in `<prefix>/lib/python3*/site-packages/`
    /// (pipx alike, the link on `PATH` resolved to its environment).
    fn search_own_environment(&self) -> (Option<PathBuf>, String) {
        let Some(prefix) = own_prefix() else {
            let at =
                std::env::current_exe().map_or_else(|_| "?".into(), |e| e.display().to_string());
            return (
                None,
                format!("{OWN_ENVIRONMENT}: {at} is not in a Python environment's bin/"),
            );
        };
        match self.in_environment(&prefix) {
            Some(lib) => (Some(lib), String::new()),
            None => (
                None,
                format!(
                    "{OWN_ENVIRONMENT}: no {}/{}/lib{}* under {}",
                    self.package,
                    self.subdir,
                    self.stem,
                    prefix.display()
                ),
            ),
        }
    }

    /// The library in the package of the Python environment at `prefix`.
    fn in_environment(&self, prefix: &Path) -> Option<PathBuf> {
        let inside = format!("site-packages/{}/{}", self.package, self.subdir);
        let mut dirs: Vec<PathBuf> = ["lib", "lib64"]
            .iter()
            .filter_map(|lib| std::fs::read_dir(prefix.join(lib)).ok())
            .flat_map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                    .map(|e| e.path().join(&inside))
                    .collect::<Vec<_>>()
            })
            .collect();
        dirs.sort();
        // Windows environments.
        dirs.push(prefix.join("Lib").join(&inside));
        dirs.iter().find_map(|d| self.library_in(d))
    }

    /// `<root>/.venv/lib/python3*/site-packages/<package>/<subdir>/` for each root.
    fn search_venvs(&self) -> (Option<PathBuf>, String) {
        let mut roots: Vec<PathBuf> = std::env::current_dir()
            .map(|d| d.ancestors().map(Path::to_path_buf).collect())
            .unwrap_or_default();
        // A development build also looks in its own checkout; an installed binary does not
        // (the folder it was built in means nothing where it runs).
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        if !roots.contains(&manifest) && own_prefix().is_none() {
            roots.push(manifest.clone());
        }
        let mut looked = Vec::new();
        for root in &roots {
            let venv = root.join(".venv");
            if !venv.is_dir() {
                continue;
            }
            if let Some(lib) = self.in_environment(&venv) {
                return (Some(lib), String::new());
            }
            looked.push(venv.display().to_string());
        }
        let cwd = roots
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into());
        let what = if looked.is_empty() && roots.contains(&manifest) {
            format!(
                "project .venv: none in {cwd} or its parents, nor in {}",
                manifest.display()
            )
        } else if looked.is_empty() {
            format!("project .venv: none in {cwd} or its parents")
        } else {
            format!(
                "project .venv: no {}/{}/lib{}* in {}",
                self.package,
                self.subdir,
                self.stem,
                looked.join(", ")
            )
        };
        (None, what)
    }

    /// The package of the `python3` on `PATH`; else what was seen there.
    fn python_package(&self) -> (Option<PathBuf>, String) {
        let probe = format!(
            "import {0}, os; print(os.path.dirname({0}.__file__))",
            self.package
        );
        let out = match Command::new("python3").args(["-c", &probe]).output() {
            Ok(out) => out,
            Err(e) => return (None, format!("python3 on PATH: cannot run it ({e})")),
        };
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("failed").trim().to_string();
            return (
                None,
                format!("python3 on PATH: no {} package ({last})", self.package),
            );
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(self.subdir);
        match self.library_in(&dir) {
            Some(lib) => (Some(lib), String::new()),
            None => (
                None,
                format!("python3 on PATH: no lib{} in {}", self.stem, dir.display()),
            ),
        }
    }

    /// The system library, as the dynamic loader and the usual folders know it.
    fn search_system(&self) -> (Option<PathBuf>, String) {
        if let Some(p) = self.ldconfig_lookup() {
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
            "/opt/homebrew/lib",
        ] {
            dirs.push(PathBuf::from(d));
        }
        dirs.push(PathBuf::from(format!("/opt/{}/lib", self.stem)));
        for d in &dirs {
            if let Some(p) = self.library_in(d) {
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

    fn ldconfig_lookup(&self) -> Option<PathBuf> {
        let name = format!("lib{}.so", self.stem);
        for exe in ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"] {
            let Ok(out) = Command::new(exe).arg("-p").output() else {
                continue;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            // Lines read "\tlibonnxruntime.so.1 (libc6,x86-64) => /usr/lib/libonnxruntime.so.1".
            return text
                .lines()
                .filter(|l| l.trim_start().starts_with(&name))
                .filter_map(|l| l.split("=>").nth(1))
                .map(|p| PathBuf::from(p.trim()))
                .find(|p| p.is_file());
        }
        None
    }

    /// The library in `dir`: the unversioned name if present, else the highest versioned one
    /// (PyPI wheels ship only versioned names, e.g. `libonnxruntime.so.1.31.1`,
    /// `libopenvino_c.so.2641`).
    pub fn library_in(&self, dir: &Path) -> Option<PathBuf> {
        let entries = std::fs::read_dir(dir).ok()?;
        let (so, lib, dll) = (
            format!("lib{}.so", self.stem),
            format!("lib{}", self.stem),
            format!("{}.dll", self.stem),
        );
        let mut best: Option<(Vec<u64>, PathBuf)> = None;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = if let Some(rest) = name.strip_prefix(&so) {
                rest
            } else if let Some(rest) = name
                .strip_prefix(&lib)
                .and_then(|r| r.strip_suffix(".dylib"))
            {
                rest
            } else if name == dll {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: NativeLibrary = NativeLibrary {
        what: "Fake",
        flag: "--fake-lib",
        env: "IGPT_ONNX_TEST_FAKE_LIB",
        package: "igpt_onnx_no_such_package",
        subdir: "libs",
        stem: "igpt_onnx_fake",
        hint: "Install it.",
        system: true,
    };

    #[test]
    fn every_step_says_what_it_looked_at() {
        let e = FAKE.find(None).expect_err("nothing to find").to_string();
        for part in [
            "no Fake library found; looked at: --fake-lib: not given",
            "IGPT_ONNX_TEST_FAKE_LIB: not set",
            "this binary's environment:",
            "project .venv:",
            "python3 on PATH:",
            "system: not in the loader cache (ldconfig -p)",
            "Install it.",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let e = FAKE
            .find(Some(dir.path()))
            .expect_err("an empty folder")
            .to_string();
        assert_eq!(
            e,
            format!(
                "--fake-lib names {}, which is neither libigpt_onnx_fake nor a folder holding it. Install it.",
                dir.path().display()
            )
        );
        std::fs::write(dir.path().join("libigpt_onnx_fake.so.3"), b"").expect("write");
        let found = FAKE.find(Some(dir.path())).expect("a folder holding it");
        assert!(found.ends_with("libigpt_onnx_fake.so.3"));
    }

    /// The layout `pip install` makes: the binary in `<prefix>/bin/`, the package in
    /// `<prefix>/lib/python3.X/site-packages/`; the highest version wins.
    #[test]
    fn a_wheels_environment_is_searched_from_its_prefix() {
        let prefix = tempfile::tempdir().expect("tempdir");
        assert_eq!(FAKE.in_environment(prefix.path()), None);
        let libs = prefix
            .path()
            .join("lib/python3.12/site-packages/igpt_onnx_no_such_package/libs");
        std::fs::create_dir_all(&libs).expect("mkdir");
        for name in ["libigpt_onnx_fake.so.1.2", "libigpt_onnx_fake.so.1.10"] {
            std::fs::write(libs.join(name), b"").expect("write");
        }
        let found = FAKE.in_environment(prefix.path()).expect("found");
        assert!(
            found.ends_with("libigpt_onnx_fake.so.1.10"),
            "{}",
            found.display()
        );
        // The test binary lives in target/debug/deps/: not an environment's bin/.
        let (none, looked) = FAKE.search_own_environment();
        assert_eq!(none, None);
        assert!(
            looked.ends_with("is not in a Python environment's bin/"),
            "{looked}"
        );
    }
}
