//! Helpers shared by the integration tests: fixture paths, copies to break, graphs to export.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use igpt_onnx::export::{export, ExportOptions};
use igpt_onnx::graph::GraphOptions;
use igpt_onnx::{Checkpoint, Head};

/// `fixtures/<case>`.
pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(case)
}

/// Copies a folder tree (fixture cases are small).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy file");
        }
    }
}

/// Exports `head` of the checkpoint in `model_dir` into `out`, returning the graph's path.
pub fn export_head(model_dir: &Path, head: Head, out: &Path, hidden_states: bool) -> PathBuf {
    let ckpt = Checkpoint::open(model_dir, None, None).expect("checkpoint opens");
    let opts = ExportOptions {
        graph: GraphOptions { hidden_states },
        ..Default::default()
    };
    let done = export(&ckpt, &[head], out, &opts).expect("export");
    done[0].path.clone()
}

/// The `igpt-onnx` binary with `args`: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .output()
        .expect("run igpt-onnx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Under `CI` ONNX Runtime must be found: a skip there would hide a broken set-up.
pub fn require_ort_under_ci(report: &igpt_onnx::verify::report::Report) {
    if std::env::var_os("CI").is_some() {
        let ort = report.runtimes.iter().find(|r| r.runtime == "ort-cpu");
        assert!(
            ort.is_some_and(|r| r.available),
            "ONNX Runtime must be available under CI: {:?}",
            report.runtimes
        );
    }
}
