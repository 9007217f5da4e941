// The package's TypeScript declarations (index.d.ts): a program using the whole API type-checks
// under tsc --strict, and each line of a program that misuses it is an error.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./helpers.mjs";

const TSC = path.join(ROOT, "target/wasm/tools/node_modules/typescript/bin/tsc");
const FLAGS = ["--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "es2022,dom"];

function tsc(file) {
  const run = spawnSync(process.execPath, [TSC, ...FLAGS, path.join(ROOT, "crates/rivet-wasm/tests/types", file)], { encoding: "utf8" });
  return { status: run.status, errors: run.stdout.split("\n").filter((l) => / error TS\d+/.test(l)) };
}

test("index.d.ts types the whole API and rejects misuse", { skip: existsSync(TSC) ? false : "TypeScript is not installed (make test-wasm installs it)" }, () => {
  const good = tsc("usage.ts");
  assert.deepEqual(good.errors, []);
  assert.equal(good.status, 0);
  const bad = tsc("misuse.ts");
  const lines = bad.errors.map((l) => Number(/misuse\.ts\((\d+),/.exec(l)?.[1]));
  assert.deepEqual([...new Set(lines)].sort((a, b) => a - b), [5, 6, 7, 8, 9, 10], bad.errors.join("\n"));
});
