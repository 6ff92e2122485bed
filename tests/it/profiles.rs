//! The ort profile and the float16, int8 and int4 precisions against the golden fixtures, in
//! ONNX Runtime: every fixture case, every head it has goldens for (base with its hidden states,
//! causal-lm, classifier), exported in the profile/precision and checked within its budget — the
//! case's tolerance for float32, the precision's budget (atol/rtol, cosine, argmax agreement)
//! for the others.
//! Without ONNX Runtime (outside CI) the checks are skipped with a note; under `CI` they fail.

use crate::common;

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
                    ..Default::default()
                },
                profile,
                precision,
                ..Default::default()
            };
            let out = tmp.path().join(&case.manifest.name).join(head_name);
            let model = &export(&ckpt, &[head], &out, &opts).expect("exports")[0].path;
            let (atol, rtol) = match precision == Precision::Float32 {
                true => (None, None),
                false => (Some(budget.atol), Some(budget.rtol)),
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
fn int4_ort_profile_stays_within_its_budget() {
    let (passed, heads) = check_all(Profile::Ort, Precision::Int4);
    assert!(passed == 0 || passed == heads, "{passed} of {heads} checks");
}

#[test]
fn float16_stays_within_its_budget_in_both_profiles() {
    for profile in [Profile::Portable, Profile::Ort] {
        let (passed, heads) = check_all(profile, Precision::Float16);
        assert_eq!(heads, 25);
        assert!(passed == 0 || passed == heads, "{passed} of {heads} checks");
    }
}

#[test]
fn block_precisions_in_the_portable_profile_are_refused_by_name() {
    let ckpt =
        Checkpoint::open(&common::fixture("causal-lm").join("model"), None, None).expect("opens");
    let tmp = tempfile::tempdir().expect("tempdir");
    for precision in [Precision::Int8, Precision::Int4] {
        let opts = ExportOptions {
            precision,
            ..Default::default()
        };
        let err = export(&ckpt, &[Head::CausalLm], tmp.path(), &opts).expect_err("refused");
        assert!(matches!(err, ExportError::PrecisionUnavailable { .. }));
        assert_eq!(
            err.to_string(),
            format!("{} weights are not available in the portable profile (they need ONNX Runtime's MatMulNBits: use --profile ort)", precision.name())
        );
        assert_eq!(std::fs::read_dir(tmp.path()).expect("dir").count(), 0);
    }
}

/// Runs `export` of the causal-lm fixture with `flags`: (exit code, stderr, whether anything
/// was written).
fn export_cli(flags: &[&str]) -> (i32, String, bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let weights = common::fixture("causal-lm").join("model");
    let mut args = vec![
        "export",
        "--weights",
        weights.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(flags);
    let (code, stdout, stderr) = common::cli(&args);
    assert!(stdout.is_empty() || code == 0, "{stdout}");
    (code, stderr, out.exists())
}

#[test]
fn cli_quantize_without_the_ort_profile_exits_2_with_one_line() {
    for q in ["int8", "int4"] {
        let (code, stderr, wrote) = export_cli(&["--quantize", q]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr,
            format!("error: export failed: {q} weights are not available in the portable profile (they need ONNX Runtime's MatMulNBits: use --profile ort)\n")
        );
        assert!(!wrote, "nothing written");
    }
}

#[test]
fn cli_dtype_and_quantize_together_exit_with_one_line() {
    let (code, stderr, wrote) =
        export_cli(&["--profile", "ort", "--quantize", "int4", "--dtype", "fp16"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: --quantize int4 and --dtype fp16 cannot be combined: quantised weights take float32 activations\n"
    );
    assert!(!wrote, "nothing written");
    let (code, stderr, _) = export_cli(&["--dtype", "fp32"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr, "error: unknown dtype `fp32` (expected fp16)\n");
}

/// A float16 export declares float16 caches and float32 logits (the heads answer in float32);
/// int4 stores two values a byte.
#[test]
fn float16_and_int4_declare_their_types_and_sizes() {
    use igpt_onnx::base::DataType;
    use igpt_onnx::graph::DecoderIo;
    let ckpt =
        Checkpoint::open(&common::fixture("kv-cache").join("model"), None, None).expect("opens");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bytes = Vec::new();
    for (profile, precision) in [
        (Profile::Portable, Precision::Float32),
        (Profile::Portable, Precision::Float16),
        (Profile::Ort, Precision::Int8),
        (Profile::Ort, Precision::Int4),
    ] {
        let opts = ExportOptions {
            profile,
            precision,
            ..Default::default()
        };
        let out = tmp.path().join(precision.name());
        let done = export(&ckpt, &[Head::Decoder], &out, &opts).expect("exports");
        let (inputs, outputs) = igpt_onnx::runtime::graph_io(&done[0].path).expect("io");
        // The card records how the decoder passes its cache: in place where the ort profile's
        // GroupQueryAttention takes the head size (multiples of 8).
        let card = igpt_onnx::graph::ExportCard::require(&done[0].path).expect("card");
        let in_place = profile == Profile::Ort && ckpt.config.head_dim().is_multiple_of(8);
        assert_eq!(
            card.cache,
            match in_place {
                true => igpt_onnx::graph::io::CacheMode::Shared,
                false => igpt_onnx::graph::io::CacheMode::Concat,
            },
            "{} {}",
            profile.name(),
            precision.name()
        );
        let io = DecoderIo::from_inputs(&inputs, card.cache).expect("decoder contract");
        assert_eq!(io.cache, card.cache);
        let cache = match precision == Precision::Float16 {
            true => DataType::Float16,
            false => DataType::Float32,
        };
        assert_eq!(io.dtype, cache, "{}", precision.name());
        for o in &outputs {
            let want = if o.name == "logits" {
                DataType::Float32
            } else {
                cache
            };
            assert_eq!(o.dtype, want, "{} {}", precision.name(), o.name);
        }
        bytes.push(done[0].bytes as f64);
    }
    // int4 stores each block matrix in half int8's bytes (same scales, same names' lengths).
    let c = &ckpt.config;
    let per_layer = c.n_embd * (3 * c.n_embd + c.n_embd + 2 * c.n_inner);
    let (f32_, f16, i8_, i4) = (bytes[0], bytes[1], bytes[2], bytes[3]);
    assert_eq!(i8_ - i4, (c.n_layer * per_layer / 2) as f64, "{bytes:?}");
    assert!(f16 < f32_, "{bytes:?}");
}
