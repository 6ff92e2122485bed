//! Which runtime runs which graph, answered once from the rows: the runtimes' table says what
//! each runs, a profile's and a precision's rows say what their graphs need. `verify` reports a
//! runtime that cannot run a graph as not applicable, `generate` and `classify` refuse with the
//! same line, and the support matrix (`igpt-onnx support`) prints the whole grid. A runtime
//! named with a release (`ort-python@VERSION`) runs what that release runs: the matrix names it
//! beside the grid, and `igpt-onnx inspect` says which release a graph needs.

use serde_json::{json, Value};

use super::model::RuntimeKind;
use super::ort_python::installed;
use super::table::RELEASE_RUNTIMES;
use crate::graph::profile::pair_needs;
use crate::graph::{Feature, Precision, PrecisionSpec, Profile, ProfileSpec, PRECISIONS, PROFILES};

/// Why a runtime does not run graphs of a profile and precision, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{runtime} does not run {what}: it needs {}; {instead}", list(.missing.iter().map(|f| f.describe())))]
pub struct Unsupported {
    pub runtime: &'static str,
    /// `profile ort` or `precision int4`: the row whose needs are not met.
    pub what: String,
    /// What the runtime lacks, in [`Feature::ALL`]'s order.
    pub missing: Vec<Feature>,
    /// Another profile for this runtime, or the runtimes that run this one.
    pub instead: String,
}

/// Whether `kind` runs graphs of `profile` in `precision`, and if not, why.
pub fn can_run(
    kind: RuntimeKind,
    profile: Profile,
    precision: Precision,
) -> Result<(), Unsupported> {
    let lacks = |needs: Vec<Feature>| -> Vec<Feature> {
        Feature::ALL
            .into_iter()
            .filter(|f| needs.contains(f) && !kind.runs(*f))
            .collect()
    };
    let by_profile = lacks(profile.spec().needs());
    let by_precision = lacks(precision.spec().needs());
    let by_pair = lacks(pair_needs(profile.spec(), precision.spec()));
    let (what, missing) = if !by_profile.is_empty() {
        (format!("profile {}", profile.name()), by_profile)
    } else if !by_precision.is_empty() {
        (format!("precision {}", precision.name()), by_precision)
    } else if !by_pair.is_empty() {
        let what = format!("profile {} in {}", profile.name(), precision.name());
        (what, by_pair)
    } else {
        return Ok(());
    };
    let mut ways = Vec::new();
    let other_profiles: Vec<&str> = PROFILES
        .iter()
        .filter(|p| p.profile != profile && precision.fits(p.profile))
        .filter(|p| runs_all(kind, &all_needs(p, precision.spec())))
        .map(|p| p.name)
        .collect();
    if let Some(p) = other_profiles.first() {
        ways.push(format!("export with --profile {p}"));
    }
    let needs = all_needs(profile.spec(), precision.spec());
    let others: Vec<&str> = RuntimeKind::table()
        .filter(|r| *r != kind && runs_all(*r, &needs))
        .map(RuntimeKind::name)
        .collect();
    if !others.is_empty() {
        ways.push(format!("run it on {}", list(others.into_iter())));
    }
    if ways.is_empty() {
        ways.push("no runtime in the table runs it".to_string());
    }
    Err(Unsupported {
        runtime: kind.name(),
        what,
        missing,
        instead: ways.join(", or "),
    })
}

/// Everything a graph of `profile` in `precision` needs.
fn all_needs(profile: &ProfileSpec, precision: &PrecisionSpec) -> Vec<Feature> {
    let mut needs = profile.needs();
    needs.extend(precision.needs());
    needs.extend(pair_needs(profile, precision));
    needs
}

fn runs_all(kind: RuntimeKind, needs: &[Feature]) -> bool {
    needs.iter().all(|f| kind.runs(*f))
}

/// `a`, `a and b`, `a, b and c`.
fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// The command-line flags that ask for `precision` (`--quantize int8`; none for float32).
pub fn precision_flags(precision: Precision) -> Vec<&'static str> {
    let spec = precision.spec();
    match (spec.quantize, spec.dtype) {
        (Some(q), _) => vec!["--quantize", q],
        (None, Some(d)) => vec!["--dtype", d],
        (None, None) => vec![],
    }
}

