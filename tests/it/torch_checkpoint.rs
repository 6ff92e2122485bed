//! `pytorch_model.bin` checkpoints: the graphs exported from torch's zip and legacy files (made
//! by real torch from golden cases' weights, `fixtures/torch/generate.py`) equal, byte for
//! byte, the graphs exported from the same weights as safetensors, except for the provenance
//! entries; and every file of the hostile corpus (`fixtures/torch/hostile.py`) is refused
//! through the CLI with one error line, exit 2, nothing written and no marker file.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{copy_dir, fixture};
use igpt_onnx::checkpoint::store::Layout;
use igpt_onnx::export::{export, ExportOptions};
use igpt_onnx::onnx::proto::ModelProto;
use igpt_onnx::Checkpoint;
use prost::Message;

/// Metadata keys that name where the weights came from; everything else must be equal.
const PROVENANCE: [&str; 5] = [
    "igpt_onnx.carried_sha256",
    "igpt_onnx.source_sha256",
    "igpt_onnx.source_format",
    "igpt_onnx.source_hub_id",
    "igpt_onnx.source_hub_commit",
];

fn torch_case(name: &str) -> PathBuf {
    fixture("torch").join(name)
}

/// Every head the checkpoint has, exported into `out`, as (file name, model without the
/// provenance entries, bytes of that model re-encoded).
fn exported(model: &Path, out: &Path) -> (String, Vec<(String, Vec<u8>)>) {
    let ckpt = Checkpoint::open(model, None, None).expect("checkpoint opens");
    let heads = igpt_onnx::Head::available(&ckpt);
    let done = export(&ckpt, &heads, out, &ExportOptions::default()).expect("export");
    let graphs = done
        .iter()
        .map(|e| {
            let bytes = std::fs::read(&e.path).expect("read graph");
            let mut m = ModelProto::decode(bytes.as_slice()).expect("decode");
            m.metadata_props
                .retain(|p| !PROVENANCE.contains(&p.key.as_str()));
            let name = e.path.file_name().expect("name").to_string_lossy().into();
            (name, m.encode_to_vec())
        })
        .collect();
    (ckpt.weights.format.clone(), graphs)
}

#[test]
fn bin_exports_equal_safetensors_exports() {
    let cases = [
        ("causal-lm-zip", "causal-lm", "pytorch zip", 3),
        ("base-hidden-legacy", "base-hidden", "pytorch legacy", 1),
        ("fp16-legacy-views", "fp16", "pytorch legacy", 3),
        ("sharded-zip", "sharded", "pytorch zip", 3),
    ];
    for (bin, st, format, heads) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (got_format, from_bin) = exported(&torch_case(bin), &tmp.path().join("bin"));
        let (st_format, from_st) = exported(&fixture(st).join("model"), &tmp.path().join("st"));
        assert_eq!(got_format, format, "{bin}");
        assert_eq!(st_format, "safetensors", "{st}");
        assert_eq!(from_bin.len(), heads, "{bin}: heads");
        assert_eq!(
            from_bin.iter().map(|g| &g.0).collect::<Vec<_>>(),
            from_st.iter().map(|g| &g.0).collect::<Vec<_>>()
        );
        for ((name, a), (_, b)) in from_bin.iter().zip(&from_st) {
            assert!(a == b, "{bin}/{name}: differs from the safetensors export");
        }
    }
}

#[test]
fn provenance_names_the_torch_format() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = Checkpoint::open(&torch_case("base-hidden-legacy"), None, None).expect("opens");
    let done = export(
        &ckpt,
        &igpt_onnx::Head::available(&ckpt),
        tmp.path(),
        &ExportOptions::default(),
    )
    .expect("export");
    let m =
        ModelProto::decode(std::fs::read(&done[0].path).expect("read").as_slice()).expect("decode");
    let get = |k: &str| {
        m.metadata_props
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.value.as_str())
    };
    assert_eq!(get("igpt_onnx.source_format"), Some("pytorch legacy"));
    assert!(get("igpt_onnx.source_sha256")
        .expect("checksum")
        .contains("\"pytorch_model.bin\":"));
    assert_eq!(get("igpt_onnx.source_hub_id"), None);
}

#[test]
fn views_keep_torch_offsets_and_strides() {
    // fp16-legacy-views: ln_1 and ln_2 of a layer are two halves of one float16 storage of
    // 2·32 elements; lm_head.weight [512, 32] is the transpose of a contiguous [32, 512].
    let ckpt = Checkpoint::open(&torch_case("fp16-legacy-views"), None, None).expect("opens");
    let w = &ckpt.weights;
    let offset = |name: &str| match &w.get(name).expect(name).layout {
        Layout::Contiguous { offset } => *offset,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        offset("h.0.ln_2.weight") - offset("h.0.ln_1.weight"),
        32 * 2
    );
    match &w.get("lm_head.weight").expect("lm_head").layout {
        Layout::Strided { strides, .. } => assert_eq!(strides, &vec![1, 512]),
        other => panic!("lm_head: {other:?}"),
    }
}

