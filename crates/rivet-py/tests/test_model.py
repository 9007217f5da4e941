"""rivet.load and Model.run against PyTorch's references, and how arrays go in and out."""

import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import rivet
from conftest import MODELS, read_case

# Every bundled model with reference cases, on every backend that reads its format: within 1e-5
# of PyTorch (relative to the reference's size for the larger activations of the CNN and the
# encoder, as numpy's assert_allclose weighs them).
READS = {".onnx": ["ort", "candle"], ".pt": ["tch"]}
CASES = [
    (path, backend)
    for path in sorted(MODELS.glob("*/*.*"))
    if path.suffix in READS and (path.parent / "cases").is_dir() and path.parent.name != "tabular"
    for backend in READS[path.suffix]
]


def test_the_bundled_models_are_all_here():
    assert {p.parent.name for p, _ in CASES} >= {"mlp", "cnn", "encoder"}


@pytest.mark.parametrize("path,backend", CASES, ids=[f"{p.name}-{b}" for p, b in CASES])
def test_every_case_matches_pytorch(path, backend):
    model = rivet.load(path, backend=backend, threads=1)
    assert model.backend == backend
    cases = sorted((path.parent / "cases").iterdir())
    assert cases
    for case in cases:
        inputs, expected = read_case(case)
        outputs = model.run(inputs)
        assert list(outputs) == [o.name for o in model.outputs]
        for name, want in expected.items():
            got = outputs[name]
            assert got.dtype == want.dtype and got.shape == want.shape, (case, name)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{case} {name}")


def test_signature_as_numpy_types(mlp):
    [features] = mlp.inputs
    assert (features.name, features.dtype, features.shape) == ("features", np.dtype(np.float32), (None, 16))
    [logits] = mlp.outputs
    assert (logits.name, logits.dtype, logits.shape) == ("logits", np.dtype(np.float32), (None, 3))
    assert "features" in repr(features)


def test_positional_and_named_inputs_agree(mlp):
    x = np.random.default_rng(1).standard_normal((4, 16), dtype=np.float32)
    named = mlp.run({"features": x})["logits"]
    np.testing.assert_array_equal(mlp.run([x])["logits"], named)
    np.testing.assert_array_equal(mlp.run((x,))["logits"], named)


def test_outputs_are_rivets_buffers_freed_with_the_last_array(mlp):
    x = np.ones((2, 16), np.float32)
    logits = mlp.run({"features": x})["logits"]
    # NumPy keeps the object it read the array from as the base (beside the interface's capsule).
    base = logits.base
    buffer = base[0] if isinstance(base, tuple) else base
    del base
    assert type(buffer).__name__ == "OutputBuffer" and not logits.flags.owndata
    assert logits.flags.c_contiguous and logits.flags.writeable
    logits[0, 0] = 42.0  # the array owns the only reference: writing is allowed
    assert logits[0, 0] == 42.0
    # The array is Rivet's buffer itself; a second run writes a buffer of its own.
    assert np.shares_memory(logits, np.asarray(buffer))
    again = mlp.run({"features": x})["logits"]
    assert not np.shares_memory(logits, again)
    view = logits[1:]
    gone = weakref.ref(buffer)
    del buffer, logits
    gc.collect()
    assert gone() is not None, "a view still uses the buffer"
    del view
    gc.collect()
    assert gone() is None, "the buffer outlived every array over it"


def test_contiguous_inputs_are_read_in_place_and_others_copied_once(mlp):
    rows = 1 << 16  # 4 MiB of features
    c_order = np.random.default_rng(2).standard_normal((rows, 16), dtype=np.float32)
    f_order = np.asfortranarray(c_order)
    mlp.run({"features": c_order[:2]})  # first-run allocations out of the way
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        in_place = mlp.run({"features": c_order})
        _, peak_in_place = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        copied = mlp.run({"features": f_order})
        _, peak_copied = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # NumPy reports its allocations to tracemalloc; Rivet's outputs are Rust's, not traced.
    assert peak_in_place < c_order.nbytes // 8, peak_in_place
    assert c_order.nbytes <= peak_copied < 2 * c_order.nbytes, peak_copied
    np.testing.assert_array_equal(in_place["logits"], copied["logits"])


