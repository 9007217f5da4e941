"""Writes the ONNX project's per-operator conformance suite to a directory.

The cases come from the generators in the `onnx` wheel
(`onnx.backend.test.case.node.collect_testcases`), so the suite always matches the installed
onnx release. Layout, per case: `OUT/NAME/model.onnx` and `OUT/NAME/test_data_set_K/input_I.pb`
and `output_I.pb` (serialized TensorProto). `OUT/manifest.json` lists every case with its
tolerances and whether all its data are plain tensors (sequences, optionals and maps are not
written; a backend must refuse those models at load).

Usage: .venv/bin/python models/onnx_node_tests.py OUT
"""

import json
import os
import sys
import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases


def write_tensor(path, name, value):
    proto = numpy_helper.from_array(np.asarray(value), name)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    manifest = []
    for case in cases:
        if case.kind != "node" or case.model is None:
            continue
        folder = os.path.join(out, case.name)
        os.makedirs(folder, exist_ok=True)
        onnx.save(case.model, os.path.join(folder, "model.onnx"))
        graph = case.model.graph
        input_names = [i.name for i in graph.input]
        output_names = [o.name for o in graph.output]
        tensors_only = True
        sets = 0
        for k, (inputs, outputs) in enumerate(case.data_sets or []):
            data = os.path.join(folder, f"test_data_set_{k}")
            os.makedirs(data, exist_ok=True)
            for role, values, names in (("input", inputs, input_names), ("output", outputs, output_names)):
                for i, value in enumerate(values):
                    if isinstance(value, onnx.TensorProto):
                        with open(os.path.join(data, f"{role}_{i}.pb"), "wb") as f:
                            f.write(value.SerializeToString())
                        continue
                    if isinstance(value, np.generic):
                        value = np.asarray(value)
                    if not isinstance(value, np.ndarray) or value.dtype == object:
                        tensors_only = False
                        continue
                    name = names[i] if i < len(names) else ""
                    write_tensor(os.path.join(data, f"{role}_{i}.pb"), name, value)
            sets += 1
        manifest.append(
            {
                "name": case.name,
                "rtol": float(case.rtol),
                "atol": float(case.atol),
                "data_sets": sets,
                "tensors_only": tensors_only,
                "ops": sorted({n.op_type for n in graph.node}),
            }
        )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"onnx": onnx.__version__, "cases": manifest}, f, indent=1)
    print(f"{len(manifest)} cases written to {out} (onnx {onnx.__version__})")


if __name__ == "__main__":
    main()
