//! Export: checkpoint → one ONNX file per head, staged under temporary names and put in place
//! together only when every head was written (a failed export leaves nothing behind).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::base::files::FileError;
use crate::checkpoint::Checkpoint;
use crate::graph::io::CacheMode;
use crate::graph::keep::NoMatch;
use crate::graph::profile::opset_floor;
use crate::graph::{
    self, BuildError, BuiltGraph, Calibration, ExportCard, GraphOptions, Head, KeepFloat32,
    LogitsWidth, Precision, Profile, Provenance,
};
use crate::onnx::opset::{ir_version, NEWEST_OPSET};
use crate::onnx::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::onnx::writer::{self, Staged, WriteError, INLINE_LIMIT};
use crate::onnx::Op;

/// The producer name written into every model; also how we recognise our own files.
pub const PRODUCER: &str = "igpt-onnx";

/// An export failure.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Weights(#[from] crate::checkpoint::WeightsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("--quantize {precision} needs activation ranges from a calibration set: give --calibration DATA (a folder of images, or a safetensors file of input_ids [n, seq])")]
    NeedsCalibration { precision: &'static str },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("output path {path} is a file, not a folder")]
    NotAFolder { path: String },
    #[error("refusing to replace {path}: {why}")]
    Refused { path: String, why: &'static str },
    #[error("the checkpoint has no weights for the {head} head (missing `{weight}`)")]
    HeadUnavailable {
        head: &'static str,
        weight: &'static str,
    },
    #[error(transparent)]
    KeepFloat32(#[from] NoMatch),
    #[error("{precision} weights are not available in the {profile} profile (they need ONNX Runtime's MatMulNBits: use --profile ort)")]
    PrecisionUnavailable {
        precision: &'static str,
        profile: &'static str,
    },
    #[error(transparent)]
    Opset(#[from] OpsetError),
}

/// A default-domain opset a profile and precision cannot be emitted at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsetError {
    #[error(
        "opset {asked}: {op} needs opset {needs}, the lowest {profile} graphs in {precision} reach"
    )]
    Below {
        asked: i64,
        op: &'static str,
        needs: i64,
        profile: &'static str,
        precision: &'static str,
    },
    #[error("opset {asked}: igpt-onnx emits opsets up to {NEWEST_OPSET}")]
    Above { asked: i64 },
    #[error("opset {asked}: {profile} graphs in {precision} are emitted at opset {default} only")]
    Fixed {
        asked: i64,
        default: i64,
        profile: &'static str,
        precision: &'static str,
    },
}

/// The default-domain opset an export of `profile` in `precision` asking for `asked` emits:
/// the profile's own when none is asked, else `asked` when it lies between the pair's floor
/// ([`opset_floor`]) and [`NEWEST_OPSET`].
pub fn resolve_opset(
    profile: Profile,
    precision: Precision,
    asked: Option<i64>,
) -> Result<i64, OpsetError> {
    let default = profile.spec().opset;
    let Some(asked) = asked.filter(|&a| a != default) else {
        return Ok(default);
    };
    if asked > NEWEST_OPSET {
        return Err(OpsetError::Above { asked });
    }
    let Some(floor) = opset_floor(profile, precision) else {
        return Err(OpsetError::Fixed {
            asked,
            default,
            profile: profile.name(),
            precision: precision.name(),
        });
    };
    if asked < floor.opset() {
        return Err(below(asked, floor.op, profile, precision));
    }
    Ok(asked)
}

