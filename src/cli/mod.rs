//! The `igpt-onnx` commands, one module each with its `clap::Args` and `run`. Errors come back
//! to `main` as `anyhow` chains and are printed as one line.

pub mod classify;
pub mod debug;
pub mod decode;
pub mod encode;
pub mod export;
pub mod flags;
pub mod generate;
pub mod inspect;
pub mod matrix;
pub mod package;
pub mod random;
pub mod support;
pub mod verify;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "igpt-onnx",
    about = "Export ImageGPT checkpoints to ONNX and verify them numerically",
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the version, and the ONNX Runtime and OpenVINO libraries the commands will use and
    /// where they were found (or what was tried).
    #[arg(short = 'V', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `igpt-onnx --version`: the tool's version, then each runtime library it loads at run time,
/// found as the commands find it (no flags given), or what was tried.
pub fn version_text() -> String {
    use igpt_onnx::runtime::{openvino, ort};
    let mut text = format!("igpt-onnx {}\n", env!("CARGO_PKG_VERSION"));
    for lib in [&ort::LIBRARY, &openvino::LIBRARY] {
        let line = match lib.locate(None) {
            Ok(found) => format!("{}: {} (via {})", lib.what, found.path.display(), found.via),
            Err(e) => format!("{}: {}", lib.what, one_line(&anyhow::Error::new(e))),
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[derive(Subcommand)]
pub enum Command {
    /// Emit ONNX graphs from a checkpoint (config.json + safetensors).
    Export(export::Args),
    /// Run graphs in ONNX Runtime and tract and compare with goldens or across runtimes.
    Verify(verify::Args),
    /// Print a graph's I/O signature, op histogram, initializers and metadata.
    Inspect(inspect::Args),
    /// Write a random-weight checkpoint of a published size.
    RandomCheckpoint(random::Args),
    /// Generate tokens with a KV-cache decoder graph (`decoder.onnx`).
    Generate(generate::Args),
    /// Turn images into colour-cluster token ids, as the reference image processor does.
    Encode(encode::Args),
    /// Turn token ids back into PNG images.
    Decode(decode::Args),
    /// Classify images with a classifier graph.
    Classify(classify::Args),
    /// Ship to engines: a Triton model repository, or an onnxruntime-genai model folder.
    Package(package::Args),
    /// Which runtime runs which profile and precision (the support matrix), and why not.
    Support(support::Args),
    /// Prove the support matrix here: the golden suite for every runtime, profile and precision.
    Matrix(matrix::Args),
    /// Where and why runtimes disagree: bisect to the first diverging node, reduce it to a
    /// repro, find the parts to keep in float32.
    Debug(debug::Args),
}

impl Command {
    pub fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self {
            Command::Export(a) => export::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Inspect(a) => inspect::run(a),
            Command::RandomCheckpoint(a) => random::run(a),
            Command::Generate(a) => generate::run(a),
            Command::Encode(a) => encode::run(a),
            Command::Decode(a) => decode::run(a),
            Command::Classify(a) => classify::run(a),
            Command::Package(a) => package::run(a),
            Command::Support(a) => support::run(a),
            Command::Matrix(a) => matrix::run(a),
            Command::Debug(a) => debug::run(a),
        }
    }
}

/// The error and its causes on one line, `: `-separated. Library errors already show their
/// cause (`cannot read {path}: {source}`, `{path}: not a saved-outputs file ({source})`), so a
/// cause whose text the line already holds is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = igpt_onnx::runtime::model::one_line(&cause.to_string());
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// A clap error as one line: a value parser's own message when there is one (it already says
/// what was expected), else clap's text without its usage and help hints.
pub fn clap_line(e: &clap::Error) -> String {
    use std::error::Error as _;
    if let Some(source) = e.source() {
        return source.to_string();
    }
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    parts.join(" ").trim_start_matches("error: ").to_string()
}

/// A duration in seconds that is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a positive number of seconds")]
pub struct BadSeconds(String);

/// `--command-timeout SECS`: a positive number of seconds (fractions allowed).
pub fn seconds(text: &str) -> Result<std::time::Duration, BadSeconds> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| BadSeconds(text.to_string()))
}

/// The exit code of a failed command (see `main.rs`): 1 where a runtime failed to load or run
/// the graph, 2 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use igpt_onnx::runtime::RuntimeError;
    let ran = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::Load { .. } | RuntimeError::Run { .. })
        )
    });
    match ran {
        true => 1,
        false => 2,
    }
}

/// Prints `text` on stdout; a reader that went away (`igpt-onnx support | head`) is not an
/// error (print! would panic there).
pub fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
