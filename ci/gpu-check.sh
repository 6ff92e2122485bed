#!/usr/bin/env bash
# GPU check kit: on a machine with one NVIDIA GPU, answers in one compact report
#   - whether ONNX Runtime's CUDA and TensorRT providers register (sessions actually on them),
#   - whether any node falls back to CPU (ORT profiling: the provider of every node event),
#   - the max error per runtime and precision: the golden suite and random small/medium
#     checkpoints with --require ort-cuda --require ort-tensorrt (every profile and precision
#     `igpt-onnx support` lists, on the small one),
#   - a decoder generation on the GPU against the CPU's tokens,
#   - a short speed table.
# Designed for < 8 minutes on one GPU (H100 class); CI never runs it (no GPU there).
#
# Usage: ci/gpu-check.sh [WORK_DIR]     (default target/gpu-check; the venv is kept there)
# Needs: python3, a Rust toolchain, an NVIDIA driver for CUDA 13. Downloads the pinned wheels
# once (onnxruntime-gpu 1.31.1 with its CUDA 13 / cuDNN 9 wheels, TensorRT 10 libraries).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${1:-$root/target/gpu-check}
mkdir -p "$work"
report="$work/report.txt"
: >"$report"
say() { echo "$*" | tee -a "$report"; }
started=$(date +%s)

