"""Seeds every fuzz target's corpus from the bundled models and test data.

Usage: python fuzz/seed.py OUT_DIR   (writes OUT_DIR/<target>/<name>; needs numpy)

The committed corpora (fuzz/corpus/<target>/) are these seeds after fuzzing and
`cargo fuzz cmin` (see `make fuzz-cmin`); this script is how they started.
"""

import io
import json
import pathlib
import random
import sys
import zipfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def write(out: pathlib.Path, target: str, name: str, data: bytes) -> None:
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def npy_bytes(array: np.ndarray, version=None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def seed_npy(out: pathlib.Path) -> None:
    for path in sorted(MODELS.glob("*/cases/*/*.npy")):
        write(out, "npy", f"{path.parent.parent.parent.name}-{path.parent.name}-{path.name}", path.read_bytes())
    small = {
        "f32_2x3": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64_scalar": np.array(2.5),
        "i8": np.array([-1, 2], dtype=np.int8),
        "i16": np.array([300], dtype=np.int16),
        "i64_empty": np.zeros((0, 4), dtype=np.int64),
        "u8": np.array([1, 2, 3], dtype=np.uint8),
        "bool": np.array([True, False]),
        "f16": np.array([1.5], dtype=np.float16),
        "fortran": np.asfortranarray(np.ones((2, 2), dtype=np.float32)),
        "big_endian": np.array([1, 2], dtype=">i4"),
        "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),
        "unicode": np.array(["ab"]),
    }
    for name, array in small.items():
        write(out, "npy", f"{name}.npy", npy_bytes(array))
    write(out, "npy", "v2.npy", npy_bytes(np.arange(3, dtype=np.int32), version=(2, 0)))
    write(out, "npy", "v3.npy", npy_bytes(np.arange(3, dtype=np.int32), version=(3, 0)))


def seed_spec(out: pathlib.Path) -> None:
    for path in sorted(MODELS.glob("*/*.spec.json")):
        write(out, "spec", path.name, path.read_bytes())
    extra = [
        {"inputs": [{"name": "x"}]},
        {"inputs": [{"name": "x", "dtype": "bool", "shape": []}], "outputs": []},
        {"inputs": [{"name": "a", "dtype": "i64", "shape": ["b", "s"]}, {"name": "m", "dtype": "u8", "shape": ["b", "s"]}]},
        {"inputs": [{"name": "a", "shape": [None, 3]}]},
    ]
    for i, spec in enumerate(extra):
        write(out, "spec", f"extra{i}.json", json.dumps(spec).encode())


def root_class(pt: zipfile.ZipFile):
    pkl = next(n for n in pt.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
    head = pt.read(pkl)[:512]
    module, cls = head[3:].split(b"\n")[:2]
    return pkl[: -len("data.pkl")], module.decode(), cls.decode()


def seed_torchscript(out: pathlib.Path) -> None:
    for i, path in enumerate(sorted(MODELS.glob("*/*.pt"))):
        data = path.read_bytes()
        write(out, "torchscript_archive", path.name, bytes([0]) + data)
        with zipfile.ZipFile(path) as pt:
            prefix, module, cls = root_class(pt)
            code = pt.read(f"{prefix}code/{module.replace('.', '/')}.py")
        write(out, "torchscript_code", f"{path.stem}.py", cls.encode() + b"\n" + code)
    # Small archives of the same layout (the fuzzer runs inputs up to 16 KiB): the root
    # module's pickle head and its code, stored and deflated.
    code = (
        b"class Net(Module):\n  __parameters__ = []\n"
        b"  def forward(self: __torch__.Net,\n    x: Tensor,\n    mask: Tensor) -> Tuple[Tensor, Tensor]:\n"
        b"    return (x, mask)\n"
    )
    for method, name in ((zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflated")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as z:
            z.writestr("net/data.pkl", b"\x80\x02c__torch__\nNet\nq\x00)\x81}q\x01b.")
            z.writestr("net/code/__torch__.py", code)
            z.writestr("net/version", b"3\n")
        write(out, "torchscript_archive", f"small_{name}.pt", bytes([0]) + buf.getvalue())
    for path in sorted(MODELS.glob("identity/identity_f32.onnx")):
        write(out, "torchscript_archive", path.name, bytes([1]) + path.read_bytes())


def seed_onnx(out: pathlib.Path) -> None:
    for path in sorted(MODELS.glob("*/*.onnx")):
        write(out, "candle_onnx", path.name, path.read_bytes())


def seed_structured(out: pathlib.Path) -> None:
    # `bind` and `tensor` read their bytes as choices (arbitrary::Unstructured): random seeds.
    rng = random.Random(2026)
    for target in ("bind", "tensor", "arrow"):
        for i in range(16):
            write(out, target, f"random{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(8, 256))))


# The table the `pipeline` target fits on (rivet_fuzz::prep::sample), as CSV for `rivet prep fit`.
SAMPLE_CSV = """a,b,c,t,d,s,n,u,v
1.5,1,x,2024-01-02T03:04:05,true,1,x,2024-01-02,1
,2,y,2024-02-29 23:59:59+02:00,false,2.5,,yesterday,x
NaN,2,x,1999-12-31,true,,y,2024-01-03,2
-3.0,7,é,2024-01-02T03:04:05Z,true,-0,x,2024-01-04,3
1e300,-4,y,2000-06-15 12:00:00,false,1e3,z,2024-01-05,4
"""

# Specs over the sample's columns, one step of each kind between them.
PIPELINE_SPECS = {
    "numeric.toml": """
[[steps]]
op = "select"
columns = ["a", "b", "s", "d"]
[[steps]]
op = "impute"
columns = ["a", "s"]
strategy = "median"
[[steps]]
op = "clip"
columns = ["a"]
min = -5
max = 5
[[steps]]
op = "log1p"
columns = ["b"]
[[steps]]
op = "standard_scale"
columns = ["a", "b"]
[[steps]]
op = "min_max_scale"
columns = ["s"]
range = [0.0, 1.0]
[[steps]]
op = "cast"
columns = ["d"]
""",
    "text.toml": """
[[steps]]
op = "one_hot"
columns = ["c"]
unseen = "other"
[[steps]]
op = "ordinal"
columns = ["v"]
unseen = "ignore"
[[steps]]
op = "datetime"
column = "t"
parts = ["year", "month", "day", "hour", "minute", "second", "weekday", "day_of_year"]
[[steps]]
op = "drop"
columns = ["u", "n", "s", "a"]
""",
    "derive.toml": """
[[steps]]
op = "derive"
name = "r"
expr = "(b + 1) / (b * b + 2) - -b"
[[steps]]
op = "bucketize"
columns = ["b"]
boundaries = [0.0, 2.0, 5.0]
[[steps]]
op = "rename"
columns = { r = "ratio" }
[[steps]]
op = "impute"
columns = ["a"]
strategy = "constant"
value = 0.5
[[steps]]
op = "select"
columns = ["a", "b", "ratio", "d"]
""",
    "format.toml": """
[[steps]]
op = "datetime"
column = "u"
format = "%Y-%m-%d"
parts = ["day"]
[[steps]]
op = "impute"
columns = ["v"]
strategy = "most_frequent"
""",
}


def seed_pipeline(out: pathlib.Path) -> None:
    # First byte: 0 a TOML spec, 1 a JSON spec, 2 a fitted pipeline (rivet_fuzz::pipeline).
    import subprocess
    import tempfile

    import tomllib

    specs = dict(PIPELINE_SPECS)
    specs["tabular.toml"] = (MODELS / "tabular" / "spec.toml").read_text()
    tabular = [ROOT / "target" / p / "rivet-tabular" for p in ("release", "debug")]
    tool = next((t for t in tabular if t.exists()), None)
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "sample.csv"
        data.write_text(SAMPLE_CSV)
        for name, text in specs.items():
            write(out, "pipeline", name, bytes([0]) + text.encode())
            as_json = json.dumps(tomllib.loads(text))
            write(out, "pipeline", name.replace(".toml", ".json"), bytes([1]) + as_json.encode())
            if tool is None or name == "tabular.toml":
                continue
            spec = pathlib.Path(tmp) / name
            spec.write_text(text)
            fitted = pathlib.Path(tmp) / (name + ".fitted.json")
            done = subprocess.run([tool, "prep", "fit", "--spec", spec, "--data", data, "--out", fitted],
                                  capture_output=True)
            if done.returncode == 0:
                write(out, "pipeline", name.replace(".toml", ".fitted"), bytes([2]) + fitted.read_bytes())
    pipeline = MODELS / "tabular" / "tabular.pipeline.json"
    write(out, "pipeline", "tabular.fitted", bytes([2]) + pipeline.read_bytes())


def seed_oip(out: pathlib.Path) -> None:
    # First byte: even, an HTTP body (bit 1: the header length is the first line); odd, a
    # protobuf ModelInferRequest (rivet_fuzz::oip_request).
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    bodies = {
        "json_flat": {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                              "data": x.ravel().tolist()}]},
        "json_nested": {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": x.tolist()},
                                   {"name": "m", "shape": [2], "datatype": "BOOL", "data": [True, False]}],
                        "outputs": [{"name": "y", "parameters": {"binary_data": True}}]},
        "json_ints": {"inputs": [{"name": "i", "shape": [3], "datatype": "INT64", "data": [1, -2, 3]},
                                 {"name": "u", "shape": [1], "datatype": "UINT8", "data": [255]},
                                 {"name": "h", "shape": [1], "datatype": "FP16", "data": [0.5]}],
                      "parameters": {"binary_data_output": True}},
    }
    for name, body in bodies.items():
        write(out, "oip_request", name, bytes([0]) + json.dumps(body).encode())
    header = json.dumps({"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
        {"name": "k", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]}).encode()
    binary = x.tobytes() + np.array([7, -7], dtype=np.int32).tobytes()
    write(out, "oip_request", "binary", bytes([2]) + str(len(header)).encode() + b"\n" + header + binary)
    try:
        from tritonclient.grpc import service_pb2
    except ImportError:
        return
    request = service_pb2.ModelInferRequest(model_name="mlp", id="g1")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    write(out, "oip_request", "grpc_contents", bytes([1]) + request.SerializeToString())
    raw = service_pb2.ModelInferRequest(model_name="mlp")
    raw.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    raw.inputs.add(name="k", datatype="INT8", shape=[2])
    raw.raw_input_contents.extend([x.tobytes(), bytes([1, 255])])
    raw.outputs.add(name="y")
    write(out, "oip_request", "grpc_raw", bytes([1]) + raw.SerializeToString())


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    seed_npy(out)
    seed_spec(out)
    seed_torchscript(out)
    seed_onnx(out)
    seed_structured(out)
    seed_pipeline(out)
    seed_oip(out)


if __name__ == "__main__":
    main()
