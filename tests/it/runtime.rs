//! Runtimes against the golden fixtures: each test body is written once and runs on every
//! runtime (`ort-cpu`, `tract`). ONNX Runtime missing is a skip with a printed reason, except
//! under `CI`, where it must be found.

use crate::common;

use std::path::PathBuf;

use common::fixture;

use igpt_onnx::export::{export, ExportOptions, WeightsFile};
use igpt_onnx::runtime::{
    self, LoadedModel, Runtime, RuntimeError, RuntimeKind, RuntimeOptions, Tensor,
};
use igpt_onnx::{Checkpoint, Head};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};

/// Exports the fixture's causal-LM head into a fresh temporary folder.
fn export_causal_lm(case: &str) -> (tempfile::TempDir, PathBuf) {
    export_with(case, &ExportOptions::default())
}

fn export_with(case: &str, opts: &ExportOptions) -> (tempfile::TempDir, PathBuf) {
    let ckpt = Checkpoint::open(&fixture(case).join("model"), None, None).expect("fixture opens");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let exported = export(&ckpt, &[Head::CausalLm], &out, opts).expect("fixture exports");
    let path = exported[0].path.clone();
    (dir, path)
}

fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> Option<Box<dyn Runtime>> {
    common::open_runtime(kind, opts)
}

fn read_i64(st: &SafeTensors<'_>, name: &str) -> ArrayD<i64> {
    let t = st.tensor(name).expect(name);
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    let data = t
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    ArrayD::from_shape_vec(IxDyn(t.shape()), data).expect(name)
}

fn read_f32(st: &SafeTensors<'_>, name: &str) -> ArrayD<f32> {
    let t = st.tensor(name).expect(name);
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    ArrayD::from_shape_vec(IxDyn(t.shape()), data).expect(name)
}

/// The causal-LM logits of fixture `case` match the reference within its tolerance, at the
/// positions the attention mask keeps; prints the measured max abs error.
fn check_logits(kind: RuntimeKind, case: &str) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let (_dir, path) = export_causal_lm(case);
    let mut model = rt.load(&path).expect("graph loads");
    let err = compare_logits(model.as_mut(), case);
    println!(
        "{case} on {} ({}): max abs error {err:.3e}",
        kind.name(),
        model.provider()
    );
}

fn compare_logits(model: &mut dyn LoadedModel, case: &str) -> f32 {
    let dir = fixture(case);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
            .expect("manifest parses");
    let atol = manifest["tolerance"]["atol"].as_f64().expect("atol") as f32;
    let rtol = manifest["tolerance"]["rtol"].as_f64().expect("rtol") as f32;
    let exclude_padded = manifest["padded_positions"].as_str() == Some("exclude");

    let inputs_bytes = std::fs::read(dir.join("inputs.safetensors")).expect("inputs");
    let inputs = SafeTensors::deserialize(&inputs_bytes).expect("inputs parse");
    let ids = read_i64(&inputs, "input_ids");
    let mask = read_i64(&inputs, "attention_mask");
    let expected_bytes = std::fs::read(dir.join("expected.safetensors")).expect("expected");
    let expected = SafeTensors::deserialize(&expected_bytes).expect("expected parses");
    let want = read_f32(&expected, "causal-lm/logits");

    let (ids_t, mask_t) = (Tensor::from(ids), Tensor::from(mask.clone()));
    let outputs = model
        .run(&[("input_ids", &ids_t), ("attention_mask", &mask_t)])
        .expect("runs");
    let (name, got) = outputs
        .iter()
        .find(|(n, _)| n == "logits")
        .expect("a logits output");
    let got = got.as_f32().expect("float32 logits");
    assert_eq!(got.shape(), want.shape(), "{name} shape");

    let (mut max_err, mut compared, mut bad) = (0f32, 0usize, Vec::new());
    for (ix, (&g, &e)) in got
        .indexed_iter()
        .zip(want.iter())
        .map(|((ix, g), e)| (ix, (g, e)))
    {
        if exclude_padded && mask[[ix[0], ix[1]]] == 0 {
            continue;
        }
        compared += 1;
        let d = (g - e).abs();
        max_err = max_err.max(d);
        if d.is_nan() || d > atol + rtol * e.abs() {
            bad.push(format!("{ix:?}: {g} vs {e}"));
        }
    }
    assert!(compared > 0, "no position compared");
    assert!(
        bad.is_empty(),
        "{} of {compared} values outside atol {atol} + rtol {rtol} (max abs error {max_err:e}); first: {}",
        bad.len(),
        bad[..bad.len().min(5)].join(", ")
    );
    max_err
}

