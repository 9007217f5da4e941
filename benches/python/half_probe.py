"""How close Candle's float16 and bfloat16 operators land to the exact result, next to ONNX's
reference evaluator.

For each operator, a graph casts a float input to the half type, applies the operator, and
casts back to float. Candle runs it through `rivet run --backend candle`; ONNX's reference runs
it as is (rounding each step in the half type, as numpy does); the same graph run by the
reference in double on the same half-rounded inputs and parameters stands in for the exact
result. Printed per operator and type: how many
outputs equal the reference's, and each side's largest error against the double result,
divided by the largest magnitude of that result.

  .venv/bin/python benches/python/half_probe.py [--rivet target/release/rivet]
"""

import argparse
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

ROOT = Path(__file__).resolve().parents[2]
HALVES = {"float16": TP.FLOAT16, "bfloat16": TP.BFLOAT16}


def graph(name, nodes, half, inits, shape):
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=half), *nodes, helper.make_node("Cast", ["y"], ["out"], to=TP.FLOAT)]
    g = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TP.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TP.FLOAT, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def in_double(model):
    """`model` with every value cast to the half type rounded to it and then widened to double:
    the operator then runs in double on the very values the half-width graph holds."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in m.graph.node:
        nodes.append(n)
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        if n.op_type == "Cast" and to in HALVES.values():
            rounded = n.output[0] + "_rounded"
            nodes.append(helper.make_node("Cast", [rounded], [n.output[0]], to=TP.DOUBLE))
            n.output[0] = rounded
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def operators(half, rng, c):
    """(name, nodes, initializers) per operator; parameters are cast to `half` in the graph."""
    def param(name, values):
        return numpy_helper.from_array(np.asarray(values, np.float32), name + "0")

    def cast(*names):
        return [helper.make_node("Cast", [n + "0"], [n], to=half) for n in names]

    scale, shift = rng.standard_normal(c), rng.standard_normal(c)
    return [
        ("LayerNormalization", cast("s", "b") + [helper.make_node("LayerNormalization", ["h", "s", "b"], ["y"])],
         [param("s", rng.standard_normal(5)), param("b", rng.standard_normal(5))]),
        ("InstanceNormalization", cast("s", "b") + [helper.make_node("InstanceNormalization", ["h", "s", "b"], ["y"])],
         [param("s", scale), param("b", shift)]),
        ("BatchNormalization", cast("s", "b", "m", "v") + [helper.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["y"])],
         [param("s", scale), param("b", shift), param("m", rng.standard_normal(c)), param("v", rng.random(c) + 0.5)]),
        ("GroupNormalization", cast("s", "b") + [helper.make_node("GroupNormalization", ["h", "s", "b"], ["y"], num_groups=4)],
         [param("s", scale), param("b", shift)]),
        ("AveragePool", [helper.make_node("AveragePool", ["h"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], []),
        ("GlobalAveragePool", [helper.make_node("GlobalAveragePool", ["h"], ["y"])], []),
        ("MaxPool", [helper.make_node("MaxPool", ["h"], ["y"], kernel_shape=[2, 2])], []),
        ("ReduceMean", [helper.make_node("ReduceMean", ["h", "ax"], ["y"])],
         [numpy_helper.from_array(np.array([2, 3], np.int64), "ax")]),
        ("ReduceSum", [helper.make_node("ReduceSum", ["h", "ax"], ["y"])],
         [numpy_helper.from_array(np.array([1], np.int64), "ax")]),
        ("Softmax", [helper.make_node("Softmax", ["h"], ["y"])], []),
        ("LogSoftmax", [helper.make_node("LogSoftmax", ["h"], ["y"])], []),
        ("LpNormalization", [helper.make_node("LpNormalization", ["h"], ["y"])], []),
        ("LRN", [helper.make_node("LRN", ["h"], ["y"], size=3)], []),
        ("Sigmoid", [helper.make_node("Sigmoid", ["h"], ["y"])], []),
        ("Gelu", [helper.make_node("Gelu", ["h"], ["y"])], []),
        ("Softplus", [helper.make_node("Softplus", ["h"], ["y"])], []),
        ("Erf", [helper.make_node("Erf", ["h"], ["y"])], []),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rivet", default=str(ROOT / "target/release/rivet"))
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    shape = [2, 8, 5, 5]
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="rivet-half-"))
    np.save(work / "x.npy", x)
    print(f"{'operator':32s} {'equal to the reference':>24s} {'Candle error':>13s} {'reference error':>16s}")
    for type_name, half in HALVES.items():
        for name, nodes, inits in operators(half, rng, shape[1]):
            model = graph(name, nodes, half, inits, shape)
            onnx.save(model, work / "m.onnx")
            done = subprocess.run([args.rivet, "run", work / "m.onnx", "--backend", "candle", "-i", work / "x.npy",
                                   "-o", work / "out"], capture_output=True, text=True)
            label = f"{name} {type_name}"
            if done.returncode != 0:
                print(f"{label:32s} refused: {done.stderr.strip()[:90]}")
                continue
            got = np.load(work / "out" / "out.npy").astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = ReferenceEvaluator(model).run(None, {"x": x})[0].astype(np.float64)
                exact = ReferenceEvaluator(in_double(model)).run(None, {"x": x})[0].astype(np.float64)
            top = np.max(np.abs(exact))
            equal = f"{int(np.sum(got == ref))}/{ref.size}"
            print(f"{label:32s} {equal:>24s} {np.max(np.abs(got - exact)) / top:13.2e} {np.max(np.abs(ref - exact)) / top:16.2e}")
    os.system(f"rm -rf {work}")


if __name__ == "__main__":
    main()
