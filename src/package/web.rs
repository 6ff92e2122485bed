//! A static web site that generates and classifies ImageGPT images in the browser with
//! onnxruntime-web: `index.html` and its ES modules ([`PAGE_FILES`], embedded in the binary; no
//! build step, no framework), the decoder graph, the classifier graph where the checkpoint has
//! one, the image processor's tables (`processor.json`) and the page's manifest (`model.json`).
//! Any static web server can host the folder.
//!
//! The page ports what must give the same tokens as the command line: the seeded sampler
//! (`src/generate/sampling.rs`, SplitMix64 included) and the image processor (Pillow's
//! resampler, `src/image/resample.rs`, and the nearest-cluster mapping,
//! `src/image/processor.rs`). A WebAssembly build of the Rust processor would share the code
//! instead, but the toolchain this project builds with has no `wasm32` target, so the page
//! carries a JavaScript port, held to the Rust code's outputs under Node
//! (`tests/it/web_parity.rs`) and to the reference's tokens by the browser tests.
//!
//! Browser limits (checked before anything is written in place): one graph is one protobuf
//! message read from one `ArrayBuffer` (2 GiB), and every graph the page loads lives in
//! onnxruntime-web's wasm32 memory (4 GiB). A checkpoint beyond them is refused with the
//! quantisations that make it fit.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{checkpoint_folder, PackageError, StagedDir};
use crate::base::files::write_atomic;
use crate::checkpoint::Checkpoint;
use crate::export::{self, ExportOptions, Exported, WeightsFile};
use crate::graph::profile::PRECISIONS;
use crate::graph::{DecoderIo, ExportCard, Head};
use crate::image::Processor;

/// The page's files, as (name, contents), written side by side: `index.html` loads `igpt.mjs`
/// (the UI), which imports the rest. The modules other than `igpt.mjs` touch no DOM when
/// imported, so `ci/web_parity.mjs` runs them under Node.
pub const PAGE_FILES: [(&str, &str); 7] = [
    ("index.html", include_str!("web/index.html")),
    ("igpt.mjs", include_str!("web/igpt.mjs")),
    // The seeded sampler (src/generate/sampling.rs).
    ("sampler.mjs", include_str!("web/sampler.mjs")),
    // Pillow's resampler (src/image/resample.rs).
    ("resample.mjs", include_str!("web/resample.mjs")),
    // Tokens of an image and colours of a token (src/image/processor.rs).
    ("processor.mjs", include_str!("web/processor.mjs")),
    // PNG decoding and image files to RGB (src/image/load.rs).
    ("png.mjs", include_str!("web/png.mjs")),
    // onnxruntime-web, the decoding loop (src/generate/session.rs) and the classifier.
    ("session.mjs", include_str!("web/session.mjs")),
];
/// The page's manifest file name.
pub const MANIFEST_FILE: &str = "model.json";
/// The processor tables' file name.
pub const PROCESSOR_FILE: &str = "processor.json";
/// The folder `--ort-web` copies onnxruntime-web's files into.
pub const ORT_DIR: &str = "ort";

/// The onnxruntime-web version the page loads by default (the one the `cmd:` adapters pin in
/// `ci/adapters/package.json`, checked by a test).
pub const ORT_WEB_VERSION: &str = "1.30.0";

/// Where the page loads onnxruntime-web from by default.
pub fn ort_web_cdn() -> String {
    format!("https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/")
}

/// The files of onnxruntime-web's `dist/` the page uses: the WebGPU bundle (WebGPU and wasm)
/// where the browser has WebGPU, else the leaner wasm-only bundle, each with its wasm binary.
pub const ORT_FILES: [&str; 6] = [
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
];

/// Largest graph file a browser reads as one protobuf message from one `ArrayBuffer`.
pub const MAX_GRAPH_BYTES: u64 = 2 << 30;
/// Largest total of the graphs the page loads into onnxruntime-web's wasm32 memory.
pub const MAX_TOTAL_BYTES: u64 = 4 << 30;

/// Where the page loads onnxruntime-web from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrtSource {
    /// A public CDN, pinned to [`ORT_WEB_VERSION`].
    Cdn,
    /// A local `onnxruntime-web/dist` folder, copied into the site's `ort/`.
    Local(PathBuf),
}

/// A written site.
#[derive(Debug, Clone)]
pub struct WebPackage {
    pub dir: PathBuf,
    /// The graphs as exported (the decoder and/or the classifier), with their sizes.
    pub graphs: Vec<Exported>,
    /// Bytes of every file in the folder.
    pub bytes: u64,
}