fn causal_lm_logits(kind: RuntimeKind) {
    check_logits(kind, "causal-lm");
}

/// Weights in `causal-lm.onnx.data` resolve beside the model, whatever the current directory.
fn external_data_logits(kind: RuntimeKind) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let opts = ExportOptions {
        weights_file: WeightsFile::External,
        ..Default::default()
    };
    let (_dir, path) = export_with("causal-lm", &opts);
    assert!(
        path.with_extension("onnx.data").is_file(),
        "weights written apart"
    );
    let mut model = rt.load(&path).expect("graph with external data loads");
    let err = compare_logits(model.as_mut(), "causal-lm");
    println!(
        "causal-lm (external data) on {}: max abs error {err:.3e}",
        kind.name()
    );
}

fn padded_batch_logits(kind: RuntimeKind) {
    check_logits(kind, "padded-batch");
}

fn non_onnx_file_is_a_load_error(kind: RuntimeKind) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-model.onnx");
    std::fs::write(&path, b"this is not a protobuf \xff\xff\xff\xff").expect("write");
    match rt.load(&path) {
        Err(RuntimeError::Load {
            path: p,
            source: reason,
            ..
        }) => {
            assert!(p.contains("not-a-model.onnx"), "{p}");
            println!("{}: {reason}", kind.name());
        }
        Err(e) => panic!("expected a Load error, got {e}"),
        Ok(_) => panic!("a non-ONNX file loaded"),
    }
}

fn wrong_input_names_are_a_run_error(kind: RuntimeKind) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let (_dir, path) = export_causal_lm("causal-lm");
    let mut model = rt.load(&path).expect("graph loads");
    let ids = Tensor::from(ArrayD::<i64>::zeros(IxDyn(&[1, 4])));
    match model.run(&[("tokens", &ids), ("attention_mask", &ids)]) {
        Err(RuntimeError::Run { source, .. }) => {
            let reason = source.to_string();
            assert!(
                reason.contains("tokens") && reason.contains("input_ids"),
                "{reason}"
            );
        }
        Err(e) => panic!("expected a Run error, got {e}"),
        Ok(_) => panic!("ran with an unknown input name"),
    }
}

/// A token id past the vocabulary fails the run (a Gather out of bounds), without a panic.
fn out_of_range_token_is_a_run_error(kind: RuntimeKind) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let (_dir, path) = export_causal_lm("causal-lm");
    let mut model = rt.load(&path).expect("graph loads");
    let ids = Tensor::from(ArrayD::<i64>::from_elem(IxDyn(&[1, 4]), 100_000));
    let mask = Tensor::from(ArrayD::<i64>::ones(IxDyn(&[1, 4])));
    match model.run(&[("input_ids", &ids), ("attention_mask", &mask)]) {
        Err(RuntimeError::Run { source, .. }) => println!("{}: {source}", kind.name()),
        Err(e) => panic!("expected a Run error, got {e}"),
        Ok(_) => panic!("ran with token ids past the vocabulary"),
    }
}

