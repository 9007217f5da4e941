// The page: runs the bundled models' reference cases with Rivet's WebAssembly build, writes the
// results into the document (the browser test reads them back), and runs a dropped .onnx file
// on generated inputs.

import { init, Model } from "/pkg/index.js";
import { parseNpy } from "./npy.js";

/** The bundled models and their reference cases (models/NAME/cases/CASE/). */
const BUNDLED = {
  mlp: { cases: ["b1", "b8"], inputs: ["features"], outputs: ["logits"] },
  cnn: { cases: ["b1", "b4"], inputs: ["image"], outputs: ["logits"] },
  encoder: { cases: ["b1_s24", "b1_s8", "b4_s24", "b4_s8"], inputs: ["input_ids", "attention_mask"], outputs: ["hidden_states"] },
};
const TOLERANCE = 1e-5;

const $ = (selector) => document.querySelector(selector);

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Milliseconds per run of `f`, over at least 200 ms. */
function timePerRun(f) {
  f();
  let runs = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < 200) {
    f();
    runs += 1;
    elapsed = performance.now() - start;
  }
  return elapsed / runs;
}

function maxAbsDiff(a, b) {
  let worst = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < Math.min(a.length, b.length); i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

function row(cells, status) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell;
    tr.append(td);
  }
  const result = document.createElement("td");
  result.textContent = status;
  result.className = status === "pass" ? "pass" : "fail";
  tr.append(result);
  $("#cases tbody").append(tr);
}

async function runBundled() {
  const results = [];
  for (const [name, spec] of Object.entries(BUNDLED)) {
    const model = Model.load(await fetchBytes(`/models/${name}/${name}.onnx`), { name: `${name}.onnx` });
    for (const caseName of spec.cases) {
      const dir = `/models/${name}/cases/${caseName}`;
      const inputs = {};
      for (const input of spec.inputs) inputs[input] = parseNpy(await fetchBytes(`${dir}/input.${input}.npy`));
      let diff = 0;
      let error = null;
      let ms = NaN;
      try {
        const outputs = model.run(inputs);
        for (const output of spec.outputs) {
          const expected = parseNpy(await fetchBytes(`${dir}/output.${output}.npy`));
          diff = Math.max(diff, maxAbsDiff(outputs[output].data, expected.data));
        }
        ms = timePerRun(() => model.run(inputs));
      } catch (e) {
        error = `${e.name} ${e.code ?? ""}: ${e.message}`;
      }
      const pass = error === null && diff <= TOLERANCE;
      results.push({ model: name, case: caseName, maxAbsDiff: diff, msPerRun: ms, pass, error });
      row([name, caseName, error ?? diff.toExponential(2), Number.isNaN(ms) ? "–" : `${ms.toFixed(3)} ms`], pass ? "pass" : "fail");
    }
    model.free();
  }
  return results;
}

/** Generated inputs for a model's declared inputs: dynamic dimensions 1, values small and seeded. */
function generatedInputs(model) {
  let seed = 1;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const inputs = {};
  for (const input of model.inputs()) {
    const shape = (input.shape ?? [1]).map((d) => (typeof d === "number" ? d : 1));
    const count = shape.reduce((a, b) => a * b, 1);
    const make = {
      f32: () => Float32Array.from({ length: count }, () => next() * 2 - 1),
      f64: () => Float64Array.from({ length: count }, () => next() * 2 - 1),
      i64: () => BigInt64Array.from({ length: count }, () => BigInt(Math.floor(next() * 2))),
      i32: () => Int32Array.from({ length: count }, () => Math.floor(next() * 2)),
      u8: () => Uint8Array.from({ length: count }, () => Math.floor(next() * 2)),
      bool: () => Uint8Array.from({ length: count }, () => Math.floor(next() * 2)),
    }[input.dtype];
    if (make === undefined) throw new Error(`input "${input.name}" is ${input.dtype}: the page generates f32, f64, i64, i32, u8 and bool inputs`);
    inputs[input.name] = { data: make(), shape, dtype: input.dtype };
  }
  return inputs;
}

function describe(list) {
  return list.map((t) => `${t.name}: ${t.dtype ?? "?"} [${(t.shape ?? []).map((d) => d ?? "?").join(", ")}]`).join("\n");
}

async function runYours(file) {
  const out = $("#yours");
  out.textContent = "";
  const pre = document.createElement("pre");
  out.append(pre);
  try {
    const model = Model.load(new Uint8Array(await file.arrayBuffer()), { name: file.name });
    const inputs = generatedInputs(model);
    const outputs = model.run(inputs);
    const ms = timePerRun(() => model.run(inputs));
    const shown = Object.entries(outputs).map(([name, t]) => {
      const head = Array.from(t.data.slice(0, 8), (v) => (typeof v === "bigint" ? v.toString() : Number(v).toPrecision(5)));
      return `${name}: ${t.dtype} [${t.shape.join(", ")}] ${head.join(", ")}${t.data.length > 8 ? ", …" : ""}`;
    });
    pre.textContent = `${file.name}: ${model.steps} steps\n\ninputs (generated; dynamic dimensions 1)\n${describe(model.inputs())}\n\n` +
      `outputs\n${shown.join("\n")}\n\n${ms.toFixed(3)} ms per run`;
    model.free();
  } catch (e) {
    pre.textContent = `${file.name}: ${e.name}${e.code ? ` (code ${e.code}, ${e.kind})` : ""}: ${e.message}`;
  }
}

function wireDrop() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length > 0) runYours(e.dataTransfer.files[0]);
  });
  $("#file").addEventListener("change", (e) => { if (e.target.files.length > 0) runYours(e.target.files[0]); });
}

async function main() {
  wireDrop();
  const summary = $("#summary");
  try {
    const started = performance.now();
    const info = await init();
    const ready = performance.now() - started;
    $("#build").textContent = `Rivet ${info.version}, ${info.simd ? "SIMD (simd128)" : "scalar"} build, ready in ${ready.toFixed(0)} ms`;
    const results = await runBundled();
    const passed = results.filter((r) => r.pass).length;
    summary.textContent = `${passed} of ${results.length} reference cases match PyTorch within ${TOLERANCE}`;
    summary.dataset.status = passed === results.length ? "pass" : "fail";
    summary.dataset.results = JSON.stringify({ simd: info.simd, version: info.version, results });
  } catch (e) {
    summary.textContent = `failed: ${e.message}`;
    summary.dataset.status = "error";
  }
}

main();