/// Writes the site into `dir` (which must not exist, or be empty), all at once or not at all.
pub fn write(
    ckpt: &Checkpoint,
    dir: &Path,
    opts: &ExportOptions,
    ort: &OrtSource,
) -> Result<WebPackage, PackageError> {
    // Everything that can be checked before the export is: the processor, the local ORT files.
    let folder = checkpoint_folder(ckpt);
    let proc_path = folder.join(crate::image::processor::CONFIG_NAME);
    if !proc_path.is_file() {
        return Err(PackageError::invalid(
            &proc_path,
            "not found: the page needs the image processor's colour clusters beside the checkpoint",
        ));
    }
    let processor = Processor::open(&proc_path)?;
    if processor.n_clusters() + 1 != ckpt.config.vocab_size {
        return Err(PackageError::invalid(
            &proc_path,
            format!(
                "{} clusters, but the model's vocab_size is {} (clusters + the start token)",
                processor.n_clusters(),
                ckpt.config.vocab_size
            ),
        ));
    }
    if let OrtSource::Local(dist) = ort {
        for name in ORT_FILES {
            let f = dist.join(name);
            if !f.is_file() {
                return Err(PackageError::invalid(
                    &f,
                    format!("not found: --ort-web takes the dist/ folder of the onnxruntime-web npm package ({ORT_WEB_VERSION})"),
                ));
            }
        }
    }
    let generation = read_json(&folder.join("generation_config.json"))?;

    let stage = StagedDir::new(dir)?;
    let heads: Vec<Head> = Head::available(ckpt)
        .into_iter()
        .filter(|h| matches!(h, Head::Decoder | Head::Classifier))
        .collect();
    if heads.is_empty() {
        return Err(PackageError::invalid(
            &ckpt.source,
            "has neither `lm_head.weight` (the decoder) nor `score.weight` (the classifier): the page has nothing to run",
        ));
    }
    // A browser fetches each graph as one file.
    let opts = ExportOptions {
        weights_file: WeightsFile::SingleFile,
        ..opts.clone()
    };
    let graphs = export::export(ckpt, &heads, stage.path(), &opts)?;
    check_limits(&graphs)?;
    let c = &ckpt.config;
    let decoder = match graphs.iter().find(|g| g.head == Head::Decoder) {
        Some(g) => decoder_entry(g, c)?,
        None => Value::Null,
    };
    let c = &ckpt.config;
    let classifier = graphs.iter().find(|g| g.head == Head::Classifier).map(|g| {
        json!({
            "file": file_name(&g.path),
            "bytes": g.bytes,
            "labels": (0..c.num_labels).map(|i| c.label(i)).collect::<Vec<_>>(),
        })
    });
    let ort_base = match ort {
        OrtSource::Cdn => ort_web_cdn(),
        OrtSource::Local(_) => format!("{ORT_DIR}/"),
    };
    let manifest = json!({
        "format": "igpt-onnx web 1",
        "tool": format!("igpt-onnx {}", env!("CARGO_PKG_VERSION")),
        "ort": { "version": ORT_WEB_VERSION, "base": ort_base },
        "profile": opts.profile.name(),
        "precision": opts.precision.name(),
        "config": {
            "vocab_size": c.vocab_size,
            "n_positions": c.n_positions,
            "n_embd": c.n_embd,
            "n_layer": c.n_layer,
            "n_head": c.n_head,
        },
        "decoder": decoder,
        "classifier": classifier,
        "processor": PROCESSOR_FILE,
        "generation": generation,
    });
    let out = stage.path();
    write_json(&out.join(MANIFEST_FILE), &manifest)?;
    write_json(&out.join(PROCESSOR_FILE), &processor.tables())?;
    for (name, contents) in PAGE_FILES {
        write_atomic(&out.join(name), contents.as_bytes())?;
    }
    if let OrtSource::Local(dist) = ort {
        let to = out.join(ORT_DIR);
        std::fs::create_dir(&to).map_err(PackageError::io("create folder", &to))?;
        for name in ORT_FILES {
            super::link_or_copy(&dist.join(name), &to.join(name))?;
        }
    }
    let bytes = folder_bytes(out)?;
    let dir = stage.commit()?;
    Ok(WebPackage { dir, graphs, bytes })
}

/// The manifest's decoder entry: its file and cache contract, read back from the graph by the
/// decoder contract's one parser.
fn decoder_entry(g: &Exported, c: &crate::config::ImageGptConfig) -> Result<Value, PackageError> {
    let (inputs, _) =
        crate::runtime::graph_io(&g.path).map_err(PackageError::invalid_because(&g.path))?;
    let card = ExportCard::require(&g.path)?;
    let io = DecoderIo::from_inputs(&inputs, card.cache)
        .map_err(PackageError::invalid_because(&g.path))?;
    Ok(json!({
        "file": file_name(&g.path),
        "bytes": g.bytes,
        "cache_type": io.dtype.name(),
        "n_head": c.n_head,
        "head_dim": c.head_dim(),
        "past": io.past_names(),
        "present": io.present_names(),
    }))
}

