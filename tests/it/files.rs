//! Files igpt-onnx writes: under umask 022 every file is `rw-r--r--` and every folder
//! `rwxr-xr-x`, as a plain create gives (a server running as another user can read what it was
//! handed); and an interrupted command leaves no temporary behind.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;

/// Runs the binary with `args` under `umask 022`; returns its exit code and stderr.
fn under_umask_022(args: &[&str]) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .output()
        .expect("run igpt-onnx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file and folder under `dir` (itself excluded), with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let meta = e.metadata().expect("metadata");
        let name = e.path().display().to_string();
        out.push((name, meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            out.extend(modes(&e.path()));
        }
    }
    out
}

#[test]
fn every_file_written_under_umask_022_is_readable_by_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let model = fixture("greedy").join("model").display().to_string();
    let case = fixture("causal-lm").display().to_string();
    let lm = fixture("causal-lm").join("model").display().to_string();
    let image = fixture("images/inputs/tiny.png").display().to_string();
    let runs: Vec<Vec<String>> = vec![
        vec!["export", "--weights", &model, "--out", &p("out")]
            .into_iter()
            .map(String::from)
            .collect(),
        [
            "export",
            "--weights",
            &lm,
            "--head",
            "causal-lm",
            "--out",
            &p("lm"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "generate",
            "--runtime",
            "tract",
            "--model",
            &p("out/decoder.onnx"),
            "--max-new-tokens",
            "2",
            "--greedy",
            "--tokens-out",
            &p("tokens.json"),
            "--json",
            &p("timings.json"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "encode",
            "--processor",
            &p("out"),
            &image,
            "--json",
            &p("ids.json"),
        ]
        .map(String::from)
        .to_vec(),
        [
            "verify",
            "--runtimes",
            "tract",
            "--model",
            &p("lm/causal-lm.onnx"),
            "--fixture",
            &case,
            "--json",
            &p("report.json"),
            "--junit",
            &p("report.xml"),
        ]
        .map(String::from)
        .to_vec(),
        ["package", "--triton", &p("repo"), "--from", &p("out")]
            .map(String::from)
            .to_vec(),
        [
            "random-checkpoint",
            "--variant",
            "tiny",
            "--out",
            &p("random"),
        ]
        .map(String::from)
        .to_vec(),
    ];
    for args in &runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = under_umask_022(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let all = modes(tmp.path());
    for want in [
        "out/decoder.onnx",
        "out/causal-lm.onnx",
        "out/preprocessor_config.json",
        "tokens.json",
        "timings.json",
        "ids.json",
        "report.json",
        "report.xml",
        "repo/imagegpt-decoder/config.pbtxt",
        "random/model.safetensors",
        "random/config.json",
    ] {
        assert!(
            all.iter().any(|(n, _, _)| n.ends_with(want)),
            "{want} was not written"
        );
    }
    let wrong: Vec<String> = all
        .iter()
        .filter(|(_, mode, dir)| *mode != if *dir { 0o755 } else { 0o644 })
        .map(|(n, mode, _)| format!("{n}: {mode:o}"))
        .collect();
    assert!(wrong.is_empty(), "not a plain create's mode: {wrong:#?}");
}

/// An export interrupted while it writes leaves nothing behind: the handler removes the
/// temporaries and the command exits with 130.
#[test]
fn an_interrupted_write_leaves_no_temporary_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("random");
    // `small` is 0.3 GB of float32 drawn while written: long enough to be caught mid-file.
    let mut child = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(["random-checkpoint", "--variant", "small", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    let temporary = || {
        std::fs::read_dir(&out).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
    };
    while !temporary() {
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !temporary() {
        // The write finished before it could be interrupted: nothing to test on this machine.
        let _ = child.wait();
        eprintln!("the checkpoint was written before the interrupt could be sent");
        return;
    }
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
