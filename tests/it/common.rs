//! Helpers shared by the integration tests: fixture paths, copies to break, graphs to export.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use igpt_onnx::export::{export, ExportOptions};
use igpt_onnx::graph::GraphOptions;
use igpt_onnx::{Checkpoint, Head};

/// `fixtures/<case>`.
pub fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(case)
}

/// Copies a folder tree (fixture cases are small).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy file");
        }
    }
}

/// Exports `head` of the checkpoint in `model_dir` into `out`, returning the graph's path.
pub fn export_head(model_dir: &Path, head: Head, out: &Path, hidden_states: bool) -> PathBuf {
    let ckpt = Checkpoint::open(model_dir, None, None).expect("checkpoint opens");
    let opts = ExportOptions {
        graph: GraphOptions {
            hidden_states,
            ..Default::default()
        },
        ..Default::default()
    };
    let done = export(&ckpt, &[head], out, &opts).expect("export");
    done[0].path.clone()
}

/// A copy of `base-hidden` (3 layers) with one weight of block h.1's MLP changed.
pub fn perturbed_base_hidden(tmp: &Path) -> std::path::PathBuf {
    perturbed_copy(
        &fixture("base-hidden").join("model"),
        tmp,
        "h.1.mlp.c_fc.weight",
        |data| {
            let v = f32::from_le_bytes([data[0], data[1], data[2], data[3]]) + 1.0;
            data[..4].copy_from_slice(&v.to_le_bytes());
        },
    )
}

/// A copy of the float32 checkpoint folder `src` in `tmp/model` whose tensor `name` is
/// changed by `edit` (its little-endian bytes); returns the copy's folder.
pub fn perturbed_copy(
    src: &Path,
    tmp: &Path,
    name: &str,
    edit: impl Fn(&mut [u8]),
) -> std::path::PathBuf {
    let model = tmp.join("model");
    copy_dir(src, &model);
    let path = model.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec(), t.shape().to_vec()))
        .collect();
    let (_, data, _) = tensors
        .iter_mut()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"));
    edit(data);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .expect("view");
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).expect("write");
    model
}

/// The `igpt-onnx` binary with `args`: (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .output()
        .expect("run igpt-onnx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `igpt-onnx` binary with `args` and the environment variables `envs`, run in the
/// repository root (adapters and fixtures are named relative to it): (exit code, stdout,
/// stderr).
pub fn cli_in_root(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run igpt-onnx");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Opens `kind`, or returns `None` (printing why) when it is unavailable here. Under `CI`
/// every runtime a test asks for must be present.
pub fn open_runtime(
    kind: igpt_onnx::runtime::RuntimeKind,
    opts: &igpt_onnx::runtime::RuntimeOptions,
) -> Option<Box<dyn igpt_onnx::runtime::Runtime>> {
    use igpt_onnx::runtime::{self, RuntimeError};
    match runtime::open(kind, opts) {
        Ok(rt) => Some(rt),
        Err(RuntimeError::Unavailable { source: reason, .. })
            if std::env::var_os("CI").is_none() =>
        {
            eprintln!("skipping {}: {reason}", kind.name());
            None
        }
        Err(e) => panic!("{} must be available: {e}", kind.name()),
    }
}

/// Under `CI` ONNX Runtime must be found: a skip there would hide a broken set-up.
pub fn require_ort_under_ci(report: &igpt_onnx::verify::report::Report) {
    if std::env::var_os("CI").is_some() {
        let ort = report.runtimes.iter().find(|r| r.runtime == "ort-cpu");
        assert!(
            ort.is_some_and(|r| r.available),
            "ONNX Runtime must be available under CI: {:?}",
            report.runtimes
        );
    }
}

/// Writes `graph` with `initializers` as a model (opset 17, IR 8) carrying `metadata`.
pub fn write_graph_proto(
    path: &Path,
    graph: &igpt_onnx::onnx::proto::GraphProto,
    initializers: &[igpt_onnx::onnx::Initializer<'_>],
    metadata: &[(&str, &str)],
) {
    use igpt_onnx::onnx::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
    let header = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "test".into(),
        ..Default::default()
    };
    let entries: Vec<StringStringEntryProto> = metadata
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    let mut meta = || Ok(entries.clone());
    igpt_onnx::onnx::writer::write_model(path, &header, graph, initializers, false, &mut meta)
        .expect("write")
        .commit()
        .expect("commit");
}

/// A hand-made graph: declare inputs and outputs, add nodes with a `GraphBuilder`, write it
/// with an export card of `head` (the default config: vocab_size 513, n_positions 1024) when
/// `head` is given, else with no card (a graph another tool made).
pub fn write_handmade(
    path: &Path,
    head: Option<&str>,
    build: impl FnOnce(&mut igpt_onnx::onnx::GraphBuilder<'static>),
) {
    let mut g = igpt_onnx::onnx::GraphBuilder::default();
    build(&mut g);
    let graph = igpt_onnx::onnx::proto::GraphProto {
        node: g.nodes,
        name: "handmade".into(),
        input: g.inputs,
        output: g.outputs,
        ..Default::default()
    };
    let entries = head.map(card_for).unwrap_or_default();
    let meta: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_graph_proto(path, &graph, &g.initializers, &meta);
}

/// The export card entries of a `head` graph of a default-config checkpoint, as export writes
/// them (the card's one writer).
pub fn card_for(head: &str) -> Vec<(String, String)> {
    use igpt_onnx::graph::{ExportCard, LogitsWidth, Precision, Profile, Provenance};
    let config = igpt_onnx::ImageGptConfig::from_raw(&Default::default()).expect("defaults");
    ExportCard {
        head: Head::parse(head).expect("a head name"),
        profile: Profile::Portable,
        precision: Precision::Float32,
        keep_float32: Default::default(),
        config,
        hidden_states: false,
        logits: LogitsWidth::Colours,
        cache: Default::default(),
        provenance: Provenance {
            version: "test".into(),
            ..Default::default()
        },
        calibration: None,
    }
    .to_metadata()
}

/// Reads every tensor of a safetensors file as (dtype, shape, bytes).
pub fn read_safetensors(path: &Path) -> Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes tensors given as (name, dtype, shape, bytes).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, safetensors::Dtype, Vec<usize>, Vec<u8>)],
) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            let v = safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view");
            (n.clone(), v)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("write safetensors");
}

/// xorshift64*: a fixed sequence for the seeded mutation fuzzers, the same on every run and
/// machine, independent of the library's own generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The names in a folder, sorted (hidden ones included, so stray temporaries show).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Exports the float32 `decoder` of `fixtures/<case>/model` in `profile` into `dir`.
pub fn export_decoder(case: &str, dir: &Path, profile: igpt_onnx::graph::Profile) -> PathBuf {
    export_decoder_of(&fixture(case).join("model"), dir, profile)
}

/// Exports the float32 `decoder` of the checkpoint folder `model` in `profile` into `dir`.
pub fn export_decoder_of(model: &Path, dir: &Path, profile: igpt_onnx::graph::Profile) -> PathBuf {
    let ckpt = Checkpoint::open(model, None, None).expect("opens");
    let opts = ExportOptions {
        profile,
        ..Default::default()
    };
    export(&ckpt, &[Head::Decoder], dir, &opts).expect("exports")[0]
        .path
        .clone()
}