/// Refuses graphs a browser cannot load, naming the limit and the quantisations that help.
fn check_limits(graphs: &[Exported]) -> Result<(), PackageError> {
    let quantize: Vec<&str> = PRECISIONS.iter().filter_map(|p| p.quantize).collect();
    let hint = match quantize.as_slice() {
        [] => String::new(),
        q => format!(
            "; a quantised export is smaller: --quantize {}",
            q.join(" or ")
        ),
    };
    let gb = |b: u64| b as f64 / 1e9;
    for g in graphs {
        let total = g.bytes
            + g.data_path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
        if g.data_path.is_some() || total > MAX_GRAPH_BYTES {
            return Err(PackageError::Refused {
                path: PathBuf::from(file_name(&g.path)),
                why: format!(
                    "{:.2} GB is over the 2 GiB a browser reads as one graph (protobuf's message limit, one ArrayBuffer){hint}",
                    gb(total)
                ),
            });
        }
    }
    let sum: u64 = graphs.iter().map(|g| g.bytes).sum();
    if sum > MAX_TOTAL_BYTES {
        let names: Vec<String> = graphs.iter().map(|g| file_name(&g.path)).collect();
        return Err(PackageError::Refused {
            path: PathBuf::from(names.join(" + ")),
            why: format!(
                "{:.2} GB together is over onnxruntime-web's 4 GiB wasm32 memory{hint}",
                gb(sum)
            ),
        });
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_json(path: &Path) -> Result<Value, PackageError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| PackageError::invalid(path, format!("not JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(PackageError::io("read", path)(e)),
    }
}

fn write_json(path: &Path, v: &Value) -> Result<(), PackageError> {
    let text = serde_json::to_string(v).unwrap_or_default() + "\n";
    Ok(write_atomic(path, text.as_bytes())?)
}

fn folder_bytes(dir: &Path) -> Result<u64, PackageError> {
    let mut total = 0;
    let entries = std::fs::read_dir(dir).map_err(PackageError::io("list", dir))?;
    for e in entries {
        let e = e.map_err(PackageError::io("list", dir))?;
        let meta = e.metadata().map_err(PackageError::io("read", &e.path()))?;
        total += if meta.is_dir() {
            folder_bytes(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ort_web_is_the_version_the_adapters_pin() {
        let pkg = include_str!("../../ci/adapters/package.json");
        let v: Value = serde_json::from_str(pkg).expect("package.json");
        assert_eq!(
            v["dependencies"]["onnxruntime-web"].as_str(),
            Some(ORT_WEB_VERSION)
        );
        assert_eq!(
            ort_web_cdn(),
            "https://cdn.jsdelivr.net/npm/onnxruntime-web@1.30.0/dist/"
        );
    }

    #[test]
    fn graphs_over_the_browser_limits_are_refused_naming_the_limit() {
        let graph = |name: &str, bytes: u64| Exported {
            head: Head::Decoder,
            path: PathBuf::from(name),
            data_path: None,
            bytes,
            inputs: Vec::new(),
            outputs: Vec::new(),
            seconds: 0.0,
        };
        assert!(check_limits(&[graph("decoder.onnx", MAX_GRAPH_BYTES)]).is_ok());
        let err = check_limits(&[graph("decoder.onnx", 5_500_000_000)]).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "refusing to write decoder.onnx: 5.50 GB is over the 2 GiB a browser reads as one graph (protobuf's message limit, one ArrayBuffer); a quantised export is smaller: --quantize int8"
                .replace("int8", &PRECISIONS.iter().filter_map(|p| p.quantize).collect::<Vec<_>>().join(" or "))
        );
    }

    fn page_file(name: &str) -> &'static str {
        PAGE_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not a page file"))
            .1
    }

    #[test]
    fn the_page_names_its_module_and_the_modules_their_files() {
        assert!(page_file("index.html").contains("import { main } from './igpt.mjs';"));
        for name in [MANIFEST_FILE, "ort.wasm.min.mjs", "ort.webgpu.min.mjs"] {
            assert!(page_file("session.mjs").contains(name), "{name}");
        }
    }

    #[test]
    fn every_module_the_page_imports_is_written() {
        // A module left out of the table would only show in a browser, as a 404.
        for (name, contents) in PAGE_FILES {
            for (at, _) in contents.match_indices(" from './") {
                let rest = &contents[at + " from './".len()..];
                let imported = &rest[..rest.find('\'').expect("a quoted path")];
                assert!(
                    PAGE_FILES.iter().any(|(n, _)| *n == imported),
                    "{name} imports ./{imported}, which is not written"
                );
            }
        }
        for (name, _) in PAGE_FILES.iter().filter(|(n, _)| n.ends_with(".mjs")) {
            let imported = PAGE_FILES
                .iter()
                .any(|(_, c)| c.contains(&format!(" from './{name}';")));
            assert!(imported, "{name} is written but nothing imports it");
        }
    }
}
