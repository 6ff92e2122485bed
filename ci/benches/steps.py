"""`steps`: decoder step time of each precision, block size and MatMulNBits accuracy level.

The block precisions' block size and accuracy level are choices the exporter fixes; this times
a decoder step for each candidate, re-quantising the exported graphs in other block sizes the
way the exporter does (the binary exports one block size). `trained` makes its graphs the
same way to weigh the same choices' accuracy.
"""

import os
import tempfile

from . import common as bl
from .common import f2, say, table, variant_dir


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
    flags = bl.variants(binary)
    weights = None
    graphs = []
    for v in variants:
        out = os.path.join(tmp, variant_dir(v))
        bl.run([binary, "export", "--weights", model, "--head", "all", "--out", out, *flags[v]])
        blocks = "--quantize" in flags[v]
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
