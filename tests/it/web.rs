//! `package --web` in a real headless Chromium: the page's tokens, pixels and labels against
//! the reference's fixtures and our command line's outputs, and its error messages. One browser
//! session (`ci/adapters/browser.mjs`, playwright-core driving Debian's `chromium`) visits
//! every page; the test skips without Chromium, node or `ci/adapters/node_modules`, unless
//! `CI` is set. The packaging errors need no browser.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::png::{png_by_hand, Layout};
use common::{cli, copy_dir, fixture};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("IGPT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Whether the browser test can run here; under `CI` it must.
fn browser_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = root().join("ci/adapters/node_modules");
    let ready = node
        && chromium().exists()
        && modules.join("playwright-core").exists()
        && modules.join("onnxruntime-web/dist").exists();
    if !ready {
        let what = "node, /usr/bin/chromium and ci/adapters/node_modules (run ci/setup.sh)";
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser test must run under CI: it needs {what}"
        );
        eprintln!("skipping the browser test: it needs {what}");
    }
    ready
}

fn ort_web_dist() -> PathBuf {
    root().join("ci/adapters/node_modules/onnxruntime-web/dist")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read json")).expect("json")
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_i64().expect("id"))
        .collect()
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn package(weights: &Path, dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "package",
        "--web",
        dir.to_str().expect("utf-8"),
        "--weights",
        weights.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args);
    assert_eq!(code, 0, "package --web failed: {out}{err}");
}

/// `igpt-onnx generate` on the packaged decoder: its tokens.
fn cli_generate(model: &Path, args: &[&str]) -> Vec<i64> {
    let out = model.with_extension("tokens.json");
    let runtime = if root().join(".venv").exists() {
        "ort-cpu"
    } else {
        "tract"
    };
    let mut all = vec![
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "--runtime",
        runtime,
        "--tokens-out",
        out.to_str().expect("utf-8"),
    ];
    all.extend_from_slice(args);
    let (code, o, e) = cli(&all);
    assert_eq!(code, 0, "generate {args:?}: {o}{e}");
    ids(&read_json(&out)["tokens"][0])
}

