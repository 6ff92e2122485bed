//! OpenVINO (`--runtime(s) openvino`): the golden suite at f32 within 1e-4 beside ONNX Runtime
//! and tract; at OpenVINO's default precision the report names the precision the CPU used and
//! judges by its budget; a perturbed graph fails on openvino by name; a missing library is a
//! skip that says what was given; greedy generation equals the reference's tokens. Skipped
//! where OpenVINO is not installed, except under `CI`.

use crate::common;

use std::path::Path;

use common::{cli, copy_dir, export_head, fixture, open_runtime, perturbed_base_hidden};
use igpt_onnx::generate::{self, DecoderDims, Sampler, Strategy};
use igpt_onnx::runtime::{ComputePrecision, RuntimeKind, RuntimeOptions};
use igpt_onnx::verify::report::CheckStatus;
use igpt_onnx::verify::{self, VerifyOptions};
use igpt_onnx::Head;

/// Whether OpenVINO can be opened here (under `CI` it must).
pub fn openvino_available() -> bool {
    open_runtime(RuntimeKind::OpenVino, &RuntimeOptions::default()).is_some()
}

/// `verify ARGS --json`: (exit code, the report, stdout).
fn verify_json(dir: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let json = dir.join("report.json");
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.extend(["--json", json.to_str().expect("utf-8")]);
    let (code, stdout, stderr) = cli(&all);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (code, serde_json::from_str(&text).expect("json"), stdout)
}

fn openvino_checks(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["runtime"] == "openvino")
        .collect()
}

/// The largest max abs error of every output of `checks`.
fn max_abs(checks: &[&serde_json::Value]) -> f64 {
    checks
        .iter()
        .flat_map(|c| c["outputs"].as_array().expect("outputs"))
        .map(|o| o["metrics"]["max_abs"].as_f64().expect("max_abs"))
        .fold(0.0, f64::max)
}

