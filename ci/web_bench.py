#!/usr/bin/env python3
"""The web page against the command line on this machine: what `package --web --quantize int8-dynamic`
puts on the wire for a random-weight checkpoint of a published size, and the page's tokens/s in
headless Chromium (onnxruntime-web's wasm backend, one thread, and with cross-origin isolation,
which lets onnxruntime-web use threads) against `igpt-onnx generate`'s (ONNX Runtime CPU) on the
same decoder graph, and against `generate` on onnxruntime-web's wasm itself (the
cmd:ci/adapters/ort-web adapter, Node, one thread), with the ratios; --against adds the CLI on
another export (e.g. the native fastest int8). Prints figures; never fails on speed. With --screenshot, also
renders the page on the trained fixture (a digit classified, then one sampled) to a PNG for the
README.

  python3 ci/web_bench.py                       # small, 128 tokens
  python3 ci/web_bench.py --variant tiny --tokens 64 --screenshot docs/web.png

Needs what tests/it/web.rs needs: node, ci/adapters/node_modules (ci/setup.sh) and
/usr/bin/chromium; and ONNX Runtime for `generate` (.venv from ci/setup.sh).
"""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "ci/adapters/node_modules/onnxruntime-web/dist")
# What the page fetches to generate on the wasm backend (the classifier only when classifying);
# its ES modules (every *.mjs beside index.html) are added from the written site.
WIRE = [
    "index.html",
    "model.json",
    "processor.json",
    "decoder.onnx",
    "ort/ort.wasm.min.mjs",
    "ort/ort-wasm-simd-threaded.mjs",
    "ort/ort-wasm-simd-threaded.wasm",
]


