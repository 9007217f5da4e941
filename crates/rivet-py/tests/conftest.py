"""Shared paths and helpers of the Python package's tests (run by `make python-test`)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "models"
# The CLI of the same build, for checking that Python answers and fails as it does.
CLI = ROOT / "target" / "debug" / "rivet"


def read_case(folder: Path):
    """A case folder's inputs and PyTorch outputs, by name."""
    inputs, outputs = {}, {}
    for file in sorted(folder.glob("*.npy")):
        kind, name = file.stem.split(".", 1)
        (inputs if kind == "input" else outputs)[name] = np.load(file)
    return inputs, outputs


def cli_error(*args: str) -> str:
    """The message the CLI prints for a failing command (its `error: ` line, without the prefix)."""
    done = subprocess.run([str(CLI), *args], capture_output=True, text=True)
    assert done.returncode != 0, f"rivet {' '.join(args)} succeeded: {done.stdout}"
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert lines, done.stderr
    return lines[-1][len("error: ") :]


def run_python(code: str, env=None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter of this venv (for what a process can do only once)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="session")
def mlp():
    import rivet

    return rivet.load(MODELS / "mlp" / "mlp.onnx", backend="ort")
