// The JavaScript API: metadata, every dtype in and out, empty batches, errors by code and exact
// message, and the toolchain pin.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { rivet, modelBytes, thrown, ROOT } from "./helpers.mjs";

await rivet.init();
const { Model } = rivet;
const mlp = Model.load(modelBytes("mlp/mlp.onnx"), { name: "mlp.onnx" });
const features = (n, shape = [n / 16, 16]) => ({ features: { data: new Float32Array(n), shape } });

/** Asserts that `f` throws a RivetError with `code`, `kind` and exactly `message`. */
function throwsRivet(f, code, kind, message) {
  const error = thrown(f);
  assert.ok(error instanceof Error, `not an Error: ${error}`);
  assert.equal(error.name, "RivetError");
  assert.deepEqual({ code: error.code, kind: error.kind, message: error.message }, { code, kind, message });
}

test("metadata: names, dtypes and shapes with dynamic dimensions", () => {
  assert.deepEqual(mlp.inputs(), [{ name: "features", dtype: "f32", shape: ["batch", 16] }]);
  assert.deepEqual(mlp.outputs(), [{ name: "logits", dtype: "f32", shape: ["batch", 3] }]);
  const encoder = Model.load(modelBytes("encoder/encoder.onnx"));
  assert.deepEqual(encoder.inputs().map((i) => [i.name, i.dtype, i.shape.length]), [
    ["input_ids", "i64", 2],
    ["attention_mask", "i64", 2],
  ]);
  assert.ok(encoder.steps > 0);
  assert.equal(rivet.version(), JSON.parse(readFileSync(path.join(ROOT, "target/wasm/pkg/package.json"))).version);
});

test("every dtype round-trips through an Identity model", () => {
  const arrays = {
    f32: new Float32Array([1.5, -2.25, 3e38, -0, NaN, -Infinity]),
    f64: new Float64Array([1.5, -2.25, 1e300, Number.MIN_VALUE, NaN, Infinity]),
    i8: new Int8Array([-128, -1, 0, 1, 2, 127]),
    i16: new Int16Array([-32768, -1, 0, 1, 2, 32767]),
    i32: new Int32Array([-2147483648, -1, 0, 1, 2, 2147483647]),
    i64: new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n]),
    u8: new Uint8Array([0, 1, 2, 127, 128, 255]),
    bool: new Uint8Array([0, 1, 1, 0, 0, 1]),
    f16: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000]),
    bf16: new Uint16Array([0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0x8000]),
  };
  for (const [dtype, data] of Object.entries(arrays)) {
    const model = Model.load(modelBytes(`identity/identity_${dtype}.onnx`), { name: `identity_${dtype}.onnx` });
    const [input] = model.inputs();
    assert.equal(input.dtype, dtype);
    const out = Object.values(model.run({ [input.name]: { data, shape: [2, 3] } }))[0];
    assert.equal(out.dtype, dtype, dtype);
    assert.deepEqual(out.shape, [2, 3], dtype);
    assert.equal(out.data.constructor, data.constructor, dtype);
    assert.deepEqual(Array.from(out.data), Array.from(data), dtype);
    // The dtype may also be named, as it must be where the array alone does not say.
    const named = Object.values(model.run({ [input.name]: { data, shape: [2, 3], dtype } }))[0];
    assert.deepEqual(Array.from(named.data), Array.from(data), `${dtype} (named)`);
    model.free();
  }
  // The returned arrays are the caller's: a later run leaves them as they were.
  const first = mlp.run({ features: { data: new Float32Array(16).fill(1), shape: [1, 16] } }).logits.data;
  const copy = Array.from(first);
  mlp.run({ features: { data: new Float32Array(16).fill(-1), shape: [1, 16] } });
  assert.deepEqual(Array.from(first), copy);
});

test("empty batches give empty outputs of the right shape", () => {
  const out = mlp.run(features(0, [0, 16])).logits;
  assert.deepEqual(out.shape, [0, 3]);
  assert.equal(out.data.length, 0);
  assert.ok(out.data instanceof Float32Array);
  const cnn = Model.load(modelBytes("cnn/cnn.onnx"));
  const [input] = cnn.inputs();
  const shape = input.shape.map((d) => (typeof d === "number" ? d : 0));
  const logits = Object.values(cnn.run({ [input.name]: { data: new Float32Array(0), shape } }))[0];
  assert.equal(logits.shape[0], 0);
  assert.equal(logits.data.length, 0);
});

