//! The web page's JavaScript ports against the library, under Node: no browser. The library
//! writes vectors (the sampler's picks for seeded random logits, the resampler's bytes for
//! random images up and down every filter, the processor's tokens and colours, the PNG reader's
//! RGB bytes for every colour type, bit depth, interlacing and row filter) and
//! `ci/web_parity.mjs` runs the page's own modules from `src/package/web/` on the same inputs,
//! comparing exactly. The browser test (`web.rs`) covers what needs a browser; this one covers
//! the ports far more widely in about a second. It skips without `node`, unless `CI` is set.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::png::{chunk, crc32, png_by_hand, Layout};
use common::{fixture, Rng};
use igpt_onnx::generate::{Sampler, Strategy};
use igpt_onnx::image::resample::{resize, Filter, Rgb8};
use igpt_onnx::image::{load_rgb, Processor};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a Node with `DecompressionStream` and `Blob` (18 or later) is here; under `CI` it
/// must be.
fn node_ready() -> bool {
    let major = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            v.trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    let ready = major.is_some_and(|m| m >= 18);
    if !ready {
        let what = format!("node 18 or later (found {major:?})");
        assert!(
            std::env::var_os("CI").is_none(),
            "the web parity test must run under CI: it needs {what}"
        );
        eprintln!("skipping the web parity test: it needs {what}");
    }
    ready
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Uniform in [0, 1) as f32.
fn unit(rng: &mut Rng) -> f32 {
    (rng.next() >> 40) as f32 / (1u32 << 24) as f32
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Seeded random logits rows, sampled by the library's `Sampler` step after step (one stream
/// per case, as a generation). Rows of several kinds: spread, heavily tied, one peak, NaN /
/// -inf / ±0 sprinkled (a row of only NaN included), a +inf (whose NaN probabilities both
/// sides must handle the same way), and flat rows whose probabilities (quarters) reach top-p
/// exactly. Returns the cases and the number of picks.
fn sampler_vectors() -> (Value, usize) {
    let asked: [Option<(f64, usize, f64)>; 11] = [
        None,
        Some((1.0, 0, 1.0)),
        Some((1.0, 50, 1.0)),
        Some((0.7, 40, 1.0)),
        Some((1.3, 0, 0.9)),
        Some((0.5, 5, 0.5)),
        Some((1.0, 0, 0.75)),
        Some((1.0, 1, 1.0)),
        Some((2.5, 600, 0.95)),
        Some((0.8, 0, 1e-6)),
        Some((1e-3, 0, 1.0)),
    ];
    let seeds: [u64; 8] = [
        0,
        1,
        7,
        42,
        1 << 63,
        (1 << 63) + 12_345,
        u64::MAX,
        12_345_678_901_234_567_890,
    ];
    let mut rng = Rng(0x5eed_0001);
    let mut cases = Vec::new();
    let mut picks = 0;
    for (si, a) in asked.iter().enumerate() {
        for kind in 0..6 {
            let vocab = [513, 7, 513, 64, 16, 4][kind];
            let seed = seeds[(si * 6 + kind) % seeds.len()];
            let strategy = match a {
                None => Strategy::Greedy,
                Some((temperature, top_k, top_p)) => Strategy::Sample {
                    temperature: *temperature,
                    top_k: *top_k,
                    top_p: *top_p,
                },
            };
            let mut sampler = Sampler::new(strategy, seed);
            let (mut rows, mut tokens) = (Vec::new(), Vec::new());
            for step in 0..12 {
                let flat = 4.0 * unit(&mut rng) - 2.0;
                let mut row: Vec<f32> = (0..vocab)
                    .map(|_| {
                        let u = unit(&mut rng);
                        match kind {
                            0 => 16.0 * u - 8.0,
                            1 => [-2.0, 0.0, 0.5, 0.5, 3.0][rng.below(5)],
                            2 => 2.0 * u - 1.0,
                            3 if step == 0 => f32::NAN,
                            3 => match rng.below(20) {
                                0 => f32::NAN,
                                1 => f32::NEG_INFINITY,
                                2 => -0.0,
                                3 => 0.0,
                                _ => 8.0 * u - 4.0,
                            },
                            4 => 6.0 * u - 3.0,
                            _ => flat,
                        }
                    })
                    .collect();
                if kind == 2 {
                    row[rng.below(vocab)] = 12.0;
                }
                if kind == 4 && step % 3 == 0 {
                    row[rng.below(vocab)] = f32::INFINITY;
                }
                tokens.push(sampler.pick(&row));
                rows.push(row.iter().map(|x| x.to_bits()).collect::<Vec<u32>>());
            }
            picks += tokens.len();
            let asked = match a {
                None => json!({ "greedy": true }),
                Some((t, k, p)) => json!({ "temperature": t, "topK": k, "topP": p }),
            };
            cases.push(json!({
                "asked": asked,
                "seed": seed.to_string(),
                "logits": rows,
                "tokens": tokens,
            }));
        }
    }
    (Value::Array(cases), picks)
}

/// Random RGB images resized up, down, on one axis, to and from 1 pixel, with odd sizes and
/// both pass orders (Pillow runs the vertical pass first when the height shrinks more than
/// twice the width), by every filter. Noise, only 0 and 255 (where negative lobes clip) and
/// noisy gradients.
fn resample_vectors() -> Value {
    let sizes = [
        ((1, 1), (5, 3)),
        ((5, 3), (1, 1)),
        ((7, 5), (32, 32)),
        ((64, 48), (32, 32)),
        ((33, 97), (32, 32)),
        ((97, 33), (32, 32)),
        ((40, 40), (40, 13)),
        ((40, 40), (13, 40)),
        ((32, 32), (32, 32)),
        ((3, 200), (32, 32)),
        ((200, 3), (32, 32)),
        ((31, 17), (64, 29)),
        ((100, 80), (17, 9)),
        ((50, 50), (49, 51)),
        ((9, 9), (2, 32)),
    ];
    let mut rng = Rng(0x5eed_0002);
    let mut cases = Vec::new();
    for (i, ((w, h), (ow, oh))) in sizes.into_iter().enumerate() {
        for code in 1..=5 {
            let filter = Filter::from_pil(code).expect("a filter");
            let data: Vec<u8> = match (i + code as usize) % 3 {
                0 => random_bytes(&mut rng, w * h * 3),
                1 => (0..w * h * 3)
                    .map(|_| if rng.below(2) == 0 { 0 } else { 255 })
                    .collect(),
                _ => (0..w * h * 3)
                    .map(|j| {
                        let (x, y) = ((j / 3) % w, (j / 3) / w);
                        let v = (x * 255 / w.max(2) + y * 255 / h.max(2)) / 2 + rng.below(9);
                        v.min(255) as u8
                    })
                    .collect(),
            };
            let src = Rgb8 {
                width: w,
                height: h,
                data,
            };
            let out = resize(&src, ow, oh, filter);
            cases.push(json!({
                "width": w,
                "height": h,
                "data": hex(&src.data),
                "out_width": ow,
                "out_height": oh,
                "filter": code,
                "expected": hex(&out.data),
            }));
        }
    }
    Value::Array(cases)
}

/// The processor of `fixtures/images` and variants of it (another filter and size, no resize,
/// another mean and std, clusters outside [-1, 1] with duplicates and exact halves), each with
/// its `tables()` as `processor.json` carries them; random images encoded, and every cluster's
/// colour. Returns (tables, image cases, colour cases, tokens, colours).
fn processor_vectors() -> (Value, Value, Value, usize, usize) {
    let path = fixture("images").join("preprocessor_config.json");
    let base: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let with = |changes: Value| {
        let mut v = base.clone();
        for (k, x) in changes.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    };
    let mut odd_clusters: Vec<[f64; 3]> =
        serde_json::from_value(base["clusters"].clone()).expect("clusters");
    for c in &mut odd_clusters {
        *c = c.map(|v| v * 1.7);
    }
    // Duplicates (the lowest index wins), 0 (127.5 → 128, ties to even), values that land on
    // halves, the corners.
    odd_clusters[0] = [0.0, 0.0, 0.0];
    odd_clusters[1] = [0.0, 0.0, 0.0];
    odd_clusters[2] = [3.0 / 255.0 - 1.0, 1.0 - 5.0 / 255.0, 1.0 / 255.0 - 1.0];
    odd_clusters[3] = [-1.0, 1.0, -1.0];
    odd_clusters[4] = [1.0, 1.0, 1.0];
    odd_clusters[5] = [1.0, 1.0, 1.0];
    let configs = [
        base.clone(),
        with(json!({ "resample": 1, "size": { "height": 12, "width": 20 } })),
        with(json!({ "do_resize": false, "size": 8 })),
        with(json!({
            "resample": 3,
            "image_mean": [0.48, 0.46, 0.41],
            "image_std": [0.27, 0.26, 0.28],
        })),
        with(json!({ "clusters": odd_clusters, "resample": 4 })),
    ];
    let mut rng = Rng(0x5eed_0003);
    let (mut tables, mut images, mut colours) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_tokens, mut n_colours) = (0, 0);
    for (ti, config) in configs.iter().enumerate() {
        let p = Processor::from_value(config).expect("a valid processor");
        tables.push(p.tables());
        let (h, w) = p.size();
        let sizes: Vec<(usize, usize)> = if config["do_resize"] == json!(false) {
            vec![(w, h); 4]
        } else {
            vec![(w, h), (w, h), (1, 1), (45, 31), (64, 64), (7, 90)]
        };
        for (iw, ih) in sizes {
            let img = Rgb8 {
                width: iw,
                height: ih,
                data: random_bytes(&mut rng, iw * ih * 3),
            };
            let tokens = p.encode(&img).expect("encodes");
            n_tokens += tokens.len();
            images.push(json!({
                "tables": ti,
                "width": iw,
                "height": ih,
                "data": hex(&img.data),
                "tokens": tokens,
            }));
        }
        // `decode_tokens` takes a whole image: the clusters in image-sized pieces, padded.
        let all: Vec<i64> = (0..p.n_clusters() as i64).collect();
        let mut rgb = Vec::new();
        for piece in all.chunks(h * w) {
            let mut padded = piece.to_vec();
            padded.resize(h * w, 0);
            let img = p.decode_tokens(&padded).expect("decodes");
            rgb.extend_from_slice(&img.data[..piece.len() * 3]);
        }
        n_colours += all.len();
        colours.push(json!({ "tables": ti, "tokens": all, "rgb": hex(&rgb) }));
    }
    (
        Value::Array(tables),
        Value::Array(images),
        Value::Array(colours),
        n_tokens,
        n_colours,
    )
}

/// A PNG by the `image` crate's encoder (real deflate, adaptive filters) for the colour types
/// it writes.
fn png_by_encoder(seed: u64, (w, h): (usize, usize), colour: image::ExtendedColorType) -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut rng = Rng(seed);
    // Smooth rows with noise: what compresses, so deflate's back-references show up.
    let n = w * h * usize::from(colour.bits_per_pixel()) / 8;
    let data: Vec<u8> = (0..n)
        .map(|i| ((i / 7) as u8).wrapping_add(rng.below(4) as u8))
        .collect();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive)
        .write_image(&data, w as u32, h as u32, colour)
        .expect("encode png");
    out
}

