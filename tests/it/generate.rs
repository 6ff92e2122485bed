//! The KV-cache decoder and `generate` against the reference's own generations
//! (`fixtures/greedy`: `model.generate(do_sample=False)` of a 48/3/4 checkpoint no golden case
//! uses, for prompts of 1 to 20 tokens and batches of 1 to 4), on ONNX Runtime and tract; seeded
//! sampling reproducible across runs and runtimes; bad input refused in one line.

use crate::common;

use std::path::{Path, PathBuf};

use common::{cli, export_head, fixture, open_runtime};
use igpt_onnx::generate::{self, DecoderDims, Sampler, Strategy};
use igpt_onnx::runtime::{RuntimeKind, RuntimeOptions};
use igpt_onnx::Head;

/// One reference run: prompts (a row each) and the tokens it produced (prompt included).
struct Run {
    description: String,
    prompt: Vec<Vec<i64>>,
    new_tokens: usize,
    tokens: Vec<Vec<i64>>,
}

fn reference_runs() -> Vec<Run> {
    let text = std::fs::read_to_string(fixture("greedy").join("generations.json")).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let rows = |v: &serde_json::Value| -> Vec<Vec<i64>> {
        v.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|t| t.as_i64().expect("id"))
                    .collect()
            })
            .collect()
    };
    json["generations"]
        .as_array()
        .expect("generations")
        .iter()
        .map(|g| Run {
            description: g["description"].as_str().expect("description").into(),
            prompt: rows(&g["prompt"]),
            new_tokens: g["max_new_tokens"].as_u64().expect("count") as usize,
            tokens: rows(&g["tokens"]),
        })
        .collect()
}

fn greedy_decoder(dir: &Path) -> PathBuf {
    export_head(&fixture("greedy").join("model"), Head::Decoder, dir, false)
}

/// The greedy fixture's vocabulary and positions (its cache layout the session reads from the
/// graph).
const DIMS: DecoderDims = DecoderDims {
    vocab_size: 513,
    n_positions: 32,
};

#[test]
fn greedy_generation_matches_the_reference_token_for_token_on_every_runtime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = greedy_decoder(tmp.path());
    let runs = reference_runs();
    assert_eq!(runs.len(), 5);
    let mut ran = 0;
    for kind in [RuntimeKind::OrtCpu, RuntimeKind::Tract] {
        let Some(rt) = open_runtime(kind, &RuntimeOptions::default()) else {
            continue;
        };
        let mut model = rt.load(&path).expect("loads");
        for run in &runs {
            let mut sampler = Sampler::new(Strategy::Greedy, 0);
            let out = generate::generate(
                model.as_mut(),
                &DIMS,
                &run.prompt,
                run.new_tokens,
                &mut sampler,
                &mut |_, _| {},
            )
            .expect("generates");
            assert_eq!(
                out.tokens,
                run.tokens,
                "{}: {}",
                kind.name(),
                run.description
            );
            assert_eq!(out.steps, run.new_tokens);
        }
        ran += 1;
    }
    assert!(ran >= 1, "tract at least");
}

fn tokens_file(path: &Path) -> Vec<Vec<i64>> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    serde_json::from_value(json["tokens"].clone()).expect("tokens")
}

#[test]
fn the_cli_reproduces_the_reference_for_a_prompt_and_for_a_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = greedy_decoder(tmp.path());
    let model = path.to_str().expect("utf-8");
    let runs = reference_runs();
    for runtime in ["ort-cpu", "tract"] {
        if runtime == "ort-cpu" && open_runtime(RuntimeKind::OrtCpu, &Default::default()).is_none()
        {
            continue;
        }
        // "5-token prompt, batch 1"
        let run = &runs[1];
        let prompt: Vec<String> = run.prompt[0].iter().map(i64::to_string).collect();
        let new = run.new_tokens.to_string();
        let (tokens, stdout) = generate_cli(
            tmp.path(),
            model,
            runtime,
            &["--max-new-tokens", &new, "--prompt-ids", &prompt.join(",")],
        );
        assert_eq!(tokens, run.tokens, "{runtime}");
        let summary = format!("generated 1 x {} tokens on {runtime}", run.new_tokens);
        assert!(stdout.contains(&summary), "{stdout}");
        assert!(stdout.contains(" ms/step, "), "{stdout}");
        // "SOS only, batch 4": the default prompt, --batch, and max-new-tokens given.
        let run = &runs[3];
        let new = run.new_tokens.to_string();
        let (tokens, _) = generate_cli(
            tmp.path(),
            model,
            runtime,
            &["--batch", "4", "--max-new-tokens", &new],
        );
        assert_eq!(tokens, run.tokens, "{runtime}");
        // "SOS only, batch 1, a whole image": the default length generates to the end.
        let (tokens, _) = generate_cli(tmp.path(), model, runtime, &[]);
        assert_eq!(tokens, runs[0].tokens, "{runtime}");
    }
}

