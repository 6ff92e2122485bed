//! `verify` passes when it should and fails when it should: the golden suite on every runtime,
//! a perturbed weight caught and located, broken graphs given a clear verdict, bad input refused
//! with exit code 2.

use crate::common;

use std::path::Path;

use common::{cli, copy_dir, export_head, fixture, perturbed_base_hidden, require_ort_under_ci};
use igpt_onnx::graph::Profile;
use igpt_onnx::onnx::builder::attr_int;
use igpt_onnx::onnx::proto::{data_type, ModelProto, NodeProto, OperatorSetIdProto};
use igpt_onnx::onnx::{DataType, Dim, GraphBuilder, Op};
use igpt_onnx::runtime::RuntimeKind;
use igpt_onnx::verify::compare::Status;
use igpt_onnx::verify::options::OutputTolerance;
use igpt_onnx::verify::report::{CheckStatus, Report};
use igpt_onnx::verify::{self, VerifyOptions};
use igpt_onnx::Head;
use safetensors::SafeTensors;

fn fixtures_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[test]
fn golden_suite_passes_on_every_runtime() {
    let report = verify::golden_suite(&fixtures_root(), &VerifyOptions::default()).expect("suite");
    require_ort_under_ci(&report);
    let failures: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status != CheckStatus::Pass)
        .map(|c| format!("{} {} {}: {:?}", c.case, c.head, c.runtime, c.error))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // Every head of every case, on each available runtime: 12 cases with 2 heads, base-hidden
    // with 1, and kv-cache's decoder step on top of its reference past (26 graphs); plus, on
    // the 11 causal-LM cases, the decoder as a prompt and single steps against the full
    // forward.
    let runtimes = report.runtimes.iter().filter(|r| r.available).count();
    assert_eq!(report.checks.len(), (26 + 11) * runtimes);
    let stepwise: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.head.starts_with("decoder (") && c.case == "padded-batch")
        .map(|c| c.head.as_str())
        .collect();
    assert_eq!(stepwise, vec!["decoder (16 + 4 steps)"; runtimes]);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let decoder: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.head == "decoder")
        .flat_map(|c| c.outputs.iter().map(|o| o.name.as_str()))
        .collect();
    let one_runtime = [
        "logits",
        "present.0.key",
        "present.0.value",
        "present.1.key",
        "present.1.value",
    ];
    assert_eq!(decoder, one_runtime.repeat(runtimes));
    for c in &report.checks {
        for o in &c.outputs {
            let m = o.comparison.metrics.as_ref().expect("metrics");
            // Float32 against the reference lands near 1e-6; the budget is 1e-4.
            assert!(
                m.max_abs < 1e-5,
                "{} {} {} {}: {}",
                c.case,
                c.head,
                c.runtime,
                o.name,
                m.max_abs
            );
            if o.name == "logits" && c.head != "classifier" {
                assert_eq!(m.argmax_agreement, Some(1.0));
            }
        }
    }
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn perturbed_weight_fails_and_names_the_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = perturbed_base_hidden(tmp.path());
    let graph = export_head(&model, Head::Base, &tmp.path().join("out"), true);
    let report =
        verify::model_against_case(&graph, &fixture("base-hidden"), &VerifyOptions::default())
            .expect("runs");
    require_ort_under_ci(&report);
    assert!(!report.checks.is_empty());
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Fail, "{}: {:?}", c.runtime, c.error);
        assert_eq!(
            c.first_divergent_layer.as_deref(),
            Some("hidden_states.2: block h.1"),
            "{}",
            c.runtime
        );
        let status = |name: &str| {
            c.outputs
                .iter()
                .find(|o| o.name == name)
                .map(|o| o.comparison.status)
        };
        // Blocks before h.1 are untouched; everything after diverges.
        assert_eq!(status("hidden_states.1"), Some(Status::Pass));
        assert_eq!(status("hidden_states.2"), Some(Status::Fail));
        assert_eq!(status("last_hidden_state"), Some(Status::Fail));
    }
    assert_eq!(report.exit_code(), 1);
    assert!(report
        .to_text()
        .contains("first divergence: hidden_states.2: block h.1"));
}

