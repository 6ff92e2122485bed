//! Image files → 8-bit RGB exactly as the reference sees them: `PIL.Image.open(path)
//! .convert("RGB")` with Pillow 13.0.0 (`PngImagePlugin._MODES`, `libImaging/Unpack.c`,
//! `libImaging/Convert.c`).
//!
//! Decoding is the `image` crate's (PNG, JPEG); the mode mapping is PIL's:
//! - grey (any bit depth below 16) → replicated; 1/2/4-bit grey is scaled to 0..255 by both;
//! - grey + alpha, RGBA, palette (with or without `tRNS`) → colour kept, alpha dropped (PIL's
//!   `convert("RGB")` does not composite);
//! - 16-bit RGB / RGBA / grey + alpha → the high byte (PIL unpacks them with `RGB;16B`,
//!   `RGBA;16B`, `LA;16B`);
//! - 16-bit grey → PIL mode `I;16`, whose `I16_RGB` conversion is `v > 255 ? 255 : v` — a clamp,
//!   not `v >> 8`.
//!
//! JPEG: PIL uses libjpeg(-turbo) and `image` uses zune-jpeg; their IDCT and chroma upsampling
//! may differ by ±1 on some bytes. EXIF orientation is ignored, as `Image.open` does.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use super::resample::Rgb8;
use super::ImageError;

/// Reads and decodes `path` into RGB8 as PIL's `convert("RGB")` would.
pub fn load_rgb(path: &Path) -> Result<Rgb8, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.display().to_string(),
        source,
    })?;
    decode_rgb(&bytes, &path.display().to_string())
}

/// Decodes an in-memory PNG or JPEG; `name` is used in errors.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<Rgb8, ImageError> {
    let ihdr = png_header(bytes);
    // The png crate rejects a zero width or height as a generic format error: say what it is.
    if let Some((w, h, ..)) = ihdr.filter(|&(w, h, ..)| w == 0 || h == 0) {
        return Err(ImageError::ZeroSize {
            path: name.to_string(),
            width: w,
            height: h,
        });
    }
    let decode_err = |e: image::ImageError| ImageError::Decode {
        path: name.to_string(),
        reason: e.to_string(),
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode {
            path: name.to_string(),
            reason: e.to_string(),
        })?;
    if reader.format().is_none() {
        return Err(ImageError::NotAnImage {
            path: name.to_string(),
        });
    }
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            path: name.to_string(),
            width: w,
            height: h,
        });
    }
    // The file's own colour type (IHDR): `image` widens 16-bit grey with `tRNS` to grey +
    // alpha (and says so in `original_color_type` too), but PIL keeps it as `I;16`, which
    // converts differently.
    let grey16_file = matches!(ihdr, Some((_, _, 16, 0)));
    let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = match img {
        DynamicImage::ImageLuma16(g) => grey16(g.as_raw()),
        DynamicImage::ImageLumaA16(ga) if grey16_file => {
            grey16(&ga.as_raw().iter().step_by(2).copied().collect::<Vec<_>>())
        }
        // 16-bit colour or grey + alpha: the high byte, as PIL's `;16B` unpackers.
        DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageLumaA16(_) => img
            .to_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| (v >> 8) as u8)
            .collect(),
        // 8-bit layouts: `to_rgb8` replicates grey and drops alpha, no compositing.
        other => other.to_rgb8().into_raw(),
    };
    Ok(Rgb8 {
        width,
        height,
        data,
    })
}

/// A PNG's IHDR fields `(width, height, bit depth, colour type)`, if `bytes` is a PNG.
fn png_header(bytes: &[u8]) -> Option<(u32, u32, u8, u8)> {
    if bytes.get(..8)? != b"\x89PNG\r\n\x1a\n" || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    Some((be(16)?, be(20)?, *bytes.get(24)?, *bytes.get(25)?))
}

/// PIL `I16_RGB`: values above 255 saturate, others keep their low byte.
fn grey16(values: &[u16]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| {
            let b = v.min(255) as u8;
            [b, b, b]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_to_rgb_saturates_instead_of_shifting() {
        // Pillow's Convert.c I16_RGB: `in[1] == 0 ? in[0] : 255` on little-endian storage.
        assert_eq!(grey16(&[0, 200, 255, 256, 65535]), {
            let mut v = Vec::new();
            for b in [0u8, 200, 255, 255, 255] {
                v.extend([b, b, b]);
            }
            v
        });
    }

    #[test]
    fn text_is_not_an_image() {
        let err = decode_rgb(b"hello, not an image", "notes.txt").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "notes.txt: not a PNG or JPEG image (unrecognised contents)"
        );
    }
}
