//! `igpt-onnx matrix`: the support matrix proved on this machine — the golden suite for every
//! runtime, profile and precision it has — as text, Markdown (the README's), JSON and JUnit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::{Choice, Unknown};
use igpt_onnx::graph::{Precision, Profile, PRECISIONS};
use igpt_onnx::runtime::ort_python::installed;
use igpt_onnx::runtime::{RuntimeKind, RELEASE_RUNTIMES};
use igpt_onnx::verify::{self, matrix};

use super::flags::RuntimeFlags;
use super::verify::runtime_kind;

/// How the matrix is printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    /// The table with its notes, then the counts and the time taken.
    Text,
    /// The table with its notes, as the README shows it.
    Markdown,
}

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated runtimes, in column order (default: every runtime of the table, then
    /// every installed ort-python@VERSION; one that cannot be opened here is skipped).
    #[arg(long, value_delimiter = ',', value_parser = runtime_kind)]
    runtimes: Vec<Option<RuntimeKind>>,
    /// Comma-separated profiles (default: all).
    #[arg(long, value_delimiter = ',', value_parser = profile)]
    profiles: Vec<Profile>,
    /// Comma-separated precisions, by name or by the flag value that asks for it (float32 or
    /// fp32, int8, float16 or fp16, int4, int8-dynamic; default: all).
    #[arg(long, value_delimiter = ',', value_parser = precision)]
    precisions: Vec<Precision>,
    /// Comma-separated default-domain opsets to prove too, a row each beside the profile's own
    /// (one a profile and precision cannot be emitted at: a row of — with the refusal).
    #[arg(long, value_name = "N[,N]", value_delimiter = ',')]
    opset: Vec<i64>,
    /// A folder of golden cases (repeatable; default: ./fixtures and its trained/ labelled case,
    /// else the crate's own).
    #[arg(long)]
    fixtures: Vec<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeFlags,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write the matrix as JSON (one cell per runtime, profile and precision).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the matrix as JUnit XML (one testcase per cell).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

fn profile(name: &str) -> Result<Profile, Unknown> {
    Profile::parse_or_err(name)
}

/// A precision by its row's name or by the `--quantize` / `--dtype` value that asks for it
/// (`fp32`: float32, beside `fp16`).
fn precision(name: &str) -> Result<Precision, Unknown> {
    PRECISIONS
        .iter()
        .find(|p| {
            p.name == name
                || p.quantize == Some(name)
                || p.dtype == Some(name)
                || (name == "fp32" && p.quantize.is_none() && p.dtype.is_none())
        })
        .map(|p| p.precision())
        .ok_or_else(|| Unknown {
            what: "precision",
            name: name.to_string(),
            expected: Precision::expected(),
        })
}

/// The table's runtimes, then the installed releases of each release family.
fn every_runtime() -> Vec<RuntimeKind> {
    let mut all: Vec<RuntimeKind> = RuntimeKind::table().collect();
    for family in RELEASE_RUNTIMES {
        for (version, _) in installed() {
            if let Some(k) = RuntimeKind::parse(&format!("{}@{version}", family.family)) {
                all.push(k);
            }
        }
    }
    all
}

pub fn run(a: Args) -> Result<ExitCode> {
    igpt_onnx::runtime::install_panic_hook();
    let mut runtimes: Vec<RuntimeKind> = a.runtimes.iter().flatten().copied().collect();
    if runtimes.is_empty() {
        runtimes = every_runtime();
    }
    let fixtures = match a.fixtures.is_empty() {
        false => a.fixtures,
        true => {
            let dir = verify::default_fixtures();
            let trained = dir.join("trained");
            let mut dirs = vec![dir];
            if trained.is_dir() {
                dirs.push(trained);
            }
            dirs
        }
    };
    let opts = matrix::MatrixOptions {
        runtimes,
        profiles: match a.profiles.is_empty() {
            true => Profile::all(),
            false => a.profiles,
        },
        precisions: match a.precisions.is_empty() {
            true => Precision::all(),
            false => a.precisions,
        },
        opsets: a.opset,
        fixtures,
        runtime: a.runtime.options(false),
    };
    let command: Vec<String> = std::env::args().collect();
    let start = std::time::Instant::now();
    let m = matrix::prove(&opts, command.join(" "), |row| {
        if let Some(c) = row.first() {
            let marks: Vec<String> = row
                .iter()
                .map(|c| format!("{} {:?}", c.runtime, c.status))
                .collect();
            eprintln!(
                "matrix: {} {} opset {} done at {:.0} s: {}",
                c.profile,
                c.precision,
                c.opset,
                start.elapsed().as_secs_f64(),
                marks.join(", ")
            );
        }
    });
    let text = match a.format {
        Format::Text => m.to_text(),
        Format::Markdown => m.to_markdown(),
    };
    super::print_out(&text)?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&m)? + "\n";
        write_atomic(p, text.as_bytes())?;
    }
    if let Some(p) = &a.junit {
        write_atomic(p, m.to_junit().as_bytes())?;
    }
    Ok(ExitCode::from(m.exit_code()))
}