/// A float input of the wrong type or rank is refused before the runtime sees it, naming the
/// input, what the graph declares and what was given.
fn wrong_input_type_is_a_run_error(kind: RuntimeKind) {
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let (_dir, path) = export_causal_lm("causal-lm");
    let mut model = rt.load(&path).expect("graph loads");
    let names: Vec<&str> = model.inputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask"]);
    let ids = Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 4])));
    let mask = Tensor::from(ArrayD::<i64>::ones(IxDyn(&[1, 4, 1])));
    for (feed, want) in [
        (
            [("input_ids", &ids), ("attention_mask", &mask)],
            "input `input_ids`: expected input_ids int64 [batch, sequence], found float32 [1, 4]",
        ),
        (
            [("input_ids", &mask), ("attention_mask", &mask)],
            "input `input_ids`: expected input_ids int64 [batch, sequence], found int64 [1, 4, 1]",
        ),
    ] {
        match model.run(&feed) {
            Err(RuntimeError::Run { source, .. }) => {
                let reason = source.to_string();
                assert!(reason.ends_with(want), "{reason}")
            }
            Err(e) => panic!("expected a Run error, got {e}"),
            Ok(_) => panic!("ran with a wrong input"),
        }
    }
}

/// Float32 and float16 inputs go in, and each output comes back in the graph's own type:
/// `sum` = x + y in float32 (exact for these values), `half` = Cast(x → float16), `ids` the
/// int64 input passed through. Values are exactly representable, so the expectations are the
/// inputs themselves.
fn float_inputs_and_typed_outputs(kind: RuntimeKind) {
    use igpt_onnx::onnx::builder::attr_int;
    use igpt_onnx::onnx::proto::data_type;
    use igpt_onnx::onnx::{DataType, Dim, Op};
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("typed.onnx");
    let kv = [
        Dim::Symbol("batch"),
        Dim::Fixed(2),
        Dim::Symbol("past_sequence"),
        Dim::Fixed(3),
    ];
    common::write_handmade(&path, None, |g| {
        let x = g.input("past_key_values.0.key", DataType::Float32, &kv);
        let y = g.input("y", DataType::Float16, &kv);
        let ids = g.input(
            "input_ids",
            DataType::Int64,
            &[Dim::Symbol("batch"), Dim::Symbol("sequence")],
        );
        let y32 = g.op(
            Op::Cast,
            "y32",
            &[&y],
            vec![attr_int("to", data_type::FLOAT as i64)],
        );
        let sum = g.op(Op::Add, "sum", &[&x, &y32], vec![]);
        let half = g.op(
            Op::Cast,
            "half",
            &[&x],
            vec![attr_int("to", data_type::FLOAT16 as i64)],
        );
        let same = g.op(Op::Identity, "ids", &[&ids], vec![]);
        g.output(&sum, DataType::Float32, &kv);
        g.output(&half, DataType::Float16, &kv);
        g.output(
            &same,
            DataType::Int64,
            &[Dim::Symbol("batch"), Dim::Symbol("sequence")],
        );
    });
    let mut model = rt.load(&path).expect("loads");
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 2, 4, 3]), |ix| (ix[2] * 3 + ix[3]) as f32 * 0.5);
    let y = x.mapv(|v| half::f16::from_f32(-v));
    let ids = ArrayD::from_shape_fn(IxDyn(&[1, 5]), |ix| ix[1] as i64 + 7);
    let (xt, yt, it) = (
        Tensor::from(x.clone()),
        Tensor::from(y),
        Tensor::from(ids.clone()),
    );
    let out = model
        .run(&[
            ("y", &yt),
            ("input_ids", &it),
            ("past_key_values.0.key", &xt),
        ])
        .expect("runs");
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sum", "half", "ids"]);
    assert_eq!(
        out[0].1,
        Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 2, 4, 3])))
    );
    assert_eq!(out[1].1, Tensor::from(x.mapv(half::f16::from_f32)));
    assert_eq!(out[2].1, Tensor::from(ids));
}

