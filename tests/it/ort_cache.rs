//! `generate --ort-cache DIR` (and `IGPT_ORT_CACHE`): ONNX Runtime CPU sessions saved as an
//! optimized model with prepacked weights on a miss and loaded from it on a hit. A miss and a hit
//! generate the uncached run's greedy tokens; a changed graph misses (a new entry, its own
//! tokens, never the stale entry's); a cache that cannot be written warns once and still
//! generates. The checkpoint is the kv-cache fixture's, exported with the ort profile.
//! `classify --ort-cache` takes the same cache.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, open_runtime, perturbed_copy};
use igpt_onnx::export::{export, ExportOptions, WeightsFile};
use igpt_onnx::graph::{Precision, Profile};
use igpt_onnx::runtime::RuntimeKind;
use igpt_onnx::{Checkpoint, Head};

const NEW: &str = "12";

fn decoder(model_dir: &Path, out: &Path) -> PathBuf {
    decoder_with(model_dir, out, WeightsFile::Auto)
}

fn decoder_with(model_dir: &Path, out: &Path, weights_file: WeightsFile) -> PathBuf {
    let ckpt = Checkpoint::open(model_dir, None, None).expect("opens");
    let opts = ExportOptions {
        profile: Profile::Ort,
        precision: Precision::Float32,
        weights_file,
        ..Default::default()
    };
    export(&ckpt, &[Head::Decoder], out, &opts).expect("exports")[0]
        .path
        .clone()
}

fn ort_here() -> bool {
    open_runtime(RuntimeKind::OrtCpu, &Default::default()).is_some()
}

/// `generate --greedy` on ort-cpu with `cache` as the flag (`Flag`) or the environment
/// variable (`Env`), or neither: (tokens, stderr).
enum Cache<'a> {
    None,
    Flag(&'a Path),
    Env(&'a Path),
}

fn generate(model: &Path, cache: Cache) -> (Vec<Vec<i64>>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tokens.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"));
    cmd.args(["generate", "--runtime", "ort-cpu", "--greedy"])
        .args(["--max-new-tokens", NEW, "--prompt-ids", "512,3,77"])
        .arg("--model")
        .arg(model)
        .arg("--tokens-out")
        .arg(&out)
        .env_remove("IGPT_ORT_CACHE");
    match cache {
        Cache::None => {}
        Cache::Flag(d) => {
            cmd.arg("--ort-cache").arg(d);
        }
        Cache::Env(d) => {
            cmd.env("IGPT_ORT_CACHE", d);
        }
    }
    let out_ = cmd.output().expect("runs igpt-onnx");
    let stderr = String::from_utf8_lossy(&out_.stderr).into_owned();
    assert_eq!(out_.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    let tokens = serde_json::from_value(json["tokens"].clone()).expect("tokens");
    (tokens, stderr)
}

/// The cache's entries, each checked complete: its optimized model and weights.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("cache folder")
        .map(|e| e.expect("entry").path())
        .collect();
    found.sort();
    for e in &found {
        assert!(e.join("model.onnx").is_file(), "{}", e.display());
        assert!(e.join("model.data").is_file(), "{}", e.display());
    }
    found
}

/// The kv-cache checkpoint copied to `out` with lm_head's first weights shifted far (other tokens).
fn shifted_lm_head(out: &Path) -> PathBuf {
    perturbed_copy(
        &fixture("kv-cache").join("model"),
        out,
        "lm_head.weight",
        |data| {
            for w in data.chunks_exact_mut(4).take(64) {
                let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]) + 50.0;
                w.copy_from_slice(&v.to_le_bytes());
            }
        },
    )
}

#[test]
fn a_miss_then_a_hit_generate_the_uncached_tokens_and_a_changed_graph_misses() {
    if !ort_here() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let model = decoder(&fixture("kv-cache").join("model"), &tmp.path().join("a"));
    let (want, _) = generate(&model, Cache::None);
    assert_eq!(want[0].len(), 3 + 12);

    let (miss, stderr) = generate(&model, Cache::Flag(&cache));
    assert_eq!(miss, want);
    assert!(!stderr.contains("warning: ONNX Runtime cache"), "{stderr}");
    let first = entries(&cache);
    assert_eq!(first.len(), 1);
    let saved = std::fs::metadata(first[0].join("model.onnx")).expect("saved");

    let (hit, stderr) = generate(&model, Cache::Env(&cache));
    assert_eq!(hit, want);
    assert!(!stderr.contains("warning"), "{stderr}");
    // Served from the entry: nothing new written, the entry untouched.
    assert_eq!(entries(&cache), first);
    let again = std::fs::metadata(first[0].join("model.onnx")).expect("saved");
    assert_eq!(saved.modified().ok(), again.modified().ok());

    // The same graph's path, other weights (lm_head's first weight shifted far): a new entry and
    // that graph's own tokens, never the stale entry's.
    let changed = shifted_lm_head(&tmp.path().join("b"));
    let rewritten = decoder(&changed, &tmp.path().join("a"));
    assert_eq!(rewritten, model);
    let (want_changed, _) = generate(&model, Cache::None);
    assert_ne!(
        want_changed, want,
        "the perturbation must change the tokens"
    );
    let (miss, _) = generate(&model, Cache::Flag(&cache));
    assert_eq!(miss, want_changed);
    assert_eq!(entries(&cache).len(), 2);
    let (hit, _) = generate(&model, Cache::Flag(&cache));
    assert_eq!(hit, want_changed);
    assert_eq!(entries(&cache).len(), 2);
}

