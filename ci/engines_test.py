"""Engines check (run by ci/test.sh, a few seconds): what `igpt-onnx package` writes works in the
engines it targets, judged by those engines' own code.

- onnxruntime-genai (pinned in ci/requirements.txt) loads `package --genai` folders and generates
  greedily: the tokens must equal the reference's (fixtures/greedy/generations.json, every case,
  batch 1 and batch > 1) and `igpt-onnx generate --greedy`'s on the same checkpoint, and on a
  random tiny checkpoint this repository has never seen.
- Every `config.pbtxt` of `package --triton` parses with Triton's own ModelConfig schema
  (tritonclient's model_config_pb2 + protobuf text_format) and matches its graph (read with
  onnx): names, data types, dims, batching, instance groups, labels; graphs with a dtype or head
  Triton packaging does not support are refused by name, exit 2, nothing written.

Usage: .venv/bin/python ci/engines_test.py PATH/TO/igpt-onnx
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import onnxruntime_genai as og
from google.protobuf import text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2 as mc

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
BIN = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/debug/igpt-onnx")
CHECKS = 0


def check(cond, what):
    global CHECKS
    if not cond:
        raise AssertionError(what)
    CHECKS += 1


def igpt(*args, expect=0):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    check(
        p.returncode == expect,
        f"igpt-onnx {' '.join(map(str, args))}: exit {p.returncode}, wanted {expect}\n{p.stderr}",
    )
    return p


def genai_greedy(model, prompt, max_new_tokens):
    """Greedy generation through onnxruntime-genai; prompt: equal-length rows of token ids."""
    prompt = np.asarray(prompt, dtype=np.int32)
    params = og.GeneratorParams(model)
    params.set_search_options(
        do_sample=False, max_length=prompt.shape[1] + max_new_tokens, batch_size=prompt.shape[0]
    )
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    while not gen.is_done():
        gen.generate_next_token()
    return [[int(t) for t in gen.get_sequence(i)] for i in range(prompt.shape[0])]


def ours_greedy(tmp, decoder, prompt_row, batch, max_new_tokens):
    out = tmp / "tokens.json"
    igpt(
        "generate", "--model", decoder, "--greedy", "--max-new-tokens", max_new_tokens,
        "--prompt-ids", ",".join(map(str, prompt_row)), "--batch", batch, "--tokens-out", out,
    )
    return json.loads(out.read_text())["tokens"]


def test_genai_fixture(tmp):
    """Every reference generation; ours where `generate` can express the prompt (one row, repeated)."""
    model_dir = FIXTURES / "greedy/model"
    igpt("package", "--genai", tmp / "genai", "--weights", model_dir)
    igpt("export", "--weights", model_dir, "--head", "decoder", "--out", tmp / "ours")
    cfg = json.loads((tmp / "genai/genai_config.json").read_text())
    check(cfg["model"]["vocab_size"] == 513 and cfg["model"]["eos_token_id"] == 512, "genai ids")
    graph = onnx.load(tmp / "genai/decoder.onnx", load_external_data=False).graph
    logits = next(o for o in graph.output if o.name == "logits")
    check(logits.type.tensor_type.shape.dim[2].dim_value == 513, "genai decoder logits are 513 wide")
    model = og.Model(str(tmp / "genai"))
    cases = json.loads((FIXTURES / "greedy/generations.json").read_text())["generations"]
    for case in cases:
        got = genai_greedy(model, case["prompt"], case["max_new_tokens"])
        check(got == case["tokens"], f"genai != reference: {case['description']}\n{got}\n{case['tokens']}")
        rows = case["prompt"]
        if all(r == rows[0] for r in rows):
            ours = ours_greedy(tmp, tmp / "ours/decoder.onnx", rows[0], len(rows), case["max_new_tokens"])
            check(got == ours, f"genai != igpt-onnx generate: {case['description']}")
    print(f"  onnxruntime-genai {og.__version__}: {len(cases)} reference generations equal, token for token")


def test_genai_unseen(tmp):
    """A checkpoint nobody generated goldens for: genai must agree with our generate."""
    ckpt = tmp / "tiny"
    igpt("random-checkpoint", "--variant", "tiny", "--seed", "13", "--out", ckpt)
    igpt("export", "--weights", ckpt, "--head", "decoder", "--out", tmp / "tiny-ours")
    igpt("package", "--genai", tmp / "tiny-genai", "--weights", ckpt)
    model = og.Model(str(tmp / "tiny-genai"))
    n_positions = json.loads((ckpt / "config.json").read_text())["n_positions"]
    for prompt, batch in (([512], 1), ([512, 7, 300, 41, 41, 90], 1), ([512], 3)):
        new = n_positions - len(prompt)
        got = genai_greedy(model, [prompt] * batch, new)
        ours = ours_greedy(tmp, tmp / "tiny-ours/decoder.onnx", prompt, batch, new)
        check(got == ours, f"tiny checkpoint, prompt {prompt} x{batch}: genai {got} != ours {ours}")
        check(len(got[0]) == n_positions and 512 not in got[0][1:], "never generates the start token")
    print(f"  random tiny checkpoint: genai == igpt-onnx generate to n_positions ({n_positions}), batch 1 and 3")
    # The ort profile's decoder writes its cache in place: genai shares one buffer per layer.
    igpt("export", "--weights", ckpt, "--head", "decoder", "--profile", "ort", "--out", tmp / "tiny-ours-ort")
    igpt("package", "--genai", tmp / "tiny-genai-ort", "--weights", ckpt, "--profile", "ort")
    search = json.loads((tmp / "tiny-genai-ort/genai_config.json").read_text())["search"]
    check(search["past_present_share_buffer"] is True, "ort package shares genai's cache buffer")
    check(json.loads((tmp / "tiny-genai/genai_config.json").read_text())["search"]["past_present_share_buffer"]
          is False, "portable package concatenates")
    model = og.Model(str(tmp / "tiny-genai-ort"))
    for prompt, batch in (([512], 1), ([512, 7, 300, 41, 41, 90], 1), ([512], 3)):
        new = n_positions - len(prompt)
        got = genai_greedy(model, [prompt] * batch, new)
        ours = ours_greedy(tmp, tmp / "tiny-ours-ort/decoder.onnx", prompt, batch, new)
        check(got == ours, f"tiny ort, shared buffer, prompt {prompt} x{batch}: genai {got} != ours {ours}")
    print("  the same with --profile ort: genai's shared past/present buffer gives our tokens")


def variants():
    """Every profile and precision the binary's table lists but the portable float32 the other
    checks use, as (flags, label): from `igpt-onnx support`, never a hand-written list."""
    table = json.loads(subprocess.run([BIN, "support", "--format", "json"], capture_output=True,
                                      text=True, check=True).stdout)
    out = []
    # Static int8 calibrates on the trained case's token ids (vocabulary 513, like every fixture).
    calibration = ["--calibration", str(FIXTURES / "trained/digits/inputs.safetensors")]
    for p in table["precisions"]:
        extra = calibration if p.get("calibrated") else []
        for profile in p["profiles"]:
            if p["flags"] or profile != "portable":
                out.append((["--profile", profile, *p["flags"], *extra],
                            "-".join([profile, *p["flags"][-1:]])))
    return out


def test_genai_precisions(tmp):
    """Each profile and precision genai is shipped in: genai's greedy tokens equal ours on the
    same decoder (a block or float16 decoder's tokens need not equal float32's: near-ties flip)."""
    model_dir = FIXTURES / "greedy/model"
    cases = json.loads((FIXTURES / "greedy/generations.json").read_text())["generations"]
    for flags, name in variants():
        igpt("package", "--genai", tmp / name, "--weights", model_dir, *flags)
        igpt("export", "--weights", model_dir, "--head", "decoder", "--out", tmp / f"{name}-ours", *flags)
        model = og.Model(str(tmp / name))
        compared = 0
        for case in cases:
            rows = case["prompt"]
            if not all(r == rows[0] for r in rows):
                continue
            got = genai_greedy(model, rows, case["max_new_tokens"])
            ours = ours_greedy(tmp, tmp / f"{name}-ours/decoder.onnx", rows[0], len(rows),
                               case["max_new_tokens"])
            check(got == ours, f"{name}: genai != igpt-onnx generate: {case['description']}\n{got}\n{ours}")
            if name == "ort":
                check(got == case["tokens"], f"ort: genai != reference: {case['description']}")
            compared += 1
        print(f"  genai --{name}: {compared} greedy generations equal igpt-onnx generate's")


ONNX_TO_TRITON = {
    TensorProto.FLOAT: "TYPE_FP32", TensorProto.INT64: "TYPE_INT64", TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.INT32: "TYPE_INT32", TensorProto.BOOL: "TYPE_BOOL", TensorProto.UINT8: "TYPE_UINT8",
}


def parse_config(path):
    cfg = mc.ModelConfig()
    text_format.Parse(path.read_text(), cfg)
    return cfg


def check_against_graph(model_dir, cfg, max_batch, gpus):
    """config.pbtxt against the graph Triton would load."""
    graph = onnx.load(model_dir / "1/model.onnx", load_external_data=False).graph
    check(cfg.name == model_dir.name and cfg.backend == "onnxruntime", f"{model_dir}: name/backend")
    check(cfg.max_batch_size == max_batch, f"{model_dir}: max_batch_size")
    check(cfg.HasField("dynamic_batching") == (max_batch > 0), f"{model_dir}: dynamic batching")
    for declared, values in ((cfg.input, graph.input), (cfg.output, graph.output)):
        check([d.name for d in declared] == [v.name for v in values], f"{model_dir}: names")
        for d, v in zip(declared, values):
            tt = v.type.tensor_type
            check(mc.DataType.Name(d.data_type) == ONNX_TO_TRITON[tt.elem_type], f"{d.name}: type")
            dims = [x.dim_value if x.HasField("dim_value") else -1 for x in tt.shape.dim]
            if max_batch > 0:
                check(tt.shape.dim[0].dim_param == "batch", f"{d.name}: batch first")
                dims = dims[1:]
            check(list(d.dims) == dims, f"{model_dir}/{d.name}: dims {list(d.dims)} != graph {dims}")
    kind = mc.ModelInstanceGroup.KIND_GPU if gpus else mc.ModelInstanceGroup.KIND_CPU
    check([g.kind for g in cfg.instance_group] == [kind], f"{model_dir}: instance kind")
    accel = [a.name for a in cfg.optimization.execution_accelerators.gpu_execution_accelerator]
    check(accel == (["tensorrt"] if gpus else []), f"{model_dir}: accelerators {accel}")


def test_triton(tmp):
    exp = tmp / "exp"
    igpt("export", "--weights", FIXTURES / "greedy/model", "--out", exp, "--head", "all")
    igpt("export", "--weights", FIXTURES / "greedy/model", "--out", exp, "--head", "decoder")
    igpt("export", "--weights", FIXTURES / "classifier-images/model", "--out", exp, "--head", "classifier")
    heads = sorted(p.stem for p in exp.glob("*.onnx"))
    check(heads == ["base", "causal-lm", "classifier", "decoder"], f"export heads {heads}")
    configs = 0
    for max_batch, gpus in ((8, False), (0, False), (4, True)):
        repo = tmp / f"repo-{max_batch}-{gpus}"
        args = ["--max-batch", max_batch] + (["--gpus"] if gpus else [])
        igpt("package", "--triton", repo, "--from", exp, *args)
        for head in heads:
            model_dir = repo / f"imagegpt-{head}"
            check((model_dir / "1/model.onnx").read_bytes() == (exp / f"{head}.onnx").read_bytes(), "graph copied")
            check_against_graph(model_dir, parse_config(model_dir / "config.pbtxt"), max_batch, gpus)
            configs += 1
        labels = (repo / "imagegpt-classifier/labels.txt").read_text().splitlines()
        n = onnx.load(exp / "classifier.onnx").graph.output[0].type.tensor_type.shape.dim[1].dim_value
        check(len(labels) == n, "one label per class")
        check((repo / "imagegpt-classifier/preprocessor_config.json").is_file(), "processor config beside")
    # External data: the data file lands beside model.onnx under the name the graph records,
    # and ONNX Runtime loads the packaged graph from the repository.
    ext = tmp / "ext"
    igpt("export", "--weights", FIXTURES / "sharded/model", "--out", ext, "--head", "causal-lm", "--external-data")
    igpt("package", "--triton", tmp / "repo-ext", "--from", ext)
    v1 = tmp / "repo-ext/imagegpt-causal-lm/1"
    check(sorted(p.name for p in v1.iterdir()) == ["causal-lm.onnx.data", "model.onnx"], "external data beside")
    check_against_graph(v1.parent, parse_config(v1.parent / "config.pbtxt"), 8, False)
    sess = onnxruntime.InferenceSession(str(v1 / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[512, 3, 4]], dtype=np.int64)
    (logits,) = sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    check(logits.shape[-1] == 512, "packaged external-data graph runs")
    print(f"  Triton: {configs + 1} config.pbtxt parsed with model_config_pb2, every name, type and dim = graph")


def foreign_graph(path, head, elem_type):
    """A one-node graph with an export card of `head` (a default config) and an input of
    `elem_type`; no card at all when `head` is None."""
    x = helper.make_tensor_value_info("input_ids", elem_type, ["batch", "sequence"])
    y = helper.make_tensor_value_info("logits", elem_type, ["batch", "sequence"])
    g = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if head is not None:
        helper.set_model_props(m, {"igpt_onnx.head": head, "igpt_onnx.config": "{}",
                                   "igpt_onnx.profile": "portable", "igpt_onnx.version": "test"})
    onnx.save(m, path)


def refused(args, want, nothing_at):
    p = igpt(*args, expect=2)
    line = p.stderr.strip()
    check(line.count("\n") == 0 and want in line, f"wanted one line with `{want}`, got: {p.stderr}")
    check(not nothing_at.exists() or not any(nothing_at.iterdir()), f"{nothing_at} written after refusal")


def test_refusals(tmp):
    bad = tmp / "bad"
    bad.mkdir()
    repo = tmp / "repo-bad"
    foreign_graph(bad / "causal-lm.onnx", "causal-lm", TensorProto.COMPLEX64)
    refused(["package", "--triton", repo, "--from", bad],
            "input `input_ids` has element type complex64, which Triton has no data type for", repo)
    foreign_graph(bad / "causal-lm.onnx", "causal-lm-genai", TensorProto.FLOAT)
    refused(["package", "--triton", repo, "--from", bad],
            "metadata igpt_onnx.head: `causal-lm-genai` is none of base, causal-lm, classifier or decoder", repo)
    refused(["package", "--genai", tmp / "g-int8", "--weights", FIXTURES / "greedy/model", "--quantize", "int8"],
            "int8 weights are not available in the portable profile", tmp / "g-int8")
    foreign_graph(bad / "causal-lm.onnx", None, TensorProto.FLOAT)
    refused(["package", "--triton", repo, "--from", bad], "not a graph igpt-onnx exported", repo)
    refused(["package", "--triton", repo, "--from", bad, "--heads", "decoder"],
            "decoder.onnx: no decoder graph in the export folder", repo)
    # genai: a generation config with a wrong field, and an existing folder.
    ckpt = tmp / "ckpt"
    ckpt.mkdir()
    for f in (FIXTURES / "greedy/model").iterdir():
        (ckpt / f.name).write_bytes(f.read_bytes())
    (ckpt / "generation_config.json").write_text('{"do_sample": "yes"}')
    refused(["package", "--genai", tmp / "g1", "--weights", ckpt],
            "generation_config.json: `do_sample` is \"yes\", expected true or false", tmp / "g1")
    (tmp / "g2").mkdir()
    (tmp / "g2/keep").write_text("x")
    p = igpt("package", "--genai", tmp / "g2", "--weights", FIXTURES / "greedy/model", expect=2)
    check("already exists" in p.stderr and sorted(os.listdir(tmp / "g2")) == ["keep"], "existing folder kept")
    left = [n for n in os.listdir(tmp) if ".partial-" in n]
    check(left == [], f"staging folders left behind: {left}")
    print("  refusals: dtype and head by name, missing head, bad generation config, existing folder; exit 2, nothing written")


def main():
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for test in (test_genai_fixture, test_genai_unseen, test_genai_precisions, test_triton,
                     test_refusals):
            sub = tmp / test.__name__
            sub.mkdir()
            test(sub)
    print(f"engines: {CHECKS} checks passed")


if __name__ == "__main__":
    main()
