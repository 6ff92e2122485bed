//! Hostile images: decompression bombs refused from the header, and a deterministic mutation
//! fuzzer over the image decoders (PNG through the `image` crate, JPEG through libjpeg-turbo),
//! run as an ordinary test on the stable toolchain like `tests/it/fuzz_readers.rs`.
//!
//! Seeds are the committed `fixtures/images/inputs`; mutations are bit flips, big-endian
//! "interesting" integers over 2- and 4-byte fields (PNG chunk lengths, IHDR and SOF sizes,
//! segment lengths), sizes written straight into the header, truncations, duplicated and
//! deleted runs. Every input must give pixels or one error line: no panic, and no call may
//! allocate more than a bound set by the size its header declares (a counting global allocator
//! records the peak of live bytes; libjpeg's own C allocations are not seen by it, and are
//! bounded by the same header check before any of them is made for pixels).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::alloc::peak_of;
use crate::common;
use crate::png::chunk;

use common::Rng;
use igpt_onnx::image::load::{declared_size, decode_rgb, PIXEL_LIMIT};
use igpt_onnx::image::ImageError;

/// Mutated inputs (plus the seeds).
const ITERATIONS: usize = 3_000;
const SEED: u64 = 0x6a09_e667_f3bc_c908;

/// The tests here share one allocation counter: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn inputs_dir() -> PathBuf {
    common::fixture("images").join("inputs")
}

fn png_chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    chunk(&mut out, kind, data);
    out
}

/// A PNG with a valid IHDR of `width × height` (8-bit RGB), an IDAT holding an empty zlib
/// stream (one final stored block of length 0, Adler-32 of nothing) and IEND: a bomb up to
/// its first pixel, which is all a header check may look at.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
        ],
    ));
    png.extend(png_chunk(b"IEND", b""));
    png
}

/// Offset of a JPEG's first SOF segment's height field (baseline or progressive SOF).
fn jpeg_sof_size_at(jpeg: &[u8]) -> Option<usize> {
    let at = jpeg
        .windows(2)
        .position(|m| m[0] == 0xff && matches!(m[1], 0xc0 | 0xc2))?;
    // FFCx, length (2), precision (1), then height (2) and width (2).
    (at + 9 <= jpeg.len()).then_some(at + 5)
}

/// `photo.jpg` with its header saying `width × height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut jpeg = std::fs::read(inputs_dir().join("photo.jpg")).expect("photo.jpg");
    let at = jpeg_sof_size_at(&jpeg).expect("SOF");
    jpeg[at..at + 2].copy_from_slice(&height.to_be_bytes());
    jpeg[at + 2..at + 4].copy_from_slice(&width.to_be_bytes());
    jpeg
}

fn bomb_line(name: &str, width: u32, height: u32) -> String {
    format!(
        "{name}: image size ({} pixels, {width}x{height}) exceeds the limit of 178956970 pixels \
         (twice Pillow's MAX_IMAGE_PIXELS): refusing a possible decompression bomb",
        u64::from(width) * u64::from(height)
    )
}

/// The 30,000² PNG that once took 5.3 GB and 19 s is refused from its header: the exact line,
/// and well under 100 MB allocated (the time is printed, not asserted).
#[test]
fn a_30000_square_png_is_refused_from_its_header() {
    let _one = serial();
    let png = png_header_only(30_000, 30_000);
    let start = Instant::now();
    let (result, peak) = peak_of(|| decode_rgb(&png, "bomb.png"));
    let took = start.elapsed();
    let err = result.expect_err("refused");
    assert!(matches!(err, ImageError::TooManyPixels { .. }), "{err:?}");
    assert_eq!(err.to_string(), bomb_line("bomb.png", 30_000, 30_000));
    println!(
        "30000x30000 PNG ({} bytes): refused in {:.3} ms, peak allocation {peak} bytes",
        png.len(),
        took.as_secs_f64() * 1e3
    );
    assert!(peak < 100 << 20, "peak allocation {peak} bytes");
}