/// The support matrix as JSON: the runtimes with what they run, the profiles and precisions
/// with what they need and the flags that ask for them, and one cell per runtime, profile and
/// precision the precision fits.
pub fn matrix_json() -> Value {
    let names = |fs: &[Feature]| -> Vec<&str> { fs.iter().map(|f| f.describe()).collect() };
    let runtimes: Vec<Value> = RuntimeKind::table()
        .map(|r| {
            let RuntimeKind::Table(row) = r else {
                return Value::Null;
            };
            json!({
                "name": row.name,
                "about": row.about,
                "runs": names(row.runs),
                "checked": row.checked,
            })
        })
        .collect();
    let profiles: Vec<Value> = PROFILES
        .iter()
        .map(|p| json!({"name": p.name, "needs": names(&p.needs())}))
        .collect();
    let precisions: Vec<Value> = PRECISIONS
        .iter()
        .map(|p| {
            let profiles: Vec<&str> = p.profiles.iter().map(|q| q.name()).collect();
            json!({
                "name": p.name,
                "flags": precision_flags(p.precision()),
                "profiles": profiles,
                "needs": names(&p.needs()),
                // An export needs `--calibration DATA` too (static int8's activation ranges).
                "calibrated": p.matmul.calibrated(),
            })
        })
        .collect();
    let mut cells = Vec::new();
    for r in RuntimeKind::table() {
        for p in PRECISIONS {
            for &profile in p.profiles {
                let verdict = can_run(r, profile, p.precision());
                cells.push(json!({
                    "runtime": r.name(),
                    "profile": profile.name(),
                    "precision": p.name,
                    "runs": verdict.is_ok(),
                    "why_not": verdict.err().map(|e| e.to_string()),
                }));
            }
        }
    }
    let releases: Vec<Value> = RELEASE_RUNTIMES
        .iter()
        .map(|r| {
            let installed: Vec<Value> = installed()
                .into_iter()
                .map(
                    |(release, dir)| json!({"release": release, "venv": dir.display().to_string()}),
                )
                .collect();
            json!({
                "name": format!("{}@VERSION", r.family),
                "about": r.about,
                "installed": installed,
            })
        })
        .collect();
    json!({
        "runtimes": runtimes,
        "release_runtimes": releases,
        "profiles": profiles,
        "precisions": precisions,
        "cells": cells,
    })
}

