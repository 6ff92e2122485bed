//! `ort-python@VERSION`: any ONNX Runtime release as a runtime, older ones included — the
//! Python adapter (`ci/adapters/ort_python.py`, carried in the binary) run by the python of a
//! virtual environment that holds that `onnxruntime` release, speaking the `cmd:` file protocol
//! ([`super::command`]). It runs what that release runs; `igpt-onnx inspect` says which release
//! a graph needs ([`super::releases`]).
//!
//! The environment for VERSION is the folder `VERSION`, else the newest `VERSION.<patch>`,
//! inside `IGPT_ORT_VENVS` when set, else inside `.venv-ort` of the current directory or a
//! parent, else of the crate's own checkout. `ci/setup.sh` makes the pinned releases'
//! environments there. One missing, or holding another release, is one line saying how to make
//! it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::command::adapter_runtime;
use super::model::{Failure, LoadedModel, Runtime, RuntimeError, RuntimeKind, RuntimeOptions};
use super::releases::{needs, Version};

/// The adapter, run as `python -c ADAPTER serve MODEL`.
const ADAPTER: &str = include_str!("../../ci/adapters/ort_python.py");

/// The environment variable naming the folder of environments.
pub const VENVS_ENV: &str = "IGPT_ORT_VENVS";

/// The folder of environments in a checkout.
pub const VENVS_DIR: &str = ".venv-ort";

/// Why no environment holds the release asked for.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("no virtual environment {release} or {release}.* in {}; make one: python3 -m venv {dir}/{release}.0 && {dir}/{release}.0/bin/pip install onnxruntime=={release}.0 'numpy<2' (./ci/setup.sh makes the pinned releases'; {VENVS_ENV} names another folder of environments)", .looked.join(", "), dir = VENVS_DIR)]
    Missing {
        release: String,
        looked: Vec<String>,
    },
    #[error(
        "{venv} holds onnxruntime {found}, not {release}: remake it or name the release it holds"
    )]
    Other {
        venv: String,
        found: String,
        release: String,
    },
    #[error("{venv} has no bin/python or no onnxruntime package: remake it (python3 -m venv {venv} && {venv}/bin/pip install onnxruntime=={release} 'numpy<2')")]
    Broken { venv: String, release: String },
}

/// Opens `ort-python@release`: unavailable when no environment holds the release.
pub fn open(
    kind: RuntimeKind,
    release: &str,
    opts: &RuntimeOptions,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    let python = find_python(release).map_err(|e| RuntimeError::Unavailable {
        runtime: kind.name().to_string(),
        source: Failure::native("", e).into(),
    })?;
    let args = vec![OsString::from("-c"), OsString::from(ADAPTER)];
    Ok(Box::new(ReleaseRuntime {
        inner: adapter_runtime(kind, python, args, opts),
        release: Version::parse(release),
    }))
}

/// The adapter's runtime, whose load failures also say which release the graph needs when the
/// tables know it to be newer than this one.
struct ReleaseRuntime {
    inner: Box<dyn Runtime>,
    release: Option<Version>,
}

impl Runtime for ReleaseRuntime {
    fn kind(&self) -> RuntimeKind {
        self.inner.kind()
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        self.inner.load(model).map_err(|e| match e {
            RuntimeError::Load {
                runtime,
                path,
                source,
            } => {
                let note = self.release.and_then(|r| newer_need(model, r));
                let source = match note {
                    Some(note) => Box::new(Failure::native("", format!("{source}; {note}"))),
                    None => source,
                };
                RuntimeError::Load {
                    runtime,
                    path,
                    source,
                }
            }
            other => other,
        })
    }
}

/// `the graph needs ONNX Runtime X.Y (...)` when the graph at `model` needs a release newer than
/// `release`.
fn newer_need(model: &Path, release: Version) -> Option<String> {
    let info = crate::onnx::inspect::inspect(model).ok()?;
    let needs = needs(&info);
    let (oldest, need) = needs.oldest()?;
    (oldest > release).then(|| format!("the graph needs ONNX Runtime {oldest} ({})", need.what))
}

