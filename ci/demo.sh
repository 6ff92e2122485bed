#!/usr/bin/env bash
# The main job on the bundled default: export every head of the small fixture checkpoint
# (fixtures/causal-lm/model), verify them in ONNX Runtime and tract against the reference
# goldens, and print the report. Sets up and builds first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
# ONNX Runtime is all the demo needs; ci/test.sh sets up the rest.
stage "set-up: ONNX Runtime in .venv"
./ci/setup.sh --core
# The dev profile (dependencies optimised, see Cargo.toml): the build ci/test.sh reuses, so a
# fresh clone compiles ort and tract once for both README commands. Cargo's progress shows:
# from cold it is several minutes on two cores.
stage "build: cargo build (dev profile)"
cargo build --bin igpt-onnx
bin=$(igpt_bin)
out=out/demo
case=fixtures/causal-lm
stage "export ($case/model -> $out)"
"$bin" export --weights "$case/model" --out "$out" --hidden-states
for head in "$out"/*.onnx; do
  stage "verify $head against $case"
  "$bin" verify --model "$head" --fixture "$case" --require ort-cpu --require tract \
    --json "${head%.onnx}.report.json" --junit "${head%.onnx}.report.xml"
done
stage "golden suite: every head of every fixture case, on ONNX Runtime and tract"
"$bin" verify --fixtures fixtures --require ort-cpu --require tract
stage "demo done: graphs and reports in $out/"