/// The same for a JPEG whose SOF says 30,000 × 30,000: libjpeg reads the header only.
#[test]
fn a_30000_square_jpeg_is_refused_from_its_header() {
    let _one = serial();
    let jpeg = jpeg_claiming(30_000, 30_000);
    let start = Instant::now();
    let (result, peak) = peak_of(|| decode_rgb(&jpeg, "bomb.jpg"));
    let took = start.elapsed();
    let err = result.expect_err("refused");
    assert_eq!(err.to_string(), bomb_line("bomb.jpg", 30_000, 30_000));
    println!(
        "30000x30000 JPEG header: refused in {:.3} ms, peak allocation {peak} bytes",
        took.as_secs_f64() * 1e3
    );
    assert!(peak < 100 << 20, "peak allocation {peak} bytes");
}

/// Between one and two times `MAX_IMAGE_PIXELS` Pillow only warns and decodes; so does this
/// decoder: a 10,000² PNG (10⁸ pixels) is not refused as a bomb, it fails on its missing data,
/// having allocated no more than its declared size allows (8 bytes a pixel + 64 MB).
#[test]
fn a_png_between_one_and_two_limits_is_decoded_not_refused() {
    let _one = serial();
    let png = png_header_only(10_000, 10_000);
    let (result, peak) = peak_of(|| decode_rgb(&png, "big.png"));
    let err = result.expect_err("its data is missing");
    assert!(matches!(err, ImageError::Decode { .. }), "{err}");
    println!("10000x10000 PNG stub: {err}; peak allocation {peak} bytes");
    assert!(
        peak <= 8 * 100_000_000 + (64 << 20),
        "peak allocation {peak} bytes"
    );
}

/// `max(1, w) · max(1, h)` against `2 · MAX_IMAGE_PIXELS`, at the boundary, from headers only.
#[test]
fn the_limit_is_twice_pillows_max_image_pixels() {
    assert_eq!(PIXEL_LIMIT, 178_956_970);
    // 178,956,971 = 2 · 89,478,485 + 1, one pixel too many; a JPEG 65,500 wide (libjpeg's
    // JPEG_MAX_DIMENSION) and 2,733 high is over by 54,530.
    let _one = serial();
    let over = png_header_only(178_956_971, 1);
    assert_eq!(
        decode_rgb(&over, "over.png")
            .expect_err("refused")
            .to_string(),
        bomb_line("over.png", 178_956_971, 1)
    );
    let jpeg = jpeg_claiming(65_500, 2_733);
    assert_eq!(
        decode_rgb(&jpeg, "over.jpg")
            .expect_err("refused")
            .to_string(),
        bomb_line("over.jpg", 65_500, 2_733)
    );
    assert_eq!(declared_size(&jpeg), Some((65_500, 2_733)));
    assert_eq!(declared_size(&over), Some((178_956_971, 1)));
}

const INTERESTING_BE: [u32; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(3) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        match rng.below(7) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => {
                // A big-endian integer over a 2- or 4-byte field (chunk and segment lengths,
                // sizes, counts).
                let v = INTERESTING_BE[rng.below(INTERESTING_BE.len())].to_be_bytes();
                let w = if rng.below(2) == 0 { 2 } else { 4 };
                let end = (at + w).min(b.len());
                b[at..end].copy_from_slice(&v[4 - w..4 - w + end - at]);
            }
            3 => {
                // A size straight into the header: IHDR's width / height, or SOF's.
                let v = INTERESTING_BE[rng.below(INTERESTING_BE.len())];
                let field = rng.below(2);
                if b.starts_with(b"\x89PNG") && b.len() >= 24 {
                    b[16 + 4 * field..20 + 4 * field].copy_from_slice(&v.to_be_bytes());
                } else if let Some(sof) = jpeg_sof_size_at(&b) {
                    let v = (v as u16).to_be_bytes();
                    b[sof + 2 * field..sof + 2 * field + 2].copy_from_slice(&v);
                }
            }
            4 => b.truncate(at),
            5 => {
                let len = rng.below(64).min(b.len() - at);
                let chunk = b[at..at + len].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, chunk);
            }
            _ => {
                let len = rng.below(64).min(b.len() - at);
                b.drain(at..at + len);
            }
        }
    }
    b
}

