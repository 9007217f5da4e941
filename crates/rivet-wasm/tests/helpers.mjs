// What the WebAssembly tests share: paths, the package, .npy files, closeness.

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const PKG = path.join(ROOT, "target/wasm/pkg");
export const MODELS = path.join(ROOT, "models");

export const rivet = await import(path.join(PKG, "index.js"));
const { parseNpy } = await import(path.join(ROOT, "examples/web/npy.js"));

/** An .npy file as `{ dtype, shape, data }`. */
export function readNpy(file) {
  return parseNpy(readFileSync(file));
}

/** The bytes of a bundled model file. */
export function modelBytes(relative) {
  return new Uint8Array(readFileSync(path.join(MODELS, relative)));
}

/** The reference cases of bundled network `name`: `{ name, inputs, outputs }` by tensor name. */
export function cases(name) {
  const dir = path.join(MODELS, name, "cases");
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().map((caseName) => {
    const inputs = {};
    const outputs = {};
    for (const file of readdirSync(path.join(dir, caseName)).sort()) {
      const match = /^(input|output)\.(.+)\.npy$/.exec(file);
      if (match === null) continue;
      (match[1] === "input" ? inputs : outputs)[match[2]] = readNpy(path.join(dir, caseName, file));
    }
    return { name: caseName, inputs, outputs };
  });
}

/** Element `i` of a typed array as a number. */
const num = (array, i) => Number(array[i]);

/** IEEE half-precision bits as a number. */
function f16(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 bits as a number. */
function bf16(bits) {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
}

/** A tensor's values as numbers (half-precision bits decoded). */
export function values(dtype, data) {
  if (dtype === "f16") return Array.from(data, f16);
  if (dtype === "bf16") return Array.from(data, bf16);
  return data;
}

/**
 * Where `actual` and `expected` differ by more than `atol + rtol·|expected|` (NaN equals NaN):
 * null when nowhere, else a message naming the first element; also checks the length.
 */
export function mismatch(actual, expected, rtol, atol) {
  if (actual.length !== expected.length) {
    return `${actual.length} elements where ${expected.length} were expected`;
  }
  for (let i = 0; i < actual.length; i++) {
    const a = num(actual, i);
    const e = num(expected, i);
    if (Number.isNaN(a) && Number.isNaN(e)) continue;
    if (a === e) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      return `element ${i}: ${a} where ${e} was expected`;
    }
  }
  return null;
}

/** The largest |actual − expected| over the elements. */
export function maxAbsDiff(actual, expected) {
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(num(actual, i) - num(expected, i)));
  return worst;
}

/** Runs `f` and returns what it throws (failing when it throws nothing). */
export function thrown(f) {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error, got none");
}
