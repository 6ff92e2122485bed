//! `debug bisect` and `debug reduce`: a fault-injecting runtime (`tests/it/adapters/fault`,
//! ONNX Runtime on a copy of the graph with one node's output scaled by 1.002) is named exactly,
//! in the first, a middle and the last block, in both profiles, for the full forward and the
//! decoder; values both runtimes give as the same non-finite number agree; OpenVINO at bf16
//! shows error introduced at a node under a tight tolerance and carried under a loose one;
//! reduce writes a repro the ONNX checker accepts and that reproduces; bad input is one line.
//!
//! The adapters need the project's `.venv` (`ci/setup.sh`): tests skip without it unless `CI`
//! is set.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::fixture;
use serde_json::Value;

/// The tolerance the fault is just past: 1.002× is outside `1e-4 + 1e-3·|x|` wherever
/// `|x| > 0.1`.
const TOLERANCE: [&str; 4] = ["--atol", "1e-4", "--rtol", "1e-3"];
const FAULT: &str = "cmd:tests/it/adapters/fault";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `igpt-onnx ARGS` in the repository root with `env`: (exit code, stdout, stderr).
fn igpt(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .expect("run igpt-onnx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn venv_ready() -> bool {
    crate::command::adapter_ready("ort-python")
}

/// Exports every head of `fixtures/<case>/model` in `profile` into `dir`.
fn export(case: &str, profile: &str, dir: &Path) {
    let weights = fixture(case).join("model");
    let (code, _, err) = igpt(
        &[
            "export",
            "--weights",
            weights.to_str().expect("utf-8"),
            "--profile",
            profile,
            "--out",
            dir.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "export: {err}");
}

/// `igpt-onnx debug COMMAND --model MODEL --runtimes RUNTIMES ARGS --json J`, with `env`:
/// (exit code, the JSON report, stdout + stderr).
fn debug(
    command: &str,
    model: &Path,
    runtimes: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, Value, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let json = dir.path().join("report.json");
    let mut all = vec![
        "debug",
        command,
        "--model",
        model.to_str().expect("utf-8"),
        "--runtimes",
        runtimes,
        "--json",
        json.to_str().expect("utf-8"),
    ];
    all.extend(args);
    let (code, out, err) = igpt(&all, env);
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).expect("json"))
        .unwrap_or(Value::Null);
    (code, report, out + &err)
}

/// `debug bisect` of `model` against the fault adapter scaling `node`, at the fault's
/// tolerance.
fn bisect_fault(model: &Path, node: &str, args: &[&str]) -> (i32, Value, String) {
    let mut all = TOLERANCE.to_vec();
    all.extend(args);
    let runtimes = format!("ort-cpu,{FAULT}");
    debug(
        "bisect",
        model,
        &runtimes,
        &all,
        &[("IGPT_FAULT_NODE", node)],
    )
}

#[test]
fn bisect_names_the_faulted_node_in_every_block_profile_and_decoder() {
    if !venv_ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // fixtures/greedy: three blocks, so a first, a middle and a last one.
    for profile in ["portable", "ort"] {
        let dir = tmp.path().join(profile);
        export("greedy", profile, &dir);
        for head in ["causal-lm", "decoder"] {
            let model = dir.join(format!("{head}.onnx"));
            for block in 0..3 {
                let node = format!("h.{block}.mlp.c_fc");
                let (code, r, text) = bisect_fault(&model, &node, &["--random-inputs", "1"]);
                let what = format!("{profile} {head} {node}");
                assert_eq!(code, 1, "{what}: the runtimes differ: {text}");
                assert_eq!(r["schema"], "igpt-onnx/debug-bisect/1");
                assert_eq!(r["verdict"], "diverges", "{what}");
                let c = &r["first_divergent_node"];
                assert_eq!(c["name"], node.as_str(), "{what}: {text}");
                assert_eq!(c["op_type"], "Add", "{what}");
                assert_eq!(c["scope"], format!("block h.{block} mlp"), "{what}");
                assert_eq!(r["cause"], "introduced", "{what}");
                // Its inputs agree exactly; its output is off by the fault's 0.2 %.
                for input in c["inputs"].as_array().expect("inputs") {
                    assert_eq!(input["max_abs"], 0.0, "{what}: {input}");
                }
                let out = &c["outputs"][0];
                let rel = out["max_rel"].as_f64().expect("max_rel");
                assert!((rel - 0.002).abs() < 1e-4, "{what}: max rel {rel}");
                assert_eq!(out["diverges"], true);
                // Rounds of at most 16 marks: logarithmic in the node count.
                let nodes = r["nodes"].as_f64().expect("nodes");
                let rounds = r["rounds"].as_f64().expect("rounds");
                assert!(
                    rounds <= nodes.log(17.0).ceil() + 2.0,
                    "{what}: {rounds} rounds"
                );
                let marked = r["marked_per_round"].as_array().expect("marked");
                assert!(marked.iter().all(|m| m.as_u64().expect("count") <= 16));
                assert_eq!(r["runtime_runs"].as_f64(), Some(2.0 * rounds));
            }
        }
    }
}

