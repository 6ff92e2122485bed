//! The flag groups more than one command takes, written once and flattened into each: how
//! runtimes are found and run ([`RuntimeFlags`]), which profile and precision a graph is
//! exported in ([`PrecisionFlags`]), whose help and accepted values come from the tables, and
//! at which opset ([`OpsetFlag`]).

use std::path::PathBuf;
use std::sync::Arc;

use igpt_onnx::calibrate::{self, Method};
use igpt_onnx::graph::calibration::DEFAULT_PERCENTILE;
use igpt_onnx::graph::{Calibration, CalibrationMethod};
use igpt_onnx::Checkpoint;

use igpt_onnx::base::values::{Choice, ChoiceParser};
use igpt_onnx::graph::keep::ScopePattern;
use igpt_onnx::graph::profile::{FloatType, Quantization, OPSET_FLOORS};
use igpt_onnx::graph::{KeepFloat32, Precision, Profile, PRECISIONS, PROFILES};
use igpt_onnx::onnx::opset::{DEFAULT_OPSET, NEWEST_OPSET};
use igpt_onnx::runtime::{ComputePrecision, RuntimeKind, RuntimeOptions};
use igpt_onnx::verify::options::OutputTolerance;

/// How runtimes are found and run: every command that runs a graph takes these.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuntimeFlags {
    /// ONNX Runtime shared library (first in the discovery order).
    #[arg(long, value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime CPU: keep each graph's optimized model with its prepacked weights in this
    /// folder (about twice the graph's size) and load it from there on later runs: a faster
    /// start-up. Also IGPT_ORT_CACHE.
    #[arg(long, value_name = "DIR")]
    pub ort_cache: Option<PathBuf>,
    /// Let a GPU provider that cannot be registered run on CPU (reported as fallback).
    #[arg(long)]
    pub allow_fallback: bool,
    /// OpenVINO's C library (libopenvino_c.so*) or its folder (first in the discovery order).
    #[arg(long, value_name = "PATH")]
    pub openvino_lib: Option<PathBuf>,
    /// OpenVINO's inference precision hint (f32, bf16, f16; default: OpenVINO's, bf16 on CPUs
    /// with AVX-512 BF16 or AMX); the precision used is reported.
    #[arg(long, value_parser = ChoiceParser::<ComputePrecision>::new())]
    pub openvino_precision: Option<ComputePrecision>,
    /// cmd: runtimes: seconds an adapter may take to load the graph or answer one request
    /// (default 120).
    #[arg(long, value_name = "SECS", value_parser = super::seconds)]
    pub command_timeout: Option<std::time::Duration>,
}

impl RuntimeFlags {
    /// The options these flags ask for; `count_nodes` where the report says which execution
    /// provider ran how many nodes.
    pub fn options(&self, count_nodes: bool) -> RuntimeOptions {
        RuntimeOptions {
            count_nodes,
            ort_lib: self.ort_lib.clone(),
            allow_fallback: self.allow_fallback,
            openvino_lib: self.openvino_lib.clone(),
            openvino_precision: self.openvino_precision,
            command_timeout: self.command_timeout,
            ort_cache: ort_cache(&self.ort_cache),
            intra_threads: None,
            pool_spin: None,
        }
    }
}

/// `--ort-cache DIR`, else `IGPT_ORT_CACHE` (an empty value: none).
fn ort_cache(flag: &Option<PathBuf>) -> Option<PathBuf> {
    flag.clone()
        .or_else(|| std::env::var_os("IGPT_ORT_CACHE").map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty())
}

/// How a run's outputs are judged against the reference's: every command that compares takes
/// these.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ToleranceFlags {
    /// Absolute tolerance (overrides the case's).
    #[arg(long)]
    pub atol: Option<f64>,
    /// Relative tolerance (overrides the case's).
    #[arg(long)]
    pub rtol: Option<f64>,
    /// A budget for some outputs or tensors: PATTERN=ATOL[,RTOL], `*` matching any run of
    /// characters (`logits=1e-4,1e-3`, `present.*=1e-3`); repeatable, the last match wins.
    #[arg(long, value_name = "PATTERN=ATOL[,RTOL]", value_parser = OutputTolerance::parse)]
    pub tolerance: Vec<OutputTolerance>,
}