/// The folders that may hold environments, in search order.
fn venv_roots() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(VENVS_ENV).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir()
        .map(|d| d.ancestors().map(|a| a.join(VENVS_DIR)).collect())
        .unwrap_or_default();
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join(VENVS_DIR);
    if !roots.contains(&own) {
        roots.push(own);
    }
    roots
}

/// The python of the environment holding `release` (`1.20` or `1.20.1`).
fn find_python(release: &str) -> Result<PathBuf, VenvError> {
    let roots = venv_roots();
    let mut looked = Vec::new();
    for root in &roots {
        if let Some(venv) = venv_in(root, release) {
            return checked_python(&venv, release);
        }
        if root.is_dir() || roots.len() == 1 {
            looked.push(root.display().to_string());
        }
    }
    if looked.is_empty() {
        looked.push(format!(
            "a {VENVS_DIR} folder here, in a parent or in the checkout"
        ));
    }
    Err(VenvError::Missing {
        release: release.to_string(),
        looked,
    })
}

/// `root/release`, else the newest `root/release.<patch>`.
fn venv_in(root: &Path, release: &str) -> Option<PathBuf> {
    let exact = root.join(release);
    if exact.is_dir() {
        return Some(exact);
    }
    let prefix = format!("{release}.");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let patch: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            e.path().is_dir().then_some((patch, e.path()))
        })
        .max_by_key(|(patch, _)| *patch)
        .map(|(_, path)| path)
}

/// The environment's python, once its `onnxruntime` package is the release asked for (read
/// from the package's `*.dist-info` folder name, without starting Python).
fn checked_python(venv: &Path, release: &str) -> Result<PathBuf, VenvError> {
    let broken = || VenvError::Broken {
        venv: venv.display().to_string(),
        release: release.to_string(),
    };
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(broken());
    }
    let found = installed_onnxruntime(venv).ok_or_else(broken)?;
    let wanted = Version::parse(release);
    let same = match release.matches('.').count() {
        1 => wanted.is_some() && Version::parse(&found) == wanted,
        _ => found == release,
    };
    if !same {
        return Err(VenvError::Other {
            venv: venv.display().to_string(),
            found,
            release: release.to_string(),
        });
    }
    Ok(python)
}

/// The version of the `onnxruntime` package in `venv` (`lib/python3*/site-packages/
/// onnxruntime-<version>.dist-info`).
fn installed_onnxruntime(venv: &Path) -> Option<String> {
    for lib in ["lib", "lib64"] {
        let Ok(pythons) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for py in pythons.flatten() {
            let Ok(packages) = std::fs::read_dir(py.path().join("site-packages")) else {
                continue;
            };
            for p in packages.flatten() {
                let name = p.file_name().to_string_lossy().into_owned();
                let version = name
                    .strip_prefix("onnxruntime-")
                    .and_then(|n| n.strip_suffix(".dist-info"));
                if let Some(v) = version {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// The environments under the search folders, as `(release, folder)`, for `igpt-onnx support`.
pub fn installed() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for root in venv_roots() {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut here: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((installed_onnxruntime(&e.path())?, e.path())))
            .collect();
        here.sort();
        found.extend(here);
        if !found.is_empty() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_venv(root: &Path, dir: &str, version: &str) {
        let venv = root.join(dir);
        let site = venv.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join(format!("onnxruntime-{version}.dist-info")))
            .expect("site-packages");
        std::fs::create_dir_all(venv.join("bin")).expect("bin");
        std::fs::write(venv.join("bin/python"), "").expect("python");
    }

    #[test]
    fn a_release_finds_its_environment_or_says_how_to_make_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_venv(tmp.path(), "1.15.0", "1.15.0");
        fake_venv(tmp.path(), "1.20.1", "1.20.1");
        fake_venv(tmp.path(), "1.22.0", "1.21.1");
        assert_eq!(venv_in(tmp.path(), "1.15"), Some(tmp.path().join("1.15.0")));
        let python = checked_python(&tmp.path().join("1.20.1"), "1.20").expect("found");
        assert!(python.ends_with("1.20.1/bin/python"));
        let e = checked_python(&tmp.path().join("1.22.0"), "1.22").expect_err("other");
        assert!(
            e.to_string().contains("holds onnxruntime 1.21.1, not 1.22"),
            "{e}"
        );
        assert_eq!(venv_in(tmp.path(), "1.17"), None);
    }
}
