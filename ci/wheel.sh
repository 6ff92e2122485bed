#!/usr/bin/env bash
# The ways in besides a checkout, checked as a user would meet them (ci/test.sh runs this):
#   - the wheel (ci/wheel/pyproject.toml), built by maturin from the dev build this checkout
#     already has (only the binary is relinked, stripped), manylinux-tagged, at most 40 MB;
#   - installed with `pip install` into a fresh virtual environment and run with no Rust
#     toolchain on PATH, outside the checkout: `--version` names that environment's ONNX
#     Runtime, `verify` passes a fixture on it and tract, `export` + `generate --greedy` give
#     the reference's tokens;
#   - installed without its onnxruntime dependency: verify skips ONNX Runtime saying what it
#     tried, and passes on tract;
#   - installed with `pipx install`: the link on PATH finds the ONNX Runtime of pipx's
#     environment for it;
#   - `cargo install --path .` (the dev profile, reusing the same build).
# Needs .venv (ci/setup.sh: maturin) and network access to the package index only for pip's
# dependencies of the wheel (onnxruntime, from pip's cache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. ci/lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

stage "wheel: maturin build --profile dev"
(cd ci/wheel && "$root/.venv/bin/maturin" build --quiet --profile dev --out "$work/dist")
wheel=$(ls "$work"/dist/igpt_onnx-*.whl)
size=$(stat -c %s "$wheel")
echo "wheel: $(basename "$wheel"): $((size / 1000000)).$(((size % 1000000) / 100000)) MB"
if [ "$size" -gt 40000000 ]; then
  echo "error: the wheel is $size bytes, over 40 MB" >&2
  exit 1
fi
case "$(basename "$wheel")" in
*manylinux*) ;;
*)
  echo "error: $(basename "$wheel") is not manylinux-tagged" >&2
  exit 1
  ;;
esac

stage "wheel: pip install into a fresh environment, run with no Rust toolchain on PATH"
python3 -m venv "$work/env"
"$work/env/bin/pip" install --quiet --disable-pip-version-check "$wheel"
# Only the environment's bin/ and the base system on PATH, run from outside the checkout.
clean() { (cd "$work" && env -i HOME="$HOME" PATH="$1:/usr/bin:/bin" "${@:2}"); }
if clean "$work/env/bin" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "error: a Rust toolchain is on the clean PATH" >&2
  exit 1
fi
version=$(clean "$work/env/bin" igpt-onnx --version)
echo "$version"
want="ONNX Runtime: $work/env/lib/"
if ! grep -q "^$want.*(via this binary's environment)$" <<<"$version"; then
  echo "error: the installed binary does not use its environment's ONNX Runtime" >&2
  exit 1
fi
clean "$work/env/bin" igpt-onnx verify --model "$root/graphs/causal-lm/causal-lm.onnx" \
  --fixture "$root/fixtures/causal-lm" --require ort-cpu --require tract | tail -n 1
clean "$work/env/bin" igpt-onnx export --weights "$root/fixtures/greedy/model" --head decoder \
  --out "$work/greedy" >/dev/null
clean "$work/env/bin" igpt-onnx generate --model "$work/greedy/decoder.onnx" --runtime ort-cpu \
  --greedy --max-new-tokens 32 --tokens-out "$work/tokens.json"
"$work/env/bin/python" - "$root/fixtures/greedy/generations.json" "$work/tokens.json" <<'EOF'
import json, sys
reference = json.load(open(sys.argv[1]))["generations"][0]
assert reference["prompt"] == [[512]] and reference["max_new_tokens"] == 32, reference["description"]
got = json.load(open(sys.argv[2]))["tokens"]
if got != reference["tokens"]:
    sys.exit(f"error: the wheel's generate --greedy gave {got}, the reference {reference['tokens']}")
print(f"wheel: generate --greedy equals the reference's {len(got[0]) - 1} tokens")
EOF

stage "wheel: installed without onnxruntime"
python3 -m venv "$work/bare"
"$work/bare/bin/pip" install --quiet --disable-pip-version-check --no-deps "$wheel"
out=$(clean "$work/bare/bin" igpt-onnx verify --model "$root/graphs/causal-lm/causal-lm.onnx" \
  --fixture "$root/fixtures/causal-lm")
grep "^runtime ort-cpu: skipped" <<<"$out"
grep -q "this binary's environment: no onnxruntime/capi/libonnxruntime\* under $work/bare" <<<"$out" || {
  echo "error: the skip does not say what was tried: $out" >&2
  exit 1
}
tail -n 1 <<<"$out"

stage "wheel: pipx install"
PIPX_HOME="$work/pipx" PIPX_BIN_DIR="$work/pipx-bin" "$root/.venv/bin/pipx" install --quiet "$wheel"
version=$(clean "$work/pipx-bin" igpt-onnx --version)
grep "^ONNX Runtime: $work/pipx/venvs/igpt-onnx/.*(via this binary's environment)$" <<<"$version" || {
  echo "error: pipx's igpt-onnx does not use its environment's ONNX Runtime: $version" >&2
  exit 1
}

stage "cargo install --path ."
cargo install --quiet --path . --debug --locked --offline --root "$work/cargo"
"$work/cargo/bin/igpt-onnx" --version | head -n 1
