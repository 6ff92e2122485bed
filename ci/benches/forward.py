"""`forward` and `profile`: the full causal-LM forward, ours against torch.onnx.export's.

`forward` exports one random small-size checkpoint in every profile and precision the binary
offers and with torch.onnx.export, runs them all in ONNX Runtime with the same session options
and inputs (rounds interleaved), plus tract on the portable graph, and compares each graph's
speed and logits with the peer's: torch.onnx.export is what users would otherwise export
with. `profile` says where a forward's time goes, per op type, from ONNX Runtime's own
profiler.
"""

import collections
import json
import os
import shutil
import tempfile
import time

from . import common as bl
from .common import ROOT, f2, say, table, variant_dir


# --- forward ------------------------------------------------------------------------------------


# The portable graph exported as the whole attention square (`--query-block 0`).
SQUARE = "portable (square)"


def cmd_forward(a):
    """Forward benchmark table, in one run on this machine: a random small-size checkpoint
    exported as the portable graph, the ort profile, the ort profile with int8 weights, and the
    `torch.onnx.export` graph of the same weights (made in the fixtures environment) — all in
    ONNX Runtime with the same session options (CPU provider, intra-op threads 2, graph
    optimisation ALL) and the same seeded inputs, rounds interleaved across graphs so the load
    of a shared machine falls on all alike, medians and minimums — plus tract on the portable
    graph (ci/forward_bench.rs: tract has no Python binding here), the export times, and
    each graph's accuracy against the peer's logits (max abs, cosine, argmax agreement, mean KL
    of the next-token distributions). Ratios against the peer are computed here, in this run."""
    bl.check_modules(["numpy", "onnxruntime"])
    import numpy as np
    import onnxruntime as ort

    py = None if a.no_torch else bl.torch_python(a.torch_python)
    binary = bl.igpt_bin(a.build_profile, a.bin)
    peer = "torch" if py else "portable"
    tract_bench = None
    if a.tract_rounds > 0:
        say(f"== cargo build ({a.build_profile}: forward_bench)")
        bl.cargo_build(a.build_profile, "--example", "forward_bench")
        tract_bench = os.path.join(os.path.dirname(binary) if not a.bin else
                                   bl.cargo_out_dir(a.build_profile), "examples", "forward_bench")
    ckpt, _ = bl.random_checkpoint(binary, a.bench_dir, a.size, 12)
    work = tempfile.mkdtemp(prefix="forward.", dir=a.bench_dir)
    result = {"command": "forward", "size": a.size, "rounds": a.rounds, "threads": a.threads,
              "onnxruntime": ort.__version__, "peer": peer, "export_s": {}, "shapes": []}
    try:
        say(f"== export ({a.size}, causal-lm head)")
        graphs = {}
        exports = bl.variants(binary)
        # The float32 forwards before query blocks: the whole attention square.
        for profile in ("portable", "ort"):
            exports[f"{profile} (square)"] = exports[profile] + ["--query-block", "0"]
        for v, flags in exports.items():
            out = os.path.join(work, variant_dir(v))
            r = bl.run_timed([binary, "export", "--weights", ckpt, "--head", "causal-lm",
                              "--out", out, *flags])
            result["export_s"][v] = r["wall_s"]
            graphs[v] = os.path.join(out, "causal-lm.onnx")
        if py:
            graphs["torch"] = os.path.join(work, "torch", "causal-lm.onnx")
            os.makedirs(os.path.dirname(graphs["torch"]))
            p = bl.run([py, os.path.join(ROOT, "ci", "torch_export.py"), ckpt, graphs["torch"]])
            result["export_s"]["torch.onnx.export"] = float(p.stdout.split()[-1])
        table(["export", "s"], [[("igpt-onnx " + k) if k in exports else k, f2(s)]
                                for k, s in result["export_s"].items()])
        say("(torch.onnx.export: from loading the model to the written file; ours: the whole command)")
        sessions = {k: bl.session(p, a.threads) for k, p in graphs.items()}
        for batch, seq in ((1, a.seq), (8, a.b8_seq)):
            shape = {"batch": batch, "seq": seq}
            if tract_bench:
                say()
                say(f"== tract, portable graph in query blocks and as the square, b{batch} seq "
                    f"{seq} ({a.tract_rounds} rounds each, alternating, each in its own process, "
                    f"run before the table)")
                tract = {"tract": [], "tract (square)": []}
                for _ in range(a.tract_rounds):
                    for label, g in (("tract", graphs["portable"]), ("tract (square)", graphs[SQUARE])):
                        t0 = time.perf_counter()
                        p = bl.run([tract_bench, g, "tract", batch, seq, 1])
                        wall = time.perf_counter() - t0
                        f = p.stdout.split()  # median_s <s> min_s <s> rounds <n>
                        tract[label].append({"forward_s": float(f[1]), "process_s": wall})
                for label, runs in tract.items():
                    fw = bl.stats([x["forward_s"] for x in runs])
                    shape[label] = {"median": fw["median"], "min": fw["min"], "n": len(runs),
                                    "process_s": bl.stats([x["process_s"] for x in runs])}
                    say(f"{label}: forward median {fw['median']:.3f} s, whole process (load, "
                        f"optimise, warm-up, forward) median "
                        f"{shape[label]['process_s']['median']:.1f} s")
            rng = np.random.default_rng(0)
            ids = rng.integers(0, 512, (batch, seq), dtype=np.int64)
            ids[:, 0] = 512  # SOS
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            logits = {k: s.run(["logits"], feeds)[0] for k, s in sessions.items()}  # warm-up
            times = bl.interleaved({k: (lambda s=s: s.run(["logits"], feeds) and None)
                                    for k, s in sessions.items()}, a.rounds)
            pm = bl.stats(times[peer])["median"]
            say()
            say(f"== ONNX Runtime {ort.__version__}, forward b{batch} seq {seq}, {a.rounds} "
                f"interleaved rounds, {a.threads} intra-op threads")
            rows = []
            shape["graphs"] = {}
            for k in graphs:
                st = bl.stats(times[k])
                acc = bl.accuracy(logits[k], logits[peer])
                shape["graphs"][k] = {"seconds": st, "x_peer": pm / st["median"], "accuracy": acc}
                rows.append([k, f"{st['median']:.3f}", f"{st['min']:.3f}", f"{f2(pm / st['median'])}x",
                             f"{acc['max_abs']:.2e}", f"{acc['cosine']:.6f}",
                             f"{acc['argmax']:.1%}", f"{acc['kl']:.2e}"])
            for label in ("tract", "tract (square)"):
                if label not in shape:
                    continue
                t = shape[label]["median"]
                shape[label]["x_peer"] = pm / t
                rows.append([label, f"{t:.3f}", f"{shape[label]['min']:.3f}",
                             f"{f2(pm / t)}x", "(own runs)", "", "", ""])
            table(["graph", "median s", "min s", f"x {peer}", "max abs", "cosine", "argmax",
                   "KL"], rows)
            med = {k: v["seconds"]["median"] for k, v in shape["graphs"].items()}
            blocked = {f"{p} (ONNX Runtime)": med[p] / med[f"{p} (square)"]
                       for p in ("portable", "ort")}
            if "tract" in shape:
                blocked["portable (tract)"] = shape["tract"]["median"] / shape["tract (square)"]["median"]
            shape["query_blocks_x_square"] = blocked
            say("query blocks over the square (time ratio, at most 0.85 wanted at b1 seq 1024): " +
                ", ".join(f"{k} {v:.2f}" for k, v in blocked.items()))
            result["shapes"].append(shape)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say()
    say(bl.machine_line())
    result["machine"] = bl.machine()
    bl.write_json(a.json, result)


