"""Where a forward's time goes: ONNX Runtime's own profiler over `--runs` forwards of each
graph (same session options as ci/bench_forward.py), kernel time summed per op type.

    .venv/bin/python ci/profile_ops.py --seq 1024 portable=out/p/causal-lm.onnx ort=out/o/causal-lm.onnx
"""

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("graphs", nargs="+", help="label=path")
    a = ap.parse_args()
    ids = np.random.default_rng(0).integers(0, 512, (a.batch, a.seq))
    ids[:, 0] = 512
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (g.split("=", 1) for g in a.graphs):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 2
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, label)
            s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            for _ in range(a.runs):
                s.run(["logits"], feeds)
            per_op = collections.Counter()
            for e in json.load(open(s.end_profiling())):
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_op[e["args"]["op_name"]] += e["dur"]
            runs = a.runs * 1e6  # microseconds per run -> seconds
            top = ", ".join(f"{k} {v / runs:.3f}" for k, v in per_op.most_common(8))
            print(f"{label}: {sum(per_op.values()) / runs:.3f} s of kernels per run: {top}")


if __name__ == "__main__":
    main()
