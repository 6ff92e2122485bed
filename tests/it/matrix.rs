//! Older runtimes and older opsets. A portable export at its lowest opset matches the goldens in
//! the oldest pinned ONNX Runtime release (`ort-python@VERSION`), in the project's ONNX Runtime
//! and in tract; every pinned release runs exactly the graphs `inspect` says it runs (and fails
//! the others, by refusing them or by wrong numbers); every profile and precision reaches down
//! to its floor row and `--opset` below it is one refusal line with nothing written.
//!
//! The releases are `ci/ort-releases.txt`'s, in `.venv-ort/` (`ci/setup.sh`): a test whose
//! release is missing skips with a message, unless `CI` is set.

use std::path::Path;

use serde_json::Value;

use crate::common::{cli_in_root, fixture};
use igpt_onnx::export::{export, ExportError, ExportOptions, OpsetError};
use igpt_onnx::graph::profile::{opset_floor, OPSET_FLOORS};
use igpt_onnx::graph::{Head, PRECISIONS};
use igpt_onnx::onnx::opset::{DEFAULT_OPSET, NEWEST_OPSET};
use igpt_onnx::runtime::releases::Version;
use igpt_onnx::Checkpoint;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// `igpt-onnx ARGS` in the repository root: (exit code, stdout, stderr).
fn igpt(args: &[&str]) -> (i32, String, String) {
    cli_in_root(args, &[])
}

/// The pinned releases (`ci/ort-releases.txt`), oldest first, as `ort-python@` names them.
fn pinned() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ci/ort-releases.txt")).expect("pins");
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().expect("release").to_string())
        .collect();
    v.sort_by_key(|r| version(r));
    v
}

fn version(release: &str) -> Version {
    Version::parse(release).expect("a release")
}

/// Whether the pinned `release` has its environment here; under `CI` it must.
fn ready(release: &str) -> bool {
    let venv = root().join(".venv-ort").join(release);
    let ready = venv.join("bin/python").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "ort-python@{release} must run under CI: it needs {} (run ci/setup.sh)",
            venv.display()
        );
        eprintln!(
            "skipping ort-python@{release}: no {} (run ci/setup.sh)",
            venv.display()
        );
    }
    ready
}

/// Exports `head` (or every head) of fixture `case` with `flags` into `out`.
fn export_cli(case: &str, out: &Path, flags: &[&str]) {
    let weights = fixture(case).join("model");
    let mut args = vec!["export", "--weights", s(&weights), "--out", s(out)];
    args.extend_from_slice(flags);
    let (code, _, err) = igpt(&args);
    assert_eq!(code, 0, "export {flags:?}: {err}");
}

/// `verify --model MODEL --fixture fixtures/CASE --runtimes RUNTIMES`: exit code and report.
fn verify(model: &Path, case: &str, runtimes: &str) -> (i32, Value) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("report.json");
    let case = fixture(case);
    let (code, out, err) = igpt(&[
        "verify",
        "--model",
        s(model),
        "--fixture",
        s(&case),
        "--runtimes",
        runtimes,
        "--json",
        s(&json),
    ]);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no report: {out}{err}"));
    (code, serde_json::from_str(&text).expect("report"))
}

/// The checks of `runtime` in a report.
fn checks<'a>(report: &'a Value, runtime: &str) -> Vec<&'a Value> {
    let all = report["checks"].as_array().expect("checks");
    all.iter().filter(|c| c["runtime"] == runtime).collect()
}

/// The largest max-abs of `runtime`'s outputs over its checks.
fn max_abs(report: &Value, runtime: &str) -> f64 {
    let mut worst = 0f64;
    for c in checks(report, runtime) {
        for o in c["outputs"].as_array().expect("outputs") {
            worst = worst.max(o["metrics"]["max_abs"].as_f64().expect("max_abs"));
        }
    }
    worst
}

/// `inspect`'s summary and its `oldest ONNX Runtime: X.Y (...)` line.
fn inspect(model: &Path) -> (String, Version, String) {
    let (code, out, err) = igpt(&["inspect", s(model)]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("oldest ONNX Runtime: "))
        .unwrap_or_else(|| panic!("no oldest release in:\n{out}"))
        .to_string();
    let release = line.split_whitespace().next().expect("release");
    (out.clone(), version(release), line)
}

