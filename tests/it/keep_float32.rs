//! `--keep-float32`: the matrices a list names are float32 initializers and `MatMul`s in every
//! reduced precision, the card records the list, the emitter's matrices are the paths the
//! patterns match, a pattern that names nothing is refused before anything is written, the
//! list changes nothing in float32, and float16 with float32 islands still verifies in both
//! profiles on ONNX Runtime and tract (the trained fixture: 4 blocks of 64).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost::Message;

use igpt_onnx::export::{export, ExportOptions};
use igpt_onnx::graph::keep::{matrices, HEAD_MATRIX};
use igpt_onnx::graph::{ExportCard, KeepFloat32, Precision, Profile};
use igpt_onnx::onnx::proto::ModelProto;
use igpt_onnx::{Checkpoint, Head};
use serde_json::Value;

fn model_dir() -> PathBuf {
    common::fixture("trained").join("digits").join("model")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The causal LM of the trained checkpoint in `profile`/`precision` with `keep`.
fn export_lm(precision: Precision, keep: &str, out: &Path) -> (PathBuf, ModelProto) {
    let ckpt = Checkpoint::open(&model_dir(), None, None).expect("opens");
    let opts = ExportOptions {
        profile: precision.spec().profiles[0],
        precision,
        keep_float32: match keep {
            "" => KeepFloat32::default(),
            list => KeepFloat32::parse_list(list).expect("patterns"),
        },
        ..Default::default()
    };
    let path = export(&ckpt, &[Head::CausalLm], out, &opts).expect("exports")[0]
        .path
        .clone();
    let model = ModelProto::decode(&*std::fs::read(&path).expect("read")).expect("decodes");
    (path, model)
}

/// The block matrices (`h.{i}.…`) of the trained checkpoint.
fn block_matrices() -> Vec<String> {
    let ckpt = Checkpoint::open(&model_dir(), None, None).expect("opens");
    matrices(&ckpt)
        .into_iter()
        .filter(|m| m != HEAD_MATRIX)
        .collect()
}

/// In every reduced precision a kept matrix's weight and bias are float32 initializers under
/// the checkpoint's names and it multiplies with `MatMul`; every other matrix keeps the
/// precision's form. Float16 casts the island's input up and its output back.
#[test]
fn kept_matrices_are_float32_initializers_and_the_card_records_the_list() {
    const FLOAT32: i32 = 1;
    let tmp = tempfile::tempdir().expect("tempdir");
    let list = "h.1,h.*.mlp.c_proj";
    let keep = KeepFloat32::parse_list(list).expect("patterns");
    let all = block_matrices();
    let kept: Vec<&String> = all.iter().filter(|m| keep.keeps(m)).collect();
    assert_eq!(kept.len(), 4 + 3, "h.1's four and the other blocks' c_proj");
    for precision in [
        Precision::Int8,
        Precision::Int4,
        Precision::Int8Dynamic,
        Precision::Float16,
    ] {
        let what = precision.name();
        let (path, model) = export_lm(precision, list, &tmp.path().join(what));
        let graph = model.graph.as_ref().expect("graph");
        let dtype = |name: &str| {
            graph
                .initializer
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.data_type)
        };
        let node = |name: &str| graph.node.iter().find(|n| n.name == name);
        for m in &all {
            let weight = dtype(&format!("{m}.weight"));
            if keep.keeps(m) {
                assert_eq!(weight, Some(FLOAT32), "{what} {m}");
                assert_eq!(dtype(&format!("{m}.bias")), Some(FLOAT32), "{what} {m}");
                let mm = node(&format!("{m}.matmul")).expect("a MatMul");
                assert_eq!(mm.op_type, "MatMul", "{what} {m}");
                let cast_in = node(&format!("{m}.input.float32"));
                assert_eq!(
                    cast_in.is_some(),
                    precision == Precision::Float16,
                    "{what} {m}: a cast only where the trunk is float16"
                );
            } else {
                // Quantised (no float weight under the name) or float16.
                assert_ne!(weight, Some(FLOAT32), "{what} {m}");
            }
        }
        let card = ExportCard::require(&path).expect("card");
        assert_eq!(card.keep_float32.to_list(), list, "{what}");
        assert_eq!(card.precision, precision);
    }
    // No list: no entry, as every graph before the flag existed.
    let (path, _) = export_lm(Precision::Int4, "", &tmp.path().join("none"));
    let info = igpt_onnx::onnx::inspect::inspect(&path).expect("inspect");
    assert!(!info.metadata.contains_key("igpt_onnx.keep_float32"));
}

/// The emitter's block matrices are exactly the paths patterns match: int4 quantises one
/// `MatMulNBits` per path, `h` keeps all of them, `head` none (the heads are float32 in every
/// precision already) but is recorded.
#[test]
fn the_emitted_matrices_are_the_paths_patterns_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let nbits = |model: &ModelProto| -> BTreeSet<String> {
        let graph = model.graph.as_ref().expect("graph");
        graph
            .node
            .iter()
            .filter(|n| n.op_type == "MatMulNBits")
            .map(|n| n.name.clone())
            .collect()
    };
    let (_, plain) = export_lm(Precision::Int4, "", &tmp.path().join("plain"));
    let all: BTreeSet<String> = block_matrices().into_iter().collect();
    assert_eq!(all.len(), 16);
    assert_eq!(nbits(&plain), all);
    let (_, every) = export_lm(Precision::Int4, "h", &tmp.path().join("every"));
    assert!(nbits(&every).is_empty());
    let (path, head) = export_lm(Precision::Int4, "head", &tmp.path().join("head"));
    assert_eq!(nbits(&head), all);
    let card = ExportCard::require(&path).expect("card");
    assert_eq!(card.keep_float32.to_list(), "head");
}