/// Writes a hand-made graph with `inputs`, whose `logits` output is built by `body`.
fn write_graph(
    path: &Path,
    inputs: [&str; 2],
    body: impl FnOnce(&mut GraphBuilder<'static>, &str) -> String,
    head: &str,
) {
    common::write_handmade(path, Some(head), |g| {
        let bs = [Dim::Symbol("batch"), Dim::Symbol("sequence")];
        let ids = g.input(inputs[0], DataType::Int64, &bs);
        g.input(inputs[1], DataType::Int64, &bs);
        let out = body(g, &ids);
        g.output(&out, DataType::Float32, &bs);
    });
}

fn check(report: &Report) -> &igpt_onnx::verify::report::Check {
    report.checks.first().expect("one check at least")
}

#[test]
fn wrong_output_shape_is_a_shape_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("causal-lm.onnx");
    // `logits` = float(input_ids): [batch, sequence] instead of [batch, sequence, 512].
    write_graph(
        &path,
        ["input_ids", "attention_mask"],
        |g, ids| {
            g.op(
                Op::Cast,
                "logits",
                &[ids],
                vec![attr_int("to", data_type::FLOAT as i64)],
            )
        },
        "causal-lm",
    );
    let report =
        verify::model_against_case(&path, &fixture("causal-lm"), &VerifyOptions::default())
            .expect("runs");
    let c = check(&report);
    assert_eq!(c.status, CheckStatus::Fail);
    let o = &c.outputs[0];
    assert_eq!(o.comparison.status, Status::ShapeMismatch);
    assert_eq!(o.comparison.expected_shape, vec![2, 32, 512]);
    assert_eq!(o.comparison.actual_shape, vec![2, 32]);
    assert!(report
        .to_text()
        .contains("logits: shape mismatch: expected [2, 32, 512], got [2, 32]"));
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn graph_that_fails_to_load_is_an_error_verdict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("causal-lm.onnx");
    write_graph(
        &path,
        ["input_ids", "attention_mask"],
        |g, ids| {
            g.nodes.push(NodeProto {
                input: vec![ids.to_string()],
                output: vec!["logits".into()],
                name: "bogus".into(),
                op_type: "NoSuchOp".into(),
                ..Default::default()
            });
            "logits".into()
        },
        "causal-lm",
    );
    let report =
        verify::model_against_case(&path, &fixture("causal-lm"), &VerifyOptions::default())
            .expect("runs");
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Error, "{}", c.runtime);
        let e = c.error.as_deref().unwrap_or_default();
        assert!(e.contains("NoSuchOp"), "{}: {e}", c.runtime);
    }
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let not_onnx = t.join("notes.onnx");
    std::fs::write(&not_onnx, "this is not a model\n").expect("write");
    let renamed = t.join("renamed.onnx");
    write_graph(
        &renamed,
        ["ids", "mask"],
        |g, ids| {
            g.op(
                Op::Cast,
                "logits",
                &[ids],
                vec![attr_int("to", data_type::FLOAT as i64)],
            )
        },
        "causal-lm",
    );
    let good = export_head(
        &fixture("causal-lm").join("model"),
        Head::CausalLm,
        &t.join("good"),
        false,
    );
    let truncated = t.join("truncated.onnx");
    let bytes = std::fs::read(&good).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let case = fixture("causal-lm");
    let case = case.to_str().expect("utf-8 path");

    let cases: [(&Path, &str); 3] = [
        (&not_onnx, "is not an ONNX model (protobuf decode failed"),
        (
            &renamed,
            "case causal-lm cannot feed graph input `ids` for the causal-lm head (it has attention_mask, input_ids)",
        ),
        (&truncated, "is not an ONNX model (protobuf decode failed"),
    ];
    for (model, needle) in cases {
        let model = model.to_str().expect("utf-8 path");
        let (code, _, stderr) = cli(&["verify", "--model", model, "--fixture", case]);
        assert_eq!(code, 2, "{model}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{stderr}"
        );
    }

    // Out-of-range token ids in a fixture's inputs.
    let bad_case = t.join("cases").join("short-seq");
    copy_dir(&fixture("short-seq"), &bad_case);
    let ipath = bad_case.join("inputs.safetensors");
    let bytes = std::fs::read(&ipath).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("valid");
    let mut ids = st.tensor("input_ids").expect("ids").data().to_vec();
    ids[8..16].copy_from_slice(&600i64.to_le_bytes());
    let mask = st.tensor("attention_mask").expect("mask");
    let views = vec![
        (
            "input_ids",
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1, 7], &ids)
                .expect("view"),
        ),
        ("attention_mask", mask),
    ];
    safetensors::serialize_to_file(views, None, &ipath).expect("write");
    let root = t.join("cases");
    let (code, _, stderr) = cli(&["verify", "--fixtures", root.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "inputs.safetensors: token id 600 at [0, 1] is out of range [0, 513) (vocab_size)"
        ),
        "{stderr}"
    );
}

#[test]
fn reports_are_written_as_json_and_junit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = export_head(
        &fixture("classifier").join("model"),
        Head::Classifier,
        tmp.path(),
        false,
    );
    let json = tmp.path().join("report.json");
    let junit = tmp.path().join("report.xml");
    let (code, stdout, stderr) = cli(&[
        "verify",
        "--model",
        graph.to_str().expect("utf-8"),
        "--fixture",
        fixture("classifier").to_str().expect("utf-8"),
        "--runtimes",
        "tract",
        "--json",
        json.to_str().expect("utf-8"),
        "--junit",
        junit.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("verify: PASS: 1 passed, 0 failed, 0 errors"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid JSON");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["verdict"], "pass");
    let out = &v["checks"][0]["outputs"][0];
    assert_eq!(out["name"], "logits");
    assert_eq!(out["expected_shape"], serde_json::json!([2, 5]));
    assert!(out["metrics"]["max_abs"].as_f64().expect("number") < 1e-5);
    assert_eq!(out["tolerance"]["atol"], 1e-4);
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("<testsuite name=\"classifier\" tests=\"1\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase classname=\"classifier\" name=\"classifier on tract\""),
        "{xml}"
    );
}

#[test]
fn random_inputs_compare_runtimes_pairwise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = export_head(
        &fixture("padded-batch").join("model"),
        Head::CausalLm,
        tmp.path(),
        false,
    );
    let report = verify::random_inputs(&graph, 2, &VerifyOptions::default()).expect("runs");
    require_ort_under_ci(&report);
    let available = report.runtimes.iter().filter(|r| r.available).count();
    // Each input set: every pair of runtimes.
    assert_eq!(report.checks.len(), 2 * available * (available - 1) / 2);
    for c in &report.checks {
        assert_eq!(c.reference, "ort-cpu");
        // Every row names the graph's head (it used to say `-`).
        assert_eq!(c.head, "causal-lm");
        assert_eq!(c.status, CheckStatus::Pass);
        let m = c.outputs[0].comparison.metrics.as_ref().expect("metrics");
        assert!(m.max_abs < 1e-4, "{}", m.max_abs);
    }
}