#[test]
fn a_portable_export_at_its_lowest_opset_matches_the_goldens_in_the_oldest_release() {
    let oldest = &pinned()[0];
    let tmp = tempfile::tempdir().expect("tempdir");
    let floor = opset_floor(
        igpt_onnx::graph::Profile::Portable,
        igpt_onnx::graph::Precision::Float32,
    )
    .expect("a floor")
    .opset();
    assert_eq!(floor, 10);
    export_cli("causal-lm", tmp.path(), &["--opset", &floor.to_string()]);
    let graph = tmp.path().join("causal-lm.onnx");
    let (summary, needs, _) = inspect(&graph);
    assert!(
        summary.starts_with("ir_version: 5\nopsets: ai.onnx:10\n"),
        "{summary}"
    );
    assert!(needs <= version(oldest), "{summary}");
    let mut runtimes = vec!["ort-cpu".to_string(), "tract".to_string()];
    if ready(oldest) {
        runtimes.insert(0, format!("ort-python@{oldest}"));
    }
    let (code, report) = verify(&graph, "causal-lm", &runtimes.join(","));
    assert_eq!(code, 0, "{report:#}");
    for r in &runtimes {
        let c = checks(&report, r);
        assert_eq!(c.len(), 1, "{r}");
        assert_eq!(c[0]["status"], "pass", "{r}");
        // Measured: 1.97e-6 (1.15.0), 2.38e-6 (1.31.1), 1.91e-6 (tract); float32 against
        // the reference lands near 1e-6.
        let m = max_abs(&report, r);
        assert!(m > 0.0 && m < 1e-5, "{r}: logits max abs {m:e}");
    }
    if ready(oldest) {
        let provider = checks(&report, &runtimes[0])[0]["provider"]
            .as_str()
            .expect("provider")
            .to_string();
        assert!(
            provider.starts_with(&format!("onnxruntime {oldest} (python)")),
            "{provider}"
        );
    }
}

#[test]
fn an_ort_export_the_oldest_release_cannot_load_is_refused_as_inspect_predicted() {
    let oldest = pinned()[0].clone();
    if !ready(&oldest) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    export_cli(
        "causal-lm",
        tmp.path(),
        &["--profile", "ort", "--head", "causal-lm"],
    );
    let graph = tmp.path().join("causal-lm.onnx");
    let (_, needs, line) = inspect(&graph);
    assert!(needs > version(&oldest), "{line}");
    assert_eq!(
        line,
        "1.21 (com.microsoft:MultiHeadAttention with attention_bias: 1.16-1.19 refuse a bias \
         broadcast over heads at run time, 1.20 computes wrong values for a batch above 1)"
    );
    let runtime = format!("ort-python@{oldest}");
    let (code, report) = verify(&graph, "causal-lm", &runtime);
    assert_eq!(code, 1, "{report:#}");
    let c = checks(&report, &runtime);
    assert_eq!(c[0]["status"], "error");
    let error = c[0]["error"].as_str().expect("error line");
    assert_eq!(
        error,
        format!(
            "{runtime} cannot load {}: the adapter answered: [ONNXRuntimeError] : 9 : \
             NOT_IMPLEMENTED : Could not find an implementation for \
             SkipSimplifiedLayerNormalization(1) node with name 'h.0.ln_2'; the graph needs ONNX \
             Runtime 1.21 (com.microsoft:MultiHeadAttention with attention_bias)",
            graph.display()
        )
    );
}

/// A graph to run in every pinned release, and the golden case it is judged against.
struct Subject {
    what: &'static str,
    case: &'static str,
    flags: &'static [&'static str],
    head: &'static str,
}

