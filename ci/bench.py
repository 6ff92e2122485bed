#!/usr/bin/env python3
"""The benchmarks, in one driver. Each subcommand prints a text table and, with `--json FILE`
(`-`: stdout, the tables then go to stderr), writes its figures as JSON. Benchmarks print
figures and ratios; they never fail on speed. Run with the project interpreter (./ci/setup.sh
makes .venv: onnxruntime, onnx, numpy); the parts that need the reference (torch,
transformers) run in the fixtures environment (bash fixtures/setup.sh; --torch-python PATH or
TORCH_PY for another).

  .venv/bin/python ci/bench.py export      # export wall time / peak RSS, sizes small medium large
  .venv/bin/python ci/bench.py verify      # the golden suite's wall time
  .venv/bin/python ci/bench.py generate    # decoder ms/step against the reference's generate
  .venv/bin/python ci/bench.py speculative # generate --draft against the target alone (trained pair, self, worst)
  .venv/bin/python ci/bench.py forward     # forward table: our graphs vs torch.onnx.export's
  .venv/bin/python ci/bench.py image       # encode 1,000 PNGs against the reference processor
  .venv/bin/python ci/bench.py attention   # attention forms a profile could emit, per layer
  .venv/bin/python ci/bench.py accuracy    # each profile/precision against the goldens and on the trained model
  .venv/bin/python ci/bench.py trained     # each precision on the trained model's held-out set
  .venv/bin/python ci/bench.py steps       # decoder step ms per precision, block size, level
  .venv/bin/python ci/bench.py profile     # ONNX Runtime's profiler: kernel time per op type

`ci/bench.py SUBCOMMAND --help` lists each one's options and defaults.
The subcommands live in ci/benches/, a module per subcommand or family; this file only
wires up the command line.
"""

import argparse
import os
import sys

from benches import common as bl
from benches.accuracy import cmd_accuracy, cmd_trained
from benches.attention import ATTENTION_CASES, ATTENTION_FORMS, cmd_attention
from benches.common import FIXTURES
from benches.decoder import cmd_bandwidth, cmd_decoder, cmd_genai_generate
from benches.export import cmd_export, cmd_save_bin, cmd_verify
from benches.forward import cmd_forward, cmd_profile
from benches.generate import cmd_generate, cmd_reference_generate, cmd_speculative
from benches.image import cmd_image, cmd_reference_image
from benches.steps import cmd_steps