/// PNGs for both decoders: hand-written (every colour type and depth, plain and Adam7,
/// `tRNS`, `tEXt`, split `IDAT`), encoded (deflate), the committed fixtures (Pillow's), and
/// hostile ones that both must refuse. Each with what our decoder makes of it.
fn png_vectors(dir: &Path) -> Value {
    let pngs = dir.join("png");
    std::fs::create_dir(&pngs).expect("mkdir");
    let mut files: Vec<PathBuf> = Vec::new();
    let sizes = [
        (1, 1),
        (3, 2),
        (9, 7),
        (17, 13),
        (33, 5),
        (5, 33),
        (64, 3),
        (37, 29),
    ];
    let combos: [(u8, &[u8]); 5] = [
        (0, &[1, 2, 4, 8, 16]),
        (2, &[8, 16]),
        (3, &[1, 2, 4, 8]),
        (4, &[8, 16]),
        (6, &[8, 16]),
    ];
    let mut i = 0;
    for (colour, depths) in combos {
        for &depth in depths {
            for interlaced in [false, true] {
                let layout = Layout {
                    interlaced,
                    trns: i % 2 == 1,
                    text: i % 3 == 0,
                    idats: 1 + i % 3,
                };
                let size = sizes[i % sizes.len()];
                let bytes = png_by_hand(0x5eed_1000 + i as u64, size, depth, colour, layout);
                let name = format!(
                    "hand-c{colour}-{depth}bit{}-{}x{}.png",
                    if interlaced { "-adam7" } else { "" },
                    size.0,
                    size.1
                );
                std::fs::write(pngs.join(&name), bytes).expect("write");
                files.push(pngs.join(name));
                i += 1;
            }
        }
    }
    use image::ExtendedColorType as C;
    for (j, colour) in [
        C::L8,
        C::La8,
        C::Rgb8,
        C::Rgba8,
        C::L16,
        C::La16,
        C::Rgb16,
        C::Rgba16,
    ]
    .into_iter()
    .enumerate()
    {
        let size = [(23, 17), (40, 40), (1, 9)][j % 3];
        let name = format!("encoded-{colour:?}-{}x{}.png", size.0, size.1);
        std::fs::write(
            pngs.join(&name),
            png_by_encoder(0x5eed_2000 + j as u64, size, colour),
        )
        .expect("write");
        files.push(pngs.join(name));
    }
    for folder in [
        fixture("images").join("inputs"),
        fixture("classifier-images"),
    ] {
        let mut committed: Vec<PathBuf> = std::fs::read_dir(&folder)
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        committed.sort();
        files.extend(committed);
    }
    // Hostile: cut inside the image data, a header taller than its data, one over the pixel
    // limit, one with no width, one with no image data (headers re-sealed with their CRC, so
    // only the claim is wrong).
    let good = png_by_hand(
        0x5eed_3000,
        (37, 29),
        8,
        2,
        Layout {
            interlaced: false,
            trns: false,
            text: false,
            idats: 1,
        },
    );
    let reheader = |w: u32, h: u32| {
        let mut bytes = good.clone();
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    };
    let no_data = {
        let mut png = good[..33].to_vec();
        chunk(&mut png, b"IEND", &[]);
        png
    };
    for (name, bytes) in [
        ("hostile-cut.png", good[..good.len() / 2].to_vec()),
        ("hostile-taller.png", reheader(37, 58)),
        ("hostile-bomb.png", reheader(20_000, 20_000)),
        ("hostile-no-width.png", reheader(0, 29)),
        ("hostile-no-data.png", no_data),
    ] {
        std::fs::write(pngs.join(name), bytes).expect("write");
        files.push(pngs.join(name));
    }
    let cases: Vec<Value> = files
        .iter()
        .map(|f| match load_rgb(f) {
            Ok(img) => json!({
                "file": f,
                "width": img.width,
                "height": img.height,
                "data": hex(&img.data),
            }),
            Err(e) => json!({ "file": f, "refused": e.to_string() }),
        })
        .collect();
    Value::Array(cases)
}

