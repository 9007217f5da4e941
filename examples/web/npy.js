// Reading NumPy .npy files (format 1.0-3.0, little-endian, C order) into typed arrays, for the
// page's reference cases and the Node tests.

const TYPES = {
  "<f4": ["f32", Float32Array],
  "<f8": ["f64", Float64Array],
  "|i1": ["i8", Int8Array],
  "<i2": ["i16", Int16Array],
  "<i4": ["i32", Int32Array],
  "<i8": ["i64", BigInt64Array],
  "|u1": ["u8", Uint8Array],
  "|b1": ["bool", Uint8Array],
  "<f2": ["f16", Uint16Array],
};

/** Parses the bytes of an .npy file: `{ dtype, shape, data }` with `data` a typed array. */
export function parseNpy(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const magic = String.fromCharCode(...u8.subarray(1, 6));
  if (u8[0] !== 0x93 || magic !== "NUMPY") {
    throw new Error("not an .npy file");
  }
  const major = u8[6];
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(u8.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const type = TYPES[descr];
  if (type === undefined || fortran) {
    throw new Error(`unsupported .npy layout: ${header.trim()}`);
  }
  const [dtype, Array] = type;
  const count = shape.reduce((a, b) => a * b, 1);
  // Copy (into a buffer of its own: a Node Buffer's slice would share the pool): the data's
  // offset in the file need not be aligned to the element size.
  const body = new Uint8Array(u8.subarray(start + headerLength, start + headerLength + count * Array.BYTES_PER_ELEMENT));
  return { dtype, shape, data: new Array(body.buffer, 0, count) };
}
