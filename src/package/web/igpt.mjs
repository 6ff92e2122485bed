// igpt-onnx's web page: ImageGPT generation and classification in the browser with
// onnxruntime-web. ES modules, no build step, written by `igpt-onnx package --web` beside
// `index.html`, `model.json` (the manifest), `processor.json` and the graphs. This one is the
// page (its controls, URL parameters and `window.igpt`); the others, which touch no DOM when
// imported, hold what must give the command line's tokens, ported from its Rust sources:
// - sampler.mjs: the sampler and its seeded SplitMix64 (src/generate/sampling.rs);
// - resample.mjs and processor.mjs: the image processor, Pillow 13's convolution resampler
//   (src/image/resample.rs) and the nearest-cluster mapping (src/image/processor.rs);
// - png.mjs: image files to RGB as Pillow reads them (src/image/load.rs);
// - session.mjs: onnxruntime-web and the decoding loop (src/generate/session.rs).

import { rgbOfBlob } from './png.mjs';
import { Sampler, U64, strategyOf } from './sampler.mjs';
import { classify, fetchOk, generate, loadModel } from './session.mjs';

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
