#!/usr/bin/env node
// The web page's JavaScript ports against the Rust code they port, under Node: no browser.
//
//   node ci/web_parity.mjs DIR
//
// DIR/vectors.json is what tests/it/web_parity.rs writes from the library: the sampler's picks
// (src/generate/sampling.rs), the resampler's bytes (src/image/resample.rs), the processor's
// tokens and colours (src/image/processor.rs) and the PNG reader's RGB bytes (src/image/load.rs).
// The page's modules are imported straight from src/package/web/, as `package --web` embeds
// them, and give the same things here. Each family is compared exactly and gets one line:
//
//   <family>: <n> <items> checked, <m> differ[; first: <where>: page <x>, rust <y>]
//
// The exit status is 1 when anything differs, 2 when the vectors cannot be read.

import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { rgbOfBlob } from '../src/package/web/png.mjs';
import { ImageProcessor } from '../src/package/web/processor.mjs';
import { resize } from '../src/package/web/resample.mjs';
import { Sampler, strategyOf } from '../src/package/web/sampler.mjs';

const hex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

// The first index where two byte arrays differ, or -1.
function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** One family's tally: items checked, how many differ, and the first that did. */
class Tally {
  constructor(name, unit) {
    this.name = name;
    this.unit = unit;
    this.checked = 0;
    this.differ = 0;
    this.first = null;
  }
  check(same, where) {
    this.checked++;
    if (same) return;
    this.differ++;
    // Built only on a mismatch: the description can be costly.
    if (this.first == null) this.first = where();
  }
  line() {
    const first = this.first == null ? '' : `; first: ${this.first}`;
    return `${this.name}: ${this.checked} ${this.unit} checked, ${this.differ} differ${first}`;
  }
}

// Logits travel as float32 bit patterns, so NaN, ±Infinity and -0 arrive exactly.
const float32s = (bits) => new Float32Array(Uint32Array.from(bits).buffer);

function samplerFamily(cases) {
  const t = new Tally('sampler', 'picks');
  cases.forEach((c, ci) => {
    let sampler;
    try {
      sampler = new Sampler(strategyOf(c.asked, null), c.seed);
    } catch (e) {
      c.tokens.forEach((want, step) => t.check(false, () => `case ${ci} step ${step}: page threw ${e.message}, rust ${want}`));
      return;
    }
    c.logits.forEach((row, step) => {
      const got = sampler.pick(float32s(row));
      const want = c.tokens[step];
      t.check(got === want, () => `case ${ci} (${JSON.stringify(c.asked)}, seed ${c.seed}) step ${step}: page ${got}, rust ${want}`);
    });
  });
  return t;
}

function resampleFamily(cases) {
  const t = new Tally('resample', 'images');
  for (const c of cases) {
    const src = { width: c.width, height: c.height, data: hex(c.data) };
    const want = hex(c.expected);
    const got = resize(src, c.out_width, c.out_height, c.filter);
    const what = `${c.width}x${c.height} -> ${c.out_width}x${c.out_height}, filter ${c.filter}`;
    const sized = got.width === c.out_width && got.height === c.out_height;
    const at = sized ? firstDiff(got.data, want) : 0;
    t.check(sized && at < 0, () =>
      sized ? `${what}: byte ${at}: page ${got.data[at]}, rust ${want[at]}` : `${what}: page ${got.width}x${got.height}`,
    );
  }
  return t;
}

function processorFamilies(v) {
  const processors = v.tables.map((tables) => new ImageProcessor(tables));
  const tokens = new Tally('processor', 'tokens');
  v.processor.forEach((c, ci) => {
    const got = processors[c.tables].encode({ width: c.width, height: c.height, data: hex(c.data) });
    const what = `image ${ci} (${c.width}x${c.height}, tables ${c.tables})`;
    if (got.length !== c.tokens.length) {
      tokens.check(false, () => `${what}: page ${got.length} tokens, rust ${c.tokens.length}`);
      return;
    }
    c.tokens.forEach((want, i) => tokens.check(got[i] === want, () => `${what} token ${i}: page ${got[i]}, rust ${want}`));
  });
  const colours = new Tally('colours', 'tokens');
  for (const c of v.colours) {
    const want = hex(c.rgb);
    c.tokens.forEach((token, i) => {
      const got = Array.from(processors[c.tables].colour(token));
      const rust = Array.from(want.subarray(i * 3, i * 3 + 3));
      colours.check(got.join() === rust.join(), () => `tables ${c.tables} token ${token}: page ${got}, rust ${rust}`);
    });
  }
  return [tokens, colours];
}

async function pngFamily(files) {
  const t = new Tally('png', 'files');
  for (const f of files) {
    const name = path.basename(f.file);
    let got;
    try {
      got = await rgbOfBlob(new Blob([await readFile(f.file)]), name);
    } catch (e) {
      got = { error: e.message };
    }
    if (f.refused != null) {
      // Both must refuse; the messages are each side's own.
      t.check(got.error != null, () => `${name}: page decoded ${got.width}x${got.height}, rust refused (${f.refused})`);
      continue;
    }
    if (got.error != null) {
      t.check(false, () => `${name}: page refused (${got.error}), rust decoded ${f.width}x${f.height}`);
      continue;
    }
    const want = hex(f.data);
    const sized = got.width === f.width && got.height === f.height;
    const at = sized ? firstDiff(got.data, want) : 0;
    t.check(sized && at < 0, () =>
      sized
        ? `${name}: byte ${at} (pixel ${Math.floor(at / 3)}): page ${got.data[at]}, rust ${want[at]}`
        : `${name}: page ${got.width}x${got.height}, rust ${f.width}x${f.height}`,
    );
  }
  return t;
}

async function main() {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node ci/web_parity.mjs DIR (DIR/vectors.json from tests/it/web_parity.rs)');
    return 2;
  }
  let v;
  try {
    v = JSON.parse(await readFile(path.join(dir, 'vectors.json'), 'utf8'));
  } catch (e) {
    console.error(`cannot read ${path.join(dir, 'vectors.json')}: ${e.message}`);
    return 2;
  }
  const started = performance.now();
  const tallies = [samplerFamily(v.sampler), resampleFamily(v.resample), ...processorFamilies(v), await pngFamily(v.png)];
  for (const t of tallies) console.log(t.line());
  console.log(`web parity: ${((performance.now() - started) / 1e3).toFixed(2)} s in node ${process.version}`);
  return tallies.some((t) => t.differ > 0) ? 1 : 0;
}

process.exitCode = await main();
