"""`generate`: decoding speed, the figure a user of `igpt-onnx generate` feels.

Our KV-cache decoders (each chosen profile and precision) against the reference's own
`generate` (transformers, KV cache, greedy) on the same random-weight checkpoint in one run,
and against the memory-bandwidth floor of a float32 step, which a decoder step at batch 1 is
bound by. The greedy tokens are compared too: a fast decoder that drifts is no use.
`_reference-generate` is the torch interpreter's part (also used by `decoder`).
"""

import collections
import json
import os
import shutil
import tempfile

from . import common as bl
from .common import f2, say, table, variant_dir


def reference_generate(py, ckpt, a):
    """The reference's `generate` figures per batch (run in the fixtures' Python `py`; {} when
    there is none)."""
    if not py:
        return {}
    say(f"== reference generate (transformers, {a.threads} threads)")
    p = bl.run([py, bl.BENCH, "_reference-generate", ckpt, str(a.threads), str(a.new),
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
    flags = bl.variants(binary)
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
                    *flags[v]])
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


# The trained pair's speed-up targets per batch (the target alone's time over the pair's).
TRAINED_TARGETS = {1: 2.0, 8: 1.5}


def cmd_speculative(a):
    """Speculative decoding (`generate --draft`): the target alone against the target with a
    draft, greedy from the start token, in one run, rounds interleaved, each run its own
    process, portable float32 decoders on ONNX Runtime CPU. Three pairs (`--pairs`):

    - `trained`: fixtures/trained-pair, a trained 128-wide 4-layer target and a 32-wide 1-layer
      draft distilled from it (8x8 images: 64 tokens), the draft exported in the ort profile. What a real pair gains; targets: b1 >=
      2x, b8 >= 1.5x.
    - `self`: a random target as its own draft. Every proposal is accepted (acceptance 1.0),
      so the target's share of the time (`target_seconds`) is what a free, perfect draft would
      leave: plain time over it is the ceiling of the speed-up; the whole run pays the draft too.
    - `worst`: a random small draft for a random medium target (other seeds): acceptance near
      zero; the adaptive length must keep the run within 1.1x of the target alone.

    Ratios are the target alone's median time over each run's (above 1: faster). Where the
    time goes: the target's and the draft's seconds (`target_seconds`, `draft_seconds` of
    `--json`), their ms per call, and the target alone's ms per step."""
    binary = bl.igpt_bin(a.build_profile, a.bin)
    pairs = {"trained": ("trained-target", "trained-draft"), "self": ("target", "target"),
             "worst": ("worst-target", "worst-draft")}
    pairs = {p: pairs[p] for p in a.pairs.split(",")}
    wanted = {m for pair in pairs.values() for m in pair}
    work = tempfile.mkdtemp()
    try:
        decoders = {}
        for name, size, seed in [("target", a.size, 0), ("worst-target", a.worst_target, 1),
                                 ("worst-draft", a.size, 2), ("trained-target", None, None),
                                 ("trained-draft", None, None)]:
            if name not in wanted:
                continue
            if size is None:
                ckpt = os.path.join(bl.FIXTURES, "trained-pair", name.split("-")[1])
            else:
                ckpt = os.path.join(work, "ckpt-" + name)
                bl.run([binary, "random-checkpoint", "--variant", size, "--seed", str(seed),
                        "--out", ckpt])
            out = os.path.join(work, "onnx-" + name)
            # The trained draft in the ort profile: fewer kernels a call, and it drafts every
            # round, so it never needs the catch-up over many tokens that its in-place cache
            # takes a token at a time beyond batch 1 (the worst pair's draft stays portable).
            flags = ["--profile", "ort"] if name == "trained-draft" else []
            bl.run([binary, "export", "--weights", ckpt, "--head", "decoder", "--out", out,
                    *flags])
            decoders[name] = os.path.join(out, "decoder.onnx")
            if size is not None:
                shutil.rmtree(ckpt, ignore_errors=True)
        batches = [int(b) for b in a.batches.split(",")]
        runs = collections.defaultdict(list)

        def one(target, draft, b):
            # The trained pair makes whole images (64 tokens); the random ones `--new`.
            new = ["--max-new-tokens", str(a.new)] if a.new and "trained" not in target else []

            def go():
                extra = ["--draft", decoders[draft]] if draft else []
                j = bl.igpt_json(binary, "generate", "--model", decoders[target], "--greedy",
                                 "--batch", str(b), *new, *extra)
                runs[target, draft, b].append(j)
                return j["prompt_seconds"] + j["step_seconds"]
            return go

        cands = {}
        for b in batches:
            for pair, (target, draft) in pairs.items():
                cands[(pair, "alone", b)] = one(target, None, b)
                cands[(pair, "draft", b)] = one(target, draft, b)
        # The pairs share nothing but the machine: the plain runs are per pair.
        bl.interleaved(cands, a.repeat,
                       on_round=lambda r, k, s: say(f"round {r + 1} {k[0]} {k[1]} b{k[2]}: "
                                                    f"{s:.3f} s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for b in batches:
        for pair, (target, draft) in pairs.items():
            plain = runs[target, None, b]
            alone = bl.stats([j["prompt_seconds"] + j["step_seconds"] for j in plain])
            js = runs[target, draft, b]
            spec = bl.stats([j["prompt_seconds"] + j["step_seconds"] for j in js])
            t_share = bl.stats([j["draft"]["target_seconds"] for j in js])
            d_share = bl.stats([j["draft"]["draft_seconds"] for j in js])
            d = js[-1]["draft"]
            same = js[-1]["tokens"] == plain[-1]["tokens"]
            row = {"pair": pair, "batch": b, "alone_s": alone, "draft_s": spec,
                   "speed_up": alone["median"] / spec["median"],
                   "ceiling": alone["median"] / t_share["median"],
                   "target_seconds": t_share, "draft_seconds": d_share,
                   "acceptance": d["acceptance_rate"], "mean_accepted": d["mean_accepted"],
                   "target_calls": d["target_calls"], "draft_calls": d["draft_calls"],
                   # per call: the target's scores up to 17 tokens a row, the draft's one
                   "target_ms_per_call": t_share["median"] * 1e3 / max(1, d["target_calls"]),
                   "draft_ms_per_call": d_share["median"] * 1e3 / max(1, d["draft_calls"]),
                   "alone_ms_per_step": bl.stats([(j["prompt_seconds"] + j["step_seconds"]) * 1e3
                                                  / j["steps"] for j in plain])["median"],
                   "new_tokens": js[-1]["new_tokens"], "same_tokens": same}
            if pair == "trained":
                row["target"] = f">= {TRAINED_TARGETS[b]}x" if b in TRAINED_TARGETS else ""
            elif pair == "worst":
                row["target"] = f">= {1 / 1.1:.2f}x"
            rows.append(row)
    table(["pair", "batch", "alone s", "with draft s", "speed-up", "target", "ceiling (target part)",
           "acceptance", "mean accepted", "target calls", "draft calls", "target s", "draft s",
           "ms/target call", "ms/draft call", "ms/step alone", "tokens", "same tokens"],
          [[r["pair"], r["batch"], f"{r['alone_s']['median']:.4f}", f"{r['draft_s']['median']:.4f}",
            f"{f2(r['speed_up'])}x", r.get("target", ""),
            f"{f2(r['ceiling'])}x" if r["pair"] == "self" else "-",
            f"{r['acceptance']:.3f}", f2(r["mean_accepted"]), r["target_calls"], r["draft_calls"],
            f"{r['target_seconds']['median']:.4f}", f"{r['draft_seconds']['median']:.4f}",
            f"{r['target_ms_per_call']:.3f}", f"{r['draft_ms_per_call']:.3f}",
            f"{r['alone_ms_per_step']:.3f}", r["new_tokens"],
            "yes" if r["same_tokens"] else "NO"] for r in rows])
    say("targets: trained pair b1 >= 2x, b8 >= 1.5x; worst pair >= "
        f"{1 / 1.1:.2f}x (at most 1.1x slower than the target alone)")
    bl.write_json(a.json, {"command": "speculative", "pairs": list(pairs), "size": a.size,
                           "worst_target": a.worst_target, "new_tokens": a.new,
                           "repeat": a.repeat, "rows": rows, "machine": bl.machine()})
