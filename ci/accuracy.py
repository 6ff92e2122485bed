"""Accuracy of each profile and precision against the float32 goldens, on every fixture case
with causal-LM goldens: the case's checkpoint is exported (causal-lm head) in each variant,
run in ONNX Runtime on the case's inputs, and its logits compared with the reference's at the
unpadded positions — max abs, cosine, argmax agreement, mean KL of the next-token
distributions. The budgets these must meet are in src/graph/profile.rs (PRECISIONS).

    fixtures/.venv/bin/python ci/accuracy.py target/debug/igpt-onnx
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

from ortbench import accuracy, session

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
VARIANTS = {
    "portable": ["--profile", "portable"],
    "ort": ["--profile", "ort"],
    "ort int8": ["--profile", "ort", "--quantize", "int8"],
}


def main(binary):
    print(f"{'case':<18} {'variant':<9} {'max abs':>8} {'cosine':>9} {'argmax':>7} {'KL':>9}")
    worst = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in sorted(os.listdir(ROOT)):
            manifest = os.path.join(ROOT, case, "manifest.json")
            if not os.path.exists(manifest):
                continue
            if "causal-lm" not in json.load(open(manifest))["outputs"]:
                continue
            inputs = load_file(os.path.join(ROOT, case, "inputs.safetensors"))
            want = load_file(os.path.join(ROOT, case, "expected.safetensors"))["causal-lm/logits"]
            feeds = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            keep = inputs["attention_mask"].astype(bool)
            for variant, args in VARIANTS.items():
                out = os.path.join(tmp, case, variant.replace(" ", "-"))
                subprocess.run([binary, "export", "--weights", os.path.join(ROOT, case, "model"),
                                "--head", "causal-lm", "--out", out, *args],
                               check=True, stdout=subprocess.DEVNULL)
                got = session(os.path.join(out, "causal-lm.onnx")).run(["logits"], feeds)[0]
                m = accuracy(got[keep], want[keep])
                w = worst.setdefault(variant, [0.0, 1.0, 1.0, 0.0])
                worst[variant] = [max(w[0], m[0]), min(w[1], m[1]), min(w[2], m[2]), max(w[3], m[3])]
                print(f"{case:<18} {variant:<9} {m[0]:>8.2e} {m[1]:>9.6f} {m[2]:>6.1%} {m[3]:>9.2e}")
    print("worst over the cases:")
    for variant, m in worst.items():
        print(f"{'':<18} {variant:<9} {m[0]:>8.2e} {m[1]:>9.6f} {m[2]:>6.1%} {m[3]:>9.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