/// `family: N unit checked, M differ` from the script's output, as (N, M).
fn tally(out: &str, family: &str) -> (usize, usize) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{family}: ")))
        .unwrap_or_else(|| panic!("no {family} line in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> usize {
        words[i]
            .trim_end_matches(',')
            .parse()
            .unwrap_or_else(|_| panic!("{line}"))
    };
    (num(1), num(4))
}

#[test]
fn the_page_modules_match_the_library_under_node() {
    if !node_ready() {
        return;
    }
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sampler, picks) = sampler_vectors();
    let resample = resample_vectors();
    let (tables, processor, colours, tokens, colour_count) = processor_vectors();
    let png = png_vectors(tmp.path());
    let expected = [
        ("sampler", picks),
        ("resample", resample.as_array().map_or(0, Vec::len)),
        ("processor", tokens),
        ("colours", colour_count),
        ("png", png.as_array().map_or(0, Vec::len)),
    ];
    let refused: Vec<&str> = png
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c.get("refused").is_some())
        .filter_map(|c| c["file"].as_str())
        .collect();
    let vectors = json!({
        "sampler": sampler,
        "resample": resample,
        "tables": tables,
        "processor": processor,
        "colours": colours,
        "png": png,
    });
    std::fs::write(tmp.path().join("vectors.json"), vectors.to_string()).expect("write");
    let written = started.elapsed().as_secs_f64();
    let out = Command::new("node")
        .arg(root().join("ci/web_parity.mjs"))
        .arg(tmp.path())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stdout}");
    assert!(
        out.status.success(),
        "the page's modules differ from the library (exit {:?}):\n{stdout}{stderr}",
        out.status.code()
    );
    for (family, n) in expected {
        let (checked, differ) = tally(&stdout, family);
        assert_eq!(checked, n, "{family}: checked {checked} of the {n} written");
        assert_eq!(differ, 0, "{family}");
    }
    // Only the five hostile files are refused: a good one refused by both would compare
    // nothing.
    assert_eq!(refused.len(), 5, "refused by the library: {refused:?}");
    assert!(
        refused.iter().all(|f| f.contains("/hostile-")),
        "{refused:?}"
    );
    eprintln!(
        "web parity: vectors written in {written:.2} s, {:.2} s in all",
        started.elapsed().as_secs_f64()
    );
}
