//! The forward's blocked attention (query blocks that read only their own and earlier keys):
//! - against the reference: the `long/left-padded` case (160 positions, two blocks of 128 rows,
//!   left-padded rows whose padded queries see no unpadded key) at every position, padded
//!   ones included, and the golden cases exported with blocks of 8 rows (a 32-token case runs
//!   four blocks), on ONNX Runtime and tract;
//! - against the full `[seq, seq]` square it replaces (`export --query-block 0`): a random
//!   checkpoint with 320 positions (three blocks), sequences of 300 (the last block partial)
//!   and 100 (later blocks empty) with a left-padded row, in both profiles (the ort profile's
//!   square is ONNX Runtime's `MultiHeadAttention`).

use crate::common::{cli, cli_in_root, fixture, open_runtime};

use std::path::{Path, PathBuf};

use igpt_onnx::runtime::{RuntimeKind, RuntimeOptions, Tensor};
use igpt_onnx::{ImageGptConfig, Variant};
use ndarray::{Array2, ArrayD};

const SEQS: [usize; 2] = [300, 100];
const PADDED: usize = 40;

/// Exports the causal LM of `ckpt` in `profile`, with `--query-block
/// ROWS` when given.
fn export(ckpt: &Path, out: &Path, profile: &str, block: Option<&str>) -> PathBuf {
    export_head(ckpt, out, profile, block, "causal-lm")
}

fn export_head(ckpt: &Path, out: &Path, profile: &str, block: Option<&str>, head: &str) -> PathBuf {
    let mut args = vec![
        "export",
        "--weights",
        ckpt.to_str().expect("utf-8"),
        "--head",
        head,
        "--profile",
        profile,
        "--out",
        out.to_str().expect("utf-8"),
    ];
    if let Some(rows) = block {
        args.extend(["--query-block", rows]);
    }
    let (code, _, err) = cli_in_root(&args, &[]);
    assert_eq!(code, 0, "export failed: {err}");
    out.join(format!("{head}.onnx"))
}

fn logits(kind: RuntimeKind, model: &Path, seq: usize) -> Option<ArrayD<f32>> {
    let rt = open_runtime(kind, &RuntimeOptions::default())?;
    let mut m = rt.load(model).expect("loads");
    let ids = Array2::from_shape_fn((2, seq), |(b, s)| match s {
        0 => 512,
        _ => ((b * 131 + s * 71) % 512) as i64,
    });
    // Row 1 is left-padded: its first PADDED queries see no unpadded key at or before them.
    let mask = Array2::from_shape_fn((2, seq), |(b, s)| i64::from(b == 0 || s >= PADDED));
    let (ids, mask) = (Tensor::I64(ids.into_dyn()), Tensor::I64(mask.into_dyn()));
    let out = m
        .run(&[("input_ids", &ids), ("attention_mask", &mask)])
        .expect("runs");
    match out.into_iter().find(|(n, _)| n == "logits") {
        Some((_, Tensor::F32(a))) => Some(a),
        _ => panic!("no float32 logits"),
    }
}

