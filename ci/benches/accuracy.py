"""`accuracy` and `trained`: what each profile and precision costs in accuracy.

`accuracy` compares every variant's logits with the float32 goldens on every fixture case and
verifies every precision the binary offers on the trained model (held-out NLL, classification,
greedy generations); `trained` weighs each precision on the trained model's held-out set
against its own float32 graph, with a decoder step time beside it. The budgets these must meet
live in the binary; this is where they were measured.
"""

import json
import os
import re
import subprocess
import tempfile

from . import common as bl
from .common import FIXTURES, ROOT, f2, say, table, variant_dir
from .steps import block_options, step_ms, variant_graphs


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
    exports = bl.variants(binary)
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
            for variant, flags in exports.items():
                out = os.path.join(tmp, case, variant_dir(variant))
                # A calibrated precision calibrates on the case's own inputs, as verify does.
                flags = bl.with_calibration(flags, os.path.join(a.fixtures, case, "inputs.safetensors"))
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


def precision_variants(binary, calibration=bl.CALIBRATION):
    """(label, export flags) of every precision the binary offers, in each profile: float32 in
    every profile, then each `--dtype` (other than float32) and each `--quantize` value; a
    calibrated one (static int8) with `--calibration calibration`."""
    profiles = help_choices(binary, "--profile")
    calibrated = bl.calibrated_quantizations(binary)
    out = [(f"float32 {p}", ["--profile", p]) for p in profiles]
    for option in ("--dtype", "--quantize"):
        for value in help_choices(binary, option):
            if value in ("float32", "f32", "fp32"):
                continue
            extra = ["--calibration", calibration] if value in calibrated else []
            out += [(f"{value} {p}", ["--profile", p, option, value, *extra]) for p in profiles]
    return out


def trained_accuracy(binary, case, runtime):
    """The trained model at every precision the binary offers: exported, verified against the
    reference (`igpt-onnx verify --fixture`: the causal LM's logits and held-out NLL, the
    classifier's held-out accuracy, the decoder's greedy generations), and printed as a
    markdown table."""
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # Static int8 calibrates on the case's own inputs, as verify's golden suite does.
        for label, flags in precision_variants(binary, os.path.join(case, "inputs.safetensors")):
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


def cmd_trained(a):
    """Each precision on the trained fixture's held-out set, against its float32 graph: the
    held-out images teacher-forced through the causal LM (SOS + all but the last token predicting
    every token), and their tokens through the classifier. Per variant: max abs of the logits,
    mean KL(float32 ‖ ours), held-out NLL (nats/token) and its increase, argmax flips and the
    largest float32 top-1/top-2 gap at a flip (a flip at a larger gap than the precision's
    tie_gap fails verify), classification accuracy against the labels, and a decoder step
    (batch 1, the longest past the model takes, at most 128) in ms. `--accuracy-levels` re-runs
    the block variants with each MatMulNBits accuracy_level; `--variants` names the exports
    (labels as `igpt-onnx support` lists them)."""
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
