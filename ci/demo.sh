#!/usr/bin/env bash
# The main job on the bundled default: export every head of the small fixture checkpoint
# (fixtures/causal-lm/model), verify them in ONNX Runtime and tract against the reference
# goldens, and print the report. Sets up and builds first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
# ONNX Runtime is all the demo needs; ci/test.sh sets up the rest.
./ci/setup.sh --core
# The dev profile (dependencies optimised, see Cargo.toml): the build ci/test.sh reuses, so a
# fresh clone compiles ort and tract once for both README commands.
. ci/lib.sh
bin=$(igpt_bin)
out=out/demo
case=fixtures/causal-lm
echo "== export ($case/model -> $out)"
"$bin" export --weights "$case/model" --out "$out" --hidden-states
for head in "$out"/*.onnx; do
  echo "== verify $head against $case"
  "$bin" verify --model "$head" --fixture "$case" --require ort-cpu --require tract \
    --json "${head%.onnx}.report.json" --junit "${head%.onnx}.report.xml"
done
echo "== golden suite: every head of every fixture case, on every runtime"
"$bin" verify --fixtures fixtures --require ort-cpu --require tract
echo "== demo done: graphs and reports in $out/"
