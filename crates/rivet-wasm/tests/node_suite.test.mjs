// The WebAssembly build against the native Candle executor on a sample of the ONNX node suite
// (node_suite.sample, at least 300 cases over every operator the suite tests): each case is
// refused by both with the same code and message, or both run it and the outputs agree within
// the suite's tolerance for that case (or both fail the run alike). The native side is written
// by `cargo run -p rivet-wasm --example native_fixtures` (make test-wasm does).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { rivet, mismatch, values, ROOT } from "./helpers.mjs";

const FIXTURES = path.join(ROOT, "target/wasm/node-suite");
const cases = JSON.parse(readFileSync(path.join(FIXTURES, "manifest.json"), "utf8"));
const ARRAYS = {
  f32: Float32Array, f64: Float64Array, i8: Int8Array, i16: Int16Array, i32: Int32Array,
  i64: BigInt64Array, u8: Uint8Array, bool: Uint8Array, f16: Uint16Array, bf16: Uint16Array,
};

/** A fixture tensor file as `{ data, shape, dtype }`. */
function tensor({ file, dtype, shape }) {
  const bytes = readFileSync(path.join(FIXTURES, file));
  const Array = ARRAYS[dtype];
  const copy = new Uint8Array(bytes);
  return { data: new Array(copy.buffer, 0, copy.byteLength / Array.BYTES_PER_ELEMENT), shape, dtype };
}

/** Why one case's wasm outcome differs from the native one, or null when it does not. */
function difference(entry) {
  let model;
  try {
    model = rivet.Model.load(new Uint8Array(readFileSync(entry.model)));
  } catch (e) {
    if (entry.refused === undefined) return `refused in wasm only: ${e.message}`;
    if (e.code !== entry.refused.code || e.message !== entry.refused.message) {
      return `refused differently: wasm ${e.code} "${e.message}", native ${entry.refused.code} "${entry.refused.message}"`;
    }
    return null;
  }
  try {
    if (entry.refused !== undefined) return `refused natively only: ${entry.refused.message}`;
    const names = model.inputs().map((i) => i.name);
    for (const [k, set] of entry.sets.entries()) {
      if (set.untestable !== undefined) continue;
      const inputs = Object.fromEntries(set.inputs.map((t, i) => [names[i], tensor(t)]));
      let outputs;
      try {
        outputs = Object.values(model.run(inputs));
      } catch (e) {
        if (set.error === undefined) return `set ${k}: the run failed in wasm only: ${e.message}`;
        if (e.code !== set.error.code || e.message !== set.error.message) {
          return `set ${k}: the run failed differently: wasm "${e.message}", native "${set.error.message}"`;
        }
        continue;
      }
      if (set.error !== undefined) return `set ${k}: the run failed natively only: ${set.error.message}`;
      if (outputs.length !== set.outputs.length) return `set ${k}: ${outputs.length} outputs, native ${set.outputs.length}`;
      for (const [i, expectedFile] of set.outputs.entries()) {
        const expected = tensor(expectedFile);
        const actual = outputs[i];
        if (actual.dtype !== expected.dtype) return `set ${k} output ${i}: dtype ${actual.dtype}, native ${expected.dtype}`;
        if (JSON.stringify(actual.shape) !== JSON.stringify(expected.shape)) {
          return `set ${k} output ${i}: shape ${actual.shape}, native ${expected.shape}`;
        }
        if (entry.random) {
          if (Array.from(actual.data).some((v) => Number(v) !== 0 && Number(v) !== 1)) return `set ${k} output ${i}: a draw not 0 or 1`;
          continue;
        }
        const where = mismatch(values(actual.dtype, actual.data), values(expected.dtype, expected.data), entry.rtol, entry.atol);
        if (where !== null) return `set ${k} output ${i}: ${where}`;
      }
    }
    return null;
  } finally {
    model.free();
  }
}

test(`${cases.length} node-suite cases: the wasm build does what native Rivet does`, async () => {
  assert.ok(cases.length >= 300, `only ${cases.length} cases in the sample`);
  await rivet.init();
  const failures = [];
  let refused = 0;
  for (const entry of cases) {
    const why = difference(entry);
    if (why !== null) failures.push(`${entry.name}: ${why}`);
    if (entry.refused !== undefined) refused += 1;
  }
  console.log(`# ${cases.length - failures.length} of ${cases.length} cases as native (${refused} refused by both)`);
  assert.deepEqual(failures, []);
});