#[test]
fn other_output_dtype_is_a_dtype_mismatch() {
    use igpt_onnx::onnx::proto::{type_proto, NodeProto};
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = igpt_onnx::Checkpoint::open(&fixture("short-seq").join("model"), None, None)
        .expect("opens");
    let mut built =
        igpt_onnx::graph::build(&ckpt, Head::CausalLm, Profile::Portable, Default::default())
            .expect("builds");
    // The real graph, with its logits cast to int64 on the way out.
    let last = built
        .graph
        .node
        .iter_mut()
        .find(|n| n.output == ["logits"])
        .expect("logits node");
    last.output = vec!["logits.f32".into()];
    built.graph.node.push(NodeProto {
        input: vec!["logits.f32".into()],
        output: vec!["logits".into()],
        name: "logits.cast".into(),
        op_type: "Cast".into(),
        attribute: vec![attr_int("to", data_type::INT64 as i64)],
        ..Default::default()
    });
    if let Some(type_proto::Value::TensorType(t)) = built.graph.output[0]
        .r#type
        .as_mut()
        .and_then(|t| t.value.as_mut())
    {
        t.elem_type = Some(data_type::INT64);
    }
    let path = tmp.path().join("causal-lm.onnx");
    common::write_graph_proto(&path, &built.graph, &built.initializers, &[]);
    let report =
        verify::model_against_case(&path, &fixture("short-seq"), &VerifyOptions::default())
            .expect("runs");
    require_ort_under_ci(&report);
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Fail, "{}: {:?}", c.runtime, c.error);
        let o = &c.outputs[0];
        assert_eq!((o.name.as_str(), o.dtype.as_str()), ("logits", "int64"));
        assert_eq!(o.comparison.status, Status::DtypeMismatch, "{}", c.runtime);
        // The cast values are still measured: truncation moves them by up to 1.
        let m = o.comparison.metrics.as_ref().expect("metrics");
        assert!(m.max_abs > 0.01 && m.max_abs < 1.0, "{}", m.max_abs);
    }
    assert!(report
        .to_text()
        .contains("logits: dtype mismatch: expected float32, the graph gives int64"));
    assert_eq!(report.exit_code(), 1);
}

/// Writes a graph with a causal-lm export card whose `igpt_onnx.config` is `config`.
fn graph_with_config(path: &Path, config: &str) {
    let ckpt = igpt_onnx::Checkpoint::open(&fixture("short-seq").join("model"), None, None)
        .expect("opens");
    let built =
        igpt_onnx::graph::build(&ckpt, Head::CausalLm, Profile::Portable, Default::default())
            .expect("builds");
    let mut card = common::card_for("causal-lm");
    for (k, v) in card.iter_mut() {
        if k == "igpt_onnx.config" {
            *v = config.to_string();
        }
    }
    let meta: Vec<(&str, &str)> = card.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::write_graph_proto(path, &built.graph, &built.initializers, &meta);
}

/// Hardening: a `vocab_size` of 0 or 1 (no token besides SOS) in the graph's card made
/// `--random-inputs` panic (a remainder by zero); now the card's one-line error, exit 2, like
/// any other wrong entry of the card.
#[test]
fn random_inputs_refuse_a_vocabulary_without_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (config, want) in [
        (
            r#"{"vocab_size": 1, "n_positions": 32}"#,
            "config field `vocab_size`: 1 leaves no colour tokens",
        ),
        (
            r#"{"vocab_size": 0, "n_positions": 32}"#,
            "config field `vocab_size`: 0 must be a positive integer",
        ),
        (
            r#"{"vocab_size": 513, "n_positions": 1e30}"#,
            "not a config JSON object (invalid type: floating point `1e+30`, expected i64 at line 1 column 39)",
        ),
    ] {
        let path = tmp.path().join("causal-lm.onnx");
        graph_with_config(&path, config);
        let model = path.to_str().expect("utf-8");
        let (code, stdout, stderr) = cli(&["verify", "--model", model, "--random-inputs", "1"]);
        assert_eq!(code, 2, "{config}: {stdout}{stderr}");
        assert_eq!(
            stderr,
            format!("error: {model}: metadata igpt_onnx.config: {want}\n"),
            "{config}"
        );
    }
}

