// Rivet's WebAssembly package against onnxruntime-web (its wasm backend, one thread): per-run
// time side by side in one Node process and then in one Chromium page, cold start (module
// compile + model load + first run, each engine in a fresh process or browser), the .wasm bytes
// raw and gzipped, and native Rivet (Candle and ONNX Runtime, `rivet bench` at one thread) on
// the very same inputs for the cost of WebAssembly itself. Writes the tables as JSON for
// benches/python/results.py. Run by `make bench-wasm`.
//
//   node --experimental-websocket benches/wasm/wasm_bench.mjs --rivet BIN --ort DIR --work DIR
//        [--models mlp,cnn,encoder,resnet18] [--batches 1,8] [--seconds 2] [--rounds 5] [--cold-repeat 3]

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { rivetEngine, ortEngine, sideBySide } from "./engines.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
};
const ortDir = path.resolve(option("ort"));
const ortModule = pathToFileURL(path.join(ortDir, "dist/ort.node.min.mjs")).href;
const rivetModule = pathToFileURL(path.join(root, "target/wasm/pkg/index.js")).href;
const { parseNpy } = await import(pathToFileURL(path.join(root, "examples/web/npy.js")).href);

/** One engine's cold start in this process: compile, load, first run; prints { cold_ms }. */
async function coldChild(which, model, inputsDir) {
  const bytes = new Uint8Array(readFileSync(path.join(root, "models", model, `${model}.onnx`)));
  const inputs = readInputs(inputsDir);
  const start = performance.now();
  let engine;
  if (which === "rivet") {
    const rivet = await import(rivetModule);
    await rivet.init();
    engine = rivetEngine(rivet);
  } else {
    engine = ortEngine(await import(ortModule));
  }
  const loaded = await engine.load(bytes);
  await loaded.run(inputs);
  console.log(JSON.stringify({ cold_ms: performance.now() - start }));
}

