"""igpt-onnx `cmd:` runtime adapter for ONNX Runtime's Python package (onnxruntime, CPU).

Speaks the file protocol of igpt-onnx's command runtime (docs/verify.md, "Any runtime: cmd:PROGRAM").
igpt-onnx also carries this file and runs it as `ort-python@VERSION` with the python of an
environment holding that onnxruntime release (any release from 1.15 on):

    ci/adapters/ort-python serve MODEL
    -> ready <provider> | error <one line> (MODEL does not load)
    <- run INPUTS_PATH OUTPUTS_PATH
    -> ok | error <one line>

Inputs and outputs are safetensors files (https://github.com/huggingface/safetensors: an
8-byte little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}},
then the raw little-endian data), read and written here with numpy alone.
"""

import json
import struct
import sys

import numpy as np
import onnxruntime as ort

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"input {name}: dtype {info['dtype']} is not F32, F16 or I64")
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype=np.dtype(dtype).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).astype(dtype, copy=False)
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = NAMES.get(arr.dtype)
        if dtype is None:  # other element types come back as float32
            arr, dtype = arr.astype(np.float32), "F32"
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for c in chunks:
            f.write(c)


def answer(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.stderr.write("usage: ort-python serve MODEL\n")
        return 2
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # External data is resolved beside the model file, as ONNX Runtime does for a path.
    try:
        session = ort.InferenceSession(sys.argv[2], opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # the release's own reason, on one line, in place of `ready`
        answer(f"error {one_line(e)}")
        return 1
    outputs = [o.name for o in session.get_outputs()]
    answer(f"ready onnxruntime {ort.__version__} (python) {','.join(session.get_providers())}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "run" or len(words) != 3:
            answer(f"error unknown request: {one_line(line)}")
            continue
        try:
            feed = read_safetensors(words[1])
            values = session.run(outputs, feed)
            write_safetensors(words[2], dict(zip(outputs, values)))
        except Exception as e:  # one answer per request, whatever went wrong
            answer(f"error {one_line(e)}")
            continue
        answer("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
