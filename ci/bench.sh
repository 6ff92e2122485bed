#!/usr/bin/env bash
# Forward benchmark table (issue 12), in one run on this machine: a random small-size
# checkpoint exported as the portable graph, the ort profile, the ort profile with int8
# weights, and the `torch.onnx.export` graph of the same weights (made in the fixtures
# environment) — all in ONNX Runtime with the same session options (CPU provider, intra-op
# threads 2, graph optimisation ALL), rounds interleaved across graphs, medians and minimums —
# plus tract on the portable graph, and the export times. Ratios against the peer (the torch
# graph) are computed here, in this run. The decoder-step figures are added by the lead.
#
#   ci/bench.sh
#   ROUNDS=7 B8_SEQ=1024 ci/bench.sh
#
# Environment: BENCH_DIR (default /tmp/igpt-bench; the checkpoint is cached there), ROUNDS
# (default 5), SEQ (default 1024, batch 1), B8_SEQ (default 256: batch 8 at 1024 takes minutes
# per round on 2 cores), TORCH_PY (default fixtures/.venv/bin/python: torch, transformers,
# onnx), TRACT_ROUNDS (default 3). Needs ./ci/setup.sh's .venv (onnxruntime, numpy).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

BENCH_DIR=${BENCH_DIR:-/tmp/igpt-bench}
ROUNDS=${ROUNDS:-5}
SEQ=${SEQ:-1024}
B8_SEQ=${B8_SEQ:-256}
TRACT_ROUNDS=${TRACT_ROUNDS:-3}
TORCH_PY=${TORCH_PY:-fixtures/.venv/bin/python}
PY=.venv/bin/python
for py in "$PY" "$TORCH_PY"; do
  if [ ! -x "$py" ]; then
    echo "error: $py is missing (ci/setup.sh makes .venv, fixtures/setup.sh the fixtures one)" >&2
    exit 2
  fi
done

# The dev profile by default, the one the README commands build: every dependency (ONNX Runtime
# is a prebuilt library; tract is a dependency) is optimised there; PROFILE=release for a
# release build.
PROFILE=${PROFILE:-dev}
echo "== cargo build ($PROFILE: igpt-onnx, forward_bench)"
. ci/lib.sh
bin=$(igpt_bin "$PROFILE")
cargo build --quiet --profile "$PROFILE" --example forward_bench
tract_bench=$(dirname "$bin")/examples/forward_bench

mkdir -p "$BENCH_DIR"
ckpt=$BENCH_DIR/small
if [ ! -f "$ckpt/model.safetensors" ]; then
  "$bin" random-checkpoint --variant small --seed 12 --out "$ckpt" >/dev/null
fi
work=$(mktemp -d "$BENCH_DIR/forward.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

echo "== export (small, causal-lm head)"
declare -A export_s
for variant in portable ort int8; do
  args=(--profile "$variant")
  [ "$variant" = int8 ] && args=(--profile ort --quantize int8)
  t=$(now)
  "$bin" export --weights "$ckpt" --head causal-lm --out "$work/$variant" "${args[@]}" >/dev/null
  export_s[$variant]=$(since "$t")
done
mkdir -p "$work/torch"
torch_s=$("$TORCH_PY" ci/torch_export.py "$ckpt" "$work/torch/causal-lm.onnx" 2>/dev/null |
  awk '/^export_seconds/ { print $2 }')
printf "%-22s %8s s\n" "igpt-onnx portable" "${export_s[portable]}" "igpt-onnx ort" \
  "${export_s[ort]}" "igpt-onnx ort int8" "${export_s[int8]}" \
  "torch.onnx.export" "$torch_s"
echo "(torch.onnx.export: from loading the model to the written file; ours: the whole command)"

graphs=(portable="$work/portable/causal-lm.onnx" ort="$work/ort/causal-lm.onnx"
  int8="$work/int8/causal-lm.onnx" torch="$work/torch/causal-lm.onnx")
for shape in "1 $SEQ" "8 $B8_SEQ"; do
  read -r batch seq <<<"$shape"
  echo
  echo "== tract, portable graph, b$batch seq $seq ($TRACT_ROUNDS rounds, run before the table)"
  tract=$("$tract_bench" "$work/portable/causal-lm.onnx" tract "$batch" "$seq" "$TRACT_ROUNDS")
  echo "$tract"
  echo "== ONNX Runtime, b$batch seq $seq"
  "$PY" ci/bench_forward.py --batch "$batch" --seq "$seq" --rounds "$ROUNDS" --peer torch \
    --external "tract=$(awk '{ print $2 }' <<<"$tract")" "${graphs[@]}"
done
echo
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