#[test]
fn every_pinned_release_runs_exactly_the_graphs_inspect_says_it_runs() {
    let subjects = [
        Subject {
            what: "portable float32, opset 10",
            case: "padded-batch",
            flags: &["--opset", "10"],
            head: "causal-lm",
        },
        Subject {
            what: "portable float32",
            case: "padded-batch",
            flags: &[],
            head: "causal-lm",
        },
        Subject {
            what: "portable float16 decoder",
            case: "kv-cache",
            flags: &["--dtype", "fp16"],
            head: "decoder",
        },
        Subject {
            what: "ort float32",
            case: "padded-batch",
            flags: &["--profile", "ort"],
            head: "causal-lm",
        },
        Subject {
            what: "ort int4",
            case: "padded-batch",
            flags: &["--profile", "ort", "--quantize", "int4"],
            head: "causal-lm",
        },
        Subject {
            what: "ort int8",
            case: "padded-batch",
            flags: &["--profile", "ort", "--quantize", "int8"],
            head: "causal-lm",
        },
        Subject {
            what: "ort float32 decoder",
            case: "kv-cache",
            flags: &["--profile", "ort"],
            head: "decoder",
        },
    ];
    let releases: Vec<String> = pinned().into_iter().filter(|r| ready(r)).collect();
    if releases.is_empty() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let out = tmp.path().join(i.to_string());
        let mut flags = subject.flags.to_vec();
        flags.extend(["--head", subject.head]);
        export_cli(subject.case, &out, &flags);
        let graph = out.join(format!("{}.onnx", subject.head));
        let (_, needs, _) = inspect(&graph);
        let runtimes: Vec<String> = releases.iter().map(|r| format!("ort-python@{r}")).collect();
        let (_, report) = verify(&graph, subject.case, &runtimes.join(","));
        for (release, runtime) in releases.iter().zip(&runtimes) {
            let c = checks(&report, runtime);
            assert!(!c.is_empty(), "{}: no check on {runtime}", subject.what);
            let passed = c.iter().all(|c| c["status"] == "pass");
            let runs = needs <= version(release);
            assert_eq!(
                passed, runs,
                "{} on {runtime}: inspect says it needs {needs}, and verify says {:#}",
                subject.what, c[0]
            );
            outcomes.push((subject.what, release.clone(), c[0]["status"].clone()));
        }
    }
    // The release before MultiHeadAttention takes a bias broadcast over heads right loads and
    // runs the ort profile's forward graphs, and gets them wrong: only the numbers tell.
    if let Some(o) = outcomes
        .iter()
        .find(|(what, release, _)| *what == "ort float32" && release.starts_with("1.20"))
    {
        assert_eq!(o.2, "fail", "{o:?}");
    }
}

#[test]
fn an_opset_below_the_floor_is_one_refusal_line_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let weights = fixture("causal-lm").join("model");
    let refused = [
        (
            vec!["--opset", "9"],
            "error: --opset 9: Slice needs opset 10, the lowest portable graphs in float32 reach\n",
        ),
        (
            vec!["--quantize", "int8-dynamic", "--opset", "10"],
            "error: --opset 10: DynamicQuantizeLinear needs opset 11, the lowest portable graphs in int8-dynamic reach\n",
        ),
        (
            vec!["--opset", "22"],
            "error: --opset 22: igpt-onnx emits opsets up to 21\n",
        ),
    ];
    for (flags, line) in &refused {
        let mut args = vec!["export", "--weights", s(&weights), "--out", s(&out)];
        args.extend(flags);
        let (code, stdout, stderr) = igpt(&args);
        assert_eq!((code, stderr.as_str()), (2, *line), "{flags:?}: {stdout}");
        assert!(!out.exists(), "{flags:?} wrote {}", out.display());
    }
    let pkg = tmp.path().join("genai");
    let (code, _, stderr) = igpt(&[
        "package",
        "--genai",
        s(&pkg),
        "--weights",
        s(&weights),
        "--opset",
        "9",
    ]);
    assert_eq!((code, stderr.as_str()), (2, refused[0].1));
    assert!(!pkg.exists());
    // The library refuses the same, before writing anything.
    let ckpt = Checkpoint::open(&weights, None, None).expect("opens");
    let opts = ExportOptions {
        opset: Some(9),
        ..Default::default()
    };
    let e = export(&ckpt, &[Head::CausalLm], &out, &opts).expect_err("below the floor");
    assert!(matches!(
        e,
        ExportError::Opset(OpsetError::Below {
            op: "Slice",
            needs: 10,
            ..
        })
    ));
    assert!(!out.exists());
}

