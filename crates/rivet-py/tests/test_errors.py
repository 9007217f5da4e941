"""Errors: the class and code of each kind, and the CLI's message for the same failure."""

import numpy as np
import pytest

import rivet
from conftest import CLI, MODELS, cli_error

MLP = MODELS / "mlp" / "mlp.onnx"


def test_kinds_carry_the_c_abi_codes():
    codes = {
        rivet.InvalidArgument: 1,
        rivet.InvalidInput: 2,
        rivet.InvalidTensor: 3,
        rivet.ModelLoad: 4,
        rivet.Unsupported: 5,
        rivet.Backend: 6,
        rivet.Io: 7,
        rivet.Panic: 8,
        rivet.InvalidOption: 9,
        rivet.Preprocess: 10,
    }
    for kind, code in codes.items():
        assert kind.code == code and issubclass(kind, rivet.RivetError), kind
    assert issubclass(rivet.InvalidInput, ValueError) and issubclass(rivet.InvalidArgument, TypeError)
    assert issubclass(rivet.Io, OSError)


def test_a_wrong_dtype_fails_as_in_the_cli(mlp, tmp_path):
    x = np.zeros((1, 16), np.float64)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(rivet.InvalidInput) as raised:
        mlp.run({"features": x})
    assert raised.value.code == 2
    assert str(raised.value) == cli_error("run", str(MLP), "--backend", "ort", "-i", f"features={tmp_path}/x.npy",
                                          "--out", str(tmp_path / "out"))
    assert str(raised.value) == 'invalid input: input "features": expected dtype f32, got f64'


def test_a_wrong_shape_and_an_unknown_name_name_the_input(mlp, tmp_path):
    x = np.zeros((1, 15), np.float32)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(rivet.InvalidInput) as raised:
        mlp.run({"features": x})
    assert str(raised.value) == cli_error("run", str(MLP), "--backend", "ort", "-i", f"features={tmp_path}/x.npy",
                                          "--out", str(tmp_path / "out"))
    with pytest.raises(rivet.InvalidInput) as raised:
        mlp.run({"feature": np.zeros((1, 16), np.float32)})
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    assert str(raised.value) == cli_error("run", str(MLP), "--backend", "ort", "-i", f"feature={tmp_path}/x.npy",
                                          "--out", str(tmp_path / "out"))
    # The model keeps working after its errors.
    assert mlp.run({"features": np.zeros((1, 16), np.float32)})["logits"].shape == (1, 3)


def test_a_missing_file_fails_as_in_the_cli(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(rivet.ModelLoad) as raised:
        rivet.load(missing, backend="ort")
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    assert str(raised.value) == cli_error("run", str(missing), "--backend", "ort", "-i", f"{tmp_path}/x.npy",
                                          "--out", str(tmp_path / "out"))


def test_options_are_checked_as_in_the_cli(tmp_path):
    with pytest.raises(rivet.InvalidOption) as raised:
        rivet.load(MLP, backend="ort", **{"ort.bogus": 1})
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    assert str(raised.value) == cli_error("run", str(MLP), "--backend", "ort", "-O", "ort.bogus=1",
                                          "-i", f"{tmp_path}/x.npy", "--out", str(tmp_path / "out"))
    with pytest.raises(rivet.InvalidOption, match="positive integer"):
        rivet.load(MLP, threads=0)
    with pytest.raises(rivet.InvalidOption, match="names no backend"):
        rivet.load(MLP, optimization="basic")
    model = rivet.load(MLP, backend="ort", optimization="basic", instances=2, threads=1)
    assert model.backend == "ort"


def test_an_unknown_backend_lists_the_registered_ones(tmp_path):
    with pytest.raises(rivet.InvalidOption) as raised:
        rivet.load(MLP, backend="nosuch")
    assert "registered: tch, ort, candle" in str(raised.value)
    np.save(tmp_path / "x.npy", np.zeros((1, 16), np.float32))
    cli = cli_error("run", str(MLP), "--backend", "nosuch", "-i", f"{tmp_path}/x.npy", "--out", str(tmp_path / "out"))
    # The same message but for the places a backend library is looked for (beside the program
    # or library that holds Rivet: the CLI's folder there, the package's here).
    head = str(raised.value).split("looked in: ")[0]
    assert head.endswith("cannot find a usable backend library librivet_nosuch.so; ") and cli.startswith(head)
    assert "site-packages/rivet/librivet_nosuch.so (not found)" in str(raised.value)


def test_inputs_of_the_wrong_kind(mlp):
    with pytest.raises(rivet.InvalidArgument) as raised:
        mlp.run(np.zeros((1, 16), np.float32))
    assert isinstance(raised.value, TypeError) and raised.value.code == 1
    assert "dict of arrays by input name or a list" in str(raised.value)
    with pytest.raises(rivet.InvalidInput, match="NumPy dtype uint32 has no Rivet dtype"):
        mlp.run({"features": np.zeros((1, 16), np.uint32)})
    with pytest.raises(rivet.InvalidInput, match="NumPy dtype object has no Rivet dtype"):
        mlp.run({"features": object()})


def test_an_unsupported_operator_is_refused_at_load_by_candle(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Det", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(rivet.RivetError) as raised:
        rivet.load(path, backend="candle")
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    assert str(raised.value) == cli_error("run", str(path), "--backend", "candle", "-i", f"{tmp_path}/x.npy",
                                          "--out", str(tmp_path / "out"))
    assert "Det" in str(raised.value) and raised.value.code == 5
