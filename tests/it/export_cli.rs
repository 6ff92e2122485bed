//! `igpt-onnx export` on good and bad input, driven through the real binary.
//!
//! Every refusal must be one `error: ` line on stderr naming the problem, exit code 2, no
//! panic, and nothing written: the output folder is listed before and after. The broken
//! checkpoints are fixture copies rewritten with the `safetensors` crate or damaged byte-wise.
//! The positive cases check bytes, file lists, dtypes and provenance, never just "it ran".

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use igpt_onnx::onnx::proto::{data_type, ModelProto, TensorProto};
use igpt_onnx::onnx::DataType;
use prost::Message;
use safetensors::tensor::Dtype;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `fixtures/<case>/model`.
fn fixture_model(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(case)
        .join("model")
}

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn igpt(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .output()
        .expect("run igpt-onnx");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `export --weights W --out O` plus `extra`.
fn export(weights: &Path, out: &Path, extra: &[&str]) -> Run {
    let w = weights.to_str().expect("utf-8 path");
    let o = out.to_str().expect("utf-8 path");
    let mut args = vec!["export", "--weights", w, "--out", o];
    args.extend_from_slice(extra);
    igpt(&args)
}

/// Names in a folder (hidden ones included, so stray temporaries show), or `None` when the
/// folder does not exist.
fn listing(dir: &Path) -> Option<Vec<String>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = entries
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

/// A successful run: exit 0, nothing on stderr.
fn assert_ok(run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "expected success\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stderr, "",
        "a successful export prints nothing on stderr"
    );
}

/// A refusal: exit 2, exactly one stderr line, `error: ` first, no panic. Returns the line.
fn refusal(run: &Run) -> String {
    assert_eq!(
        run.code,
        Some(2),
        "expected exit code 2\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line: {:?}", run.stderr);
    assert!(
        lines[0].starts_with("error: "),
        "stderr line starts with `error: `: {}",
        lines[0]
    );
    assert_eq!(run.stdout, "", "a refusal prints nothing on stdout");
    lines[0].to_string()
}

/// A refusal whose line is exactly `expected`.
fn assert_refused(run: &Run, expected: &str) {
    assert_eq!(refusal(run), expected);
}

/// Runs an export into `out` that must be refused with exactly `expected`, and checks that the
/// folder's listing did not change (or that it still does not exist).
fn assert_export_refused(weights: &Path, out: &Path, extra: &[&str], expected: &str) {
    let before = listing(out);
    let run = export(weights, out, extra);
    assert_refused(&run, expected);
    assert_eq!(listing(out), before, "the output folder changed");
}

/// Like [`assert_export_refused`], for lines that end in an OS or parser message: checks the
/// line's start.
fn assert_export_refused_starting(weights: &Path, out: &Path, extra: &[&str], start: &str) {
    let before = listing(out);
    let line = refusal(&export(weights, out, extra));
    assert!(
        line.starts_with(start),
        "{line}\ndoes not start with\n{start}"
    );
    assert_eq!(listing(out), before, "the output folder changed");
}

/// One tensor, owned.
#[derive(Clone)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn f32_tensor(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn load_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    common::read_safetensors(path)
        .into_iter()
        .map(|(name, dtype, shape, data)| (name, Tensor { dtype, shape, data }))
        .collect()
}

fn save_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>) {
    let flat: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.dtype, t.shape.clone(), t.data.clone()))
        .collect();
    common::write_safetensors(path, &flat);
}

/// A copy of a fixture's model folder under a fresh temp dir: (guard, model dir, out dir).
/// The out dir does not exist yet.
fn copy_fixture(case: &str) -> (TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).expect("mkdir model");
    for entry in std::fs::read_dir(fixture_model(case)).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), model.join(entry.file_name())).expect("copy");
    }
    let out = tmp.path().join("out");
    (tmp, model, out)
}

/// A causal-lm copy whose tensors went through `edit`.
fn edited_checkpoint(
    edit: impl FnOnce(&mut BTreeMap<String, Tensor>),
) -> (TempDir, PathBuf, PathBuf) {
    let (tmp, model, out) = copy_fixture("causal-lm");
    let file = model.join("model.safetensors");
    let mut tensors = load_tensors(&file);
    edit(&mut tensors);
    save_tensors(&file, &tensors);
    (tmp, model, out)
}