/// Writes `base` with one initializer header whose dims are `dims`.
fn graph_with_initializer_dims(path: &Path, dims: Vec<i64>) {
    use igpt_onnx::onnx::proto::{GraphProto, TensorProto};
    use prost::Message;
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "huge".into(),
            initializer: vec![TensorProto {
                dims,
                data_type: Some(data_type::FLOAT),
                name: "wte.weight".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).expect("write");
}

/// Hardening: an initializer of dims [2^40, 2^40] overflowed the size sum in `inspect` (a
/// panic in debug builds, a wrapped number in release); a negative dim was counted as 0. Now an
/// error naming the tensor, exit 2, from `inspect` and from `verify` alike.
#[test]
fn initializer_sizes_that_overflow_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = fixture("causal-lm");
    for dims in [vec![1i64 << 40, 1 << 40], vec![-4, 8]] {
        let path = tmp.path().join("huge.onnx");
        graph_with_initializer_dims(&path, dims.clone());
        let p = path.to_str().expect("utf-8");
        let want = format!(
            "error: {p}: initializer `wte.weight` has dims {dims:?}, whose size is negative or overflows\n"
        );
        let (code, _, stderr) = cli(&["inspect", p]);
        assert_eq!((code, stderr.as_str()), (2, want.as_str()));
        let (code, _, stderr) = cli(&[
            "verify",
            "--model",
            p,
            "--fixture",
            case.to_str().expect("utf-8"),
        ]);
        assert_eq!((code, stderr.as_str()), (2, want.as_str()));
    }
}

/// Hardening: a case's manifest `name` became a folder of the suite's temporary tree, so
/// `../x` wrote outside it. Now the case is refused, naming the field.
#[test]
fn manifest_name_must_be_a_plain_folder_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = tmp.path().join("cases").join("short-seq");
    copy_dir(&fixture("short-seq"), &case);
    let mpath = case.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).expect("read")).expect("json");
    m["name"] = "../../escaped".into();
    std::fs::write(&mpath, serde_json::to_string(&m).expect("json")).expect("write");
    let root = tmp.path().join("cases");
    let (code, stdout, stderr) = cli(&["verify", "--fixtures", root.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: invalid manifest {}: `name` \"../../escaped\" is not a plain folder name (letters, digits, `.`, `_`, `-`)\n",
            mpath.display()
        )
    );
}

/// A decoder-style graph with float `past_key_values.*` inputs goes through `verify` like any
/// other: fed from the kv-cache case (ids and mask from its `decoder.*` step, the past from the
/// past goldens, `position_ids` after the past) and judged against goldens. The case's
/// `decoder` goldens are narrowed to what this stand-in computes: `present.{i}.{k}` = 2 ·
/// past (the reference's past, doubled here), and `positions` = the reference's positions for
/// one step after a 9-token prefix, which HF ImageGPT derives as `arange(9, 10)`.
#[test]
fn float_inputs_flow_through_verify() {
    use igpt_onnx::onnx::Dim;
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = tmp.path().join("kv");
    copy_dir(&fixture("kv-cache"), &case);
    let epath = case.join("expected.safetensors");
    let mut tensors = common::read_safetensors(&epath);
    let mut outputs = vec![];
    let mut extra = vec![];
    for (name, dtype, shape, bytes) in &tensors {
        if let Some(rest) = name.strip_prefix("decoder/past_key_values.") {
            let doubled: Vec<u8> = bytes
                .chunks_exact(4)
                .flat_map(|b| (2.0 * f32::from_le_bytes(b.try_into().expect("4"))).to_le_bytes())
                .collect();
            outputs.push(format!("past_key_values.{rest}"));
            outputs.push(format!("present.{rest}"));
            extra.push((
                format!("decoder/present.{rest}"),
                *dtype,
                shape.clone(),
                doubled,
            ));
        }
    }
    tensors.retain(|(n, ..)| !n.starts_with("decoder/present.") && n != "decoder/logits");
    tensors.extend(extra);
    let nine: Vec<u8> = [9.0f32, 9.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    tensors.push((
        "decoder/positions".into(),
        safetensors::Dtype::F32,
        vec![2, 1],
        nine,
    ));
    outputs.push("positions".into());
    common::write_safetensors(&epath, &tensors);
    let mpath = case.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).expect("read")).expect("json");
    m["outputs"]["decoder"] = outputs.into();
    std::fs::write(&mpath, serde_json::to_string(&m).expect("json")).expect("write");

    let path = tmp.path().join("decoder.onnx");
    let bs = [Dim::Symbol("batch"), Dim::Symbol("sequence")];
    let kv = [
        Dim::Symbol("batch"),
        Dim::Fixed(4),
        Dim::Symbol("past_sequence"),
        Dim::Fixed(8),
    ];
    common::write_handmade(&path, Some("decoder"), |g| {
        g.input("input_ids", DataType::Int64, &bs);
        g.input(
            "attention_mask",
            DataType::Int64,
            &[
                Dim::Symbol("batch"),
                Dim::Symbol("past_sequence + sequence"),
            ],
        );
        let pos = g.input("position_ids", DataType::Int64, &bs);
        for i in 0..2 {
            for k in ["key", "value"] {
                let past = g.input(&format!("past_key_values.{i}.{k}"), DataType::Float32, &kv);
                let out = g.op(Op::Add, format!("present.{i}.{k}"), &[&past, &past], vec![]);
                g.output(&out, DataType::Float32, &kv);
            }
        }
        let p = g.op(
            Op::Cast,
            "positions",
            &[&pos],
            vec![attr_int("to", data_type::FLOAT as i64)],
        );
        g.output(&p, DataType::Float32, &bs);
    });
    let report = verify::model_against_case(&path, &case, &VerifyOptions::default()).expect("runs");
    require_ort_under_ci(&report);
    for c in &report.checks {
        assert_eq!(
            c.status,
            CheckStatus::Pass,
            "{}: {:?} {:?}",
            c.runtime,
            c.error,
            c.missing
        );
        assert_eq!(c.head, "decoder");
        let names: Vec<&str> = c.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "positions",
                "present.0.key",
                "present.0.value",
                "present.1.key",
                "present.1.value"
            ]
        );
        for o in &c.outputs {
            let m = o.comparison.metrics.as_ref().expect("metrics");
            assert_eq!((m.max_abs, m.violations), (0.0, 0), "{}", o.name);
        }
    }
    // Random inputs for the same graph: every input made from its declared type and dims.
    let report = verify::random_inputs(&path, 1, &VerifyOptions::default()).expect("runs");
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Pass, "{:?}", c.error);
    }
}

