"""Writes the ONNX project's per-operator conformance suite to a directory.

The cases come from the generators in the `onnx` wheel
(`onnx.backend.test.case.node.collect_testcases`), so the suite always matches the installed
onnx release. Layout, per case: `OUT/NAME/model.onnx` and `OUT/NAME/test_data_set_K/input_I.pb`
and `output_I.pb` (serialized TensorProto). `OUT/manifest.json` lists every case with its
tolerances and whether all its data are plain tensors (sequences, optionals and maps are not
written; a backend must refuse those models at load).

The suite's sequence cases all take or return sequences, which Rivet's tensor API cannot
carry, so a few cases of Rivet's own (named `rivet_*`, `"source": "rivet"` in the manifest) use
the sequence operators inside a graph with tensor inputs and outputs; their expected outputs
come from ONNX's reference evaluator.

Usage: .venv/bin/python models/onnx_node_tests.py OUT
"""

import json
import os
import shutil
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


def rivet_cases():
    """Sequence operators inside graphs with tensor inputs and outputs, expected outputs from
    onnx.reference.ReferenceEvaluator."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    f32 = TensorProto.FLOAT
    i64 = TensorProto.INT64

    def model(name, nodes, inputs, outputs, initializers=(), opset=17):
        graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
        # IR version 8 (opset 17's) or 9 (opset 19's), which ONNX Runtime 1.31 still reads; IR 3
        # for opsets up to 8, as the exporters of that time wrote, with every initializer also
        # a graph input (after the real inputs, so that input_I.pb still numbers those).
        ir = 3 if opset <= 8 else 8 if opset <= 17 else 9
        if ir == 3:
            graph.input.extend(
                helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers
            )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)

    def vi(name, elem, shape):
        return helper.make_tensor_value_info(name, elem, shape)

    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    a, b, c, d = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(4))
    cases = [
        (
            "rivet_split_to_sequence_at",
            model(
                "m",
                [
                    helper.make_node("SplitToSequence", ["x", "split"], ["s"], axis=0),
                    helper.make_node("SequenceAt", ["s", "pos"], ["y"]),
                ],
                [vi("x", f32, [6, 4])],
                [vi("y", f32, None)],
                [numpy_helper.from_array(np.array([2, 4], np.int64), "split"),
                 numpy_helper.from_array(np.array(-1, np.int64), "pos")],
            ),
            [x],
        ),
        (
            "rivet_split_to_sequence_chunks_concat",
            model(
                "m",
                [
                    helper.make_node("SplitToSequence", ["x", "split"], ["s"], axis=0),
                    helper.make_node("SequenceLength", ["s"], ["n"]),
                    helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0),
                ],
                [vi("x", f32, [6, 4])],
                [vi("y", f32, None), vi("n", i64, None)],
                [numpy_helper.from_array(np.array(4, np.int64), "split")],
            ),
            [x],
        ),
        (
            "rivet_split_to_sequence_stack",
            model(
                "m",
                [
                    helper.make_node("SplitToSequence", ["x"], ["s"], axis=1, keepdims=0),
                    helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0, new_axis=1),
                ],
                [vi("x", f32, [6, 4])],
                [vi("y", f32, None)],
            ),
            [x],
        ),
        (
            "rivet_sequence_construct_insert_erase",
            model(
                "m",
                [
                    helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
                    helper.make_node("SequenceInsert", ["s", "d", "one"], ["s2"]),
                    helper.make_node("SequenceErase", ["s2", "zero"], ["s3"]),
                    helper.make_node("SequenceLength", ["s3"], ["n"]),
                    helper.make_node("ConcatFromSequence", ["s3"], ["y"], axis=1),
                ],
                [vi(n, f32, [2, 3]) for n in "abcd"],
                [vi("y", f32, None), vi("n", i64, None)],
                [numpy_helper.from_array(np.array(1, np.int64), "one"),
                 numpy_helper.from_array(np.array(0, np.int64), "zero")],
            ),
            [a, b, c, d],
        ),
        (
            "rivet_sequence_empty_insert_front",
            model(
                "m",
                [
                    helper.make_node("SequenceEmpty", [], ["e"], dtype=f32),
                    helper.make_node("SequenceInsert", ["e", "a"], ["s1"]),
                    helper.make_node("SequenceInsert", ["s1", "b", "zero"], ["s2"]),
                    helper.make_node("ConcatFromSequence", ["s2"], ["y"], axis=-1, new_axis=1),
                ],
                [vi("a", f32, [2, 3]), vi("b", f32, [2, 3])],
                [vi("y", f32, None)],
                [numpy_helper.from_array(np.array(0, np.int64), "zero")],
            ),
            [a, b],
        ),
    ]
    cases += quantized_cases(model, vi, rng)
    cases += control_flow_cases(model, vi, rng)
    cases += fusion_cases(model, vi, rng)
    cases += half_cases(model, vi, rng)
    cases += legacy_cases(model, vi, rng)
    out = []
    for case in cases:
        name, m, inputs = case[:3]
        if len(case) > 3:
            # The reference evaluator lacks this form: the case says how to get its outputs.
            expected = case[3](inputs)
        else:
            feeds = {i.name: v for i, v in zip(m.graph.input, inputs)}
            expected = ReferenceEvaluator(m).run(None, feeds)
        out.append((name, m, inputs, [np.asarray(e) for e in expected]))
    return out


def fusion_cases(model, vi, rng):
    """Relu after Gemm and Conv, which the Candle executor applies inside the producing kernel
    when the Relu is the only reader, and must not when another node or the graph output also
    reads the producer's result."""
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    init = numpy_helper.from_array
    return [
        (
            "rivet_relu_fused_and_shared",
            model(
                "m",
                [
                    helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1),
                    helper.make_node("Relu", ["h1"], ["r1"]),
                    helper.make_node("Gemm", ["r1", "w2", "b2"], ["h2"]),
                    helper.make_node("Relu", ["h2"], ["r2"]),
                    helper.make_node("Add", ["h2", "r2"], ["y"]),
                    helper.make_node("Conv", ["img", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", ["c"], ["z"]),
                ],
                [vi("x", f32, [3, 5]), vi("img", f32, [2, 2, 5, 5])],
                [vi("y", f32, None), vi("z", f32, None)],
                [init(rng.standard_normal((4, 5)).astype(np.float32), "w1"),
                 init(rng.standard_normal(4).astype(np.float32), "b1"),
                 init(rng.standard_normal((4, 6)).astype(np.float32), "w2"),
                 init(rng.standard_normal(6).astype(np.float32), "b2"),
                 init(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "k"),
                 init(rng.standard_normal(3).astype(np.float32), "kb")],
            ),
            [rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((2, 2, 5, 5)).astype(np.float32)],
        ),
    ]


def legacy_cases(model, vi, rng):
    """Operators at opsets 1 to 6 with the attributes later opsets dropped: `broadcast` and
    `axis` on Add, Sub, Mul, Div and Gemm, BatchNormalization's `is_test`, `spatial` and
    `consumed_inputs`, PRelu's slope per channel, Concat's default axis; and a small network laid
    out as exporters of that time wrote one (Conv, its bias added with `axis=1`, BatchNormalization,
    PRelu, Flatten, Gemm). ONNX's reference evaluator gives the outputs; where it broadcasts by numpy's
    rule instead of the opset's (B placed by `axis`), it runs the same graph written with today's
    operators, B reshaped as the opset's rule places it."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    f32 = TensorProto.FLOAT
    init = numpy_helper.from_array

    def data(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def today(nodes, inputs, outputs, initializers, opset=15):
        """Expected outputs from the reference evaluator running the graph at `opset` (15 by
        default: its BatchNormalization for opsets 9 to 13 mixes the batch's statistics into
        inference)."""
        m = model("today", nodes, inputs, outputs, initializers, opset=opset)

        def run(feeds):
            return ReferenceEvaluator(m).run(None, {i.name: v for i, v in zip(m.graph.input, feeds)})

        return run

    x4 = data(2, 3, 4, 5)
    b_axis = data(3, 4)
    img = data(2, 3, 6, 6)
    k = data(4, 3, 3, 3)
    conv_bias = data(4)
    bn = [np.abs(data(4)) + 0.5, data(4), data(4), np.abs(data(4)) + 0.1]
    slope = np.abs(data(4)) * 0.25
    fc = data(5, 4 * 4 * 4)
    fc_bias = data(5)
    return [
        (
            "rivet_legacy_add_broadcast_trailing",
            model(
                "m",
                [helper.make_node("Add", ["x", "b"], ["y"], broadcast=1)],
                [vi("x", f32, [2, 3, 4, 5])],
                [vi("y", f32, [2, 3, 4, 5])],
                [init(data(4, 5), "b")],
                opset=6,
            ),
            [x4],
        ),
        (
            "rivet_legacy_mul_broadcast_axis",
            model(
                "m",
                [helper.make_node("Mul", ["x", "b"], ["y"], broadcast=1, axis=1)],
                [vi("x", f32, [2, 3, 4, 5])],
                [vi("y", f32, [2, 3, 4, 5])],
                [init(b_axis, "b")],
                opset=6,
            ),
            [x4],
            today(
                [helper.make_node("Mul", ["x", "b"], ["y"])],
                [vi("x", f32, [2, 3, 4, 5])],
                [vi("y", f32, None)],
                [init(b_axis.reshape(3, 4, 1), "b")],
            ),
        ),
        (
            "rivet_legacy_sub_scalar_opset1",
            model(
                "m",
                [helper.make_node("Sub", ["x", "b"], ["y"], broadcast=1, consumed_inputs=[0, 0])],
                [vi("x", f32, [3, 4])],
                [vi("y", f32, [3, 4])],
                [init(np.array([0.75], np.float32), "b")],
                opset=1,
            ),
            [data(3, 4)],
        ),
        (
            "rivet_legacy_div_same_shape",
            model(
                "m",
                [helper.make_node("Div", ["x", "d"], ["y"])],
                [vi("x", f32, [3, 4]), vi("d", f32, [3, 4])],
                [vi("y", f32, [3, 4])],
                opset=5,
            ),
            [data(3, 4), np.abs(data(3, 4)) + 0.5],
        ),
        (
            "rivet_legacy_gemm_broadcast",
            model(
                "m",
                [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1, broadcast=1, alpha=0.5, beta=2.0)],
                [vi("x", f32, [3, 5])],
                [vi("y", f32, [3, 4])],
                [init(data(4, 5), "w"), init(data(4), "c")],
                opset=6,
            ),
            [data(3, 5)],
        ),
        (
            "rivet_legacy_gemm_exact_c",
            model(
                "m",
                [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1)],
                [vi("x", f32, [5, 3]), vi("c", f32, [3, 4])],
                [vi("y", f32, [3, 4])],
                [init(data(5, 4), "w")],
                opset=6,
            ),
            [data(5, 3), data(3, 4)],
        ),
        (
            "rivet_legacy_batchnorm_is_test",
            model(
                "m",
                [helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"],
                                  is_test=1, epsilon=1e-3, momentum=0.9, spatial=1)],
                [vi("x", f32, [2, 4, 3, 3])],
                [vi("y", f32, [2, 4, 3, 3])],
                [init(v, n) for v, n in zip(bn, ["s", "b", "mean", "var"])],
                opset=6,
            ),
            [data(2, 4, 3, 3)],
        ),
        (
            "rivet_legacy_batchnorm_consumed_inputs",
            model(
                "m",
                [helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"],
                                  is_test=1, consumed_inputs=[0, 0, 0, 1, 1])],
                [vi("x", f32, [2, 4, 3, 3])],
                [vi("y", f32, [2, 4, 3, 3])],
                [init(v, n) for v, n in zip(bn, ["s", "b", "mean", "var"])],
                opset=1,
            ),
            [data(2, 4, 3, 3)],
            # The reference has no BatchNormalization-1: version 6 differs from it only by
            # dropping consumed_inputs.
            today(
                [helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"], is_test=1)],
                [vi("x", f32, [2, 4, 3, 3])],
                [vi("y", f32, None)],
                [init(v, n) for v, n in zip(bn, ["s", "b", "mean", "var"])],
                opset=6,
            ),
        ),
        (
            "rivet_legacy_prelu_per_channel",
            model(
                "m",
                [helper.make_node("PRelu", ["x", "slope"], ["y"])],
                [vi("x", f32, [2, 3, 4, 5])],
                [vi("y", f32, [2, 3, 4, 5])],
                [init(np.array([0.1, 0.2, 0.3], np.float32), "slope")],
                opset=6,
            ),
            [x4],
        ),
        (
            "rivet_legacy_concat_default_axis",
            model(
                "m",
                [helper.make_node("Concat", ["a", "b"], ["y"])],
                [vi("a", f32, [2, 3]), vi("b", f32, [2, 4])],
                [vi("y", f32, [2, 7])],
                opset=1,
            ),
            [data(2, 3), data(2, 4)],
            # The reference wants an axis on every Concat: Concat-1's default, 1, written out.
            today(
                [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
                [vi("a", f32, [2, 3]), vi("b", f32, [2, 4])],
                [vi("y", f32, None)],
                [],
                opset=4,
            ),
        ),
        (
            "rivet_legacy_network",
            model(
                "m",
                [
                    helper.make_node("Conv", ["img", "k"], ["c"], kernel_shape=[3, 3], pads=[0, 0, 0, 0]),
                    helper.make_node("Add", ["c", "cb"], ["cbias"], broadcast=1, axis=1),
                    helper.make_node("BatchNormalization", ["cbias", "s", "b", "mean", "var"], ["n"],
                                     is_test=1, epsilon=1e-5),
                    helper.make_node("PRelu", ["n", "slope"], ["p"]),
                    helper.make_node("Flatten", ["p"], ["flat"], axis=1),
                    helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1, broadcast=1),
                ],
                [vi("img", f32, [2, 3, 6, 6])],
                [vi("y", f32, [2, 5])],
                [init(k, "k"), init(conv_bias, "cb")]
                + [init(v, n) for v, n in zip(bn, ["s", "b", "mean", "var"])]
                + [init(slope, "slope"), init(fc, "fc"), init(fc_bias, "fcb")],
                opset=6,
            ),
            [img],
            today(
                [
                    helper.make_node("Conv", ["img", "k"], ["c"], kernel_shape=[3, 3]),
                    helper.make_node("Add", ["c", "cb"], ["cbias"]),
                    helper.make_node("BatchNormalization", ["cbias", "s", "b", "mean", "var"], ["n"], epsilon=1e-5),
                    helper.make_node("PRelu", ["n", "slope"], ["p"]),
                    helper.make_node("Flatten", ["p"], ["flat"], axis=1),
                    helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1),
                ],
                [vi("img", f32, [2, 3, 6, 6])],
                [vi("y", f32, None)],
                [init(k, "k"), init(conv_bias.reshape(4, 1, 1), "cb")]
                + [init(v, n) for v, n in zip(bn, ["s", "b", "mean", "var"])]
                + [init(slope.reshape(4, 1, 1), "slope"), init(fc, "fc"), init(fc_bias, "fcb")],
            ),
        ),
    ]


def half_cases(model, vi, rng):
    """Matrix products, convolutions and softmax in float16 and bfloat16, which the Candle
    executor computes in float and rounds where ONNX's reference rounds: checked here to the
    bit (the cases' tolerance is far below one step of either type), with sums long enough
    for the rounding of each addition to show."""
    from onnx import TensorProto, helper
    import ml_dtypes

    f16, bf16 = TensorProto.FLOAT16, TensorProto.BFLOAT16
    init = numpy_helper.from_array

    def data(shape, dtype, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)

    bf = ml_dtypes.bfloat16
    return [
        (
            "rivet_matmul_float16",
            model("m", [helper.make_node("MatMul", ["a", "b"], ["y"])],
                  [vi("a", f16, [2, 3, 40]), vi("b", f16, [40, 5])], [vi("y", f16, None)]),
            [data((2, 3, 40), np.float16), data((40, 5), np.float16)],
        ),
        (
            "rivet_matmul_bfloat16",
            model("m", [helper.make_node("MatMul", ["a", "b"], ["y"])],
                  [vi("a", bf16, [4, 64]), vi("b", bf16, [64, 3])], [vi("y", bf16, None)]),
            [data((4, 64), bf), data((64, 3), bf)],
        ),
        (
            "rivet_gemm_float16_alpha_beta",
            model("m", [helper.make_node("Gemm", ["a", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=1)],
                  [vi("a", f16, [3, 24])], [vi("y", f16, None)],
                  [init(data((6, 24), np.float16), "w"), init(data(6, np.float16), "c")]),
            [data((3, 24), np.float16)],
        ),
        (
            "rivet_gemm_bfloat16",
            model("m", [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=1)],
                  [vi("a", bf16, [24, 3]), vi("w", bf16, [24, 4])], [vi("y", bf16, None)],
                  [init(data((3, 4), bf), "c")]),
            [data((24, 3), bf), data((24, 4), bf)],
        ),
        (
            "rivet_conv_float16_bias",
            model("m", [helper.make_node("Conv", ["x", "k", "kb"], ["y"], pads=[1, 1, 1, 1])],
                  [vi("x", f16, [2, 3, 6, 6])], [vi("y", f16, None)],
                  [init(data((4, 3, 3, 3), np.float16), "k"), init(data(4, np.float16), "kb")]),
            [data((2, 3, 6, 6), np.float16)],
        ),
        (
            "rivet_conv_transpose_bfloat16",
            model("m", [helper.make_node("ConvTranspose", ["x", "k", "kb"], ["y"], strides=[2, 2])],
                  [vi("x", bf16, [1, 3, 4, 4])], [vi("y", bf16, None)],
                  [init(data((3, 2, 3, 3), bf), "k"), init(data(2, bf), "kb")]),
            [data((1, 3, 4, 4), bf)],
        ),
        (
            "rivet_softmax_float16_axes",
            model("m", [helper.make_node("Softmax", ["x"], ["last"]),
                        helper.make_node("Softmax", ["x"], ["middle"], axis=1)],
                  [vi("x", f16, [2, 30, 7])], [vi("last", f16, None), vi("middle", f16, None)]),
            [data((2, 30, 7), np.float16, 3.0)],
        ),
        (
            "rivet_softmax_bfloat16_axes",
            model("m", [helper.make_node("Softmax", ["x"], ["last"]),
                        helper.make_node("Softmax", ["x"], ["middle"], axis=1)],
                  [vi("x", bf16, [2, 30, 7])], [vi("last", bf16, None), vi("middle", bf16, None)]),
            [data((2, 30, 7), bf, 3.0)],
        ),
    ]


def control_flow_cases(model, vi, rng):
    """Loop and Scan in forms the suite leaves out: a Loop whose body stops it early and reads a
    value of the enclosing graph, and a Scan over two inputs along different axes and
    directions, with a reversed scan output along axis 1."""
    from onnx import TensorProto, helper

    f32, i64, b = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    init = numpy_helper.from_array
    loop_body = helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=f32),
            helper.make_node("Mul", ["w", "fi"], ["wi"]),
            helper.make_node("Add", ["acc_in", "wi"], ["acc_out"]),
            helper.make_node("Less", ["i", "stop"], ["go"]),
            helper.make_node("Identity", ["acc_out"], ["step"]),
        ],
        "body",
        [vi("i", i64, []), vi("c", b, []), vi("acc_in", f32, [3])],
        [vi("go", b, []), vi("acc_out", f32, [3]), vi("step", f32, [3])],
    )
    scan_body = helper.make_graph(
        [
            helper.make_node("Add", ["s_in", "a"], ["t"]),
            helper.make_node("Mul", ["t", "b"], ["s_out"]),
            helper.make_node("Sub", ["s_out", "a"], ["o"]),
        ],
        "body",
        [vi("s_in", f32, [2]), vi("a", f32, [2]), vi("b", f32, [2])],
        [vi("s_out", f32, [2]), vi("o", f32, [2])],
    )
    from onnx.reference import ReferenceEvaluator

    def scan(directions, output_direction):
        return helper.make_node("Scan", ["s0", "xa", "xb"], ["s", "ys"], body=scan_body,
                                num_scan_inputs=2, scan_input_axes=[1, 0],
                                scan_input_directions=directions, scan_output_axes=[1],
                                scan_output_directions=output_direction)

    scan_io = ([vi("s0", f32, [2]), vi("xa", f32, [2, 4]), vi("xb", f32, [4, 2])],
               [vi("s", f32, None), vi("ys", f32, None)])

    def reversed_scan(inputs):
        # ONNX's reference evaluator implements forward scans along axis 0 only. Scanning xa
        # backwards along axis 1 and writing ys backwards along axis 1 is a forward scan of xa
        # transposed and flipped, with ys flipped and transposed afterwards.
        s0, xa, xb = inputs
        forward = model(
            "m",
            [helper.make_node("Scan", ["s0", "xa", "xb"], ["s", "ys"], body=scan_body, num_scan_inputs=2)],
            [vi("s0", f32, [2]), vi("xa", f32, [4, 2]), vi("xb", f32, [4, 2])],
            scan_io[1],
        )
        feeds = {"s0": s0, "xa": np.flip(xa.T, 0).copy(), "xb": xb}
        s, ys = ReferenceEvaluator(forward).run(None, feeds)
        return [s, np.flip(ys, 0).T.copy()]

    return [
        (
            "rivet_loop_stops_early_reading_outer",
            model(
                "m",
                [helper.make_node("Loop", ["trips", "go0", "acc0"], ["acc", "steps"], body=loop_body)],
                [vi("w", f32, [3]), vi("acc0", f32, [3])],
                [vi("acc", f32, None), vi("steps", f32, None)],
                [init(np.array(10, np.int64), "trips"), init(np.array(True), "go0"),
                 init(np.array(3, np.int64), "stop")],
            ),
            [rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)],
        ),
        (
            "rivet_scan_axes_and_directions",
            model("m", [scan([1, 0], [1])], *scan_io),
            [rng.standard_normal(2).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32),
             (rng.standard_normal((4, 2)) * 0.5).astype(np.float32)],
            reversed_scan,
        ),
    ]


def quantized_cases(model, vi, rng):
    """8-bit integer arithmetic and the quantized operators in the forms the suite leaves out:
    per-channel QLinearConv with a bias, per-column MatMulInteger, per-axis int8 QDQ."""
    from onnx import TensorProto, helper

    f32, i8, u8, i32 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32
    init = numpy_helper.from_array
    return [
        (
            "rivet_int8_arithmetic_wraps",
            model(
                "m",
                [
                    helper.make_node("Add", ["a", "b"], ["sum"]),
                    helper.make_node("Mul", ["a", "b"], ["product"]),
                    helper.make_node("Sub", ["a", "b"], ["difference"]),
                    helper.make_node("Neg", ["a"], ["negated"]),
                ],
                [vi("a", i8, [8]), vi("b", i8, [8])],
                [vi(n, i8, None) for n in ("sum", "product", "difference", "negated")],
            ),
            [np.array([100, -100, 127, -128, 5, -7, 64, 0], np.int8),
             np.array([100, -100, 1, -1, -9, 3, 2, -128], np.int8)],
        ),
        (
            "rivet_qlinearconv_per_channel_bias",
            model(
                "m",
                [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"],
                                  ["y"], pads=[1, 1, 1, 1], strides=[2, 2])],
                [vi("x", i8, [1, 3, 5, 5])],
                [vi("y", i8, None)],
                [init(np.array(0.05, np.float32), "xs"), init(np.array(-3, np.int8), "xz"),
                 init(rng.integers(-60, 60, (4, 3, 3, 3)).astype(np.int8), "w"),
                 init(np.array([0.01, 0.02, 0.015, 0.03], np.float32), "ws"),
                 init(np.zeros(4, np.int8), "wz"),
                 init(np.array(0.1, np.float32), "ys"), init(np.array(5, np.int8), "yz"),
                 init(np.array([100, -250, 0, 40], np.int32), "bias")],
            ),
            [rng.integers(-128, 128, (1, 3, 5, 5)).astype(np.int8)],
        ),
        (
            "rivet_matmulinteger_per_column",
            model(
                "m",
                [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])],
                [vi("a", u8, [3, 4]), vi("b", u8, [4, 5])],
                [vi("y", i32, None)],
                [init(np.array(12, np.uint8), "az"),
                 init(np.array([0, 3, 128, 255, 7], np.uint8), "bz")],
            ),
            [rng.integers(0, 256, (3, 4)).astype(np.uint8),
             rng.integers(0, 256, (4, 5)).astype(np.uint8)],
        ),
        (
            "rivet_qdq_per_axis_int8",
            model(
                "m",
                [
                    helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
                    helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1),
                ],
                [vi("x", f32, [2, 3, 4])],
                [vi("q", i8, None), vi("y", f32, None)],
                [init(np.array([0.02, 0.1, 0.5], np.float32), "s"),
                 init(np.array([-10, 0, 20], np.int8), "z")],
                opset=19,
            ),
            [(rng.standard_normal((2, 3, 4)) * 8).astype(np.float32)],
        ),
    ]


def fresh(folder):
    """An empty `folder`: files a previous run wrote there must not outlive the case."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


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
        folder = fresh(os.path.join(out, case.name))
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
                "source": "onnx",
            }
        )
    for name, model, inputs, outputs in rivet_cases():
        folder = fresh(os.path.join(out, name))
        data = os.path.join(folder, "test_data_set_0")
        os.makedirs(data, exist_ok=True)
        onnx.save(model, os.path.join(folder, "model.onnx"))
        for i, v in enumerate(inputs):
            write_tensor(os.path.join(data, f"input_{i}.pb"), model.graph.input[i].name, v)
        for i, v in enumerate(outputs):
            write_tensor(os.path.join(data, f"output_{i}.pb"), model.graph.output[i].name, v)
        # BatchNormalization folds its statistics into one scale and shift, which rounds
        # differently from the reference's four steps: the legacy cases allow for that.
        rtol, atol = (1e-5, 1e-7) if name.startswith("rivet_legacy_") else (1e-6, 0.0)
        manifest.append(
            {
                "name": name,
                "rtol": rtol,
                "atol": atol,
                "data_sets": 1,
                "tensors_only": True,
                "ops": sorted({n.op_type for n in model.graph.node}),
                "source": "rivet",
            }
        )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"onnx": onnx.__version__, "cases": manifest}, f, indent=1)
    print(f"{len(manifest)} cases written to {out} (onnx {onnx.__version__}, with Rivet's own)")


if __name__ == "__main__":
    main()
