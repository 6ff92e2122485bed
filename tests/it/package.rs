//! `igpt-onnx package`: the onnxruntime-genai decoder against the reference's decoder step, and
//! Triton repositories from the command line. (onnxruntime-genai and Triton's own schema judge
//! the packages in ci/engines_test.py.)

use crate::common;

use std::collections::HashMap;

use common::{cli, fixture, open_runtime, read_safetensors};
use igpt_onnx::runtime::{RuntimeKind, RuntimeOptions, Tensor};
use ndarray::{ArrayD, IxDyn};

fn tensors(path: &std::path::Path) -> HashMap<String, (Vec<usize>, Vec<u8>)> {
    read_safetensors(path)
        .into_iter()
        .map(|(n, _, shape, bytes)| (n, (shape, bytes)))
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// The genai decoder on the kv-cache case's step (9-token past from the reference, one new
/// token per row): its first 512 logits are the reference's, the start-token column is
/// float32 min (never chosen), and the presents are the reference's.
#[test]
fn genai_decoder_is_the_reference_plus_a_start_token_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("genai");
    let model = fixture("kv-cache").join("model");
    let (code, _, err) = cli(&[
        "package",
        "--genai",
        dir.to_str().expect("utf8"),
        "--weights",
        model.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let inputs = tensors(&fixture("kv-cache").join("inputs.safetensors"));
    let expected = tensors(&fixture("kv-cache").join("expected.safetensors"));
    let int = |name: &str| {
        let (shape, bytes) = &inputs[name];
        let v: Vec<i64> = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape"))
    };
    let float = |name: &str| {
        let (shape, bytes) = &expected[name];
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), f32s(bytes)).expect("shape"))
    };
    let mut feed = vec![
        ("input_ids".to_string(), int("decoder.input_ids")),
        ("attention_mask".to_string(), int("decoder.attention_mask")),
        (
            "position_ids".to_string(),
            Tensor::I64(ArrayD::from_elem(IxDyn(&[2, 1]), 9)),
        ),
    ];
    for i in 0..2 {
        for kv in ["key", "value"] {
            let name = format!("past_key_values.{i}.{kv}");
            feed.push((name.clone(), float(&format!("decoder/{name}"))));
        }
    }
    let Some(rt) = open_runtime(RuntimeKind::Tract, &RuntimeOptions::default()) else {
        return;
    };
    let mut loaded = rt.load(&dir.join("decoder.onnx")).expect("load");
    let refs: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let out = loaded.run(&refs).expect("run");
    let get = |name: &str| {
        out.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.to_f32())
            .expect("output")
    };
    let logits = get("logits");
    assert_eq!(logits.shape(), &[2, 1, 513]);
    let want = f32s(&expected["decoder/logits"].1);
    let mut max_abs = 0f32;
    for (row, want) in logits
        .as_slice()
        .expect("contiguous")
        .chunks(513)
        .zip(want.chunks(512))
    {
        assert_eq!(row[512], f32::MIN);
        for (a, b) in row[..512].iter().zip(want) {
            max_abs = max_abs.max((a - b).abs());
        }
    }
    assert!(max_abs < 1e-4, "logits max abs {max_abs}");
    let present = get("present.1.value");
    let want = f32s(&expected["decoder/present.1.value"].1);
    let err = present
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-4, "present max abs {err}");
    eprintln!(
        "genai decoder vs reference: logits max abs {max_abs:.2e}, present.1.value {err:.2e}"
    );
}

/// The decoder's config.pbtxt, with and without batching, from the command line.
#[test]
fn triton_config_declares_the_graphs_io() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exp = tmp.path().join("exp");
    let model = fixture("kv-cache").join("model");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let (code, _, err) = cli(&[
        "export",
        "--weights",
        &s(&model),
        "--head",
        "decoder",
        "--out",
        &s(&exp),
    ]);
    assert_eq!(code, 0, "{err}");
    for (max_batch, past, logits) in [
        ("8", "dims: [ 4, -1, 8 ]", "dims: [ -1, 512 ]"),
        ("0", "dims: [ -1, 4, -1, 8 ]", "dims: [ -1, -1, 512 ]"),
    ] {
        let repo = tmp.path().join(format!("repo{max_batch}"));
        let (code, _, err) = cli(&[
            "package",
            "--triton",
            &s(&repo),
            "--from",
            &s(&exp),
            "--max-batch",
            max_batch,
        ]);
        assert_eq!(code, 0, "{err}");
        let text =
            std::fs::read_to_string(repo.join("imagegpt-decoder/config.pbtxt")).expect("config");
        let block = |name: &str| {
            let at = text.find(&format!("name: \"{name}\"")).expect(name);
            text[at..]
                .lines()
                .nth(2)
                .expect("dims line")
                .trim()
                .to_string()
        };
        assert_eq!(block("past_key_values.1.value"), past);
        assert_eq!(block("logits"), logits);
        assert_eq!(text.contains("dynamic_batching { }"), max_batch != "0");
        assert!(text.contains(&format!("max_batch_size: {max_batch}\n")));
    }
}

/// Bad input is one line, exit 2, and leaves the repository as it was.
#[test]
fn triton_refusals_are_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let (code, _, err) = cli(&["package", "--triton", &s(&repo), "--from", &s(&empty)]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "error: Triton packaging failed: {}: no exported graphs (<head>.onnx) to package\n",
            empty.display()
        )
    );
    assert!(!repo.exists());
    let (code, _, err) = cli(&["package", "--triton", &s(&repo), "--heads", "lm"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: unknown head `lm` (expected base, causal-lm, classifier or decoder)\n"
    );
    let (code, _, err) = cli(&["package", "--genai", &s(&repo)]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: --genai needs --weights (the checkpoint folder or weights file)\n"
    );
}
