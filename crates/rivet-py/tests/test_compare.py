"""rivet.compare: one model through several backends, as `rivet compare` runs it."""

import numpy as np

import rivet
from conftest import MODELS, read_case


def test_backends_against_the_case_reference():
    result = rivet.compare(MODELS / "mlp" / "mlp.onnx", backends=["ort", "candle", "tch"])
    assert set(result.outputs) == {"ort", "candle"}
    assert isinstance(result.errors["tch"], rivet.RivetError)
    assert "PyTorch outputs" in result.reference
    inputs, expected = read_case(sorted((MODELS / "mlp" / "cases").iterdir())[0])
    for backend, outputs in result.outputs.items():
        want = np.abs(outputs["logits"] - expected["logits"]).max()
        assert result.max_abs_diff[backend] == want and want < 1e-5, backend
    assert result.pairwise[("ort", "candle")] == np.abs(result.outputs["ort"]["logits"] - result.outputs["candle"]["logits"]).max()
    assert "ort vs candle" in repr(result)
    # By default, the backends that read the format.
    assert set(rivet.compare(MODELS / "mlp" / "mlp.onnx").outputs) == {"ort", "candle"}


def test_generated_inputs_and_the_first_backend_as_reference(tmp_path):
    import shutil

    shutil.copy(MODELS / "cnn" / "cnn.onnx", tmp_path / "cnn.onnx")
    result = rivet.compare(tmp_path / "cnn.onnx", backends=["ort", "candle"])
    assert result.reference.startswith("ort")
    assert result.max_abs_diff["ort"] == 0.0
    assert 0 < result.max_abs_diff["candle"] < 1e-4
    [image] = result.inputs.values()
    assert image.dtype == np.float32 and image.shape[0] == 1 and -2 <= image.min() and image.max() < 2
