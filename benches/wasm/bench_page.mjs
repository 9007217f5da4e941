// The benchmark page: both engines in one page, per-run time side by side (?models=&batches=
// &seconds=&rounds=), or one engine's cold start (?cold=rivet|ort&model=NAME): module compile,
// model load and first run, from a page that has loaded neither. Results go into #status's
// data-results as JSON.

import { parseNpy } from "/npy.js";
import { rivetEngine, ortEngine, sideBySide } from "./engines.mjs";

const params = new URLSearchParams(location.search);
const status = document.querySelector("#status");

async function bytesOf(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function inputsOf(model, batch, names) {
  const inputs = {};
  for (const name of names) inputs[name] = parseNpy(await bytesOf(`/inputs/${model}/b${batch}/input.${name}.npy`));
  return inputs;
}

async function engine(which) {
  if (which === "rivet") {
    const rivet = await import("/pkg/index.js");
    await rivet.init();
    return rivetEngine(rivet);
  }
  const ort = await import("/ort/ort.wasm.min.mjs");
  return ortEngine(ort);
}

async function main() {
  const names = JSON.parse(params.get("inputs"));
  if (params.has("cold")) {
    const model = params.get("model");
    const bytes = await bytesOf(`/models/${model}/${model}.onnx`);
    const inputs = await inputsOf(model, 1, names[model]);
    const start = performance.now();
    const chosen = await engine(params.get("cold"));
    const loaded = await chosen.load(bytes);
    await loaded.run(inputs);
    return { cold_ms: performance.now() - start };
  }
  const engines = [await engine("rivet"), await engine("ort")];
  const cases = [];
  for (const model of params.get("models").split(",")) {
    const bytes = await bytesOf(`/models/${model}/${model}.onnx`);
    for (const batch of params.get("batches").split(",").map(Number)) {
      cases.push({ model, batch, bytes, inputs: await inputsOf(model, batch, names[model]) });
    }
  }
  const rows = await sideBySide(engines, cases, { seconds: Number(params.get("seconds")), rounds: Number(params.get("rounds")) });
  return { rows };
}

main().then(
  (results) => { status.dataset.results = JSON.stringify(results); status.textContent = JSON.stringify(results, null, 1); status.dataset.status = "done"; },
  (error) => { status.textContent = `failed: ${error.stack ?? error}`; status.dataset.status = "error"; },
);
