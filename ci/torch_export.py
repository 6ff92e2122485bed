"""The peer graph: `torch.onnx.export` of HF ImageGPTForCausalImageModeling (the same weights
as ours), inputs `input_ids`/`attention_mask`, output `logits`, batch and sequence dynamic.

Run in the fixtures environment (torch + transformers pinned in fixtures/requirements.txt):
    fixtures/.venv/bin/python ci/torch_export.py MODEL_DIR OUT.onnx
Prints the export time in seconds on the last line (`export_seconds <s>`).
"""

import sys
import time

import torch
from transformers import ImageGPTForCausalImageModeling


class Logits(torch.nn.Module):
    """The model with only `logits` as output (no cache), as our causal-lm head."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).logits


def main(model_dir, out):
    start = time.perf_counter()
    model = ImageGPTForCausalImageModeling.from_pretrained(model_dir).eval()
    ids = torch.zeros((1, 16), dtype=torch.int64)
    mask = torch.ones((1, 16), dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            Logits(model),
            (ids, mask),
            out,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch", 1: "sequence"},
            },
            opset_version=17,
            dynamo=False,
        )
    print(f"export_seconds {time.perf_counter() - start:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