/// The support matrix as a Markdown table: a row per profile and precision, a column per
/// runtime, ✓ where it runs and the tests check it against the goldens, (✓) where it should run
/// but no test machine can check it (a GPU), – where it does not run; then the legend.
pub fn matrix_markdown() -> String {
    let runtimes: Vec<RuntimeKind> = RuntimeKind::table().collect();
    let mut out = String::from("| profile | precision | flags |");
    for r in &runtimes {
        out.push_str(&format!(" {} |", r.name()));
    }
    out.push_str("\n| --- | --- | --- |");
    for _ in &runtimes {
        out.push_str(" :-: |");
    }
    out.push('\n');
    for profile in PROFILES {
        for p in PRECISIONS
            .iter()
            .filter(|p| p.profiles.contains(&profile.profile))
        {
            let mut flags = vec!["--profile", profile.name];
            flags.extend(precision_flags(p.precision()));
            out.push_str(&format!(
                "| {} | {} | `{}` |",
                profile.name,
                p.name,
                flags.join(" ")
            ));
            for r in &runtimes {
                let checked = matches!(r, RuntimeKind::Table(row) if row.checked);
                let mark = match (can_run(*r, profile.profile, p.precision()), checked) {
                    (Ok(()), true) => "✓",
                    (Ok(()), false) => "(✓)",
                    (Err(_), _) => "–",
                };
                out.push_str(&format!(" {mark} |"));
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\n✓ runs and matches the reference's goldens in the test suite; (✓) should run, \
         checked only on a machine with a GPU (`ci/gpu-check.sh`); – does not run \
         (`igpt-onnx support` says why). `cmd:PROGRAM` runs what its adapter's runtime runs; \
         `ort-python@VERSION` what that ONNX Runtime release runs (`igpt-onnx inspect GRAPH` \
         names the oldest release a graph needs).\n",
    );
    out
}

/// The support matrix for people: the Markdown table, then why each – is one.
pub fn matrix_text() -> String {
    let mut out = matrix_markdown();
    let mut why: Vec<String> = Vec::new();
    for r in RuntimeKind::table() {
        for p in PRECISIONS {
            for &profile in p.profiles {
                if let Err(e) = can_run(r, profile, p.precision()) {
                    let line = format!("- {e}");
                    if !why.contains(&line) {
                        why.push(line);
                    }
                }
            }
        }
    }
    if !why.is_empty() {
        out.push('\n');
        out.push_str(&why.join("\n"));
        out.push('\n');
    }
    for r in RELEASE_RUNTIMES {
        let found: Vec<String> = installed().into_iter().map(|(v, _)| v).collect();
        let here = match found.is_empty() {
            true => "none installed here (./ci/setup.sh makes the pinned releases')".to_string(),
            false => format!("installed here: {}", found.join(", ")),
        };
        out.push_str(&format!("\n{}@VERSION: {}; {here}\n", r.family, r.about));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tract_refuses_the_ort_profile_by_what_it_lacks_and_says_what_to_do() {
        let e = can_run(RuntimeKind::Tract, Profile::Ort, Precision::Float32).expect_err("no");
        assert_eq!(
            e.to_string(),
            "tract does not run profile ort: it needs ONNX Runtime contrib ops and causal \
             MultiHeadAttention; export with --profile portable, or run it on ort-cpu, \
             ort-cuda, ort-tensorrt and openvino"
        );
        // int4 fits the ort profile only: no other profile to offer tract.
        let e = can_run(RuntimeKind::Tract, Profile::Ort, Precision::Int4).expect_err("no");
        assert!(e.instead.starts_with("run it on ort-cpu"), "{e}");
        for (profile, precision) in [
            (Profile::Portable, Precision::Float32),
            (Profile::Portable, Precision::Float16),
            (Profile::Portable, Precision::Int8Dynamic),
        ] {
            assert_eq!(can_run(RuntimeKind::Tract, profile, precision), Ok(()));
        }
        let cmd = RuntimeKind::parse("cmd:anything").expect("cmd");
        for p in PRECISIONS {
            for &profile in p.profiles {
                assert_eq!(can_run(RuntimeKind::OrtCpu, profile, p.precision()), Ok(()));
                assert_eq!(can_run(cmd, profile, p.precision()), Ok(()));
            }
        }
    }

    #[test]
    fn the_matrix_has_a_cell_for_every_runtime_profile_and_precision() {
        let m = matrix_json();
        let fitting: usize = PRECISIONS.iter().map(|p| p.profiles.len()).sum();
        let cells = m["cells"].as_array().expect("cells");
        assert_eq!(cells.len(), RuntimeKind::table().count() * fitting);
        let md = matrix_markdown();
        assert_eq!(
            md.lines().filter(|l| l.starts_with('|')).count(),
            2 + fitting
        );
        assert!(
            md.contains("| ort | int4 | `--profile ort --quantize int4` | ✓ | (✓) | (✓) | – | ✓ |")
        );
        assert!(
            md.contains("| ort | float16 | `--profile ort --dtype fp16` | ✓ | (✓) | (✓) | – | – |")
        );
        let e = can_run(RuntimeKind::OpenVino, Profile::Ort, Precision::Float16).expect_err("no");
        assert_eq!(
            e.to_string(),
            "openvino does not run profile ort in float16: it needs ONNX Runtime contrib ops on \
             float16; export with --profile portable, or run it on ort-cpu, ort-cuda and \
             ort-tensorrt"
        );
        let int8 = &m["precisions"][1];
        assert_eq!(int8["name"], "int8");
        assert_eq!(int8["flags"], json!(["--quantize", "int8"]));
    }
}
