"""Reference side of ci/bench-generate.sh: HF `generate` (greedy, KV cache) on a checkpoint
folder, timed; prints one JSON line per batch size with ms/step and the tokens."""

import json
import sys
import time

import numpy as np
import torch
import transformers
from transformers import ImageGPTForCausalImageModeling


def read_bandwidth_gbs(mb=1024, runs=5):
    """Single-thread read bandwidth: numpy summing a 1 GiB float32 array (best of runs)."""
    a = np.ones(mb * (1 << 20) // 4, dtype=np.float32)
    best = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        a.sum(dtype=np.float32)
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def main():
    model_dir, threads, new_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    batches = [int(b) for b in sys.argv[4].split(",")]
    repeat = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    model = ImageGPTForCausalImageModeling.from_pretrained(model_dir, dtype=torch.float32).eval()
    sos = model.config.vocab_size - 1
    print(json.dumps({"bandwidth_gbs": read_bandwidth_gbs()}), flush=True)
    for b in batches:
        ids = torch.full((b, 1), sos, dtype=torch.long)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=4, min_new_tokens=4, pad_token_id=None)  # warm-up
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=None)
                times.append(time.perf_counter() - t)
            secs = sorted(times)[len(times) // 2]  # median
        print(json.dumps({"batch": b, "ms_per_step": secs * 1e3 / new_tokens,
                          "tokens": out.tolist()}), flush=True)


if __name__ == "__main__":
    main()
