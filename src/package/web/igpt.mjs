// igpt-onnx's web page: ImageGPT generation and classification in the browser with
// onnxruntime-web. One ES module, no build step. Written by `igpt-onnx package --web` beside
// `index.html`, `model.json` (the manifest), `processor.json` and the graphs.
//
// What must give the command line's tokens is ported from its Rust sources:
// - the sampler and its seeded SplitMix64 (src/generate/sampling.rs, src/random.rs);
// - the image processor: Pillow 13's convolution resampler (src/image/resample.rs, a port of
//   Pillow's libImaging/Resample.c) and the nearest-cluster mapping (src/image/processor.rs).
// The decoding loop is src/generate/session.rs's: the prompt in one pass, then one token per
// step, positions continuing from the past, the cache fed back.

// ---------------------------------------------------------------------------------------------
// Sampling (src/generate/sampling.rs)

const U64 = (1n << 64n) - 1n;

/** SplitMix64, as src/random.rs: the draws for a seed never change. */
export class SplitMix64 {
  constructor(seed) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }
  nextU64() {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & U64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & U64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & U64;
    return z ^ (z >> 31n);
  }
  /** Uniform in [0, 1) with 53 random bits. */
  uniform() {
    return Number(this.nextU64() >> 11n) / 2 ** 53;
  }
}

/** The index of the largest value, the first on ties; NaN never wins. */
export function argmax(xs) {
  let best = 0;
  let value = -Infinity;
  for (let i = 0; i < xs.length; i++) {
    if (xs[i] > value) {
      best = i;
      value = xs[i];
    }
  }
  return best;
}

// Rust's f32::total_cmp on non-NaN values: -0 sorts below +0.
function totalCmp(a, b) {
  if (a < b) return -1;
  if (a > b) return 1;
  if (a === 0 && b === 0) return (Object.is(a, -0) ? 0 : 1) - (Object.is(b, -0) ? 0 : 1);
  return 0;
}

/** Temperature, then top-k (ties with the k-th kept), then top-p, then one draw `u`. */
export function sample(logits, temperature, topK, topP, u) {
  let order = [];
  for (let i = 0; i < logits.length; i++) if (!Number.isNaN(logits[i])) order.push(i);
  order.sort((a, b) => totalCmp(logits[b], logits[a]) || a - b);
  if (order.length === 0) return 0;
  if (topK > 0 && topK < order.length) {
    const kth = logits[order[topK - 1]];
    let keep = 0;
    while (keep < order.length && logits[order[keep]] >= kth) keep++;
    order = order.slice(0, keep);
  }
  const t = temperature > 0 ? temperature : 1;
  const max = logits[order[0]] / t;
  let probs = order.map((i) => Math.exp(logits[i] / t - max));
  let total = probs.reduce((a, p) => a + p, 0);
  probs = probs.map((p) => p / total);
  if (topP < 1) {
    let mass = 0;
    let keep = 0;
    for (const p of probs) {
      keep++;
      mass += p;
      if (mass >= topP) break;
    }
    probs = probs.slice(0, keep);
    order = order.slice(0, keep);
    total = probs.reduce((a, p) => a + p, 0);
    probs = probs.map((p) => p / total);
  }
  let acc = 0;
  for (let k = 0; k < probs.length; k++) {
    acc += probs[k];
    if (u < acc) return order[k];
  }
  return order[order.length - 1];
}

/** A strategy (`{greedy: true}` or `{temperature, topK, topP}`) with its seeded stream. */
export class Sampler {
  constructor(strategy, seed) {
    this.strategy = strategy;
    this.rng = new SplitMix64(seed);
  }
  pick(logits) {
    const s = this.strategy;
    if (s.greedy) return argmax(logits);
    return sample(logits, s.temperature, s.topK, s.topP, this.rng.uniform());
  }
}

/**
 * Greedy, or sampling with the given values over generation_config.json over Hugging Face's
 * defaults (temperature 1, top-k 50, top-p 1), as `igpt-onnx generate` decides.
 */
