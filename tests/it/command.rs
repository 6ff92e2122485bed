//! `cmd:PROGRAM` runtimes: the adapters in `ci/adapters/` (ONNX Runtime for Python, Node and the
//! web's WebAssembly build) pass the golden cases through `verify` and reproduce the reference's
//! greedy tokens through `generate`; a perturbed graph fails naming the runtime; an adapter that
//! misbehaves — exits, answers `error`, writes nothing, writes the wrong shape, never answers —
//! is one error naming it, never a hang; and igpt-onnx stopped by a signal stops the adapter
//! and what it started.
//!
//! The Python adapter needs the project's `.venv` (`ci/setup.sh`), the Node ones node and
//! `ci/adapters/node_modules` (`ci/setup.sh` with npm present): each test skips without them,
//! unless `CI` is set.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{copy_dir, export_head, fixture, write_safetensors};
use igpt_onnx::Head;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `igpt-onnx ARGS` run in the repository root (adapters are named relative to it):
/// (exit code, stdout, stderr).
fn igpt(args: &[&str]) -> (i32, String, String) {
    common::cli_in_root(args, &[])
}

/// Whether adapter `name` (`ort-python`, `ort-node`, `ort-web`) can run here; under `CI` it
/// must.
pub fn adapter_ready(name: &str) -> bool {
    let node = || {
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let (ready, what) = match name {
        "ort-python" => (
            root().join(".venv/bin/python").exists(),
            ".venv (run ci/setup.sh)",
        ),
        _ => (
            node()
                && root()
                    .join("ci/adapters/node_modules/onnxruntime-web")
                    .exists(),
            "node and ci/adapters/node_modules (run ci/setup.sh with node and npm present)",
        ),
    };
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} must run under CI: it needs {what}"
        );
        eprintln!("skipping cmd:ci/adapters/{name}: it needs {what}");
    }
    ready
}

/// The graphs the golden cases are checked with: (graph, case).
fn golden_graphs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let lm =
        |case: &str, head| export_head(&fixture(case).join("model"), head, &dir.join(case), false);
    vec![
        (lm("causal-lm", Head::CausalLm), "causal-lm"),
        // The decoder as a prompt and single steps against the full forward.
        (lm("causal-lm", Head::Decoder), "causal-lm"),
        // One step on the reference's past, then the stepwise check.
        (lm("kv-cache", Head::Decoder), "kv-cache"),
        (lm("classifier", Head::Classifier), "classifier"),
    ]
}

