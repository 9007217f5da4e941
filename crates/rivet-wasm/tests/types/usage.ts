// Type-checks against the package's index.d.ts (types.test.mjs runs tsc on it; nothing runs it).
import { init, initSync, Model, simdSupported, version, simd } from "../../../../target/wasm/pkg/index.js";
import type { RivetError, TensorInfo, TensorInput, TensorOutput } from "../../../../target/wasm/pkg/index.js";

export async function main(bytes: Uint8Array): Promise<number> {
  const info = await init({ simd: simdSupported() });
  const again = initSync(new Uint8Array(0), { simd: false });
  const label: string = `${info.version} ${info.simd} ${again.simd} ${version()} ${simd()}`;
  const model = Model.load(bytes, { name: "mlp.onnx" });
  const inputs: TensorInfo[] = model.inputs();
  const dims: (number | string | null)[] | null = inputs[0].shape;
  const feed: TensorInput = { data: new Float32Array(16), shape: [1, 16] };
  const ids: TensorInput = { data: new BigInt64Array(4), shape: [1, 4] };
  const mask: TensorInput = { data: new Uint8Array(4), shape: [1, 4], dtype: "bool" };
  const out: Record<string, TensorOutput> = model.run({ features: feed, ids, mask });
  const steps: number = model.steps;
  try {
    model.run({});
  } catch (e) {
    const error = e as RivetError;
    const code: number = error.code;
    const kind: RivetError["kind"] = error.kind;
    return code + kind.length;
  }
  model.free();
  return out.logits.shape[0] + steps + label.length + (dims?.length ?? 0);
}
