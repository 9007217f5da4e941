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
    for target in ("bind", "tensor"):
        for i in range(16):
            write(out, target, f"random{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(8, 256))))


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    seed_npy(out)
    seed_spec(out)
    seed_torchscript(out)
    seed_onnx(out)
    seed_structured(out)


if __name__ == "__main__":
    main()