#[test]
fn blocked_forward_gives_the_full_squares_logits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = ImageGptConfig {
        n_positions: 320,
        n_layer: 2,
        ..Variant::Tiny.config()
    };
    let ckpt = tmp.path().join("ckpt");
    igpt_onnx::random::write_random_checkpoint(&cfg, 7, &ckpt).expect("writes");
    let read = |p: &Path| std::fs::read(p).expect("reads");
    let profiles = [
        ("portable", &[RuntimeKind::OrtCpu, RuntimeKind::Tract][..]),
        ("ort", &[RuntimeKind::OrtCpu][..]),
    ];
    for (profile, kinds) in profiles {
        let dir = tmp.path().join(profile);
        let blocked = export(&ckpt, &dir.join("blocked"), profile, None);
        let full = export(&ckpt, &dir.join("full"), profile, Some("0"));
        assert_ne!(read(&blocked), read(&full));
        for &kind in kinds {
            for seq in SEQS {
                let (Some(b), Some(f)) = (logits(kind, &blocked, seq), logits(kind, &full, seq))
                else {
                    continue;
                };
                assert_eq!(b.shape(), &[2, seq, 512]);
                let diff = (&b - &f).iter().fold(0f32, |m, d| m.max(d.abs()));
                let padded = (0..PADDED)
                    .flat_map(|s| (0..512).map(move |v| (s, v)))
                    .fold(0f32, |m, (s, v)| m.max((b[[1, s, v]] - f[[1, s, v]]).abs()));
                let rt = kind.name();
                eprintln!(
                    "{profile} on {rt}, seq {seq}: max abs {diff:.2e}, padded queries {padded:.2e}"
                );
                assert!(diff <= 1e-5, "{profile} on {rt}, seq {seq}: {diff}");
                assert!(b.iter().all(|x| x.is_finite()));
            }
        }
    }
}

/// `verify`'s JSON report of `args`: it must pass, with `checks` checks and none skipped.
fn verify_passes(args: &[&str], checks: usize) -> serde_json::Value {
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("report.json");
    let mut all = vec!["verify", "--json", json.to_str().expect("utf-8")];
    all.extend(args);
    let (code, out, err) = cli(&all);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("JSON");
    assert_eq!(v["verdict"], "pass", "{out}");
    let passed = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "pass")
        .count();
    assert_eq!(passed, checks, "{out}");
    v
}

#[test]
fn left_padded_long_case_matches_the_reference_at_every_position() {
    let long = fixture("long");
    let long = long.to_str().expect("utf-8");
    // Padded queries included (the manifest says so): base, causal-lm and the decoder's
    // prompt + steps on each runtime.
    for (profile, runtimes, checks) in [("portable", "ort-cpu,tract", 6), ("ort", "ort-cpu", 3)] {
        let args = [
            "--fixtures",
            long,
            "--profile",
            profile,
            "--runtimes",
            runtimes,
        ];
        let v = verify_passes(&args, checks);
        let logits = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["head"] == "causal-lm")
            .flat_map(|c| c["outputs"].as_array().expect("outputs").iter())
            .map(|o| o["metrics"]["max_abs"].as_f64().expect("max abs"))
            .fold(0f64, f64::max);
        eprintln!("left-padded, {profile}: logits max abs {logits:.2e} at every position");
    }
    // The portable graph did run in blocks: block 1 of layer 0 is there.
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = fixture("long/left-padded").join("model");
    let graph = export(&ckpt, tmp.path(), "portable", None);
    let bytes = std::fs::read(graph).expect("reads");
    let has = |name: &[u8]| bytes.windows(name.len()).any(|w| w == name);
    assert!(has(b"h.0.attn.block.1.scores"));
    assert!(
        !has(b"h.0.attn.block.2.scores"),
        "160 positions are two blocks"
    );
}

#[test]
fn golden_cases_pass_in_blocks_of_eight_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for case in [
        "causal-lm",
        "classifier",
        "padded-batch",
        "inverse-layer-idx",
        "short-seq",
    ] {
        let dir = tmp.path().join(case);
        let ckpt = fixture(case).join("model");
        let head = match case {
            "classifier" => "classifier",
            _ => "causal-lm",
        };
        let graph = export_head(&ckpt, &dir, "portable", Some("8"), head);
        let bytes = std::fs::read(&graph).expect("reads");
        let blocks = bytes
            .windows(b"h.0.attn.block.".len())
            .filter(|w| w == b"h.0.attn.block.")
            .count();
        assert!(blocks > 0, "{case}: no blocks in {}", graph.display());
        let fx = fixture(case);
        let args = [
            "--model",
            graph.to_str().expect("utf-8"),
            "--fixture",
            fx.to_str().expect("utf-8"),
            "--runtimes",
            "ort-cpu,tract",
        ];
        verify_passes(&args, 2);
    }
}