/// Hardening: tract panics on an Unsqueeze whose axis lies outside the output's rank. The panic
/// was caught and reported, but the default hook had already printed `thread 'main' panicked
/// at …` on stderr. Now stderr stays empty and the report says what happened (exit 1: a graph
/// that fails to load).
#[test]
fn a_caught_tract_panic_prints_nothing_but_the_report() {
    use igpt_onnx::onnx::Dim;
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("causal-lm.onnx");
    let bs = [Dim::Symbol("batch"), Dim::Symbol("sequence")];
    common::write_handmade(&path, Some("causal-lm"), |g| {
        let ids = g.input("input_ids", DataType::Int64, &bs);
        g.input("attention_mask", DataType::Int64, &bs);
        let f = g.op(
            Op::Cast,
            "f",
            &[&ids],
            vec![attr_int("to", data_type::FLOAT as i64)],
        );
        let axes = g.const_i64("axes", &[1], &[-9]);
        let t = g.op(Op::Unsqueeze, "logits", &[&f, &axes], vec![]);
        g.output(&t, DataType::Float32, &bs);
    });
    let (code, stdout, stderr) = cli(&[
        "verify",
        "--model",
        path.to_str().expect("utf-8"),
        "--fixture",
        fixture("causal-lm").to_str().expect("utf-8"),
        "--runtimes",
        "tract",
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(stderr, "");
    assert!(
        stdout.contains("tract panicked: index exceeds length"),
        "{stdout}"
    );
}

/// Clap's own errors span several lines with usage hints; every bad argument is one line.
#[test]
fn bad_arguments_are_one_line() {
    for (args, want) in [
        (
            &["verify", "--runtimes", "tract,foo"][..],
            "error: unknown runtime `foo` (expected ort-cpu, ort-cuda, ort-tensorrt, tract, openvino, ort-python@VERSION or cmd:PROGRAM)\n",
        ),
        (
            &["export", "--weights", "x", "--variant", "huge"][..],
            "error: invalid value 'huge' for '--variant <VARIANT>' [possible values: tiny, small, medium, large]\n",
        ),
        (
            &["verify", "--fixture", "x"][..],
            "error: the following required arguments were not provided: --model <MODEL>\n",
        ),
    ] {
        let (code, stdout, stderr) = cli(args);
        assert_eq!((code, stdout.as_str(), stderr.as_str()), (2, "", want), "{args:?}");
    }
}

/// A decoder that prepends this step's keys to the cache instead of appending them (same
/// shapes, so every runtime runs it) is exact on the prompt, where the past is empty, and
/// wrong from the first single step on: the stepwise check against the full forward fails.
#[test]
fn a_decoder_that_misorders_its_cache_fails_the_stepwise_check() {
    use prost::Message;
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = export_head(
        &fixture("causal-lm").join("model"),
        Head::Decoder,
        tmp.path(),
        false,
    );
    let mut m = ModelProto::decode(std::fs::read(&path).expect("read").as_slice()).expect("decode");
    let graph = m.graph.as_mut().expect("graph");
    let concat = graph
        .node
        .iter_mut()
        .find(|n| n.name == "present.0.key")
        .expect("the layer-0 key cache");
    assert_eq!(concat.input[0], "past_key_values.0.key");
    concat.input.swap(0, 1);
    std::fs::write(&path, m.encode_to_vec()).expect("write");
    let report =
        verify::model_against_case(&path, &fixture("causal-lm"), &VerifyOptions::default())
            .expect("runs");
    require_ort_under_ci(&report);
    assert_eq!(report.exit_code(), 1);
    for c in &report.checks {
        assert_eq!(c.head, "decoder (28 + 4 steps)");
        assert_eq!(c.status, CheckStatus::Fail, "{}: {:?}", c.runtime, c.error);
        let m = c.outputs[0].comparison.metrics.as_ref().expect("metrics");
        assert!(m.max_abs > 1e-2, "{}: {}", c.runtime, m.max_abs);
        // The prompt's 28 positions are exact: only the 4 steps' rows (of 2 x 32) can differ.
        assert!(
            m.violations <= 2 * 4 * 512,
            "{}: {}",
            c.runtime,
            m.violations
        );
    }
}

/// The ort profile's golden suite: every check passes on ONNX Runtime, and tract is reported
/// as not applicable by name, never as a pass; float16, int8 and int4 are judged by their own
/// budgets (cosine, argmax agreement, KL divergence of the logits, flips beyond the tie gap).
#[test]
fn ort_profile_golden_suite_passes_and_tract_is_not_applicable() {
    use igpt_onnx::graph::{Precision, Profile};
    if common::open_runtime(igpt_onnx::runtime::RuntimeKind::OrtCpu, &Default::default()).is_none()
    {
        return;
    }
    for precision in [
        Precision::Float32,
        Precision::Int8,
        Precision::Float16,
        Precision::Int4,
        Precision::Int8Dynamic,
    ] {
        let opts = VerifyOptions {
            profile: Profile::Ort,
            precision,
            ..Default::default()
        };
        let report = verify::golden_suite(&fixtures_root(), &opts).expect("suite");
        assert_eq!(report.exit_code(), 0, "{}", report.to_text());
        for c in &report.checks {
            match c.runtime.as_str() {
                "tract" => {
                    assert_eq!(c.status, CheckStatus::NotApplicable);
                    // The portable profile is offered where it carries the precision.
                    let instead = match precision.fits(Profile::Portable) {
                        true => "export with --profile portable, or run it on",
                        false => "run it on",
                    };
                    // OpenVINO does not convert the contrib ops on float16.
                    let runtimes = match precision == Precision::Float16 {
                        true => "ort-cpu, ort-cuda and ort-tensorrt",
                        false => "ort-cpu, ort-cuda, ort-tensorrt and openvino",
                    };
                    assert_eq!(
                        c.error.as_deref(),
                        Some(format!("tract does not run profile ort: it needs ONNX Runtime contrib ops and causal MultiHeadAttention; {instead} {runtimes}").as_str())
                    );
                }
                _ => assert_eq!(c.status, CheckStatus::Pass, "{} {}", c.case, c.head),
            }
        }
        assert_eq!(report.summary.passed, 37);
        assert_eq!(report.summary.not_applicable, 37);
        let logits = report
            .checks
            .iter()
            .flat_map(|c| &c.outputs)
            .filter(|o| o.name == "logits")
            .filter_map(|o| o.comparison.metrics.as_ref());
        let budget = precision.spec().budget;
        for m in logits {
            let kl = m.kl_divergence.expect("kl measured for logits");
            match precision == Precision::Float32 {
                true => assert!(kl < 1e-9, "{kl}"),
                false => assert!(
                    kl <= budget.max_kl && m.cosine >= budget.min_cosine,
                    "{m:?}"
                ),
            }
            assert_eq!(m.flips_beyond_ties, Some(0), "{} {m:?}", precision.name());
        }
    }
}

/// The portable profile's golden suite at `precision`, passed on every runtime found (ONNX
/// Runtime required under CI): the report and how many runtimes ran.
fn portable_suite_passes(
    precision: igpt_onnx::graph::Precision,
) -> (igpt_onnx::verify::report::Report, usize) {
    let opts = VerifyOptions {
        precision,
        ..Default::default()
    };
    let report = verify::golden_suite(&fixtures_root(), &opts).expect("suite");
    require_ort_under_ci(&report);
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let runtimes = report.runtimes.iter().filter(|r| r.available).count();
    assert_eq!(report.summary.passed, 37 * runtimes);
    (report, runtimes)
}

/// The portable profile's float16 golden suite on both runtimes: every head, the decoder step
/// by step with a float16 cache, within the float16 budget on ONNX Runtime and on tract.
#[test]
fn float16_golden_suite_passes_on_onnx_runtime_and_tract() {
    use igpt_onnx::graph::Precision;
    let (report, runtimes) = portable_suite_passes(Precision::Float16);
    let budget = Precision::Float16.spec().budget;
    let decoders = report
        .checks
        .iter()
        .filter(|c| c.head.starts_with("decoder ("))
        .count();
    assert_eq!(
        decoders,
        11 * runtimes,
        "every causal case's decoder step by step"
    );
    for c in &report.checks {
        for o in &c.outputs {
            let m = o.comparison.metrics.as_ref().expect("metrics");
            // Measured worst: 0.012 (tract), cosine 0.9999988, KL 1.3e-6.
            assert!(
                m.max_abs < 0.02 && m.cosine >= budget.min_cosine,
                "{} {m:?}",
                c.case
            );
            if let Some(kl) = m.kl_divergence {
                assert!(kl < 5e-6, "{} {kl}", c.case);
                assert_eq!(m.flips_beyond_ties, Some(0));
            }
        }
    }
}

/// Dynamic int8 in the portable profile (standard ops: `DynamicQuantizeLinear`, `MatMulInteger`)
/// on both runtimes: every head and the decoder step by step within its budget, no flip beyond
/// the tie gap, and ONNX Runtime (which fuses the ops into `DynamicQuantizeMatMul`) and tract
/// (which runs them as written) within float32 rounding of each other: the integer products
/// are exact, so only the float scaling's last bits can differ.
#[test]
fn dynamic_int8_golden_suite_passes_on_onnx_runtime_and_tract_alike() {
    use igpt_onnx::graph::Precision;
    let (report, runtimes) = portable_suite_passes(Precision::Int8Dynamic);
    let budget = Precision::Int8Dynamic.spec().budget;
    let mut by_check: std::collections::HashMap<(String, String, String), Vec<f64>> =
        Default::default();
    for c in &report.checks {
        for o in &c.outputs {
            let m = o.comparison.metrics.as_ref().expect("metrics");
            // Measured worst: max abs 0.34 (a hidden state), cosine 0.99927, KL 8.4e-4.
            assert!(
                m.max_abs < 0.4 && m.cosine >= budget.min_cosine,
                "{} {m:?}",
                c.case
            );
            if let Some(kl) = m.kl_divergence {
                assert!(kl < 1e-3, "{} {kl}", c.case);
                assert_eq!(m.flips_beyond_ties, Some(0));
            }
            let key = (c.case.clone(), c.head.clone(), o.name.clone());
            by_check.entry(key).or_default().push(m.max_abs);
        }
    }
    if runtimes == 2 {
        for (key, errs) in by_check {
            assert!((errs[0] - errs[1]).abs() < 1e-4, "{key:?}: {errs:?}");
        }
    }
}

/// `--random-inputs` on a decoder compares the runtimes on a random single step (random past)
/// and step by step: a random sequence as a prompt plus single steps, each runtime feeding back
/// its own cache.
#[test]
fn random_inputs_compare_a_decoder_step_by_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = kv_cache(Head::Decoder, tmp.path());
    let report = verify::random_inputs(&path, 2, &VerifyOptions::default()).expect("runs");
    require_ort_under_ci(&report);
    let runtimes = report.runtimes.iter().filter(|r| r.available).count();
    if runtimes < 2 {
        return;
    }
    assert!(report.checks.iter().all(|c| c.head == "decoder"));
    let cases: Vec<&str> = report.checks.iter().map(|c| c.case.as_str()).collect();
    assert_eq!(
        cases,
        [
            "random-0",
            "random-0 decoder (28 + 4 steps)",
            "random-1",
            "random-1 decoder (28 + 4 steps)"
        ]
    );
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    for c in report.checks.iter().filter(|c| c.case.contains("steps")) {
        assert_eq!(c.reference, "ort-cpu");
        let m = c.outputs[0].comparison.metrics.as_ref().expect("metrics");
        assert_eq!(m.compared, 2 * 32 * 512);
        assert!(m.max_abs < 1e-4, "{}", m.max_abs);
    }
}

/// Outputs saved by one run and compared in another give the verdicts and the numbers of a
/// live comparison of the same two runtimes; another graph or other inputs are refused by name.
#[test]
fn saved_outputs_compared_elsewhere_judge_like_a_live_comparison() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = kv_cache(Head::Decoder, &tmp.path().join("out"));
    let other = kv_cache(Head::CausalLm, &tmp.path().join("out"));
    let saved = tmp.path().join("tract.safetensors");
    let opts = |runtimes: Vec<RuntimeKind>| VerifyOptions {
        runtimes,
        ..Default::default()
    };
    let save = VerifyOptions {
        save_outputs: Some(saved.clone()),
        ..opts(vec![RuntimeKind::Tract])
    };
    let first = verify::random_inputs(&model, 2, &save).expect("saves");
    assert_eq!(first.exit_code(), 0, "{}", first.to_text());
    let live = verify::random_inputs(
        &model,
        2,
        &opts(vec![RuntimeKind::OrtCpu, RuntimeKind::Tract]),
    )
    .expect("live");
    require_ort_under_ci(&live);
    if !live.runtimes.iter().all(|r| r.available) {
        return;
    }
    let compare = VerifyOptions {
        compare_with: Some(saved.clone()),
        ..opts(vec![RuntimeKind::OrtCpu])
    };
    let later = verify::random_inputs(&model, 2, &compare).expect("compares");
    // Two sets, each run whole and step by step: four pairs either way.
    assert_eq!(live.checks.len(), 4);
    assert_eq!(later.checks.len(), 4);
    for (l, s) in live.checks.iter().zip(&later.checks) {
        assert_eq!((l.case.as_str(), l.status), (s.case.as_str(), s.status));
        assert_eq!(s.reference, "saved:tract");
        for (lo, so) in l.outputs.iter().zip(&s.outputs) {
            let max = |o: &igpt_onnx::verify::report::OutputCheck| {
                o.comparison
                    .metrics
                    .as_ref()
                    .map(|m| m.max_abs)
                    .unwrap_or(f64::NAN)
            };
            assert_eq!(lo.name, so.name);
            // The same two sets of numbers, compared in the other direction.
            assert!(
                (max(lo) - max(so)).abs() < 1e-12,
                "{}: {} vs {}",
                lo.name,
                max(lo),
                max(so)
            );
        }
    }
    let err = verify::random_inputs(&other, 2, &compare).expect_err("another graph");
    assert!(
        err.to_string().starts_with(&format!(
            "{} holds the outputs of another graph (sha256 ",
            saved.display()
        )),
        "{err}"
    );
    let err = verify::random_inputs(&model, 3, &compare).expect_err("a set it lacks");
    assert!(err.to_string().contains("has no set `random-2`"), "{err}");
}