/// `igpt-onnx decode` of one row of tokens: its RGB bytes.
fn cli_decode(processor: &Path, tokens: &[i64], tmp: &Path) -> Vec<u8> {
    let tokens_file = tmp.join("decode-tokens.json");
    std::fs::write(&tokens_file, json!({ "input_ids": [tokens] }).to_string()).expect("write");
    let out = tmp.join("decoded");
    let (code, o, e) = cli(&[
        "decode",
        "--processor",
        processor.to_str().expect("utf-8"),
        "--tokens",
        tokens_file.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "decode: {o}{e}");
    image::open(out.join("0.png"))
        .expect("png")
        .to_rgb8()
        .into_raw()
}

/// A PNG written here, to reach the page's decoder where Pillow-written fixtures do not:
/// `depth`-bit samples of colour type `colour`, Adam7-interlaced or not, random row filters, the
/// image data in stored (uncompressed) deflate blocks.
fn write_png(path: &Path, size: (usize, usize), depth: u8, colour: u8, interlaced: bool) {
    let seed = 0x2545_f491_4f6c_dd1du64 ^ u64::from(depth) << 8 ^ u64::from(colour);
    let layout = Layout {
        interlaced,
        trns: false,
        text: false,
        idats: 1,
    };
    let png = png_by_hand(seed, size, depth, colour, layout);
    std::fs::write(path, png).expect("write png");
}

/// A page for the driver to visit (see `ci/adapters/browser.mjs` for the other fields).
fn page(name: &str, url: &str) -> Value {
    json!({ "name": name, "url": url, "timeout_s": 60 })
}

/// Chromium flags for WebGPU on SwiftShader, the software Vulkan that Chromium ships: WebGPU in a
/// headless browser without a GPU.
const SOFTWARE_WEBGPU: [&str; 5] = [
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-angle=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--enable-unsafe-swiftshader",
];

fn run_browser(site: &Path, pages: &[Value], args: &[&str]) -> Value {
    let plan = json!({
        "args": args,
        "root": site,
        "chromium": chromium(),
        "pages": pages,
    });
    let plan_path = site.join("plan.json");
    let out_path = site.join("browser-out.json");
    std::fs::write(&plan_path, plan.to_string()).expect("write plan");
    let out = Command::new("node")
        .arg(root().join("ci/adapters/browser.mjs"))
        .args([&plan_path, &out_path])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "browser driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_json(&out_path)
}

#[test]
fn the_page_matches_the_reference_and_the_cli_in_chromium() {
    if !browser_ready() {
        return;
    }
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    let dist = ort_web_dist();
    let dist = dist.to_str().expect("utf-8");
    let greedy_model = fixture("greedy").join("model");
    package(&greedy_model, &site.join("gen"), &["--ort-web", dist]);
    package(
        &greedy_model,
        &site.join("gen8"),
        &["--ort-web", dist, "--quantize", "int8-dynamic"],
    );
    package(
        &fixture("classifier-images").join("model"),
        &site.join("cls"),
        &["--ort-web", dist],
    );
    // A site missing its decoder, some images, a file that is not one.
    copy_dir(&site.join("gen"), &site.join("broken"));
    std::fs::remove_file(site.join("broken/decoder.onnx")).expect("rm");
    copy_dir(&fixture("images").join("inputs"), &site.join("images"));
    for f in ["wide.png", "palette.png", "grey16.png"] {
        std::fs::copy(
            fixture("classifier-images").join(f),
            site.join("images").join(format!("cls-{f}")),
        )
        .expect("copy");
    }
    // PNG layouts no committed fixture has (interlaced, sub-byte grey and palette, 16-bit
    // RGBA), for the page's own decoder against ours (which Pillow's tokens hold).
    let synthetic = [
        ("adam7-rgb8.png", (37, 29), 8, 2, true),
        ("adam7-grey2.png", (33, 17), 2, 0, true),
        ("palette4.png", (40, 20), 4, 3, false),
        ("adam7-palette1.png", (13, 11), 1, 3, true),
        ("adam7-rgba16.png", (19, 23), 16, 6, true),
        ("grey-alpha8.png", (9, 7), 8, 4, false),
    ];
    for (f, size, depth, colour, interlaced) in synthetic {
        write_png(
            &site.join("images").join(f),
            size,
            depth,
            colour,
            interlaced,
        );
    }
    // The committed EXIF JPEG at each of the 8 orientations: Chromium turns it, the page turns
    // it back, as Pillow's `open` never turned it.
    let exif = std::fs::read(fixture("images").join("inputs/jpeg-exif-rotated.jpg")).expect("read");
    let tag = [0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01];
    let at = exif
        .windows(8)
        .position(|w| w == tag)
        .expect("orientation tag")
        + 8;
    let mut oriented = Vec::new();
    for o in 1..=8u8 {
        let mut bytes = exif.clone();
        bytes[at..at + 2].copy_from_slice(&[0, o]);
        let f = format!("exif-{o}.jpg");
        std::fs::write(site.join("images").join(&f), bytes).expect("write");
        oriented.push(f);
    }
    // Hostile PNGs: cut inside its image data, a header taller than its data, a header over
    // the pixel limit (the page checks no CRC, so the header is patched in place).
    let images = site.join("images");
    let good = std::fs::read(images.join("adam7-rgb8.png")).expect("read");
    std::fs::write(images.join("cut.png"), &good[..good.len() / 2]).expect("write");
    let patched = |name: &str, w: u32, h: u32| {
        let mut bytes = good.clone();
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        std::fs::write(images.join(name), bytes).expect("write");
    };
    patched("taller.png", 37, 58);
    patched("bomb.png", 20_000, 20_000);
    let hostile = [
        ("cut.png", "cut.png: not a valid PNG (truncated)"),
        (
            "taller.png",
            "taller.png: not a valid PNG (truncated image data)",
        ),
        (
            "bomb.png",
            "bomb.png: 20000x20000 is 400000000 pixels, over the limit of 178956970",
        ),
    ];
    let decoded_files: Vec<String> = synthetic
        .iter()
        .map(|s| s.0.to_string())
        .chain(oriented)
        .chain(hostile.iter().map(|h| h.0.to_string()))
        .collect();
    let notes = site.join("images/notes.txt");
    std::fs::write(&notes, "not an image\n").expect("write");
    // The processor of fixtures/images, as the page reads it.
    let tables =
        igpt_onnx::image::Processor::open(&fixture("images").join("preprocessor_config.json"))
            .expect("processor")
            .tables();
    std::fs::write(site.join("images/tables.json"), tables.to_string()).expect("write");

    let mut pages = Vec::new();
    // The reference's greedy generations, one page per row (greedy rows are independent).
    let gens = read_json(&fixture("greedy").join("generations.json"));
    let mut greedy_expect = Vec::new();
    for (g, run) in gens["generations"]
        .as_array()
        .expect("list")
        .iter()
        .enumerate()
    {
        let new = run["max_new_tokens"].as_u64().expect("n");
        for (r, (prompt, tokens)) in run["prompt"]
            .as_array()
            .expect("rows")
            .iter()
            .zip(run["tokens"].as_array().expect("rows"))
            .enumerate()
        {
            let name = format!("greedy-{g}-{r}");
            let url = format!(
                "/gen/?autorun&greedy&max-new-tokens={new}&prompt-ids={}",
                join(&ids(prompt))
            );
            pages.push(page(&name, &url));
            greedy_expect.push((name, ids(tokens)));
        }
    }
    // A committed image's top rows completed, as the reference and `generate --prompt`.
    let image_prompt = &gens["image_prompt"];
    let rows = image_prompt["rows"].as_u64().expect("rows");
    pages.push(page(
        "image-prompt",
        &format!("/gen/?autorun&greedy&prompt=../images/wide.png&prompt-rows={rows}"),
    ));
    // Seeded sampling, as `generate --seed` (a seed above 2^63 included).
    let seeded = [
        (
            "seed-7",
            "7",
            "temperature=1.0&top-k=40",
            vec!["--temperature", "1.0", "--top-k", "40"],
        ),
        (
            "seed-big",
            "12345678901234567890",
            "temperature=0.8&top-k=0&top-p=0.9",
            vec!["--temperature", "0.8", "--top-k", "0", "--top-p", "0.9"],
        ),
    ];
    for (name, seed, q, _) in &seeded {
        pages.push(page(name, &format!("/gen/?autorun&seed={seed}&{q}")));
    }
    // The processor on every committed image.
    let expected_images = read_json(&fixture("images").join("expected.json"));
    let files: Vec<String> = expected_images["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["file"].as_str().expect("file").to_string())
        .collect();
    let mut encode = page("encode", "/gen/?greedy");
    encode["wait"] = json!("ready");
    encode["evaluate"] = json!(format!(
        "async () => {{ const m = await import('/gen/png.mjs');
          const {{ ImageProcessor }} = await import('/gen/processor.mjs');
          const p = new ImageProcessor(await (await fetch('/images/tables.json')).json());
          const out = {{}};
          for (const f of {files}) {{
            try {{ out[f] = p.encode(await m.rgbOfBlob(await (await fetch('/images/' + f)).blob(), f)); }}
            catch (e) {{ out[f] = String(e.message); }}
          }}
          return out; }}",
        files = serde_json::to_string(&files).expect("json")
    ));
    let mut decode = page("decoders", "/gen/?greedy");
    decode["wait"] = json!("ready");
    decode["evaluate"] = json!(format!(
        "async () => {{ const m = await import('/gen/png.mjs');
          const out = {{}};
          for (const f of {files}) {{
            try {{
              const rgb = await m.rgbOfBlob(await (await fetch('/images/' + f)).blob(), f);
              out[f] = [rgb.width, rgb.height, Array.from(rgb.data)];
            }} catch (e) {{ out[f] = String(e.message); }}
          }}
          return out; }}",
        files = serde_json::to_string(&decoded_files).expect("json")
    ));
    pages.push(decode);
    // The classifier.
    for f in ["wide.png", "palette.png", "grey16.png"] {
        pages.push(page(
            &format!("classify-{f}"),
            &format!("/cls/?autorun&classify=../images/cls-{f}"),
        ));
    }
    // Bad input: one clear message, and the page still generates afterwards.
    let mut upload = page("not-an-image", "/gen/?greedy&max-new-tokens=4");
    upload["upload"] = json!({"selector": "#prompt-file", "file": notes});
    upload["after"] = json!("generate");
    pages.push(upload);
    // An uploaded image completed, as the same image by URL.
    let mut uploaded = page(
        "uploaded-prompt",
        &format!("/gen/?greedy&prompt-rows={rows}"),
    );
    uploaded["upload"] = json!({"selector": "#prompt-file", "file": site.join("images/wide.png")});
    uploaded["after"] = json!("generate");
    pages.push(uploaded);
    // The Stop button, clicked as the third token lands: the run ends early with what it made,
    // and the page generates again in whole.
    let mut stop = page(
        "stop",
        &format!(
            "/gen/?autorun&greedy&max-new-tokens={}",
            greedy_expect[0].1.len() - 1
        ),
    );
    stop["stop_at"] = json!(3);
    stop["after"] = json!("generate");
    pages.push(stop);
    // Dynamic int8 (the portable profile's standard ops) in the page, as the command line runs it.
    pages.push(page(
        "int8-dynamic",
        "/gen8/?autorun&greedy&max-new-tokens=32",
    ));
    pages.push(page("bad-seed", "/gen/?autorun&seed=-1"));
    pages.push(encode);
    let mut missing = page("missing-decoder", "/broken/?autorun&greedy");
    missing["after"] = json!("generate");
    pages.push(missing);
    pages.push(page(
        "missing-folder",
        "/gen/?autorun&greedy&model=../nowhere/",
    ));
    let mut offline = page("network-error", "/gen/?autorun&greedy");
    offline["abort"] = json!(["decoder.onnx"]);
    pages.push(offline);

    let out = run_browser(&site, &pages, &[]);
    let p = |name: &str| -> &Value {
        let r = &out["pages"][name];
        assert!(
            r["driver_error"].is_null(),
            "{name}: {} (page error: {})",
            r["driver_error"],
            r["igpt"]["error"]
        );
        r
    };
    let done = |name: &str| -> &Value {
        let r = p(name);
        assert!(
            r["igpt"]["error"].is_null(),
            "{name}: {}",
            r["igpt"]["error"]
        );
        assert_eq!(r["igpt"]["done"], json!(true), "{name}");
        r
    };

    for (name, tokens) in &greedy_expect {
        let r = done(name);
        assert_eq!(ids(&r["igpt"]["tokens"]), *tokens, "{name}");
        assert_eq!(r["igpt"]["backend"], json!("wasm"), "{name}");
    }

    let decoder = site.join("gen/decoder.onnx");
    let r = done("image-prompt");
    let expect = ids(&image_prompt["tokens"]);
    assert_eq!(
        ids(&r["igpt"]["tokens"]),
        expect,
        "image prompt vs the reference"
    );
    let wide = fixture("images").join("inputs/wide.png");
    let from_cli = cli_generate(
        &decoder,
        &[
            "--greedy",
            "--prompt",
            wide.to_str().expect("utf-8"),
            "--prompt-rows",
            &rows.to_string(),
        ],
    );
    assert_eq!(
        ids(&r["igpt"]["tokens"]),
        from_cli,
        "image prompt vs generate --prompt"
    );

    for (name, seed, _, flags) in &seeded {
        let r = done(name);
        let mut args = vec!["--seed", seed];
        args.extend_from_slice(flags);
        let from_cli = cli_generate(&decoder, &args);
        assert_eq!(from_cli.len(), 33, "{name}: a whole 4x8 image after SOS");
        assert_eq!(
            ids(&r["igpt"]["tokens"]),
            from_cli,
            "{name} vs generate --seed"
        );
        // The canvas is `decode` of the same tokens, pixel for pixel.
        let pixels: Vec<u8> = r["pixels"]
            .as_array()
            .expect("pixels")
            .iter()
            .map(|v| v.as_u64().expect("byte") as u8)
            .collect();
        let decoded = cli_decode(&greedy_model, &from_cli[1..], tmp.path());
        assert_eq!(pixels, decoded, "{name}: canvas vs decode");
    }
    assert_ne!(
        ids(&done("seed-7")["igpt"]["tokens"]),
        ids(&done("seed-big")["igpt"]["tokens"])
    );

    // The processor: every committed PNG (decoded by the page itself, as Pillow: transparency,
    // palettes, 1- to 16-bit grey, 16-bit colour, interlaced) and every JPEG Chromium decodes to
    // Pillow's RGB bytes (both use libjpeg-turbo; an EXIF orientation Chromium applies is
    // undone) gives the reference's tokens. Reported, not asserted: CMYK/YCCK JPEG (Chromium
    // converts the inks another way).
    let encoded = &p("encode")["evaluated"];
    let differs = ["jpeg-cmyk.jpg", "jpeg-ycck.jpg", "jpeg-cmyk-no-adobe.jpg"];
    let mut wrong = Vec::new();
    for img in expected_images["images"].as_array().expect("images") {
        let f = img["file"].as_str().expect("file");
        if img["input_ids"].is_null() {
            continue; // a file the reference refuses
        }
        let want = ids(&img["input_ids"]);
        let got = &encoded[f];
        let differ = got.as_array().map(|g| {
            g.iter()
                .zip(&want)
                .filter(|(a, b)| a.as_i64() != Some(**b))
                .count()
        });
        let line = differ.map_or(got.to_string(), |d| {
            format!("{d} of {} tokens differ", want.len())
        });
        eprintln!("processor, {f}: {line}");
        if !differs.contains(&f) && differ != Some(0) {
            wrong.push(format!("{f}: {line}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the page's tokens vs the reference's: {wrong:?}"
    );

    let decoded = &p("decoders")["evaluated"];
    for (f, message) in hostile {
        assert_eq!(decoded[f], json!(message));
        assert!(igpt_onnx::image::load_rgb(&images.join(f)).is_err(), "{f}");
    }
    for f in decoded_files
        .iter()
        .filter(|f| !hostile.iter().any(|h| h.0 == *f))
    {
        let want = igpt_onnx::image::load_rgb(&site.join("images").join(f)).expect("decode");
        let got = &decoded[f];
        assert_eq!(
            (got[0].as_u64(), got[1].as_u64()),
            (Some(want.width as u64), Some(want.height as u64)),
            "{f}"
        );
        let bytes: Vec<u8> = serde_json::from_value(got[2].clone()).expect("bytes");
        assert!(bytes == want.data, "{f}: the page's RGB differs from ours");
    }

    let expected_cls = read_json(&fixture("classifier-images").join("expected.json"));
    for (i, f) in ["wide.png", "palette.png", "grey16.png"].iter().enumerate() {
        let name = format!("classify-{f}");
        let r = done(&name);
        assert_eq!(
            ids(&r["igpt"]["classifyTokens"]),
            ids(&expected_cls["input_ids"][i]),
            "{name}: tokens"
        );
        let logits = expected_cls["logits"][i].as_array().expect("logits");
        let labels = r["igpt"]["labels"].as_array().expect("labels");
        assert_eq!(labels.len(), logits.len(), "{name}");
        for l in labels {
            let id = l["id"].as_u64().expect("id") as usize;
            let (got, want) = (
                l["logit"].as_f64().expect("logit"),
                logits[id].as_f64().expect("f"),
            );
            assert!(
                (got - want).abs() <= 1e-4 + 1e-3 * want.abs(),
                "{name}: label {id} {got} vs {want}"
            );
        }
    }

    let r = p("not-an-image");
    assert_eq!(
        r["igpt"]["error"],
        json!("notes.txt is not an image this browser can decode")
    );
    assert_eq!(r["error_text"], r["igpt"]["error"]);
    let after = &r["after"]["igpt"];
    assert_eq!(
        after["done"],
        json!(true),
        "usable after a bad file: {after}"
    );
    assert_eq!(ids(&after["tokens"]), greedy_expect[0].1[..5].to_vec());

    let r = done("stop");
    let whole = &greedy_expect[0].1;
    let stopped = ids(&r["igpt"]["tokens"]);
    assert_eq!(r["igpt"]["stopped"], json!(true), "{}", r["igpt"]);
    assert_eq!(r["status"], json!("stopped"));
    // The start token and 3 or 4 new ones (the click lands after the third token's step).
    assert!((4..=5).contains(&stopped.len()), "{stopped:?}");
    assert_eq!(
        stopped[..],
        whole[..stopped.len()],
        "a prefix of the greedy run"
    );
    let after = &r["after"];
    assert_eq!(after["igpt"]["stopped"], json!(false), "{after}");
    assert_eq!(after["status"], json!("done"));
    assert_eq!(
        ids(&after["igpt"]["tokens"]),
        *whole,
        "generates again in whole"
    );

    let r = done("int8-dynamic");
    let from_cli = cli_generate(
        &site.join("gen8/decoder.onnx"),
        &["--greedy", "--max-new-tokens", "32"],
    );
    assert_eq!(
        ids(&r["igpt"]["tokens"]),
        from_cli,
        "int8-dynamic: page vs generate"
    );

    let r = p("uploaded-prompt");
    assert!(r["igpt"]["error"].is_null(), "{}", r["igpt"]["error"]);
    assert_eq!(
        ids(&r["after"]["igpt"]["tokens"]),
        expect,
        "an uploaded image completed"
    );
    assert_eq!(
        p("bad-seed")["igpt"]["error"],
        json!("URL parameter seed=-1 is not a whole number below 2^64")
    );

    let r = p("missing-decoder");
    let msg = r["igpt"]["error"].as_str().expect("an error");
    assert!(
        msg.starts_with("cannot fetch decoder.onnx (http://127.0.0.1:")
            && msg.ends_with("/broken/decoder.onnx): HTTP 404 Not Found"),
        "{msg}"
    );
    assert_eq!(r["error_text"], r["igpt"]["error"]);
    assert_eq!(
        r["after"]["igpt"]["error"].as_str(),
        Some(msg),
        "the same message again"
    );

    let msg = p("missing-folder")["igpt"]["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(
        msg.starts_with("cannot fetch model.json (http://127.0.0.1:")
            && msg.ends_with("/nowhere/model.json): HTTP 404 Not Found"),
        "{msg}"
    );
    let msg = p("network-error")["igpt"]["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(
        msg.starts_with("cannot fetch decoder.onnx (http://127.0.0.1:")
            && msg.ends_with("/gen/decoder.onnx): Failed to fetch"),
        "{msg}"
    );

    // WebGPU where the browser has it: the page picks it by itself and gives the same tokens.
    let gpu_pages = [page(
        "webgpu",
        &format!(
            "/gen/?autorun&greedy&max-new-tokens={}",
            greedy_expect[0].1.len() - 1
        ),
    )];
    let gpu = run_browser(&site, &gpu_pages, &SOFTWARE_WEBGPU);
    let r = &gpu["pages"]["webgpu"];
    assert!(r["driver_error"].is_null(), "webgpu: {}", r["driver_error"]);
    assert_eq!(
        r["igpt"]["backend"],
        json!("webgpu"),
        "{}",
        r["igpt"]["error"]
    );
    assert_eq!(ids(&r["igpt"]["tokens"]), greedy_expect[0].1, "webgpu");

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "browser test: {} pages in Chromium {} in {:.1} s (the browser sessions {:.1} s and, WebGPU, {:.1} s)",
        pages.len() + 1,
        out["chromium"],
        secs,
        out["seconds"].as_f64().unwrap_or(0.0),
        gpu["seconds"].as_f64().unwrap_or(0.0)
    );
    assert!(
        secs < 180.0,
        "the browser test took {secs:.0} s, over 3 minutes"
    );
}

#[test]
fn package_web_refuses_bad_input_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let weights = fixture("greedy").join("model");
    let w = weights.to_str().expect("utf-8");
    // Weights that do not exist.
    let dest = tmp.path().join("site");
    let d = dest.to_str().expect("utf-8");
    let (code, out, err) = cli(&["package", "--web", d, "--weights", "/no/such/model"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot open checkpoint /no/such/model"),
        "{err}"
    );
    assert!(!dest.exists());
    // An --ort-web folder without onnxruntime-web's files.
    let (code, _, err) = cli(&[
        "package",
        "--web",
        d,
        "--weights",
        w,
        "--ort-web",
        tmp.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: web packaging failed: {}: not found: --ort-web takes the dist/ folder of the onnxruntime-web npm package (1.30.0)",
            tmp.path().join("ort.wasm.min.mjs").display()
        )
    );
    assert!(!dest.exists());
    // Float16: not offered for the page (it is built and tested on float32 and quantised graphs).
    let (code, _, err) = cli(&["package", "--web", d, "--weights", w, "--dtype", "fp16"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        "error: --dtype does not apply to --web: the page is built and tested on float32 and quantised graphs (--quantize int8|int4|int8-dynamic|int8-static for size)"
    );
    assert!(!dest.exists());
    // A checkpoint without the image processor the page needs.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(weights.join(f), bare.join(f)).expect("copy");
    }
    let (code, _, err) = cli(&[
        "package",
        "--web",
        d,
        "--weights",
        bare.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: web packaging failed: {}: not found: the page needs the image processor's colour clusters beside the checkpoint",
            bare.join("preprocessor_config.json").display()
        )
    );
    assert!(!dest.exists());
    // A destination that exists.
    std::fs::create_dir(&dest).expect("mkdir");
    std::fs::write(dest.join("keep"), "x").expect("write");
    let (code, _, err) = cli(&["package", "--web", d, "--weights", w]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: web packaging failed: refusing to write {d}: it already exists (remove it first; packages are never merged)"
        )
    );
    assert_eq!(common::listing(&dest), vec!["keep".to_string()]);
    // A destination that cannot be created: its parent is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let target = file.join("site");
    let (code, _, err) = cli(&[
        "package",
        "--web",
        target.to_str().expect("utf-8"),
        "--weights",
        w,
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: web packaging failed: cannot create folder {}: File exists (os error 17)",
            file.display()
        )
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"x");
    // Written: the page, its modules, the graph, the tables; the manifest names them.
    let (code, out, err) = cli(&[
        "package",
        "--web",
        tmp.path().join("ok").to_str().expect("utf-8"),
        "--weights",
        w,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let ok = tmp.path().join("ok");
    assert_eq!(
        common::listing(&ok),
        [
            "decoder.onnx",
            "generation_config.json",
            "igpt.mjs",
            "index.html",
            "model.json",
            "png.mjs",
            "preprocessor_config.json",
            "processor.json",
            "processor.mjs",
            "resample.mjs",
            "sampler.mjs",
            "session.mjs"
        ]
        .map(String::from)
        .to_vec()
    );
    let m = read_json(&ok.join("model.json"));
    assert_eq!(
        m["ort"]["base"],
        json!("https://cdn.jsdelivr.net/npm/onnxruntime-web@1.30.0/dist/")
    );
    assert_eq!(m["decoder"]["past"].as_array().map(Vec::len), Some(6));
    assert_eq!(m["decoder"]["present"][5], json!("present.2.value"));
    assert_eq!(m["classifier"], Value::Null);
}
