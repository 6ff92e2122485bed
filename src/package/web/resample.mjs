// Pillow 13's convolution resampler (`Image.resize` on RGB), ported from src/image/resample.rs,
// itself a port of Pillow's libImaging/Resample.c: byte for byte, because one byte off can move
// a pixel to another colour cluster. No DOM: ci/web_parity.mjs runs it under Node against the
// Rust resampler's bytes.

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

// Pillow's convolution filters by their Image.Resampling codes: [support, filter].
const FILTERS = {
  4: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1 : 0)],
  2: [1, (x) => ((x = Math.abs(x)) < 1 ? 1 - x : 0)],
  5: [
    1,
    (x) => {
      x = Math.abs(x);
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
    },
  ],
  3: [
    2,
    (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  ],
  1: [3, (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)],
};

// precompute_coeffs + normalize_coeffs_8bpc over the whole source.
function coeffs(inSize, outSize, [support0, filter]) {
  const scale = Math.fround(inSize) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const inv = 1 / filterscale;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const n = Math.min(Math.max(xmax, 0), ksize);
    let ww = 0;
    for (let x = 0; x < n; x++) {
      const w = filter((x + xmin - center + 0.5) * inv);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < n; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      const scaled = v * 2 ** PRECISION_BITS;
      weights[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + scaled) : Math.trunc(0.5 + scaled);
    }
    start[xx] = xmin;
    count[xx] = n;
  }
  return { ksize, start, count, weights };
}

const clip8 = (ss) => Math.min(Math.max(Math.floor(ss / 2 ** PRECISION_BITS), 0), 255);

function horizontal(src, offset, rows, c) {
  const outW = c.start.length;
  const data = new Uint8Array(outW * rows * 3);
  for (let yy = 0; yy < rows; yy++) {
    const row = (yy + offset) * src.width * 3;
    for (let xx = 0; xx < outW; xx++) {
      let s0 = 1 << (PRECISION_BITS - 1);
      let s1 = s0;
      let s2 = s0;
      const first = row + c.start[xx] * 3;
      for (let x = 0; x < c.count[xx]; x++) {
        const kx = c.weights[xx * c.ksize + x];
        const p = first + x * 3;
        s0 += src.data[p] * kx;
        s1 += src.data[p + 1] * kx;
        s2 += src.data[p + 2] * kx;
      }
      const o = (yy * outW + xx) * 3;
      data[o] = clip8(s0);
      data[o + 1] = clip8(s1);
      data[o + 2] = clip8(s2);
    }
  }
  return { width: outW, height: rows, data };
}

function vertical(src, shift, c) {
  const outH = c.start.length;
  const stride = src.width * 3;
  const data = new Uint8Array(stride * outH);
  const ss = new Float64Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    ss.fill(1 << (PRECISION_BITS - 1));
    const first = c.start[yy] - shift;
    for (let y = 0; y < c.count[yy]; y++) {
      const ky = c.weights[yy * c.ksize + y];
      const row = (first + y) * stride;
      for (let i = 0; i < stride; i++) ss[i] += src.data[row + i] * ky;
    }
    for (let i = 0; i < stride; i++) data[yy * stride + i] = clip8(ss[i]);
  }
  return { width: src.width, height: outH, data };
}

/** `Image.resize((outW, outH), filter)` on an RGB image, byte for byte as Pillow 13. */
export function resize(src, outW, outH, code = 2) {
  const filter = FILTERS[code];
  if (!filter) throw new Error(`resample ${code} is not supported`);
  const { width: inW, height: inH } = src;
  if (inW === outW && inH === outH) return src;
  const needH = outW !== inW;
  const needV = outH !== inH;
  const dh = inH - outH;
  const dw = inW - outW;
  if (!(dh > 0 && dh > dw * 2)) {
    const vert = coeffs(inH, outH, filter);
    let cur = src;
    let shift = 0;
    if (needH) {
      const first = vert.start[0];
      const last = vert.start[outH - 1] + vert.count[outH - 1];
      shift = first;
      cur = horizontal(src, first, last - first, coeffs(inW, outW, filter));
    }
    return needV ? vertical(cur, shift, vert) : cur;
  }
  const tmp = vertical(src, 0, coeffs(inH, outH, filter));
  return needH ? horizontal(tmp, 0, outH, coeffs(inW, outW, filter)) : tmp;
}