#[test]
fn every_profile_and_precision_reaches_down_to_its_floor_row() {
    let ckpt = Checkpoint::open(&fixture("causal-lm").join("model"), None, None).expect("opens");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut rows = 0;
    for p in PRECISIONS {
        for &profile in p.profiles {
            let precision = p.precision();
            let floor = opset_floor(profile, precision).expect("a row");
            rows += 1;
            // Static int8 calibrates on the case's own inputs.
            let calibration = p.matmul.calibrated().then(|| {
                let inputs = fixture("causal-lm").join("inputs.safetensors");
                let set = igpt_onnx::calibrate::read_set(&inputs, &ckpt).expect("a set");
                let method = Default::default();
                let c = igpt_onnx::calibrate::calibrate(
                    &ckpt,
                    profile,
                    &set,
                    method,
                    &Default::default(),
                );
                std::sync::Arc::new(c.expect("calibrates"))
            });
            let at = |opset: i64| ExportOptions {
                profile,
                precision,
                opset: Some(opset),
                calibration: calibration.clone(),
                ..Default::default()
            };
            let out = tmp.path().join(format!("{}-{}", profile.name(), p.name));
            let heads = Head::available(&ckpt);
            let done = export(&ckpt, &heads, &out, &at(floor.opset())).expect("exports");
            // The row is what the emitters need: some head needs exactly its op's opset.
            let mut needs = Vec::new();
            for e in &done {
                let built = igpt_onnx::graph::build_in(
                    &ckpt,
                    e.head,
                    (profile, precision, floor.opset()),
                    &Default::default(),
                    Default::default(),
                    Default::default(),
                    calibration.as_deref(),
                )
                .expect("builds");
                needs.push(built.needs.expect("nodes").since());
            }
            assert_eq!(
                needs.iter().max(),
                Some(&floor.opset()),
                "{profile:?} {}",
                p.name
            );
            let below = export(&ckpt, &heads, &out.join("below"), &at(floor.opset() - 1));
            match below {
                Err(ExportError::Opset(OpsetError::Below { op, needs, .. })) => {
                    assert_eq!((op, needs), (floor.op.as_str(), floor.opset()));
                }
                other => panic!("{profile:?} {}: {other:?}", p.name),
            }
            // Each floor graph computes what the default one does (tract where it applies).
            let runtimes = match profile.name() {
                "portable" => "ort-cpu,tract",
                _ => "ort-cpu",
            };
            let (code, report) = verify(&out.join("causal-lm.onnx"), "causal-lm", runtimes);
            assert_eq!(
                code,
                0,
                "{profile:?} {} at {}: {report:#}",
                p.name,
                floor.opset()
            );
        }
    }
    assert_eq!(rows, OPSET_FLOORS.len());
}

#[test]
fn the_default_newest_and_intermediate_opsets_match_the_goldens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 12: Split and Unsqueeze still take attributes; 18 and up: ReduceMean takes its axes as an
    // input.
    for opset in [12, 13, DEFAULT_OPSET, 18, NEWEST_OPSET] {
        let out = tmp.path().join(opset.to_string());
        export_cli(
            "classifier",
            &out,
            &["--opset", &opset.to_string(), "--hidden-states"],
        );
        for head in ["base", "classifier"] {
            let graph = out.join(format!("{head}.onnx"));
            let (summary, _, _) = inspect(&graph);
            assert!(summary.contains(&format!("opsets: ai.onnx:{opset}\n")));
            let (code, report) = verify(&graph, "classifier", "ort-cpu,tract");
            assert_eq!(code, 0, "{head} at opset {opset}: {report:#}");
        }
    }
}

#[test]
fn a_missing_release_is_one_line_saying_how_to_make_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = root().join("graphs/causal-lm/causal-lm.onnx");
    let case = fixture("causal-lm");
    let (code, stdout, stderr) = cli_in_root(
        &[
            "verify",
            "--model",
            s(&graph),
            "--fixture",
            s(&case),
            "--runtimes",
            "ort-python@1.17",
        ],
        &[("IGPT_ORT_VENVS", s(tmp.path()))],
    );
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "error: no runtime available: ort-python@1.17 unavailable: no virtual environment \
             1.17 or 1.17.* in {}; make one: python3 -m venv .venv-ort/1.17.0 && \
             .venv-ort/1.17.0/bin/pip install onnxruntime==1.17.0 'numpy<2' (./ci/setup.sh \
             makes the pinned releases'; IGPT_ORT_VENVS names another folder of environments)\n",
            tmp.path().display()
        )
    );
    let (_, help, _) = igpt(&["verify", "--help"]);
    assert!(help.contains("ort-python@VERSION"), "{help}");
    let (_, support, _) = igpt(&["support"]);
    assert!(
        support.contains("\nort-python@VERSION: ONNX Runtime VERSION's Python package (CPU)"),
        "{support}"
    );
    let (code, _, stderr) = igpt(&["verify", "--runtimes", "ort-python@latest"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: unknown runtime `ort-python@latest` (expected ort-cpu, ort-cuda, ort-tensorrt, \
         tract, openvino, ort-python@VERSION or cmd:PROGRAM)\n"
    );
}

/// The pins name releases the tables know, the oldest one the oldest PyPI serves for CPython
/// 3.11.
#[test]
fn the_pinned_releases_are_rows_of_the_release_table() {
    let pins = pinned();
    assert!(pins.len() >= 2);
    assert_eq!(pins[0], "1.15.0");
    for p in &pins {
        let v = version(p);
        assert!(
            igpt_onnx::runtime::releases::RELEASES
                .iter()
                .any(|r| r.version == v),
            "{p}"
        );
    }
}
