//! igpt-onnx: export ImageGPT checkpoints to ONNX graphs and verify them numerically.
//!
//! The pipeline reads top-down: [`config`] → [`weights`] / [`checkpoint`] → [`graph`] (emitted
//! with [`onnx`]) → [`export`] → [`runtime`] → [`verify`].

#![warn(clippy::unwrap_used)]

pub mod checkpoint;
pub mod config;
pub mod export;
pub mod graph;
pub mod onnx;
pub mod random;
pub mod runtime;
pub mod verify;
pub mod weights;

pub use checkpoint::{Checkpoint, Head};
pub use config::{ImageGptConfig, Variant};