/// Weights beside the graph (`decoder.onnx.data`): a miss and a hit give the uncached tokens, and
/// a new weights file under the same graph file misses.
#[test]
fn weights_beside_the_graph_are_part_of_the_key() {
    if !ort_here() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let model = decoder_with(
        &fixture("kv-cache").join("model"),
        &tmp.path().join("a"),
        WeightsFile::External,
    );
    let data = model.with_extension("onnx.data");
    assert!(data.is_file());
    let (want, _) = generate(&model, Cache::None);
    assert_eq!(generate(&model, Cache::Flag(&cache)).0, want);
    assert_eq!(generate(&model, Cache::Flag(&cache)).0, want);
    assert_eq!(entries(&cache).len(), 1);

    // Another checkpoint's weights file, laid out alike, under the first graph file.
    let changed = shifted_lm_head(&tmp.path().join("b"));
    let other = decoder_with(&changed, &tmp.path().join("c"), WeightsFile::External);
    std::fs::copy(other.with_extension("onnx.data"), &data).expect("copy");
    let (want_changed, _) = generate(&model, Cache::None);
    assert_ne!(want_changed, want, "the new weights must change the tokens");
    assert_eq!(generate(&model, Cache::Flag(&cache)).0, want_changed);
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn a_cache_that_cannot_be_written_or_read_warns_once_and_still_generates() {
    if !ort_here() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = decoder(&fixture("kv-cache").join("model"), &tmp.path().join("a"));
    let (want, _) = generate(&model, Cache::None);

    // A file where the folder should be (unwritable even for root).
    let blocked = tmp.path().join("not-a-folder");
    std::fs::write(&blocked, b"").expect("write");
    let (tokens, stderr) = generate(&model, Cache::Flag(&blocked));
    assert_eq!(tokens, want);
    assert_eq!(
        stderr.matches("warning: ONNX Runtime cache").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("loading the graph without it"), "{stderr}");

    // A corrupt entry: warned about, the graph loaded instead.
    let cache = tmp.path().join("cache");
    generate(&model, Cache::Flag(&cache));
    let entry = entries(&cache).remove(0);
    std::fs::write(entry.join("model.onnx"), b"not a model").expect("write");
    let (tokens, stderr) = generate(&model, Cache::Flag(&cache));
    assert_eq!(tokens, want);
    assert_eq!(
        stderr.matches("warning: ONNX Runtime cache").count(),
        1,
        "{stderr}"
    );
}

/// `classify --ort-cache`: a miss saves one entry, a hit reads it without writing; both give
/// the uncached run's logits (the reference's within 1e-4 + 1e-3·|x|, as `fixtures/
/// classifier-images` records them) bit for bit.
#[test]
fn classify_takes_the_cache_and_gives_the_uncached_logits() {
    if !ort_here() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let case = fixture("classifier-images");
    let ckpt = Checkpoint::open(&case.join("model"), None, None).expect("opens");
    let opts = ExportOptions {
        profile: Profile::Ort,
        ..Default::default()
    };
    let graph = export(&ckpt, &[Head::Classifier], tmp.path(), &opts).expect("exports")[0]
        .path
        .clone();
    let cache = tmp.path().join("cache");
    let classify = |cache: Option<&Path>, name: &str| -> Vec<serde_json::Value> {
        let json = tmp.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"));
        cmd.args(["classify", "--runtime", "ort-cpu", "--model"])
            .arg(&graph)
            .arg("--processor")
            .arg(case.join("model"))
            .arg("--json")
            .arg(&json)
            .arg(case.join("wide.png"))
            .env_remove("IGPT_ORT_CACHE");
        if let Some(d) = cache {
            cmd.arg("--ort-cache").arg(d);
        }
        let out = cmd.output().expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parses");
        report["images"][0]["logits"]
            .as_array()
            .expect("logits")
            .clone()
    };
    let want = classify(None, "plain.json");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).expect("expected"))
            .expect("parses");
    for (got, e) in want
        .iter()
        .zip(expected["logits"][0].as_array().expect("row"))
    {
        let (got, e) = (got.as_f64().expect("f"), e.as_f64().expect("f"));
        assert!((got - e).abs() <= 1e-4 + 1e-3 * e.abs(), "{got} vs {e}");
    }
    assert_eq!(classify(Some(&cache), "miss.json"), want);
    let first = entries(&cache);
    assert_eq!(first.len(), 1);
    let saved = std::fs::metadata(first[0].join("model.onnx")).expect("saved");
    assert_eq!(classify(Some(&cache), "hit.json"), want);
    assert_eq!(entries(&cache), first);
    let again = std::fs::metadata(first[0].join("model.onnx")).expect("saved");
    assert_eq!(saved.modified().ok(), again.modified().ok());
}
