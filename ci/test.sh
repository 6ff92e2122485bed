#!/usr/bin/env bash
# Sets up (if needed) and runs every check CI runs: formatting, lints, the whole test suite
# (ONNX Runtime tests run, not skip, when CI is set), and the official ONNX checker over every
# committed graph.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
stage "set-up"
./ci/setup.sh
stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
stage "cargo test --all-targets --no-run (build)"
cargo test --all-targets --no-run
stage "cargo test --all-targets"
cargo test --all-targets
stage "cargo test --doc"
cargo test --doc
stage "onnx checker over graphs/, an external-data export and every portable precision"
.venv/bin/python ci/check_graphs.py graphs
ext=$(mktemp -d)
trap 'rm -rf "$ext"' EXIT
"$(igpt_bin)" export --weights fixtures/sharded/model --out "$ext" --external-data >/dev/null
.venv/bin/python ci/check_graphs.py "$ext"
# Every other precision of the portable profile, as the binary's table lists them (the ort
# profile's graphs use ONNX Runtime's SimplifiedLayerNormalization in the default domain, which
# the checker does not know).
"$(igpt_bin)" support --format json | .venv/bin/python -c '
import json, sys
for p in json.load(sys.stdin)["precisions"]:
    if "portable" in p["profiles"] and p["flags"]:
        # static int8 calibrates on the case'"'"'s own inputs
        extra = ["--calibration", "fixtures/kv-cache/inputs.safetensors"] if p.get("calibrated") else []
        print(" ".join(p["flags"] + extra))
' | while read -r flags; do
  echo "-- portable $flags"
  rm -rf "$ext" && "$(igpt_bin)" export --weights fixtures/kv-cache/model --out "$ext" $flags >/dev/null
  .venv/bin/python ci/check_graphs.py "$ext"
done
stage "engines: onnxruntime-genai generation and Triton configs (ci/engines_test.py)"
.venv/bin/python ci/engines_test.py "$(igpt_bin)"
stage "wheel and cargo install (ci/wheel.sh)"
./ci/wheel.sh
stage "test.sh done"
