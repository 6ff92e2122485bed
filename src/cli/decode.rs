//! `igpt-onnx decode`: token rows → one PNG per row, through the processor's clusters
//! (`rint(127.5 · (c + 1))`, the model docs' inverse).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use igpt_onnx::base::files::write_atomic;
use igpt_onnx::image::{png, Processor};
use serde_json::Value;

/// `decode` options.
#[derive(clap::Args)]
pub struct Args {
    /// preprocessor_config.json, or a checkpoint folder holding one.
    #[arg(long)]
    pub processor: PathBuf,
    /// JSON with `{"input_ids": [[...], ...]}` (as `encode` writes), or a bare list of rows.
    /// A row may start with the start token (n_clusters), as generated sequences do.
    #[arg(long)]
    pub tokens: PathBuf,
    /// Folder for `0.png`, `1.png`, …
    #[arg(long)]
    pub out: PathBuf,
}

/// Every row is checked and encoded before the first file is written.
pub fn run(args: Args) -> Result<ExitCode> {
    let processor = Processor::open(&args.processor)?;
    let name = args.tokens.display().to_string();
    let rows = read_rows(&args.tokens).with_context(|| name.clone())?;
    let (h, w) = processor.size();
    let sos = processor.n_clusters() as i64;
    let mut pngs = Vec::with_capacity(rows.len());
    for (i, mut row) in rows.into_iter().enumerate() {
        if row.len() == h * w + 1 && row.first() == Some(&sos) {
            row.remove(0);
        }
        let image = processor
            .decode_tokens(&row)
            .with_context(|| format!("{name}: row {i}"))?;
        pngs.push(png(&image)?);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (i, bytes) in pngs.iter().enumerate() {
        write_atomic(&args.out.join(format!("{i}.png")), bytes)?;
    }
    println!("wrote {} image(s) to {}", pngs.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The token rows of a JSON file: integers only, at least one row.
fn read_rows(path: &Path) -> Result<Vec<Vec<i64>>> {
    let text = std::fs::read_to_string(path).context("cannot read")?;
    let value: Value = serde_json::from_str(&text).context("not valid JSON")?;
    let rows = match &value {
        Value::Array(rows) => rows,
        Value::Object(m) => match m.get("input_ids") {
            Some(Value::Array(rows)) => rows,
            _ => bail!("has no `input_ids` list of token rows"),
        },
        _ => bail!("expected {{\"input_ids\": [[...], ...]}}"),
    };
    if rows.is_empty() {
        bail!("`input_ids` has no rows");
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Some(row) = row.as_array() else {
                bail!("row {i} is not a list of tokens");
            };
            row.iter()
                .enumerate()
                .map(|(j, t)| {
                    t.as_i64().with_context(|| {
                        format!("row {i}: position {j}: {t} is not an integer token")
                    })
                })
                .collect()
        })
        .collect()
}
