//! `igpt-onnx support`: which runtime runs which profile and precision, from the runtimes'
//! table and the profile and precision rows (the README's matrix and `ci/` scripts read it).

use std::process::ExitCode;

use anyhow::Result;
use igpt_onnx::runtime::support;

/// How the matrix is printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// The table, then why each – is one.
    Text,
    /// The table alone, as the README shows it.
    Markdown,
    /// Runtimes, profiles, precisions (with their flags) and one cell per combination.
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let text = match a.format {
        Format::Text => support::matrix_text(),
        Format::Markdown => support::matrix_markdown(),
        Format::Json => serde_json::to_string_pretty(&support::matrix_json())? + "\n",
    };
    super::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