function readInputs(dir) {
  const inputs = {};
  for (const file of readdirSync(dir).sort()) {
    const match = /^input\.(.+)\.npy$/.exec(file);
    if (match) inputs[match[1]] = parseNpy(readFileSync(path.join(dir, file)));
  }
  return inputs;
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const fixed = (v, digits = 3) => (v === undefined || Number.isNaN(v) ? "–" : v.toFixed(digits));

async function main() {
  if (process.argv.includes("--cold")) {
    return coldChild(option("cold"), option("model"), option("inputs"));
  }
  const work = path.resolve(option("work"));
  const models = option("models", "mlp,cnn,encoder,resnet18").split(",");
  const batches = option("batches", "1,8").split(",").map(Number);
  const seconds = Number(option("seconds", "2"));
  const rounds = Number(option("rounds", "5"));
  const coldRepeat = Number(option("cold-repeat", "3"));
  mkdirSync(work, { recursive: true });

  // Native Rivet at one thread; it also saves the inputs every other run below uses.
  const native = spawnSync(option("rivet"), [
    "bench", ...models.map((m) => path.join(root, "models", m)), "--backend", "ort,candle", "--batch", batches.join(","),
    "--threads", "1", "--duration", String(seconds), "--warmup", "3",
    "--save-inputs", path.join(work, "inputs"), "--json", path.join(work, "native.json"),
  ], { stdio: ["ignore", "ignore", "inherit"] });
  if (native.status !== 0) throw new Error(`rivet bench exited with ${native.status}`);
  const nativeRows = JSON.parse(readFileSync(path.join(work, "native.json"))).results;
  const nativeMs = (model, backend, batch) =>
    nativeRows.find((r) => r.model === model && r.backend === backend && r.batch === batch && r.status === "ok")?.latency_ms.p50;

  const cases = [];
  const inputNames = {};
  for (const model of models) {
    const bytes = new Uint8Array(readFileSync(path.join(root, "models", model, `${model}.onnx`)));
    for (const batch of batches) {
      const inputs = readInputs(path.join(work, "inputs", model, `b${batch}`));
      inputNames[model] = Object.keys(inputs);
      cases.push({ model, batch, bytes, inputs });
    }
  }

  // Node: both engines in this process.
  const rivet = await import(rivetModule);
  await rivet.init();
  const nodeRows = await sideBySide([rivetEngine(rivet), ortEngine(await import(ortModule))], cases, { seconds, rounds });

  // Chromium: both engines in one page.
  const { openPage, startServer } = await import(pathToFileURL(path.join(root, "crates/rivet-wasm/tests/browser.mjs")).href);
  const server = await startServer(root, ["--mount", `/ort/=${path.join(ortDir, "dist")}`, "--mount", `/bench/=${here}`,
    "--mount", `/inputs/=${path.join(work, "inputs")}`]);
  const names = encodeURIComponent(JSON.stringify(inputNames));
  async function page(query) {
    const browser = await openPage(`${server.url}bench/bench.html?inputs=${names}&${query}`);
    try {
      await browser.waitFor(`document.querySelector("#status").dataset.status !== "running"`, 1800);
      const status = await browser.evaluate(`document.querySelector("#status").dataset.status`);
      if (status !== "done") throw new Error(await browser.evaluate(`document.querySelector("#status").textContent`));
      return JSON.parse(await browser.evaluate(`document.querySelector("#status").dataset.results`));
    } finally {
      await browser.close();
    }
  }
  let browserRows = [];
  const cold = [];
  try {
    browserRows = (await page(`models=${models.join(",")}&batches=${batches.join(",")}&seconds=${seconds}&rounds=${rounds}`)).rows;
    for (const model of models) {
      const row = { model, node: {}, browser: {} };
      for (const which of ["rivet", "ort"]) {
        const nodeTimes = [];
        const browserTimes = [];
        for (let i = 0; i < coldRepeat; i++) {
          const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--cold", which, "--model", model,
            "--inputs", path.join(work, "inputs", model, "b1"), "--ort", ortDir], { encoding: "utf8" });
          if (child.status !== 0) throw new Error(`cold start of ${which} on ${model}: ${child.stderr}`);
          nodeTimes.push(JSON.parse(child.stdout.trim().split("\n").pop()).cold_ms);
          browserTimes.push((await page(`cold=${which}&model=${model}`)).cold_ms);
        }
        row.node[which] = median(nodeTimes);
        row.browser[which] = median(browserTimes);
      }
      cold.push(row);
    }
  } finally {
    await server.close();
  }

  // Per-run table.
  const run = {
    columns: ["model", "batch", "Rivet wasm, Node (ms)", "onnxruntime-web, Node (ms)", "ratio, Node",
      "Rivet wasm, Chromium (ms)", "onnxruntime-web, Chromium (ms)", "ratio, Chromium",
      "native Rivet-candle (ms)", "native ORT (ms)", "wasm ÷ native (Rivet, Node)", "max |Rivet − ORT|"],
    rows: nodeRows.map((n) => {
      const b = browserRows.find((r) => r.model === n.model && r.batch === n.batch) ?? {};
      const candle = nativeMs(n.model, "candle", n.batch);
      return [n.model, n.batch, fixed(n.rivet_ms), fixed(n.ort_ms), fixed(n.rivet_ms / n.ort_ms, 2) + "×",
        fixed(b.rivet_ms), fixed(b.ort_ms), fixed(b.rivet_ms / b.ort_ms, 2) + "×",
        fixed(candle), fixed(nativeMs(n.model, "ort", n.batch)), fixed(n.rivet_ms / candle, 2) + "×", n.max_abs_diff.toExponential(1)];
    }),
    notes: [
      "Per-run time, median of alternating timed rounds, both WebAssembly engines at one thread in the same Node process and then in the same headless Chromium page (the ratio is Rivet ÷ onnxruntime-web: below 1 means Rivet is faster).",
      "Native figures are `rivet bench --threads 1` p50 on the same inputs (saved with --save-inputs). Rivet's package is its SIMD build.",
    ],
  };
  const coldTable = {
    columns: ["model", "Rivet, Node (ms)", "onnxruntime-web, Node (ms)", "ratio, Node", "Rivet, Chromium (ms)", "onnxruntime-web, Chromium (ms)", "ratio, Chromium"],
    rows: cold.map((c) => [c.model, fixed(c.node.rivet, 1), fixed(c.node.ort, 1), fixed(c.node.rivet / c.node.ort, 2) + "×",
      fixed(c.browser.rivet, 1), fixed(c.browser.ort, 1), fixed(c.browser.rivet / c.browser.ort, 2) + "×"]),
    notes: [`Cold start: importing the engine, compiling its .wasm, loading the model and its first run at batch 1, each in a fresh Node process or a fresh browser; median of ${coldRepeat}.`],
  };
  const sizes = [
    ["Rivet (SIMD build)", path.join(root, "target/wasm/pkg/rivet_bg.wasm")],
    ["Rivet (scalar build)", path.join(root, "target/wasm/pkg/rivet_scalar_bg.wasm")],
    ["onnxruntime-web (CPU: ort-wasm-simd-threaded.wasm)", path.join(ortDir, "dist/ort-wasm-simd-threaded.wasm")],
  ].map(([what, file]) => {
    const bytes = readFileSync(file);
    return { what, raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  });
  const ortSize = sizes[2];
  const sizeTable = {
    columns: ["file", "bytes", "gzipped (-9)", "÷ onnxruntime-web, raw", "÷ onnxruntime-web, gzipped"],
    rows: sizes.map((s) => [s.what, s.raw, s.gzip, fixed(s.raw / ortSize.raw, 2), fixed(s.gzip / ortSize.gzip, 2)]),
    notes: ["The .wasm each engine runs on a CPU, as its npm package ships it."],
  };
  for (const [name, table] of [["wasm-run", run], ["wasm-cold", coldTable], ["wasm-size", sizeTable]]) {
    writeFileSync(path.join(work, `${name}.json`), JSON.stringify(table, null, 1));
    console.log(`\n${name}`);
    console.log(table.columns.join(" | "));
    for (const row of table.rows) console.log(row.join(" | "));
  }
}

await main();