/// ONNX Runtime's pool threads spin or sleep as `IGPT_ORT_SPIN` says (else as the machine's
/// load does, after a warning for a value it does not take): the same reference tokens either
/// way, and `--json` names the choice.
#[test]
fn pool_threads_spinning_or_sleeping_give_the_reference_tokens() {
    if open_runtime(RuntimeKind::OrtCpu, &Default::default()).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = greedy_decoder(tmp.path());
    let run = &reference_runs()[3];
    let new = run.new_tokens.to_string();
    for spin in ["1", "0", "yes"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
            .args([
                "generate",
                "--greedy",
                "--batch",
                "4",
                "--max-new-tokens",
                &new,
            ])
            .arg("--model")
            .arg(&path)
            .args(["--json", "-"])
            .env("IGPT_ORT_SPIN", spin)
            .output()
            .expect("runs igpt-onnx");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if spin == "yes" {
            // Not a setting: one warning, then the load decides.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("warning: IGPT_ORT_SPIN is \"yes\", not 1 or 0"),
                "{stderr}"
            );
        } else {
            assert_eq!(json["pool_threads_spin"], serde_json::json!(spin == "1"));
        }
        let tokens: Vec<Vec<i64>> = serde_json::from_value(json["tokens"].clone()).expect("tokens");
        assert_eq!(tokens, run.tokens, "IGPT_ORT_SPIN={spin}");
    }
}

/// `generate --model M --runtime R --greedy EXTRA --tokens-out F`: (tokens, stdout).
fn generate_cli(dir: &Path, model: &str, runtime: &str, extra: &[&str]) -> (Vec<Vec<i64>>, String) {
    let out = dir.join("tokens.json");
    let mut args = vec![
        "generate",
        "--model",
        model,
        "--runtime",
        runtime,
        "--greedy",
    ];
    args.extend_from_slice(extra);
    args.extend(["--tokens-out", out.to_str().expect("utf-8")]);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stderr}");
    (tokens_file(&out), stdout)
}

#[test]
fn seeded_sampling_is_reproducible_across_runs_and_runtimes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = greedy_decoder(tmp.path());
    let model = path.to_str().expect("utf-8");
    let mut results = Vec::new();
    let runtimes: Vec<&str> = if open_runtime(RuntimeKind::OrtCpu, &Default::default()).is_some() {
        vec!["tract", "ort-cpu", "ort-cpu"]
    } else {
        vec!["tract", "tract"]
    };
    for (i, runtime) in runtimes.iter().enumerate() {
        let out = tmp.path().join(format!("{i}.json"));
        let (code, _, stderr) = cli(&[
            "generate",
            "--model",
            model,
            "--runtime",
            runtime,
            "--batch",
            "3",
            "--temperature",
            "1.0",
            "--top-k",
            "40",
            "--seed",
            "7",
            "--tokens-out",
            out.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{stderr}");
        results.push(tokens_file(&out));
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    let rows = &results[0];
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row.len(), 33);
        assert_eq!(row[0], 512);
        // Colour tokens only: the start token never comes out.
        assert!(row[1..].iter().all(|&t| (0..512).contains(&t)), "{row:?}");
    }
    // Sampling, not greedy: the rows differ from each other and from the greedy run.
    assert_ne!(rows[0], rows[1]);
    assert_ne!(rows[0], reference_runs()[0].tokens[0]);
}

