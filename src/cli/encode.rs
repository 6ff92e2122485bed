//! `igpt-onnx encode`: images → ImageGPT tokens with the reference's processor,
//! written as `{"input_ids": [[...], ...]}`, one row per image in argument order.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use igpt_onnx::base::files::write_atomic;
use igpt_onnx::image::Processor;

/// `encode` options.
#[derive(clap::Args)]
pub struct Args {
    /// preprocessor_config.json, or a checkpoint folder holding one.
    #[arg(long)]
    pub processor: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Write the JSON here (atomically) instead of to stdout.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Encodes every image first, so a bad one leaves nothing written.
pub fn run(args: Args) -> Result<ExitCode> {
    let processor = Processor::open(&args.processor)?;
    let rows = args
        .images
        .iter()
        .map(|path| processor.encode_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let text = tokens_json(&rows);
    match &args.json {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `{"input_ids": [...]}` with one row per line: a diff of two runs reads row by row.
pub fn tokens_json(rows: &[Vec<i64>]) -> String {
    let lines: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .collect();
    format!("{{\"input_ids\": [\n  {}\n]}}\n", lines.join(",\n  "))
}
