"""Forward benchmark in ONNX Runtime: every graph gets the same session options (intra-op
threads 2, graph optimisation ALL, CPU provider) and the same seeded inputs; runs are
interleaved round by round so the load of a shared machine falls on all graphs alike.
Prints the median and min per graph, the ratio against the peer, and each graph's accuracy
against the peer's logits (max abs, cosine, argmax agreement, mean KL of the next-token
distributions).

    .venv/bin/python ci/bench_forward.py --batch 1 --seq 1024 --rounds 5 --peer torch \\
        portable=out/portable/causal-lm.onnx ort=out/ort/causal-lm.onnx torch=torch.onnx
"""

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from ortbench import accuracy, session


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", required=True, help="label of the graph ratios are against")
    ap.add_argument("--external", action="append", default=[],
                    help="label=median seconds measured outside (tract), shown with its ratio")
    ap.add_argument("graphs", nargs="+", help="label=path")
    a = ap.parse_args()
    graphs = dict(g.split("=", 1) for g in a.graphs)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 512, (a.batch, a.seq), dtype=np.int64)
    ids[:, 0] = 512  # SOS
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    sessions = {k: session(p, a.threads) for k, p in graphs.items()}
    logits = {k: s.run(["logits"], feeds)[0] for k, s in sessions.items()}  # warm-up
    times = {k: [] for k in graphs}
    for _ in range(a.rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(["logits"], feeds)
            times[k].append(time.perf_counter() - t)
    peer = statistics.median(times[a.peer])
    print(f"forward b{a.batch} seq {a.seq}, {a.rounds} interleaved rounds, ORT {ort.__version__}, "
          f"{a.threads} intra-op threads")
    print(f"{'graph':<12} {'median s':>9} {'min s':>7} {'x peer':>7}  "
          f"{'max abs':>8} {'cosine':>9} {'argmax':>7} {'KL':>9}   (accuracy vs {a.peer})")
    for k in graphs:
        med = statistics.median(times[k])
        mx, cos, agree, kl = accuracy(logits[k], logits[a.peer])
        print(f"{k:<12} {med:>9.3f} {min(times[k]):>7.3f} {peer / med:>6.2f}x  "
              f"{mx:>8.2e} {cos:>9.6f} {agree:>6.1%} {kl:>9.2e}")
    for label, sec in (e.split("=", 1) for e in a.external):
        print(f"{label:<12} {float(sec):>9.3f} {'':>7} {peer / float(sec):>6.2f}x  (own runs)")


if __name__ == "__main__":
    main()
