"""Decoder step timing in ONNX Runtime, for choosing among decoder graphs (int8 block sizes,
accuracy levels, attention forms): each graph prefills `--past` tokens, then takes `--steps`
greedy steps with its presents fed back; rounds are interleaved across graphs. Prints the
median ms per step and, against `--ref`, the greedy-token agreement and the mean KL of the
next-token distributions. Every graph is fed the reference's greedy tokens, so each step is
compared on the same prefix.

    .venv/bin/python ci/bench_step.py --batch 1 --past 512 --steps 32 --ref f32 \\
        f32=out/ort/decoder.onnx int8=out/int8/decoder.onnx
"""

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from ortbench import kl, session


class Decoder:
    def __init__(self, path, threads):
        self.s = session(path, threads)
        self.past = [i for i in self.s.get_inputs() if i.name.startswith("past_key_values.")]
        self.names = [o.name for o in self.s.get_outputs()]

    def start(self, b):
        self.cache = {i.name: np.zeros((b, i.shape[1], 0, i.shape[3]), np.float32) for i in self.past}
        self.length = 0

    def step(self, ids):
        b, n = ids.shape
        feeds = {
            "input_ids": ids,
            "attention_mask": np.ones((b, self.length + n), np.int64),
            "position_ids": np.arange(self.length, self.length + n, dtype=np.int64)[None].repeat(b, 0),
            **self.cache,
        }
        out = dict(zip(self.names, self.s.run(self.names, feeds)))
        self.cache = {k: out[k.replace("past_key_values", "present")] for k in self.cache}
        self.length += n
        return out["logits"][:, -1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--past", type=int, default=512)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref", required=True)
    ap.add_argument("graphs", nargs="+", help="label=path")
    a = ap.parse_args()
    decs = {k: Decoder(p, a.threads) for k, p in (g.split("=", 1) for g in a.graphs)}
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 512, (a.batch, a.past), dtype=np.int64)
    prompt[:, 0] = 512
    # The reference's greedy path: every graph is then fed the same tokens.
    ref = decs[a.ref]
    ref.start(a.batch)
    logits = [ref.step(prompt)]
    path = []
    for _ in range(a.steps):
        path.append(logits[-1].argmax(-1)[:, None].astype(np.int64))
        logits.append(ref.step(path[-1]))
    times = {k: [] for k in decs}
    agree = {}
    for r in range(a.rounds):
        for k, d in decs.items():
            d.start(a.batch)
            ours = [d.step(prompt)]
            t = time.perf_counter()
            for tok in path:
                ours.append(d.step(tok))
            times[k].append((time.perf_counter() - t) / a.steps * 1e3)
            if r == 0:
                o, e = np.stack(ours), np.stack(logits)
                agree[k] = (float((o.argmax(-1) == e.argmax(-1)).mean()), kl(e, o))
    print(f"decoder step b{a.batch} past {a.past}, {a.steps} steps x {a.rounds} interleaved rounds, "
          f"ORT {ort.__version__}, {a.threads} intra-op threads")
    base = statistics.median(times[a.ref])
    for k in decs:
        med = statistics.median(times[k])
        print(f"{k:<14} {med:>8.2f} ms/step  min {min(times[k]):>7.2f}  {base / med:>5.2f}x {a.ref}  "
              f"greedy agreement {agree[k][0]:.1%}  KL {agree[k][1]:.2e}")


if __name__ == "__main__":
    main()
