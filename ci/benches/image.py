"""`image`: the image processor, ours (`igpt-onnx encode`) against the reference's.

Encoding images to tokens comes first whenever the model is given an image; this times the whole
`igpt-onnx encode` process on N seeded PNGs against transformers' processor in the same run,
as a user calls it, and checks that both produce the same tokens. `_reference-image` is the
torch interpreter's part.
"""

import json
import os
import shutil
import tempfile

from . import common as bl
from .common import say


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
            p = bl.run([py, bl.BENCH, "_reference-image", a.processor, img, out]
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
