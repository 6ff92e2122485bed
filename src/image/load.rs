//! Image files → 8-bit RGB exactly as the reference sees them: `PIL.Image.open(path)
//! .convert("RGB")` with Pillow 13.0.0 (`PngImagePlugin._MODES`, `libImaging/Unpack.c`,
//! `libImaging/Convert.c`, `JpegImagePlugin.py`, `libImaging/JpegDecode.c`).
//!
//! PNG decoding is the `image` crate's; the mode mapping is PIL's:
//! - grey (any bit depth below 16) → replicated; 1/2/4-bit grey is scaled to 0..255 by both;
//! - grey + alpha, RGBA, palette (with or without `tRNS`) → colour kept, alpha dropped (PIL's
//!   `convert("RGB")` does not composite);
//! - 16-bit RGB / RGBA / grey + alpha → the high byte (PIL unpacks them with `RGB;16B`,
//!   `RGBA;16B`, `LA;16B`);
//! - 16-bit grey → PIL mode `I;16`, whose `I16_RGB` conversion is `v > 255 ? 255 : v` — a clamp,
//!   not `v >> 8`.
//!
//! JPEG decoding is libjpeg-turbo's, as Pillow's (see `image/jpeg.rs`): the same pixels, the
//! same refusal of a truncated file. EXIF orientation is ignored, as `Image.open` does.
//!
//! Decompression bombs: Pillow's `Image.open` counts `max(1, w) · max(1, h)` from the header and
//! raises `DecompressionBombError` above twice `Image.MAX_IMAGE_PIXELS` (89,478,485), before
//! any pixel is decoded; between one and two times it only warns. Images above the error
//! threshold are refused here the same way, from the header; the band where Pillow warns is
//! decoded without a warning (the warning changes nothing in Pillow's result, and the library
//! does not print). Decoders are limited to what the accepted header needs: the `image`
//! crate's allocation limit is set from the declared size, and libjpeg decodes nothing before
//! its header passes the check.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use super::jpeg::{self, Failure};
use super::resample::Rgb8;
use super::{DecodeFailure, ImageError};

/// Pillow's `Image.MAX_IMAGE_PIXELS`: above it `Image.open` warns (`DecompressionBombWarning`).
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;
/// Above this many pixels Pillow raises `DecompressionBombError` (`Image.py`,
/// `_decompression_bomb_check`: `pixels > 2 * MAX_IMAGE_PIXELS`), and so do we.
pub const PIXEL_LIMIT: u64 = 2 * MAX_IMAGE_PIXELS;

/// Bytes per pixel of the widest buffer the `image` crate decodes a PNG into (RGBA, 16 bits).
const PNG_BYTES_PER_PIXEL: u64 = 8;
/// Allowance beyond the pixels for the PNG decoder's own buffers (rows, chunks, metadata).
const PNG_DECODER_SLACK: u64 = 64 << 20;

/// Reads and decodes `path` into RGB8 as PIL's `convert("RGB")` would.
pub fn load_rgb(path: &Path) -> Result<Rgb8, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.display().to_string(),
        source,
    })?;
    decode_rgb(&bytes, &path.display().to_string())
}

/// The width and height a PNG or JPEG header declares (before any pixel is decoded).
pub fn declared_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if is_jpeg(bytes) {
        jpeg::header_size(bytes)
    } else {
        png_header(bytes).map(|(w, h, ..)| (w, h))
    }
}

/// Pillow's pixel count, `max(1, w) · max(1, h)`.
fn pixel_count(width: u32, height: u32) -> u64 {
    u64::from(width.max(1)) * u64::from(height.max(1))
}

fn check_pixels(name: &str, width: u32, height: u32) -> Result<u64, ImageError> {
    let pixels = pixel_count(width, height);
    if pixels > PIXEL_LIMIT {
        return Err(ImageError::TooManyPixels {
            path: name.to_string(),
            width,
            height,
            pixels,
            limit: PIXEL_LIMIT,
        });
    }
    Ok(pixels)
}

/// JPEG's start-of-image marker followed by a marker, as Pillow's `JpegImagePlugin._accept`.
fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8, 0xff])
}

/// Decodes an in-memory PNG or JPEG; `name` is used in errors.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<Rgb8, ImageError> {
    if is_jpeg(bytes) {
        return decode_jpeg(bytes, name);
    }
    let ihdr = png_header(bytes);
    // The png crate rejects a zero width or height as a generic format error: say what it is.
    if let Some((w, h, ..)) = ihdr.filter(|&(w, h, ..)| w == 0 || h == 0) {
        return Err(ImageError::ZeroSize {
            path: name.to_string(),
            width: w,
            height: h,
        });
    }
    // Refused from the header, before a decoder exists; an accepted header bounds what the
    // decoder may allocate.
    let declared = match ihdr {
        Some((w, h, ..)) => check_pixels(name, w, h)?,
        None => 0,
    };
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(declared * PNG_BYTES_PER_PIXEL + PNG_DECODER_SLACK);
    let decode_err = |e: image::ImageError| ImageError::Decode {
        path: name.to_string(),
        source: DecodeFailure::Png(e),
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.into()))?;
    if reader.format().is_none() {
        return Err(ImageError::NotAnImage {
            path: name.to_string(),
        });
    }
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            path: name.to_string(),
            width: w,
            height: h,
        });
    }
    check_pixels(name, w, h)?;
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

fn decode_jpeg(bytes: &[u8], name: &str) -> Result<Rgb8, ImageError> {
    let path = name.to_string();
    match jpeg::decode(bytes, PIXEL_LIMIT) {
        Ok(d) => Ok(Rgb8 {
            width: d.width as usize,
            height: d.height as usize,
            data: d.rgb,
        }),
        Err(Failure::TooLarge { width, height }) => Err(ImageError::TooManyPixels {
            path,
            width,
            height,
            pixels: pixel_count(width, height),
            limit: PIXEL_LIMIT,
        }),
        Err(Failure::Truncated) => Err(ImageError::Truncated { path }),
        Err(Failure::Unsupported(reason) | Failure::Corrupt(reason)) => Err(ImageError::Decode {
            path,
            source: DecodeFailure::Jpeg(reason),
        }),
    }
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
    fn a_png_decoder_error_is_kept_as_the_cause() {
        use image::ImageEncoder;
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(&[7u8; 4 * 4 * 3], 4, 4, image::ExtendedColorType::Rgb8)
            .expect("encode");
        bytes.truncate(bytes.len() - 20);
        let err = decode_rgb(&bytes, "cut.png").expect_err("truncated");
        assert!(
            matches!(
                err,
                ImageError::Decode {
                    source: DecodeFailure::Png(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cut.png: cannot decode image: "),
            "{err}"
        );
        crate::base::assert_causes_show_in_the_message(&err);
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