/// One `error:` line, exit 2.
fn refused(args: &[&str], want: &str) {
    let (code, stdout, stderr) = cli(args);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stderr.trim_end(), want);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = greedy_decoder(tmp.path());
    let model = path.to_str().expect("utf-8");
    let lm = export_head(
        &fixture("greedy").join("model"),
        Head::CausalLm,
        tmp.path(),
        false,
    );
    let lm = lm.to_str().expect("utf-8");
    let base = ["generate", "--runtime", "tract", "--model"];
    refused(
        &[&base[..], &[lm]].concat(),
        &format!("error: {lm} is not a decoder graph: it has no past_key_values inputs (export one with --head decoder)"),
    );
    refused(
        &[&base[..], &[model, "--prompt-ids", "512,17,513"]].concat(),
        "error: prompt token 513 (row 0, position 2) is out of range [0, 513) (vocab_size)",
    );
    let long: Vec<String> = std::iter::repeat_n("5".to_string(), 33).collect();
    refused(
        &[&base[..], &[model, "--prompt-ids", &long.join(",")]].concat(),
        "error: the prompt has 33 tokens, more than n_positions (32)",
    );
    refused(
        &[&base[..], &[model, "--max-new-tokens", "40"]].concat(),
        "error: 1 prompt tokens + 40 new tokens exceed n_positions + 1 (33): the model has 32 positions",
    );
    refused(
        &[&base[..], &[model, "--batch", "0"]].concat(),
        "error: --batch must be at least 1",
    );
    let out = tmp.path().join("no/such/folder/t.json");
    let (code, _, stderr) = cli(&[
        &base[..],
        &[
            model,
            "--max-new-tokens",
            "1",
            "--tokens-out",
            out.to_str().expect("utf-8"),
        ],
    ]
    .concat());
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!("error: cannot write {}", out.display())),
        "{stderr}"
    );
}

/// The docs' showcase: the top rows of an image as the prompt, the rest generated, the result
/// written as a PNG. Tokens equal the reference's (its PIL-backed processor and `generate`);
/// the PNG's pixels are `rint(127.5 · (clusters[t] + 1))` of those tokens.
#[test]
fn an_image_prompt_completes_like_the_reference_and_writes_the_png() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("onnx");
    let (code, _, stderr) = cli(&[
        "export",
        "--weights",
        fixture("greedy").join("model").to_str().expect("utf-8"),
        "--head",
        "decoder",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    // export carried the processor beside the graph
    assert!(out_dir.join("preprocessor_config.json").is_file());
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("greedy").join("generations.json")).expect("read"),
    )
    .expect("json");
    let want = &json["image_prompt"];
    let image = fixture("").join(want["image"].as_str().expect("image"));
    let png = tmp.path().join("completion.png");
    let tokens = tmp.path().join("t.json");
    let (code, _, stderr) = cli(&[
        "generate",
        "--model",
        out_dir.join("decoder.onnx").to_str().expect("utf-8"),
        "--runtime",
        "tract",
        "--greedy",
        "--prompt",
        image.to_str().expect("utf-8"),
        "--prompt-rows",
        "2",
        "--out",
        png.to_str().expect("utf-8"),
        "--tokens-out",
        tokens.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = tokens_file(&tokens);
    let expected: Vec<i64> =
        serde_json::from_value(want["tokens"].clone()).expect("reference tokens");
    assert_eq!(got, vec![expected.clone()]);

    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("preprocessor_config.json")).expect("read"),
    )
    .expect("json");
    let clusters: Vec<Vec<f64>> =
        serde_json::from_value(conf["clusters"].clone()).expect("clusters");
    let decoded = image::open(&png).expect("png").to_rgb8();
    assert_eq!(decoded.dimensions(), (8, 4));
    for (i, px) in decoded.pixels().enumerate() {
        let c = &clusters[expected[1 + i] as usize];
        let want: Vec<u8> = c
            .iter()
            .map(|v| (127.5 * (v + 1.0)).round_ties_even() as u8)
            .collect();
        assert_eq!(px.0.to_vec(), want, "pixel {i}");
    }

    // Not a whole image: refused before anything runs or is written.
    let (code, _, stderr) = cli(&[
        "generate",
        "--model",
        out_dir.join("decoder.onnx").to_str().expect("utf-8"),
        "--runtime",
        "tract",
        "--greedy",
        "--max-new-tokens",
        "5",
        "--out",
        tmp.path().join("partial.png").to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        "error: --out needs whole 4x8 images: the start token then 32 tokens, but this run makes 5 after the first prompt token"
    );
    assert!(!tmp.path().join("partial.png").exists());
}
