// Rivet for WebAssembly: the entry point of the npm package that `make wasm` writes.
//
//   import { init, Model } from "rivet";
//   await init();                       // compiles the module once per page or process
//   const model = Model.load(bytes);    // bytes: a Uint8Array of an .onnx file
//   const outputs = model.run({ x: { data: new Float32Array(784), shape: [1, 784] } });
//
// The package holds two builds of the same code: rivet_bg.wasm, whose vector loops use
// WebAssembly's 128-bit SIMD, and rivet_scalar_bg.wasm for engines without it. `init()` picks
// the one the engine can run, unless told which.

import * as simdGlue from "./rivet.js";
import * as scalarGlue from "./rivet_scalar.js";

/** The smallest module that uses a v128 value: valid only where the engine has SIMD. */
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 8, 1, 6, 0, 65, 0, 253, 17, 11,
]);

/** Whether this engine runs WebAssembly SIMD (and so the faster build). */
export function simdSupported() {
  return WebAssembly.validate(SIMD_PROBE);
}

/** The loaded build's exports (set by init). */
let glue = null;

/** The model class of the initialised build. */
export let Model = null;

function use(chosen) {
  glue = chosen;
  Model = chosen.Model;
}

function isNode() {
  return typeof process !== "undefined" && process.versions != null && process.versions.node != null;
}

/** The build `options.simd` asks for (default: the engine's best) and its file in this package. */
function pick(options) {
  const simd = options.simd ?? simdSupported();
  return simd
    ? { simd, glue: simdGlue, file: new URL("./rivet_bg.wasm", import.meta.url) }
    : { simd, glue: scalarGlue, file: new URL("./rivet_scalar_bg.wasm", import.meta.url) };
}

/**
 * Compiles and instantiates Rivet. `options.module` may give the `.wasm` (bytes, a URL, a
 * Response or a compiled WebAssembly.Module); `options.simd` picks the build (true, false, or
 * left out for the engine's best). Calling it again re-instantiates (after a panic, say).
 */
export async function init(options = {}) {
  const chosen = pick(options);
  let source = options.module;
  if (source === undefined) {
    if (isNode()) {
      const { readFile } = await import("node:fs/promises");
      source = await readFile(chosen.file);
    } else {
      source = chosen.file;
    }
  }
  await chosen.glue.default({ module_or_path: source });
  use(chosen.glue);
  return { simd: chosen.simd, version: chosen.glue.version() };
}

/** Like `init`, for `.wasm` bytes or a compiled module already at hand; `options.simd` says which build they are. */
export function initSync(module, options = {}) {
  const chosen = pick(options);
  chosen.glue.initSync({ module });
  use(chosen.glue);
  return { simd: chosen.simd, version: chosen.glue.version() };
}

/** Rivet's version. */
export function version() {
  return initialised().version();
}

/** Whether the initialised build uses SIMD. */
export function simd() {
  return initialised().simd();
}

function initialised() {
  if (glue === null) {
    throw new Error("Rivet is not initialised: call `await init()` first");
  }
  return glue;
}
