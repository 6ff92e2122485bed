// The page's sampler, ported from src/generate/sampling.rs with its seeded SplitMix64
// (src/random.rs): a seed gives the command line's tokens. No DOM: ci/web_parity.mjs runs it
// under Node against the Rust sampler's picks.

/** The largest u64: seeds are u64, as `igpt-onnx generate --seed`. */
export const U64 = (1n << 64n) - 1n;

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
