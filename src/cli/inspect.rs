//! `igpt-onnx inspect FILE.onnx`: a graph's signature, ops, initializers and metadata.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The .onnx file.
    model: PathBuf,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let info = igpt_onnx::onnx::inspect::inspect(&a.model).map_err(anyhow::Error::msg)?;
    super::print_out(&info.summary())?;
    Ok(ExitCode::SUCCESS)
}
