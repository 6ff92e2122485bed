// The image processor, ported from src/image/processor.rs: an RGB image to tokens (resize, the
// byte → model-space table, the nearest colour cluster in numpy's float32 / float64 order) and
// a token back to its colour. The tables come from `processor.json` (`Processor::tables`). No
// DOM: ci/web_parity.mjs runs it under Node against the Rust processor's tokens and colours.

import { resize } from './resample.mjs';

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
