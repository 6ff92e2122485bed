//! Pixels ↔ tokens: the ImageGPT image processor and its inverse, and PNG output.
//!
//! - [`load`]: PNG / JPEG files → RGB8 as PIL's `Image.open(p).convert("RGB")` (Pillow 13.0.0),
//!   refusing decompression bombs as Pillow does; JPEGs through libjpeg-turbo (`jpeg`);
//! - [`resample`]: Pillow's `ImagingResample`, ported byte for byte;
//! - [`processor`]: `preprocessor_config.json` → [`Processor`] (transformers 5.23
//!   `ImageGPTImageProcessorPil`): resize, scale, nearest colour cluster; and back;
//! - here: grid PNGs written atomically, and image prompts for generation.

use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

mod jpeg;
pub mod load;
pub mod processor;
pub mod resample;

pub use load::load_rgb;
pub use processor::Processor;
pub use resample::{Filter, Rgb8};

/// An image-processing problem; every variant names the file, field or token at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PNG or JPEG image (unrecognised contents)")]
    NotAnImage { path: String },
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        path: String,
        #[source]
        source: DecodeFailure,
    },
    #[error("{path}: image file is truncated (the data ends before the image does)")]
    Truncated { path: String },
    #[error(
        "{path}: image size ({pixels} pixels, {width}x{height}) exceeds the limit of {limit} \
         pixels (twice Pillow's MAX_IMAGE_PIXELS): refusing a possible decompression bomb"
    )]
    TooManyPixels {
        path: String,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("{path}: zero-size image ({width}x{height})")]
    ZeroSize {
        path: String,
        width: u32,
        height: u32,
    },
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{path}: not valid JSON: {source}")]
    ConfigJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("token {token} at position {index} is outside 0..{n}")]
    Token { index: usize, token: i64, n: usize },
    #[error("{count} tokens do not make a {height}x{width} image ({expected} expected)")]
    TokenCount {
        count: usize,
        expected: usize,
        height: usize,
        width: usize,
    },
    #[error("processor {id}: {source}")]
    Hub {
        id: String,
        #[source]
        source: crate::checkpoint::hub::HubError,
    },
    #[error("no images to put in a grid")]
    EmptyGrid,
    #[error(
        "grid images must share one size: image 0 is {w}x{h}, image {index} is {other_w}x{other_h}"
    )]
    GridSizes {
        w: usize,
        h: usize,
        index: usize,
        other_w: usize,
        other_h: usize,
    },
    #[error("a {cols}x{rows} grid of {w}x{h} is too large")]
    GridTooLarge {
        cols: usize,
        rows: usize,
        w: usize,
        h: usize,
    },
    #[error("cannot encode PNG: {0}")]
    Png(#[source] image::ImageError),
    #[error("--prompt-rows must be in 1..={height} (the model's image height), got {rows}")]
    PromptRows { rows: usize, height: usize },
    #[error(transparent)]
    File(#[from] crate::base::files::FileError),
}

/// Why a decoder refused an image.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// libjpeg's message (its errors are text).
    #[error("{0}")]
    Jpeg(String),
    /// The `image` crate's error (PNG), with the format decoder's own error as its source.
    #[error(transparent)]
    Png(image::ImageError),
}