fn below(asked: i64, op: Op, profile: Profile, precision: Precision) -> OpsetError {
    OpsetError::Below {
        asked,
        op: op.as_str(),
        needs: op.since(),
        profile: profile.name(),
        precision: precision.name(),
    }
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub graph: GraphOptions,
    pub profile: Profile,
    /// How the block matrices are stored (`--quantize`); must fit the profile.
    pub precision: Precision,
    /// The matrices that stay float32 in a reduced precision (`--keep-float32`); each pattern
    /// must name a matrix of the checkpoint. Nothing changes in float32.
    pub keep_float32: KeepFloat32,
    /// Where the weights go: beside the graph or inside it.
    pub weights_file: WeightsFile,
    /// The LM heads' logits width (the whole vocabulary for onnxruntime-genai).
    pub logits: LogitsWidth,
    /// The default-domain opset to emit (`None`: the profile's own); see [`resolve_opset`].
    pub opset: Option<i64>,
    /// Activation ranges for a calibrated precision (static int8): `crate::calibrate` makes
    /// them; its record goes into the card.
    pub calibration: Option<std::sync::Arc<Calibration>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            graph: GraphOptions::default(),
            profile: Profile::Portable,
            precision: Precision::Float32,
            keep_float32: KeepFloat32::default(),
            weights_file: WeightsFile::Auto,
            logits: LogitsWidth::Colours,
            opset: None,
            calibration: None,
        }
    }
}

/// Where a graph's weights go: inside `<head>.onnx`, or in `<head>.onnx.data` beside it (each
/// tensor at a page-aligned offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsFile {
    /// Beside the graph once they reach [`EXTERNAL_FROM`], inside it below. ONNX Runtime maps a
    /// page-aligned data file where it parses and copies inline weights: the small float32
    /// decoder's session loads in 0.39–0.45 s instead of 0.85–0.97 s, resident 340 MB instead
    /// of 520 MB (measured: `generate --max-new-tokens 1`, 2 cores).
    #[default]
    Auto,
    /// Always beside the graph.
    External,
    /// Inside the graph while it fits protobuf's 2 GiB (one file, what a browser reads); beside
    /// it beyond that all the same.
    SingleFile,
}

/// [`WeightsFile::Auto`] puts weights of this many bytes or more beside the graph: the published
/// sizes in every precision; the test fixtures stay one file.
pub const EXTERNAL_FROM: u64 = 16 << 20;

impl WeightsFile {
    /// Whether weights of `bytes` in all (`None`: past `u64`) go beside the graph.
    pub fn external(self, bytes: Option<u64>) -> bool {
        let Some(bytes) = bytes else { return true };
        match self {
            Self::External => true,
            Self::Auto => bytes >= EXTERNAL_FROM,
            Self::SingleFile => bytes >= INLINE_LIMIT,
        }
    }
}

/// One exported head.
#[derive(Debug, Clone)]
pub struct Exported {
    pub head: Head,
    pub path: PathBuf,
    pub data_path: Option<PathBuf>,
    pub bytes: u64,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub seconds: f64,
}

