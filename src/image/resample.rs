//! PIL-exact resizing of 8-bit RGB images: a port of `ImagingResample` from Pillow **13.0.0**
//! (`src/libImaging/Resample.c`), the version pinned in `fixtures/requirements.txt`.
//!
//! Pillow's convolution resampler is separable: per axis, `precompute_coeffs` builds one window
//! of filter weights per output pixel (the filter widened by the scale when downscaling), the
//! weights are normalised to sum 1 and turned into 22-bit fixed point, each output is
//! `clip8((1 << 21) + Σ pixel · weight) >> 22`, and the image between the two passes is uint8.
//! The `image` crate's Triangle filter and `fast_image_resize` differ from this by ±1 on many
//! bytes, which moves colour-cluster tokens, hence the port. Pillow 13 runs the vertical pass
//! first when the height shrinks by more than twice as much as the width (older versions always
//! run horizontal first); the order changes the rounding, so it is ported too.

use std::f64::consts::PI;

/// Fixed-point precision of the 8-bit passes: 32 bits minus 8 for the result minus 2 for
/// filters whose partial sums leave [0, 1] (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's convolution filters, by their `Image.Resampling` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `BOX` (4).
    Box,
    /// `BILINEAR` (2), the ImageGPT processor's default.
    Bilinear,
    /// `HAMMING` (5).
    Hamming,
    /// `BICUBIC` (3).
    Bicubic,
    /// `LANCZOS` (1).
    Lanczos,
}

impl Filter {
    /// The filter for a PIL `Image.Resampling` code; `None` for `NEAREST` (0, a different,
    /// non-convolution path in Pillow) and unknown codes.
    pub fn from_pil(code: i64) -> Option<Filter> {
        match code {
            1 => Some(Filter::Lanczos),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            4 => Some(Filter::Box),
            5 => Some(Filter::Hamming),
            _ => None,
        }
    }

    /// The PIL `Image.Resampling` code (the inverse of [`Filter::from_pil`]).
    pub fn pil_code(self) -> i64 {
        match self {
            Filter::Lanczos => 1,
            Filter::Bilinear => 2,
            Filter::Bicubic => 3,
            Filter::Box => 4,
            Filter::Hamming => 5,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    // The C source writes `0.54f + 0.46f * cos(x)`: float constants, widened.
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

/// One axis's windows: output pixel `i` reads `count[i]` inputs from `start[i]` with the
/// fixed-point weights `weights[i * ksize ..]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole source range (`box` = the full
/// image, as `Image.resize` passes when no box is given). Sizes are ≥ 1 (checked by the caller).
fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    // `box` is `float[4]` in C: the span is computed in float, then widened.
    let (in0, in1) = (0.0f32, in_size as f32);
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0.0f64; ksize];
    for (xx, w_out) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // `(int)` truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let n = xmax.clamp(0, ksize as i64) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            *kx = w;
            ww += w;
        }
        for (x, out) in w_out.iter_mut().enumerate().take(n) {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = v * f64::from(1u32 << PRECISION_BITS);
            *out = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        start.push(xmin as usize);
        count.push(n);
    }
    Coeffs {
        ksize,
        start,
        count,
        weights,
    }
}

/// `clip8`: the fixed-point sum back to a byte (Pillow's lookup table clamps to 0..=255).
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// An interleaved RGB8 image: `width · height · 3` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl From<image::RgbImage> for Rgb8 {
    fn from(img: image::RgbImage) -> Rgb8 {
        Rgb8 {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.into_raw(),
        }
    }
}

/// Horizontal pass over rows `offset .. offset + rows` of `src`.
fn horizontal(src: &Rgb8, offset: usize, rows: usize, c: &Coeffs) -> Rgb8 {
    let out_w = c.start.len();
    let mut data = vec![0u8; out_w * rows * 3];
    for (yy, line_out) in data.chunks_exact_mut(out_w * 3).enumerate() {
        let row = (yy + offset) * src.width * 3;
        let line_in = &src.data[row..row + src.width * 3];
        for (xx, px) in line_out.chunks_exact_mut(3).enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + c.count[xx]];
            let first = c.start[xx] * 3;
            let taps = &line_in[first..first + k.len() * 3];
            // Bound: Σ|k| ≤ ~1.3 · 2^22 for every filter here, times 255 < 2^31.
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (t, &kx) in taps.chunks_exact(3).zip(k) {
                ss[0] += i32::from(t[0]) * kx;
                ss[1] += i32::from(t[1]) * kx;
                ss[2] += i32::from(t[2]) * kx;
            }
            px[0] = clip8(ss[0]);
            px[1] = clip8(ss[1]);
            px[2] = clip8(ss[2]);
        }
    }
    Rgb8 {
        width: out_w,
        height: rows,
        data,
    }
}

