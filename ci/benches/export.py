"""`export` and `verify`: what a user waits for and how much memory it takes.

`export` times igpt-onnx exporting random checkpoints of the published sizes (wall time, peak
RSS, throughput against a plain `cp` of the same weights, the disk's floor), and the same
weights from torch's pytorch_model.bin, against the targets the project set itself and the
quoted figures of torch.onnx.export. `verify` times the golden suite against its 10 s target,
since a slow suite gets run less. `_save-bin` is the torch interpreter's part of `export`.
"""

import json
import os
import shutil
import sys
import tempfile

from . import common as bl
from .common import f2, mb, say, table


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
            bl.run([py, bl.BENCH, "_save-bin", os.path.join(ckpt, "model.safetensors"),
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
