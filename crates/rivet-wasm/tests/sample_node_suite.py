"""Writes node_suite.sample: the ONNX node-suite cases that the WebAssembly build is compared on
with the native Candle executor (node_suite.test.mjs).

Up to two cases of every operator the suite tests (the first two by name), so that every
operator family the executor implements is covered, and so are operators it refuses.

Usage: .venv/bin/python crates/rivet-wasm/tests/sample_node_suite.py target/onnx-node-tests/manifest.json
"""

import collections
import json
import pathlib
import sys

manifest = json.loads(pathlib.Path(sys.argv[1]).read_text())
by_op = collections.defaultdict(list)
for case in sorted(manifest["cases"], key=lambda c: c["name"]):
    if case["tensors_only"]:
        for op in case["ops"]:
            by_op[op].append(case["name"])
chosen = sorted({name for names in by_op.values() for name in names[:2]})
out = pathlib.Path(__file__).with_name("node_suite.sample")
header = (
    "# ONNX node-suite cases on which the WebAssembly build must equal the native Candle executor\n"
    "# (outputs within the case's tolerance, or the same refusal). Written by sample_node_suite.py.\n"
)
out.write_text(header + "".join(f"{name}\n" for name in chosen))
print(f"{len(chosen)} cases over {len(by_op)} operators -> {out}")
