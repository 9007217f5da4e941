// The two WebAssembly engines behind one interface, for the benchmark in Node and in the browser:
// Rivet's package (target/wasm/pkg) and onnxruntime-web's wasm backend at one thread.
// `load(bytes)` returns `{ run(inputs) }`, where inputs map names to { data, shape, dtype }.

/** Rivet: `rivet` is the package's index.js module; `init()` has been awaited. */
export function rivetEngine(rivet) {
  return {
    name: "rivet",
    load(bytes) {
      const model = rivet.Model.load(bytes);
      return { run: async (inputs) => model.run(inputs), free: () => model.free() };
    },
  };
}

const ORT_TYPES = { f32: "float32", f64: "float64", i64: "int64", i32: "int32", u8: "uint8", bool: "bool", i8: "int8", i16: "int16" };

/** onnxruntime-web: `ort` is its module, set to one thread (numThreads = 1). */
export function ortEngine(ort) {
  ort.env.wasm.numThreads = 1;
  return {
    name: "onnxruntime-web",
    async load(bytes) {
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      return {
        async run(inputs) {
          const feeds = {};
          for (const [name, t] of Object.entries(inputs)) feeds[name] = new ort.Tensor(ORT_TYPES[t.dtype], t.data, t.shape);
          const out = await session.run(feeds);
          const result = {};
          for (const [name, t] of Object.entries(out)) result[name] = { data: t.data, shape: Array.from(t.dims) };
          return result;
        },
        free: () => session.release(),
      };
    },
  };
}

/**
 * Per-run milliseconds of `run` over about `seconds`: a fifth warms up (and sizes the blocks),
 * the rest is `rounds` timed blocks, of which the median counts.
 */
export async function perRun(run, seconds, rounds) {
  const budget = seconds * 1000;
  let warm = 0;
  const start = performance.now();
  while (warm < 3 || performance.now() - start < budget / 5) {
    await run();
    warm += 1;
  }
  const mean = (performance.now() - start) / warm;
  const perBlock = Math.max(1, Math.round((budget * 0.8) / rounds / Math.max(mean, 0.0005)));
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < perBlock; i++) await run();
    times.push((performance.now() - t0) / perBlock);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * Both engines on each model and batch, side by side: rounds alternate which goes first, and
 * the figure is each one's median per-run time. `cases` is a list of { model, batch, bytes,
 * inputs }. Returns rows { model, batch, rivet_ms, ort_ms, max_abs_diff }.
 */
export async function sideBySide(engines, cases, { seconds, rounds }) {
  const rows = [];
  for (const c of cases) {
    const loaded = [];
    for (const engine of engines) loaded.push(await engine.load(c.bytes));
    const outputs = [];
    for (const model of loaded) outputs.push(Object.values(await model.run(c.inputs))[0].data);
    let diff = 0;
    for (let i = 0; i < outputs[0].length; i++) diff = Math.max(diff, Math.abs(outputs[0][i] - outputs[1][i]));
    const times = engines.map(() => []);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const e of order) times[e].push(await perRun(() => loaded[e].run(c.inputs), seconds / rounds / 2, 3));
    }
    const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
    rows.push({ model: c.model, batch: c.batch, rivet_ms: median(times[0]), ort_ms: median(times[1]), max_abs_diff: diff });
    for (const model of loaded) model.free();
  }
  return rows;
}