/// `export ... --keep-float32 LIST --out OUT` on the trained checkpoint: (code, stderr, OUT).
fn export_cli(flags: &[&str], out: &Path) -> (i32, String) {
    let weights = model_dir();
    let mut args = vec!["export", "--weights", s(&weights), "--out", s(out)];
    args.extend_from_slice(flags);
    let (code, _, stderr) = common::cli(&args);
    (code, stderr)
}

/// A pattern that names no matrix, or is no pattern, is one line and exit 2; nothing is written.
#[test]
fn a_pattern_that_names_nothing_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let (code, stderr) = export_cli(
        &[
            "--profile",
            "ort",
            "--quantize",
            "int4",
            "--keep-float32",
            "h.0,h.9",
        ],
        &out,
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: export failed: keep-float32 pattern `h.9` matches no matrix of the checkpoint; it has h.0 to h.3 (each attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) and head\n"
    );
    assert!(!out.exists(), "nothing written");
    let (code, stderr) = export_cli(
        &["--quantize", "int8-dynamic", "--keep-float32", "h.*.mlp*"],
        &out,
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: keep-float32 pattern `h.*.mlp*`: `*` inside a segment (dot-separated names such as h.0, h.*.mlp.c_proj, h.3.attn or head; `*` is one whole segment)\n"
    );
    assert!(!out.exists(), "nothing written");
}

/// In float32 every matrix is float32 already: the list is checked, said to change nothing,
/// and the graph is the one without it, byte for byte.
#[test]
fn in_float32_the_list_changes_nothing_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (plain, kept) = (tmp.path().join("plain"), tmp.path().join("kept"));
    let (code, stderr) = export_cli(&["--head", "causal-lm"], &plain);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = export_cli(&["--head", "causal-lm", "--keep-float32", "h.0"], &kept);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "note: --keep-float32 changes nothing in float32: every matrix is float32 already\n"
    );
    let bytes = |d: &Path| std::fs::read(d.join("causal-lm.onnx")).expect("graph");
    assert!(bytes(&plain) == bytes(&kept), "the same graph");
    let (code, stderr) = export_cli(&["--keep-float32", "h.4"], &tmp.path().join("typo"));
    assert_eq!(code, 2, "a typo is refused in float32 too: {stderr}");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("json")
}

/// Float16 with block 1 and every block's second MLP matrix kept float32, through `verify`'s
/// golden suite over the trained case (every head, the decoder step by step): the portable
/// graphs on ONNX Runtime and tract, the ort graphs on ONNX Runtime, all within float16's
/// budget, the labelled set's NLL within +0.05 % and accuracy unchanged.
#[test]
fn float16_with_float32_islands_verifies_in_both_profiles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixtures = common::fixture("trained");
    for (profile, runtimes) in [
        (Profile::Portable, "ort-cpu,tract"),
        (Profile::Ort, "ort-cpu"),
    ] {
        let json = tmp.path().join(format!("{}.json", profile.name()));
        let mut args = vec![
            "verify",
            "--fixtures",
            s(&fixtures),
            "--profile",
            profile.name(),
            "--dtype",
            "fp16",
            "--keep-float32",
            "h.1,h.*.mlp.c_proj",
            "--runtimes",
            runtimes,
            "--json",
            s(&json),
        ];
        if std::env::var_os("CI").is_some() {
            args.extend(["--require", "ort-cpu"]);
        }
        let (code, stdout, stderr) = common::cli(&args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let report = read_json(&json);
        assert_eq!(report["verdict"], "pass", "{stdout}");
        let checks = report["checks"].as_array().expect("checks");
        let ran: BTreeSet<&str> = checks
            .iter()
            .filter(|c| c["status"] == "pass")
            .filter_map(|c| c["runtime"].as_str())
            .collect();
        let available = |r: &str| {
            report["runtimes"]
                .as_array()
                .expect("runtimes")
                .iter()
                .any(|x| x["runtime"] == r && x["available"] == true)
        };
        for r in runtimes.split(',').filter(|r| available(r)) {
            assert!(ran.contains(r), "{} on {r}: {stdout}", profile.name());
        }
        let measured = |key: &str| checks.iter().any(|c| c[key].is_object());
        assert!(
            ran.is_empty() || (measured("nll") && measured("classification")),
            "{stdout}"
        );
        for c in checks.iter().filter(|c| c["status"] == "pass") {
            if let Some(nll) = c["nll"]["relative_increase"].as_f64() {
                assert!(nll.abs() <= 5e-4, "{}: NLL {nll}", profile.name());
            }
            if let Some(drop) = c["classification"]["drop_points"].as_f64() {
                assert!(drop <= 0.0, "{}: accuracy drop {drop}", profile.name());
            }
        }
    }
}