test("bad inputs throw RivetErrors naming what was wrong", () => {
  throwsRivet(() => mlp.run({ features: { data: new Int32Array(16), shape: [1, 16] } }), 2, "invalid_input",
    'invalid input: input "features": expected dtype f32, got i32');
  throwsRivet(() => mlp.run(features(15, [1, 15])), 2, "invalid_input",
    'invalid input: input "features": expected dimension 1 to be 16 (shape [batch, 16]), got 15 (shape [1, 15])');
  throwsRivet(() => mlp.run(features(16, [16])), 2, "invalid_input",
    'invalid input: input "features": expected rank 2 [batch, 16], got rank 1 [16]');
  throwsRivet(() => mlp.run({ ...features(16), extra: { data: new Float32Array(1), shape: [1] } }), 2, "invalid_input",
    'invalid input: input "extra": unknown input name; the model\'s inputs are: features');
  throwsRivet(() => mlp.run({}), 2, "invalid_input", 'invalid input: input "features": missing: no tensor given for it');
  throwsRivet(() => mlp.run(features(15, [1, 16])), 3, "invalid_tensor",
    'invalid tensor: input "features": shape [1, 16] holds 16 elements, the Float32Array has 15');
  throwsRivet(() => mlp.run({ features: { data: [1, 2], shape: [1, 2] } }), 1, "invalid_argument",
    'input "features": data must be a Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, BigInt64Array, Uint8Array or Uint16Array');
  throwsRivet(() => mlp.run([1]), 1, "invalid_argument", "inputs must be an object mapping input names to { data, shape }");
  throwsRivet(() => mlp.run(features(16, [1, -16])), 1, "invalid_argument",
    'input "features": shape must be an array of whole numbers ≥ 0');
  throwsRivet(() => mlp.run({ features: { data: new Uint16Array(16), shape: [1, 16] } }), 1, "invalid_argument",
    'input "features": a Uint16Array needs dtype "f16" or "bf16" to say what its bits are');
  throwsRivet(() => mlp.run({ features: { data: new Float32Array(16), shape: [1, 16], dtype: "i64" } }), 1, "invalid_argument",
    'input "features": dtype i64 does not fit a Float32Array (it holds f32)');
  // The model still runs after every refusal.
  assert.deepEqual(mlp.run(features(32)).logits.shape, [2, 3]);
});

test("bad model bytes and options throw RivetErrors", () => {
  const bytes = modelBytes("mlp/mlp.onnx");
  throwsRivet(() => Model.load(bytes.subarray(0, 500), { name: "mlp.onnx" }), 4, "model_load",
    "candle: cannot load mlp.onnx: not an ONNX model: failed to decode Protobuf message: ModelProto.graph: buffer underflow");
  throwsRivet(() => Model.load(new Uint8Array(0)), 4, "model_load", "candle: cannot load model.onnx: not an ONNX model: no graph");
  throwsRivet(() => Model.load(bytes, { threads: 2 }), 9, "invalid_option", "invalid option threads: unknown load option (known: name)");
  throwsRivet(() => Model.load(bytes, { name: 7 }), 9, "invalid_option", "invalid option name: must be a string");
  throwsRivet(() => Model.load(modelBytes("identity/identity_u16.onnx"), { name: "identity_u16.onnx" }), 5, "unsupported",
    'candle: unsupported identity_u16.onnx: input "x" has element type uint16, which Candle cannot hold');
});

test("the wasm-bindgen CLI is the wasm-bindgen crate's release", () => {
  const pin = /^wasm-bindgen = "=([^"]+)"/m.exec(readFileSync(path.join(ROOT, "crates/rivet-wasm/Cargo.toml"), "utf8"))[1];
  const lock = readFileSync(path.join(ROOT, "Cargo.lock"), "utf8");
  const locked = /\[\[package\]\]\nname = "wasm-bindgen"\nversion = "([^"]+)"/.exec(lock)[1];
  const cli = execFileSync(path.join(ROOT, "target/tools/bin/wasm-bindgen"), ["--version"], { encoding: "utf8" }).trim();
  assert.equal(locked, pin);
  assert.equal(cli, `wasm-bindgen ${pin}`);
});
