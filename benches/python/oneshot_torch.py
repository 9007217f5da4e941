"""One-shot TorchScript inference in Python: the job of `rivet run MODEL.pt --backend tch -i X
-o OUT` (load the archive, read one .npy input per forward argument, run once under no_grad,
write each output as .npy, named output_N).

  python oneshot_torch.py MODEL.pt OUT_DIR INPUT.npy...
"""

import sys
from pathlib import Path

import numpy as np
import torch


def main():
    model, out = sys.argv[1], Path(sys.argv[2])
    module = torch.jit.load(model).eval()
    inputs = [torch.from_numpy(np.load(path)) for path in sys.argv[3:]]
    with torch.no_grad():
        result = module(*inputs)
    results = result if isinstance(result, (tuple, list)) else (result,)
    out.mkdir(parents=True, exist_ok=True)
    for i, value in enumerate(results):
        np.save(out / f"output_{i}.npy", value.numpy())


if __name__ == "__main__":
    main()