/// `--runtime NAME`'s help: the table's names.
pub fn runtime_help() -> String {
    format!("The runtime to run on ({})", RuntimeKind::expected())
}

/// `--runtimes A,B`'s help.
pub fn runtimes_help() -> String {
    format!(
        "Comma-separated runtimes, the first the reference ({}; ort-python@VERSION: that ONNX Runtime release's Python package, from the environment .venv-ort/VERSION; cmd:PROGRAM: an adapter program speaking igpt-onnx's file protocol)",
        RuntimeKind::expected()
    )
}

/// Which profile and precision a graph is exported in.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrecisionFlags {
    #[arg(long, help = profile_help(), value_parser = ChoiceParser::<Profile>::new())]
    pub profile: Option<Profile>,
    #[arg(long, help = quantize_help(), value_parser = ChoiceParser::<Quantization>::new())]
    pub quantize: Option<Quantization>,
    #[arg(long, help = dtype_help(), value_parser = ChoiceParser::<FloatType>::new())]
    pub dtype: Option<FloatType>,
    /// Keep these matrices float32 in a reduced precision: comma-separated scope patterns over
    /// the checkpoint's matrices (h.0: block 0's four; h.3.attn: its attention's two;
    /// h.*.mlp.c_proj: every block's, `*` being one whole segment; head: the LM head or score,
    /// float32 in every precision already). A pattern that names no matrix is refused; nothing
    /// changes in float32. `igpt-onnx debug precision` finds a list that meets a budget.
    #[arg(long, value_name = "PATTERN[,PATTERN]", value_delimiter = ',', value_parser = ScopePattern::parse)]
    pub keep_float32: Vec<ScopePattern>,
}

impl PrecisionFlags {
    /// The precision asked for (float32 when neither flag is given; both is refused).
    pub fn precision(&self) -> anyhow::Result<Precision> {
        Ok(Precision::chosen(self.quantize, self.dtype)?)
    }

    /// The keep-list asked for, as it applies in `precision`; in float32, where it changes
    /// nothing, a note on stderr says so (the patterns are still checked against the
    /// checkpoint).
    pub fn keep_float32(&self, precision: Precision) -> KeepFloat32 {
        let keep = KeepFloat32::new(self.keep_float32.iter().cloned());
        if !keep.is_empty() && keep.in_precision(precision.spec()).is_empty() {
            eprintln!(
                "note: --keep-float32 changes nothing in {}: every matrix is float32 already",
                precision.name()
            );
        }
        keep
    }

    /// The profile asked for, else portable.
    pub fn profile_or_portable(&self) -> Profile {
        self.profile.unwrap_or(Profile::Portable)
    }

    /// The profile asked for, else the first profile `precision` fits (portable where it can).
    pub fn profile_for(&self, precision: Precision) -> Profile {
        self.profile.unwrap_or_else(|| {
            precision
                .spec()
                .profiles
                .first()
                .copied()
                .unwrap_or(Profile::Portable)
        })
    }
}

fn profile_help() -> String {
    let rows: Vec<String> = PROFILES
        .iter()
        .map(|p| format!("{} ({})", p.name, p.about))
        .collect();
    format!("Op profile: {} [default: portable]", rows.join("; "))
}

fn quantize_help() -> String {
    let rows: Vec<String> = PRECISIONS
        .iter()
        .filter_map(|p| {
            let q = p.quantize?;
            let profiles: Vec<&str> = p.profiles.iter().map(|f| f.name()).collect();
            Some(format!(
                "{q} ({}; profile {})",
                p.about,
                profiles.join(" or ")
            ))
        })
        .collect();
    format!("Quantised block matrices: {}", rows.join("; "))
}

fn dtype_help() -> String {
    let rows: Vec<String> = PRECISIONS
        .iter()
        .filter_map(|p| Some(format!("{} ({})", p.dtype?, p.about)))
        .collect();
    format!(
        "Float type of the trunk: {}; not with --quantize",
        rows.join("; ")
    )
}

