//! The image processor against the reference (transformers 5.23 `ImageGPTImageProcessorPil`
//! with Pillow 13.0.0, `fixtures/images/generate.py`), and the `encode` / `decode` / `classify`
//! commands end to end, bad inputs included.

use crate::common;

use std::path::{Path, PathBuf};

use common::{fixture, listing};
use igpt_onnx::image::{self, load_rgb, resample, Filter, Processor, Rgb8};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn images_dir() -> PathBuf {
    fixture("images")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("fixture json readable");
    serde_json::from_str(&text).expect("fixture json parses")
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_i64().expect("id"))
        .collect()
}

fn processor() -> Processor {
    Processor::open(&images_dir()).expect("fixture processor opens")
}

fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every committed PNG, every stage: PIL's `convert("RGB")` bytes, Pillow's resize, the
/// reference tokens (100 %), and decode(encode(x)) against the reference's cluster image.
#[test]
fn every_png_matches_the_reference_processor_at_every_stage() {
    let p = processor();
    let expected = read_json(&images_dir().join("expected.json"));
    let (h, w) = p.size();
    let mut report = Vec::new();
    let mut pngs = 0;
    for case in expected["images"].as_array().expect("images") {
        let file = case["file"].as_str().expect("file");
        if !file.ends_with(".png") {
            continue;
        }
        pngs += 1;
        let path = images_dir().join("inputs").join(file);
        let rgb = load_rgb(&path).expect("image loads");
        let resized = resample::resize(&rgb, w, h, Filter::Bilinear);
        let tokens = p.encode_file(&path).expect("image encodes");
        let cluster = p.decode_tokens(&tokens).expect("tokens decode");
        let checks = [
            ("convert(RGB)", sha(&rgb.data) == case["rgb_sha256"]),
            ("resize", sha(&resized.data) == case["resized_sha256"]),
            ("tokens", tokens == ids(&case["input_ids"])),
            (
                "cluster image",
                sha(&cluster.data) == case["cluster_image_sha256"],
            ),
        ];
        for (stage, ok) in checks {
            if !ok {
                report.push(format!("{file} ({}): {stage} differs", case["pil_mode"]));
            }
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    assert_eq!(pngs, 16);
}

/// The message a JPEG Pillow refuses as truncated gets, for `path`.
fn truncated_line(path: &Path) -> String {
    format!(
        "{}: image file is truncated (the data ends before the image does)",
        path.display()
    )
}

/// Every committed JPEG — 4:2:0 / 4:2:2 / 4:4:4, odd sizes, progressive colour and grey,
/// restart markers, RGB without YCbCr, noise, CMYK (Adobe inverted), YCCK, CMYK without an
/// Adobe marker, an EXIF orientation — decodes to Pillow's bytes exactly (libjpeg-turbo, as
/// Pillow), and every later stage matches the reference; the files Pillow refuses as
/// truncated are refused with one line naming them.
#[test]
fn every_jpeg_matches_pillow_exactly_at_every_stage() {
    let p = processor();
    let expected = read_json(&images_dir().join("expected.json"));
    let (h, w) = p.size();
    let mut report = Vec::new();
    let (mut decoded, mut refused) = (0, 0);
    for case in expected["images"].as_array().expect("images") {
        let file = case["file"].as_str().expect("file");
        if !file.ends_with(".jpg") {
            continue;
        }
        let path = images_dir().join("inputs").join(file);
        if let Some(pil_error) = case["pil_error"].as_str() {
            refused += 1;
            assert!(pil_error.starts_with("image file is truncated"), "{file}");
            match load_rgb(&path) {
                Err(e) if e.to_string() == truncated_line(&path) => {}
                other => report.push(format!("{file}: Pillow refuses, we gave {other:?}")),
            }
            continue;
        }
        decoded += 1;
        let rgb = load_rgb(&path).expect("jpeg loads");
        let size = [rgb.width as u64, rgb.height as u64];
        assert_eq!(case["source_size"], serde_json::json!(size), "{file}");
        let reference = hex_bytes(&case["rgb_hex"]);
        assert_eq!(rgb.data.len(), reference.len(), "{file}");
        let differ = rgb
            .data
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a != b)
            .count();
        let worst = rgb
            .data
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        println!(
            "{file} ({}): {differ} bytes differ from Pillow's",
            case["pil_mode"]
        );
        let resized = resample::resize(&rgb, w, h, Filter::Bilinear);
        let tokens = p.encode_file(&path).expect("jpeg encodes");
        let cluster = p.decode_tokens(&tokens).expect("tokens decode");
        let checks = [
            (
                format!("convert(RGB): {differ} bytes differ, max {worst}"),
                differ == 0 && sha(&rgb.data) == case["rgb_sha256"],
            ),
            (
                "resize".into(),
                sha(&resized.data) == case["resized_sha256"],
            ),
            ("tokens".into(), tokens == ids(&case["input_ids"])),
            (
                "cluster image".into(),
                sha(&cluster.data) == case["cluster_image_sha256"],
            ),
        ];
        for (stage, ok) in checks {
            if !ok {
                report.push(format!("{file} ({}): {stage}", case["pil_mode"]));
            }
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    assert_eq!((decoded, refused), (14, 2));
}

/// `encode` over every JPEG the reference reads gives its tokens, row for row; a truncated
/// one is one error line naming it, and nothing is written.
#[test]
fn encode_gives_the_reference_tokens_for_every_jpeg_and_refuses_a_truncated_one() {
    let expected = read_json(&images_dir().join("expected.json"));
    let cases: Vec<&Value> = expected["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|c| {
            c["file"].as_str().is_some_and(|f| f.ends_with(".jpg")) && c["pil_error"].is_null()
        })
        .collect();
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|c| {
            images_dir()
                .join("inputs")
                .join(c["file"].as_str().expect("file"))
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("tokens.json");
    let proc_path = images_dir().join("preprocessor_config.json");
    let mut args = vec!["encode", "--processor", s(&proc_path), "--json", s(&json)];
    args.extend(files.iter().map(|f| s(f)));
    let run = igpt(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = read_json(&json)["input_ids"].clone();
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 14);
    for (row, case) in rows.iter().zip(&cases) {
        assert_eq!(ids(row), ids(&case["input_ids"]), "{}", case["file"]);
    }

    let truncated = images_dir().join("inputs/jpeg-truncated.jpg");
    let out = dir.path().join("refused.json");
    let run = igpt(&[
        "encode",
        "--processor",
        s(&proc_path),
        "--json",
        s(&out),
        s(&files[0]),
        s(&truncated),
    ]);
    assert_refused(&run, &truncated_line(&truncated));
    assert!(!out.exists(), "nothing written on failure");
}

/// Pillow's resize for shapes and every convolution filter, beyond the processor's one size.
#[test]
fn resize_matches_pillow_for_every_filter_and_shape() {
    let cases = read_json(&images_dir().join("resize.json"));
    let mut failures = Vec::new();
    let cases = cases["cases"].as_array().expect("cases");
    for c in cases {
        let src = load_rgb(
            &images_dir()
                .join("inputs")
                .join(format!("{}.png", c["source"].as_str().expect("source"))),
        )
        .expect("source loads");
        let filter = match c["filter"].as_str().expect("filter") {
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            "lanczos" => Filter::Lanczos,
            "box" => Filter::Box,
            "hamming" => Filter::Hamming,
            other => panic!("unknown filter {other}"),
        };
        let (w, h) = (
            c["width"].as_u64().expect("w") as usize,
            c["height"].as_u64().expect("h") as usize,
        );
        let out = resample::resize(&src, w, h, filter);
        if sha(&out.data) != c["sha256"] {
            failures.push(format!("{c}"));
        }
    }
    assert_eq!(cases.len(), 70);
    assert!(
        failures.is_empty(),
        "differs from Pillow:\n{}",
        failures.join("\n")
    );
}

#[test]
fn prompt_tokens_are_the_top_rows_of_the_reference_tokens() {
    let p = processor();
    let expected = read_json(&images_dir().join("expected.json"));
    let case = &expected["images"][0];
    let want = ids(&case["input_ids"]);
    let path = images_dir()
        .join("inputs")
        .join(case["file"].as_str().expect("file"));
    let got = image::prompt_tokens(&p, &path, 5).expect("prompt");
    assert_eq!(got, want[..5 * 32]);
    assert_eq!(
        image::prompt_tokens(&p, &path, 33).unwrap_err().to_string(),
        "--prompt-rows must be in 1..=32 (the model's image height), got 33"
    );
}

#[test]
fn grid_png_holds_the_decoded_images() {
    let p = processor();
    let expected = read_json(&images_dir().join("expected.json"));
    let decoded: Vec<Rgb8> = expected["images"].as_array().expect("images")[..3]
        .iter()
        .map(|c| p.decode_tokens(&ids(&c["input_ids"])).expect("decodes"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("grid.png");
    image::write_grid_png(&out, &decoded, 2).expect("grid written");
    let back = load_rgb(&out).expect("grid reads");
    assert_eq!((back.width, back.height), (64, 64));
    // Image 2 sits at row 1, column 0; its bytes are the reference's cluster image.
    let cell: Vec<u8> = (0..32)
        .flat_map(|y| back.data[((32 + y) * 64) * 3..((32 + y) * 64 + 32) * 3].to_vec())
        .collect();
    assert_eq!(sha(&cell), expected["images"][2]["cluster_image_sha256"]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("grid.png")]);
}

#[test]
fn sha256_is_the_config_files_hash() {
    let bytes = std::fs::read(images_dir().join("preprocessor_config.json")).expect("config");
    assert_eq!(processor().sha256(), sha(&bytes));
}

// ------------------------------------------------------------------------------- CLI

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn igpt(args: &[&str]) -> Run {
    let (code, stdout, stderr) = common::cli(args);
    Run {
        code,
        stdout,
        stderr,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One error line, exit 2, no panic.
fn assert_refused(run: &Run, expected: &str) {
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stderr.trim_end(), format!("error: {expected}"));
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn encode_then_decode_through_the_cli_matches_the_reference() {
    let expected = read_json(&images_dir().join("expected.json"));
    let cases: Vec<&Value> = expected["images"].as_array().expect("images")[..4]
        .iter()
        .collect();
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|c| {
            images_dir()
                .join("inputs")
                .join(c["file"].as_str().expect("file"))
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("tokens.json");
    let proc_path = images_dir().join("preprocessor_config.json");
    let mut args = vec!["encode", "--processor", s(&proc_path), "--json", s(&json)];
    args.extend(files.iter().map(|f| s(f)));
    let run = igpt(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = read_json(&json);
    for (row, case) in got["input_ids"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(&cases)
    {
        assert_eq!(ids(row), ids(&case["input_ids"]));
    }
    assert_eq!(got["input_ids"].as_array().map(Vec::len), Some(4));

    let out = dir.path().join("decoded");
    let run = igpt(&[
        "decode",
        "--processor",
        s(&proc_path),
        "--tokens",
        s(&json),
        "--out",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(listing(&out), ["0.png", "1.png", "2.png", "3.png"]);
    for (i, case) in cases.iter().enumerate() {
        let img = load_rgb(&out.join(format!("{i}.png"))).expect("png");
        assert_eq!(sha(&img.data), case["cluster_image_sha256"], "image {i}");
    }
}

#[test]
fn encode_refuses_bad_images_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_path = images_dir().join("preprocessor_config.json");
    let good = images_dir().join("inputs/wide.png");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image at all").expect("write");
    let png = std::fs::read(&good).expect("png");
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 2]).expect("write");
    let zero = dir.path().join("zero.png");
    std::fs::write(&zero, zero_size_png()).expect("write");
    let json = dir.path().join("out.json");
    // The png crate's own words follow the prefix for a truncated file.
    let cases = [
        (
            &text,
            format!(
                "{}: not a PNG or JPEG image (unrecognised contents)",
                s(&text)
            ),
        ),
        (&zero, format!("{}: zero-size image (0x3)", s(&zero))),
        (
            &truncated,
            format!("{}: cannot decode image: ", s(&truncated)),
        ),
    ];
    for (bad, msg) in cases {
        let run = igpt(&[
            "encode",
            "--processor",
            s(&proc_path),
            "--json",
            s(&json),
            s(&good),
            s(bad),
        ]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.starts_with(&format!("error: {msg}")),
            "{}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1);
    }
    assert!(!json.exists(), "nothing written on failure");
}

/// A PNG whose IHDR says width 0: valid chunks and CRCs, an empty image.
fn zero_size_png() -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::png::chunk(&mut out, kind, data);
        out
    }
    let mut ihdr = 0u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&3u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", b""));
    png
}

#[test]
fn bad_processor_configs_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = images_dir().join("inputs/wide.png");
    let mut cfg = read_json(&images_dir().join("preprocessor_config.json"));
    cfg["clusters"][7] = serde_json::json!([0.1, 0.2]);
    let bad = dir.path().join("preprocessor_config.json");
    std::fs::write(&bad, cfg.to_string()).expect("write");
    let run = igpt(&["encode", "--processor", s(&bad), s(&good)]);
    assert_refused(
        &run,
        &format!(
            "{}: `clusters` must have shape [n, 3] (512 for ImageGPT): row 7 has 2 values",
            s(&bad)
        ),
    );
}

#[test]
fn decode_refuses_bad_tokens_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_path = images_dir().join("preprocessor_config.json");
    let ok_row: Vec<i64> = vec![5; 32 * 32];
    let mut bad_token = ok_row.clone();
    bad_token[40] = 512;
    let cases = [
        (
            serde_json::json!({"input_ids": [ok_row, bad_token]}),
            "row 1: token 512 at position 40 is outside 0..512".to_string(),
        ),
        (
            serde_json::json!({"input_ids": [ok_row, vec![1i64; 1000]]}),
            "row 1: 1000 tokens do not make a 32x32 image (1024 expected)".to_string(),
        ),
        (
            serde_json::json!({"tokens": [ok_row]}),
            "has no `input_ids` list of token rows".to_string(),
        ),
    ];
    for (i, (tokens, msg)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("t{i}.json"));
        std::fs::write(&file, tokens.to_string()).expect("write");
        let out = dir.path().join(format!("out{i}"));
        let run = igpt(&[
            "decode",
            "--processor",
            s(&proc_path),
            "--tokens",
            s(&file),
            "--out",
            s(&out),
        ]);
        assert_refused(&run, &format!("{}: {msg}", s(&file)));
        assert!(!out.exists(), "nothing written for case {i}");
    }
}

// ------------------------------------------------------------------------- classify

/// The classifier case's model exported with today's exporter, in a fresh temporary folder.
fn exported_classifier() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = fixture("classifier-images").join("model");
    let out = dir.path().join("out");
    let graph = common::export_head(&model, igpt_onnx::Head::Classifier, &out, false);
    (dir, graph)
}

/// `classify --json` logits against the reference processor + `ImageGPTForImageClassification`
/// (`fixtures/classifier-images`), on every runtime available here.
#[test]
fn classify_matches_the_reference_logits_on_ort_and_tract() {
    use igpt_onnx::runtime::{self, RuntimeError, RuntimeKind, RuntimeOptions};
    let case = fixture("classifier-images");
    let expected = read_json(&case.join("expected.json"));
    let (atol, rtol) = (
        expected["tolerance"]["atol"].as_f64().expect("atol"),
        expected["tolerance"]["rtol"].as_f64().expect("rtol"),
    );
    let (dir, graph) = exported_classifier();
    let images: Vec<PathBuf> = expected["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|n| case.join(n.as_str().expect("name")))
        .collect();
    let processor_dir = case.join("model");
    let mut ran = Vec::new();
    for kind in [RuntimeKind::OrtCpu, RuntimeKind::Tract] {
        match runtime::open(kind, &RuntimeOptions::default()) {
            Err(RuntimeError::Unavailable { source: reason, .. })
                if std::env::var_os("CI").is_none() =>
            {
                eprintln!("skipping {}: {reason}", kind.name());
                continue;
            }
            Err(e) => panic!("{}: {e}", kind.name()),
            Ok(_) => {}
        }
        let json = dir.path().join(format!("{}.json", kind.name()));
        let mut args = vec![
            "classify",
            "--model",
            s(&graph),
            "--processor",
            s(&processor_dir),
            "--runtime",
            kind.name(),
            "--top",
            "2",
            "--json",
            s(&json),
        ];
        args.extend(images.iter().map(|p| s(p)));
        let run = igpt(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
        let got = read_json(&json);
        let mut worst = 0f64;
        for (img, want) in got["images"]
            .as_array()
            .expect("images")
            .iter()
            .zip(expected["logits"].as_array().expect("logits"))
        {
            let (g, w) = (
                img["logits"].as_array().expect("l"),
                want.as_array().expect("l"),
            );
            assert_eq!(g.len(), 3);
            for (a, b) in g.iter().zip(w) {
                let (a, b) = (a.as_f64().expect("f"), b.as_f64().expect("f"));
                worst = worst.max((a - b).abs());
                assert!(
                    (a - b).abs() <= atol + rtol * b.abs(),
                    "{}: {a} vs {b}",
                    kind.name()
                );
            }
            // Top labels: ordered by probability, named by the checkpoint's id2label.
            let top = img["top"].as_array().expect("top");
            assert_eq!(top.len(), 2);
            let best = w
                .iter()
                .enumerate()
                .max_by(|x, y| {
                    x.1.as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&y.1.as_f64().unwrap_or(0.0))
                })
                .map(|(i, _)| i)
                .expect("argmax");
            assert_eq!(top[0]["id"], best);
            assert_eq!(top[0]["label"], ["red", "green", "blue"][best]);
        }
        println!("{}: max |Δ logits| = {worst:.2e}", kind.name());
        ran.push(kind.name());
    }
    assert!(ran.contains(&"tract"));
}

#[test]
fn classify_refuses_a_processor_that_does_not_fit_the_model() {
    let case = fixture("classifier-images");
    let (_dir, graph) = exported_classifier();
    // The 32x32 processor makes 1024 tokens; the case's model has 256 positions.
    let proc_path = images_dir().join("preprocessor_config.json");
    let run = igpt(&[
        "classify",
        "--model",
        s(&graph),
        "--processor",
        s(&proc_path),
        "--runtime",
        "tract",
        s(&case.join("wide.png")),
    ]);
    assert_refused(
        &run,
        &format!(
            "{}: makes 32x32 = 1024 tokens but {} has n_positions 256",
            s(&proc_path),
            s(&graph)
        ),
    );
}

#[test]
fn decode_drops_a_leading_start_token_as_generated_rows_have() {
    let expected = read_json(&images_dir().join("expected.json"));
    let case = &expected["images"][1];
    let mut row = vec![512i64];
    row.extend(ids(&case["input_ids"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("generated.json");
    std::fs::write(&tokens, serde_json::json!([row]).to_string()).expect("write");
    let out = dir.path().join("png");
    let proc_path = images_dir().join("preprocessor_config.json");
    let run = igpt(&[
        "decode",
        "--processor",
        s(&proc_path),
        "--tokens",
        s(&tokens),
        "--out",
        s(&out),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let img = load_rgb(&out.join("0.png")).expect("png");
    assert_eq!(sha(&img.data), case["cluster_image_sha256"]);
}

/// `--processor org/name` finds the processor in the local Hugging Face cache as `--weights`
/// finds a checkpoint (refs/main → snapshots/<commit>/), and encodes like the file itself;
/// an id that is not cached is one error line naming where it looked.
#[test]
fn a_processor_given_by_hub_id_comes_from_the_local_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("models--someone--imagegpt-tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), commit).expect("ref");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).expect("snapshot");
    std::fs::copy(
        images_dir().join("preprocessor_config.json"),
        snap.join("preprocessor_config.json"),
    )
    .expect("copy");
    let image = images_dir().join("inputs").join("wide.png");
    let run = |processor: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_igpt-onnx"))
            .args(["encode", "--processor", processor, s(&image)])
            .env("HF_HUB_CACHE", tmp.path())
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let by_file = run(s(&images_dir().join("preprocessor_config.json")));
    let by_id = run("someone/imagegpt-tiny");
    assert_eq!(by_id.0, Some(0), "{}", by_id.2);
    assert_eq!(by_id.1, by_file.1);
    let missing = run("someone/not-cached");
    assert_eq!(missing.0, Some(2));
    assert!(
        missing
            .2
            .starts_with("error: processor someone/not-cached: ")
            && missing.2.contains("models--someone--not-cached"),
        "{}",
        missing.2
    );
    assert_eq!(missing.2.lines().count(), 1);
}