# --- command line -------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    torch_default = os.environ.get("TORCH_PY", bl.TORCH_PY)
    bench_dir = os.environ.get("BENCH_DIR", "/tmp/igpt-bench")

    def add(name, fn, build="dev", help=None):
        p = sub.add_parser(name, help=help or (fn.__doc__ or "").split("\n")[0],
                           description=fn.__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(fn=fn)
        p.add_argument("--json", metavar="FILE", help="write the figures as JSON (- for stdout)")
        if build:
            p.add_argument("--build-profile", default=build,
                           help="cargo profile to build igpt-onnx in (dev: every dependency optimised)")
            p.add_argument("--bin", help="an igpt-onnx binary to use instead of building one")
        else:
            p.set_defaults(build_profile=None, bin=None)
        return p

    p = add("export", cmd_export, "release", "export wall time, throughput and peak RSS")
    p.add_argument("--sizes", default="small medium large")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bench-dir", default=bench_dir, help="random checkpoints are cached here")
    p.add_argument("--bin-sizes", default="small medium large",
                   help="the same weights saved as pytorch_model.bin by torch, exported too ('' skips)")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--clean", action="store_true", help="delete the cached checkpoints at the end")

    p = add("verify", cmd_verify, "release", "the golden suite's wall time and peak RSS")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fixtures", default=FIXTURES)

    p = add("generate", cmd_generate, "dev", "decoder ms/step against the reference's generate")
    # The dev profile by default: the decoding loop is ONNX Runtime bound and its library is the
    # same prebuilt one in every profile.
    p.add_argument("--size", default="small")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--new", type=int, default=64, help="new tokens from the start token")
    p.add_argument("--repeat", type=int, default=3, help="runs each, rounds interleaved")
    p.add_argument("--threads", type=int, default=2, help="the reference's torch threads")
    p.add_argument("--variants", default="portable,ort,ort int8", help=bl.VARIANTS_HELP)
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-reference", action="store_true", help="ours only (no torch)")

    p = add("speculative", cmd_speculative, "dev",
            "generate --draft: target alone against target + draft (trained pair, self, worst case)")
    p.add_argument("--pairs", default="trained,self,worst", help="comma-separated: trained, self, worst")
    p.add_argument("--size", default="small", help="the self pair's target and the worst draft")
    p.add_argument("--worst-target", default="medium", help="the worst pair's target")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--new", type=int, default=128,
                   help="the random pairs' new tokens (0: the whole image, 1,024; the trained "
                        "pair always makes whole images, 64)")
    p.add_argument("--repeat", type=int, default=3, help="runs each, rounds interleaved")

    p = add("forward", cmd_forward, "dev", "forward: our graphs against torch.onnx.export's")
    p.add_argument("--size", default="small")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seq", type=int, default=1024, help="batch 1")
    p.add_argument("--b8-seq", type=int, default=256,
                   help="batch 8 (1024 takes minutes per round on 2 cores)")
    p.add_argument("--tract-rounds", type=int, default=3, help="0 skips tract")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench-dir", default=bench_dir, help="the checkpoint is cached here")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-torch", action="store_true",
                   help="no torch.onnx.export graph: ratios against portable")

    p = add("image", cmd_image, "release", "encode PNGs against the reference processor")
    p.add_argument("-n", type=int, default=1000, help="images")
    p.add_argument("--processor", default=os.path.join(FIXTURES, "images", "preprocessor_config.json"))
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--torchvision", metavar="DIR", help="also time the torchvision-backed processor")
    p.add_argument("--no-reference", action="store_true", help="ours only")

    p = add("attention", cmd_attention, None, "attention forms, one small-size layer")
    p.add_argument("--cases", default=ATTENTION_CASES)
    p.add_argument("--forms", default=ATTENTION_FORMS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=0,
                   help="calls per round (0: 1 for b8 s1024, 5 per forward, 50 per step)")
    p.add_argument("--threads", type=int, default=2)

    p = add("accuracy", cmd_accuracy, "dev", "profiles and precisions against the goldens")
    p.add_argument("--fixtures", default=FIXTURES)
    p.add_argument("--cases", help="comma-separated case names (default: every causal-lm case)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trained", default=os.path.join(FIXTURES, "trained", "digits"),
                   help="the trained case (with a labelled set and generations) for the precision table")
    p.add_argument("--runtime", default="ort-cpu", help="runtime of the trained model's table")
    p.add_argument("--trained-only", action="store_true", help="only the trained model's table")
    p.add_argument("--no-trained", action="store_true", help="only the golden cases' table")

    p = add("trained", cmd_trained, "dev", "each precision on the trained model's held-out set")
    p.add_argument("--variants", default="ort,ort int8,portable fp16,ort fp16,ort int4",
                   help=f"{bl.VARIANTS_HELP} (portable float32 is the baseline)")
    p.add_argument("--accuracy-levels", default="",
                   help="comma-separated MatMulNBits accuracy_level values to run the block variants with")
    p.add_argument("--block-sizes", default="",
                   help="comma-separated block sizes to re-quantise the block variants in")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=50, help="decoder steps timed (median)")
    p.add_argument("--threads", type=int, default=2)

    p = add("steps", cmd_steps, "dev", "decoder step ms of each precision, block size and level")
    p.add_argument("--size", default="small")
    p.add_argument("--variants", default="ort,ort int8,portable fp16,ort fp16,ort int4",
                   help=bl.VARIANTS_HELP)
    p.add_argument("--block-sizes", default="", help="as for trained")
    p.add_argument("--accuracy-levels", default="", help="as for trained")
    p.add_argument("--past", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="steps timed (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bench-dir", default=bench_dir, help="the checkpoint is cached here")

    p = add("profile", cmd_profile, "dev", "ONNX Runtime profiler: kernel time per op type")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="small")
    p.add_argument("--bench-dir", default=bench_dir)
    p.add_argument("graphs", nargs="*", help="label=path (default: portable and ort exports)")

    # Helpers run in the torch interpreter by the subcommands above.
    p = add("decoder", cmd_decoder)
    p.add_argument("--size", default="small")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--new", type=int, default=64, help="new tokens from the start token")
    p.add_argument("--repeat", type=int, default=3, help="runs each, rounds interleaved")
    p.add_argument("--threads", type=int, default=2, help="the reference's torch threads")
    p.add_argument("--precisions", help="comma-separated (default: every one the binary offers)")
    p.add_argument("--torch-python", default=torch_default)
    p.add_argument("--no-reference", action="store_true", help="no torch")
    p.add_argument("--no-genai", action="store_true", help="no onnxruntime-genai")
    p.add_argument("--engines", default="ort-cpu",
                   help="comma-separated engines igpt-onnx generate steps on: ort-cpu, openvino "
                        "(OpenVINO's default precision), openvino-f32; each precision is also "
                        "printed against float32 on its own engine")
    p.add_argument("--forward-seq", type=int, default=1024,
                   help="the causal-LM forward against its matrix products at b1 and this length "
                        "(0: skip)")
    p = sub.add_parser("_bandwidth")
    p.set_defaults(fn=cmd_bandwidth, json=None)
    p = sub.add_parser("_genai-generate")
    p.set_defaults(fn=cmd_genai_generate, json=None)
    p.add_argument("model")
    p.add_argument("batch", type=int)
    p.add_argument("new", type=int)
    p = sub.add_parser("_reference-generate")
    p.set_defaults(fn=cmd_reference_generate, json=None)
    for n, t in (("model", str), ("threads", int), ("new", int), ("batches", str), ("repeat", int)):
        p.add_argument(n, type=t)
    p = sub.add_parser("_reference-image")
    p.set_defaults(fn=cmd_reference_image, json=None)
    for n in ("config", "folder", "out"):
        p.add_argument(n)
    p.add_argument("--torchvision", action="store_true")
    p = sub.add_parser("_save-bin")
    p.set_defaults(fn=cmd_save_bin, json=None)
    p.add_argument("src")
    p.add_argument("dst")

    a = ap.parse_args()
    if a.json == "-":
        bl.OUT = sys.stderr
    try:
        a.fn(a)
    except bl.SetupError as e:  # a missing tool or environment
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:  # a command failed: its output, exit 1 (never for a timing)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
