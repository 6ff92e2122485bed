#!/usr/bin/env python3
"""The benchmarks, in one driver. Each subcommand prints a text table and, with `--json FILE`
(`-`: stdout, the tables then go to stderr), writes its figures as JSON. Benchmarks print
figures and ratios; they never fail on speed. Run with the project interpreter (./ci/setup.sh
makes .venv: onnxruntime, onnx, numpy); the parts that need the reference (torch,
transformers) run in the fixtures environment (bash fixtures/setup.sh; --torch-python PATH or
TORCH_PY for another).

  .venv/bin/python ci/bench.py export      # export wall time / peak RSS, sizes small medium large
  .venv/bin/python ci/bench.py verify      # the golden suite's wall time
  .venv/bin/python ci/bench.py generate    # decoder ms/step against the reference's generate
  .venv/bin/python ci/bench.py forward     # forward table: our graphs vs torch.onnx.export's
  .venv/bin/python ci/bench.py image       # encode 1,000 PNGs against the reference processor
  .venv/bin/python ci/bench.py attention   # attention forms a profile could emit, per layer
  .venv/bin/python ci/bench.py accuracy    # each profile/precision against the goldens and on the trained model
  .venv/bin/python ci/bench.py trained     # each precision on the trained model's held-out set
  .venv/bin/python ci/bench.py steps       # decoder step ms per precision, block size, level
  .venv/bin/python ci/bench.py profile     # ONNX Runtime's profiler: kernel time per op type

`ci/bench.py SUBCOMMAND --help` lists each one's options and defaults.
"""

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib as bl
from benchlib import say, table

ROOT = bl.ROOT
FIXTURES = os.path.join(ROOT, "fixtures")
VARIANTS = {  # the profile and precision flags of each exported variant
    "portable": ["--profile", "portable"],
    "ort": ["--profile", "ort"],
    "ort int8": ["--profile", "ort", "--quantize", "int8"],
    "portable fp16": ["--profile", "portable", "--dtype", "fp16"],
    "ort fp16": ["--profile", "ort", "--dtype", "fp16"],
    "ort int4": ["--profile", "ort", "--quantize", "int4"],
}


def variant_dir(v):
    return v.replace(" ", "-")


def f2(x):
    return f"{x:.2f}"


def mb(kb):
    return round(kb / 1024)


# --- export -------------------------------------------------------------------------------------

# Quoted, not re-measured (torch is not installed for this benchmark): torch.onnx.export on the
# project's 2-core machine. (wall s, peak RSS GB).
TORCH_EXPORT_QUOTED = {"small": (17, 4), "medium": (43, 12.7)}
# Targets, printed as ratios: wall seconds for small/medium, peak RSS (GB) for large.
EXPORT_TARGET_S = {"small": 2, "medium": 8}
LARGE_RSS_GB = 2


