// The model in onnxruntime-web: the manifest and processor tables, the sessions (WebGPU where
// the browser has it, else WebAssembly), the decoding loop (src/generate/session.rs: the prompt
// in one pass, then one token per step, positions continuing from the past, the cache fed back)
// and the classifier.

import { ImageProcessor } from './processor.mjs';

/** `fetch` that fails with one line naming `what` and the URL. */
export async function fetchOk(url, what) {
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