/// `--tolerance` budgets single outputs by name or pattern (the last match wins), and every
/// output is scanned for NaN and infinities, compared or not.
#[test]
fn per_output_tolerances_and_the_nan_scan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = kv_cache(Head::Decoder, &tmp.path().join("out"));
    let tolerances = |specs: &[&str]| VerifyOptions {
        runtimes: vec![RuntimeKind::OrtCpu, RuntimeKind::Tract],
        per_output: specs
            .iter()
            .map(|s| OutputTolerance::parse(s).expect("spec"))
            .collect(),
        ..Default::default()
    };
    let report = verify::random_inputs(&model, 1, &tolerances(&["present.*=0"])).expect("runs");
    require_ort_under_ci(&report);
    if report.checks.is_empty() {
        return;
    }
    let whole = &report.checks[0];
    for o in &whole.outputs {
        let want = if o.name.starts_with("present.") {
            (0.0, 0.0)
        } else {
            (1e-4, 1e-3)
        };
        assert_eq!((o.tolerance.atol, o.tolerance.rtol), want, "{}", o.name);
    }
    assert_eq!(whole.status, CheckStatus::Fail, "{}", report.to_text());
    let loose = verify::random_inputs(&model, 1, &tolerances(&["present.*=0", "present.*=1e-3"]))
        .expect("runs");
    assert_eq!(loose.exit_code(), 0, "{}", loose.to_text());

    // 0/0 in one output: named in the check, whatever the comparison says.
    let nan = tmp.path().join("nan.onnx");
    write_graph(
        &nan,
        ["input_ids", "attention_mask"],
        |g, ids| {
            let f = g.op(
                Op::Cast,
                "ids_f",
                &[ids],
                vec![attr_int("to", data_type::FLOAT as i64)],
            );
            let zero = g.op(Op::Sub, "zero", &[&f, &f], vec![]);
            g.op(Op::Div, "logits", &[&zero, &zero], vec![])
        },
        "causal-lm",
    );
    let report = verify::random_inputs(&nan, 1, &tolerances(&[])).expect("runs");
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Fail, "{}", c.runtime);
        assert_eq!(
            c.non_finite,
            vec![igpt_onnx::verify::report::NonFinite {
                output: "logits".into(),
                nan: 64,
                inf: 0
            }]
        );
    }
    assert!(report
        .to_text()
        .contains("logits: 64 NaN, 0 infinite values"));
}

