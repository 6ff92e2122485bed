"""The benchmarks behind ci/bench.py, a module per subcommand or family.

common     what they share: paths, timing and statistics, processes, the binary's variants
export     `export` and `verify`: export and golden-suite wall time and peak RSS
generate   `generate`: decoder ms/step against the reference's generate
decoder    `decoder`: every precision against onnxruntime-genai, the reference and the floor
forward    `forward` and `profile`: the causal-LM forward against torch.onnx.export's
image      `image`: the image processor against the reference's
attention  `attention`: the attention forms a profile could emit, one layer
accuracy   `accuracy` and `trained`: what each profile and precision costs in accuracy
steps      `steps`: decoder step time per precision, block size and accuracy level

Every module imports only the standard library at import time (numpy, onnx, onnxruntime and
torch where used), so both the project's and the torch interpreter load all of it.
"""