/// A causal-lm copy whose config.json went through `edit`.
fn edited_config(edit: impl FnOnce(&mut serde_json::Value)) -> (TempDir, PathBuf, PathBuf) {
    let (tmp, model, out) = copy_fixture("causal-lm");
    let path = model.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(&mut json);
    std::fs::write(&path, json.to_string()).expect("write config");
    (tmp, model, out)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `igpt-onnx inspect FILE`'s output (which must succeed).
fn inspect(path: &Path) -> String {
    let run = igpt(&["inspect", path.to_str().expect("utf-8 path")]);
    assert_ok(&run);
    run.stdout
}

/// The value of `  key: value` in an inspect summary.
fn summary_value<'a>(summary: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    summary
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{key}` in\n{summary}"))
}

fn decode(path: &Path) -> ModelProto {
    ModelProto::decode(&std::fs::read(path).expect("read model")[..]).expect("decodes")
}

fn initializers(model: &ModelProto) -> &[TensorProto] {
    &model.graph.as_ref().expect("graph").initializer
}

fn little_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Corrupt safetensors files

/// A causal-lm copy whose model.safetensors went through `damage`.
fn damaged_file(damage: impl FnOnce(&mut Vec<u8>)) -> (TempDir, PathBuf, PathBuf) {
    let (tmp, model, out) = copy_fixture("causal-lm");
    let file = model.join("model.safetensors");
    let mut bytes = std::fs::read(&file).expect("read");
    damage(&mut bytes);
    std::fs::write(&file, bytes).expect("write");
    (tmp, model, out)
}

fn not_safetensors(model: &Path, reason: &str) -> String {
    format!(
        "error: cannot open checkpoint {}: {}/model.safetensors is not a valid safetensors file ({reason})",
        show(model),
        show(model)
    )
}

#[test]
fn truncated_safetensors_is_refused() {
    let (_t, model, out) = damaged_file(|b| b.truncate(b.len() - 100));
    let want = not_safetensors(
        &model,
        "data size does not match the header: truncated or padded file",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn padded_safetensors_is_refused() {
    let (_t, model, out) = damaged_file(|b| b.extend_from_slice(&[0u8; 16]));
    let want = not_safetensors(
        &model,
        "data size does not match the header: truncated or padded file",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn empty_safetensors_is_refused() {
    let (_t, model, out) = damaged_file(Vec::clear);
    let want = not_safetensors(&model, "file too small for a header");
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn header_garbage_is_refused() {
    // Keep the length prefix, scribble over the JSON header.
    let (_t, model, out) = damaged_file(|b| {
        for (i, byte) in b[8..72].iter_mut().enumerate() {
            *byte = b"#garbage!"[i % 9];
        }
    });
    let start = not_safetensors(&model, "header is not valid JSON metadata: ");
    let start = start.trim_end_matches(')');
    assert_export_refused_starting(&model, &out, &[], start);
}

#[test]
fn header_length_beyond_the_file_is_refused() {
    let (_t, model, out) = damaged_file(|b| b[..8].copy_from_slice(&1_000_000u64.to_le_bytes()));
    let want = not_safetensors(
        &model,
        "header length exceeds the file: truncated or not safetensors",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn absurd_header_length_is_refused() {
    let (_t, model, out) = damaged_file(|b| b[..8].copy_from_slice(&u64::MAX.to_le_bytes()));
    let want = not_safetensors(
        &model,
        "header length is implausibly large: not safetensors",
    );
    assert_export_refused(&model, &out, &[], &want);
}

// ---------------------------------------------------------------------------------------------
// Missing, mis-shaped, wrong-dtype and unexpected tensors

fn cannot_open(model: &Path, why: &str) -> String {
    format!("error: cannot open checkpoint {}: {why}", show(model))
}

#[test]
fn missing_tensor_is_named_as_the_checkpoint_names_it() {
    let (_t, model, out) = edited_checkpoint(|t| {
        t.remove("transformer.h.1.ln_2.weight").expect("present");
    });
    let want = cannot_open(&model, "missing tensor `transformer.h.1.ln_2.weight`");
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn missing_tensor_in_a_bare_model_has_no_prefix() {
    let (_t, model, out) = copy_fixture("base-hidden");
    let file = model.join("model.safetensors");
    let mut tensors = load_tensors(&file);
    tensors.remove("h.2.mlp.c_fc.bias").expect("bare names");
    save_tensors(&file, &tensors);
    let want = cannot_open(&model, "missing tensor `h.2.mlp.c_fc.bias`");
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn config_with_more_layers_than_the_weights_names_the_first_missing_tensor() {
    let (_t, model, out) = edited_config(|c| c["n_layer"] = 3.into());
    let want = cannot_open(&model, "missing tensor `transformer.h.2.ln_1.weight`");
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn misshaped_tensor_is_refused() {
    let (_t, model, out) = edited_checkpoint(|t| {
        let w = t
            .get_mut("transformer.h.0.attn.c_attn.weight")
            .expect("present");
        assert_eq!(w.shape, vec![32, 96]);
        w.shape = vec![96, 32];
    });
    let want = cannot_open(
        &model,
        "tensor `transformer.h.0.attn.c_attn.weight` has shape [96, 32], expected [32, 96]",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn lm_head_with_the_sos_row_is_refused() {
    // A common mistake: vocab_size rows instead of vocab_size - 1.
    let (_t, model, out) = edited_checkpoint(|t| {
        let w = t.get_mut("lm_head.weight").expect("present");
        assert_eq!(w.shape, vec![512, 32]);
        w.shape = vec![513, 32];
        w.data.extend_from_slice(&[0u8; 32 * 4]);
    });
    let want = cannot_open(
        &model,
        "tensor `lm_head.weight` has shape [513, 32], expected [512, 32]",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn int32_tensor_is_refused() {
    let (_t, model, out) = edited_checkpoint(|t| {
        let w = t.get_mut("transformer.h.0.ln_1.weight").expect("present");
        w.dtype = Dtype::I32; // same width: the file stays consistent
    });
    let want = cannot_open(
        &model,
        "tensor `transformer.h.0.ln_1.weight` has dtype int32; only float32, float16 and bfloat16 weights are supported",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn float64_tensor_is_refused() {
    let (_t, model, out) = edited_checkpoint(|t| {
        let w = t.get_mut("transformer.ln_f.weight").expect("present");
        let wide: Vec<u8> = little_f32(&w.data)
            .into_iter()
            .flat_map(|v| f64::from(v).to_le_bytes())
            .collect();
        w.dtype = Dtype::F64;
        w.data = wide;
    });
    let want = cannot_open(
        &model,
        "tensor `transformer.ln_f.weight` has dtype float64; only float32, float16 and bfloat16 weights are supported",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn unexpected_tensor_is_refused() {
    let (_t, model, out) = edited_checkpoint(|t| {
        t.insert(
            "transformer.h.0.attn.extra".into(),
            f32_tensor(&[4], &[1.0, 2.0, 3.0, 4.0]),
        );
    });
    let want = cannot_open(
        &model,
        "unexpected tensor `transformer.h.0.attn.extra` in the checkpoint (not an ImageGPT weight for this config)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn tensor_stored_twice_is_refused() {
    let (_t, model, out) = edited_checkpoint(|t| {
        let w = t["transformer.h.0.ln_1.weight"].clone();
        t.insert("h.0.ln_1.weight".into(), w);
    });
    let want = cannot_open(
        &model,
        "tensor `h.0.ln_1.weight` appears twice in the checkpoint (with and without the `transformer.` prefix, or in two shards)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

#[test]
fn shard_index_without_weight_map_is_refused() {
    let (_t, model, out) = copy_fixture("sharded");
    let index = model.join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"metadata": {}}"#).expect("write index");
    let want = cannot_open(
        &model,
        &format!(
            "invalid shard index {}: no `weight_map` object",
            show(&index)
        ),
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn shard_name_escaping_the_folder_is_refused() {
    let (_t, model, out) = copy_fixture("sharded");
    let index = model.join("model.safetensors.index.json");
    std::fs::write(
        &index,
        r#"{"weight_map": {"transformer.wte.weight": "../elsewhere.safetensors"}}"#,
    )
    .expect("write index");
    let want = cannot_open(
        &model,
        &format!(
            "invalid shard index {}: shard name `../elsewhere.safetensors` is not a plain file name",
            show(&index)
        ),
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn missing_shard_is_named() {
    let (_t, model, out) = copy_fixture("sharded");
    let shard = model.join("model-00002-of-00003.safetensors");
    std::fs::remove_file(&shard).expect("remove shard");
    let want = cannot_open(
        &model,
        &format!(
            "cannot read {}: No such file or directory (os error 2)",
            show(&shard)
        ),
    );
    assert_export_refused(&model, &out, &[], &want);
}

// ---------------------------------------------------------------------------------------------
// Config problems

#[test]
fn invalid_config_json_is_refused() {
    let (_t, model, out) = copy_fixture("causal-lm");
    let config = model.join("config.json");
    std::fs::write(&config, "{\"n_embd\": 32,").expect("write config");
    let want = cannot_open(
        &model,
        &format!(
            "invalid config JSON in {}: EOF while parsing a value at line 1 column 14",
            show(&config)
        ),
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn config_field_of_the_wrong_type_is_refused() {
    let (_t, model, out) = edited_config(|c| c["n_embd"] = "32".into());
    let config = model.join("config.json");
    let start = cannot_open(
        &model,
        &format!(
            "invalid config JSON in {}: invalid type: string \"32\", expected i64",
            show(&config)
        ),
    );
    assert_export_refused_starting(&model, &out, &[], &start);
}

#[test]
fn n_embd_not_divisible_by_n_head_is_refused() {
    let (_t, model, out) = edited_config(|c| c["n_embd"] = 30.into());
    let want = cannot_open(
        &model,
        "config field `n_head`: n_embd (30) is not divisible by n_head (4)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn unsupported_activation_is_refused() {
    let (_t, model, out) = edited_config(|c| c["activation_function"] = "gelu_new".into());
    let want = cannot_open(
        &model,
        "config field `activation_function`: \"gelu_new\" is not supported (ImageGPT uses quick_gelu)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn cross_attention_is_refused() {
    let (_t, model, out) = edited_config(|c| c["add_cross_attention"] = true.into());
    let want = cannot_open(
        &model,
        "config field `add_cross_attention`: true is not supported",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn absurd_sizes_are_refused_without_overflow() {
    // 4·n_embd (the default n_inner) and 3·n_embd would overflow usize.
    let (_t, model, out) = edited_config(|c| {
        c["n_embd"] = (1u64 << 62).into();
        c["n_head"] = 1.into();
    });
    let want = cannot_open(
        &model,
        "config field `n_embd`: 4611686018427387904 is implausibly large (at most 16777216)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn absurd_layer_count_is_refused_before_anything_is_allocated() {
    let (_t, model, out) = edited_config(|c| c["n_layer"] = 1_000_000_000.into());
    let want = cannot_open(
        &model,
        "config field `n_layer`: 1000000000 is implausibly large (at most 65536)",
    );
    assert_export_refused(&model, &out, &[], &want);
}

// ---------------------------------------------------------------------------------------------
// Paths

#[test]
fn missing_weights_path_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = tmp.path().join("no-such-model");
    let out = tmp.path().join("out");
    let want = cannot_open(
        &weights,
        &format!("weights path {} does not exist", show(&weights)),
    );
    assert_export_refused(&weights, &out, &[], &want);
}

#[test]
fn missing_config_path_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("no-such-config.json");
    let model = fixture_model("causal-lm");
    let out = tmp.path().join("out");
    let want = cannot_open(
        &model,
        &format!(
            "cannot read config {}: No such file or directory (os error 2)",
            show(&config)
        ),
    );
    assert_export_refused(&model, &out, &["--config", &show(&config)], &want);
}

#[test]
fn folder_without_safetensors_is_refused() {
    let (_t, model, out) = copy_fixture("causal-lm");
    std::fs::remove_file(model.join("model.safetensors")).expect("remove");
    let want = cannot_open(
        &model,
        &format!(
            "no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json in {}",
            show(&model)
        ),
    );
    assert_export_refused(&model, &out, &[], &want);
}

#[test]
fn output_path_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    std::fs::write(&out, b"keep me").expect("write");
    let run = export(&fixture_model("causal-lm"), &out, &[]);
    assert_refused(
        &run,
        &format!(
            "error: export failed: output path {} is a file, not a folder",
            show(&out)
        ),
    );
    assert_eq!(std::fs::read(&out).expect("still there"), b"keep me");
    assert_eq!(listing(tmp.path()), Some(vec!["out".to_string()]));
}

#[test]
fn output_folder_under_a_file_is_refused() {
    // Permissions do not bite for root, so make the folder uncreatable instead.
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let out = file.join("out");
    let run = export(&fixture_model("causal-lm"), &out, &[]);
    assert_refused(
        &run,
        &format!(
            "error: export failed: cannot create output folder {}: Not a directory (os error 20)",
            show(&out)
        ),
    );
    assert_eq!(listing(tmp.path()), Some(vec!["plain-file".to_string()]));
    assert_eq!(std::fs::read(&file).expect("still there"), b"x");
}

#[test]
fn output_folder_in_proc_is_refused() {
    let out = Path::new("/proc/igpt-onnx-export-test/out");
    let line = refusal(&export(&fixture_model("causal-lm"), out, &[]));
    let start = format!(
        "error: export failed: cannot create output folder {}: ",
        show(out)
    );
    assert!(line.starts_with(&start), "{line}");
    assert!(!Path::new("/proc/igpt-onnx-export-test").exists());
}

// ---------------------------------------------------------------------------------------------
// Existing files in the output folder

#[test]
fn foreign_onnx_file_is_not_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let foreign = out.join("causal-lm.onnx");
    // A model another tool wrote: ir_version 8, producer "pytorch".
    let other = ModelProto {
        ir_version: 8,
        producer_name: "pytorch".into(),
        ..Default::default()
    }
    .encode_to_vec();
    std::fs::write(&foreign, &other).expect("write");
    std::fs::write(out.join("notes.txt"), b"mine").expect("write");
    let want = format!(
        "error: export failed: refusing to replace {}: it was not written by igpt-onnx",
        show(&foreign)
    );
    // `all` would also write base.onnx: nothing may be written, not even that.
    assert_export_refused(&fixture_model("causal-lm"), &out, &[], &want);
    assert_eq!(std::fs::read(&foreign).expect("kept"), other);
    assert_eq!(std::fs::read(out.join("notes.txt")).expect("kept"), b"mine");
}

#[test]
fn onnx_path_that_is_a_directory_is_not_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let dir = out.join("base.onnx");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("inside"), b"x").expect("write");
    let want = format!(
        "error: export failed: refusing to replace {}: it is not a regular file",
        show(&dir)
    );
    assert_export_refused(&fixture_model("causal-lm"), &out, &[], &want);
    assert_eq!(listing(&dir), Some(vec!["inside".to_string()]));
}

#[test]
fn foreign_data_file_without_a_model_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let data = out.join("base.onnx.data");
    std::fs::write(&data, b"someone else's").expect("write");
    let model = fixture_model("causal-lm");

    // External data would overwrite it: refused, nothing written.
    let want = format!(
        "error: export failed: refusing to replace {}: no model written by igpt-onnx beside it",
        show(&data)
    );
    assert_export_refused(&model, &out, &["--head", "base", "--external-data"], &want);

    // An inline export does not need the name: it must leave the file alone.
    assert_ok(&export(&model, &out, &["--head", "base"]));
    assert_eq!(
        listing(&out),
        Some(vec![
            "base.onnx".to_string(),
            "base.onnx.data".to_string(),
            "generation_config.json".to_string()
        ])
    );
    assert_eq!(std::fs::read(&data).expect("kept"), b"someone else's");
}

// ---------------------------------------------------------------------------------------------
// Heads and variants

#[test]
fn head_without_weights_is_refused_naming_the_weight() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let want = "error: export failed: the checkpoint has no weights for the causal-lm head (missing `lm_head.weight`)";
    assert_export_refused(
        &fixture_model("base-hidden"),
        &out,
        &["--head", "causal-lm"],
        want,
    );
    let want = "error: export failed: the checkpoint has no weights for the classifier head (missing `score.weight`)";
    assert_export_refused(
        &fixture_model("causal-lm"),
        &out,
        &["--head", "classifier"],
        want,
    );
}

#[test]
fn unknown_head_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let want = "error: unknown head `lm` (expected base, causal-lm, classifier, decoder or all)";
    assert_export_refused(&fixture_model("causal-lm"), &out, &["--head", "lm"], want);
}

#[test]
fn variant_contradicting_the_config_names_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let model = fixture_model("causal-lm");
    let want = cannot_open(
        &model,
        "--variant small contradicts the checkpoint's config: `n_positions` is 32 in the checkpoint, 1024 for small",
    );
    assert_export_refused(&model, &out, &["--variant", "small"], &want);
    let want = cannot_open(
        &model,
        "--variant tiny contradicts the checkpoint's config: `n_positions` is 32 in the checkpoint, 64 for tiny",
    );
    assert_export_refused(&model, &out, &["--variant", "tiny"], &want);
}

#[test]
fn tiny_without_weights_says_how_to_make_some() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let run = igpt(&["export", "--variant", "tiny", "--out", &show(&out)]);
    assert_refused(
        &run,
        "error: --weights is required (a model folder or a .safetensors file); tiny has no published weights: `igpt-onnx random-checkpoint --variant tiny --out DIR` writes random ones",
    );
    assert_eq!(listing(&out), None);
}

#[test]
fn head_all_writes_the_heads_the_checkpoint_has() {
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "causal-lm",
            &["base.onnx", "causal-lm.onnx", "decoder.onnx"],
            "logits float32 [batch, sequence, 512]",
        ),
        (
            "classifier",
            &["base.onnx", "classifier.onnx"],
            "logits float32 [batch, 5]",
        ),
        ("base-hidden", &["base.onnx"], ""),
    ];
    for (case, files, head_output) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let run = export(&fixture_model(case), &out, &["--head", "all"]);
        assert_ok(&run);
        // Causal-LM checkpoints carry their generation_config.json beside the graphs.
        let mut want: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        if fixture_model(case).join("generation_config.json").is_file() {
            want.push("generation_config.json".into());
        }
        assert_eq!(listing(&out), Some(want), "{case}");
        // stdout: the weights read, then one line per head, in the same order, naming the file.
        let printed: Vec<&str> = run.stdout.lines().skip(1).collect();
        assert_eq!(printed.len(), files.len(), "{case}: {}", run.stdout);
        for (line, file) in printed.iter().zip(files) {
            let head = file.trim_end_matches(".onnx");
            assert!(line.starts_with(head), "{line}");
            assert!(line.contains(&show(&out.join(file))), "{line}");
        }
        let base = inspect(&out.join("base.onnx"));
        assert_eq!(summary_value(&base, "igpt_onnx.head"), "base");
        assert!(base.contains("\n  last_hidden_state float32 [batch, sequence, "));
        if let Some(file) = files.get(1) {
            let s = inspect(&out.join(file));
            assert_eq!(
                summary_value(&s, "igpt_onnx.head"),
                file.trim_end_matches(".onnx")
            );
            assert!(s.contains(&format!("outputs:\n  {head_output}\n")), "{s}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism, re-export, layouts, dtypes

/// An initializer's data size by its declared type and dims (the library's one width table).
fn byte_len(t: &TensorProto) -> u64 {
    let dtype = DataType::from_onnx(t.data_type.unwrap_or(0))
        .unwrap_or_else(|| panic!("{}: unexpected type {:?}", t.name, t.data_type));
    let numel = igpt_onnx::onnx::dtype::numel(&t.dims).expect("sane dims");
    dtype.byte_len(numel).expect("no overflow")
}

/// What `--head all` writes for a causal-LM checkpoint: its graphs, and the generation
/// defaults carried beside them.
fn lm_files() -> Vec<String> {
    [
        "base.onnx",
        "causal-lm.onnx",
        "decoder.onnx",
        "generation_config.json",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn same_input_gives_byte_identical_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for case in ["causal-lm", "sharded"] {
        assert_ok(&export(&fixture_model(case), &a.join(case), &[]));
        assert_ok(&export(&fixture_model(case), &b.join(case), &[]));
        let files = listing(&a.join(case)).expect("exported");
        assert_eq!(files, lm_files());
        assert_eq!(listing(&b.join(case)), Some(files.clone()));
        for f in files {
            let x = std::fs::read(a.join(case).join(&f)).expect("a");
            let y = std::fs::read(b.join(case).join(&f)).expect("b");
            assert!(x == y, "{case}/{f} differs between two exports");
        }
    }
}

#[test]
fn re_export_replaces_our_own_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let model = fixture_model("causal-lm");
    assert_ok(&export(&model, &out, &[]));
    let first = std::fs::read(out.join("causal-lm.onnx")).expect("first");
    // Replace ours with a different export of ours (hidden states change the base graph).
    assert_ok(&export(&model, &out, &["--hidden-states"]));
    assert_eq!(listing(&out), Some(lm_files()));
    let base = inspect(&out.join("base.onnx"));
    assert_eq!(summary_value(&base, "igpt_onnx.hidden_states"), "true");
    assert!(
        base.contains("\n  hidden_states.2 float32 [batch, sequence, 32]\n"),
        "{base}"
    );
    assert_eq!(
        std::fs::read(out.join("causal-lm.onnx")).expect("second"),
        first
    );
    // And back.
    assert_ok(&export(&model, &out, &[]));
    let base = inspect(&out.join("base.onnx"));
    assert_eq!(summary_value(&base, "igpt_onnx.hidden_states"), "false");
}

#[test]
fn hub_layout_with_legacy_buffers_exports_like_the_plain_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (hub, plain) = (tmp.path().join("hub"), tmp.path().join("plain"));
    let stored = load_tensors(&fixture_model("hub-layout").join("model.safetensors"));
    assert_eq!(stored["transformer.h.1.attn.bias"].dtype, Dtype::U8);
    assert!(stored.contains_key("transformer.h.0.attn.masked_bias"));
    assert_ok(&export(&fixture_model("hub-layout"), &hub, &[]));
    assert_ok(&export(&fixture_model("causal-lm"), &plain, &[]));
    assert_eq!(listing(&hub), Some(lm_files()));
    // Same config, so the same initializers: the buffers are not carried over.
    let names = |p: &Path| -> Vec<String> {
        initializers(&decode(p))
            .iter()
            .map(|t| t.name.clone())
            .collect()
    };
    let hub_names = names(&hub.join("causal-lm.onnx"));
    assert_eq!(hub_names, names(&plain.join("causal-lm.onnx")));
    for i in 0..2 {
        for buffer in [
            format!("h.{i}.attn.bias"),
            format!("h.{i}.attn.masked_bias"),
        ] {
            assert!(!hub_names.contains(&buffer), "{buffer} exported");
        }
    }
    let s = inspect(&hub.join("causal-lm.onnx"));
    assert_eq!(
        summary_value(&s, "initializers"),
        summary_value(&inspect(&plain.join("causal-lm.onnx")), "initializers")
    );
}

/// The float32 values an initializer must hold when it comes from a checkpoint tensor: the
/// stored values widened exactly, transposed for `<name>.transposed` (the heads' MatMul
/// weights). `None` for constants the graph adds.
fn expected_values(source: &BTreeMap<String, Tensor>, init: &str) -> Option<Vec<f32>> {
    let (name, transposed) = match init.strip_suffix(".transposed") {
        Some(n) => (n, true),
        None => (init, false),
    };
    let t = source
        .get(&format!("transformer.{name}"))
        .or_else(|| source.get(name))?;
    let halves = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    let values: Vec<f32> = match t.dtype {
        Dtype::F32 => little_f32(&t.data),
        Dtype::F16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(halves(b)).to_f32())
            .collect(),
        Dtype::BF16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::bf16::from_bits(halves(b)).to_f32())
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    if !transposed {
        return Some(values);
    }
    let (rows, cols) = (t.shape[0], t.shape[1]);
    Some(
        (0..cols * rows)
            .map(|k| values[(k % rows) * cols + k / rows])
            .collect(),
    )
}

#[test]
fn half_precision_checkpoints_export_float32_initializers() {
    for (case, dtype) in [("fp16", Dtype::F16), ("bf16", Dtype::BF16)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        assert_ok(&export(
            &fixture_model(case),
            &out,
            &["--head", "causal-lm"],
        ));
        let path = out.join("causal-lm.onnx");
        let source = load_tensors(&fixture_model(case).join("model.safetensors"));
        assert!(source.values().all(|t| t.dtype == dtype), "{case} fixture");
        let model = decode(&path);
        let inits = initializers(&model);
        let mut from_checkpoint = 0;
        for t in inits {
            assert_ne!(t.data_type, Some(data_type::FLOAT16), "{case}: {}", t.name);
            assert_ne!(t.data_type, Some(data_type::BFLOAT16), "{case}: {}", t.name);
            let Some(want) = expected_values(&source, &t.name) else {
                continue;
            };
            from_checkpoint += 1;
            assert_eq!(t.data_type, Some(data_type::FLOAT), "{case}: {}", t.name);
            assert_eq!(little_f32(&t.raw_data), want, "{case}: {}", t.name);
        }
        // Every checkpoint tensor (trunk + lm_head) made it into the graph.
        assert_eq!(from_checkpoint, source.len(), "{case}");
        // inspect sizes initializers by their declared type: float32 everywhere.
        let total: u64 = inits.iter().map(byte_len).sum();
        let weights: u64 = source.values().map(|t| 2 * t.data.len() as u64).sum();
        assert!(
            total > weights,
            "{case}: {total} bytes hold the widened weights"
        );
        assert_eq!(
            summary_value(&inspect(&path), "initializers"),
            format!("{} ({total} bytes, 0 external)", inits.len())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A single .safetensors file

/// A `random-checkpoint --variant tiny` folder: (guard, folder).
fn tiny_checkpoint() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tiny");
    let run = igpt(&[
        "random-checkpoint",
        "--variant",
        "tiny",
        "--out",
        &show(&dir),
    ]);
    assert_ok(&run);
    assert_eq!(
        run.stdout,
        format!(
            "wrote {} (tiny variant, seed 0)\n",
            show(&dir.join("model.safetensors"))
        )
    );
    assert_eq!(
        listing(&dir),
        Some(vec![
            "config.json".to_string(),
            "model.safetensors".to_string()
        ])
    );
    (tmp, dir)
}

/// The tiny weights alone in a folder of their own.
fn lone_file(tmp: &Path, tiny: &Path) -> PathBuf {
    let alone = tmp.join("alone");
    std::fs::create_dir(&alone).expect("mkdir");
    let file = alone.join("weights.safetensors");
    std::fs::copy(tiny.join("model.safetensors"), &file).expect("copy");
    file
}

#[test]
fn single_file_with_config_or_variant_exports() {
    let (tmp, tiny) = tiny_checkpoint();
    let file = lone_file(tmp.path(), &tiny);
    let config = tiny.join("config.json");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_ok(&export(&file, &a, &["--config", &show(&config)]));
    assert_ok(&export(&file, &b, &["--variant", "tiny"]));
    for out in [&a, &b] {
        // A lone weights file has no generation_config.json beside it to carry.
        assert_eq!(
            listing(out),
            Some(vec![
                "base.onnx".to_string(),
                "causal-lm.onnx".to_string(),
                "decoder.onnx".to_string()
            ])
        );
        let s = inspect(&out.join("causal-lm.onnx"));
        let cfg: serde_json::Value =
            serde_json::from_str(summary_value(&s, "igpt_onnx.config")).expect("config json");
        assert_eq!(cfg["n_embd"], 64);
        assert_eq!(cfg["n_layer"], 2);
        assert_eq!(cfg["n_head"], 4);
        assert_eq!(cfg["n_positions"], 64);
        assert_eq!(
            summary_value(&s, "igpt_onnx.source_sha256"),
            format!("{{\"weights.safetensors\":\"{}\"}}", sha256_hex(&file))
        );
    }
    // Same weights, same resolved config: the same bytes.
    for f in ["base.onnx", "causal-lm.onnx"] {
        assert!(
            std::fs::read(a.join(f)).expect("a") == std::fs::read(b.join(f)).expect("b"),
            "{f}: --config and --variant tiny give different graphs"
        );
    }
}

#[test]
fn single_file_without_config_or_variant_is_refused() {
    let (tmp, tiny) = tiny_checkpoint();
    let file = lone_file(tmp.path(), &tiny);
    let out = tmp.path().join("out");
    let want = cannot_open(
        &file,
        &format!(
            "no config.json beside {}: pass --config FILE or --variant tiny|small|medium|large",
            show(&file)
        ),
    );
    assert_export_refused(&file, &out, &[], &want);
}

#[test]
fn single_file_with_a_config_beside_it_checks_the_variant_against_that_config() {
    // The file's own config.json is the config; --variant must agree with it.
    let (tmp, tiny) = tiny_checkpoint();
    let file = tiny.join("model.safetensors");
    let out = tmp.path().join("out");
    assert_ok(&export(&file, &out, &["--head", "base"]));
    assert_eq!(listing(&out), Some(vec!["base.onnx".to_string()]));

    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).expect("read"))
            .expect("json");
    cfg["num_labels"] = 7.into();
    cfg["n_positions"] = 32.into();
    std::fs::write(tiny.join("config.json"), cfg.to_string()).expect("write");
    let want = cannot_open(
        &file,
        "--variant tiny contradicts the checkpoint's config: `n_positions` is 32 in the checkpoint, 64 for tiny",
    );
    assert_export_refused(&file, &out, &["--variant", "tiny"], &want);
}

// ---------------------------------------------------------------------------------------------
// External data and provenance

/// Weights of 16 MiB or more go beside the graph by default, each tensor at a page-aligned offset
/// (what lets ONNX Runtime map them); `--single-file` keeps them inside; the bytes are the same.
#[test]
fn large_weights_go_beside_the_graph_unless_single_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = igpt_onnx::Variant::Tiny.config();
    (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_inner) = (384, 3, 6, 4 * 384);
    let ckpt = tmp.path().join("ckpt");
    igpt_onnx::random::write_random_checkpoint(&cfg, 7, &ckpt).expect("random checkpoint");
    let (auto, single) = (tmp.path().join("auto"), tmp.path().join("single"));
    assert_ok(&export(&ckpt, &auto, &["--head", "causal-lm"]));
    assert_ok(&export(
        &ckpt,
        &single,
        &["--head", "causal-lm", "--single-file"],
    ));
    assert!(listing(&auto)
        .expect("auto")
        .contains(&"causal-lm.onnx.data".to_string()));
    assert!(!listing(&single)
        .expect("single")
        .iter()
        .any(|n| n.ends_with(".data")));

    let load = |p: &Path| ModelProto::decode(&*std::fs::read(p).expect("read")).expect("decode");
    let data = std::fs::read(auto.join("causal-lm.onnx.data")).expect("data");
    let (a, s) = (
        load(&auto.join("causal-lm.onnx")),
        load(&single.join("causal-lm.onnx")),
    );
    let inline: BTreeMap<&str, &[u8]> = s
        .graph
        .as_ref()
        .expect("graph")
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.raw_data.as_slice()))
        .collect();
    let mut external = 0u64;
    for t in &a.graph.as_ref().expect("graph").initializer {
        let entry = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.parse::<usize>().expect("number"))
        };
        let bytes = match (entry("offset"), entry("length")) {
            (Some(off), Some(len)) => {
                assert_eq!(off % 4096, 0, "{} at {off}", t.name);
                external += len as u64;
                &data[off..off + len]
            }
            _ => t.raw_data.as_slice(),
        };
        assert!(inline[t.name.as_str()] == bytes, "{} differs", t.name);
    }
    assert_eq!(
        inline.len(),
        a.graph.as_ref().expect("graph").initializer.len()
    );
    assert!(external >= 16 << 20, "{external} bytes beside");
}

#[test]
fn external_data_is_written_beside_and_referenced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let model_dir = fixture_model("causal-lm");
    let run = export(
        &model_dir,
        &out,
        &["--head", "causal-lm", "--external-data"],
    );
    assert_ok(&run);
    assert_eq!(
        listing(&out),
        Some(vec![
            "causal-lm.onnx".to_string(),
            "causal-lm.onnx.data".to_string(),
            "generation_config.json".to_string()
        ])
    );
    let path = out.join("causal-lm.onnx");
    let data = std::fs::read(out.join("causal-lm.onnx.data")).expect("data");
    assert!(
        run.stdout
            .contains(&format!(" + {}", show(&out.join("causal-lm.onnx.data")))),
        "{}",
        run.stdout
    );

    let model = decode(&path);
    let source = load_tensors(&model_dir.join("model.safetensors"));
    let (mut external, mut weights, mut data_end) = (0, 0, 0);
    for t in initializers(&model) {
        let len = byte_len(t) as usize;
        // Tensors of 1 KiB and more go to the data file; shape constants and norm weights stay.
        let bytes: &[u8] = if t.data_location == Some(1) {
            assert!(len >= 1024, "{}: {len} bytes external", t.name);
            assert!(t.raw_data.is_empty(), "{}: external and inline", t.name);
            external += 1;
            let entry = |k: &str| -> String {
                t.external_data
                    .iter()
                    .find(|e| e.key == k)
                    .unwrap_or_else(|| panic!("{}: no `{k}`", t.name))
                    .value
                    .clone()
            };
            assert_eq!(entry("location"), "causal-lm.onnx.data");
            let offset: usize = entry("offset").parse().expect("offset");
            let length: usize = entry("length").parse().expect("length");
            assert_eq!(offset % 4096, 0, "{}: offset aligned for mmap", t.name);
            assert_eq!(length, len, "{}", t.name);
            assert!(
                offset >= data_end,
                "{}: overlaps the previous tensor",
                t.name
            );
            data_end = offset + length;
            &data[offset..offset + length]
        } else {
            assert!(len < 1024, "{}: {len} bytes inline", t.name);
            assert!(t.external_data.is_empty(), "{}", t.name);
            assert_eq!(t.raw_data.len(), len, "{}", t.name);
            &t.raw_data
        };
        if let Some(want) = expected_values(&source, &t.name) {
            weights += 1;
            assert_eq!(little_f32(bytes), want, "{}", t.name);
        }
    }
    assert_eq!(
        weights,
        source.len(),
        "every checkpoint tensor is in the graph"
    );
    assert_eq!(
        data_end,
        data.len(),
        "the data file ends with the last tensor"
    );
    // wte, wpe, lm_head and four matrices per layer at least.
    assert!(external >= 3 + 2 * 4, "{external} external initializers");
    let s = inspect(&path);
    let init_line = summary_value(&s, "initializers");
    assert!(
        init_line.ends_with(&format!(", {external} external)")),
        "{init_line}"
    );

    // An inline re-export replaces it and removes the stale data file.
    assert_ok(&export(&model_dir, &out, &["--head", "causal-lm"]));
    assert_eq!(
        listing(&out),
        Some(vec![
            "causal-lm.onnx".to_string(),
            "generation_config.json".to_string()
        ])
    );
    assert!(summary_value(&inspect(&path), "initializers").ends_with(", 0 external)"));
}

#[test]
fn provenance_names_the_source_checksum_and_head() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let model_dir = fixture_model("causal-lm");
    assert_ok(&export(&model_dir, &out, &[]));
    let sum = sha256_hex(&model_dir.join("model.safetensors"));
    for head in ["base", "causal-lm"] {
        let s = inspect(&out.join(format!("{head}.onnx")));
        assert_eq!(summary_value(&s, "producer"), "igpt-onnx");
        assert_eq!(summary_value(&s, "igpt_onnx.head"), head);
        assert_eq!(
            summary_value(&s, "igpt_onnx.source_sha256"),
            format!("{{\"model.safetensors\":\"{sum}\"}}")
        );
        assert_eq!(
            summary_value(&s, "igpt_onnx.version"),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(summary_value(&s, "igpt_onnx.profile"), "portable");
    }

    // Sharded: one checksum per shard, by file name.
    let sharded = fixture_model("sharded");
    let out = tmp.path().join("sharded");
    assert_ok(&export(&sharded, &out, &["--head", "causal-lm"]));
    let s = inspect(&out.join("causal-lm.onnx"));
    let sums: BTreeMap<String, String> =
        serde_json::from_str(summary_value(&s, "igpt_onnx.source_sha256")).expect("json");
    let want: BTreeMap<String, String> = (1..=3)
        .map(|i| {
            let name = format!("model-0000{i}-of-00003.safetensors");
            let sum = sha256_hex(&sharded.join(&name));
            (name, sum)
        })
        .collect();
    assert_eq!(sums, want);
}

// ---------------------------------------------------------------------------------------------
// Hardening: each of these failed before the writer's rework.

#[test]
fn inline_re_export_keeps_a_data_file_the_old_model_did_not_reference() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let model = fixture_model("causal-lm");
    assert_ok(&export(&model, &out, &["--head", "base"]));
    // base.onnx is ours and inline; a base.onnx.data beside it is someone else's.
    let data = out.join("base.onnx.data");
    std::fs::write(&data, b"someone else's").expect("write");
    assert_ok(&export(&model, &out, &["--head", "base"]));
    assert_eq!(std::fs::read(&data).expect("kept"), b"someone else's");
}

#[cfg(unix)]
#[test]
fn random_checkpoint_does_not_follow_a_planted_symlink() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("ckpt");
    std::fs::create_dir(&out).expect("mkdir");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    // The name the old code wrote through.
    std::os::unix::fs::symlink(&victim, out.join(".model.safetensors.tmp")).expect("symlink");
    let run = igpt(&[
        "random-checkpoint",
        "--variant",
        "tiny",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_ok(&run);
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn a_foreign_config_where_a_carried_one_goes_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let foreign = out.join("generation_config.json");
    std::fs::write(&foreign, b"{\"someone\": \"else\"}").expect("write");
    let want = format!(
        "error: export failed: refusing to replace {}: it differs from the checkpoint's and the folder holds no graph written by igpt-onnx",
        show(&foreign)
    );
    assert_export_refused(&fixture_model("causal-lm"), &out, &[], &want);
    assert_eq!(
        std::fs::read(&foreign).expect("kept"),
        b"{\"someone\": \"else\"}"
    );
}
