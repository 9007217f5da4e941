// Each line below must fail to type-check (types.test.mjs counts the errors).
import { Model } from "../../../../target/wasm/pkg/index.js";

export function misuse(model: Model): void {
  model.run({ x: { data: [1, 2, 3], shape: [3] } });
  model.run({ x: { data: new Float32Array(3), shape: "3" } });
  model.run({ x: { data: new Float32Array(3), shape: [3], dtype: "float128" } });
  Model.load("model.onnx");
  Model.load(new Uint8Array(0), { threads: 2 });
  new Model();
}
