//! `igpt-onnx matrix`: the support matrix proved by running the golden suite. Its cells carry
//! the numbers verify measures for the same runtime, profile and precision (the NLL increase on
//! the trained case to the last bit), a runtime that does not run a profile is not applicable
//! with `can_run`'s reason, and bad names are one line with exit code 2.

use serde_json::Value;

use crate::common::cli_in_root;
use igpt_onnx::graph::{Precision, Profile};
use igpt_onnx::runtime::{can_run, RuntimeKind};

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn cell<'a>(m: &'a Value, runtime: &str, precision: &str) -> &'a Value {
    m["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["runtime"] == runtime && c["precision"] == precision)
        .unwrap_or_else(|| panic!("no cell {runtime} {precision}"))
}

#[test]
fn the_matrix_holds_verify_s_numbers_and_says_why_a_cell_is_not_applicable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("matrix.json");
    let junit = tmp.path().join("matrix.xml");
    let (code, stdout, stderr) = cli_in_root(
        &[
            "matrix",
            "--runtimes",
            "ort-cpu,tract",
            "--profiles",
            "portable",
            "--precisions",
            "fp32,int8-dynamic",
            "--json",
            json.to_str().expect("utf-8"),
            "--junit",
            junit.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let m = read_json(&json);
    assert_eq!(m["schema"], 1);
    assert_eq!(m["date"].as_str().expect("date").len(), 10);
    assert!(m["command"].as_str().expect("command").contains("matrix"));
    assert_eq!(m["cells"].as_array().expect("cells").len(), 4);
    for runtime in ["ort-cpu", "tract"] {
        for precision in ["float32", "int8-dynamic"] {
            let c = cell(&m, runtime, precision);
            assert_eq!(c["status"], "pass", "{c}");
            assert_eq!(c["profile"], "portable");
            assert_eq!(c["opset"], 17);
            let budget = Precision::parse(precision).expect("row").spec().budget;
            let max_abs = c["max_abs"].as_f64().expect("max_abs");
            assert!(max_abs > 0.0 && max_abs < budget.atol, "{c}");
            // The trained case's labelled set: accuracy for every precision.
            let acc = c["accuracy"].as_f64().expect("accuracy");
            assert!((0.8..=1.0).contains(&acc), "{c}");
        }
        let float = cell(&m, runtime, "float32")["max_abs"]
            .as_f64()
            .expect("f32");
        assert!(float < 1e-4, "{float}");
    }
    assert!(
        stdout.contains("| portable | int8-dynamic | 17 | ✓ "),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");

    // The same NLL increase verify reports for the trained case, runtime by runtime.
    let verify_json = tmp.path().join("verify.json");
    let (code, _, stderr) = cli_in_root(
        &[
            "verify",
            "--fixtures",
            "fixtures/trained",
            "--runtimes",
            "ort-cpu,tract",
            "--quantize",
            "int8-dynamic",
            "--json",
            verify_json.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let report = read_json(&verify_json);
    for runtime in ["ort-cpu", "tract"] {
        let nll = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["runtime"] == runtime && c["nll"].is_object())
            .unwrap_or_else(|| panic!("no NLL for {runtime}"))["nll"]["relative_increase"]
            .as_f64()
            .expect("nll");
        let ours = cell(&m, runtime, "int8-dynamic")["nll_increase"]
            .as_f64()
            .expect("matrix nll");
        assert!(
            (ours - nll).abs() <= 1e-9,
            "{runtime}: {ours} against {nll}"
        );
        assert!(ours > 0.0 && ours < 1e-3, "{ours}");
    }
}

#[test]
fn a_runtime_that_does_not_run_a_profile_is_not_applicable_with_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("matrix.json");
    let junit = tmp.path().join("matrix.xml");
    let (code, stdout, stderr) = cli_in_root(
        &[
            "matrix",
            "--runtimes",
            "tract",
            "--profiles",
            "ort",
            "--precisions",
            "float32",
            "--format",
            "markdown",
            "--json",
            json.to_str().expect("utf-8"),
            "--junit",
            junit.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let m = read_json(&json);
    let c = cell(&m, "tract", "float32");
    assert_eq!(c["status"], "not_applicable");
    let why = can_run(RuntimeKind::Tract, Profile::Ort, Precision::Float32)
        .expect_err("tract refuses ort")
        .to_string();
    assert_eq!(c["reason"], why.as_str());
    assert!(c["max_abs"].is_null());
    assert!(
        stdout.contains("| ort | float32 | 17 | — (1) |"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("1. {why}")), "{stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert_eq!(xml.matches("<testcase ").count(), 1);
    assert_eq!(xml.matches("<skipped ").count(), 1);
}

#[test]
fn unknown_names_are_one_line_and_exit_code_2() {
    for args in [
        ["matrix", "--runtimes", "nosuch"],
        ["matrix", "--precisions", "int3"],
    ] {
        let (code, stdout, stderr) = cli_in_root(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: unknown "), "{stderr}");
    }
}