# --- profile ------------------------------------------------------------------------------------


def cmd_profile(a):
    """Where a forward's time goes: ONNX Runtime's own profiler over `--runs` forwards of each
    graph (the same session options as `forward`), kernel time summed per op type. Without
    graphs: the portable and ort exports of the random small-size checkpoint `forward` uses."""
    bl.check_modules(["numpy", "onnxruntime"])
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        graphs = dict(g.split("=", 1) for g in a.graphs)
        if not graphs:
            binary = bl.igpt_bin(a.build_profile, a.bin)
            ckpt, _ = bl.random_checkpoint(binary, a.bench_dir, a.size, 12)
            flags = bl.variants(binary)
            for v in ("portable", "ort"):
                out = os.path.join(tmp, v)
                bl.run([binary, "export", "--weights", ckpt, "--head", "causal-lm", "--out", out,
                        *flags[v]])
                graphs[v] = os.path.join(out, "causal-lm.onnx")
        ids = np.random.default_rng(0).integers(0, 512, (a.batch, a.seq))
        ids[:, 0] = 512
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        result = {"command": "profile", "batch": a.batch, "seq": a.seq, "runs": a.runs, "graphs": {}}
        for label, path in graphs.items():
            s = bl.session(path, a.threads, profile_prefix=os.path.join(tmp, label.replace(" ", "-")))
            for _ in range(a.runs):
                s.run(["logits"], feeds)
            per_op = collections.Counter()
            for e in json.load(open(s.end_profiling())):
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per_op[e["args"]["op_name"]] += e["dur"]
            runs = a.runs * 1e6  # microseconds per run -> seconds
            total = sum(per_op.values()) / runs
            result["graphs"][label] = {"kernel_s": total,
                                       "per_op_s": {k: v / runs for k, v in per_op.most_common()}}
            top = ", ".join(f"{k} {v / runs:.3f}" for k, v in per_op.most_common(8))
            say(f"{label}: {total:.3f} s of kernels per run: {top}")
    bl.write_json(a.json, result)