#[test]
fn runs_are_logarithmic_in_the_node_count() {
    if !venv_ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    export("greedy", "portable", tmp.path());
    let model = tmp.path().join("causal-lm.onnx");
    // One mark per round is a binary search: about log2(nodes) rounds.
    let args = ["--random-inputs", "1", "--max-marked", "1"];
    let (_, r, text) = bisect_fault(&model, "h.1.mlp.c_fc", &args);
    assert_eq!(r["first_divergent_node"]["name"], "h.1.mlp.c_fc", "{text}");
    let nodes = r["nodes"].as_f64().expect("nodes");
    let rounds = r["rounds"].as_f64().expect("rounds");
    assert!(
        rounds <= nodes.log2().ceil() + 2.0,
        "{rounds} rounds for {nodes} nodes"
    );
}

#[test]
fn values_both_runtimes_give_as_the_same_non_finite_number_agree() {
    // The padded-batch case's masks: float32's lowest where both runtimes mask, softmax zeros.
    // Every tensor marked in one round; none may count as a difference.
    let tmp = tempfile::tempdir().expect("tmp");
    export("padded-batch", "portable", tmp.path());
    let model = tmp.path().join("causal-lm.onnx");
    let case = fixture("padded-batch");
    let args = [
        "--fixture",
        case.to_str().expect("utf-8"),
        "--max-marked",
        "1000",
    ];
    let (code, r, text) = debug("bisect", &model, "ort-cpu,tract", &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["verdict"], "agrees");
    assert!(r["first_divergent_node"].is_null());
    let measured = r["measured"].as_array().expect("measured");
    assert!(
        measured.len() > 60,
        "every float tensor: {}",
        measured.len()
    );
    assert!(measured.iter().all(|m| m["diverges"] == false));
    // The attention bias holds float32's lowest where masked: compared equal, not as a
    // difference of that size.
    let bias = measured
        .iter()
        .find(|m| m["tensor"] == "attn_bias")
        .expect("attn_bias measured");
    assert_eq!(bias["max_abs"], 0.0);
    assert!(bias["scale"].as_f64().expect("scale") > 1e38);
}