#[test]
fn decoders_survive_mutated_images() {
    let _one = serial();
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(inputs_dir())
        .expect("inputs")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .map(|p: PathBuf| (name_of(&p), std::fs::read(&p).expect("seed")))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 30, "{} seeds", seeds.len());
    let mut rng = Rng(SEED);
    let mut inputs: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    for _ in 0..ITERATIONS {
        let (_, s) = &seeds[rng.below(seeds.len())];
        inputs.push(mutate(&mut rng, s));
    }
    let (mut decoded, mut bombs, mut worst) = (0, 0, 0usize);
    let start = Instant::now();
    for (i, input) in inputs.iter().enumerate() {
        let declared = declared_size(input).map(|(w, h)| u64::from(w.max(1)) * u64::from(h.max(1)));
        let (r, peak) = peak_of(|| catch_unwind(AssertUnwindSafe(|| decode_rgb(input, "fuzz"))));
        let keep = || {
            let path = std::env::temp_dir().join(format!("fuzz-image-{i}.bin"));
            let _ = std::fs::write(&path, input);
            path.display().to_string()
        };
        let Ok(result) = r else {
            panic!("input {i} panicked (saved to {})", keep());
        };
        match &result {
            Ok(_) => decoded += 1,
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "input {i}: {line:?} ({})", keep());
                if matches!(e, ImageError::TooManyPixels { .. }) {
                    bombs += 1;
                }
            }
        }
        // The declared size bounds memory: over the limit nothing is decoded; under it, at
        // most 24 bytes a pixel (a 16-bit RGBA buffer, its 16-bit RGB copy and the 8-bit
        // result at once) plus decoder state.
        let pixels = match declared {
            Some(p) if p > PIXEL_LIMIT => {
                assert!(
                    matches!(result, Err(ImageError::TooManyPixels { .. })),
                    "input {i}: {p} pixels not refused ({})",
                    keep()
                );
                0
            }
            Some(p) => p,
            None => 0,
        };
        let bound = (64 << 20) + 24 * pixels as usize + 4 * input.len();
        assert!(
            peak <= bound,
            "input {i}: allocated {peak} bytes (> {bound}) ({})",
            keep()
        );
        worst = worst.max(peak);
    }
    eprintln!(
        "fuzz: {} image inputs ({} seeds) in {:.1} s: {decoded} decoded, {bombs} refused as \
         bombs, the rest one-line errors; worst peak allocation {worst} bytes",
        inputs.len(),
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `encode` on bombs: the same line through the CLI, exit 2, nothing else printed.
#[test]
fn encode_refuses_bombs_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_path = common::fixture("images").join("preprocessor_config.json");
    let png = dir.path().join("bomb.png");
    std::fs::write(&png, png_header_only(30_000, 30_000)).expect("write");
    let jpg = dir.path().join("bomb.jpg");
    std::fs::write(&jpg, jpeg_claiming(30_000, 30_000)).expect("write");
    for bomb in [&png, &jpg] {
        let path = bomb.to_str().expect("utf-8 path");
        let start = Instant::now();
        let (code, _, stderr) = common::cli(&[
            "encode",
            "--processor",
            proc_path.to_str().expect("utf-8 path"),
            path,
        ]);
        println!(
            "encode {}: exit {code} in {:.0} ms (whole process)",
            name_of(bomb),
            start.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("error: {}", bomb_line(path, 30_000, 30_000))
        );
        assert_eq!(stderr.lines().count(), 1);
    }
}
