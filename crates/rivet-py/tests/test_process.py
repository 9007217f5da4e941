"""What a process maps and when: each test runs a fresh interpreter, since a library once loaded
stays loaded."""

import json
import os

from conftest import MODELS, run_python

MAPS = """
def mapped():
    text = open("/proc/self/maps").read()
    return {"torch": "libtorch_cpu" in text, "ort": "libonnxruntime" in text}
"""


def test_import_loads_no_backend_and_onnx_never_maps_libtorch():
    code = MAPS + f"""
import json, numpy as np, rivet
seen = {{"import": mapped()}}
model = rivet.load({str(MODELS / "mlp" / "mlp.onnx")!r})
model.run({{"features": np.zeros((1, 16), np.float32)}})
candle = rivet.load({str(MODELS / "mlp" / "mlp.onnx")!r}, backend="candle")
candle.run({{"features": np.zeros((1, 16), np.float32)}})
seen["onnx"] = mapped()
rivet.load({str(MODELS / "mlp" / "mlp.pt")!r}).run([np.zeros((1, 16), np.float32)])
seen["torchscript"] = mapped()
print(json.dumps(seen))
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["import"] == {"torch": False, "ort": False}
    assert seen["onnx"] == {"torch": False, "ort": True}
    assert seen["torchscript"] == {"torch": True, "ort": True}


def test_a_missing_libtorch_says_how_to_get_one():
    hide_torch = """
import importlib.util
find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "torch" else find(name, *a)
"""
    code = hide_torch + f"""
import rivet
try:
    rivet.load({str(MODELS / "mlp" / "mlp.pt")!r})
except rivet.ModelLoad as e:
    print(e.code, e)
"""
    env = {k: v for k, v in os.environ.items() if k != "LIBTORCH"}
    done = run_python(code, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "4 the tch backend needs libtorch 2.13 and this Python environment has none: install it with "
        "`pip install torch==2.13.0`, or set LIBTORCH to a libtorch 2.13 directory"
    )
    done = run_python(code.replace(hide_torch, ""), env={**env, "LIBTORCH": "/nonexistent"})
    assert done.stdout.startswith("4 LIBTORCH is /nonexistent, which has no lib/libtorch_cpu.so"), done


def test_libtorch_comes_from_the_environments_torch_package():
    code = MAPS + f"""
import rivet, torch, os
model = rivet.load({str(MODELS / "mlp" / "mlp.pt")!r})
lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
print(os.path.realpath(lib) in open("/proc/self/maps").read(), model.backend)
"""
    env = {k: v for k, v in os.environ.items() if k != "LIBTORCH"}
    done = run_python(code, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "tch"]