/// Where static int8 (`--quantize int8-static`) takes its activation ranges from.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CalibrationFlags {
    /// Calibration set for --quantize int8-static: a folder of images (encoded by the
    /// checkpoint's image processor) or a safetensors file of input_ids [n, seq]; the float32
    /// graph runs over it in ONNX Runtime CPU. Its sha256 goes into the export card.
    #[arg(long, value_name = "DATA")]
    pub calibration: Option<PathBuf>,
    /// How each activation's range is read from the calibration run.
    #[arg(long, default_value = "percentile", value_parser = ChoiceParser::<CalibrationMethod>::new())]
    pub calibration_method: CalibrationMethod,
    /// The percentile of each tail that --calibration-method percentile keeps.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_PERCENTILE)]
    pub calibration_percentile: f64,
}

impl CalibrationFlags {
    /// The method these flags ask for.
    pub fn method(&self) -> Method {
        Method {
            method: self.calibration_method,
            percentile: self.calibration_percentile,
        }
    }

    /// Whether the flags fit `precision`: a calibrated one needs `--calibration`, any other
    /// refuses it (a flag never goes silently unused). Usage, checked before anything is read.
    pub fn check(&self, precision: Precision) -> anyhow::Result<()> {
        match (&self.calibration, precision.spec().matmul.calibrated()) {
            (Some(_), false) => anyhow::bail!(
                "--calibration applies to --quantize int8-static only (this export is {})",
                precision.name()
            ),
            (None, true) => anyhow::bail!(
                "--quantize {} needs --calibration DATA: a folder of images or a safetensors file of input_ids [n, seq] to measure the activations' ranges on",
                precision.name()
            ),
            _ => Ok(()),
        }
    }

    /// Ranges for `precision` when it is calibrated, from `--calibration` ([`Self::check`]'s
    /// refusals first); `None` for any other precision.
    pub fn calibrate(
        &self,
        ckpt: &Checkpoint,
        (profile, precision): (Profile, Precision),
        runtime: &RuntimeOptions,
    ) -> anyhow::Result<Option<Arc<Calibration>>> {
        self.check(precision)?;
        let Some(data) = self
            .calibration
            .as_deref()
            .filter(|_| precision.spec().matmul.calibrated())
        else {
            return Ok(None);
        };
        let set = calibrate::read_set(data, ckpt)?;
        let c = calibrate::calibrate(ckpt, profile, &set, self.method(), runtime)?;
        Ok(Some(Arc::new(c)))
    }
}

/// `--opset N`: the default-domain opset an export emits (export and package take it).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OpsetFlag {
    #[arg(long, value_name = "N", help = opset_help())]
    pub opset: Option<i64>,
}

impl OpsetFlag {
    /// The opset to emit for `profile` in `precision`, or the refusal as one line.
    pub fn resolve(&self, profile: Profile, precision: Precision) -> anyhow::Result<i64> {
        igpt_onnx::export::resolve_opset(profile, precision, self.opset)
            .map_err(|e| anyhow::anyhow!("--{e}"))
    }
}

fn opset_help() -> String {
    let floors: Vec<String> = OPSET_FLOORS
        .iter()
        .map(|f| format!("{} {} {}", f.profile.name(), f.precision, f.opset()))
        .collect();
    format!(
        "Default-domain opset to emit, older ones where the ops allow (ops whose signature changed take the opset's form; the IR version follows) [default: {DEFAULT_OPSET}]; from ({}) up to {NEWEST_OPSET}",
        floors.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Help names every row the command line accepts, so a new row shows up by itself.
    #[test]
    fn help_lists_every_row() {
        for p in PROFILES {
            assert!(profile_help().contains(p.name));
        }
        for p in PRECISIONS {
            if let Some(q) = p.quantize {
                assert!(quantize_help().contains(&format!("{q} (")), "{q}");
            }
            if let Some(d) = p.dtype {
                assert!(dtype_help().contains(&format!("{d} (")), "{d}");
            }
        }
        assert!(quantize_help().contains(
            "int4 (4-bit weight blocks (MatMulNBits), float32 activations; profile ort)"
        ));
        for r in RuntimeKind::table() {
            assert!(runtime_help().contains(r.name()));
        }
    }
}
