#!/usr/bin/env bash
# Encodes 1,000 256x256 PNGs with the Rust processor (`igpt-onnx encode`) and with the
# reference (transformers' ImageGPTImageProcessorPil, Pillow 13.0.0) in the same run, checks
# the tokens agree, and prints both times and the ratio (target: Rust >= 5x the reference).
# Needs the fixtures venv (bash fixtures/setup.sh; PY=... for another interpreter). PROFILE=dev to skip the release build;
# N=... for another image count; TORCHVISION=DIR (a folder with torchvision on PYTHONPATH) to
# also time the torchvision-backed processor and report its token agreement (measured with
# torchvision 0.29.2: `pip install --no-deps --target DIR torchvision==0.29.2`, kept out of the
# fixtures venv so the reference stays the PIL-backed processor).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-fixtures/.venv/bin/python}"
N="${N:-1000}"
PROFILE="${PROFILE:-release}"
CONFIG=fixtures/images/preprocessor_config.json
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build -q --profile "$PROFILE" --bin igpt-onnx
bin="target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/igpt-onnx"

"$PY" ci/bench_image.py make "$work/img" "$N"
cat "$work"/img/*.png >/dev/null   # warm the page cache for both sides

start=$(date +%s.%N)
"$bin" encode --processor "$CONFIG" --json "$work/rust.json" "$work"/img/*.png
rust=$(echo "$(date +%s.%N) - $start" | bc)

"$PY" ci/bench_image.py reference "$CONFIG" "$work/img" "$work/ref.json" | tee "$work/ref.txt"
per_image=$(awk '$1=="reference-pil-per-image"{print $2}' "$work/ref.txt")
batched=$(awk '$1=="reference-pil-batched"{print $2}' "$work/ref.txt")

agree() {
    "$PY" - "$1" "$2" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["input_ids"]; b = json.load(open(sys.argv[2]))["input_ids"]
same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
print(f"{same}/{sum(len(r) for r in b)}")
PY
}
echo "images:                    $N x 256x256 PNG -> 32x32 tokens"
printf 'rust (igpt-onnx encode):   %.3f s  (%.2f ms/image, whole process incl. start-up)\n' "$rust" "$(echo "$rust * 1000 / $N" | bc -l)"
printf 'reference, one call/image: %.3f s  -> rust is %.1fx faster\n' "$per_image" "$(echo "$per_image / $rust" | bc -l)"
printf 'reference, one batch:      %.3f s  -> rust is %.1fx faster\n' "$batched" "$(echo "$batched / $rust" | bc -l)"
echo "token agreement with the reference (PIL): $(agree "$work/rust.json" "$work/ref.json")"
if [ -n "${TORCHVISION:-}" ]; then
    PYTHONPATH="$TORCHVISION" "$PY" ci/bench_image.py reference "$CONFIG" "$work/img" "$work/tv.json" --torchvision
    echo "token agreement with the torchvision-backed reference: $(agree "$work/rust.json" "$work/tv.json")"
fi
