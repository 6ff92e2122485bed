//! `igpt-onnx debug precision` on the trained fixture: int4 asked for half its own NLL
//! increase finds a keep-list whose printed `export` command writes a graph `verify` confirms
//! within that budget; a budget no list meets exits 1 with the best found; a budget met as it
//! is exits 0 with nothing kept; bad input is one line and exit 2 with nothing written.

use crate::common;

use std::path::{Path, PathBuf};

use common::cli;
use igpt_onnx::graph::ExportCard;
use serde_json::Value;

fn trained() -> PathBuf {
    common::fixture("trained")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("json")
}

/// Runs the CLI; `None` when ONNX Runtime is missing here (a skip, except under `CI`).
fn run(args: &[&str]) -> Option<(i32, String, String)> {
    let (code, stdout, stderr) = cli(args);
    if code == 2 && stderr.contains("ort-cpu unavailable") && std::env::var_os("CI").is_none() {
        eprintln!("skipping: {}", stderr.trim_end());
        return None;
    }
    Some((code, stdout, stderr))
}

/// `debug precision --fixture fixtures/trained FLAGS --json JSON`: (code, stdout, report).
fn search(flags: &[&str], json: &Path) -> Option<(i32, String, Value)> {
    let case = trained();
    let mut args = vec!["debug", "precision", "--fixture", s(&case)];
    args.extend_from_slice(flags);
    args.extend(["--json", s(json)]);
    let (code, stdout, stderr) = run(&args)?;
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    Some((code, stdout, read_json(json)))
}