#[test]
fn golden_suite_at_f32_matches_within_1e4_beside_ort_and_tract() {
    if !openvino_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, report, stdout) = verify_json(
        tmp.path(),
        &[
            "--runtimes",
            "ort-cpu,tract,openvino",
            "--openvino-precision",
            "f32",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(report["verdict"], "pass");
    let checks = openvino_checks(&report);
    // 26 graphs and 11 stepwise decoders, as on every runtime.
    assert_eq!(checks.len(), 37);
    for c in &checks {
        assert_eq!(c["status"], "pass", "{c}");
        let provider = c["provider"].as_str().expect("provider");
        assert!(
            provider.starts_with("CPU (OpenVINO 2026.4.1, inference precision f32)"),
            "{provider}"
        );
        assert!(c.get("compute_precision").is_none(), "{c}");
    }
    let err = max_abs(&checks);
    println!("openvino f32: max abs error {err:.3e}");
    assert!(err < 1e-4, "{err}");
}

#[test]
fn default_precision_is_reported_and_judged_by_its_budget() {
    if !openvino_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixtures = tmp.path().join("fixtures");
    for case in ["causal-lm", "base-hidden"] {
        copy_dir(&fixture(case), &fixtures.join(case));
    }
    let (code, report, stdout) = verify_json(
        tmp.path(),
        &[
            "--fixtures",
            fixtures.to_str().expect("utf-8"),
            "--runtimes",
            "openvino",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    let checks = openvino_checks(&report);
    assert_eq!(checks.len(), 4);
    for c in &checks {
        assert_eq!(c["status"], "pass", "{c}");
        // Whatever this CPU chose (bf16 with AVX-512 BF16 or AMX, else f32), the report says
        // what OpenVINO read back, and the budget follows it.
        let provider = c["provider"].as_str().expect("provider");
        let used = provider
            .split("inference precision ")
            .nth(1)
            .and_then(|p| p.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no precision in {provider}"));
        let atol = c["outputs"][0]["tolerance"]["atol"].as_f64().expect("atol");
        match used {
            "f32" => {
                assert!(c.get("compute_precision").is_none(), "{c}");
                assert_eq!(atol, 1e-4);
            }
            "bf16" => {
                assert_eq!(c["compute_precision"], "bf16", "{c}");
                assert_eq!(atol, 0.2);
            }
            other => panic!("unexpected default precision {other}"),
        }
    }
    println!(
        "openvino default ({}): max abs error {:.3e}",
        checks[0]["provider"],
        max_abs(&checks)
    );
}

#[test]
fn a_perturbed_weight_fails_on_openvino_by_name() {
    if !openvino_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = perturbed_base_hidden(tmp.path());
    let graph = export_head(&model, Head::Base, &tmp.path().join("out"), true);
    // At the default precision too: a bf16 budget still catches a changed weight.
    for precision in [Some(ComputePrecision::F32), None] {
        let opts = VerifyOptions {
            runtimes: vec![RuntimeKind::OpenVino],
            runtime: RuntimeOptions {
                openvino_precision: precision,
                ..Default::default()
            },
            ..Default::default()
        };
        let report =
            verify::model_against_case(&graph, &fixture("base-hidden"), &opts).expect("runs");
        assert_eq!(report.checks.len(), 1);
        let c = &report.checks[0];
        assert_eq!(c.runtime, "openvino");
        assert_eq!(c.status, CheckStatus::Fail, "{:?}", c.error);
        assert_eq!(
            c.first_divergent_layer.as_deref(),
            Some("hidden_states.2: block h.1")
        );
        assert!(
            report.to_text().contains("✗ base-hidden base on openvino:"),
            "{}",
            report.to_text()
        );
        assert_eq!(report.exit_code(), 1);
    }
}

#[test]
fn a_missing_library_is_a_skip_that_names_it_or_an_error_when_required() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixtures = tmp.path().join("fixtures");
    copy_dir(&fixture("short-seq"), &fixtures.join("short-seq"));
    let dir = fixtures.to_str().expect("utf-8");
    let args = [
        "--fixtures",
        dir,
        "--runtimes",
        "tract,openvino",
        "--openvino-lib",
        "/nonexistent",
    ];
    let (code, report, stdout) = verify_json(tmp.path(), &args);
    assert_eq!(code, 0, "{stdout}");
    let ov = report["runtimes"]
        .as_array()
        .expect("runtimes")
        .iter()
        .find(|r| r["runtime"] == "openvino")
        .expect("listed");
    assert_eq!(ov["available"], false);
    let detail = ov["detail"].as_str().expect("detail");
    assert!(
        detail.contains("--openvino-lib names /nonexistent") && detail.contains("setup.sh"),
        "{detail}"
    );
    assert!(
        stdout.contains(
            "runtime openvino: skipped (openvino unavailable: --openvino-lib names /nonexistent"
        ),
        "{stdout}"
    );
    let mut required = args.to_vec();
    required.extend(["--require", "openvino"]);
    let mut all = vec!["verify"];
    all.extend_from_slice(&required);
    let (code, _, stderr) = cli(&all);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("required runtime openvino unavailable: --openvino-lib names /nonexistent"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn greedy_generation_at_f32_equals_the_reference_tokens() {
    if !openvino_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = export_head(
        &fixture("greedy").join("model"),
        Head::Decoder,
        tmp.path(),
        false,
    );
    let text = std::fs::read_to_string(fixture("greedy").join("generations.json")).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let out = tmp.path().join("tokens.json");
    for run in json["generations"].as_array().expect("generations") {
        let prompt: Vec<Vec<i64>> = serde_json::from_value(run["prompt"].clone()).expect("prompt");
        let want: Vec<Vec<i64>> = serde_json::from_value(run["tokens"].clone()).expect("tokens");
        // One prompt repeated per row is what `generate --batch` makes.
        if prompt.iter().any(|p| *p != prompt[0]) {
            continue;
        }
        let ids: Vec<String> = prompt[0].iter().map(i64::to_string).collect();
        let ids = ids.join(",");
        let batch = prompt.len().to_string();
        let new = run["max_new_tokens"].as_u64().expect("count").to_string();
        let (code, stdout, stderr) = cli(&[
            "generate",
            "--model",
            path.to_str().expect("utf-8"),
            "--runtime",
            "openvino",
            "--openvino-precision",
            "f32",
            "--greedy",
            "--prompt-ids",
            &ids,
            "--batch",
            &batch,
            "--max-new-tokens",
            &new,
            "--tokens-out",
            out.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("on openvino"), "{stdout}");
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
        let got: Vec<Vec<i64>> = serde_json::from_value(got["tokens"].clone()).expect("tokens");
        assert_eq!(got, want, "{}", run["description"]);
    }
    // Every run, different prompts per row included, through the library's decoding loop.
    let opts = RuntimeOptions {
        openvino_precision: Some(ComputePrecision::F32),
        ..Default::default()
    };
    let rt = open_runtime(RuntimeKind::OpenVino, &opts).expect("opened above");
    let mut model = rt.load(&path).expect("loads");
    assert!(model.compute_precision().is_none(), "{}", model.provider());
    let dims = DecoderDims {
        vocab_size: 513,
        n_positions: 32,
    };
    for run in json["generations"].as_array().expect("generations") {
        let prompt: Vec<Vec<i64>> = serde_json::from_value(run["prompt"].clone()).expect("prompt");
        let want: Vec<Vec<i64>> = serde_json::from_value(run["tokens"].clone()).expect("tokens");
        let new = run["max_new_tokens"].as_u64().expect("count") as usize;
        let mut sampler = Sampler::new(Strategy::Greedy, 0);
        let out = generate::generate(
            model.as_mut(),
            &dims,
            &prompt,
            new,
            &mut sampler,
            &mut |_, _| {},
        )
        .expect("generates");
        assert_eq!(out.tokens, want, "{}", run["description"]);
    }
}
