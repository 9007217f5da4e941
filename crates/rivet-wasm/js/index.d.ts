// Types of Rivet for WebAssembly (the package's index.js).

/** Rivet's element types. */
export type DType = "f16" | "bf16" | "f32" | "f64" | "i8" | "i16" | "i32" | "i64" | "u8" | "bool";

/** The typed arrays a tensor's data may be. Uint16Array carries f16 or bf16 bits. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint8ClampedArray
  | Uint16Array;

/** A tensor given to `Model.run`: row-major data and its shape. */
export interface TensorInput {
  data: TensorData;
  shape: number[];
  /** Needed only where the array type is ambiguous: "bool" for a Uint8Array, "f16" or "bf16" for a Uint16Array (else the model's declared dtype decides). */
  dtype?: DType;
}

/** A tensor `Model.run` returns; `data` is a copy the caller owns. */
export interface TensorOutput {
  data: TensorData;
  shape: number[];
  dtype: DType;
}

/** An input or output the model declares. A dynamic dimension is its symbolic name, or null. */
export interface TensorInfo {
  name: string;
  dtype: DType | null;
  shape: (number | string | null)[] | null;
}

/** Options of `Model.load`. */
export interface LoadOptions {
  /** The model's name in error messages (default "model.onnx"). */
  name?: string;
}

/**
 * Every error Rivet throws: an `Error` named "RivetError" whose `code` is the C ABI's
 * RIVET_ERROR_* value (1 invalid argument, 2 invalid input, 3 invalid tensor, 4 model load,
 * 5 unsupported, 6 backend, 8 panic, 9 invalid option) and `kind` its snake-case name.
 */
export interface RivetError extends Error {
  name: "RivetError";
  code: number;
  kind:
    | "invalid_argument"
    | "invalid_input"
    | "invalid_tensor"
    | "model_load"
    | "unsupported"
    | "backend"
    | "io"
    | "panic"
    | "invalid_option";
}

/** An ONNX model planned for Rivet's Candle executor. */
export declare class Model {
  private constructor();
  /** Loads an ONNX model from its bytes. Throws a RivetError (model_load, unsupported) when it cannot. */
  static load(bytes: Uint8Array, options?: LoadOptions): Model;
  /** The inputs the model declares. */
  inputs(): TensorInfo[];
  /** The outputs the model declares. */
  outputs(): TensorInfo[];
  /** Runs the model on inputs by name; returns the outputs by name. */
  run(inputs: Record<string, TensorInput>): Record<string, TensorOutput>;
  /** Number of steps a run walks, after constant folding at load. */
  readonly steps: number;
  /** Frees the model's memory now rather than when it is garbage-collected. */
  free(): void;
}

/** Options of `init`. */
export interface InitOptions {
  /** The .wasm to use: bytes, a URL, a Response or a compiled module (default: the package's own). */
  module?: BufferSource | URL | string | Response | WebAssembly.Module;
  /** true for the SIMD build, false for the scalar one (default: the best the engine runs). */
  simd?: boolean;
}

/** What `init` loaded. */
export interface InitResult {
  simd: boolean;
  version: string;
}

/** Compiles and instantiates Rivet; call once before `Model.load`. */
export declare function init(options?: InitOptions): Promise<InitResult>;
/** Like `init`, synchronously, for bytes or a module at hand. */
export declare function initSync(module: BufferSource | WebAssembly.Module, options?: { simd?: boolean }): InitResult;
/** Whether this engine runs WebAssembly SIMD. */
export declare function simdSupported(): boolean;
/** Rivet's version. */
export declare function version(): string;
/** Whether the initialised build uses SIMD. */
export declare function simd(): boolean;