#[test]
fn safetensors_win_over_bin_in_one_folder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let both = tmp.path().join("both");
    copy_dir(&fixture("causal-lm").join("model"), &both);
    std::fs::copy(
        torch_case("fp16-legacy-views").join("pytorch_model.bin"),
        both.join("pytorch_model.bin"),
    )
    .expect("copy bin");
    let out = tmp.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(["export", "--head", "base", "--weights"])
        .arg(&both)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().next(),
        Some(format!("read safetensors weights from {}", both.display()).as_str())
    );
}

/// Each hostile case and words its one error line must hold.
const HOSTILE: [(&str, &str); 24] = [
    ("reduce-os-system", "refusing global posix.system in pytorch_model.bin: not a plain state dict"),
    ("reduce-subprocess", "refusing global commands.call in pytorch_model.bin"),
    ("reduce-eval", "refusing global __builtin__.eval in pytorch_model.bin"),
    ("reduce-exec", "refusing global __builtin__.exec in pytorch_model.bin"),
    ("reduce-getattr", "refusing global builtins.getattr in pytorch_model.bin"),
    ("inst-os-system", "refusing pickle opcode INST (0x69) at byte 41 in pytorch_model.bin"),
    ("obj-os-system", "refusing global os.system in pytorch_model.bin"),
    ("newobj-unknown-class", "refusing global __main__.Evil in pytorch_model.bin"),
    ("newobj-ordereddict-args", "refusing NEWOBJ of a global in pytorch_model.bin"),
    ("unknown-class", "refusing global torch.nn.modules.linear.Linear in pytorch_model.bin"),
    ("huge-binunicode", "(data.pkl: pickle byte 7: needs 2147483647 bytes but only 3 remain: truncated or corrupt)"),
    ("huge-binbytes", "(data.pkl: pickle byte 7: needs 4294967295 bytes but only 3 remain: truncated or corrupt)"),
    ("memo-bomb", "refusing a top-level list instead of a dict of tensors in pytorch_model.bin"),
    ("deep-marks", "pickle byte 259: MARKs nested deeper than 256"),
    ("deep-tuples", "refusing a top-level tuple instead of a dict of tensors"),
    ("truncated-zip", "is not a valid pytorch zip file (no end-of-central-directory record: truncated or not a zip archive)"),
    ("compressed-storage", "(storage record `archive/data/0` is compressed (method 8): torch stores storages uncompressed)"),
    ("missing-storage", "(storage record `archive/data/0` is missing)"),
    ("storage-too-short", "(tensor `wte.weight`: storage `0` holds 12 bytes but its pickle declares 32: truncated)"),
    ("view-beyond-storage", "(tensor `wte.weight`: its view (offset 0, size [8], stride [1]) needs 8 elements but storage `0` holds 4)"),
    ("big-endian", "(byteorder record says `big`: only little-endian checkpoints are supported)"),
    ("legacy-truncated", "is not a valid pytorch legacy file (storage `"),
    ("legacy-big-endian", "is not a valid pytorch legacy file (saved on a big-endian machine"),
    ("legacy-os-system", "refusing global posix.system in pytorch_model.bin"),
];

/// Where the corpus' payloads would write (fixtures/torch/hostile.py: MARKER).
const MARKER: &str = "/tmp/igpt-onnx-hostile-marker";

#[test]
fn hostile_files_are_refused_with_one_line() {
    let corpus = fixture("torch").join("hostile");
    let mut on_disk: Vec<String> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = HOSTILE.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every corpus case has an expectation");
    let _ = std::fs::remove_file(MARKER);
    for (name, want) in HOSTILE {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let start = Instant::now();
        let run = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
            .args(["export", "--weights"])
            .arg(corpus.join(name))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run");
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot open checkpoint "),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(want), "{name}: {stderr}\nwanted: {want}");
        assert!(!stderr.contains("panick"), "{name}: {stderr}");
        assert!(run.stdout.is_empty(), "{name}");
        assert!(!out.exists(), "{name}: wrote {}", out.display());
        assert!(took < Duration::from_secs(20), "{name}: took {took:?}");
        assert!(!Path::new(MARKER).exists(), "{name}: a payload ran");
    }
}
