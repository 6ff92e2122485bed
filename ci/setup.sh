#!/usr/bin/env bash
# Idempotent set-up: a project-local virtual environment (.venv, ignored by git) holding the
# ONNX Runtime shared library (from the onnxruntime wheel), the official ONNX checker, the
# engines and OpenVINO; and one environment per older ONNX Runtime release the tests run
# (.venv-ort/<release>, ci/ort-releases.txt). Needs only python3 and a Rust toolchain; installs nothing globally but
# Debian's chromium (below). With node and npm present, also the `cmd:` runtime adapters'
# packages (onnxruntime-node, onnxruntime-web) into ci/adapters/node_modules (ignored by git),
# from the committed lockfile.
#
# `--core`: ONNX Runtime alone (ci/requirements-core.txt), what the demo needs; a later full
# set-up adds the rest to the same environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
core=false
if [ "${1:-}" = "--core" ]; then
  core=true
fi

# /dev/null must be the null device. Where something on the machine has replaced it with a regular
# file, everything written "to /dev/null" (build-script probes: `cc -?`, anyhow's feature probe)
# is read back by whatever reads it, and cargo's rustc probe (stdin = /dev/null) then fails with
# "failed to run `rustc` to learn about target-specific information". Put the device back when
# root; otherwise stop with that reason rather than a cryptic compiler error.
if [ ! -c /dev/null ]; then
  if [ "$(id -u)" = 0 ] && rm -f /dev/null && mknod -m 666 /dev/null c 1 3; then
    echo "note: /dev/null was not the null device (a regular file?); recreated it"
  else
    echo "error: /dev/null is not the null device (a regular file?) and cannot be recreated here; cargo's rustc probe reads it" >&2
    exit 2
  fi
fi

if [ "$core" = false ]; then
# The Node adapters: `npm ci --ignore-scripts` (onnxruntime-node's install script would download
# CUDA binaries from outside the registry; its CPU binaries ship in the package).
adapters="$root/ci/adapters"
node_stamp="$adapters/node_modules/.package-lock.sha256"
node_want=$(sha256sum "$adapters/package-lock.json" | cut -d' ' -f1)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node/npm not found: the cmd:ci/adapters/ort-node and ort-web adapters are not set up (their tests skip unless CI is set)"
elif [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_want" ]; then
  echo "setting up $adapters/node_modules (onnxruntime-node, onnxruntime-web) ..."
  (cd "$adapters" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$node_want" > "$node_stamp"
fi

# Headless Chromium for the web page's browser test (tests/it/web.rs): Debian's package, installed
# when missing and this runs as root; otherwise that test skips with a message (unless CI is set).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium (headless browser for tests/it/web.rs) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  else
    echo "/usr/bin/chromium not found and not root: the browser test skips (unless CI is set); install Debian's chromium"
  fi
fi
fi

# Older ONNX Runtime releases for `ort-python@VERSION` (tests/it/matrix.rs): one virtual
# environment per pinned release in ci/ort-releases.txt, .venv-ort/<release>/ (ignored by git),
# holding that onnxruntime wheel and the numpy it runs with; remade only when its pin changes.
if [ "$core" = false ]; then
  while read -r ort numpy; do
    case "$ort" in "" | "#"*) continue ;; esac
    dir="$root/.venv-ort/$ort"
    pin="onnxruntime==$ort $numpy"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pinned" 2>/dev/null)" = "$pin" ]; then
      continue
    fi
    echo "setting up $dir ($pin) ..."
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: "onnxruntime==$ort" "$numpy"
    echo "$pin" > "$dir/.pinned"
  done < "$root/ci/ort-releases.txt"
fi

venv="$root/.venv"
if [ "$core" = true ]; then
  req="$root/ci/requirements-core.txt"
  stamp="$venv/.requirements-core.sha256"
else
  req="$root/ci/requirements.txt"
  stamp="$venv/.requirements.sha256"
fi
want=$(cat "$req" "$root/ci/requirements-core.txt" | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $venv ($(grep -hoE '^[a-z][a-z0-9_.-]*' "$req" | paste -sd, -)) ..."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
(cd "$root/ci" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req")
lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
if [ -z "$lib" ]; then
  echo "error: the onnxruntime wheel installed no libonnxruntime.so.*" >&2
  exit 2
fi
echo "ONNX Runtime library: $lib"
if [ "$core" = false ]; then
  ov=$(ls "$venv"/lib/python3*/site-packages/openvino/libs/libopenvino_c.so* 2>/dev/null | head -n1)
  if [ -z "$ov" ]; then
    echo "error: the openvino wheel installed no openvino/libs/libopenvino_c.so*" >&2
    exit 2
  fi
  echo "OpenVINO library: $ov"
fi
echo "$want" > "$stamp"
