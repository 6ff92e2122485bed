#!/usr/bin/env bash
# Sets up (if needed) and runs every check CI runs: formatting, lints, the whole test suite
# (ONNX Runtime tests run, not skip, when CI is set), and the official ONNX checker over every
# committed graph.
set -euo pipefail
cd "$(dirname "$0")/.."
./ci/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
cargo test --doc
echo "== onnx checker over graphs/, an external-data export and a float16 export"
.venv/bin/python ci/check_graphs.py graphs
ext=$(mktemp -d)
trap 'rm -rf "$ext"' EXIT
. ci/lib.sh
"$(igpt_bin)" export --weights fixtures/sharded/model --out "$ext" --external-data >/dev/null
.venv/bin/python ci/check_graphs.py "$ext"
# Float16 in the portable profile (the ort profile's graphs, int4's too, use ONNX Runtime's
# SimplifiedLayerNormalization in the default domain, which the checker does not know).
rm -rf "$ext" && "$(igpt_bin)" export --weights fixtures/kv-cache/model --out "$ext" --dtype fp16 >/dev/null
.venv/bin/python ci/check_graphs.py "$ext"
# Dynamic int8 in the portable profile: standard ops only.
rm -rf "$ext" && "$(igpt_bin)" export --weights fixtures/kv-cache/model --out "$ext" --quantize int8-dynamic >/dev/null
.venv/bin/python ci/check_graphs.py "$ext"
echo "== engines: onnxruntime-genai generation and Triton configs (ci/engines_test.py)"
.venv/bin/python ci/engines_test.py "$(igpt_bin)"
