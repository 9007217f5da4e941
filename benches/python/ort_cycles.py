"""The load/run/free cycle of cpp-examples/tests/load_cycles.c with Python's onnxruntime, with
the same readings (RSS, and glibc's heap in use from mallinfo2): what ONNX Runtime does by
itself, to set beside Rivet's ort phase.

Usage: .venv/bin/python benches/python/ort_cycles.py [N=5000]   (from the repository root)
"""

import ctypes
import sys

import numpy as np
import onnxruntime as ort


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def heap_kib() -> int:
    m = LIBC.mallinfo2()
    return (m.uordblks + m.hblkhd) // 1024


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


X = np.zeros((1, 16), np.float32)


def cycle() -> None:
    session = ort.InferenceSession("models/mlp/mlp.onnx", providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: X})


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    for _ in range(20):
        cycle()
    rss0, heap0 = rss_kib(), heap_kib()
    rss1, heap1 = rss0, heap0
    for i in range(n):
        cycle()
        if i == n // 2:
            rss1, heap1 = rss_kib(), heap_kib()
    rss2, heap2 = rss_kib(), heap_kib()
    print(
        f"python onnxruntime: {n} load/run/free cycles: RSS {rss0} -> {rss1} -> {rss2} KiB, "
        f"heap in use {heap0} -> {heap1} -> {heap2} KiB; per 1000 cycles over the second half: "
        f"RSS {(rss2 - rss1) * 2000 / n:+.1f} KiB, heap {(heap2 - heap1) * 2000 / n:+.1f} KiB"
    )


if __name__ == "__main__":
    main()
