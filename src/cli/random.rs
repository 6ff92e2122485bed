//! `igpt-onnx random-checkpoint`: a random-weight checkpoint of a published size.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use igpt_onnx::Variant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    variant: Variant,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let cfg = a.variant.config();
    let path = igpt_onnx::random::write_random_checkpoint(&cfg, a.seed, &a.out)?;
    println!(
        "wrote {} ({} variant, seed {})",
        path.display(),
        a.variant.name(),
        a.seed
    );
    Ok(ExitCode::SUCCESS)
}