/// `verify --model GRAPH --fixture CASE --runtimes RUNTIME --json …`: (exit code, report, text).
fn verify(graph: &Path, case: &str, runtime: &str, extra: &[&str]) -> (i32, Value, String) {
    let json = graph.with_extension("report.json");
    let mut args = vec![
        "verify",
        "--model",
        graph.to_str().expect("utf-8"),
        "--fixture",
    ];
    let case_dir = fixture(case);
    args.push(case_dir.to_str().expect("utf-8"));
    args.extend([
        "--runtimes",
        runtime,
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = igpt(&args);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let _ = std::fs::remove_file(&json);
    (code, serde_json::from_str(&text).expect("json"), stdout)
}

/// Every golden graph passes through `cmd:ci/adapters/NAME`, within 1e-4 of the reference.
fn golden_cases_pass_through(name: &str) {
    if !adapter_ready(name) {
        return;
    }
    let runtime = format!("cmd:ci/adapters/{name}");
    let tmp = tempfile::tempdir().expect("tempdir");
    for (graph, case) in golden_graphs(tmp.path()) {
        let started = Instant::now();
        let (code, report, text) = verify(&graph, case, &runtime, &[]);
        assert_eq!(code, 0, "{case} {}: {text}", graph.display());
        assert_eq!(report["verdict"], "pass", "{text}");
        let checks = report["checks"].as_array().expect("checks");
        assert!(!checks.is_empty());
        let mut worst = 0f64;
        for c in checks {
            assert_eq!(c["runtime"], runtime.as_str());
            assert_eq!(c["status"], "pass", "{c}");
            for o in c["outputs"].as_array().expect("outputs") {
                let max_abs = o["metrics"]["max_abs"].as_f64().expect("max_abs");
                assert!(
                    max_abs < 1e-4,
                    "{case} {} {}: {max_abs}",
                    c["head"],
                    o["name"]
                );
                worst = worst.max(max_abs);
            }
        }
        let heads: Vec<&str> = checks.iter().filter_map(|c| c["head"].as_str()).collect();
        println!(
            "{runtime} {case} {heads:?}: max abs error {worst:.2e}, {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn golden_cases_pass_through_onnxruntime_python() {
    golden_cases_pass_through("ort-python");
}

#[test]
fn golden_cases_pass_through_onnxruntime_node() {
    golden_cases_pass_through("ort-node");
}

#[test]
fn golden_cases_pass_through_onnxruntime_web() {
    golden_cases_pass_through("ort-web");
}

#[test]
fn greedy_generation_through_onnxruntime_node_reproduces_the_reference() {
    if !adapter_ready("ort-node") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = export_head(
        &fixture("greedy").join("model"),
        Head::Decoder,
        tmp.path(),
        false,
    );
    let text = std::fs::read_to_string(fixture("greedy").join("generations.json")).expect("read");
    let json: Value = serde_json::from_str(&text).expect("json");
    let out = tmp.path().join("tokens.json");
    for g in json["generations"].as_array().expect("generations") {
        let prompt = &g["prompt"].as_array().expect("rows")[0];
        let batch = g["prompt"].as_array().expect("rows").len();
        let rows_equal = g["prompt"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r == prompt);
        if !rows_equal {
            continue; // `--prompt-ids` gives every row the same prompt
        }
        let ids: Vec<String> = prompt
            .as_array()
            .expect("row")
            .iter()
            .map(|t| t.to_string())
            .collect();
        let new = g["max_new_tokens"].to_string();
        let batch = batch.to_string();
        let started = Instant::now();
        let (code, stdout, stderr) = igpt(&[
            "generate",
            "--model",
            model.to_str().expect("utf-8"),
            "--runtime",
            "cmd:ci/adapters/ort-node",
            "--greedy",
            "--prompt-ids",
            &ids.join(","),
            "--batch",
            &batch,
            "--max-new-tokens",
            &new,
            "--tokens-out",
            out.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("on cmd:ci/adapters/ort-node"), "{stdout}");
        let got: Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("tokens")).expect("json");
        assert_eq!(got["tokens"], g["tokens"], "{}", g["description"]);
        println!(
            "{}: {new} tokens x {batch} in {:.2} s",
            g["description"],
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn a_perturbed_graph_fails_naming_the_runtime_in_every_adapter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // base-hidden (3 layers) with one weight of block h.1's MLP changed.
    let model = tmp.path().join("model");
    copy_dir(&fixture("base-hidden").join("model"), &model);
    let weights = model.join("model.safetensors");
    let mut tensors = common::read_safetensors(&weights);
    let (_, _, _, data) = tensors
        .iter_mut()
        .find(|(n, _, _, _)| n == "h.1.mlp.c_fc.weight")
        .expect("bare ImageGPTModel keys");
    let v = f32::from_le_bytes([data[0], data[1], data[2], data[3]]) + 1.0;
    data[..4].copy_from_slice(&v.to_le_bytes());
    write_safetensors(&weights, &tensors);
    let graph = export_head(&model, Head::Base, &tmp.path().join("out"), true);
    for adapter in ["ort-python", "ort-node", "ort-web"] {
        if !adapter_ready(adapter) {
            continue;
        }
        let runtime = format!("cmd:ci/adapters/{adapter}");
        let (code, report, text) = verify(&graph, "base-hidden", &runtime, &[]);
        assert_eq!(code, 1, "{text}");
        assert_eq!(report["verdict"], "fail");
        let check = &report["checks"][0];
        assert_eq!(check["runtime"], runtime.as_str());
        assert_eq!(check["status"], "fail");
        assert_eq!(check["first_divergent_layer"], "hidden_states.2: block h.1");
        assert!(
            text.contains(&runtime) && text.contains("first divergence"),
            "{text}"
        );
    }
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_failing_adapter_is_one_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = export_head(
        &fixture("causal-lm").join("model"),
        Head::CausalLm,
        &tmp.path().join("out"),
        false,
    );
    // Logits of the wrong shape: [1, 1, 512] whatever the batch.
    let wrong = tmp.path().join("wrong.safetensors");
    let logits = vec![0u8; 512 * 4];
    write_safetensors(
        &wrong,
        &[(
            "logits".into(),
            safetensors::Dtype::F32,
            vec![1, 1, 512],
            logits,
        )],
    );
    // Int64 logits of the right shape, and a file without logits.
    let ids = tmp.path().join("ids.safetensors");
    write_safetensors(
        &ids,
        &[(
            "logits".into(),
            safetensors::Dtype::I64,
            vec![2, 8, 512],
            vec![0u8; 2 * 8 * 512 * 8],
        )],
    );
    let other = tmp.path().join("other.safetensors");
    write_safetensors(
        &other,
        &[(
            "hidden".into(),
            safetensors::Dtype::F32,
            vec![1],
            vec![0u8; 4],
        )],
    );
    let ready = "echo 'ready test adapter'\n";
    let copies = |file: &Path| {
        format!(
            "{ready}while read cmd inputs outputs; do cp '{}' \"$outputs\"; echo ok; done\n",
            file.display()
        )
    };
    let wrong_body = copies(&wrong);
    let cases = [
        (
            script(tmp.path(), "exits", "echo 'no model for you' >&2\nexit 3\n"),
            "cannot load",
            "the adapter exited (exit status: 3) (stderr: no model for you)",
        ),
        (
            script(tmp.path(), "boom", &format!("{ready}while read l; do echo 'error boom'; done\n")),
            "run failed",
            "the adapter answered: boom",
        ),
        (
            script(tmp.path(), "silent", &format!("{ready}while read l; do echo ok; done\n")),
            "run failed",
            "the adapter answered `ok` but wrote no ",
        ),
        (
            script(tmp.path(), "wrong-shape", &wrong_body),
            "run failed",
            "output `logits` is float32 [1, 1, 512]; the graph declares logits float32 [batch, sequence, 512]",
        ),
        (
            script(tmp.path(), "mistyped", &copies(&ids)),
            "run failed",
            "output `logits` is int64 [2, 8, 512]; the graph declares logits float32 [batch, sequence, 512]",
        ),
        (
            script(tmp.path(), "no-logits", &copies(&other)),
            "run failed",
            "the adapter wrote no output `logits`",
        ),
        (
            script(tmp.path(), "sleeps", &format!("{ready}exec sleep 60\n")),
            "run failed",
            "no answer within 1 s (see --command-timeout); the adapter was stopped",
        ),
        (
            script(tmp.path(), "crashes", &format!("{ready}read l\necho 'Segmentation fault' >&2\nexit 139\n")),
            "run failed",
            "the adapter exited (exit status: 139) (stderr: Segmentation fault)",
        ),
    ];
    for (program, stage, want) in cases {
        let runtime = format!("cmd:{}", program.display());
        let started = Instant::now();
        let (code, report, text) =
            verify(&graph, "causal-lm", &runtime, &["--command-timeout", "1"]);
        assert!(started.elapsed().as_secs() < 20, "{runtime} took too long");
        assert_eq!(code, 1, "{text}");
        let error = report["checks"][0]["error"].as_str().expect("an error");
        assert!(
            error.starts_with(&format!("{runtime} {stage}")) && error.contains(want),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        assert_eq!(report["checks"][0]["status"], "error");
    }
    // The same through generate: one line on stderr, naming the runtime, and verify's exit
    // code for a graph that failed to run (1), a time-out included.
    let decoder = export_head(
        &fixture("causal-lm").join("model"),
        Head::Decoder,
        &tmp.path().join("out"),
        false,
    );
    for (name, want) in [
        ("boom", "run failed: the adapter answered: boom".to_string()),
        (
            "sleeps",
            "run failed: no answer within 1 s (see --command-timeout); the adapter was stopped"
                .to_string(),
        ),
    ] {
        let runtime = format!("cmd:{}", tmp.path().join(name).display());
        let (code, stdout, stderr) = igpt(&[
            "generate",
            "--model",
            decoder.to_str().expect("utf-8"),
            "--runtime",
            &runtime,
            "--greedy",
            "--max-new-tokens",
            "2",
            "--command-timeout",
            "1",
        ]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert_eq!(stderr.trim_end(), format!("error: {runtime} {want}"));
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie (an exited process that
/// nobody reaped yet, which in a container may be never).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z'))
    })
}

/// Sends `signal` (a name: TERM, INT, HUP, KILL) to `pid` through the shell's `kill`.
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -s {signal} {pid}")])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -s {signal} {pid}");
}

#[test]
fn a_signal_stops_an_adapter_that_never_answers_and_its_children() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = export_head(
        &fixture("causal-lm").join("model"),
        Head::CausalLm,
        &tmp.path().join("out"),
        false,
    );
    let graph = graph.to_str().expect("utf-8");
    for sig in ["TERM", "INT", "HUP"] {
        let pids = tmp.path().join(format!("{sig}.pids"));
        let waiting = tmp.path().join(format!("{sig}.waiting"));
        // Loads, then on `run` starts a child and waits on it forever, answering nothing.
        let adapter = script(
            tmp.path(),
            &format!("hangs-{sig}"),
            &format!(
                "echo $$ >> '{pids}'\necho 'ready hangs'\nread cmd inputs outputs\n\
                 sleep 600 &\necho $! >> '{pids}'\necho waiting > '{waiting}'\nwait\n",
                pids = pids.display(),
                waiting = waiting.display(),
            ),
        );
        let runtimes = format!("tract,cmd:{}", adapter.display());
        let mut igpt = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
            .args(["verify", "--model", graph, "--runtimes", &runtimes])
            .args(["--random-inputs", "1"])
            .current_dir(root())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start igpt-onnx");
        let started = Instant::now();
        while !waiting.exists() {
            if started.elapsed().as_secs() > 60 || igpt.try_wait().is_ok_and(|s| s.is_some()) {
                let _ = igpt.kill();
                let out = igpt.wait_with_output().expect("igpt-onnx output");
                panic!(
                    "the adapter never got `run`: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let reached = started.elapsed();
        let adapter_pids: Vec<u32> = std::fs::read_to_string(&pids)
            .expect("pids")
            .lines()
            .map(|l| l.trim().parse().expect("a pid"))
            .collect();
        assert_eq!(adapter_pids.len(), 2, "the adapter and its child");
        assert!(adapter_pids.iter().all(|&p| alive(p)));
        signal(igpt.id(), sig);
        let signalled = Instant::now();
        let code = loop {
            if let Some(status) = igpt.try_wait().expect("wait") {
                break status.code();
            }
            if signalled.elapsed().as_secs() > 10 {
                let _ = igpt.kill();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let exited = signalled.elapsed();
        let mut left: Vec<u32> = adapter_pids.clone();
        while !left.is_empty() && signalled.elapsed().as_secs_f64() < 3.0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            left.retain(|&p| alive(p));
        }
        let gone = signalled.elapsed();
        // Nothing of a failed run may outlive the test.
        for &p in &left {
            signal(p, "KILL");
        }
        let mut stderr = String::new();
        if let Some(mut e) = igpt.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(
            left.is_empty(),
            "SIG{sig}: adapter processes {left:?} (of {adapter_pids:?}) still alive 3 s later"
        );
        // The shell's code for an interrupted command, whatever the signal.
        assert_eq!(code, Some(130), "SIG{sig}: {stderr}");
        println!(
            "SIG{sig}: `run` reached in {:.2} s; igpt-onnx exited in {:.0} ms, adapter and child \
             gone in {:.0} ms",
            reached.as_secs_f64(),
            exited.as_secs_f64() * 1e3,
            gone.as_secs_f64() * 1e3
        );
    }
}

#[test]
fn runtime_names_take_a_command() {
    let (code, _, stderr) = igpt(&["verify", "--runtimes", "cmd:"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: unknown runtime `cmd:` (expected ort-cpu, ort-cuda, ort-tensorrt, tract, openvino, ort-python@VERSION or cmd:PROGRAM)\n"
    );
    let (code, _, stderr) = igpt(&["generate", "--model", "x.onnx", "--runtime", "nope"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: unknown runtime `nope` (expected ort-cpu, ort-cuda, ort-tensorrt, tract, openvino, ort-python@VERSION or cmd:PROGRAM)\n"
    );
    // A program that is not there: the runtime is unavailable, by name.
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = export_head(
        &fixture("causal-lm").join("model"),
        Head::CausalLm,
        tmp.path(),
        false,
    );
    let (code, _, stderr) = igpt(&[
        "verify",
        "--model",
        graph.to_str().expect("utf-8"),
        "--random-inputs",
        "1",
        "--runtimes",
        "cmd:no-such-adapter-on-path",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "cmd:no-such-adapter-on-path unavailable: cannot find `no-such-adapter-on-path`"
        ),
        "{stderr}"
    );
    let kind = igpt_onnx::runtime::RuntimeKind::parse("cmd:ci/adapters/ort-node").expect("parses");
    assert_eq!(kind.name(), "cmd:ci/adapters/ort-node");
    assert_eq!(
        igpt_onnx::runtime::RuntimeKind::parse("cmd:ci/adapters/ort-node"),
        Some(kind)
    );
}

#[test]
fn classify_through_onnxruntime_python_matches_tract() {
    if !adapter_ready("ort-python") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = fixture("classifier-images");
    let graph = export_head(&case.join("model"), Head::Classifier, tmp.path(), false);
    let logits = |runtime: &str| -> Vec<f64> {
        let json = tmp.path().join("probs.json");
        let (code, _, stderr) = igpt(&[
            "classify",
            "--model",
            graph.to_str().expect("utf-8"),
            "--processor",
            case.join("model").to_str().expect("utf-8"),
            case.join("wide.png").to_str().expect("utf-8"),
            case.join("palette.png").to_str().expect("utf-8"),
            "--runtime",
            runtime,
            "--json",
            json.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("json");
        v["images"]
            .as_array()
            .expect("images")
            .iter()
            .flat_map(|i| i["logits"].as_array().expect("logits").clone())
            .map(|x| x.as_f64().expect("a number"))
            .collect()
    };
    let (ours, theirs) = (logits("cmd:ci/adapters/ort-python"), logits("tract"));
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    assert!(worst < 1e-4, "{worst}");
}