/// `verify --model GRAPH --fixture fixtures/trained --runtimes ort-cpu --json JSON`: its check.
fn verify(graph: &Path, json: &Path) -> Option<Value> {
    let (code, stdout, stderr) = run(&[
        "verify",
        "--model",
        s(graph),
        "--fixture",
        s(&trained()),
        "--runtimes",
        "ort-cpu",
        "--require",
        "ort-cpu",
        "--json",
        s(json),
    ])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = read_json(json);
    Some(report["checks"][0].clone())
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Int4 costs the trained model about +0.2 % NLL (budget +1 %); asked for half of that, the
/// search keeps part of the model float32, and the export command it prints writes graphs that
/// `verify` measures within the asked budget — the same number the search measured.
#[test]
fn int4_at_half_its_nll_increase_prints_an_export_that_verify_confirms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain = tmp.path().join("plain");
    let weights = trained().join("digits").join("model");
    let (code, _, stderr) = cli(&[
        "export",
        "--weights",
        s(&weights),
        "--profile",
        "ort",
        "--quantize",
        "int4",
        "--head",
        "causal-lm",
        "--out",
        s(&plain),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let Some(check) = verify(&plain.join("causal-lm.onnx"), &tmp.path().join("int4.json")) else {
        return;
    };
    let int4 = number(&check["nll"]["relative_increase"]);
    assert!((1e-3..1e-2).contains(&int4), "int4 NLL increase {int4}");
    let budget = int4 / 2.0;

    let json = tmp.path().join("search.json");
    let Some((code, stdout, r)) = search(
        &[
            "--quantize",
            "int4",
            "--max-nll-increase",
            &budget.to_string(),
        ],
        &json,
    ) else {
        return;
    };
    println!("{stdout}");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(r["met"], true);
    assert_eq!(
        (r["precision"].as_str(), r["profile"].as_str()),
        (Some("int4"), Some("ort"))
    );
    // The search's own baseline is int4 as exported above: the same graph, the same number.
    let baseline = number(&r["baseline"]["nll"]["relative_increase"]);
    assert!((baseline - int4).abs() < 1e-9, "{baseline} vs {int4}");
    let found = number(&r["found"]["nll"]["relative_increase"]);
    assert!(found <= budget, "{found} > {budget}");
    let keep: Vec<&str> = r["keep_float32"]
        .as_array()
        .expect("keep-list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let matrices = r["found"]["matrices"].as_u64().expect("matrices");
    assert!(!keep.is_empty() && (1..16).contains(&matrices), "{keep:?}");
    let trace = r["trace"].as_array().expect("trace");
    assert_eq!(r["evaluations"].as_u64(), Some(trace.len() as u64));
    assert!(trace.len() >= 3, "baseline, everything, a block at least");
    assert!(trace.iter().any(|m| m["meets"] == true));
    assert!(
        r["found"]["accuracy"]["drop_points"]
            .as_f64()
            .expect("drop")
            <= 1.0
    );

    // The printed command, run as printed (but for --out), writes what verify confirms.
    let command = r["export_command"].as_str().expect("command");
    assert!(stdout.contains(command), "printed: {stdout}");
    let mut words: Vec<String> = command.split(' ').map(String::from).collect();
    assert_eq!(words[0], "igpt-onnx");
    let out = tmp.path().join("kept");
    let at = words.iter().position(|w| w == "--out").expect("--out");
    words[at + 1] = s(&out).to_string();
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let (code, _, stderr) = cli(&args);
    assert_eq!(code, 0, "{command}: {stderr}");
    let graph = out.join("causal-lm.onnx");
    let card = ExportCard::require(&graph).expect("card");
    assert_eq!(card.keep_float32.to_list(), keep.join(","));
    let check = verify(&graph, &tmp.path().join("kept.json")).expect("ORT ran above");
    let verified = number(&check["nll"]["relative_increase"]);
    assert!(verified <= budget, "verify: {verified} > {budget}");
    assert!((verified - found).abs() < 1e-9, "{verified} vs {found}");
    let classifier =
        verify(&out.join("classifier.onnx"), &tmp.path().join("cls.json")).expect("ORT ran above");
    let drop = number(&classifier["classification"]["drop_points"]);
    assert!(drop <= 1.0, "accuracy drop {drop}");
    println!(
        "int4 NLL +{:.4} %, budget +{:.4} %: kept {} ({matrices} matrices), NLL +{:.4} %, {} evaluations in {:.1} s",
        100.0 * int4,
        100.0 * budget,
        keep.join(","),
        100.0 * verified,
        trace.len(),
        number(&r["seconds"])
    );
}

/// No graph computes the goldens to 1e-9 (float32 itself differs by ~6e-6): every block kept
/// is measured second, misses, and the search stops there with exit 1 and one line.
#[test]
fn a_budget_no_keep_list_meets_exits_1_with_the_best_found() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("search.json");
    let flags = ["--profile", "ort", "--quantize", "int8", "--atol", "1e-9"];
    let Some((code, stdout, r)) = search(&flags, &json) else {
        return;
    };
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(r["met"], false);
    assert_eq!(r["evaluations"].as_u64(), Some(2));
    assert_eq!(
        r["keep_float32"],
        serde_json::json!(["h.0", "h.1", "h.2", "h.3"])
    );
    let best = number(&r["found"]["max_abs"]);
    let int8 = number(&r["baseline"]["max_abs"]);
    assert!(best > 1e-9 && best < 1e-4, "float32's error: {best}");
    assert!(int8 > 1e-3, "int8's error: {int8}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("not met: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("not met: no keep-list meets the budget; the best found, [h.0,h.1,h.2,h.3] (16 matrices float32), gives NLL "),
        "{line}"
    );
}

/// Int8 meets its own budget (NLL +0.1 %) as it is: one evaluation, nothing kept, exit 0.
#[test]
fn a_budget_met_as_it_is_keeps_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("search.json");
    let Some((code, stdout, r)) = search(&["--quantize", "int8"], &json) else {
        return;
    };
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(r["met"], true);
    assert_eq!(r["evaluations"].as_u64(), Some(1));
    assert_eq!(r["keep_float32"], serde_json::json!([]));
    assert_eq!(number(&r["target"]["max_nll_increase"]), 1e-3);
    let nll = number(&r["baseline"]["nll"]["relative_increase"]);
    assert!(nll.abs() < 1e-4, "int8 NLL increase {nll}");
    let command = r["export_command"].as_str().expect("command");
    assert!(!command.contains("--keep-float32"), "{command}");
    assert!(
        command.contains("--profile ort --quantize int8 --out out"),
        "{command}"
    );
    assert!(
        stdout.contains("met without a keep-list: int8 meets the budget as it is"),
        "{stdout}"
    );
}

/// Bad input: one `error:` line, exit 2, no JSON written.
#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("search.json");
    let random = common::fixture("causal-lm");
    let fixtures = common::fixture("");
    let cases: [(&[&str], String); 4] = [
        (
            &["--fixture", s(&random), "--quantize", "int4"],
            "error: case causal-lm has no labelled set (`labelled` in its manifest): debug precision judges a keep-list by the NLL and accuracy on one".into(),
        ),
        (
            &["--quantize", "int4", "--keep-float32", "h.0"],
            "error: --keep-float32 is what debug precision finds: leave it out".into(),
        ),
        (
            &["--quantize", "int4", "--max-nll-increase", "nan"],
            "error: `nan` is not a finite number".into(),
        ),
        (
            &["--fixture", s(&fixtures), "--quantize", "int4"],
            format!(
                "error: {} is not a case but holds {} of them: name one",
                fixtures.display(),
                igpt_onnx::verify::fixture::discover(&fixtures)
                    .expect("cases")
                    .len()
            ),
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["debug", "precision"];
        args.extend_from_slice(flags);
        args.extend(["--json", s(&json)]);
        let (code, stdout, stderr) = cli(&args);
        assert_eq!(code, 2, "{flags:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim_end(), want, "{flags:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!json.exists(), "{flags:?}: nothing written");
    }
}
