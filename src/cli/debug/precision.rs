//! `igpt-onnx debug precision`: the fewest parts of a model to keep float32 so that a reduced
//! precision meets its budget on a case's labelled set; prints every evaluation, the list found
//! and the `export` command that writes it. Exit 0: met (with a list, or without one); 1: no
//! keep-list meets the budget; 2: the search could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::ChoiceParser;
use igpt_onnx::debug::precision::{self, Measured, SearchOptions, Target};
use igpt_onnx::runtime::RuntimeKind;
use igpt_onnx::verify::VerifyOptions;

use crate::cli::flags::{runtime_help, PrecisionFlags, RuntimeFlags};

#[derive(clap::Args)]
pub struct Args {
    /// The case to judge on: a case folder with a labelled set, or a folder holding one
    /// (default: fixtures/trained, from ./fixtures else the crate's own).
    #[arg(long, value_name = "CASE")]
    fixture: Option<PathBuf>,
    /// The reduced precision and profile to search in (default profile: the first the
    /// precision fits).
    #[command(flatten)]
    precision: PrecisionFlags,
    /// Budget: highest relative NLL increase on the labelled set, a fraction as in the
    /// precision table (0.001 is +0.1 %) [default: the precision's own].
    #[arg(long, value_name = "FRACTION", value_parser = finite)]
    max_nll_increase: Option<f64>,
    /// Budget: highest classification accuracy drop, in percentage points [default: the
    /// precision's own].
    #[arg(long, value_name = "POINTS", value_parser = finite)]
    max_accuracy_drop: Option<f64>,
    /// Budget: also the largest absolute difference of any output from the case's goldens.
    #[arg(long, value_parser = finite)]
    atol: Option<f64>,
    #[arg(long, default_value = "ort-cpu", value_parser = ChoiceParser::<RuntimeKind>::new(), help = runtime_help())]
    runtime: RuntimeKind,
    #[command(flatten)]
    runtime_flags: RuntimeFlags,
    /// Write the search as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A number that is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a finite number")]
pub struct NotFinite(String);

fn finite(text: &str) -> Result<f64, NotFinite> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| NotFinite(text.to_string()))
}

pub fn run(a: Args) -> Result<ExitCode> {
    igpt_onnx::runtime::install_panic_hook();
    if !a.precision.keep_float32.is_empty() {
        bail!("--keep-float32 is what debug precision finds: leave it out");
    }
    let precision = a.precision.precision()?;
    let profile = a.precision.profile_for(precision);
    let own = Target::of(precision);
    let target = Target {
        max_nll_increase: a.max_nll_increase.unwrap_or(own.max_nll_increase),
        max_accuracy_drop: a.max_accuracy_drop.unwrap_or(own.max_accuracy_drop),
        atol: a.atol,
    };
    let opts = SearchOptions {
        case: a.fixture.unwrap_or_else(default_case),
        profile,
        precision,
        target,
        verify: VerifyOptions {
            runtimes: vec![a.runtime],
            required: vec![a.runtime],
            runtime: a.runtime_flags.options(false),
            // Static int8 calibrates on the case's own inputs in this profile.
            profile,
            precision,
            ..Default::default()
        },
    };
    let mut progress = |m: &Measured| {
        let keep = m.keep_float32.join(",");
        let nll = m.nll.as_ref().map_or(String::from("-"), |n| {
            format!("{:+.4} %", 100.0 * n.relative_increase)
        });
        eprintln!(
            "[{}] NLL {nll}{}",
            if keep.is_empty() { "none" } else { &keep },
            if m.meets { " ✓" } else { "" }
        );
    };
    let report = precision::search(&opts, &mut progress)?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_atomic(p, text.as_bytes())?;
    }
    crate::cli::print_out(&report.to_text())?;
    Ok(match report.met {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

/// `fixtures/trained` under `./fixtures`, else under the crate's own.
fn default_case() -> PathBuf {
    igpt_onnx::verify::default_fixtures().join("trained")
}
