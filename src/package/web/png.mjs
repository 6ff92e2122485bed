// Image files to RGB bytes as the command line reads them (src/image/load.rs, Pillow's
// `open(f).convert("RGB")`): PNGs decoded here, other formats by the browser with its EXIF turn
// undone. Only `rgbOfBlob`'s non-PNG path needs a browser (`createImageBitmap`,
// `OffscreenCanvas`); ci/web_parity.mjs runs the PNG decoder under Node against the Rust one.

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
