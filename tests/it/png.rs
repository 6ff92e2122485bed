//! PNG files written by hand for the tests that need what encoders will not write: every colour
//! type and bit depth, palettes, Adam7, every row filter, extra chunks, split image data.

use crate::common::Rng;

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// The CRC-32 of a PNG chunk's type and data (ISO 3309, as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in data {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                c >> 1 ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

pub fn chunk(png: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let body = [kind, data].concat();
    png.extend_from_slice(&body);
    png.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// zlib around stored (uncompressed) deflate blocks.
pub fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (a, b) = raw.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + u32::from(x)) % 65_521;
        (a, (b + a) % 65_521)
    });
    z.extend_from_slice(&(b << 16 | a).to_be_bytes());
    z
}

/// How a hand-written PNG is laid out beyond its pixels.
#[derive(Clone, Copy)]
pub struct Layout {
    pub interlaced: bool,
    /// A `tRNS` chunk (alpha per palette entry, or a colour key), which both readers ignore
    /// for RGB (Pillow's `convert("RGB")` drops it).
    pub trns: bool,
    /// A `tEXt` chunk before the image data, to be skipped.
    pub text: bool,
    /// The zlib stream cut across this many `IDAT` chunks.
    pub idats: usize,
}

/// A PNG of seeded random samples: `depth`-bit colour type `colour`, every row with a random
/// filter (None, Sub, Up, Average, Paeth; the decoder must undo each), the data in stored
/// deflate blocks. What the `image` crate's encoder cannot write: palettes, sub-byte depths,
/// Adam7, every filter on purpose.
pub fn png_by_hand(seed: u64, (w, h): (usize, usize), depth: u8, colour: u8, l: Layout) -> Vec<u8> {
    let channels = match colour {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        _ => 4,
    };
    let mut rng = Rng(seed);
    let palette_len = if colour == 3 {
        1 + rng.below(1 << depth)
    } else {
        0
    };
    let max = if colour == 3 {
        palette_len as u64 - 1
    } else {
        (1u64 << depth) - 1
    };
    let samples: Vec<u64> = (0..w * h * channels)
        .map(|_| rng.next() % (max + 1))
        .collect();
    let passes: &[(usize, usize, usize, usize)] = if l.interlaced {
        &[
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
    } else {
        &[(0, 0, 1, 1)]
    };
    let bpp = (channels * usize::from(depth) / 8).max(1);
    let mut raw = Vec::new();
    for &(x0, y0, dx, dy) in passes {
        let xs: Vec<usize> = (x0..w).step_by(dx).collect();
        if xs.is_empty() {
            continue;
        }
        let mut prev: Vec<u8> = Vec::new();
        for y in (y0..h).step_by(dy) {
            let mut row = Vec::new();
            let (mut acc, mut bits) = (0u32, 0u32);
            for &x in &xs {
                for c in 0..channels {
                    let v = samples[(y * w + x) * channels + c];
                    if depth == 16 {
                        row.extend_from_slice(&(v as u16).to_be_bytes());
                        continue;
                    }
                    acc = acc << depth | v as u32;
                    bits += u32::from(depth);
                    if bits == 8 {
                        row.push(acc as u8);
                        (acc, bits) = (0, 0);
                    }
                }
            }
            if bits > 0 {
                row.push((acc << (8 - bits)) as u8);
            }
            if prev.is_empty() {
                prev = vec![0; row.len()];
            }
            let filter = rng.below(5) as u8;
            raw.push(filter);
            for i in 0..row.len() {
                let a = if i >= bpp { row[i - bpp] } else { 0 };
                let b = prev[i];
                let c = if i >= bpp { prev[i - bpp] } else { 0 };
                let predicted = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    _ => {
                        let p = i16::from(a) + i16::from(b) - i16::from(c);
                        let (pa, pb, pc) = (
                            (p - i16::from(a)).abs(),
                            (p - i16::from(b)).abs(),
                            (p - i16::from(c)).abs(),
                        );
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                };
                raw.push(row[i].wrapping_sub(predicted));
            }
            prev = row;
        }
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, u8::from(l.interlaced)]);
    chunk(&mut png, b"IHDR", &ihdr);
    if l.text {
        chunk(&mut png, b"tEXt", b"Comment\0written by igpt-onnx's tests");
    }
    if colour == 3 {
        let plte = random_bytes(&mut rng, palette_len * 3);
        chunk(&mut png, b"PLTE", &plte);
    }
    if l.trns {
        let key = |rng: &mut Rng| ((rng.next() % (max + 1)) as u16).to_be_bytes();
        let trns: Vec<u8> = match colour {
            3 => random_bytes(&mut rng, palette_len),
            0 => key(&mut rng).to_vec(),
            2 => (0..3).flat_map(|_| key(&mut rng)).collect(),
            _ => Vec::new(),
        };
        if !trns.is_empty() {
            chunk(&mut png, b"tRNS", &trns);
        }
    }
    let z = zlib_stored(&raw);
    let piece = z.len().div_ceil(l.idats.max(1)).max(1);
    for part in z.chunks(piece) {
        chunk(&mut png, b"IDAT", part);
    }
    chunk(&mut png, b"IEND", &[]);
    png
}
