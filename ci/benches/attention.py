"""`attention`: why the ort profile emits the attention form it does.

One ImageGPT-small attention layer in ONNX Runtime on CPU, in each form a profile could emit
(decomposed, MultiHeadAttention with a bias or a mask, GroupQueryAttention, contrib
Attention), for forwards and decoder steps, with each form's difference from the decomposed
one. Needs no igpt-onnx binary: the graphs are built here with onnx's helpers.
"""

from . import common as bl
from .common import say, table


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
