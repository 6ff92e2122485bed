#!/usr/bin/env bash
# Numerical regression check for your own checkpoint, for your CI:
#
#   ci/regression-check.sh MODEL_DIR CASE_DIR [OUT_DIR]
#
# Exports every head of MODEL_DIR that CASE_DIR has goldens for (make CASE_DIR once with
# `fixtures/generate.py --model MODEL_DIR --head H --out CASE_DIR`), verifies each graph on
# ${RUNTIMES:-ort-cpu,tract} against the goldens, and writes JSON + JUnit reports to OUT_DIR
# (default out/regression). Exit code: 0 all pass, 1 a numerical failure, 2 a set-up error.
# Set REQUIRE=ort-cpu (comma-separated) to fail instead of skipping a missing runtime.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
model=$1 case=$2 out=${3:-out/regression}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/ci/setup.sh"
. "$root/ci/lib.sh"
bin=$(cd "$root" && igpt_bin)
heads=$(python3 -c 'import json,sys; print(" ".join(h for h in json.load(open(sys.argv[1]))["outputs"] if h in ("base","causal-lm","classifier")))' "$case/manifest.json")
if [ -z "$heads" ]; then
  echo "error: $case/manifest.json lists no goldens for base, causal-lm or classifier" >&2
  exit 2
fi
require=()
for r in ${REQUIRE:+${REQUIRE//,/ }}; do require+=(--require "$r"); done
status=0
for head in $heads; do
  "$bin" export --weights "$model" --head "$head" --out "$out" --hidden-states
  code=0
  "$bin" verify --model "$out/$head.onnx" --fixture "$case" --runtimes "${RUNTIMES:-ort-cpu,tract}" \
    ${require[@]+"${require[@]}"} --json "$out/$head.report.json" --junit "$out/$head.report.xml" || code=$?
  [ "$code" -gt "$status" ] && status=$code
done
exit "$status"