export function strategyOf(asked, generation) {
  const g = generation || {};
  if (asked.greedy) return { greedy: true };
  const sampling = asked.temperature != null || asked.topK != null || asked.topP != null;
  if (!sampling && g.do_sample !== true) return { greedy: true };
  const temperature = asked.temperature ?? (typeof g.temperature === 'number' ? g.temperature : 1);
  const topK = asked.topK ?? (Number.isInteger(g.top_k) && g.top_k >= 0 ? g.top_k : 50);
  const topP = asked.topP ?? (typeof g.top_p === 'number' ? g.top_p : 1);
  if (!(temperature > 0 && Number.isFinite(temperature))) {
    throw new Error(`temperature must be a positive number, not ${temperature}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new Error(`top-p must be in (0, 1], not ${topP}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new Error(`top-k must be a whole number, not ${topK}`);
  return { greedy: false, temperature, topK, topP };
}

// ---------------------------------------------------------------------------------------------
// The image processor (src/image/resample.rs, src/image/processor.rs)

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

const roundTiesEven = (v) => {
  const f = Math.floor(v);
  const d = v - f;
  if (d !== 0.5) return Math.round(v);
  return f % 2 === 0 ? f : f + 1;
};

/** The processor from `processor.json` (what `Processor::tables` writes). */
export class ImageProcessor {
  constructor(t) {
    this.height = t.height;
    this.width = t.width;
    this.doResize = t.do_resize;
    this.resample = t.resample;
    this.lut = t.lut.map((ch) => Float64Array.from(ch));
    this.clusters = t.clusters;
    this.flat = Float64Array.from(t.clusters.flat());
    // |c|² summed as numpy does: (c0² + c1²) + c2², float64.
    this.norms = Float64Array.from(t.clusters, (c) => c[0] * c[0] + c[1] * c[1] + c[2] * c[2]);
    this.colours = Uint8Array.from(
      t.clusters.flat(),
      (v) => Math.min(Math.max(roundTiesEven(127.5 * (v + 1)), 0), 255),
    );
  }

  /** Tokens of an RGB image `{width, height, data}` (row-major, no start token). */
  encode(img) {
    if (img.width === 0 || img.height === 0) throw new Error('the image has no pixels');
    if (this.doResize) img = resize(img, this.width, this.height, this.resample);
    else if (img.width !== this.width || img.height !== this.height) {
      throw new Error(`the image is ${img.width}x${img.height}, the model takes ${this.width}x${this.height}`);
    }
    const f = Math.fround;
    const [l0, l1, l2] = this.lut;
    const n = this.norms.length;
    const out = new Array(img.width * img.height);
    for (let p = 0; p < out.length; p++) {
      const x0 = l0[img.data[p * 3]];
      const x1 = l1[img.data[p * 3 + 1]];
      const x2 = l2[img.data[p * 3 + 2]];
      // |x|² in float32 (the pixels' dtype), the rest in float64, as numpy promotes.
      const a2 = f(f(f(x0 * x0) + f(x1 * x1)) + f(x2 * x2));
      let best = Infinity;
      let arg = 0;
      for (let k = 0; k < n; k++) {
        const c = k * 3;
        const ab = x0 * this.flat[c] + x1 * this.flat[c + 1] + x2 * this.flat[c + 2];
        const d = a2 - 2 * ab + this.norms[k];
        if (d < best) {
          best = d;
          arg = k;
        }
      }
      out[p] = arg;
    }
    return out;
  }

  /** The RGB colour of a token. */
  colour(token) {
    return this.colours.subarray(token * 3, token * 3 + 3);
  }
}

// Pillow's decompression-bomb limit (`Image.open` raises above 2 * MAX_IMAGE_PIXELS), as
// src/image/load.rs refuses.
const PIXEL_LIMIT = 2 * 89478485;
const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
// Adam7's passes: first column, first row, column step, row step.
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

/**
 * Decodes a PNG to RGB bytes as `PIL.Image.open(f).convert("RGB")` does (src/image/load.rs): a
 * browser's canvas premultiplies alpha and widens 16-bit grey its own way, so PNGs are decoded
 * here instead. Grey below 16 bits scales to 0..255 and is replicated; 16-bit grey (PIL `I;16`)
 * saturates at 255; other 16-bit samples keep their high byte; alpha is dropped (no compositing);
 * palette entries are looked up (`tRNS` ignored).
 */
export async function decodePng(bytes, name) {
  const bad = (why) => new Error(`${name}: not a valid PNG (${why})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let ihdr = null;
  let palette = new Uint8Array(0);
  const idat = [];
  for (let pos = 8; ; ) {
    if (pos + 8 > bytes.length) throw bad('truncated');
    const len = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (data.length < len) throw bad('truncated');
    if (type === 'IHDR') {
      if (len < 13) throw bad('short IHDR');
      ihdr = {
        width: view.getUint32(pos + 8),
        height: view.getUint32(pos + 12),
        depth: data[8],
        colour: data[9],
        interlace: data[12],
      };
    } else if (type === 'PLTE') palette = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    pos += 12 + len;
  }
  if (!ihdr) throw bad('no IHDR');
  const { width, height, depth, colour, interlace } = ihdr;
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour];
  const depths = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] }[colour];
  if (!channels || !depths.includes(depth)) throw bad(`colour type ${colour} at ${depth} bits`);
  if (width === 0 || height === 0) throw new Error(`${name}: the image is ${width}x${height}`);
  if (width * height > PIXEL_LIMIT) {
    throw new Error(`${name}: ${width}x${height} is ${width * height} pixels, over the limit of ${PIXEL_LIMIT}`);
  }
  // Each pass's rows: its first column and row, steps, size and bytes a row (plus its filter byte).
  const passes = (interlace === 1 ? ADAM7 : [[0, 0, 1, 1]])
    .map(([x0, y0, dx, dy]) => {
      const pw = Math.ceil((width - x0) / dx);
      const ph = Math.ceil((height - y0) / dy);
      return { x0, y0, dx, dy, pw, ph, stride: Math.ceil((pw * channels * depth) / 8) };
    })
    .filter((p) => p.pw > 0 && p.ph > 0);
  const expected = passes.reduce((n, p) => n + p.ph * (1 + p.stride), 0);
  // Inflated no further than the header's image needs (a deflate bomb stops there).
  const raw = new Uint8Array(expected);
  let got = 0;
  try {
    const stream = new Blob(idat).stream().pipeThrough(new DecompressionStream('deflate'));
    const reader = stream.getReader();
    while (got < expected) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, expected - got);
      raw.set(value.subarray(0, take), got);
      got += take;
    }
    reader.cancel().catch(() => {});
  } catch {
    throw bad('corrupt image data');
  }
  if (got < expected) throw bad('truncated image data');
  const bpp = Math.max(1, (channels * depth) >> 3); // bytes a filter looks back
  const max = (1 << Math.min(depth, 8)) - 1;
  const out = new Uint8Array(width * height * 3);
  const sample = (row, i) => {
    if (depth === 8) return row[i];
    if (depth === 16) return (row[2 * i] << 8) | row[2 * i + 1];
    const bit = i * depth;
    return (row[bit >> 3] >> (8 - depth - (bit & 7))) & max;
  };
  const high = (v) => (depth === 16 ? v >> 8 : v);
  const put = (row, x, o) => {
    const i = x * channels;
    if (colour === 0) {
      const v = depth === 16 ? Math.min(sample(row, i), 255) : (sample(row, i) * 255) / max;
      out[o] = out[o + 1] = out[o + 2] = v;
    } else if (colour === 3) {
      const p = sample(row, i) * 3;
      out[o] = palette[p] ?? 0;
      out[o + 1] = palette[p + 1] ?? 0;
      out[o + 2] = palette[p + 2] ?? 0;
    } else if (colour === 4) {
      out[o] = out[o + 1] = out[o + 2] = high(sample(row, i));
    } else {
      out[o] = high(sample(row, i));
      out[o + 1] = high(sample(row, i + 1));
      out[o + 2] = high(sample(row, i + 2));
    }
  };
  let at = 0;
  for (const { x0, y0, dx, dy, pw, ph, stride } of passes) {
    let prev = new Uint8Array(stride);
    for (let y = 0; y < ph; y++) {
      const filter = raw[at];
      // Unfiltered in place: `prev` is the row above, already unfiltered.
      const row = raw.subarray(at + 1, at + 1 + stride);
      at += 1 + stride;
      for (let i = 0; i < stride; i++) {
        const a = i >= bpp ? row[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        if (filter === 1) row[i] += a;
        else if (filter === 2) row[i] += b;
        else if (filter === 3) row[i] += (a + b) >> 1;
        else if (filter === 4) {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          row[i] += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        } else if (filter !== 0) throw bad(`filter type ${filter}`);
      }
      for (let x = 0; x < pw; x++) put(row, x, ((y0 + y * dy) * width + x0 + x * dx) * 3);
      prev = row;
    }
  }
  return { width, height, data: out };
}

/**
 * Decodes an image file (a Blob) to RGB bytes: a PNG by `decodePng`, anything else by the
 * browser, without colour management or EXIF rotation.
 */
export async function rgbOfBlob(blob, name) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  if (PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return decodePng(bytes, name);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, {
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
      imageOrientation: 'none',
    });
  } catch {
    throw new Error(`${name} is not an image this browser can decode`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  // Chromium turns a JPEG by its EXIF orientation whatever `imageOrientation` says; Pillow's
  // `open` does not, so the turn is undone: each stored pixel (x, y) of the w x h file is read
  // from where the orientation put it.
  const o = jpegOrientation(bytes);
  const swap = o >= 5;
  const w = swap ? bitmap.height : bitmap.width;
  const h = swap ? bitmap.width : bitmap.height;
  const shown = [
    null,
    (x, y) => [x, y],
    (x, y) => [w - 1 - x, y],
    (x, y) => [w - 1 - x, h - 1 - y],
    (x, y) => [x, h - 1 - y],
    (x, y) => [y, x],
    (x, y) => [h - 1 - y, x],
    (x, y) => [h - 1 - y, w - 1 - x],
    (x, y) => [y, w - 1 - x],
  ][o];
  const data = new Uint8Array(w * h * 3);
  for (let y = 0, j = 0; y < h; y++) {
    for (let x = 0; x < w; x++, j += 3) {
      const [sx, sy] = shown(x, y);
      const i = (sy * bitmap.width + sx) * 4;
      data[j] = rgba[i];
      data[j + 1] = rgba[i + 1];
      data[j + 2] = rgba[i + 2];
    }
  }
  return { width: w, height: h, data };
}

/** A JPEG's EXIF orientation (1 to 8; 1 when absent, invalid or not a JPEG). */
export function jpegOrientation(bytes) {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let pos = 2; pos + 4 <= bytes.length && bytes[pos] === 0xff; ) {
    const marker = bytes[pos + 1];
    if (marker === 0xda || marker === 0xd9) break; // image data: no more metadata
    const len = view.getUint16(pos + 2);
    const seg = pos + 4;
    const exif = String.fromCharCode(...bytes.subarray(seg, seg + 6)) === 'Exif\0\0';
    if (marker === 0xe1 && exif && seg + 14 <= bytes.length) {
      const tiff = seg + 6;
      const le = bytes[tiff] === 0x49;
      const u16 = (at) => (at + 2 <= bytes.length ? view.getUint16(at, le) : 0);
      const u32 = (at) => (at + 4 <= bytes.length ? view.getUint32(at, le) : 0);
      const ifd = tiff + u32(tiff + 4);
      const n = u16(ifd);
      for (let e = 0; e < n; e++) {
        const entry = ifd + 2 + 12 * e;
        if (u16(entry) === 0x0112) {
          const v = u16(entry + 8);
          return v >= 1 && v <= 8 ? v : 1;
        }
      }
      return 1;
    }
    pos = seg + len - 2;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// The model: onnxruntime-web, the decoding loop (src/generate/session.rs), the classifier

async function fetchOk(url, what) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`cannot fetch ${what} (${url}): ${e && e.message ? e.message : e}`);
  }
  if (!res.ok) throw new Error(`cannot fetch ${what} (${url}): HTTP ${res.status} ${res.statusText}`.trim());
  return res;
}

/** Loads the manifest, the processor and onnxruntime-web (WebGPU where the browser has it). */
export async function loadModel(base, { backend } = {}) {
  const manifestUrl = new URL('model.json', base).href;
  const manifest = await (await fetchOk(manifestUrl, 'model.json')).json().catch(() => {
    throw new Error(`${manifestUrl} is not the JSON manifest igpt-onnx package --web writes`);
  });
  const tables = await (await fetchOk(new URL(manifest.processor, base).href, manifest.processor)).json();
  let useGpu = backend === 'webgpu';
  if (backend == null && typeof navigator !== 'undefined' && navigator.gpu) {
    try {
      useGpu = (await navigator.gpu.requestAdapter()) != null;
    } catch {
      useGpu = false;
    }
  }
  const ortBase = new URL(manifest.ort.base, base).href;
  const bundle = useGpu ? 'ort.webgpu.min.mjs' : 'ort.wasm.min.mjs';
  let ort;
  try {
    ort = await import(new URL(bundle, ortBase).href);
  } catch (e) {
    throw new Error(`cannot load onnxruntime-web from ${ortBase}${bundle}: ${e && e.message ? e.message : e}`);
  }
  ort.env.wasm.wasmPaths = ortBase;
  ort.env.logLevel = 'error';
  return { base, manifest, processor: new ImageProcessor(tables), ort, useGpu, sessions: {} };
}

/** The session of `which` (`decoder` or `classifier`), loaded on first use. */
export async function session(model, which) {
  if (model.sessions[which]) return model.sessions[which];
  const entry = model.manifest[which];
  if (!entry) throw new Error(`this package has no ${which}`);
  const url = new URL(entry.file, model.base).href;
  const bytes = new Uint8Array(await (await fetchOk(url, entry.file)).arrayBuffer());
  const tries = model.useGpu ? ['webgpu', 'wasm'] : ['wasm'];
  let last;
  for (const ep of tries) {
    try {
      const s = await model.ort.InferenceSession.create(bytes, { executionProviders: [ep], logSeverityLevel: 3 });
      model.sessions[which] = { session: s, backend: ep };
      return model.sessions[which];
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`onnxruntime-web cannot load ${entry.file}: ${last && last.message ? last.message : last}`);
}

const EMPTY = { float32: Float32Array, float16: Uint16Array };

function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Generates `newTokens` after `prompt` (ids, the start token first) on the decoder session.
 * `onToken(token, index, done)` after each step; `shouldStop()` ends early.
 */
export async function generate(model, prompt, newTokens, sampler, { onToken, shouldStop } = {}) {
  const { ort } = model;
  const d = model.manifest.decoder;
  const { session: s } = await session(model, 'decoder');
  const Empty = EMPTY[d.cache_type];
  if (!Empty) throw new Error(`cache type ${d.cache_type} is not supported by this page`);
  let past = {};
  for (const name of d.past) past[name] = new ort.Tensor(d.cache_type, new Empty(0), [1, d.n_head, 0, d.head_dim]);
  let ids = prompt.slice();
  let pastLen = 0;
  const tokens = prompt.slice();
  let stepSeconds = 0;
  let steps = 0;
  for (let step = 0; step < newTokens; step++) {
    const start = performance.now();
    const seq = ids.length;
    const total = pastLen + seq;
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, seq]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: seq }, (_, i) => BigInt(pastLen + i)), [1, seq]),
      ...past,
    };
    const out = await s.run(feeds);
    const logits = out.logits;
    const vocab = logits.dims[2];
    let row = logits.data.subarray((seq - 1) * vocab, seq * vocab);
    if (logits.type === 'float16') row = Float32Array.from(row, f16ToF32);
    const t = sampler.pick(row);
    tokens.push(t);
    const next = {};
    d.past.forEach((name, i) => {
      next[name] = out[d.present[i]];
    });
    for (const name of d.past) past[name].dispose?.();
    logits.dispose?.();
    past = next;
    ids = [t];
    pastLen = total;
    steps++;
    if (step > 0) stepSeconds += (performance.now() - start) / 1e3;
    onToken?.(t, tokens.length - 1, step + 1);
    if (shouldStop?.()) break;
  }
  const tokensPerSecond = steps > 1 && stepSeconds > 0 ? (steps - 1) / stepSeconds : 0;
  return { tokens, steps, stepSeconds, tokensPerSecond };
}

/** Class probabilities of an image's tokens (no start token), best first. */
export async function classify(model, tokens, top = 5) {
  const { ort } = model;
  const entry = model.manifest.classifier;
  const { session: s } = await session(model, 'classifier');
  const n = tokens.length;
  const out = await s.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  });
  const logits = Array.from(out.logits.data, Number);
  const max = Math.max(...logits);
  const exps = logits.map((l) => Math.exp(l - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return logits
    .map((logit, id) => ({ id, label: entry.labels[id] ?? `LABEL_${id}`, logit, probability: exps[id] / sum }))
    .sort((a, b) => b.logit - a.logit || a.id - b.id)
    .slice(0, top);
}

// ---------------------------------------------------------------------------------------------
// The page

const state = { done: false, tokens: null, error: null, backend: null, tokensPerSecond: null, labels: null };

function oneLine(e) {
  return String(e && e.message ? e.message : e).split(/\s+/).join(' ').trim() || 'error';
}

function parseParams(search) {
  const q = new URLSearchParams(search);
  const num = (k, parse = Number) => {
    if (!q.has(k)) return null;
    const v = parse(q.get(k));
    if (v == null || Number.isNaN(v)) throw new Error(`URL parameter ${k}=${q.get(k)} is not a number`);
    return v;
  };
  const int = (s) => (/^\d+$/.test(s.trim()) ? Number(s) : NaN);
  const ids = q.has('prompt-ids')
    ? q.get('prompt-ids').split(',').map((s) => {
        if (!/^\d+$/.test(s.trim())) throw new Error(`URL parameter prompt-ids: ${s} is not a token id`);
        return Number(s);
      })
    : null;
  let seed = null;
  if (q.has('seed')) {
    const s = q.get('seed').trim();
    if (!/^\d+$/.test(s) || BigInt(s) > U64) throw new Error(`URL parameter seed=${s} is not a whole number below 2^64`);
    seed = s;
  }
  return {
    autorun: q.has('autorun'),
    model: q.get('model') || './',
    backend: q.get('backend'),
    threads: num('threads', int),
    greedy: q.has('greedy'),
    temperature: num('temperature'),
    topK: num('top-k', int),
    topP: num('top-p'),
    seed,
    maxNewTokens: num('max-new-tokens', int),
    promptIds: ids,
    prompt: q.get('prompt'),
    promptRows: num('prompt-rows', int),
    classify: q.get('classify'),
    generate: q.has('generate'),
  };
}

export async function main() {
  window.igpt = state;
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    error: $('error'),
    generate: $('generate'),
    stop: $('stop'),
    progress: $('progress'),
    speed: $('speed'),
    canvas: $('canvas'),
    greedy: $('greedy'),
    temperature: $('temperature'),
    topK: $('top-k'),
    topP: $('top-p'),
    seed: $('seed'),
    maxNew: $('max-new-tokens'),
    promptFile: $('prompt-file'),
    promptRows: $('prompt-rows'),
    classifyFile: $('classify-file'),
    labels: $('labels'),
    backend: $('backend'),
    ort: $('ort'),
  };
  const show = (msg) => {
    ui.error.textContent = msg;
    ui.error.hidden = !msg;
  };
  const fail = (e) => {
    state.error = oneLine(e);
    show(state.error);
    ui.status.textContent = 'stopped on an error';
  };
  let params;
  try {
    params = parseParams(location.search);
  } catch (e) {
    params = parseParams('');
    fail(e);
  }
  let model = null;
  let busy = false;
  let stopAsked = false;
  let promptImage = null; // {name, rgb}

  const base = new URL(params.model.endsWith('/') ? params.model : `${params.model}/`, location.href).href;
  const ensureModel = async () => {
    if (model) return model;
    ui.status.textContent = 'loading model.json and onnxruntime-web …';
    const m = await loadModel(base, { backend: params.backend });
    if (params.threads != null) m.ort.env.wasm.numThreads = params.threads;
    model = m;
    ui.ort.textContent = `onnxruntime-web ${m.manifest.ort.version} from ${new URL(m.manifest.ort.base, base).href}`;
    setUpCanvas();
    return model;
  };
  const setUpCanvas = () => {
    const p = model.processor;
    ui.canvas.width = p.width;
    ui.canvas.height = p.height;
    const ctx = ui.canvas.getContext('2d');
    ctx.fillStyle = '#808080';
    ctx.fillRect(0, 0, p.width, p.height);
  };
  const paint = (ctx, token, index) => {
    const p = model.processor;
    const [r, g, b] = p.colour(token);
    const px = new ImageData(new Uint8ClampedArray([r, g, b, 255]), 1, 1);
    ctx.putImageData(px, index % p.width, Math.floor(index / p.width));
  };
  state.pixels = () => {
    const { width, height } = ui.canvas;
    const rgba = ui.canvas.getContext('2d').getImageData(0, 0, width, height).data;
    return Array.from(rgba.filter((_, i) => i % 4 !== 3));
  };
  state.encodeUrl = async (url) => {
    const m = await ensureModel();
    const blob = await (await fetchOk(url, url)).blob();
    return m.processor.encode(await rgbOfBlob(blob, url));
  };

  const setBusy = (b) => {
    busy = b;
    ui.generate.disabled = b;
    ui.stop.disabled = !b;
    ui.classifyFile.disabled = b;
  };

  const readControls = () => {
    const v = (el) => (el.value.trim() === '' ? null : Number(el.value));
    return {
      greedy: ui.greedy.checked,
      temperature: v(ui.temperature),
      topK: v(ui.topK),
      topP: v(ui.topP),
      seed: ui.seed.value.trim() || '0',
      maxNewTokens: v(ui.maxNew),
      promptRows: v(ui.promptRows),
    };
  };

  const run = async (opts) => {
    if (busy) return;
    setBusy(true);
    state.done = false;
    state.error = null;
    state.tokens = null;
    show('');
    stopAsked = false;
    try {
      const m = await ensureModel();
      const p = m.processor;
      const sos = m.manifest.config.vocab_size - 1;
      let prompt = [sos];
      if (opts.promptIds) prompt = opts.promptIds;
      else if (promptImage) {
        const rows = opts.promptRows;
        if (!(Number.isInteger(rows) && rows >= 1 && rows <= p.height)) {
          throw new Error(`prompt rows must be from 1 to ${p.height}, not ${rows}`);
        }
        const ids = p.encode(promptImage.rgb);
        prompt = [sos, ...ids.slice(0, rows * p.width)];
      }
      const vocab = m.manifest.config.vocab_size;
      const bad = prompt.findIndex((id) => !(Number.isInteger(id) && id >= 0 && id < vocab));
      if (bad >= 0) throw new Error(`prompt token ${prompt[bad]} at position ${bad} is out of range [0, ${vocab})`);
      const room = m.manifest.config.n_positions + 1 - prompt.length;
      const newTokens = opts.maxNewTokens ?? room;
      if (newTokens < 1 || newTokens > room) {
        throw new Error(`${prompt.length} prompt tokens + ${newTokens} new tokens: the model has room for 1 to ${room} more`);
      }
      const seed = String(opts.seed ?? '0').trim();
      if (!/^\d+$/.test(seed) || BigInt(seed) > U64) throw new Error(`seed must be a whole number from 0 to 2^64 - 1, not ${seed}`);
      const sampler = new Sampler(strategyOf(opts, m.manifest.generation), seed);
      setUpCanvas();
      const ctx = ui.canvas.getContext('2d');
      const drawable = prompt[0] === sos;
      if (drawable) prompt.slice(1).forEach((t, i) => paint(ctx, t, i));
      ui.progress.max = newTokens;
      ui.progress.value = 0;
      ui.status.textContent = 'loading the decoder …';
      const started = performance.now();
      const out = await generate(m, prompt, newTokens, sampler, {
        onToken: (t, index, done) => {
          if (drawable && index - 1 < p.width * p.height) paint(ctx, t, index - 1);
          ui.progress.value = done;
          if (done > 1) {
            const secs = (performance.now() - started) / 1e3;
            ui.speed.textContent = `${done} / ${newTokens} tokens, ${(done / secs).toFixed(1)} tokens/s`;
          }
          ui.status.textContent = 'generating …';
        },
        shouldStop: () => stopAsked,
      });
      state.backend = m.sessions.decoder.backend;
      ui.backend.textContent = state.backend;
      state.tokensPerSecond = out.tokensPerSecond;
      ui.speed.textContent = `${out.steps} tokens, ${out.tokensPerSecond.toFixed(1)} tokens/s after the prompt`;
      ui.status.textContent = stopAsked ? 'stopped' : 'done';
      state.stopped = stopAsked;
      state.tokens = out.tokens;
      state.done = true;
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  };

  const runClassify = async (blobOrUrl, name) => {
    if (busy) return;
    setBusy(true);
    state.done = false;
    state.error = null;
    state.labels = null;
    show('');
    try {
      const m = await ensureModel();
      if (!m.manifest.classifier) throw new Error('this checkpoint has no classifier head');
      const blob = typeof blobOrUrl === 'string' ? await (await fetchOk(blobOrUrl, name)).blob() : blobOrUrl;
      const tokens = m.processor.encode(await rgbOfBlob(blob, name));
      ui.status.textContent = 'classifying …';
      const top = await classify(m, tokens);
      ui.labels.replaceChildren(
        ...top.map((t) => {
          const li = document.createElement('li');
          li.textContent = `${t.label} — ${(100 * t.probability).toFixed(1)} %`;
          return li;
        }),
      );
      state.backend = m.sessions.classifier.backend;
      ui.backend.textContent = state.backend;
      state.classifyTokens = tokens;
      state.labels = top;
      state.done = true;
      ui.status.textContent = 'done';
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  };

  const takePrompt = async (blob, name) => {
    try {
      show('');
      state.error = null;
      const rgb = await rgbOfBlob(blob, name);
      promptImage = { name, rgb };
      ui.status.textContent = `prompt: ${name} (${rgb.width}x${rgb.height})`;
    } catch (e) {
      promptImage = null;
      fail(e);
    }
  };

  ui.generate.addEventListener('click', () => run({ ...readControls(), promptIds: null }));
  ui.stop.addEventListener('click', () => {
    stopAsked = true;
  });
  ui.promptFile.addEventListener('change', () => {
    const f = ui.promptFile.files[0];
    if (f) takePrompt(f, f.name);
  });
  ui.classifyFile.addEventListener('change', () => {
    const f = ui.classifyFile.files[0];
    if (f) runClassify(f, f.name);
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (f) takePrompt(f, f.name);
  });

  // URL parameters fill the controls, then drive the page.
  if (params.greedy) ui.greedy.checked = true;
  for (const [el, v] of [
    [ui.temperature, params.temperature],
    [ui.topK, params.topK],
    [ui.topP, params.topP],
    [ui.seed, params.seed],
    [ui.maxNew, params.maxNewTokens],
    [ui.promptRows, params.promptRows],
  ]) {
    if (v != null) el.value = String(v);
  }
  setBusy(false);
  if (state.error) return;
  try {
    await ensureModel();
    ui.status.textContent = 'ready';
  } catch (e) {
    fail(e);
    return;
  }
  if (params.prompt) {
    try {
      const blob = await (await fetchOk(params.prompt, params.prompt)).blob();
      await takePrompt(blob, params.prompt);
    } catch (e) {
      fail(e);
    }
    if (state.error) return;
  }
  // `classify=URL` classifies; with `generate` too, a generation follows it.
  if (params.classify) {
    if (params.autorun) await runClassify(params.classify, params.classify);
    if (!params.generate || state.error) return;
  }
  if (params.autorun) await run({ ...readControls(), promptIds: params.promptIds });
}