/// Encodes RGB8 images of one size as a PNG grid, `cols` per row, row-major; cells past the
/// last image stay black.
pub fn grid_png(images: &[Rgb8], cols: usize) -> Result<Vec<u8>, ImageError> {
    let first = images.first().ok_or(ImageError::EmptyGrid)?;
    let (w, h) = (first.width, first.height);
    if let Some((i, other)) = images
        .iter()
        .enumerate()
        .find(|(_, im)| (im.width, im.height) != (w, h))
    {
        return Err(ImageError::GridSizes {
            w,
            h,
            index: i,
            other_w: other.width,
            other_h: other.height,
        });
    }
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    let too_big = || ImageError::GridTooLarge { cols, rows, w, h };
    let gw = w
        .checked_mul(cols)
        .filter(|&v| v <= u32::MAX as usize)
        .ok_or_else(too_big)?;
    let gh = h
        .checked_mul(rows)
        .filter(|&v| v <= u32::MAX as usize)
        .ok_or_else(too_big)?;
    let bytes = gw
        .checked_mul(gh)
        .and_then(|p| p.checked_mul(3))
        .ok_or_else(too_big)?;
    let mut canvas = vec![0u8; bytes];
    for (i, im) in images.iter().enumerate() {
        let (cx, cy) = (i % cols, i / cols);
        for y in 0..h {
            let src = &im.data[y * w * 3..(y + 1) * w * 3];
            let at = ((cy * h + y) * gw + cx * w) * 3;
            canvas[at..at + w * 3].copy_from_slice(src);
        }
    }
    png_bytes(&canvas, gw as u32, gh as u32)
}

/// One RGB8 image as PNG bytes.
pub fn png(image: &Rgb8) -> Result<Vec<u8>, ImageError> {
    png_bytes(&image.data, image.width as u32, image.height as u32)
}

fn png_bytes(data: &[u8], w: u32, h: u32) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(data, w, h, ExtendedColorType::Rgb8)
        .map_err(ImageError::Png)?;
    Ok(out)
}

/// Writes images as one grid PNG at `path` (atomically).
pub fn write_grid_png(path: &Path, images: &[Rgb8], cols: usize) -> Result<(), ImageError> {
    Ok(crate::base::files::write_atomic(
        path,
        &grid_png(images, cols)?,
    )?)
}

/// The tokens of the top `rows` pixel rows of an image file, for priming generation with an
/// image prompt (the caller prepends SOS and samples the remaining `(height − rows) · width`).
pub fn prompt_tokens(
    processor: &Processor,
    path: &Path,
    rows: usize,
) -> Result<Vec<i64>, ImageError> {
    let (h, w) = processor.size();
    if rows == 0 || rows > h {
        return Err(ImageError::PromptRows { rows, height: h });
    }
    let mut tokens = processor.encode_file(path)?;
    tokens.truncate(rows * w);
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: usize, h: usize, v: u8) -> Rgb8 {
        Rgb8 {
            width: w,
            height: h,
            data: vec![v; w * h * 3],
        }
    }

    #[test]
    fn grid_places_images_row_major_and_round_trips_through_png() {
        let png =
            grid_png(&[solid(2, 1, 10), solid(2, 1, 20), solid(2, 1, 30)], 2).expect("encodes");
        let back = load::decode_rgb(&png, "grid").expect("decodes");
        assert_eq!((back.width, back.height), (4, 2));
        let px = |x: usize, y: usize| back.data[(y * 4 + x) * 3];
        assert_eq!(
            [
                px(0, 0),
                px(1, 0),
                px(2, 0),
                px(3, 0),
                px(0, 1),
                px(1, 1),
                px(2, 1),
                px(3, 1)
            ],
            [10, 10, 20, 20, 30, 30, 0, 0]
        );
    }

    #[test]
    fn a_config_that_is_not_json_keeps_the_parser_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("preprocessor_config.json");
        std::fs::write(&path, b"{ nope").expect("write");
        let err = Processor::open(&path).expect_err("not JSON");
        assert!(matches!(err, ImageError::ConfigJson { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not valid JSON: key must be a string at line 1 column 3",
                path.display()
            )
        );
        crate::base::assert_causes_show_in_the_message(&err);
    }

    #[test]
    fn grid_refuses_mixed_sizes() {
        assert_eq!(
            grid_png(&[solid(2, 2, 0), solid(3, 2, 0)], 2)
                .expect_err("refused")
                .to_string(),
            "grid images must share one size: image 0 is 2x2, image 1 is 3x2"
        );
    }
}