/// Vertical pass; `shift` is subtracted from every window start (the rows the horizontal pass
/// skipped).
fn vertical(src: &Rgb8, shift: usize, c: &Coeffs) -> Rgb8 {
    let out_h = c.start.len();
    let stride = src.width * 3;
    let mut data = vec![0u8; stride * out_h];
    let mut ss = vec![0i32; stride];
    for (yy, line_out) in data.chunks_exact_mut(stride).enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + c.count[yy]];
        let first = c.start[yy] - shift;
        ss.fill(1i32 << (PRECISION_BITS - 1));
        // Row-at-a-time accumulation: same per-pixel sum order as Pillow's inner loop over y.
        for (y, &ky) in k.iter().enumerate() {
            let row = (first + y) * stride;
            for (s, &p) in ss.iter_mut().zip(&src.data[row..row + stride]) {
                *s += i32::from(p) * ky;
            }
        }
        for (o, &s) in line_out.iter_mut().zip(&ss) {
            *o = clip8(s);
        }
    }
    Rgb8 {
        width: src.width,
        height: out_h,
        data,
    }
}

/// `Image.resize((out_w, out_h), filter)` on an RGB image, byte for byte as Pillow 13.0.0.
/// Sizes must be ≥ 1 (the processor checks the image and the configured size).
pub fn resize(src: &Rgb8, out_w: usize, out_h: usize, filter: Filter) -> Rgb8 {
    let (in_w, in_h) = (src.width, src.height);
    if (in_w, in_h) == (out_w, out_h) {
        return src.clone(); // `Image.resize` returns a copy for the same size and full box
    }
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;
    // Pillow 13: "If height is being scaled down more than twice the amount the width is,
    // run the vertical pass first" — C ints, so the width term may be negative.
    let dh = in_h as i64 - out_h as i64;
    let dw = in_w as i64 - out_w as i64;
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    if horizontal_first {
        let vert = precompute_coeffs(in_h, out_h, filter);
        let mut img = None;
        let mut shift = 0;
        if need_h {
            // Only the source rows the vertical pass will read.
            let first = vert.start[0];
            let last = vert.start[out_h - 1] + vert.count[out_h - 1];
            shift = first;
            let horiz = precompute_coeffs(in_w, out_w, filter);
            img = Some(horizontal(src, first, last - first, &horiz));
        }
        let cur = img.as_ref().unwrap_or(src);
        if need_v {
            vertical(cur, shift, &vert)
        } else {
            cur.clone()
        }
    } else {
        let vert = precompute_coeffs(in_h, out_h, filter);
        let tmp = vertical(src, 0, &vert);
        if need_h {
            let horiz = precompute_coeffs(in_w, out_w, filter);
            horizontal(&tmp, 0, out_h, &horiz)
        } else {
            tmp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_weights_match_pillow_fixed_point() {
        // 4 → 2: scale 2, support 2·1, ksize 5. Output 0: center 1.0, inputs 0..3 at
        // distances 0.5, 0.5, 1.5 (÷ filterscale 2) → weights 0.75, 0.75, 0.25, sum 1.75 →
        // 3/7, 3/7, 1/7 of 2^22 = 1797558.86, 599186.29 → rounded half up.
        let c = precompute_coeffs(4, 2, Filter::Bilinear);
        assert_eq!(c.ksize, 5);
        assert_eq!((c.start[0], c.count[0]), (0, 3));
        assert_eq!(&c.weights[..3], &[1_797_559, 1_797_559, 599_186]);
        // Output 1: center 3.0, window 1..5 clipped to the image: inputs 1, 2, 3.
        assert_eq!((c.start[1], c.count[1]), (1, 3));
    }

    #[test]
    fn from_an_image_crate_buffer_keeps_layout() {
        let img = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 7, 9]));
        let rgb = Rgb8::from(img);
        assert_eq!(
            (rgb.width, rgb.height, rgb.data),
            (2, 1, vec![0, 7, 9, 1, 7, 9])
        );
    }

    #[test]
    fn same_size_is_a_copy_and_constant_stays_constant() {
        let img = Rgb8 {
            width: 5,
            height: 7,
            data: vec![77; 5 * 7 * 3],
        };
        assert_eq!(resize(&img, 5, 7, Filter::Bilinear), img);
        for (w, h) in [(3, 2), (9, 4), (2, 11), (1, 1)] {
            let out = resize(&img, w, h, Filter::Bilinear);
            assert_eq!((out.width, out.height), (w, h));
            assert!(out.data.iter().all(|&v| v == 77), "{w}x{h}");
        }
    }
}
