"""Helper of ci/bench-image.sh: makes the benchmark images and times the reference processor.

  bench_image.py make DIR N            N seeded 256x256 RGB PNGs (smooth colour + noise)
  bench_image.py reference CONFIG DIR OUT.json [--torchvision]
      times transformers' ImageGPTImageProcessorPil (Pillow 13.0.0) on every PNG in DIR, as
      a user runs it (open, convert("RGB"), processor), one call per image and one batched
      call; writes the tokens; prints the timings as `name seconds` lines.
"""

import json
import os
import sys
import time

import numpy as np
from PIL import Image


def make(out, n):
    os.makedirs(out, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(11))
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    for i in range(n):
        f = rng.uniform(0.01, 0.08, (3, 2))
        ph = rng.uniform(0, 6.3, 3)
        img = np.stack([127.5 + 110 * np.sin(f[c, 0] * x + f[c, 1] * y + ph[c]) for c in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(
            os.path.join(out, f"{i:04d}.png"), compress_level=1)


def reference(config, folder, out, torchvision):
    if torchvision:
        from transformers.models.imagegpt.image_processing_imagegpt import ImageGPTImageProcessor as P
    else:
        from transformers.models.imagegpt.image_processing_pil_imagegpt import ImageGPTImageProcessorPil as P
    proc = P.from_pretrained(os.path.dirname(os.path.abspath(config)))
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
    tag = "torchvision" if torchvision else "pil"
    t0 = time.perf_counter()
    rows = [np.asarray(proc(images=Image.open(f).convert("RGB")).input_ids[0]).tolist() for f in files]
    t1 = time.perf_counter()
    imgs = [Image.open(f).convert("RGB") for f in files]
    batched = np.asarray(proc(images=imgs).input_ids)
    t2 = time.perf_counter()
    assert batched.tolist() == rows
    with open(out, "w") as f:
        json.dump({"input_ids": rows}, f)
    print(f"reference-{tag}-per-image {t1 - t0:.3f}")
    print(f"reference-{tag}-batched {t2 - t1:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    else:
        reference(sys.argv[2], sys.argv[3], sys.argv[4], "--torchvision" in sys.argv)
