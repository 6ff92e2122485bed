//! `igpt-onnx inspect FILE.onnx`: a graph's signature, ops, initializers and metadata, then what
//! it needs of ONNX Runtime (IR version, opsets, contrib ops) and the oldest release that has it.

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
    let needs = igpt_onnx::runtime::releases::needs(&info);
    super::print_out(&format!("{}{}", info.summary(), needs.to_text()))?;
    Ok(ExitCode::SUCCESS)
}
