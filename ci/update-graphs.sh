#!/usr/bin/env bash
# Regenerates graphs/: the export of every fixture checkpoint (every head it has weights for,
# base with hidden states) plus a readable summary of each graph. tests/it/graphs.rs fails when a
# fresh export differs from what is committed; run this to accept an intended change, review
# `git diff graphs/` (the .txt summaries show what changed), and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
bin=$(igpt_bin)
rm -rf graphs
mkdir -p graphs
for case in fixtures/*/; do
  name=$(basename "$case")
  [ -f "$case/manifest.json" ] || continue
  "$bin" export --weights "$case/model" --out "graphs/$name" --hidden-states >/dev/null
  for model in graphs/"$name"/*.onnx; do
    "$bin" inspect "$model" > "${model%.onnx}.txt"
  done
done
echo "graphs/ regenerated: $(ls graphs/*/*.onnx | wc -l) graphs, $(du -sh graphs | cut -f1)"
