//! The support matrix (`igpt-onnx support`) is what the runtimes do. Every cell for ONNX
//! Runtime's CPU provider, tract and OpenVINO is checked against the reference's goldens: a ✓
//! passes within its precision's budget, a – is reported not applicable with the refusal line.
//! `generate` and `classify` refuse a – with the same line, and the README's table is the
//! binary's. OpenVINO's cells are checked where it is installed (always under `CI`).

use std::path::Path;

use serde_json::Value;

use crate::common::{self, cli, fixture};

fn support_json() -> Value {
    let (code, stdout, stderr) = cli(&["support", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("support json")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// The cell of `runtime`, `profile` and `precision`.
fn cell<'a>(m: &'a Value, runtime: &str, profile: &str, precision: &str) -> &'a Value {
    m["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["runtime"] == runtime && c["profile"] == profile && c["precision"] == precision)
        .unwrap_or_else(|| panic!("no cell {runtime} {profile} {precision}"))
}

#[test]
fn every_cell_of_cpu_runtimes_holds_against_the_goldens() {
    let m = support_json();
    let case = fixture("causal-lm");
    let tmp = tempfile::tempdir().expect("tempdir");
    let openvino = common::open_runtime(
        igpt_onnx::runtime::RuntimeKind::OpenVino,
        &igpt_onnx::runtime::RuntimeOptions::default(),
    )
    .is_some();
    let runtimes = match openvino {
        true => "ort-cpu,tract,openvino",
        false => "ort-cpu,tract",
    };
    let mut seen = 0;
    for p in m["precisions"].as_array().expect("precisions") {
        let precision = p["name"].as_str().expect("name");
        let flags: Vec<&str> = p["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .map(|f| f.as_str().expect("flag"))
            .collect();
        for profile in p["profiles"].as_array().expect("profiles") {
            let profile = profile.as_str().expect("profile");
            let out = tmp.path().join(format!("{profile}-{precision}"));
            let weights = case.join("model");
            let mut args = vec![
                "export",
                "--weights",
                s(&weights),
                "--out",
                s(&out),
                "--head",
                "causal-lm",
                "--profile",
                profile,
            ];
            args.extend(&flags);
            // Static int8 calibrates on the case's own inputs.
            let inputs = case.join("inputs.safetensors");
            if p["calibrated"] == true {
                args.extend(["--calibration", s(&inputs)]);
            }
            let (code, _, stderr) = cli(&args);
            assert_eq!(code, 0, "{args:?}: {stderr}");
            let json = out.join("report.json");
            let (code, stdout, stderr) = cli(&[
                "verify",
                "--model",
                s(&out.join("causal-lm.onnx")),
                "--fixture",
                s(&case),
                "--runtimes",
                runtimes,
                "--openvino-precision",
                "f32",
                "--json",
                s(&json),
            ]);
            assert_eq!(code, 0, "{profile} {precision}: {stdout}{stderr}");
            let report: Value =
                serde_json::from_str(&std::fs::read_to_string(&json).expect("report"))
                    .expect("json");
            let checks = report["checks"].as_array().expect("checks");
            assert_eq!(checks.len(), runtimes.split(',').count(), "{stdout}");
            for c in checks {
                let runtime = c["runtime"].as_str().expect("runtime");
                let want = cell(&m, runtime, profile, precision);
                match want["runs"].as_bool().expect("runs") {
                    true => assert_eq!(c["status"], "pass", "{runtime} {profile} {precision}"),
                    false => {
                        assert_eq!(c["status"], "not_applicable", "{runtime} {profile}");
                        assert_eq!(c["error"], want["why_not"]);
                    }
                }
                seen += 1;
            }
        }
    }
    // Both profiles' rows, each on two or three runtimes.
    assert!(seen >= 20, "{seen} cells checked");
}

#[test]
fn generate_and_classify_refuse_what_the_runtime_does_not_run_in_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let refusal = "tract does not run profile ort: it needs ONNX Runtime contrib ops and causal \
                   MultiHeadAttention; export with --profile portable, or run it on ort-cpu, \
                   ort-cuda, ort-tensorrt and openvino";
    let decoder_dir = tmp.path().join("decoder");
    let (code, _, stderr) = cli(&[
        "export",
        "--weights",
        s(&fixture("kv-cache").join("model")),
        "--out",
        s(&decoder_dir),
        "--head",
        "decoder",
        "--profile",
        "ort",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let decoder = decoder_dir.join("decoder.onnx");
    let (code, stdout, stderr) = cli(&[
        "generate",
        "--model",
        s(&decoder),
        "--runtime",
        "tract",
        "--greedy",
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(stderr, format!("error: {}: {refusal}\n", decoder.display()));

    let model = fixture("classifier-images").join("model");
    let out = tmp.path().join("classifier");
    let (code, _, stderr) = cli(&[
        "export",
        "--weights",
        s(&model),
        "--out",
        s(&out),
        "--head",
        "classifier",
        "--profile",
        "ort",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let graph = out.join("classifier.onnx");
    let (code, stdout, stderr) = cli(&[
        "classify",
        "--model",
        s(&graph),
        "--processor",
        s(&model),
        "--runtime",
        "tract",
        s(&fixture("classifier-images").join("grey16.png")),
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(stderr, format!("error: {}: {refusal}\n", graph.display()));
}

/// The README's support matrix is the binary's, between its markers.
#[test]
fn the_readme_matrix_is_the_binarys() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let (begin, end) = (
        "<!-- support-matrix:begin -->\n",
        "<!-- support-matrix:end -->",
    );
    let start = readme
        .find(begin)
        .expect("the README has a support-matrix block")
        + begin.len();
    let stop = readme[start..].find(end).expect("its end marker") + start;
    let (code, table, _) = cli(&["support", "--format", "markdown"]);
    assert_eq!(code, 0);
    assert_eq!(
        &readme[start..stop],
        table,
        "README.md's support matrix differs from `igpt-onnx support --format markdown`"
    );
}