/// A Transpose whose `perm` repeats an axis made tract allocate without bound while planning
/// (4 GiB and growing, then the OOM killer); ONNX Runtime refused it. Every runtime now
/// refuses it at load, naming the node, before the runtime sees it.
fn transpose_with_repeated_axis_is_refused(kind: RuntimeKind) {
    use igpt_onnx::onnx::builder::attr_ints;
    use igpt_onnx::onnx::{DataType, Dim, Op};
    let Some(rt) = open(kind, &RuntimeOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("transpose.onnx");
    let bs = [Dim::Symbol("batch"), Dim::Symbol("sequence")];
    common::write_handmade(&path, None, |g| {
        let x = g.input("x", DataType::Float32, &bs);
        let t = g.op(Op::Transpose, "t", &[&x], vec![attr_ints("perm", &[0, 0])]);
        g.output(&t, DataType::Float32, &bs);
    });
    match rt.load(&path) {
        Err(RuntimeError::Load { source, .. }) => assert_eq!(
            source.to_string(),
            "malformed graph: node `t` (Transpose): perm [0, 0] is not a permutation of 0..2"
        ),
        Err(e) => panic!("expected a Load error, got {e}"),
        Ok(_) => panic!("a malformed graph loaded"),
    }
}

/// One `#[test]` per runtime for each body.
macro_rules! on_every_runtime {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            use igpt_onnx::runtime::RuntimeKind;
            #[test]
            fn ort_cpu() {
                super::$body(RuntimeKind::OrtCpu)
            }
            #[test]
            fn tract() {
                super::$body(RuntimeKind::Tract)
            }
        }
    )*};
}

on_every_runtime!(
    causal_lm_logits,
    padded_batch_logits,
    external_data_logits,
    out_of_range_token_is_a_run_error,
    non_onnx_file_is_a_load_error,
    wrong_input_names_are_a_run_error,
    wrong_input_type_is_a_run_error,
    float_inputs_and_typed_outputs,
    transpose_with_repeated_axis_is_refused,
);

/// Without a usable CUDA provider, `ort-cuda` is an error naming CUDA, never a silent CPU run.
/// (With one, it must report the CUDA provider.)
#[test]
fn ort_cuda_without_fallback_never_runs_on_cpu() {
    if open(RuntimeKind::OrtCpu, &RuntimeOptions::default()).is_none() {
        return;
    }
    let (_dir, path) = export_causal_lm("causal-lm");
    let loaded = runtime::open(RuntimeKind::OrtCuda, &RuntimeOptions::default())
        .and_then(|rt| rt.load(&path));
    match loaded {
        Ok(model) => assert_eq!(model.provider(), "CUDAExecutionProvider"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("CUDA"), "{msg}");
            println!("ort-cuda: {msg}");
        }
    }
}

/// With fallback allowed, `ort-cuda` runs; on a machine without CUDA it says it fell back, and
/// the numbers still match.
#[test]
fn ort_cuda_with_fallback_reports_it() {
    let opts = RuntimeOptions {
        allow_fallback: true,
        ..Default::default()
    };
    let Some(rt) = open(RuntimeKind::OrtCuda, &opts) else {
        return;
    };
    let (_dir, path) = export_causal_lm("causal-lm");
    let mut model = rt.load(&path).expect("loads with fallback");
    let provider = model.provider();
    assert!(
        provider == "CUDAExecutionProvider"
            || provider == "CPUExecutionProvider (fallback from CUDAExecutionProvider)",
        "{provider}"
    );
    let err = compare_logits(model.as_mut(), "causal-lm");
    println!("causal-lm on ort-cuda ({provider}): max abs error {err:.3e}");
}

#[test]
fn explicit_library_path_that_is_missing_is_reported() {
    let opts = RuntimeOptions {
        ort_lib: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
        ..Default::default()
    };
    let err = runtime::ort::discover_library(&opts)
        .expect_err("a missing file is an error")
        .to_string();
    assert!(
        err.contains("--ort-lib") && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(err.contains("setup.sh"), "{err}");
}
