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


def elem_type(model, name):
    """The element type of tensor `name`, from the graph's declarations or shape inference."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    for v in list(graph.value_info) + list(graph.output):
        if v.name == name and v.type.tensor_type.elem_type:
            return v.type.tensor_type.elem_type
    return onnx.TensorProto.FLOAT


def faulty_session(path, *args, **kwargs):
    model = onnx.load(path)
    nodes = model.graph.node
    at = [i for i, n in enumerate(nodes) if n.name == NODE]
    if not at:
        # The graph does not hold the node: run it as it is.
        return REAL_SESSION(path, *args, **kwargs)
    node = nodes[at[0]]
    out = node.output[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type(model, out))
    node.output[0] = out + ".unfaulted"
    scale = numpy_helper.from_array(np.array(SCALE, dtype=dtype), "fault.scale")
    model.graph.initializer.append(scale)
    nodes.insert(at[0] + 1, helper.make_node("Mul", [node.output[0], "fault.scale"], [out], name="fault.mul"))
    return REAL_SESSION(model.SerializeToString(), *args, **kwargs)


ort.InferenceSession = faulty_session

if __name__ == "__main__":
    sys.exit(ort_python.main())
