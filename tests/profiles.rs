//! The ort profile and the int8 precision against the golden fixtures, in ONNX Runtime: every
//! fixture case, every head it has goldens for (base with its hidden states, causal-lm,
//! classifier), exported in the profile/precision and checked within its budget — the case's
//! tolerance for float32, the precision's budget (atol/rtol, cosine, argmax agreement) for int8.
//! Without ONNX Runtime (outside CI) the checks are skipped with a note; under `CI` they fail.

mod common;

use std::path::Path;

use igpt_onnx::export::{export, ExportError, ExportOptions};
use igpt_onnx::graph::{GraphOptions, Precision, Profile};
use igpt_onnx::runtime::RuntimeKind;
use igpt_onnx::verify::report::CheckStatus;
use igpt_onnx::verify::{self, fixture, VerifyOptions};
use igpt_onnx::{Checkpoint, Head};

/// Exports and checks every case's heads in `profile`/`precision`; returns how many checks
/// passed (0 when ONNX Runtime is absent outside CI) and how many heads have goldens.
fn check_all(profile: Profile, precision: Precision) -> (usize, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let tmp = tempfile::tempdir().expect("tempdir");
    let budget = precision.spec().budget;
    let (mut passed, mut heads) = (0, 0);
    for dir in fixture::discover(&root).expect("cases") {
        let case = fixture::Case::load(&dir).expect("case loads");
        let ckpt = Checkpoint::open(&case.model_dir(), None, None).expect("checkpoint opens");
        for (head_name, outputs) in &case.manifest.outputs {
            let head = Head::parse(head_name).expect("known head");
            if head == Head::Decoder {
                continue; // float cache inputs: `igpt-onnx verify` runs the decoder step by step
            }
            heads += 1;
            let hidden = outputs.iter().any(|o| o.starts_with("hidden_states."));
            let opts = ExportOptions {
                graph: GraphOptions {
                    hidden_states: hidden,
                },
                profile,
                precision,
                ..Default::default()
            };
            let out = tmp.path().join(&case.manifest.name).join(head_name);
            let model = &export(&ckpt, &[head], &out, &opts).expect("exports")[0].path;
            let (atol, rtol) = match precision {
                Precision::Float32 => (None, None),
                _ => (Some(budget.atol), Some(budget.rtol)),
            };
            let vopts = VerifyOptions {
                runtimes: vec![RuntimeKind::OrtCpu],
                atol,
                rtol,
                ..Default::default()
            };
            let report = verify::model_against_case(model, &dir, &vopts).expect("verify runs");
            common::require_ort_under_ci(&report);
            for check in &report.checks {
                let what = format!("{} {head_name} {}", case.manifest.name, profile.name());
                assert_eq!(check.status, CheckStatus::Pass, "{what}: {check:?}");
                for o in &check.outputs {
                    let m = o.comparison.metrics.as_ref().expect("metrics");
                    println!(
                        "{what} {} {}: max abs {:.2e} cosine {:.6} argmax {:?}",
                        precision.name(),
                        o.name,
                        m.max_abs,
                        m.cosine,
                        m.argmax_agreement
                    );
                    assert!(m.cosine >= budget.min_cosine, "{what} {}: {m:?}", o.name);
                    if let Some(agree) = m.argmax_agreement {
                        assert!(agree >= budget.min_argmax_agreement, "{what}: {m:?}");
                    }
                }
                passed += 1;
            }
        }
    }
    (passed, heads)
}

#[test]
fn ort_profile_matches_every_golden() {
    let (passed, heads) = check_all(Profile::Ort, Precision::Float32);
    assert_eq!(heads, 25, "every non-decoder head of every case");
    assert!(passed == 0 || passed == heads, "{passed} of {heads} checks");
}

#[test]
fn int8_ort_profile_stays_within_its_budget() {
    let (passed, heads) = check_all(Profile::Ort, Precision::Int8);
    assert!(passed == 0 || passed == heads, "{passed} of {heads} checks");
}

#[test]
fn int8_in_the_portable_profile_is_refused_by_name() {
    let ckpt =
        Checkpoint::open(&common::fixture("causal-lm").join("model"), None, None).expect("opens");
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = ExportOptions {
        precision: Precision::Int8,
        ..Default::default()
    };
    let err = export(&ckpt, &[Head::CausalLm], tmp.path(), &opts).expect_err("refused");
    assert!(matches!(err, ExportError::PrecisionUnavailable { .. }));
    assert_eq!(
        err.to_string(),
        "int8 weights are not available in the portable profile (they need ONNX Runtime's MatMulNBits: use --profile ort)"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
}

#[test]
fn cli_quantize_without_the_ort_profile_exits_2_with_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let weights = common::fixture("causal-lm").join("model");
    let (code, stdout, stderr) = common::cli(&[
        "export",
        "--weights",
        weights.to_str().expect("utf-8 path"),
        "--quantize",
        "int8",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "error: export failed: int8 weights are not available in the portable profile (they need ONNX Runtime's MatMulNBits: use --profile ort)\n"
    );
    assert!(!out.exists(), "nothing written");
}