def igpt_bin():
    subprocess.run(["cargo", "build", "--quiet", "--bin", "igpt-onnx"], cwd=ROOT, check=True)
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return os.path.join(json.loads(meta.stdout)["target_directory"], "debug", "igpt-onnx")


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def browser(root, pages, isolate=False, screenshot=None):
    plan = {"root": root, "isolate": isolate, "pages": pages, "screenshot": screenshot}
    plan_path = os.path.join(root, "plan.json")
    out_path = os.path.join(root, "out.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    run(["node", os.path.join(ROOT, "ci/adapters/browser.mjs"), plan_path, out_path])
    with open(out_path) as f:
        return json.load(f)


def mb(n):
    return f"{n / 1e6:.1f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="small", choices=["tiny", "small", "medium"])
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated per run")
    ap.add_argument("--quantize", default="int8-dynamic", help="--quantize value, or none (float32)")
    ap.add_argument("--profile", help="--profile value (default: package --web's)")
    ap.add_argument("--against", help="also time generate on this export's decoder, e.g. '--profile ort --quantize int8'")
    ap.add_argument("--screenshot", help="write the page's screenshot (trained fixture) here")
    a = ap.parse_args()
    bin_ = igpt_bin()
    tmp = tempfile.mkdtemp(prefix="igpt-web-bench-")
    try:
        ckpt = os.path.join(tmp, "ckpt")
        run([bin_, "random-checkpoint", "--variant", a.variant, "--out", ckpt])
        # A 32x32 processor with 512 clusters, as the published checkpoints have.
        shutil.copy(os.path.join(ROOT, "fixtures/images/preprocessor_config.json"), ckpt)
        site = os.path.join(tmp, "site")
        extra = [] if a.quantize == "none" else ["--quantize", a.quantize]
        extra += ["--profile", a.profile] if a.profile else []
        print(run([bin_, "package", "--web", site, "--weights", ckpt, "--ort-web", DIST] + extra), end="")

        print(f"\n== on the wire: {a.variant}, {a.quantize}, generating on the wasm backend")
        raw = zipped = 0
        modules = sorted(n for n in os.listdir(site) if n.endswith(".mjs"))
        for name in WIRE[:1] + modules + WIRE[1:]:
            with open(os.path.join(site, name), "rb") as f:
                data = f.read()
            z = len(gzip.compress(data, 6))
            raw += len(data)
            zipped += z
            print(f"  {name:<36} {mb(len(data)):>10}  gzip {mb(z):>10}")
        print(f"  {'total':<36} {mb(raw):>10}  gzip {mb(zipped):>10}   (limit 100 MB)")
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(site) for f in fs)
        print(f"  the whole folder (WebGPU build and classifier included): {mb(total)}")

        print(f"\n== tokens/s, {a.tokens} greedy tokens from the start token")
        decoder = os.path.join(site, "decoder.onnx")
        cli = json.loads(run([bin_, "generate", "--model", decoder, "--greedy",
                              "--max-new-tokens", str(a.tokens), "--json", "-"]))
        url = f"/?autorun&greedy&max-new-tokens={a.tokens}"
        plain = browser(site, [{"name": "run", "url": url, "timeout_s": 600}])
        isolated = browser(site, [{"name": "run", "url": url, "timeout_s": 600}], isolate=True)
        cli_tps = cli["tokens_per_second"]
        print(f"  igpt-onnx generate ({cli['provider']}), the page's graph: {cli_tps:8.1f} tokens/s")
        # The command line on the page's runtime: onnxruntime-web's wasm in Node, one thread
        # (the cmd:ci/adapters/ort-web adapter; every step's cache crosses a pipe as files).
        wasm = json.loads(run([bin_, "generate", "--model", decoder, "--greedy", "--runtime",
                               "cmd:" + os.path.join(ROOT, "ci/adapters/ort-web"),
                               "--max-new-tokens", str(a.tokens), "--json", "-"]))
        print(f"  igpt-onnx generate on onnxruntime-web wasm (Node, one thread): {wasm['tokens_per_second']:8.1f} tokens/s")
        fastest = None
        if a.against:  # the command line's own fastest graph of the precision, as a second baseline
            native = os.path.join(tmp, "native")
            run([bin_, "export", "--weights", ckpt, "--head", "decoder", "--out", native] + a.against.split())
            fastest = json.loads(run([bin_, "generate", "--model", os.path.join(native, "decoder.onnx"),
                                      "--greedy", "--max-new-tokens", str(a.tokens), "--json", "-"]))
            print(f"  igpt-onnx generate, export {a.against}: {fastest['tokens_per_second']:8.1f} tokens/s")
        for label, out in [("one thread", plain), ("cross-origin isolated", isolated)]:
            page = out["pages"]["run"]
            g = page["igpt"]
            if not g.get("done"):
                print(f"  page ({label}): failed: {g.get('error') or page.get('driver_error')}")
                continue
            same = sum(x == y for x, y in zip(g["tokens"], cli["tokens"][0]))
            print(f"  page, Chromium {out['chromium']}, {g['backend']} ({label}): "
                  f"{g['tokensPerSecond']:8.1f} tokens/s = {g['tokensPerSecond'] / cli_tps:.2f} x the CLI; "
                  f"{same}/{len(g['tokens'])} tokens as the CLI's")
            print(f"    = {g['tokensPerSecond'] / wasm['tokens_per_second']:.2f} x generate on onnxruntime-web wasm")
            if fastest:
                print(f"    = {g['tokensPerSecond'] / fastest['tokens_per_second']:.2f} x generate on export {a.against}")

        if a.screenshot:
            shot_site = os.path.join(tmp, "shot")
            os.makedirs(shot_site)
            run([bin_, "package", "--web", os.path.join(shot_site, "page"), "--weights",
                 os.path.join(ROOT, "fixtures/trained/digits/model"), "--ort-web", DIST])
            shutil.copy(os.path.join(ROOT, "fixtures/trained/heldout/000.png"), shot_site)
            url = "/page/?autorun&classify=../000.png&generate&seed=3&temperature=1&top-k=40"
            out = browser(shot_site, [{"name": "shot", "url": url, "wait": "tokens"}],
                          screenshot={"page": "shot", "path": os.path.abspath(a.screenshot)})
            err = out["pages"]["shot"]["igpt"].get("error")
            print(f"\n== screenshot: {a.screenshot}" + (f" (page error: {err})" if err else ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
