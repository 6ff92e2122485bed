"""A fault-injecting `cmd:` runtime for the debug tests: ONNX Runtime (Python, CPU) running a
copy of the graph whose node IGPT_FAULT_NODE has its first output scaled by IGPT_FAULT_SCALE
(default 1.002). Everything else is ci/adapters/ort_python.py, whose session it wraps.

    tests/it/adapters/fault serve MODEL
"""

import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "ci", "adapters"))

import onnxruntime as ort  # noqa: E402
import ort_python  # noqa: E402

NODE = os.environ.get("IGPT_FAULT_NODE", "")
SCALE = float(os.environ.get("IGPT_FAULT_SCALE", "1.002"))
REAL_SESSION = ort.InferenceSession


def elem_type(model_path, model, name):
    """The element type of tensor `name`, from the graph's declarations or shape inference."""
    for v in list(model.graph.value_info) + list(model.graph.output):
        if v.name == name and v.type.tensor_type.elem_type:
            return v.type.tensor_type.elem_type
    # Inference reads the file itself, so graphs past protobuf's 2 GB limit work too.
    inferred = model_path + ".inferred.onnx"
    onnx.shape_inference.infer_shapes_path(model_path, inferred)
    try:
        graph = onnx.load(inferred, load_external_data=False).graph
    finally:
        os.remove(inferred)
    for v in list(graph.value_info) + list(graph.output):
        if v.name == name and v.type.tensor_type.elem_type:
            return v.type.tensor_type.elem_type
    return onnx.TensorProto.FLOAT


def faulty_session(path, *args, **kwargs):
    # Weights stay where they are (external data is resolved beside the model file).
    model = onnx.load(path, load_external_data=False)
    nodes = model.graph.node
    at = [i for i, n in enumerate(nodes) if n.name == NODE]
    if not at:
        # The graph does not hold the node: run it as it is.
        return REAL_SESSION(path, *args, **kwargs)
    node = nodes[at[0]]
    out = node.output[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type(path, model, out))
    node.output[0] = out + ".unfaulted"
    scale = numpy_helper.from_array(np.array(SCALE, dtype=dtype), "fault.scale")
    model.graph.initializer.append(scale)
    nodes.insert(at[0] + 1, helper.make_node("Mul", [node.output[0], "fault.scale"], [out], name="fault.mul"))
    faulted = path + ".fault.onnx"
    onnx.save(model, faulted)
    try:
        return REAL_SESSION(faulted, *args, **kwargs)
    finally:
        os.remove(faulted)


ort.InferenceSession = faulty_session

def record_peak():
    """Appends this process's peak resident KiB to IGPT_FAULT_RSS, where set (ci/debug-memory.sh)."""
    path = os.environ.get("IGPT_FAULT_RSS")
    if path:
        import resource

        with open(path, "a") as f:
            f.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n")


if __name__ == "__main__":
    try:
        code = ort_python.main()
    finally:
        record_peak()
    sys.exit(code)
