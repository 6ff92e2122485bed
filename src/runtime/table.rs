//! The runtimes igpt-onnx reaches by name, one row each: its name, what it runs and how it is
//! opened. The command line's `--runtime(s)` values, the help text, the support matrix and the
//! refusals all follow from these rows; a new runtime is its own file and one row here.

use super::model::{ReleaseSpec, RuntimeKind, RuntimeSpec};
use super::releases::Version;
use super::{openvino, ort, ort_python, tract};
use crate::base::values::Choice;
use crate::graph::Feature;

/// What ONNX Runtime runs, on every provider: its own contrib ops, and the standard ops in
/// every type our graphs use (providers take the nodes they can and leave the rest to the CPU).
const ORT_RUNS: &[Feature] = &Feature::ALL;

/// Every runtime, in report order. ONNX Runtime's execution providers are rows of their own
/// (and rows of `ort::providers`, which says how each registers).
pub const RUNTIMES: &[RuntimeSpec] = &[
    RuntimeSpec {
        name: "ort-cpu",
        checked: true,
        about: "ONNX Runtime, CPU execution provider",
        runs: ORT_RUNS,
        open: ort::open,
    },
    RuntimeSpec {
        name: "ort-cuda",
        checked: false,
        about: "ONNX Runtime, CUDA execution provider (onnxruntime-gpu)",
        runs: ORT_RUNS,
        open: ort::open,
    },
    RuntimeSpec {
        name: "ort-tensorrt",
        checked: false,
        about: "ONNX Runtime, TensorRT execution provider, CUDA for what TensorRT leaves",
        runs: ORT_RUNS,
        open: ort::open,
    },
    RuntimeSpec {
        name: "tract",
        checked: true,
        about: "tract, pure Rust, in the binary",
        // tract matches ops by name whatever their domain: it loads the fused norms and
        // QuickGelu, but runs MultiHeadAttention bidirectionally (`unidirectional` ignored), so
        // the ort profile would be silently wrong; it has no MatMulNBits. It runs the QDQ form
        // as written: the weights' DequantizeLinear folds into float32 constants, the
        // activations' QuantizeLinear/DequantizeLinear round on the calibrated grid.
        runs: &[
            Feature::IntegerMatMul,
            Feature::Float16,
            Feature::QuantizeDequantize,
        ],
        open: tract::open,
    },
    RuntimeSpec {
        name: "openvino",
        checked: true,
        about: "OpenVINO, CPU plugin (its inference precision reported)",
        runs: OPENVINO_RUNS,
        open: openvino::open,
    },
];

/// Runtimes named with a release (`ort-python@1.20`), one row per family.
pub const RELEASE_RUNTIMES: &[ReleaseSpec] = &[ReleaseSpec {
    family: "ort-python",
    about: "ONNX Runtime VERSION's Python package (CPU), through the Python adapter, from the \
            virtual environment .venv-ort/VERSION; it runs what that release runs",
    open: ort_python::open,
}];

/// OpenVINO 2026.4's ONNX frontend takes the contrib ops our ort profile emits (fused norms,
/// QuickGelu, MultiHeadAttention, GroupQueryAttention, MatMulNBits) and the integer and float16
/// forms, but not the contrib ops on float16 (QuickGelu's conversion mixes a float32 constant
/// into a float16 product and fails). Each cell is checked against the goldens by the tests.
const OPENVINO_RUNS: &[Feature] = &[
    Feature::ContribOps,
    Feature::CausalMultiHeadAttention,
    Feature::BlockMatMul,
    Feature::IntegerMatMul,
    Feature::Float16,
    Feature::QuantizeDequantize,
];

/// The rows by name, for code that names a runtime. A test checks each against its row.
#[allow(non_upper_case_globals)]
impl RuntimeKind {
    pub const OrtCpu: RuntimeKind = RuntimeKind::Table(&RUNTIMES[0]);
    pub const OrtCuda: RuntimeKind = RuntimeKind::Table(&RUNTIMES[1]);
    pub const OrtTensorrt: RuntimeKind = RuntimeKind::Table(&RUNTIMES[2]);
    pub const Tract: RuntimeKind = RuntimeKind::Table(&RUNTIMES[3]);
    pub const OpenVino: RuntimeKind = RuntimeKind::Table(&RUNTIMES[4]);