/// Exports `heads` of `ckpt` into `out_dir` as `<head>.onnx`.
pub fn export(
    ckpt: &Checkpoint,
    heads: &[Head],
    out_dir: &Path,
    opts: &ExportOptions,
) -> Result<Vec<Exported>, ExportError> {
    if !opts.precision.fits(opts.profile) {
        return Err(ExportError::PrecisionUnavailable {
            precision: opts.precision.name(),
            profile: opts.profile.name(),
        });
    }
    if opts.precision.spec().matmul.calibrated() && opts.calibration.is_none() {
        return Err(ExportError::NeedsCalibration {
            precision: opts.precision.name(),
        });
    }
    opts.keep_float32.check(ckpt)?;
    let keep = opts.keep_float32.in_precision(opts.precision.spec());
    let opset = resolve_opset(opts.profile, opts.precision, opts.opset)?;
    for &head in heads {
        if let Some(weight) = head.weight_name() {
            if ckpt.weights.get(weight).is_none() {
                return Err(ExportError::HeadUnavailable {
                    head: head.name(),
                    weight,
                });
            }
        }
    }
    prepare_out_dir(out_dir)?;
    let targets: Vec<PathBuf> = heads
        .iter()
        .map(|h| out_dir.join(format!("{}.onnx", h.name())))
        .collect();
    for t in &targets {
        check_replaceable(t)?;
    }
    let carried = carried_files(ckpt, out_dir)?;
    let carried_sums = sha256_files(
        &carried
            .iter()
            .map(|(src, _)| src.clone())
            .collect::<Vec<_>>(),
    )?;

    let files: Vec<PathBuf> = ckpt.weights.file_paths().map(Path::to_path_buf).collect();
    std::thread::scope(|scope| {
        // The checksum reads the source files once, on the other core, while the first head
        // streams; every head's metadata waits for it only at the very end of its file.
        let hasher = scope.spawn(move || sha256_files(&files));
        let mut hashes: Option<String> = None;
        let mut hasher = Some(hasher);
        let mut staged: Vec<(Staged, Exported)> = Vec::with_capacity(heads.len());
        for (&head, target) in heads.iter().zip(&targets) {
            let start = Instant::now();
            let built = graph::build_in(
                ckpt,
                head,
                (opts.profile, opts.precision, opset),
                &keep,
                opts.graph,
                opts.logits,
                opts.calibration.as_deref(),
            )?;
            // The floors' table says what the emitters need; a graph that needs more than it
            // says is refused all the same, naming its op.
            if let Some(op) = built.needs.filter(|op| op.since() > opset) {
                return Err(below(opset, op, opts.profile, opts.precision).into());
            }
            let weight_bytes = built
                .initializers
                .iter()
                .try_fold(0u64, |a, i| a.checked_add(i.byte_len()?));
            let external = opts.weights_file.external(weight_bytes);
            if external {
                check_data_replaceable(target)?;
            }
            let header = model_header(opts.profile, opset, &built);
            let mut metadata = || {
                if hashes.is_none() {
                    let joined = hasher.take().map(|t| t.join());
                    let sums = match joined {
                        Some(Ok(sums)) => sums.map_err(|e| WriteError::Checksum(Box::new(e)))?,
                        _ => {
                            let e = std::io::Error::other("the checksum thread stopped");
                            return Err(WriteError::Checksum(Box::new(e)));
                        }
                    };
                    hashes = Some(sums);
                }
                let sums = hashes.as_deref().unwrap_or_default();
                Ok(card(ckpt, head, (opts, &keep), sums, &carried_sums))
            };
            let st = writer::write_model(
                target,
                &header,
                &built.graph,
                &built.initializers,
                external,
                &mut metadata,
            )?;
            let info = Exported {
                head,
                path: target.clone(),
                data_path: st.data.clone(),
                bytes: st.bytes,
                inputs: built.graph.input.iter().map(|v| v.name.clone()).collect(),
                outputs: built.graph.output.iter().map(|v| v.name.clone()).collect(),
                seconds: start.elapsed().as_secs_f64(),
            };
            staged.push((st, info));
        }
        let (mut files, done): (Vec<Staged>, Vec<Exported>) = staged.into_iter().unzip();
        for (src, dest) in &carried {
            files.push(writer::stage_copy(src, dest)?);
        }
        writer::commit_all(files)?;
        Ok(done)
    })
}

fn model_header(profile: Profile, opset: i64, built: &BuiltGraph<'_>) -> ModelProto {
    ModelProto {
        // Every opset igpt-onnx emits has one (`resolve_opset` bounds it).
        ir_version: ir_version(opset).unwrap_or(3),
        opset_import: built
            .opsets
            .iter()
            .map(|&(domain, version)| OperatorSetIdProto {
                domain: domain.into(),
                version,
            })
            .collect(),
        producer_name: PRODUCER.into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: "ai.imagegpt".into(),
        model_version: 1,
        doc_string: format!(
            "ImageGPT exported by igpt-onnx ({} profile)",
            profile.name()
        ),
        graph: None,
        metadata_props: vec![],
    }
}

/// The card this export writes into `head`'s graph.
fn card(
    ckpt: &Checkpoint,
    head: Head,
    (opts, keep): (&ExportOptions, &KeepFloat32),
    sums: &str,
    carried_sums: &str,
) -> Vec<StringStringEntryProto> {
    let card = ExportCard {
        head,
        profile: opts.profile,
        precision: opts.precision,
        keep_float32: keep.clone(),
        config: ckpt.config.clone(),
        hidden_states: opts.graph.hidden_states,
        logits: opts.logits,
        cache: match head {
            Head::Decoder => opts.profile.spec().cache_mode(&ckpt.config),
            _ => CacheMode::Concat,
        },
        provenance: Provenance {
            version: env!("CARGO_PKG_VERSION").to_string(),
            source_sha256: sums.to_string(),
            source_format: ckpt.weights.format.clone(),
            hub: ckpt
                .origin
                .as_ref()
                .map(|o| (o.repo.clone(), o.commit.clone())),
            carried_sha256: (carried_sums != "{}").then(|| carried_sums.to_string()),
        },
        calibration: opts
            .calibration
            .as_ref()
            .filter(|_| opts.precision.spec().matmul.calibrated())
            .map(|c| c.record.clone()),
    };
    card.to_metadata()
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect()
}

