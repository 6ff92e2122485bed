#!/usr/bin/env bash
# `debug bisect` on imagegpt-large's shape (random weights, 1.36B parameters, external data)
# between ONNX Runtime (CPU) and the tests' fault-injecting adapter (ONNX Runtime in Python,
# one node of block h.24 scaled by 1.002), on a short random sequence: prints the peak
# resident memory of igpt-onnx and of the adapter, the rounds and runs, and the node named.
# Needs ./ci/setup.sh, a dev build and about 12 GB of free disk. Not a CI test: run it by hand.
#   ci/debug-memory.sh [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
bin="$root/target/debug/igpt-onnx"
[ -x "$bin" ] || (cd "$root" && cargo build --quiet)
mkdir -p "$work"
if [ ! -f "$work/graph/causal-lm.onnx" ]; then
  "$bin" random-checkpoint --variant large --out "$work/ckpt" >/dev/null
  "$bin" export --weights "$work/ckpt" --head causal-lm --out "$work/graph"
  rm -rf "$work/ckpt"
fi
du -sh "$work/graph"
cd "$root"
# The adapter records its own peak (ru_maxrss of itself, which /usr/bin/time does not see).
export IGPT_FAULT_NODE=h.24.mlp.c_fc IGPT_FAULT_RSS="$work/adapter-rss.txt"
rm -f "$IGPT_FAULT_RSS"
start=$(date +%s)
/usr/bin/time -v "$bin" debug bisect --model "$work/graph/causal-lm.onnx" \
  --runtimes ort-cpu,cmd:tests/it/adapters/fault --random-inputs 1 --atol 1e-4 --rtol 1e-3 \
  --command-timeout 1200 --json "$work/bisect.json" >"$work/bisect.txt" 2>"$work/time.txt" || true
end=$(date +%s)
grep -E "^(verdict|first divergent node|cause)|rounds marking" "$work/bisect.txt"
echo "igpt-onnx peak resident: $(awk '/Maximum resident/ {printf "%.2f GB", $6/1048576}' "$work/time.txt")"
echo "adapter peak resident:   $(sort -n "$IGPT_FAULT_RSS" | tail -1 | awk '{printf "%.2f GB", $1/1048576}')"
echo "wall: $((end - start)) s"