def test_strided_misaligned_and_byte_swapped_inputs_give_the_same_answer(mlp):
    x = np.random.default_rng(3).standard_normal((3, 16), dtype=np.float32)
    want = mlp.run({"features": x})["logits"]
    strided = np.zeros((3, 32), np.float32)
    strided[:, ::2] = x
    raw = np.zeros(x.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(3, 16)
    misaligned[...] = x
    for variant in (strided[:, ::2], misaligned, x.astype(">f4")):
        np.testing.assert_array_equal(mlp.run({"features": variant})["logits"], want)


def test_dlpack_and_array_interface_inputs(mlp):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).standard_normal((2, 16), dtype=np.float32)
    want = mlp.run({"features": x})["logits"]
    np.testing.assert_array_equal(mlp.run({"features": torch.from_numpy(x)})["logits"], want)

    class Interface:
        def __init__(self, array):
            self.__array_interface__ = array.__array_interface__
            self.keep = array

    np.testing.assert_array_equal(mlp.run({"features": Interface(x)})["logits"], want)


def test_outputs_outlive_their_model_and_cycles_do_not_leak():
    import resource

    def cycle():
        model = rivet.load(MODELS / "mlp" / "mlp.onnx", backend="candle")
        out = model.run({"features": np.ones((8, 16), np.float32)})["logits"]
        del model
        return out

    kept = cycle()
    np.testing.assert_array_equal(kept, cycle())  # read after its model is gone
    for _ in range(200):
        cycle()
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(5000):
        cycle()
    gc.collect()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # A model's weights and plan are about 10 KiB and each output 96 bytes: leaking either on
    # every cycle would add 50 MB or more; allocator noise stays far below 16 MiB.
    assert grown_kib < 16 * 1024, grown_kib


def test_eight_threads_on_one_model_answer_as_one(mlp):
    from concurrent.futures import ThreadPoolExecutor

    batches = [np.random.default_rng(seed).standard_normal((seed + 1, 16), dtype=np.float32) for seed in range(32)]
    serial = [mlp.run({"features": b})["logits"] for b in batches]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda b: mlp.run({"features": b})["logits"], batches))
    for want, got in zip(serial, threaded):
        np.testing.assert_array_equal(got, want)


def test_empty_batch(mlp):
    out = mlp.run({"features": np.zeros((0, 16), np.float32)})["logits"]
    assert out.shape == (0, 3) and out.dtype == np.float32


def test_every_dtype_round_trips_through_identity():
    for dtype in ["f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "bool"]:
        model = rivet.load(MODELS / "identity" / f"identity_{dtype}.onnx", backend="ort")
        [spec] = model.inputs
        x = (np.arange(6).reshape(2, 3) % 2 if dtype == "bool" else np.arange(6).reshape(2, 3)).astype(spec.dtype)
        [out] = model.run([x]).values()
        assert out.dtype == x.dtype, dtype
        np.testing.assert_array_equal(out, x)


def test_the_gil_is_released_while_a_model_runs():
    model = rivet.load(MODELS / "cnn" / "cnn.onnx", backend="ort", threads=1)
    [image] = model.inputs
    # One run of a second or more on one thread (20,000 images of the CNN: about 2 s here).
    x = np.random.default_rng(5).standard_normal((20000, *image.shape[1:]), dtype=np.float32)
    count = [0]
    stop = threading.Event()
    started = threading.Event()

    def spin():
        started.set()
        while not stop.is_set():
            count[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    started.wait()
    try:
        before = count[0]
        model.run({image.name: x})
        during = count[0] - before
    finally:
        stop.set()
        spinner.join()
    # Holding the GIL through the run would leave the spinner no turn at all while it lasts.
    assert during > 1000, during


def test_docstrings_reach_help():
    assert "Runs the model" in rivet.Model.run.__doc__
    assert "threads" in rivet.load.__doc__
    assert "feature" in rivet.Pipeline.transform.__doc__