/// Files beside the weights that a deployment needs and the export copies beside the graphs:
/// generation defaults (for `generate`) and the image processor (clusters, size).
pub const CARRIED_FILES: [&str; 2] = ["generation_config.json", "preprocessor_config.json"];

/// `(source, destination)` of each carried file the checkpoint folder has. An existing
/// destination with other contents is not replaced: nothing says it came from this export.
fn carried_files(
    ckpt: &Checkpoint,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, PathBuf)>, ExportError> {
    let folder = if ckpt.source.is_dir() {
        ckpt.source.clone()
    } else {
        ckpt.source
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for name in CARRIED_FILES {
        let src = folder.join(name);
        if !src.is_file() {
            continue;
        }
        let dest = out_dir.join(name);
        refuse_unless(&dest, || {
            let same = std::fs::read(&src).ok() == std::fs::read(&dest).ok();
            (same || holds_our_graphs(out_dir)).then_some(()).ok_or(
                "it differs from the checkpoint's and the folder holds no graph written by igpt-onnx",
            )
        })?;
        out.push((src, dest));
    }
    Ok(out)
}

/// Whether `dir` holds a `.onnx` igpt-onnx wrote: then it is an export folder of ours, and the
/// configs beside those graphs came from an earlier export.
fn holds_our_graphs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .any(|p| p.extension().is_some_and(|x| x == "onnx") && is_ours(&p))
    })
}

/// `{"<file name>": "<sha256 hex>", ...}` over the source files.
fn sha256_files(files: &[PathBuf]) -> Result<String, FileError> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 4 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).map_err(FileError::at("read", path))?;
        let mut h = Sha256::new();
        loop {
            let n = f.read(&mut buf).map_err(FileError::at("read", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        out.insert(name, hex);
    }
    // A map of strings always serialises.
    Ok(serde_json::to_string(&out).unwrap_or_default())
}

fn prepare_out_dir(dir: &Path) -> Result<(), ExportError> {
    if dir.exists() && !dir.is_dir() {
        return Err(ExportError::NotAFolder {
            path: dir.display().to_string(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| FileError::at("create output folder", dir)(e).into())
}

/// An existing `<head>.onnx` is replaced only when igpt-onnx wrote it.
fn check_replaceable(target: &Path) -> Result<(), ExportError> {
    refuse_unless(target, || {
        is_ours(target)
            .then_some(())
            .ok_or("it was not written by igpt-onnx")
    })
}

/// An existing `<head>.onnx.data` is replaced only as the data of a model of ours (which
/// [`check_replaceable`] vouched for): alone, nothing says igpt-onnx wrote it.
fn check_data_replaceable(model: &Path) -> Result<(), ExportError> {
    refuse_unless(&writer::external_data_path(model), || {
        model
            .is_file()
            .then_some(())
            .ok_or("no model written by igpt-onnx beside it")
    })
}

/// Nothing at `path`, or a regular file that `ours` vouches for; else an error saying why.
fn refuse_unless(
    path: &Path,
    ours: impl FnOnce() -> Result<(), &'static str>,
) -> Result<(), ExportError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let verdict = if meta.is_file() {
        ours()
    } else {
        Err("it is not a regular file")
    };
    verdict.map_err(|why| ExportError::Refused {
        path: path.display().to_string(),
        why,
    })
}

/// Our files start with ir_version, opset_import, then `producer_name = "igpt-onnx"`.
fn is_ours(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    let mut needle = vec![0x12, PRODUCER.len() as u8];
    needle.extend_from_slice(PRODUCER.as_bytes());
    head[..n].windows(needle.len()).any(|w| w == needle)
}
