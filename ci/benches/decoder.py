"""`decoder`: the decoder benchmark in one command, against every other way to decode.

Per precision the binary offers and per batch: `igpt-onnx generate`, onnxruntime-genai on a
`package --genai` of the same weights, and the reference's `generate`, each step against its
floor (weights and cache bytes over the read bandwidth measured in the same run), so the
figures say how far from the hardware's limit a step is, not just which engine wins. Then the
causal-LM forward against the time of its matrix products alone. `_bandwidth` runs in a
child so the parent, whose size every child's peak RSS starts from, never holds its 1 GiB
array; `_genai-generate` runs in a child so its whole run and peak RSS are measured as ours.
"""

import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from . import common as bl
from .common import f2, say, table
from .generate import reference_generate


# Engines `igpt-onnx generate` steps a decoder on: the profile its decoder is exported in and
# the flags that pick it. ONNX Runtime CPU ("ours" in the tables) on the ort profile; OpenVINO
# at its own default precision (bf16 on CPUs with AVX-512 BF16 or AMX) and at f32, on the
# portable profile, which it steps faster than the ort one (its conversion of the fused
# attention costs more than it saves). Each run is its own process, rounds interleaved.
ENGINES = {
    "ort-cpu": ("ort", []),
    "openvino": ("portable", ["--runtime", "openvino"]),
    "openvino-f32": ("portable", ["--runtime", "openvino", "--openvino-precision", "f32"]),
}


def precisions_of(binary):
    """The precisions the binary offers: float32 plus every `--quantize` / `--dtype` value of its
    table (`igpt-onnx support --format json`), so a precision appears here the day the binary
    gains it. (Read from `export --help` before, which missed every value once clap moved the
    possible values onto the line after the flag.)"""
    table = json.loads(bl.run([binary, "support", "--format", "json"]).stdout)
    found = {"fp32": []}
    for p in table["precisions"]:
        if p["flags"]:
            found[p["flags"][-1]] = [str(f) for f in p["flags"]]
    return found


def process_json(log):
    """The JSON object a `--json -` run printed into its log (the summary line follows it)."""
    text = open(log).read()
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def two_thread_bandwidth_gbs(mb=1024, runs=5):
    """Read bandwidth of two threads summing halves of a 1 GiB array (numpy drops the GIL),
    best of runs: what a 2-thread ONNX Runtime session can stream at most."""
    import threading

    import numpy as np
    a = np.ones(mb * (1 << 20) // 4, dtype=np.float32)
    halves = np.array_split(a, 2)
    best = 0.0
    for _ in range(runs):
        ts = [threading.Thread(target=h.sum, kwargs={"dtype": np.float32}) for h in halves]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def graph_bytes(folder):
    """Bytes of the graph files (weights included) in an export folder."""
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if f.endswith((".onnx", ".onnx.data")))


