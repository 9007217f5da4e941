"""Rivet from Python in one page: load a model on each backend, run it, and check the answers
against PyTorch itself.

usage: python examples/python/quickstart.py   (after `make python`)
"""

from pathlib import Path

import numpy as np
import torch

import rivet

MODELS = Path(__file__).resolve().parents[2] / "models"

# The bundled MLP's first reference case: its input, and what PyTorch answered.
case = MODELS / "mlp" / "cases" / "b1"
features = np.load(case / "input.features.npy")

# PyTorch, from the TorchScript file the ONNX file was exported beside.
with torch.no_grad():
    expected = torch.jit.load(str(MODELS / "mlp" / "mlp.pt"))(torch.from_numpy(features)).numpy()

print(f"rivet {rivet.__version__}, backends: {', '.join(rivet.backends())}")
for path, backend in [("mlp/mlp.onnx", "ort"), ("mlp/mlp.onnx", "candle"), ("mlp/mlp.pt", "tch")]:
    model = rivet.load(MODELS / path, backend=backend, threads=1)
    logits = model.run({"features": features})["logits"]  # a dict of NumPy arrays by output name
    print(f"{backend:>6}  {path:<13} logits {np.array2string(logits[0], precision=4)}  "
          f"max |rivet - torch| = {np.abs(logits - expected).max():.2e}")

# A torch tensor goes in as it is (through DLPack), without a copy.
model = rivet.load(MODELS / "mlp" / "mlp.onnx")
print("from a torch tensor:", np.array_equal(model.run([torch.from_numpy(features)])["logits"],
                                             model.run([features])["logits"]))

# Every backend at once, as `rivet compare` does.
print(rivet.compare(MODELS / "mlp" / "mlp.onnx"))
