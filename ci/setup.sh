#!/usr/bin/env bash
# Idempotent set-up: a project-local virtual environment (.venv, ignored by git) holding the
# ONNX Runtime shared library (from the onnxruntime wheel) and the official ONNX checker.
# Needs only python3 and a Rust toolchain; installs nothing globally.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/ci/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $venv (onnxruntime, onnx, openvino) ..."
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
if [ -z "$lib" ]; then
  echo "error: the onnxruntime wheel installed no libonnxruntime.so.*" >&2
  exit 2
fi
ov=$(ls "$venv"/lib/python3*/site-packages/openvino/libs/libopenvino_c.so* 2>/dev/null | head -n1)
if [ -z "$ov" ]; then
  echo "error: the openvino wheel installed no openvino/libs/libopenvino_c.so*" >&2
  exit 2
fi
echo "$want" > "$stamp"
echo "ONNX Runtime library: $lib"
echo "OpenVINO library: $ov"
