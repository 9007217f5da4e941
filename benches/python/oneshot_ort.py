"""One-shot ONNX inference in Python: the job of `rivet run MODEL.onnx --backend ort -i X -o OUT`
(load the model, read one .npy input per model input, run once, write each output as .npy).

  python oneshot_ort.py MODEL.onnx OUT_DIR INPUT.npy...
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime


def main():
    model, out = sys.argv[1], Path(sys.argv[2])
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {spec.name: np.load(path) for spec, path in zip(session.get_inputs(), sys.argv[3:])}
    outputs = session.run(None, feeds)
    out.mkdir(parents=True, exist_ok=True)
    for spec, value in zip(session.get_outputs(), outputs):
        np.save(out / f"{spec.name}.npy", value)


if __name__ == "__main__":
    main()