/// ONNX Runtime's checks say how many nodes each execution provider ran (from its profile): on
/// the CPU runtime, every node the optimised graph kept, all on `CPUExecutionProvider`.
#[test]
fn onnx_runtime_checks_count_the_nodes_each_provider_ran() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = export_head(
        &fixture("causal-lm").join("model"),
        Head::CausalLm,
        tmp.path(),
        false,
    );
    let report =
        verify::model_against_case(&model, &fixture("causal-lm"), &VerifyOptions::default())
            .expect("runs");
    require_ort_under_ci(&report);
    let nodes = igpt_onnx::onnx::inspect::inspect(&model)
        .expect("inspect")
        .ops
        .values()
        .sum::<usize>();
    for c in &report.checks {
        if c.runtime == "ort-cpu" {
            let cpu = c
                .node_providers
                .get("CPUExecutionProvider")
                .copied()
                .unwrap_or(0);
            assert_eq!(c.node_providers.len(), 1, "{:?}", c.node_providers);
            // Fusion only removes nodes: at least one ran, at most the graph's.
            assert!(cpu > 0 && cpu <= nodes, "{cpu} of {nodes}");
        } else {
            assert!(
                c.node_providers.is_empty(),
                "{}: {:?}",
                c.runtime,
                c.node_providers
            );
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).expect("json")).expect("parse");
    let ort = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["runtime"] == "ort-cpu");
    if let Some(c) = ort {
        assert!(
            c["node_providers"]["CPUExecutionProvider"]
                .as_u64()
                .unwrap_or(0)
                > 0
        );
    }
}