    /// Every row, in report order.
    pub fn table() -> impl Iterator<Item = RuntimeKind> {
        RUNTIMES.iter().map(RuntimeKind::Table)
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<RuntimeKind> {
        <RuntimeKind as Choice>::parse(name)
    }
}

impl Choice for RuntimeKind {
    const WHAT: &'static str = "runtime";

    fn all() -> Vec<Self> {
        RuntimeKind::table().collect()
    }

    fn name(self) -> &'static str {
        RuntimeKind::name(self)
    }

    /// A table name, `FAMILY@VERSION` (a release row's family, a version `1.20` or `1.20.1`),
    /// or `cmd:PROGRAM` (PROGRAM not empty).
    fn parse(name: &str) -> Option<Self> {
        if let Some((family, version)) = name.split_once('@') {
            let row = RELEASE_RUNTIMES.iter().find(|r| r.family == family)?;
            Version::parse(version)?;
            return Some(RuntimeKind::Release(row, command_name(name)));
        }
        match name.strip_prefix("cmd:") {
            Some("") => None,
            Some(_) => Some(RuntimeKind::Command(command_name(name))),
            None => RuntimeKind::table().find(|v| v.name() == name),
        }
    }

    /// The table's names, the release families (`ort-python@VERSION`), then `cmd:PROGRAM`.
    fn expected() -> String {
        let mut names: Vec<String> = RuntimeKind::table().map(|k| k.name().to_string()).collect();
        names.extend(
            RELEASE_RUNTIMES
                .iter()
                .map(|r| format!("{}@VERSION", r.family)),
        );
        format!("{} or cmd:PROGRAM", names.join(", "))
    }
}

/// `text` as a `&'static str`, leaked once per distinct text.
fn command_name(text: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == text) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_row_is_its_row_and_names_are_unique() {
        let named = [
            (RuntimeKind::OrtCpu, "ort-cpu"),
            (RuntimeKind::OrtCuda, "ort-cuda"),
            (RuntimeKind::OrtTensorrt, "ort-tensorrt"),
            (RuntimeKind::Tract, "tract"),
            (RuntimeKind::OpenVino, "openvino"),
        ];
        for (kind, name) in named {
            assert_eq!(kind.name(), name);
            assert_eq!(RuntimeKind::parse(name), Some(kind));
        }
        for (i, row) in RUNTIMES.iter().enumerate() {
            assert!(
                RUNTIMES[..i].iter().all(|r| r.name != row.name),
                "{} twice",
                row.name
            );
            assert!(!row.name.starts_with("cmd:"));
        }
        let cmd = RuntimeKind::parse("cmd:node a.mjs").expect("cmd");
        assert_eq!(cmd, RuntimeKind::Command("cmd:node a.mjs"));
        assert_eq!(RuntimeKind::parse("cmd:"), None);
        assert_eq!(
            RuntimeKind::parse_or_err("onnx").expect_err("unknown").to_string(),
            "unknown runtime `onnx` (expected ort-cpu, ort-cuda, ort-tensorrt, tract, openvino, ort-python@VERSION or cmd:PROGRAM)"
        );
        let old = RuntimeKind::parse("ort-python@1.15").expect("a release");
        assert!(
            matches!(old, RuntimeKind::Release(row, "ort-python@1.15") if row.family == "ort-python")
        );
        assert!(RuntimeKind::parse("ort-python@1.20.1").is_some());
        for bad in [
            "ort-python@",
            "ort-python@latest",
            "ort-python@1",
            "ort-cpu@1.20",
        ] {
            assert_eq!(RuntimeKind::parse(bad), None, "{bad}");
        }
    }
}
