"""Writes package.json for the npm package `make wasm` assembles (target/wasm/pkg).

Usage: python3 package.py VERSION PKG_DIR
"""

import json
import pathlib
import sys

version, pkg = sys.argv[1], pathlib.Path(sys.argv[2])
files = sorted(p.name for p in pkg.iterdir() if p.suffix in {".js", ".ts", ".wasm"})
manifest = {
    "name": "rivet-wasm",
    "version": version,
    "description": "Rivet's pure-Rust ONNX executor (Candle) for browsers and Node",
    "license": "MIT OR Apache-2.0",
    "type": "module",
    "main": "index.js",
    "types": "index.d.ts",
    "exports": {".": {"types": "./index.d.ts", "default": "./index.js"}},
    "files": files,
    "sideEffects": False,
}
(pkg / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