def cmd_decoder(a):
    """The decoder benchmark in one run: per precision the binary offers (fp32 and each
    `--quantize` value) and batch, `igpt-onnx generate --greedy` (ort profile, ONNX Runtime CPU),
    onnxruntime-genai on `package --genai` of the same weights and precision, and the
    reference's `generate` (transformers, fp32), same greedy tokens compared. Per step (the
    single-token steps) and whole run (process start to last token, for ours and genai), start-up
    to the first token, tokens/s, images/min (a whole image is n_positions tokens per row, at
    this run's step time), peak RSS, and each step against its floor: weight bytes plus the
    average cache bytes read per step over the read bandwidth measured in the same run (two
    threads, as the sessions run). Then the causal-LM forward against its floor (its matrix
    products timed alone, see `forward_floor`). Rounds interleave every candidate; medians.
    Never fails on speed."""
    bl.check_modules(["numpy"] + (["onnx", "onnxruntime"] if a.forward_seq > 0 else []))
    py = None if a.no_reference else bl.torch_python(a.torch_python)
    binary = bl.igpt_bin(a.build_profile, a.bin)
    batches = [int(b) for b in a.batches.split(",")]
    offered = precisions_of(binary)
    precisions = [p for p in (a.precisions.split(",") if a.precisions else offered) if p in offered]
    # A calibrated precision (static int8) calibrates on the benchmark's default set.
    calibrated = bl.calibrated_quantizations(binary)
    for p in precisions:
        if p in calibrated:
            offered[p] = offered[p] + ["--calibration", bl.CALIBRATION]
    engines = [e for e in a.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise bl.SetupError(f"--engines: unknown {', '.join(unknown)} (expected {', '.join(ENGINES)})")
    genai = not a.no_genai
    if genai:
        bl.check_modules(["onnxruntime_genai"], "pip install -r ci/requirements.txt (onnxruntime-genai)")
    work = tempfile.mkdtemp()
    runs = collections.defaultdict(list)
    try:
        ckpt = os.path.join(work, "ckpt")
        bl.run([binary, "random-checkpoint", "--variant", a.size, "--seed", "0", "--out", ckpt])
        cfg = json.load(open(os.path.join(ckpt, "config.json")))
        ours, packs, sizes = {}, {}, {}
        profiles = sorted({ENGINES[e][0] for e in engines}, key=lambda x: x != "ort")
        for p in precisions:
            for profile in profiles:
                out = os.path.join(work, f"ours-{profile}-{p}")
                bl.run([binary, "export", "--weights", ckpt, "--head", "decoder", "--out", out,
                        "--profile", profile, *offered[p]])
                ours[profile, p] = os.path.join(out, "decoder.onnx")
                # The floor counts the bytes of the graph ONNX Runtime steps (ort profile).
                sizes.setdefault(p, graph_bytes(out))
            if genai:
                packs[p] = os.path.join(work, "genai-" + p)
                bl.run([binary, "package", "--genai", packs[p], "--weights", ckpt,
                        "--profile", "ort", *offered[p]])
        say("== read bandwidth (numpy, 1 and 2 threads)")
        # In a child: a child's peak RSS starts from its parent's at fork, so the parent never
        # holds the 1 GiB test array.
        bw1, bw2 = json.loads(bl.run([sys.executable, bl.BENCH, "_bandwidth"]).stdout)
        bw = max(bw1, bw2)
        ref = reference_generate(py, ckpt, a)
        say("== ours and onnxruntime-genai, rounds interleaved")

        def timed(key, cmd, step_key):
            """A candidate: runs cmd (it prints a JSON object), records its figures under key."""
            def go():
                log = os.path.join(work, "run.log")
                t = bl.run_timed(cmd, log=log)
                j = process_json(log)
                runs[key].append({
                    "wall_s": t["wall_s"], "rss_mb": t["max_rss_kb"] / 1024,
                    "step_ms": j[step_key] * 1e3 / max(j["steps"] - 1, 1),
                    "first_token_s": t["wall_s"] - j[step_key],
                    "load_s": j["load_seconds" if "load_seconds" in j else "load_s"],
                    "tokens": j["tokens"]})
                return t["wall_s"]
            return go

        def ours_run(p, b, engine="ort-cpu"):
            who = "ours" if engine == "ort-cpu" else engine
            profile, flags = ENGINES[engine]
            return timed((who, p, b), [binary, "generate", "--model", ours[profile, p], "--greedy",
                                       "--batch", b, "--max-new-tokens", a.new, "--json", "-",
                                       *flags], "step_seconds")

        def genai_run(p, b):
            return timed(("genai", p, b), [sys.executable, bl.BENCH, "_genai-generate", packs[p],
                                           b, a.new], "step_s")

        cands = {}
        for p in precisions:
            for b in batches:
                for e in engines:
                    cands["ours" if e == "ort-cpu" else e, p, b] = ours_run(p, b, e)
                if genai:
                    cands["genai", p, b] = genai_run(p, b)
        bl.interleaved(cands, a.repeat, on_round=lambda r, k, s: say(
            f"round {r + 1} {k[0]} {k[1]} b{k[2]}: {s:.2f} s"))
        forward = None
        if a.forward_seq > 0:
            say(f"== the causal-LM forward (b1 seq {a.forward_seq}) against its matrix products")
            forward = forward_floor(binary, ckpt, cfg, work, a.forward_seq, a.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    d, layers = cfg["n_embd"], cfg["n_layer"]
    rows = []
    for p in precisions:
        for b in batches:
            # cache bytes read per step: keys and values of every layer, average past over the run
            cache = b * layers * 2 * d * 4 * (1 + a.new / 2)
            floor_ms = (sizes[p] + cache) / (bw * 1e9) * 1e3
            tokens_ref = ref.get(b, {}).get("tokens")
            for who in ["ours", "genai"] + [e for e in engines if e != "ort-cpu"]:
                js = runs.get((who, p, b))
                if not js:
                    continue
                med = lambda k: bl.stats([j[k] for j in js])["median"]  # noqa: E731
                step = med("step_ms")
                row = {"engine": who, "precision": p, "batch": b, "step_ms": step,
                       "whole_run_s": med("wall_s"), "first_token_s": med("first_token_s"),
                       "load_s": med("load_s"), "rss_mb": med("rss_mb"),
                       "tokens_per_s": b * 1e3 / step,
                       "images_per_min": b * 60e3 / (step * cfg["n_positions"]),
                       "floor_ms": floor_ms, "x_floor": step / floor_ms,
                       "runs": [{k: v for k, v in j.items() if k != "tokens"} for j in js]}
                if tokens_ref:
                    got = js[-1]["tokens"]
                    row["greedy_vs_reference"] = [sum(x == y for g, w in zip(got, tokens_ref)
                                                      for x, y in zip(g[1:], w[1:])),
                                                  sum(len(w) - 1 for w in tokens_ref)]
                rows.append(row)
    by = {(r["engine"], r["precision"], r["batch"]): r for r in rows}
    for r in rows:
        g = by.get(("genai", r["precision"], r["batch"]))
        if r["engine"] == "ours" and g:
            r["vs_genai_step"] = g["step_ms"] / r["step_ms"]
            r["vs_genai_whole"] = g["whole_run_s"] / r["whole_run_s"]
            r["tokens_equal_genai"] = runs["ours", r["precision"], r["batch"]][-1]["tokens"] == \
                runs["genai", r["precision"], r["batch"]][-1]["tokens"]
        fp = by.get((r["engine"], "fp32", r["batch"]))
        if fp and r["precision"] != "fp32":
            # Against its own engine's float32 in the same run: what the precision buys there.
            r["fp32_step_over_this"] = fp["step_ms"] / r["step_ms"]
        b1 = by.get((r["engine"], r["precision"], 1))
        if b1:
            r["throughput_vs_b1"] = r["tokens_per_s"] / b1["tokens_per_s"]
        if r["batch"] in ref:
            r["reference_step_ms"] = ref[r["batch"]]["ms_per_step"]
            r["vs_reference"] = r["reference_step_ms"] / r["step_ms"]
    weights_s = sizes.get("fp32", 0) / (bw * 1e9)
    say()
    say(f"read bandwidth {bw1:.1f} GB/s (1 thread), {bw2:.1f} GB/s (2 threads); floor = (graph "
        f"bytes + average cache bytes) / {bw:.1f} GB/s; {a.new} new tokens from the start token; "
        f"medians of {a.repeat} interleaved rounds")
    say(bl.machine_line())
    table(["engine", "precision", "batch", "ms/step", "x floor", "floor ms", "whole run s",
           "first token s", "tokens/s", "x b1 tok/s", "images/min", "RSS MB", "vs genai step",
           "vs genai whole", "= genai", "vs reference", "greedy = ref"],
          [[r["engine"], r["precision"], r["batch"], f2(r["step_ms"]), f"{f2(r['x_floor'])}x",
            f2(r["floor_ms"]), f2(r["whole_run_s"]), f2(r["first_token_s"]),
            f"{r['tokens_per_s']:.0f}", f"{f2(r.get('throughput_vs_b1', 1))}x",
            f"{r['images_per_min']:.1f}", f"{r['rss_mb']:.0f}",
            f"{f2(r['vs_genai_step'])}x" if "vs_genai_step" in r else "-",
            f"{f2(r['vs_genai_whole'])}x" if "vs_genai_whole" in r else "-",
            ("yes" if r["tokens_equal_genai"] else "NO") if "tokens_equal_genai" in r else "-",
            f"{f2(r['vs_reference'])}x" if "vs_reference" in r else "-",
            "{}/{}".format(*r["greedy_vs_reference"]) if "greedy_vs_reference" in r else "-"]
           for r in rows])
    for b in batches:
        if b in ref:
            say(f"reference generate b{b}: {f2(ref[b]['ms_per_step'])} ms/step (prompt included)")
    speedups = [r for r in rows if "fp32_step_over_this" in r]
    if speedups:
        say("each precision's step against float32 on the same engine, same run "
            "(ours = igpt-onnx generate on ONNX Runtime CPU):")
        table(["engine", "precision", "batch", "ms/step", "fp32 ms/step", "fp32 / this"],
              [[r["engine"], r["precision"], r["batch"], f2(r["step_ms"]),
                f2(by[(r["engine"], "fp32", r["batch"])]["step_ms"]),
                f"{f2(r['fp32_step_over_this'])}x"] for r in speedups])
    fp = by.get(("ours", "fp32", 1))
    if fp:
        say(f"targets: fp32 b1 step <= 1.25x floor (got {f2(fp['x_floor'])}x); first token <= 0.5 s + "
            f"one read of the weights ({weights_s:.2f} s): got {f2(fp['first_token_s'])} s")
    for p, lim in (("int8", 1.6), ("int4", 2.0)):
        r = by.get(("ours", p, 1))
        if r:
            say(f"target: {p} b1 step <= {lim}x floor (got {f2(r['x_floor'])}x)")
    if forward:
        say(f"forward b1 seq {forward['seq']}: matrix products alone {forward['floor_s']:.3f} s "
            f"(causal ideal, half of attention's: {forward['causal_ideal_s']:.3f} s)")
        table(["graph", "forward s", "floor / forward", "causal ideal / forward"],
              [[g, f"{r['forward_s']:.3f}", f"{r['of_floor']:.0%}", f"{r['of_causal_ideal']:.0%}"]
               for g, r in forward["graphs"].items()])
    bl.write_json(a.json, {"command": "decoder", "size": a.size, "new_tokens": a.new,
                           "repeat": a.repeat, "bandwidth_gbs": {"one_thread": bw1, "two_threads": bw2},
                           "graph_bytes": sizes, "rows": rows, "forward": forward,
                           "reference": {b: {k: r[k] for k in ("ms_per_step", "runs_ms")}
                                         for b, r in ref.items()},
                           "machine": bl.machine()})


def forward_floor(binary, ckpt, cfg, work, seq, rounds):
    """The causal-LM forward (batch 1, `seq` tokens) against its floor, in ONNX Runtime with the
    benchmark's session options: the forward's matrix products, each shape timed alone as one
    MatMul graph (weights as initializers, like the forward's) and summed over the layers; the
    causal ideal counts half of the two attention products (the masked half ORT's kernels compute
    anyway). Portable and ort-profile exports of the same weights, rounds interleaved; medians."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as H

    d, layers, heads = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    inner = cfg.get("n_inner") or 4 * d
    hd = d // heads
    graphs = {}
    for profile in ("portable", "ort"):
        out = os.path.join(work, "forward-" + profile)
        bl.run([binary, "export", "--weights", ckpt, "--head", "causal-lm", "--out", out,
                "--profile", profile])
        graphs[profile] = os.path.join(out, "causal-lm.onnx")
    rng = np.random.default_rng(0)

    def matmul(name, a_shape, b_shape, b_const):
        """One MatMul graph and its inputs: B an initializer (a weight, prepacked as the
        forward's) or an input (attention's)."""
        inits, inputs = [], [H.make_tensor_value_info("a", T.FLOAT, a_shape)]
        b = rng.standard_normal(b_shape).astype(np.float32) * 0.02
        if b_const:
            inits.append(onnx.numpy_helper.from_array(b, "b"))
        else:
            inputs.append(H.make_tensor_value_info("b", T.FLOAT, b_shape))
        g = H.make_graph([H.make_node("MatMul", ["a", "b"], ["y"])], name, inputs,
                         [H.make_tensor_value_info("y", T.FLOAT, None)], inits)
        path = os.path.join(work, name + ".onnx")
        onnx.save(H.make_model(g, opset_imports=[H.make_opsetid("", 17)], ir_version=8), path)
        feeds = {"a": rng.standard_normal(a_shape).astype(np.float32)}
        if not b_const:
            feeds["b"] = b
        return path, feeds, a_shape[:-1] + b_shape[-1:]

    # (name, A shape, B shape, B a weight, how many in a forward, attention)
    products = [("qkv", [seq, d], [d, 3 * d], True, layers, False),
                ("proj", [seq, d], [d, d], True, layers, False),
                ("fc", [seq, d], [d, inner], True, layers, False),
                ("fc_proj", [seq, inner], [inner, d], True, layers, False),
                ("lm_head", [seq, d], [d, cfg["vocab_size"] - 1], True, 1, False),
                ("scores", [heads, seq, hd], [heads, hd, seq], False, layers, True),
                ("context", [heads, seq, seq], [heads, seq, hd], False, layers, True)]
    cands, count, attention = {}, {}, {}
    for name, a_shape, b_shape, const, n, att in products:
        path, feeds, y_shape = matmul(name, a_shape, b_shape, const)
        sess = bl.session(path)
        # Bound in place, inputs and output: the product alone, no copies in or out.
        io = sess.io_binding()
        for k, v in feeds.items():
            io.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))
        io.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.empty(y_shape, np.float32)))
        sess.run_with_iobinding(io)

        def product(s=sess, io=io):
            """One warm-up call, then the median of 10: a product's time in a running forward,
            not after a second of other work (cold caches, sleeping pool threads)."""
            s.run_with_iobinding(io)
            ts = []
            for _ in range(10):
                t = time.perf_counter()
                s.run_with_iobinding(io)
                ts.append(time.perf_counter() - t)
            return statistics.median(ts)
        cands["mm " + name] = product
        count["mm " + name], attention["mm " + name] = n, att
    ids = rng.integers(0, cfg["vocab_size"] - 1, (1, seq), dtype=np.int64)
    ids[:, 0] = cfg["vocab_size"] - 1  # the start token
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    for profile, path in graphs.items():
        sess = bl.session(path)
        sess.run(["logits"], feeds)
        cands[profile] = lambda s=sess: s.run(["logits"], feeds) and None
    times = bl.interleaved(cands, rounds)
    med = {k: bl.stats(v)["median"] for k, v in times.items()}
    floor = sum(med[k] * count[k] for k in count)
    ideal = sum(med[k] * count[k] * (0.5 if attention[k] else 1.0) for k in count)
    return {"batch": 1, "seq": seq, "rounds": rounds, "floor_s": floor, "causal_ideal_s": ideal,
            "products_s": {k[3:]: med[k] for k in count},
            "graphs": {p: {"forward_s": med[p], "of_floor": floor / med[p],
                           "of_causal_ideal": ideal / med[p]} for p in graphs}}


def cmd_bandwidth(a):
    """(project python) [one thread, two threads] read bandwidth in GB/s, as JSON."""
    print(json.dumps([bl.read_bandwidth_gbs(), two_thread_bandwidth_gbs()]))


def cmd_genai_generate(a):
    """(project python) onnxruntime-genai greedy generation from the start token, timed: prints
    one JSON object (load seconds, seconds of the single-token steps, steps, tokens)."""
    import numpy as np
    import onnxruntime_genai as og

    t = time.perf_counter()
    model = og.Model(a.model)
    load = time.perf_counter() - t
    cfg = json.load(open(os.path.join(a.model, "genai_config.json")))
    sos = cfg["model"]["vocab_size"] - 1
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=1 + a.new, batch_size=a.batch)
    gen = og.Generator(model, params)
    gen.append_tokens(np.full((a.batch, 1), sos, dtype=np.int32))
    gen.generate_next_token()  # the prompt pass and the first token
    steps, t = 1, time.perf_counter()
    while not gen.is_done():
        gen.generate_next_token()
        steps += 1
    step = time.perf_counter() - t
    tokens = [[int(x) for x in gen.get_sequence(i)] for i in range(a.batch)]
    print(json.dumps({"load_s": load, "step_s": step, "steps": steps, "tokens": tokens}))