def cmd_export(a):
    """Method: each export runs RUNS times into a fresh output folder that is deleted afterwards;
    each is followed by a `cp` of the checkpoint's model.safetensors into a fresh folder on the
    same disk (the disk-speed floor). Nothing is dropped from the page cache (no root needed):
    the checkpoint is read warm after the first run, and neither the export nor cp fsyncs, so
    both times end when the data is in the page cache (the kernel's dirty-page limits can still
    throttle the larger writes). Wall time, peak RSS and user/sys CPU come from wait4(2)."""
    binary = bl.igpt_bin(a.build_profile, a.bin)
    os.makedirs(a.bench_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run.", dir=a.bench_dir)
    result = {"command": "export", "runs": a.runs, "rows": [], "bin_rows": [], "notes": []}
    rows, notes = [], []
    try:
        for size in a.sizes.split():
            ckpt, made = bl.random_checkpoint(binary, a.bench_dir, size, 0)
            if made:
                say(f"== {size}: wrote random checkpoint {ckpt}: {f2(made['wall_s'])} s, "
                    f"peak RSS {mb(made['max_rss_kb'])} MB")
            else:
                say(f"== {size}: reusing cached checkpoint {ckpt}")
            src = os.path.join(ckpt, "model.safetensors")
            gb = os.path.getsize(src) / 1e9
            for head in ["causal-lm"] + (["all"] if size == "small" else []):
                ex, cp = [], []
                out_bytes = 0
                for i in range(a.runs):
                    out = os.path.join(work, f"out-{size}-{head}")
                    shutil.rmtree(out, ignore_errors=True)
                    ex.append(bl.run_timed([binary, "export", "--weights", ckpt, "--head", head,
                                            "--out", out], log=os.path.join(work, "last.log")))
                    out_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
                    if size == "large" and head == "causal-lm" and i == 0:
                        data = os.path.join(out, "causal-lm.onnx.data")
                        if os.path.exists(data):
                            notes.append(
                                f"large: external data used: causal-lm.onnx "
                                f"{os.path.getsize(os.path.join(out, 'causal-lm.onnx'))} B + "
                                f"causal-lm.onnx.data {os.path.getsize(data)} B "
                                f"({os.path.getsize(data) / 1e9:.2f} GB)")
                        else:
                            notes.append(f"large: no causal-lm.onnx.data written (files: "
                                         f"{' '.join(sorted(os.listdir(out)))})")
                    shutil.rmtree(out, ignore_errors=True)
                    cpo = os.path.join(work, f"cp-{size}")
                    shutil.rmtree(cpo, ignore_errors=True)
                    os.makedirs(cpo)
                    cp.append(bl.run_timed(["cp", src, os.path.join(cpo, "model.safetensors")]))
                    shutil.rmtree(cpo, ignore_errors=True)
                    e, c = ex[-1], cp[-1]
                    say(f"   {size} --head {head} run {i + 1}: export {f2(e['wall_s'])} s (user "
                        f"{f2(e['user_s'])}, sys {f2(e['sys_s'])}), {mb(e['max_rss_kb'])} MB; "
                        f"cp {f2(c['wall_s'])} s (user {f2(c['user_s'])}, sys {f2(c['sys_s'])})")
                wall = bl.stats([r["wall_s"] for r in ex])
                rss = bl.stats([r["max_rss_kb"] for r in ex])
                cpw = bl.stats([r["wall_s"] for r in cp])
                row = {"size": size, "head": head, "ckpt_gb": gb, "out_gb": out_bytes / 1e9,
                       "wall_s": wall, "gb_per_s": bl.ratio(gb, wall["median"]),
                       "rss_mb_max": mb(rss["max"]), "rss_mb_median": mb(rss["median"]),
                       "cp_s": cpw, "export_over_cp": bl.ratio(wall["median"], cpw["median"])}
                if size in EXPORT_TARGET_S:
                    t = EXPORT_TARGET_S[size]
                    row["target"] = f"<= {t} s"
                    row["of_target"] = wall["median"] / t
                elif size == "large":
                    row["target"] = f"RSS <= {LARGE_RSS_GB} GB"
                    row["of_target"] = rss["max"] * 1024 / (LARGE_RSS_GB * 1e9)
                if size in TORCH_EXPORT_QUOTED:
                    tw, tr = TORCH_EXPORT_QUOTED[size]
                    row["vs_torch_quoted"] = {"faster": tw / wall["median"],
                                              "less_rss": tr * 1e9 / (rss["max"] * 1024)}
                result["rows"].append(row)
                rows.append(row)
        say()
        say(f"== export benchmark ({a.runs} runs each; page cache warm, not dropped; no fsync "
            f"in export or cp)")
        table(["size", "head", "ckpt_GB", "out_GB", "wall_s med/min", "GB/s", "rss_MB",
               "rss_medMB", "cp_s med/min", "exp/cp", "target", "x target",
               "vs torch.onnx.export (quoted)"],
              [[r["size"], r["head"], f2(r["ckpt_gb"]), f2(r["out_gb"]),
                f"{f2(r['wall_s']['median'])} / {f2(r['wall_s']['min'])}", f2(r["gb_per_s"]),
                r["rss_mb_max"], r["rss_mb_median"],
                f"{f2(r['cp_s']['median'])} / {f2(r['cp_s']['min'])}",
                f"{f2(r['export_over_cp'])}x", r.get("target", "-"),
                f"{f2(r['of_target'])}x" if "of_target" in r else "-",
                (f"{r['vs_torch_quoted']['faster']:.0f}x faster, "
                 f"{r['vs_torch_quoted']['less_rss']:.0f}x less RSS")
                if "vs_torch_quoted" in r else "-"] for r in rows])
        say()
        say("ckpt_GB: model.safetensors; out_GB: all files one export writes. GB = 1e9 bytes; "
            "GB/s = ckpt_GB / median export wall.")
        say("rss_MB: peak RSS (wait4 ru_maxrss), max over runs; rss_medMB: median over runs.")
        say("exp/cp: median export wall / median cp wall of the same model.safetensors "
            "(measured here, interleaved).")
        say("x target: median wall (large: peak RSS) over the target; below 1x is within it.")
        say("torch.onnx.export figures are quoted (measured on the project's 2-core machine: "
            "small ~17 s / 4 GB, medium ~43 s / 12.7 GB), not re-measured: torch is not "
            "installed for this benchmark.")
        for n in notes:
            say(n)
        result["notes"] = notes
        export_bin(a, binary, work, result)
        if a.clean:
            for size in a.sizes.split():
                shutil.rmtree(os.path.join(a.bench_dir, size), ignore_errors=True)
                shutil.rmtree(os.path.join(a.bench_dir, size + "-bin"), ignore_errors=True)
            say("removed cached checkpoints (--clean)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = bl.machine()
    bl.write_json(a.json, result)


def export_bin(a, binary, work, result):
    """pytorch_model.bin: the same random weights saved by torch, exported from the .bin next to
    the safetensors folder: small/medium against the 1.5x target, large against peak RSS <= 2 GB."""
    sizes = [s for s in a.bin_sizes.split()]
    if not sizes:
        return
    py = bl.torch_python(a.torch_python, required=False)
    rows = []
    for size in sizes:
        ckpt = os.path.join(a.bench_dir, size)
        binckpt = os.path.join(a.bench_dir, size + "-bin")
        if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
            say(f"== {size}: no cached safetensors checkpoint (run with --sizes including {size}): skipped")
            continue
        if py is None:
            say(f"== .bin benchmark skipped: no torch python at {a.torch_python} ({bl.TORCH_HINT})")
            break
        if not os.path.exists(os.path.join(binckpt, "pytorch_model.bin")):
            say(f"== {size}: saving the same weights as pytorch_model.bin with torch")
            tmp = binckpt + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            shutil.copy(os.path.join(ckpt, "config.json"), tmp)
            bl.run([py, __file__, "_save-bin", os.path.join(ckpt, "model.safetensors"),
                    os.path.join(tmp, "pytorch_model.bin")])
            shutil.rmtree(binckpt, ignore_errors=True)
            os.rename(tmp, binckpt)
        runs = {"st": [], "bin": []}
        for i in range(a.runs):
            for kind, src in (("st", ckpt), ("bin", binckpt)):
                out = os.path.join(work, f"out-{kind}-{size}")
                shutil.rmtree(out, ignore_errors=True)
                runs[kind].append(bl.run_timed([binary, "export", "--weights", src, "--head",
                                                "causal-lm", "--out", out]))
                shutil.rmtree(out, ignore_errors=True)
            s, b = runs["st"][-1], runs["bin"][-1]
            say(f"   {size} run {i + 1}: safetensors {f2(s['wall_s'])} s, {mb(s['max_rss_kb'])} MB; "
                f".bin {f2(b['wall_s'])} s, {mb(b['max_rss_kb'])} MB")
        st = bl.stats([r["wall_s"] for r in runs["st"]])
        bn = bl.stats([r["wall_s"] for r in runs["bin"]])
        row = {"size": size, "st_wall_s": st, "bin_wall_s": bn,
               "bin_over_st": bl.ratio(bn["median"], st["median"]),
               "st_rss_mb": mb(max(r["max_rss_kb"] for r in runs["st"])),
               "bin_rss_mb": mb(max(r["max_rss_kb"] for r in runs["bin"]))}
        if size == "large":
            row["target"] = f".bin RSS <= {LARGE_RSS_GB} GB"
            row["of_target"] = row["bin_rss_mb"] * 2**20 / (LARGE_RSS_GB * 1e9)
        else:
            row["target"] = "<= 1.5x"
            row["of_target"] = row["bin_over_st"] / 1.5
        rows.append(row)
    if rows:
        say()
        say(f"== .bin vs safetensors export of the same weights (causal-lm head, median of "
            f"{a.runs}, warm page cache)")
        table(["size", "st_wall_s", "bin_wall_s", "bin/st", "st_rss_MB", "bin_rss_MB", "target",
               "x target"],
              [[r["size"], f2(r["st_wall_s"]["median"]), f2(r["bin_wall_s"]["median"]),
                f"{f2(r['bin_over_st'])}x", r["st_rss_mb"], r["bin_rss_mb"], r["target"],
                f"{f2(r['of_target'])}x"] for r in rows])
    result["bin_rows"] = rows


def cmd_save_bin(a):
    """(torch python) the safetensors weights saved by torch.save as pytorch_model.bin."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(a.src), a.dst)
    fd = os.open(a.dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


# --- verify -------------------------------------------------------------------------------------


def cmd_verify(a):
    """The golden suite over fixtures/ on ort-cpu and tract, RUNS times: wall time and peak RSS
    against the 10 s target. A verify set-up error (exit 2) stops at once; a numerical failure
    (exit 1) is still timed, the table printed, the last report shown, then exit 1."""
    binary = bl.igpt_bin(a.build_profile, a.bin)
    work = tempfile.mkdtemp()
    try:
        runs, failed = [], False
        for i in range(a.runs):
            # --require ort-cpu and tract: a skipped runtime would make the suite look faster
            # than it is.
            r = bl.run_timed([binary, "verify", "--fixtures", a.fixtures, "--runtimes",
                              "ort-cpu,tract", "--require", "ort-cpu", "--require", "tract",
                              "--json", os.path.join(work, "report.json")],
                             log=os.path.join(work, "run.log"), ok=(0, 1))
            failed |= r["rc"] == 1
            runs.append(r)
            say(f"   run {i + 1}: {f2(r['wall_s'])} s, peak RSS {mb(r['max_rss_kb'])} MB  "
                f"(verify exit {r['rc']})")
        report = json.load(open(os.path.join(work, "report.json")))
        log = open(os.path.join(work, "run.log")).read()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = report["summary"]
    cases = sum(os.path.exists(os.path.join(a.fixtures, d, "manifest.json"))
                for d in os.listdir(a.fixtures))
    say()
    if failed:
        say("== last run's report")
        say(log)
    else:
        say(f"== last run's report: verdict {report['verdict']}, {s['passed']} passed, "
            f"{s['failed']} failed, {s['errors']} errors, {s['not_applicable']} not applicable")
        for n in report.get("notes", []):
            say(f"note: {n}")
    wall = bl.stats([r["wall_s"] for r in runs])
    rss = max(r["max_rss_kb"] for r in runs)
    say()
    say(f"== verify benchmark ({a.runs} runs; golden suite over {a.fixtures}: {cases} cases, "
        f"{s['passed'] + s['failed'] + s['errors']} checks, runtimes ort-cpu + tract)")
    table(["wall_s med/min", "target", "x target", "rss_MB"],
          [[f"{f2(wall['median'])} / {f2(wall['min'])}", "<= 10 s", f"{f2(wall['median'] / 10)}x",
            mb(rss)]])
    bl.write_json(a.json, {"command": "verify", "runs": a.runs, "cases": cases, "wall_s": wall,
                           "rss_mb": mb(rss), "target_s": 10, "verdict": report["verdict"],
                           "summary": s, "machine": bl.machine()})
    if failed:
        print("verify reported a numerical failure (exit 1): see the report above", file=sys.stderr)
        sys.exit(1)


# --- generate -----------------------------------------------------------------------------------


def reference_generate(py, ckpt, a):
    """The reference's `generate` figures per batch (run in the fixtures' Python `py`; {} when
    there is none)."""
    if not py:
        return {}
    say(f"== reference generate (transformers, {a.threads} threads)")
    p = bl.run([py, __file__, "_reference-generate", ckpt, str(a.threads), str(a.new),
                a.batches, str(a.repeat)])
    return {r["batch"]: r for r in map(json.loads, p.stdout.splitlines())}


def cmd_generate(a):
    """Decoder benchmark: `igpt-onnx generate --greedy` (KV-cache decoder, ONNX Runtime CPU)
    against the reference's `generate` (transformers, KV cache, greedy) on the same random-weight
    checkpoint, in one run, with the memory-bandwidth limit of a float32 step.

    Every figure is the median of REPEAT runs (the reference's too), our decoders' rounds
    interleaved: on a 2-core machine a single run moves by a quarter with whatever else runs.
    ms/step is the whole generation over the new tokens, prompt pass included, as the reference
    is timed; `steps only` leaves the prompt pass out. The floor: float32 weight bytes read per
    step over one thread's read bandwidth (numpy, measured here). Targets, printed beside:
    batch 1 >= 1.8x the reference and within 1.3x of the floor, batch 8 >= 3x, int8 >= 2.5x
    the portable step at batch 1."""
    bl.check_modules(["numpy"])
    py = None if a.no_reference else bl.torch_python(a.torch_python)
    binary = bl.igpt_bin(a.build_profile, a.bin)
    batches = [int(b) for b in a.batches.split(",")]
    variants = a.variants.split(",")
    work = tempfile.mkdtemp()
    try:
        ckpt = os.path.join(work, "ckpt")
        bl.run([binary, "random-checkpoint", "--variant", a.size, "--seed", "0", "--out", ckpt])
        decoders = {}
        for v in variants:
            out = os.path.join(work, "onnx-" + variant_dir(v))
            bl.run([binary, "export", "--weights", ckpt, "--head", "decoder", "--out", out,
                    *VARIANTS[v]])
            decoders[v] = os.path.join(out, "decoder.onnx")
        weights = os.path.getsize(os.path.join(ckpt, "model.safetensors"))
        bw = bl.read_bandwidth_gbs()
        floor = weights / (bw * 1e9) * 1e3
        ref = reference_generate(py, ckpt, a)
        say("== igpt-onnx generate (ort-cpu), rounds interleaved across decoders")
        runs = collections.defaultdict(list)

        def one(v, b):
            def go():
                j = bl.igpt_json(binary, "generate", "--model", decoders[v], "--greedy",
                                 "--batch", str(b), "--max-new-tokens", str(a.new))
                runs[v, b].append(j)
                # the whole generation over the new tokens, prompt pass included
                return (j["prompt_seconds"] + j["step_seconds"]) / j["steps"]
            return go

        bl.interleaved({(v, b): one(v, b) for v in variants for b in batches}, a.repeat,
                       on_round=lambda r, k, s: say(f"round {r + 1} {k[0]} b{k[1]}: "
                                                    f"{s * 1e3:.2f} ms/step"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, portable = [], {}
    for v in variants:
        for b in batches:
            js = runs[v, b]
            ours = bl.stats([(j["prompt_seconds"] + j["step_seconds"]) * 1e3 / j["steps"] for j in js])
            steps_only = bl.stats([j["ms_per_step"] for j in js])
            portable.setdefault(b, ours["median"])
            row = {"decoder": v, "batch": b, "ms_per_step": ours, "steps_only_ms": steps_only,
                   "vs_portable": portable[b] / ours["median"],
                   "x_floor": ours["median"] / floor, "load_seconds": bl.stats([j["load_seconds"] for j in js])}
            if b in ref:
                theirs = ref[b]["ms_per_step"]
                got, want = js[-1]["tokens"], ref[b]["tokens"]
                row["reference_ms_per_step"] = theirs
                row["speed_up"] = theirs / ours["median"]
                row["greedy_agree"] = sum(x == y for g, w in zip(got, want) for x, y in zip(g[1:], w[1:]))
                row["greedy_total"] = sum(len(w) - 1 for w in want)
            targets = []
            if v == "portable":
                if b == 1:
                    targets += [">= 1.8x reference", "<= 1.3x floor"]
                elif b == 8:
                    targets.append(">= 3x reference")
            if v.endswith("int8") and b == 1:
                targets.append(">= 2.5x portable")
            row["targets"] = targets
            rows.append(row)
    say()
    say(f"weights {weights / 1e6:.0f} MB, read bandwidth {bw:.1f} GB/s (1 thread) -> float32 "
        f"floor {floor:.1f} ms/step")
    table(["decoder", "batch", "reference ms/step", "ours ms/step", "steps only", "speed-up",
           "x floor", "vs portable", "greedy tokens", "targets"],
          [[r["decoder"], r["batch"],
            f2(r["reference_ms_per_step"]) if "speed_up" in r else "-",
            f2(r["ms_per_step"]["median"]), f2(r["steps_only_ms"]["median"]),
            f"{f2(r['speed_up'])}x" if "speed_up" in r else "-",
            f"{f2(r['x_floor'])}x" if r["batch"] == 1 else "", f"{f2(r['vs_portable'])}x",
            f"{r['greedy_agree']}/{r['greedy_total']}" if "speed_up" in r else "-",
            "; ".join(r["targets"])] for r in rows])
    if not py:
        say("(no reference: --no-reference)")
    bl.write_json(a.json, {"command": "generate", "size": a.size, "new_tokens": a.new,
                           "repeat": a.repeat, "weights_bytes": weights, "bandwidth_gbs": bw,
                           "floor_ms": floor, "rows": rows,
                           "reference": {b: {k: r[k] for k in ("ms_per_step", "runs_ms")}
                                         for b, r in ref.items()},
                           "machine": bl.machine()})


def cmd_reference_generate(a):
    """(torch python) HF `generate` (greedy, KV cache) on a checkpoint folder, timed; prints one
    JSON line per batch size with the median ms/step over the new tokens and the tokens."""
    import torch
    import transformers
    from transformers import ImageGPTForCausalImageModeling

    torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    model = ImageGPTForCausalImageModeling.from_pretrained(a.model, dtype=torch.float32).eval()
    sos = model.config.vocab_size - 1
    for b in (int(x) for x in a.batches.split(",")):
        ids = torch.full((b, 1), sos, dtype=torch.long)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                  pad_token_id=None)
        with torch.no_grad():
            model.generate(**kw, max_new_tokens=4, min_new_tokens=4)  # warm-up
            out = None

            def go():
                nonlocal out
                out = model.generate(**kw, max_new_tokens=a.new, min_new_tokens=a.new)

            times = bl.interleaved({"ref": go}, a.repeat)["ref"]
        ms = [t * 1e3 / a.new for t in times]
        print(json.dumps({"batch": b, "ms_per_step": bl.stats(ms)["median"], "runs_ms": ms,
                          "tokens": out.tolist()}), flush=True)


# --- decoder ------------------------------------------------------------------------------------


def precisions_of(binary):
    """The precisions the binary offers: float32 plus every `export --quantize` (and `--dtype`)
    value its help lists, so a precision appears here the day the binary gains it."""
    text = bl.run([binary, "export", "--help"]).stdout
    found = {"fp32": []}
    for flag in ("--quantize", "--dtype"):
        for line in text.splitlines():
            if line.strip().startswith(flag + " ") and "[possible values:" in line:
                values = line.split("[possible values:")[1].rstrip("] \n").split(",")
                for v in (x.strip() for x in values):
                    if v and v not in ("fp32", "float32", "f32"):
                        found[v] = [flag, v]
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
        for p in precisions:
            out = os.path.join(work, "ours-" + p)
            bl.run([binary, "export", "--weights", ckpt, "--head", "decoder", "--out", out,
                    "--profile", "ort", *offered[p]])
            ours[p], sizes[p] = os.path.join(out, "decoder.onnx"), graph_bytes(out)
            if genai:
                packs[p] = os.path.join(work, "genai-" + p)
                bl.run([binary, "package", "--genai", packs[p], "--weights", ckpt,
                        "--profile", "ort", *offered[p]])
        say("== read bandwidth (numpy, 1 and 2 threads)")
        # In a child: a child's peak RSS starts from its parent's at fork, so the parent never
        # holds the 1 GiB test array.
        bw1, bw2 = json.loads(bl.run([sys.executable, __file__, "_bandwidth"]).stdout)
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

        def ours_run(p, b):
            return timed(("ours", p, b), [binary, "generate", "--model", ours[p], "--greedy",
                                          "--batch", b, "--max-new-tokens", a.new, "--json", "-"],
                         "step_seconds")

        def genai_run(p, b):
            return timed(("genai", p, b), [sys.executable, __file__, "_genai-generate", packs[p],
                                           b, a.new], "step_s")

        cands = {}
        for p in precisions:
            for b in batches:
                cands["ours", p, b] = ours_run(p, b)
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
            for who in ("ours", "genai"):
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


# --- forward ------------------------------------------------------------------------------------


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
        for v, flags in VARIANTS.items():
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
        table(["export", "s"], [[("igpt-onnx " + k) if k in VARIANTS else k, f2(s)]
                                for k, s in result["export_s"].items()])
        say("(torch.onnx.export: from loading the model to the written file; ours: the whole command)")
        sessions = {k: bl.session(p, a.threads) for k, p in graphs.items()}
        for batch, seq in ((1, a.seq), (8, a.b8_seq)):
            shape = {"batch": batch, "seq": seq}
            if tract_bench:
                say()
                say(f"== tract, portable graph, b{batch} seq {seq} ({a.tract_rounds} rounds, run "
                    f"before the table)")
                p = bl.run([tract_bench, graphs["portable"], "tract", batch, seq, a.tract_rounds])
                say(p.stdout.strip())
                f = p.stdout.split()  # median_s <s> min_s <s> rounds <n>
                shape["tract"] = {"median": float(f[1]), "min": float(f[3]), "n": int(f[5])}
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
            if "tract" in shape:
                t = shape["tract"]["median"]
                shape["tract"]["x_peer"] = pm / t
                rows.append(["tract", f"{t:.3f}", f"{shape['tract']['min']:.3f}",
                             f"{f2(pm / t)}x", "(own runs)", "", "", ""])
            table(["graph", "median s", "min s", f"x {peer}", "max abs", "cosine", "argmax",
                   "KL"], rows)
            result["shapes"].append(shape)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say()
    say(bl.machine_line())
    result["machine"] = bl.machine()
    bl.write_json(a.json, result)


# --- image --------------------------------------------------------------------------------------


def write_png(path, rgb):
    """An 8-bit RGB PNG (filter 0 on every row, zlib level 1), standard library only."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def make_images(out, n):
    """N seeded 256x256 RGB PNGs (smooth colour + noise)."""
    import numpy as np

    os.makedirs(out, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(11))
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    for i in range(n):
        f = rng.uniform(0.01, 0.08, (3, 2))
        ph = rng.uniform(0, 6.3, 3)
        img = np.stack([127.5 + 110 * np.sin(f[c, 0] * x + f[c, 1] * y + ph[c]) for c in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        write_png(os.path.join(out, f"{i:04d}.png"), np.clip(np.rint(img), 0, 255).astype(np.uint8))


def agreement(a, b):
    """Tokens of `a` equal to `b`'s, over `b`'s count."""
    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    return same, sum(len(r) for r in b)


def cmd_image(a):
    """Encodes N 256x256 PNGs with the Rust processor (`igpt-onnx encode`, the whole process
    incl. start-up) and with the reference (transformers' ImageGPTImageProcessorPil) in the same
    run, as a user runs it (open, convert("RGB"), processor), one call per image and one batched
    call; prints both times, the ratio (target: Rust >= 5x the reference) and the token
    agreement. --torchvision DIR (a folder with torchvision, for PYTHONPATH) also times the
    torchvision-backed processor and reports its agreement (measured with torchvision 0.29.2:
    `pip install --no-deps --target DIR torchvision==0.29.2`, kept out of the fixtures venv so
    the reference stays the PIL-backed processor)."""
    bl.check_modules(["numpy"])
    py = None if a.no_reference else bl.check_python(
        a.torch_python, ["transformers", "PIL"], bl.TORCH_HINT)
    binary = bl.igpt_bin(a.build_profile, a.bin)
    work = tempfile.mkdtemp()
    result = {"command": "image", "images": a.n, "processor": a.processor}
    try:
        img = os.path.join(work, "img")
        make_images(img, a.n)
        files = sorted(os.path.join(img, f) for f in os.listdir(img))
        for f in files:  # warm the page cache for both sides
            open(f, "rb").read()
        r = bl.run_timed([binary, "encode", "--processor", a.processor, "--json",
                          os.path.join(work, "rust.json"), *files])
        rust = r["wall_s"]
        ours = json.load(open(os.path.join(work, "rust.json")))["input_ids"]
        result["rust_s"] = rust
        say(f"images:                    {a.n} x 256x256 PNG -> 32x32 tokens")
        say(f"rust (igpt-onnx encode):   {rust:.3f} s  ({rust * 1000 / a.n:.2f} ms/image, whole "
            f"process incl. start-up)")
        refs = [("pil", None)] if py else []
        if py and a.torchvision:
            refs.append(("torchvision", a.torchvision))
        for tag, path in refs:
            env = dict(os.environ, PYTHONPATH=path) if path else None
            out = os.path.join(work, f"{tag}.json")
            p = bl.run([py, __file__, "_reference-image", a.processor, img, out]
                       + (["--torchvision"] if path else []), env=env)
            t = json.loads(p.stdout)
            same, total = agreement(ours, json.load(open(out))["input_ids"])
            result[tag] = {**t, "rust_faster_per_image": t["per_image_s"] / rust,
                           "rust_faster_batched": t["batched_s"] / rust,
                           "agree": same, "total": total}
            say(f"reference ({tag}), one call/image: {t['per_image_s']:.3f} s  -> rust is "
                f"{t['per_image_s'] / rust:.1f}x faster (target >= 5x)")
            say(f"reference ({tag}), one batch:      {t['batched_s']:.3f} s  -> rust is "
                f"{t['batched_s'] / rust:.1f}x faster")
            say(f"token agreement with the reference ({tag}): {same}/{total}")
        if not py:
            say("(no reference: --no-reference)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = bl.machine()
    bl.write_json(a.json, result)


def cmd_reference_image(a):
    """(torch python) times the reference processor on every PNG in a folder, one call per
    image and one batched call; writes the tokens; prints the timings as one JSON line."""
    import time

    import numpy as np
    from PIL import Image

    if a.torchvision:
        from transformers.models.imagegpt.image_processing_imagegpt import ImageGPTImageProcessor as P
    else:
        from transformers.models.imagegpt.image_processing_pil_imagegpt import ImageGPTImageProcessorPil as P
    proc = P.from_pretrained(os.path.dirname(os.path.abspath(a.config)))
    files = sorted(os.path.join(a.folder, f) for f in os.listdir(a.folder) if f.endswith(".png"))
    t0 = time.perf_counter()
    rows = [np.asarray(proc(images=Image.open(f).convert("RGB")).input_ids[0]).tolist() for f in files]
    t1 = time.perf_counter()
    imgs = [Image.open(f).convert("RGB") for f in files]
    batched = np.asarray(proc(images=imgs).input_ids)
    t2 = time.perf_counter()
    assert batched.tolist() == rows
    with open(a.out, "w") as f:
        json.dump({"input_ids": rows}, f)
    print(json.dumps({"per_image_s": t1 - t0, "batched_s": t2 - t1}))


# --- attention ----------------------------------------------------------------------------------

ATTENTION_CASES = "fwd b1 s1024,fwd b8 s256,fwd b8 s1024,step b1 p1023,step b8 p1023"
ATTENTION_FORMS = "decomposed,mha-bias,mha-mask,gqa,gqa-bias,attention"


def cmd_attention(a):
    """Why the ort profile uses MultiHeadAttention: one ImageGPT-small attention (n_embd 512, 8
    heads, QKV projection included) in ONNX Runtime on CPU, in each form a profile could emit —
    decomposed (the portable graph), MultiHeadAttention with the additive bias (mha-bias, the ort
    profile) or with key_padding_mask + unidirectional (mha-mask), GroupQueryAttention without
    and with attention_bias, contrib Attention (packed QKV, GPT-2 `past` [2, B, N, P, H]) — for
    the forward (b1 seq 1024, b8 seq 256 and 1024) and a decoder step (b1, b8, past 1023).
    Rounds are interleaved; medians. `maxdiff` is each form's largest difference from the
    decomposed one on the same inputs. A case is `fwd bB sS` or `step bB pP`."""
    bl.check_modules(["numpy", "onnx", "onnxruntime"])
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as H

    D, NH, HD = 512, 8, 64
    F = T.FLOAT
    rng = np.random.default_rng(0)
    W = rng.standard_normal((D, 3 * D)).astype(np.float32) * 0.02
    Bq = np.zeros(3 * D, np.float32)

    def init(n, x):
        return onnx.numpy_helper.from_array(x, n)

    def model(nodes, inputs, outputs, inits):
        g = H.make_graph(nodes, "a", inputs, outputs, inits)
        m = H.make_model(g, opset_imports=[H.make_opsetid("", 17), H.make_opsetid("com.microsoft", 1)],
                         ir_version=8)
        return m.SerializeToString()

    def vi(n, t, s):
        return H.make_tensor_value_info(n, t, s)

    X = vi("x", F, ["b", "s", D])
    Y = vi("y", F, None)
    qkv_nodes = [H.make_node("MatMul", ["x", "W"], ["mm"]), H.make_node("Add", ["mm", "B"], ["qkv"])]
    split = [H.make_node("Split", ["qkv", "sp"], ["q", "k", "v"], axis=2)]
    base_inits = [init("W", W), init("B", Bq), init("sp", np.array([D] * 3, np.int64))]
    PK = vi("pk", F, ["b", NH, "p", HD])
    PV = vi("pv", F, ["b", NH, "p", HD])

    def mha(kind, past):
        nodes = qkv_nodes + split
        ins = [X]
        if kind == "bias":
            ins.append(vi("bias", F, ["b", 1, "s", "t"]))
            args, attrs = ["q", "k", "v", "", "", "bias"], {}
        else:
            ins.append(vi("mask", T.INT32, ["b", "t"]))
            args, attrs = ["q", "k", "v", "", "mask", ""], {"unidirectional": 1}
        outs = ["y"]
        if past:
            ins += [PK, PV]
            args += ["pk", "pv"]
            outs += ["ok", "ov"]
        nodes.append(H.make_node("MultiHeadAttention", args, outs, domain="com.microsoft",
                                 num_heads=NH, **attrs))
        return model(nodes, ins, [Y] + ([vi("ok", F, None), vi("ov", F, None)] if past else []),
                     list(base_inits))

    def gqa(past, bias=False):
        nodes = qkv_nodes + split
        ins = [X, vi("seqlens_k", T.INT32, ["b"]), vi("total", T.INT32, [])]
        args = ["q", "k", "v", "pk" if past else "", "pv" if past else "", "seqlens_k", "total"]
        if bias:
            args += ["", "", "", "bias"]
            ins.append(vi("bias", F, ["b", 1, "s", "t"]))
        if past:
            ins += [PK, PV]
        nodes.append(H.make_node("GroupQueryAttention", args, ["y", "ok", "ov"],
                                 domain="com.microsoft", num_heads=NH, kv_num_heads=NH))
        return model(nodes, ins, [Y, vi("ok", F, None), vi("ov", F, None)], list(base_inits))

    def attn(past):
        ins = [X, vi("mask", T.INT32, ["b", "t"])]
        args, outs = ["x", "W", "B", "mask"], ["y"]
        if past:
            ins.append(vi("past", F, [2, "b", NH, "p", HD]))
            args.append("past")
            outs.append("present")
        nodes = [H.make_node("Attention", args, outs, domain="com.microsoft", num_heads=NH,
                             unidirectional=1)]
        return model(nodes, ins, [Y] + ([vi("present", F, None)] if past else []),
                     [init("W", W), init("B", Bq)])

    def decomposed(past):
        nodes = qkv_nodes + split
        inits = list(base_inits) + [init("hs", np.array([0, 0, NH, HD], np.int64)),
                                    init("ms", np.array([0, 0, D], np.int64)),
                                    init("sc", np.array(8.0, np.float32))]
        ins = [X, vi("bias", F, ["b", 1, "s", "t"])]
        for n in ("q", "k", "v"):
            nodes += [H.make_node("Reshape", [n, "hs"], [n + "r"]),
                      H.make_node("Transpose", [n + "r"], [n + "t"], perm=[0, 2, 1, 3])]
        k, v, outs = "kt", "vt", [Y]
        if past:
            ins += [PK, PV]
            nodes += [H.make_node("Concat", ["pk", "kt"], ["ok"], axis=2),
                      H.make_node("Concat", ["pv", "vt"], ["ov"], axis=2)]
            k, v = "ok", "ov"
            outs += [vi("ok", F, None), vi("ov", F, None)]
        nodes += [H.make_node("Transpose", [k], ["kT"], perm=[0, 1, 3, 2]),
                  H.make_node("MatMul", ["qt", "kT"], ["s0"]),
                  H.make_node("Div", ["s0", "sc"], ["s1"]), H.make_node("Add", ["s1", "bias"], ["s2"]),
                  H.make_node("Softmax", ["s2"], ["p"], axis=-1), H.make_node("MatMul", ["p", v], ["c"]),
                  H.make_node("Transpose", ["c"], ["ct"], perm=[0, 2, 1, 3]),
                  H.make_node("Reshape", ["ct", "ms"], ["y"])]
        return model(nodes, ins, outs, inits)

    def feeds(form, b, s, p):
        r = np.random.default_rng(b * 10000 + s + p)  # the same inputs for every form
        t = s + p
        x = r.standard_normal((b, s, D)).astype(np.float32)
        tri = np.tril(np.ones((t, t), bool))[p:]
        bias = np.where(tri, 0, np.finfo(np.float32).min).astype(np.float32)[None, None].repeat(b, 0)
        f = {"x": x}
        pk = r.standard_normal((b, NH, p, HD)).astype(np.float32)
        if form in ("decomposed", "mha-bias", "gqa-bias"):
            f["bias"] = bias
        if form in ("mha-mask", "attention"):
            f["mask"] = np.ones((b, t), np.int32)
        if form.startswith("gqa"):
            f["seqlens_k"] = np.full(b, t - 1, np.int32)
            f["total"] = np.array(t, np.int32)
        if p:
            if form == "attention":
                f["past"] = np.stack([pk, pk])
            else:
                f["pk"] = pk
                f["pv"] = pk.copy()
        return f

    builders = {"decomposed": decomposed, "mha-bias": lambda p: mha("bias", p),
                "mha-mask": lambda p: mha("mask", p), "gqa": gqa,
                "gqa-bias": lambda p: gqa(p, True), "attention": attn}
    forms = a.forms.split(",")
    if "decomposed" not in forms:
        forms.insert(0, "decomposed")  # maxdiff is against it
    results = []
    for name in (c.strip() for c in a.cases.split(",")):
        kind, bs, rest = name.split()
        b = int(bs[1:])
        s, p = (int(rest[1:]), 0) if kind == "fwd" else (1, int(rest[1:]))
        # calls per round: a long forward once, a step many times (its time is ~ms)
        reps = a.reps or (1 if b * s >= 8 * 1024 else 5 if kind == "fwd" else 50)
        sess = {f: bl.session(builders[f](p > 0), a.threads) for f in forms}
        fd = {f: feeds(f, b, s, p) for f in forms}
        outs = {f: sess[f].run(None, fd[f])[0] for f in forms}

        def timed(f):
            def go():
                for _ in range(reps):
                    sess[f].run(None, fd[f])
            return go

        times = bl.interleaved({f: timed(f) for f in forms}, a.rounds)
        ref = outs["decomposed"]
        res = {"case": name, "reps": reps, "forms": {}}
        for f in forms:
            ms = [t / reps * 1e3 for t in times[f]]
            res["forms"][f] = {"ms": bl.stats(ms), "maxdiff": float(np.abs(outs[f] - ref).max())}
        results.append(res)
        say(f"{name}: " + ", ".join(f"{f} {res['forms'][f]['ms']['median']:.2f} ms (maxdiff "
                                     f"{res['forms'][f]['maxdiff']:.1e})" for f in forms))
    say()
    say(f"one layer, medians of {a.rounds} interleaved rounds, ms (ORT {ort.__version__} CPU, "
        f"{a.threads} threads)")
    table(["case"] + forms, [[r["case"]] + [f"{r['forms'][f]['ms']['median']:.2f}" for f in forms]
                             for r in results])
    bl.write_json(a.json, {"command": "attention", "rounds": a.rounds, "threads": a.threads,
                           "onnxruntime": ort.__version__, "cases": results,
                           "machine": bl.machine()})


# --- accuracy -----------------------------------------------------------------------------------


def cmd_accuracy(a):
    """Accuracy of each profile and precision against the float32 goldens, on every fixture case
    with causal-LM goldens: the case's checkpoint is exported (causal-lm head) in each variant,
    run in ONNX Runtime on the case's inputs, and its logits compared with the reference's at
    the unpadded positions — max abs, cosine, argmax agreement, mean KL of the next-token
    distributions. The budgets these must meet are in src/graph/profile.rs (PRECISIONS); the
    decoder is checked by `igpt-onnx verify` (every step against the full forward's goldens)."""
    bl.check_modules(["numpy", "onnxruntime"])
    binary = bl.igpt_bin(a.build_profile, a.bin)
    trained = None if a.no_trained else trained_accuracy(binary, a.trained, a.runtime)
    if a.trained_only:
        bl.write_json(a.json, {"command": "accuracy", "trained": trained})
        return
    rows, worst = [], {}
    wanted = set(a.cases.split(",")) if a.cases else None
    with tempfile.TemporaryDirectory() as tmp:
        for case in sorted(os.listdir(a.fixtures)):
            manifest = os.path.join(a.fixtures, case, "manifest.json")
            if not os.path.exists(manifest) or (wanted and case not in wanted):
                continue
            if "causal-lm" not in json.load(open(manifest))["outputs"]:
                continue
            inputs = bl.load_safetensors(os.path.join(a.fixtures, case, "inputs.safetensors"))
            want = bl.load_safetensors(os.path.join(a.fixtures, case, "expected.safetensors"))["causal-lm/logits"]
            feeds = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            keep = inputs["attention_mask"].astype(bool)
            for variant, flags in VARIANTS.items():
                out = os.path.join(tmp, case, variant_dir(variant))
                bl.run([binary, "export", "--weights", os.path.join(a.fixtures, case, "model"),
                        "--head", "causal-lm", "--out", out, *flags])
                got = bl.session(os.path.join(out, "causal-lm.onnx"), a.threads).run(["logits"], feeds)[0]
                m = bl.accuracy(got[keep], want[keep])
                w = worst.setdefault(variant, {"max_abs": 0.0, "cosine": 1.0, "argmax": 1.0, "kl": 0.0})
                worst[variant] = {"max_abs": max(w["max_abs"], m["max_abs"]),
                                  "cosine": min(w["cosine"], m["cosine"]),
                                  "argmax": min(w["argmax"], m["argmax"]), "kl": max(w["kl"], m["kl"])}
                rows.append({"case": case, "variant": variant, **m})

    def line(case, v, m):
        return [case, v, f"{m['max_abs']:.2e}", f"{m['cosine']:.6f}", f"{m['argmax']:.1%}",
                f"{m['kl']:.2e}"]

    head = ["case", "variant", "max abs", "cosine", "argmax", "KL"]
    table(head, [line(r["case"], r["variant"], r) for r in rows])
    say("worst over the cases:")
    table(head, [line("", v, m) for v, m in worst.items()])
    bl.write_json(a.json, {"command": "accuracy", "cases": rows, "worst": worst, "trained": trained})


def help_choices(binary, option):
    """The `[possible values: ...]` of `igpt-onnx export`'s `option`, as the binary lists them
    (empty when the binary has no such option). An option's help may wrap onto the lines after
    it, up to the next option."""
    text = bl.run([binary, "export", "--help"]).stdout
    blocks = re.split(r"\n(?=\s*-)", text)
    for block in blocks:
        m = re.search(r"\[possible values: ([^\]]+)\]", block)
        if block.strip().startswith(option + " ") and m:
            return [v.strip() for v in m.group(1).split(",")]
    return []


def precision_variants(binary):
    """(label, export flags) of every precision the binary offers, in each profile: float32 in
    every profile, then each `--dtype` (other than float32) and each `--quantize` value."""
    profiles = help_choices(binary, "--profile")
    out = [(f"float32 {p}", ["--profile", p]) for p in profiles]
    for option in ("--dtype", "--quantize"):
        for value in help_choices(binary, option):
            if value in ("float32", "f32", "fp32"):
                continue
            out += [(f"{value} {p}", ["--profile", p, option, value]) for p in profiles]
    return out


def trained_accuracy(binary, case, runtime):
    """The trained model at every precision the binary offers: exported, verified against the
    reference (`igpt-onnx verify --fixture`: the causal LM's logits and held-out NLL, the
    classifier's held-out accuracy, the decoder's greedy generations), and printed as a
    markdown table."""
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags in precision_variants(binary):
            out = os.path.join(tmp, label.replace(" ", "-"))
            p = subprocess.run([binary, "export", "--weights", os.path.join(case, "model"), "--head", "all",
                                "--out", out, *flags], capture_output=True, text=True)
            if p.returncode != 0:  # a combination the binary refuses (int8 needs the ort profile)
                notes.append(f"{label}: not exported ({p.stderr.strip().splitlines()[-1]})")
                continue
            row = {"variant": label, "flags": flags, "verdict": "pass"}
            for head in ("causal-lm", "classifier", "decoder"):
                report = os.path.join(out, f"{head}.json")
                subprocess.run([binary, "verify", "--model", os.path.join(out, f"{head}.onnx"),
                                "--fixture", case, "--runtimes", runtime, "--require", runtime,
                                "--json", report], capture_output=True, text=True)
                if not os.path.exists(report):
                    raise RuntimeError(f"verify wrote no report for {label} {head}")
                r = json.load(open(report))
                if r["verdict"] != "pass":
                    row["verdict"] = "fail"
                for c in r["checks"]:
                    if c.get("error"):
                        raise RuntimeError(f"{label} {c['head']}: {c['error']}")
                    if c["head"] == "causal-lm":
                        m = c["outputs"][0]["metrics"]
                        row.update(max_abs=m["max_abs"], cosine=m["cosine"], kl=m["kl_divergence"],
                                   flips_beyond_ties=m["flips_beyond_ties"], flips_at_ties=m["flips_at_ties"],
                                   positions=m["compared"] // c["outputs"][0]["expected_shape"][-1],
                                   nll=c.get("nll"), labelled_flips=c.get("labelled_flips"))
                    elif c["head"] == "classifier":
                        row["classification"] = c.get("classification")
                    elif c.get("greedy"):
                        row["greedy"] = c["greedy"]
            rows.append(row)

    def divergence(g):
        if not g:
            return "-"
        d = g["first_divergence"]
        if d is None:
            return f"none ({g['tokens']} tokens)"
        return f"run {d['run']} row {d['row']}, token {d['generated_before'] + 1} ({g['diverged_runs']}/{g['runs']} runs)"

    def nll(m):
        return f"{m['ours']:.6f} vs {m['reference']:.6f} ({100 * m['relative_increase']:+.4f} %)" if m else "-"

    def flips(r):
        f = r.get("labelled_flips")  # over the held-out set, else the golden inputs
        if f:
            return f"{f['beyond_ties']} (+{f['at_ties']}) of {f['positions']}"
        return f"{r['flips_beyond_ties']} (+{r['flips_at_ties']}) of {r['positions']}"

    def acc(m):
        change = 100 * (m["ours"] - m["reference"]) + 0.0 if m else 0.0  # + 0.0: no "-0.00"
        return f"{100 * m['ours']:.2f} % (ref {100 * m['reference']:.2f} %, {change:+.2f} pt)" if m else "-"

    say(f"\n## trained model ({os.path.relpath(case, ROOT)}) on {runtime}, against the reference\n")
    say("| precision | max abs | cosine | KL | held-out NLL (ours vs ref) | flips beyond ties (+ at ties) "
        "| first greedy divergence | accuracy | verdict |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        say(f"| {r['variant']} | {r['max_abs']:.2e} | {r['cosine']:.7f} | {r['kl']:.2e} | {nll(r.get('nll'))} "
            f"| {flips(r)} | {divergence(r.get('greedy'))} "
            f"| {acc(r.get('classification'))} | {r['verdict']} |")
    for n in notes:
        say(f"- {n}")
    return {"case": case, "runtime": runtime, "rows": rows, "notes": notes}


TRAINED = os.path.join(FIXTURES, "trained")


def with_accuracy_level(src, dst, level):
    """A copy of graph `src` whose MatMulNBits nodes take `accuracy_level` `level`."""
    import onnx

    m = onnx.load(src)
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            for at in n.attribute:
                if at.name == "accuracy_level":
                    at.i = level
    onnx.save(m, dst)
    return dst


def requantized(src, dst, block, weights):
    """A copy of graph `src` whose MatMulNBits weights are quantised again from the float32
    checkpoint `weights` ({name: array}) in blocks of `block`, as src/graph/quant.rs does it
    (symmetric, scale max |w| / (2^(bits-1) - 1), default zero point, 4-bit values two a byte,
    low nibble first). At the exported block size it must give the exported bytes (checked)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(src)
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type != "MatMulNBits":
            continue
        at = {x.name: x for x in n.attribute}
        bits, k, nout, old = at["bits"].i, at["K"].i, at["N"].i, at["block_size"].i
        name = n.input[1].rsplit(".", 1)[0]
        w = weights.get(name, weights.get("transformer." + name)).astype(np.float32)  # [K, N]
        blocks = -(-k // block)
        col = np.zeros((nout, blocks * block), np.float32)
        col[:, :k] = w.T
        col = col.reshape(nout, blocks, block)
        qmax, zero = (1 << (bits - 1)) - 1, 1 << (bits - 1)
        amax = np.abs(col).max(-1)
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        x = col / scale[..., None]
        x = np.sign(x) * np.floor(np.abs(x) + 0.5)  # Rust's round: halves away from zero
        q = (np.clip(x, -qmax, qmax) + zero).astype(np.uint8)
        if bits == 4:
            q = q[..., 0::2] | (q[..., 1::2] << 4)
        if block == old:
            same = (numpy_helper.to_array(inits[n.input[1]]) == q).all() and \
                   (numpy_helper.to_array(inits[n.input[2]]) == scale).all()
            if not same:
                raise RuntimeError(f"{n.name}: the re-quantised blocks differ from the export's")
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(q, n.input[1]))
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(scale, n.input[2]))
        at["block_size"].i = block
    onnx.save(m, dst)
    return dst


def variant_graphs(binary, model, variants, sizes, levels, tmp, heads):
    """[(label, {head: path})]: `model` exported in each variant; the block variants also
    re-quantised in each of `sizes` and re-run at each of `levels` (None: as exported)."""
    weights = None
    graphs = []
    for v in variants:
        out = os.path.join(tmp, variant_dir(v))
        bl.run([binary, "export", "--weights", model, "--head", "all", "--out", out, *VARIANTS[v]])
        blocks = "--quantize" in VARIANTS[v]
        if blocks and sizes != [None] and weights is None:
            weights = bl.load_safetensors(os.path.join(model, "model.safetensors"))
        for size in (sizes if blocks else [None]):
            for level in (levels if blocks else [None]):
                label = " ".join([v] + ([f"block {size}"] if size else [])
                                 + ([f"level {level}"] if level is not None else []))
                paths = {}
                for h in heads:
                    path = os.path.join(out, f"{h}.onnx")
                    if size:
                        path = requantized(path, os.path.join(out, f"{h}.b{size}.onnx"), size, weights)
                    if level is not None:
                        path = with_accuracy_level(path, os.path.join(out, f"{h}.b{size}.l{level}.onnx"), level)
                    paths[h] = path
                graphs.append((label, paths))
    return graphs


def step_ms(path, threads, steps, past=128, batch=1):
    """Median ms of one decoder step (one new token) after `past` cached positions."""
    import time

    import numpy as np

    s = bl.session(path, threads)
    cache = {i.name: np.zeros([batch, i.shape[1], past, i.shape[3]],
                              np.float16 if i.type == "tensor(float16)" else np.float32)
             for i in s.get_inputs() if i.name.startswith("past_key_values.")}
    feed = {"input_ids": np.full([batch, 1], 5, np.int64),
            "attention_mask": np.ones([batch, past + 1], np.int64),
            "position_ids": np.full([batch, 1], past, np.int64), **cache}
    s.run(None, feed)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        s.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def block_options(a):
    levels = [int(x) for x in a.accuracy_levels.split(",")] if a.accuracy_levels else [None]
    sizes = [int(x) for x in a.block_sizes.split(",")] if a.block_sizes else [None]
    return sizes, levels


def cmd_steps(a):
    """Decoder step time of each variant on a random checkpoint of a published size (batch 1,
    one token after `--past` cached positions), with the block variants re-quantised in each of
    `--block-sizes` and run at each of `--accuracy-levels`."""
    bl.check_modules(["numpy", "onnxruntime", "onnx"])
    binary = bl.igpt_bin(a.build_profile, a.bin)
    ckpt, _ = bl.random_checkpoint(binary, a.bench_dir, a.size, 0)
    sizes, levels = block_options(a)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = variant_graphs(binary, ckpt, a.variants.split(","), sizes, levels, tmp, ["decoder"])
        for label, paths in graphs:
            rows.append({"variant": label, "step_ms": step_ms(paths["decoder"], a.threads, a.steps, a.past)})
            say(f"{label}: {rows[-1]['step_ms']:.2f} ms")
    table(["variant", "step ms"], [[r["variant"], f2(r["step_ms"])] for r in rows])
    bl.write_json(a.json, {"command": "steps", "size": a.size, "past": a.past, "rows": rows})


def cmd_trained(a):
    """Each precision on the trained fixture's held-out set, against its float32 graph: the
    held-out images teacher-forced through the causal LM (SOS + all but the last token predicting
    every token), and their tokens through the classifier. Per variant: max abs of the logits,
    mean KL(float32 ‖ ours), held-out NLL (nats/token) and its increase, argmax flips and the
    largest float32 top-1/top-2 gap at a flip (a flip at a larger gap than the precision's
    tie_gap fails verify), classification accuracy against the labels, and a decoder step
    (batch 1, the longest past the model takes, at most 128) in ms. `--accuracy-levels` re-runs the block variants with each
    MatMulNBits accuracy_level; `--variants` names the exports (flags as in VARIANTS)."""
    bl.check_modules(["numpy", "onnxruntime", "onnx"])
    import numpy as np

    binary = bl.igpt_bin(a.build_profile, a.bin)
    held = bl.load_safetensors(os.path.join(TRAINED, "heldout.safetensors"))
    ids, labels = held["input_ids"], held["labels"]
    lm_ids, cls_ids = ids[:, :-1], ids[:, 1:]
    model = os.path.join(TRAINED, "digits", "model")
    with open(os.path.join(model, "config.json")) as f:
        past = min(128, json.load(f)["n_positions"] - 1)
    variants = ["portable"] + [v for v in a.variants.split(",") if v and v != "portable"]
    sizes, levels = block_options(a)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = variant_graphs(binary, model, variants, sizes, levels, tmp,
                                ["causal-lm", "classifier", "decoder"])

        def lm_logits(path):
            s = bl.session(path, a.threads)
            chunks = []
            for i in range(0, len(lm_ids), a.batch):
                x = lm_ids[i:i + a.batch]
                chunks.append(s.run(["logits"], {"input_ids": x, "attention_mask": np.ones_like(x)})[0])
            return np.concatenate(chunks)

        def classes(path):
            s = bl.session(path, a.threads)
            return np.concatenate([s.run(["logits"], {"input_ids": cls_ids[i:i + a.batch],
                                                      "attention_mask": np.ones_like(cls_ids[i:i + a.batch])})[0]
                                   for i in range(0, len(cls_ids), a.batch)]).argmax(-1)

        base = None
        for label, heads in graphs:
            logits = lm_logits(heads["causal-lm"]).astype(np.float64)
            lp = bl.log_softmax(logits)
            nll = float(-np.take_along_axis(lp, ids[:, 1:, None], -1).mean())
            pred = classes(heads["classifier"])
            row = {"variant": label, "nll": nll, "cls_accuracy": float((pred == labels).mean()),
                   "step_ms": step_ms(heads["decoder"], a.threads, a.steps, past=past)}
            if base is None:
                base = {"logits": logits, "lp": lp, "nll": nll, "pred": pred}
                top2 = np.sort(logits, -1)[..., -2:]
                base["gap"] = top2[..., 1] - top2[..., 0]
            flips = logits.argmax(-1) != base["logits"].argmax(-1)
            row.update({"max_abs": float(np.abs(logits - base["logits"]).max()),
                        "kl": float((np.exp(base["lp"]) * (base["lp"] - lp)).sum(-1).mean()),
                        "nll_increase": nll / base["nll"] - 1,
                        "flips": int(flips.sum()), "positions": int(flips.size),
                        "max_gap_at_flip": float(base["gap"][flips].max()) if flips.any() else 0.0,
                        "cls_changed": int((pred != base["pred"]).sum())})
            rows.append(row)
            say(f"{label}: done")

    head = ["variant", "max abs", "KL", "NLL", "NLL +%", "flips", "max gap at flip", "cls acc",
            "cls changed", "step ms"]
    table(head, [[r["variant"], f"{r['max_abs']:.2e}", f"{r['kl']:.2e}", f"{r['nll']:.5f}",
                  f"{r['nll_increase']:+.3%}", f"{r['flips']}/{r['positions']}",
                  f"{r['max_gap_at_flip']:.3f}", f"{r['cls_accuracy']:.1%}", str(r["cls_changed"]),
                  f2(r["step_ms"])] for r in rows])
    bl.write_json(a.json, {"command": "trained", "rows": rows})


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
            for v in ("portable", "ort"):
                out = os.path.join(tmp, v)
                bl.run([binary, "export", "--weights", ckpt, "--head", "causal-lm", "--out", out,
                        *VARIANTS[v]])
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


# --- command line -------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    torch_default = os.environ.get("TORCH_PY", bl.TORCH_PY)
    bench_dir = os.environ.get("BENCH_DIR", "/tmp/igpt-bench")

    def add(name, fn, build="dev", help=None):
        p = sub.add_parser(name, help=help or (fn.__doc__ or "").split("\n")[0],
                           description=fn.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(fn=fn)
        p.add_argument("--json", metavar="FILE", help="write the figures as JSON (- for stdout)")
        if build:
            p.add_argument("--build-profile", default=build,
                           help="cargo profile to build igpt-onnx in (dev: every dependency optimised)")
            p.add_argument("--bin", help="an igpt-onnx binary to use instead of building one")
        else:
            p.set_defaults(build_profile=None, bin=None)
        return p

    p = add("export", cmd_export, "release", "export wall time, throughput and peak RSS")
    p.add_argument("--sizes", default="small medium large")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bench-dir", default=bench_dir, help="random checkpoints are cached here")
    p.add_argument("--bin-sizes", default="small medium large",
                   help="the same weights saved as pytorch_model.bin by torch, exported too ('' skips)")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--clean", action="store_true", help="delete the cached checkpoints at the end")

    p = add("verify", cmd_verify, "release", "the golden suite's wall time and peak RSS")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fixtures", default=FIXTURES)

    p = add("generate", cmd_generate, "dev", "decoder ms/step against the reference's generate")
    # The dev profile by default: the decoding loop is ONNX Runtime bound and its library is the
    # same prebuilt one in every profile.
    p.add_argument("--size", default="small")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--new", type=int, default=64, help="new tokens from the start token")
    p.add_argument("--repeat", type=int, default=3, help="runs each, rounds interleaved")
    p.add_argument("--threads", type=int, default=2, help="the reference's torch threads")
    p.add_argument("--variants", default="portable,ort,ort int8", help=f"of {list(VARIANTS)}")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-reference", action="store_true", help="ours only (no torch)")

    p = add("forward", cmd_forward, "dev", "forward: our graphs against torch.onnx.export's")
    p.add_argument("--size", default="small")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seq", type=int, default=1024, help="batch 1")
    p.add_argument("--b8-seq", type=int, default=256,
                   help="batch 8 (1024 takes minutes per round on 2 cores)")
    p.add_argument("--tract-rounds", type=int, default=3, help="0 skips tract")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench-dir", default=bench_dir, help="the checkpoint is cached here")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-torch", action="store_true",
                   help="no torch.onnx.export graph: ratios against portable")

    p = add("image", cmd_image, "release", "encode PNGs against the reference processor")
    p.add_argument("-n", type=int, default=1000, help="images")
    p.add_argument("--processor", default=os.path.join(FIXTURES, "images", "preprocessor_config.json"))
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--torchvision", metavar="DIR", help="also time the torchvision-backed processor")
    p.add_argument("--no-reference", action="store_true", help="ours only")

    p = add("attention", cmd_attention, None, "attention forms, one small-size layer")
    p.add_argument("--cases", default=ATTENTION_CASES)
    p.add_argument("--forms", default=ATTENTION_FORMS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=0,
                   help="calls per round (0: 1 for b8 s1024, 5 per forward, 50 per step)")
    p.add_argument("--threads", type=int, default=2)

    p = add("accuracy", cmd_accuracy, "dev", "profiles and precisions against the goldens")
    p.add_argument("--fixtures", default=FIXTURES)
    p.add_argument("--cases", help="comma-separated case names (default: every causal-lm case)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trained", default=os.path.join(FIXTURES, "trained", "digits"),
                   help="the trained case (with a labelled set and generations) for the precision table")
    p.add_argument("--runtime", default="ort-cpu", help="runtime of the trained model's table")
    p.add_argument("--trained-only", action="store_true", help="only the trained model's table")
    p.add_argument("--no-trained", action="store_true", help="only the golden cases' table")

    p = add("trained", cmd_trained, "dev", "each precision on the trained model's held-out set")
    p.add_argument("--variants", default="ort,ort int8,portable fp16,ort fp16,ort int4",
                   help=f"of {list(VARIANTS)} (portable float32 is the baseline)")
    p.add_argument("--accuracy-levels", default="",
                   help="comma-separated MatMulNBits accuracy_level values to run the block variants with")
    p.add_argument("--block-sizes", default="",
                   help="comma-separated block sizes to re-quantise the block variants in")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=50, help="decoder steps timed (median)")
    p.add_argument("--threads", type=int, default=2)

    p = add("steps", cmd_steps, "dev", "decoder step ms of each precision, block size and level")
    p.add_argument("--size", default="small")
    p.add_argument("--variants", default="ort,ort int8,portable fp16,ort fp16,ort int4",
                   help=f"of {list(VARIANTS)}")
    p.add_argument("--block-sizes", default="", help="as for trained")
    p.add_argument("--accuracy-levels", default="", help="as for trained")
    p.add_argument("--past", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="steps timed (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench-dir", default=bench_dir, help="the checkpoint is cached here")

    p = add("profile", cmd_profile, "dev", "ONNX Runtime profiler: kernel time per op type")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="small")
    p.add_argument("--bench-dir", default=bench_dir)
    p.add_argument("graphs", nargs="*", help="label=path (default: portable and ort exports)")

    # Helpers run in the torch interpreter by the subcommands above.
    p = add("decoder", cmd_decoder)
    p.add_argument("--size", default="small")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--new", type=int, default=64, help="new tokens from the start token")
    p.add_argument("--repeat", type=int, default=3, help="runs each, rounds interleaved")
    p.add_argument("--threads", type=int, default=2, help="the reference's torch threads")
    p.add_argument("--precisions", help="comma-separated (default: every one the binary offers)")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-reference", action="store_true", help="no torch")
    p.add_argument("--no-genai", action="store_true", help="no onnxruntime-genai")
    p.add_argument("--forward-seq", type=int, default=1024,
                   help="the causal-LM forward against its matrix products at b1 and this length "
                        "(0: skip)")
    p = sub.add_parser("_bandwidth")
    p.set_defaults(fn=cmd_bandwidth, json=None)
    p = sub.add_parser("_genai-generate")
    p.set_defaults(fn=cmd_genai_generate, json=None)
    p.add_argument("model")
    p.add_argument("batch", type=int)
    p.add_argument("new", type=int)
    p = sub.add_parser("_reference-generate")
    p.set_defaults(fn=cmd_reference_generate, json=None)
    for n, t in (("model", str), ("threads", int), ("new", int), ("batches", str), ("repeat", int)):
        p.add_argument(n, type=t)
    p = sub.add_parser("_reference-image")
    p.set_defaults(fn=cmd_reference_image, json=None)
    for n in ("config", "folder", "out"):
        p.add_argument(n)
    p.add_argument("--torchvision", action="store_true")
    p = sub.add_parser("_save-bin")
    p.set_defaults(fn=cmd_save_bin, json=None)
    p.add_argument("src")
    p.add_argument("dst")

    a = ap.parse_args()
    if a.json == "-":
        bl.OUT = sys.stderr
    try:
        a.fn(a)
    except bl.SetupError as e:  # a missing tool or environment
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # a command failed: its output, exit 1 (never for a timing)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