#[test]
fn openvino_bf16_error_is_introduced_at_a_matmul_and_accumulates_along_the_blocks() {
    if !crate::openvino::openvino_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let weights = fixture("trained").join("digits/model");
    let out = tmp.path().to_str().expect("utf-8");
    let args = [
        "export",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--head",
        "causal-lm",
        "--out",
        out,
    ];
    let (code, _, err) = igpt(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let model = tmp.path().join("causal-lm.onnx");
    let case = fixture("trained").join("digits");
    let run = |atol: &str| {
        let args = [
            "--openvino-precision",
            "bf16",
            "--fixture",
            case.to_str().expect("utf-8"),
            "--atol",
            atol,
            "--rtol",
            "1e-3",
            // The mask's fill value, float32's lowest, is rounded by bfloat16: harmless.
            "--tolerance",
            "attn_bias*=0,1e-2",
            "--max-marked",
            "1000",
        ];
        let (code, r, text) = debug("bisect", &model, "ort-cpu,openvino", &args, &[]);
        assert_eq!(code, 1, "{text}");
        (r, text)
    };
    // Tight: the first matrix product in bfloat16 starts the difference.
    let (tight, text) = run("1e-4");
    let c = &tight["first_divergent_node"];
    assert_eq!(c["op_type"], "MatMul", "{text}");
    assert_eq!(c["scope"], "block h.0 attn");
    assert_eq!(tight["cause"], "introduced");
    assert!(text.contains("the difference starts here"), "{text}");
    // Loose: the first node past tolerance only carries what its inputs hold.
    let (loose, text) = run("1e-2");
    assert_eq!(loose["cause"], "accumulated", "{text}");
    assert!(text.contains("error accumulated along the graph"), "{text}");
    // The residual stream's error grows along the blocks.
    let measured = loose["measured"].as_array().expect("measured");
    let err_of = |name: &str| {
        measured
            .iter()
            .find(|m| m["tensor"] == name)
            .and_then(|m| m["max_abs"].as_f64())
            .unwrap_or_else(|| panic!("{name} measured"))
    };
    let (first, last) = (err_of("h.0.residual_attn"), err_of("h.3.out"));
    assert!(last > 5.0 * first, "h.0 {first:e} → h.3 {last:e}");
    assert_eq!(loose["blocks"].as_array().expect("blocks").len(), 4);
    assert!(text.contains("error by block"), "{text}");
}

#[test]
fn reduce_writes_a_checked_repro_that_reproduces() {
    if !venv_ready() {
        return;
    }
    // Weights as external data: the marked copies are written beside them, the repro inlines
    // the initializers it needs.
    let tmp = tempfile::tempdir().expect("tmp");
    let weights = fixture("greedy").join("model");
    let dir = tmp.path().to_str().expect("utf-8");
    let args = [
        "export",
        "--weights",
        weights.to_str().expect("utf-8"),
        "--external-data",
        "--head",
        "causal-lm",
        "--out",
        dir,
    ];
    let (code, _, err) = igpt(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let model = tmp.path().join("causal-lm.onnx");
    assert!(tmp.path().join("causal-lm.onnx.data").exists());
    let out = tmp.path().join("repro");
    let fault = [("IGPT_FAULT_NODE", "h.1.attn.c_proj.matmul")];
    let before_files = common::listing(tmp.path());
    let mut args = TOLERANCE.to_vec();
    args.extend([
        "--random-inputs",
        "1",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let runtimes = format!("ort-cpu,{FAULT}");
    let (code, r, text) = debug("reduce", &model, &runtimes, &args, &fault);
    assert_eq!(code, 1, "{text}");
    assert_eq!(r["schema"], "igpt-onnx/debug-reduce/1");
    // No marked copy is left beside the graph.
    let mut after_files = common::listing(tmp.path());
    after_files.retain(|f| !f.starts_with("repro"));
    assert_eq!(after_files, before_files);
    assert_eq!(r["reproduces"], true, "{text}");
    let nodes = r["nodes"].as_array().expect("nodes");
    assert!(!nodes.is_empty() && nodes.len() <= 5, "{nodes:?}");
    let before = r["max_abs_before"].as_f64().expect("before");
    let after = r["max_abs_after"].as_f64().expect("after");
    assert!(
        before > 1e-3 && (after - before).abs() <= 1e-6,
        "{before} {after}"
    );
    assert!(text.contains("reproduces: max abs"), "{text}");
    // The ONNX checker accepts it, and ONNX Runtime on its inputs gives its outputs exactly;
    // its inputs, as one safetensors feed, bisect again to the same node.
    let feed = tmp.path().join("inputs.safetensors");
    let check = Command::new(root().join(".venv/bin/python"))
        .arg("-c")
        .arg(
            r#"
import sys, glob, json, struct, onnx, numpy as np, onnxruntime as ort
from onnx import numpy_helper
d, feed = sys.argv[1], sys.argv[2]
onnx.checker.check_model(onnx.load(d + "/model.onnx"), full_check=True)
load = lambda p: (onnx.load_tensor(p).name, numpy_helper.to_array(onnx.load_tensor(p)))
ins = [load(p) for p in sorted(glob.glob(d + "/test_data_set_0/input_*.pb"))]
outs = [load(p) for p in sorted(glob.glob(d + "/test_data_set_0/output_*.pb"))]
got = ort.InferenceSession(d + "/model.onnx").run([n for n, _ in outs], dict(ins))
print(max(float(np.abs(g - a).max()) for g, (_, a) in zip(got, outs)), len(ins), len(outs))
header, blobs, off = {}, [], 0
for name, a in ins:
    kind = {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)]
    b = a.tobytes()
    header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
open(feed, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
"#,
        )
        .arg(&out)
        .arg(&feed)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields[0].parse::<f64>().expect("max"), 0.0, "{stdout}");
    assert!(fields[1] != "0" && fields[2] != "0", "{stdout}");
    let reduced = out.join("model.onnx");
    let mut args = TOLERANCE.to_vec();
    args.extend(["--inputs", feed.to_str().expect("utf-8")]);
    let (code, again, text) = debug("bisect", &reduced, &runtimes, &args, &fault);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        again["first_divergent_node"]["name"],
        "h.1.attn.c_proj.matmul"
    );
}

#[test]
fn runtimes_that_agree_are_verdict_agrees_and_exit_0() {
    let tmp = tempfile::tempdir().expect("tmp");
    let case = fixture("causal-lm");
    let model = root().join("graphs/causal-lm/causal-lm.onnx");
    let args = ["--fixture", case.to_str().expect("utf-8")];
    let (code, r, text) = debug("bisect", &model, "ort-cpu,tract", &args, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["verdict"], "agrees");
    assert_eq!(r["rounds"], 1);
    let logits = &r["outputs"][0];
    assert_eq!(logits["name"], "logits");
    assert!(logits["max_abs"].as_f64().expect("max abs") < 1e-4);
    assert!(text.contains("nothing to bisect"), "{text}");
    // reduce writes nothing when there is nothing to reduce.
    let repro = tmp.path().join("repro");
    let args = [
        "--fixture",
        case.to_str().expect("utf-8"),
        "--out",
        repro.to_str().expect("utf-8"),
    ];
    let (code, r, text) = debug("reduce", &model, "ort-cpu,tract", &args, &[]);
    assert_eq!((code, &r["verdict"]), (0, &Value::from("agrees")), "{text}");
    assert!(!repro.exists());
}

#[test]
fn bad_input_is_one_line_and_nothing_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = "graphs/causal-lm/causal-lm.onnx";
    let case = fixture("causal-lm");
    let case = case.to_str().expect("utf-8");
    let one_line = |args: &[&str], code: i32, expect: &str| {
        let (got, out, err) = igpt(args, &[]);
        assert_eq!(got, code, "{args:?}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    let bisect = |more: &[&str]| -> Vec<String> {
        let mut a = vec!["debug", "bisect", "--fixture", case];
        a.extend(more);
        a.into_iter().map(String::from).collect()
    };
    let run = |args: Vec<String>, code: i32, expect: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        one_line(&args, code, expect);
    };
    run(
        bisect(&["--model", model, "--runtimes", "ort-cpu"]),
        2,
        "error: debug compares two runtimes, the first the reference (--runtimes A,B); given ort-cpu",
    );
    run(
        bisect(&["--model", model, "--max-marked", "0"]),
        2,
        "--max-marked must be at least 1",
    );
    let broken = tmp.path().join("broken.onnx");
    let bytes = std::fs::read(root().join(model)).expect("graph");
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).expect("write");
    run(
        bisect(&["--model", broken.to_str().expect("utf-8")]),
        2,
        "is not an ONNX model",
    );
    // A graph one runtime cannot load: exit 1, naming it.
    let ort_dir = tmp.path().join("ort");
    export("causal-lm", "ort", &ort_dir);
    let ort_graph = ort_dir.join("causal-lm.onnx");
    let args = [
        "--model",
        ort_graph.to_str().expect("utf-8"),
        "--runtimes",
        "ort-cpu,tract",
    ];
    run(bisect(&args), 1, "tract");
    // A repro folder that holds something is refused before any work; it stays as it was.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("keep.txt"), "mine").expect("write");
    let out = full.to_str().expect("utf-8");
    let args = [
        "debug",
        "reduce",
        "--model",
        model,
        "--fixture",
        case,
        "--out",
        out,
    ];
    one_line(&args, 2, "exists and is not an empty folder");
    assert_eq!(std::fs::read_dir(&full).expect("dir").count(), 1);
    // The inputs file lacks a graph input.
    let inputs = tmp.path().join("inputs.safetensors");
    let ids: Vec<u8> = [512i64, 1, 2, 3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    common::write_safetensors(
        &inputs,
        &[("input_ids".into(), safetensors::Dtype::I64, vec![1, 4], ids)],
    );
    let args = [
        "debug",
        "bisect",
        "--model",
        model,
        "--inputs",
        inputs.to_str().expect("utf-8"),
    ];
    one_line(
        &args,
        2,
        "input `attention_mask` of the graph is not in the file",
    );
}

#[test]
fn tensors_saved_on_one_machine_bisect_on_another() {
    if !venv_ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    export("greedy", "portable", tmp.path());
    let model = tmp.path().join("causal-lm.onnx");
    let saved = tmp.path().join("ort-cpu.safetensors");
    let saved_s = saved.to_str().expect("utf-8");
    // "Elsewhere": every float tensor of ONNX Runtime's run, in rounds of 32.
    let args = [
        "--random-inputs",
        "1",
        "--save-tensors",
        saved_s,
        "--max-marked",
        "32",
    ];
    let (code, r, text) = debug("bisect", &model, "ort-cpu", &args, &[]);
    assert_eq!(code, 0, "{text}");
    let tensors = r["tensors"].as_u64().expect("tensors");
    assert!(tensors > 100, "{text}");
    assert_eq!(r["rounds"].as_u64(), Some(tensors.div_ceil(32)));
    // Here: the faulted runtime against the saved reference, plotted.
    let plot = tmp.path().join("curve.svg");
    let mut args = TOLERANCE.to_vec();
    let plot_s = plot.to_str().expect("utf-8");
    args.extend([
        "--random-inputs",
        "1",
        "--compare-with",
        saved_s,
        "--plot",
        plot_s,
    ]);
    let fault = [("IGPT_FAULT_NODE", "h.2.attn.c_proj")];
    let (code, r, text) = debug("bisect", &model, FAULT, &args, &fault);
    assert_eq!(code, 1, "{text}");
    assert_eq!(r["reference"], "saved:ort-cpu");
    assert_eq!(r["first_divergent_node"]["name"], "h.2.attn.c_proj");
    // Only the live runtime runs.
    assert_eq!(r["runtime_runs"], r["rounds"]);
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let points = svg.matches("<circle").count();
    assert_eq!(points, r["measured"].as_array().expect("measured").len());
    assert!(svg.contains("h.2.attn.c_proj (Add)"));
    // Another graph, or other inputs, is refused in one line.
    let args = ["--fixture", "fixtures/causal-lm", "--compare-with", saved_s];
    let (code, _, text) = debug("bisect", &model, "ort-cpu", &args, &[]);
    assert_eq!(code, 2);
    assert!(text.contains("holds tensors of other inputs"), "{text}");
    let other = root().join("graphs/causal-lm/causal-lm.onnx");
    let args = ["--random-inputs", "1", "--compare-with", saved_s];
    let (code, _, text) = debug("bisect", &other, "ort-cpu", &args, &[]);
    assert_eq!(code, 2);
    assert!(text.contains("holds tensors of another graph"), "{text}");
    let args = ["--random-inputs", "1", "--compare-with", saved_s];
    let (code, _, text) = debug("bisect", &model, "ort-cpu,tract", &args, &[]);
    assert_eq!(code, 2);
    assert!(
        text.contains("with --compare-with, one runtime; given ort-cpu,tract"),
        "{text}"
    );
}

#[test]
fn a_graph_another_tool_made_bisects_by_its_own_names() {
    if !venv_ready() {
        return;
    }
    // Our export, renamed as torch.onnx names things (`/transformer/h.1/mlp/c_fc/Add`, tensors
    // `/transformer/h.1/mlp/c_fc/Add_output_0`) and stripped of the export card.
    let tmp = tempfile::tempdir().expect("tmp");
    export("greedy", "portable", tmp.path());
    let ours = tmp.path().join("causal-lm.onnx");
    let theirs = tmp.path().join("foreign.onnx");
    let ok = Command::new(root().join(".venv/bin/python"))
        .arg("-c")
        .arg(
            r#"
import sys, onnx
m = onnx.load(sys.argv[1])
del m.metadata_props[:]
m.producer_name = "pytorch"
keep = {i.name for i in m.graph.input} | {o.name for o in m.graph.output} | {t.name for t in m.graph.initializer}
def torch(name, op):
    parts = name.split(".")
    if parts[0] == "h":
        parts = ["h." + parts[1]] + parts[2:]
    return "/transformer/" + "/".join(parts) + "/" + op
rename = {}
for n in m.graph.node:
    new = torch(n.name, n.op_type)
    for i, o in enumerate(n.output):
        if o not in keep:
            rename[o] = f"{new}_output_{i}"
            n.output[i] = rename[o]
    n.name = new
for n in m.graph.node:
    for i, x in enumerate(n.input):
        n.input[i] = rename.get(x, x)
onnx.save(m, sys.argv[2])
"#,
        )
        .arg(&ours)
        .arg(&theirs)
        .status()
        .expect("python")
        .success();
    assert!(ok);
    let node = "/transformer/h.1/mlp/c_fc/Add";
    let (code, r, text) = bisect_fault(&theirs, node, &["--random-inputs", "1"]);
    assert_eq!(code, 1, "{text}");
    let c = &r["first_divergent_node"];
    assert_eq!(c["name"], node, "{text}");
    assert_eq!(c["scope"], "block h.1 mlp", "{text}");
    assert_eq!(r["cause"], "introduced");
}
