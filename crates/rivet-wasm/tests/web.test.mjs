// examples/web/ in headless Chromium: the page loads Rivet's WebAssembly build from the static
// server, runs every bundled reference case and writes the results into the document; the
// test reads them back and checks them, then picks model files as a person would, and saves a
// screenshot as target/wasm/web.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { ROOT, MODELS } from "./helpers.mjs";
import { haveChromium, openPage, startServer } from "./browser.mjs";

test("the example page runs every bundled case in Chromium within 1e-5 of PyTorch", { skip: haveChromium() ? false : "no /usr/bin/chromium (./bootstrap.sh installs it)" }, async () => {
  const server = await startServer(ROOT);
  const page = await openPage(server.url);
  try {
    await page.waitFor(`document.querySelector("#summary").dataset.status !== "running"`);
    const status = await page.evaluate(`document.querySelector("#summary").dataset.status`);
    const summary = await page.evaluate(`document.querySelector("#summary").textContent`);
    assert.equal(status, "pass", `${summary}; console: ${page.console.join(" | ")}`);
    const { simd, results } = JSON.parse(await page.evaluate(`document.querySelector("#summary").dataset.results`));
    assert.equal(simd, true, "Chromium runs WebAssembly SIMD, so the page should pick the SIMD build");
    const expected = ["mlp", "cnn", "encoder"].flatMap((m) => readdirSync(path.join(MODELS, m, "cases")).sort().map((c) => `${m}/${c}`));
    assert.deepEqual(results.map((r) => `${r.model}/${r.case}`).sort(), expected.sort());
    for (const r of results) {
      assert.equal(r.error, null, `${r.model}/${r.case}`);
      assert.ok(r.maxAbsDiff <= 1e-5, `${r.model}/${r.case}: max |diff| ${r.maxAbsDiff}`);
      assert.ok(r.msPerRun > 0, `${r.model}/${r.case}: time per run ${r.msPerRun}`);
    }
    const rows = await page.evaluate(`document.querySelectorAll("#cases tbody tr").length`);
    assert.equal(rows, expected.length);
    // A model of the person's own: its signature, a run on generated inputs, the time per run.
    const yours = `document.querySelector("#yours").textContent`;
    await page.setFile("#file", path.join(MODELS, "encoder/encoder.onnx"));
    await page.waitFor(`${yours}.includes("encoder.onnx")`);
    const text = await page.evaluate(yours);
    assert.match(text, /input_ids: i64 \[batch, sequence\]/);
    assert.match(text, /hidden_states: f32 \[1, 1, \d+\]/);
    assert.match(text, /[\d.]+ ms per run/);
    // One it cannot run: the page shows Rivet's error.
    await page.setFile("#file", path.join(MODELS, "identity/identity_u16.onnx"));
    await page.waitFor(`${yours}.includes("identity_u16.onnx")`);
    assert.equal(await page.evaluate(yours),
      'identity_u16.onnx: RivetError (code 5, unsupported): candle: unsupported identity_u16.onnx: input "x" has element type uint16, which Candle cannot hold');
    await page.setFile("#file", path.join(MODELS, "cnn/cnn.onnx"));
    await page.waitFor(`${yours}.includes("cnn.onnx")`);
    mkdirSync(path.join(ROOT, "target/wasm"), { recursive: true });
    writeFileSync(path.join(ROOT, "target/wasm/web.png"), await page.screenshot());
  } finally {
    await page.close();
    await server.close();
  }
});