# --- the GPU venv: ONNX Runtime GPU and the CUDA / cuDNN / TensorRT libraries as wheels --------
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "onnxruntime-gpu[cuda,cudnn]==1.31.1" "nvidia-cublas~=13.0" "tensorrt-cu13-libs~=10.0" numpy
fi
py="$venv/bin/python"
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ort_lib=$(find "$site/onnxruntime/capi" -name "libonnxruntime.so.*" | head -n1)
# The provider libraries dlopen cudart, cublas, cudnn and nvinfer by soname: put every wheel's
# lib folder on the loader path (what onnxruntime.preload_dlls() does for Python).
libs=$(find "$site/nvidia" "$site/tensorrt_libs" -maxdepth 2 -type d \( -name lib -o -name tensorrt_libs \) 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$ort_lib"
# shellcheck source=ci/lib.sh
. ci/lib.sh
bin=$(igpt_bin)

say "== GPU check ($(date -u +%FT%TZ))"
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
say "onnxruntime-gpu: $("$py" -c 'import onnxruntime as o; print(o.__version__, o.get_available_providers())')"

# --- checkpoints and graphs --------------------------------------------------------------------
for v in small medium; do
  [ -f "$work/ckpt-$v/config.json" ] || "$bin" random-checkpoint --variant "$v" --seed 0 --out "$work/ckpt-$v" >/dev/null
  rm -rf "$work/exp-$v"
  "$bin" export --weights "$work/ckpt-$v" --head causal-lm --out "$work/exp-$v" >/dev/null
  "$bin" export --weights "$work/ckpt-$v" --head decoder --out "$work/exp-$v" >/dev/null
done
# Every other profile and precision the binary's table lists, on the small checkpoint (a
# TensorRT engine is built per graph: medium in float32 only keeps the kit within its time).
precisions="fp32"
while read -r label flags; do
  [ -n "$label" ] || continue
  precisions="$precisions $label"
  "$bin" export --weights "$work/ckpt-small" --head causal-lm $flags --out "$work/exp-small-$label" >/dev/null
done < <("$bin" support --format json | "$py" -c '
import json, sys
for p in json.load(sys.stdin)["precisions"]:
    # static int8 calibrates on the trained case'"'"'s token ids (any vocabulary-513 model)
    extra = ["--calibration", "fixtures/trained/digits/inputs.safetensors"] if p.get("calibrated") else []
    for profile in p["profiles"]:
        if p["flags"] or profile != "portable":
            label = "-".join([profile] + p["flags"][-1:])
            print(label, "--profile", profile, *p["flags"], *extra)
')

# --- 1. providers register and where the nodes run (ORT profiling) -----------------------------
say ""
say "== providers and node placement (causal-lm, small; ORT profiling)"
"$py" - "$work/exp-small/causal-lm.onnx" "$work" <<'EOF' | tee -a "$report"
import collections, json, sys
import numpy as np
import onnxruntime as ort

model, work = sys.argv[1], sys.argv[2]
ids = np.full((1, 64), 7, dtype=np.int64)
feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = f"{work}/profile-{provider}"
    try:
        s = ort.InferenceSession(model, so, providers=[provider, "CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - reported, not raised
        print(f"{provider:<27} FAILED to create a session: {str(e).splitlines()[0]}")
        continue
    registered = provider in s.get_providers()
    s.run(None, feed)
    events = json.load(open(s.end_profiling()))
    per = collections.Counter(
        e["args"].get("provider", "?") for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
    )
    cpu = per.get("CPUExecutionProvider", 0)
    print(f"{provider:<27} registered: {'yes' if registered else 'NO'}  node runs by provider: "
          f"{dict(per)}  CPU fallback: {'NONE' if cpu == 0 else f'{cpu} node runs'}")
EOF

# --- 2. max error per runtime and precision ----------------------------------------------------
gpu_rts="ort-cpu,ort-cuda,ort-tensorrt"
req=(--require ort-cuda --require ort-tensorrt)
summarise() { # JSON report → one line per runtime: checks passed/failed, max abs over outputs
  "$py" - "$1" "$2" <<'EOF' | tee -a "$report"
import collections, json, sys
r = json.load(open(sys.argv[1]))
worst, status, secs = collections.defaultdict(float), collections.Counter(), collections.defaultdict(float)
for c in r["checks"]:
    key = (c["runtime"], c.get("provider", ""))
    status[key, c["status"]] += 1
    secs[key] += c.get("seconds", 0.0)
    for o in c["outputs"]:
        m = o.get("metrics") or {}
        worst[key] = max(worst[key], m.get("max_abs", 0.0))
for key in sorted({k for k, _ in status}):
    print(f"{sys.argv[2]:<22} {key[0]:<13} {key[1]:<10} pass {status[key, 'pass']:>3}  "
          f"fail {status[key, 'fail']:>2}  error {status[key, 'error']:>2}  max abs {worst[key]:.2e}  {secs[key]:.2f} s")
print(f"{sys.argv[2]:<22} verdict: {r['verdict']}")
EOF
}
say ""
say "== max error (golden suite against the reference; random inputs across runtimes)"
set +e
"$bin" verify --runtimes "$gpu_rts" "${req[@]}" --json "$work/golden.json" >"$work/golden.txt" 2>&1
echo "golden suite exit $?" >>"$report"
summarise "$work/golden.json" "golden fp32"
for p in $precisions; do
  for v in small medium; do
    dir="$work/exp-$v"
    [ "$p" = fp32 ] || dir="$work/exp-$v-$p"
    [ -d "$dir" ] || continue
    "$bin" verify --model "$dir/causal-lm.onnx" --random-inputs 2 --runtimes "$gpu_rts" "${req[@]}" \
      --json "$work/$v-$p.json" >"$work/$v-$p.txt" 2>&1
    summarise "$work/$v-$p.json" "$v $p causal-lm"
  done
done

# --- 3. decoder generation on the GPU vs the CPU's tokens, and speed --------------------------
say ""
say "== decoder generation (medium, greedy, 255 new tokens, batch 4) and speed"
# `generate --json FILE`: the run's figures (load, prompt and step times, tokens/s) and tokens.
for rt in ort-cpu ort-cuda; do
  "$bin" generate --model "$work/exp-medium/decoder.onnx" --runtime "$rt" --greedy \
    --max-new-tokens 255 --batch 4 --json "$work/gen-$rt.json" >"$work/gen-$rt.txt" 2>&1
  echo "$rt exit $?" | tee -a "$report"
done
set -e
"$py" - "$work/gen-ort-cpu.json" "$work/gen-ort-cuda.json" <<'EOF' | tee -a "$report"
import json, sys
try:
    runs = [json.load(open(p)) for p in sys.argv[1:]]
    a, b = (r["tokens"] for r in runs)
except (OSError, KeyError, ValueError) as e:
    print(f"tokens: not comparable ({e})")
    raise SystemExit
for r in runs:
    print(f"{r['runtime']:<9} ({r['provider']}): load {r['load_seconds']:.2f} s, prompt "
          f"{r['prompt_seconds'] * 1e3:.1f} ms, {r['ms_per_step']:.2f} ms/step, "
          f"{r['tokens_per_second']:.1f} tokens/s")
same = sum(x == y for r, s in zip(a, b) for x, y in zip(r, s))
total = sum(len(r) for r in a)
first = next((i for i, (x, y) in enumerate(zip(a[0], b[0])) if x != y), None)
print(f"ort-cuda vs ort-cpu tokens: {same}/{total} equal; first difference in row 0: {first}")
EOF
say ""
say "done in $(($(date +%s) - started)) s; details in $work"
