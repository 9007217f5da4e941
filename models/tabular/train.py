"""Trains Rivet's tabular example: a churn model on exactly the features Rivet's pipeline makes.

1. generate.py writes a 20,000-row training table (seed 1, with the `churned` label);
2. `rivet prep fit` fits spec.toml on it -> tabular.pipeline.json (beside the model, so
   `rivet predict --model tabular.onnx` finds it);
3. `rivet prep transform` makes the [20000, 16] features; PyTorch trains an MLP on them;
4. the model is exported as TorchScript (tabular.pt, with tabular.spec.json) and ONNX
   (tabular.onnx, opset 17), one f32 input `features` [batch, 16] and one output
   `churn_probability` [batch, 1].

usage: .venv/bin/python models/tabular/train.py [--rivet target/debug/rivet]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class ChurnMLP(nn.Module):
    def __init__(self, features: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(features))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rivet", default=str(HERE.parent.parent / "target" / "debug" / "rivet"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.csv"
        subprocess.run([sys.executable, str(HERE / "generate.py"),
                        "--rows", "20000", "--seed", "1", "--label", "--out", str(train)], check=True)
        pipeline = HERE / "tabular.pipeline.json"
        subprocess.run([args.rivet, "prep", "fit", "--spec", str(HERE / "spec.toml"), "--data", str(train),
                        "--out", str(pipeline)], check=True)
        features = Path(tmp) / "features.npy"
        subprocess.run([args.rivet, "prep", "transform", "--pipeline", str(pipeline), "--data", str(train),
                        "--out", str(features)], check=True)
        x = torch.from_numpy(np.load(features))


        y = torch.from_numpy(pd.read_csv(train)["churned"].to_numpy(dtype=np.float32)).unsqueeze(1)

    torch.manual_seed(0)
    model = ChurnMLP(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCELoss()
    for epoch in range(30):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 256):
            batch = order[start:start + 256]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        p = model(x)
        accuracy = ((p > 0.5).float() == y).float().mean().item()
        print(f"training loss {loss_fn(p, y).item():.4f}, accuracy {accuracy:.3f}, churn rate {y.mean().item():.3f}")

    torch.jit.script(model).save(str(HERE / "tabular.pt"))
    torch.onnx.export(model, (x[:2],), str(HERE / "tabular.onnx"), dynamo=False, opset_version=17,
                      input_names=["features"], output_names=["churn_probability"],
                      dynamic_axes={"features": {0: "batch"}, "churn_probability": {0: "batch"}})
    spec = {
        "inputs": [{"name": "features", "dtype": "f32", "shape": ["batch", int(x.shape[1])]}],
        "outputs": [{"name": "churn_probability", "dtype": "f32", "shape": ["batch", 1]}],
    }
    (HERE / "tabular.spec.json").write_text(json.dumps(spec, indent=2) + "\n")


if __name__ == "__main__":
    main()
