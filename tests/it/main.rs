//! The integration tests, one binary: each module is one area (a command, a runtime, a reader).
//! One crate links ONNX Runtime, tract and the library once instead of once per file.

mod alloc;
mod command;
mod common;
mod debug;
mod debug_precision;
mod decoder_cache;
mod docs;
mod export_cli;
mod files;
mod fuzz;
mod fuzz_images;
mod fuzz_readers;
mod generate;
mod graphs;
mod hub;
mod image;
mod int8_static;
mod keep_float32;
mod layers;
mod matrix;
mod openvino;
mod ort_cache;
mod package;
mod png;
mod profiles;
mod proved_matrix;
mod runtime;
mod speculative;
mod support;
mod torch_checkpoint;
mod trained;
mod verify;
mod web;
mod web_parity;
mod writer;
