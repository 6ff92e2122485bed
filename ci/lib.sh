# Shared by the ci/ scripts (source it): builds the igpt-onnx binary and prints its path,
# wherever cargo puts it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
#
#   bin=$(igpt_bin)           # the dev profile: the one both README commands build
#   bin=$(igpt_bin release)   # another cargo profile
# ci/benches/common.py (igpt_bin) finds it the same way for ci/bench.py.
igpt_bin() {
  local profile=${1:-dev} dir
  if [ "$profile" = dev ]; then
    cargo build --quiet --bin igpt-onnx >&2
    dir=debug
  else
    cargo build --quiet --profile "$profile" --bin igpt-onnx >&2
    dir=$profile
  fi
  local target
  target=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  echo "$target/$dir/igpt-onnx"
}

# `stage NAME`: prints `== NAME` with the seconds since the script started, so a run's log says
# where its time went.
stage() {
  echo "== $* [${SECONDS} s]"
}
