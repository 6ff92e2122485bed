"""Decoder graphs against the reference, in ONNX Runtime (the Rust runtimes take int64 inputs
only today, so float cache inputs are fed from here):

1. the `kv-cache` case: one step on the golden past; `logits` and `present.*` against the
   goldens (max abs, cosine, KL of the next-token distribution);
2. `fixtures/greedy`: the reference's greedy generations replayed with the decoder (prompt as
   one prefill step, then one token per step with the presents fed back): token agreement.

    fixtures/.venv/bin/python ci/check_decoder.py KV_CACHE_DECODER.onnx GREEDY_DECODER.onnx
Exit status 1 when a token or a golden disagrees beyond --atol (default 1e-4).
"""

import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

from ortbench import cosine, kl, session

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def kv_cache(path, atol):
    case = os.path.join(ROOT, "kv-cache")
    inputs = load_file(os.path.join(case, "inputs.safetensors"))
    expected = load_file(os.path.join(case, "expected.safetensors"))
    s = session(path)
    ids, mask = inputs["decoder.input_ids"], inputs["decoder.attention_mask"]
    total = mask.shape[1]
    feeds = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": np.full(ids.shape, total - 1, np.int64),
    }
    for name in (i.name for i in s.get_inputs()):
        if name.startswith("past_key_values."):
            feeds[name] = expected["decoder/" + name]
    names = [o.name for o in s.get_outputs()]
    ok = True
    for name, got in zip(names, s.run(names, feeds)):
        want = expected["decoder/" + name]
        err = float(np.abs(got - want).max())
        extra = f"  KL {kl(want, got):.2e}" if name == "logits" else ""
        print(f"kv-cache decoder {name:<16} max abs {err:.2e}  cosine {cosine(got, want):.6f}{extra}")
        ok &= err <= atol
    return ok


def greedy(path):
    g = json.load(open(os.path.join(ROOT, "greedy", "generations.json")))
    s = session(path)
    past_inputs = [i for i in s.get_inputs() if i.name.startswith("past_key_values.")]
    agree = total = 0
    for gen in g["generations"]:
        prompt = np.array(gen["prompt"], np.int64)
        want = np.array(gen["tokens"], np.int64)
        b = prompt.shape[0]
        past = {i.name: np.zeros((b, i.shape[1], 0, i.shape[3]), np.float32) for i in past_inputs}
        tokens, step = prompt, prompt
        for _ in range(gen["max_new_tokens"]):
            p = tokens.shape[1] - step.shape[1]
            feeds = {
                "input_ids": step,
                "attention_mask": np.ones((b, tokens.shape[1]), np.int64),
                "position_ids": np.arange(p, tokens.shape[1], dtype=np.int64)[None].repeat(b, 0),
                **past,
            }
            out = s.run(None, feeds)
            names = [o.name for o in s.get_outputs()]
            res = dict(zip(names, out))
            step = res["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
            tokens = np.concatenate([tokens, step], 1)
            past = {k: res[k.replace("past_key_values", "present")] for k in past}
        new = slice(prompt.shape[1], None)
        agree += int((tokens[:, new] == want[:, new]).sum())
        total += want[:, new].size
    print(f"greedy generations: {agree}/{total} tokens agree ({agree / total:.1%})")
    return agree == total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kv_cache_decoder")
    ap.add_argument("greedy_decoder")
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    ok = kv_cache(a.kv_cache_decoder, a.atol)
    ok &= greedy(a.greedy_decoder)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