/// `head` of the kv-cache case's checkpoint, exported into `out`.
fn kv_cache(head: Head, out: &Path) -> std::path::PathBuf {
    export_head(&fixture("kv-cache").join("model"), head, out, false)
}

/// `--fixture` takes a folder holding one case as that case (`fixtures/trained` holds
/// `digits`); a folder of several is refused by name.
#[test]
fn a_folder_holding_one_case_is_that_case() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trained = fixture("trained");
    let graph = export_head(
        &trained.join("digits").join("model"),
        Head::CausalLm,
        tmp.path(),
        false,
    );
    let opts = VerifyOptions {
        runtimes: vec![RuntimeKind::OrtCpu],
        ..Default::default()
    };
    let report = verify::model_against_case(&graph, &trained, &opts).expect("the one case");
    require_ort_under_ci(&report);
    for c in &report.checks {
        assert_eq!((c.case.as_str(), c.status), ("digits", CheckStatus::Pass));
        let nll = c.nll.as_ref().expect("the labelled set's NLL");
        assert!(nll.relative_increase.abs() < 1e-5, "{nll:?}");
    }
    let err = verify::model_against_case(&graph, &fixtures_root(), &opts).expect_err("many");
    let cases = verify::fixture::discover(&fixtures_root())
        .expect("cases")
        .len();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a case but holds {cases} of them: name one",
            fixtures_root().display()
        )
    );
}
