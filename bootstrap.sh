#!/usr/bin/env bash
# Installs what Rivet needs to build and test, then writes .cargo/config.toml so that a
# plain `cargo build` / `cargo test` in this checkout finds libtorch and ONNX Runtime.
# Idempotent: every step checks first and does nothing when its work is already done.
#
# Honoured environment variables:
#   LIBTORCH        an existing libtorch (the directory holding lib/ and include/);
#                   default: the torch package of the project venv
#   ORT_DYLIB_PATH  an existing libonnxruntime.so; default: the onnxruntime wheel in the venv
#   RIVET_VENV      where the Python venv lives; default: .venv in this checkout
#   PYTHON          the interpreter that creates the venv; default: python3
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
venv="${RIVET_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
requirements="$root/models/requirements.txt"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Debian packages: protoc (candle-onnx), cmake and a C/C++ compiler (the C/C++ examples and
#    tests), valgrind (their memcheck run), pkg-config (the pkg-config consumer check), libb64
#    (perf_analyzer, which `rivet serve`'s tests run); for WebAssembly, Node.js (its tests),
#    chromium (the browser test) and binaryen (wasm-opt).
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d' || missing+=(libb64-0d)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wasm-opt >/dev/null 2>&1 || missing+=(binaryen)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
        say "missing ${missing[*]} and not root: install them with apt-get and run again"; exit 1
    fi
    say "installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The project venv with pinned PyTorch / ONNX Runtime (models, references, libtorch).
stamp="$venv/.rivet-requirements"
if [ ! -x "$venv/bin/python" ]; then
    say "creating venv $venv"
    "$python" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp"; then
    say "installing $(tr '\n' ' ' < "$requirements")into $venv (about 5 GB, a few minutes)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# 2b. perf_analyzer (Triton's load generator; `rivet serve`'s tests and benchmarks run it). The
#     PyPI perf-analyzer package is an empty placeholder; the tritonclient 2.41.0 wheel carries
#     the binary, which runs on CPU with the CUDA runtime wheel's libcudart.so.12 beside it.
tools="$venv/perf_analyzer"
if [ ! -x "$tools/perf_analyzer" ] || [ ! -e "$tools/libcudart.so.12" ]; then
    say "installing perf_analyzer into $tools"
    wheels="$(mktemp -d)"
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        tritonclient==2.41.0 nvidia-cuda-runtime-cu12==12.9.79 -d "$wheels"
    mkdir -p "$tools"
    "$venv/bin/python" - "$wheels" "$tools" <<'PY'
import pathlib, sys, zipfile
wheels, tools = map(pathlib.Path, sys.argv[1:])
wanted = {"perf_analyzer": "/data/bin/perf_analyzer", "libcudart.so.12": "/lib/libcudart.so.12"}
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            for name, suffix in wanted.items():
                if member.endswith(suffix):
                    (tools / name).write_bytes(z.read(member))
                    (tools / name).chmod(0o755)
PY
    rm -rf "$wheels"
fi

# 3. libtorch: the user's LIBTORCH, else the venv's torch package (it ships lib/ and include/).
libtorch="${LIBTORCH:-$site/torch}"
if [ ! -e "$libtorch/lib/libtorch_cpu.so" ]; then
    say "no libtorch_cpu.so under $libtorch/lib: set LIBTORCH to a libtorch 2.13 directory"; exit 1
fi

# 4. ONNX Runtime: the user's ORT_DYLIB_PATH, else the wheel's library.
ort_lib="${ORT_DYLIB_PATH:-}"
if [ -z "$ort_lib" ]; then
    ort_lib="$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1 || true)"
fi
if [ ! -e "$ort_lib" ]; then
    say "no libonnxruntime found (looked in $site/onnxruntime/capi): set ORT_DYLIB_PATH"; exit 1
fi

# 5. Clippy's lints in every build of the workspace's own crates (dependencies are compiled by
#    plain rustc as always): clippy-driver is rustc with the lints added, so `make lint` reads
#    the warnings of the build `make test` already made instead of compiling it all again.
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
wrapper=""
if [ -n "$clippy_driver" ]; then
    wrapper="$(printf '\n[build]\nrustc-workspace-wrapper = "%s"' "$clippy_driver")"
else
    say "clippy is not installed (rustup component add clippy): builds are not linted and make lint fails"
fi

# 5b. The WebAssembly target (`make wasm`), through rustup. Only the WebAssembly package needs
#     it, so a failure here is reported and does not stop the rest.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target (rustup)"
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 ||
        say "rustup could not fetch wasm32-unknown-unknown: make wasm needs it (rustup target add wasm32-unknown-unknown)"
fi

# 6. Cargo's environment for this checkout (not committed: it holds absolute paths).
mkdir -p .cargo
config="$(cat <<TOML
# Written by bootstrap.sh; do not edit (run ./bootstrap.sh again instead).
[env]
LIBTORCH = "$libtorch"
LIBTORCH_CXX11_ABI = "1"
RIVET_ORT_DYLIB_PATH = "$ort_lib"
RIVET_PYTHON = "$venv/bin/python"
RIVET_PERF_ANALYZER = "$tools/perf_analyzer"
# The Python extension module (crates/rivet-py): built against the venv's interpreter and
# linking no libpython, the same in \`cargo build\` as under maturin, so neither rebuilds it.
PYO3_PYTHON = "$venv/bin/python"
PYO3_BUILD_EXTENSION_MODULE = "1"

# Binaries and test executables find libtorch without LD_LIBRARY_PATH.
[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "link-arg=-Wl,-rpath,$libtorch/lib"]
$wrapper
TOML
)"
if [ "$config" != "$(cat .cargo/config.toml 2>/dev/null || true)" ]; then
    printf '%s\n' "$config" > .cargo/config.toml
    say "wrote .cargo/config.toml (libtorch: $libtorch, onnxruntime: $ort_lib)"
fi
