//! igpt-onnx: export ImageGPT checkpoints to ONNX graphs and verify them numerically.
//!
//! The pipeline reads top-down: [`config`] → [`checkpoint`] → [`graph`] (emitted
//! with [`onnx`]) → [`export`] → [`runtime`] → [`verify`].
//!
//! Export the bundled fixture checkpoint and verify it against the reference goldens in tract:
//!
//! ```
//! use igpt_onnx::export::{export, ExportOptions};
//! use igpt_onnx::runtime::RuntimeKind;
//! use igpt_onnx::verify::{self, VerifyOptions};
//! use igpt_onnx::{Checkpoint, Head};
//!
//! let case = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/causal-lm");
//! let ckpt = Checkpoint::open(&case.join("model"), None, None)?;
//! let out = tempfile::tempdir()?;
//! let written = export(&ckpt, &[Head::CausalLm], out.path(), &ExportOptions::default())?;
//! let opts = VerifyOptions { runtimes: vec![RuntimeKind::Tract], ..Default::default() };
//! let report = verify::model_against_case(&written[0].path, &case, &opts)?;
//! let logits = &report.checks[0].outputs[0];
//! assert_eq!(logits.name, "logits");
//! assert!(logits.comparison.metrics.as_ref().map_or(false, |m| m.max_abs < 1e-5));
//! assert_eq!(report.exit_code(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(clippy::unwrap_used)]

pub mod base;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod debug;
pub mod export;
pub mod generate;
pub mod graph;
pub mod image;
pub mod onnx;
pub mod package;
pub mod random;
pub mod runtime;
pub mod verify;

pub use checkpoint::Checkpoint;
pub use config::{ImageGptConfig, Variant};
pub use graph::Head;
