/**
 * NumPy `.npy` files (format versions 1.0, 2.0 and 3.0): little-endian, C-order arrays of
 * float32, float64, float16, int64, int32 or uint8.
 *
 * @module
 */
import { PruneError } from "../errors.ts";

/** Element types an `.npy` file may hold here. */
export type NpyDtype = "float32" | "float64" | "int64" | "int32" | "uint8" | "float16";

/** Typed array of an {@link NpyArray}: float16 elements are raw IEEE half bits in a Uint16Array. */
export type NpyData =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Uint8Array
  | Uint16Array;

/** A decoded `.npy` array (C order). */
export interface NpyArray {
  dtype: NpyDtype;
  /** Dims; `[]` for a scalar. */
  shape: number[];
  data: NpyData;
}

/** The header of an `.npy` file. */
export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Byte offset of the first element. */
  dataOffset: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR: Record<string, NpyDtype> = {
  f4: "float32",
  f8: "float64",
  f2: "float16",
  i8: "int64",
  i4: "int32",
  u1: "uint8",
};

const ITEM_SIZE: Record<NpyDtype, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
};

const DESCR_OF: Record<NpyDtype, string> = {
  float32: "<f4",
  float64: "<f8",
  float16: "<f2",
  int64: "<i8",
  int32: "<i4",
  uint8: "|u1",
};

/** Bytes per element of a dtype. */
export function npyItemSize(dtype: NpyDtype): number {
  return ITEM_SIZE[dtype];
}

function bad(source: string, problem: string): PruneError {
  return new PruneError("bad-npy", `${source}: ${problem}`);
}

/**
 * How many bytes of a file's start hold its whole header (magic, version, length, dict), read
 * from its first 12 bytes; throws PruneError("bad-npy") when they are not an `.npy` start.
 */
export function npyHeaderLength(prefix: Uint8Array, source: string): number {
  if (prefix.length < 10 || MAGIC.some((b, i) => prefix[i] !== b)) {
    throw bad(source, "not a NumPy .npy file (no \\x93NUMPY magic)");
  }
  const major = prefix[6];
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  if (major === 1) return 10 + view.getUint16(8, true);
  if (major === 2 || major === 3) {
    if (prefix.length < 12) throw bad(source, "truncated .npy header");
    return 12 + view.getUint32(8, true);
  }
  throw bad(source, `unsupported .npy format version ${major}.${prefix[7]}`);
}

/**
 * Parses the header of an `.npy` file (the bytes may stop after the header). Throws
 * PruneError("bad-npy") naming `source` for a bad magic, a big-endian, structured or
 * unsupported dtype, or `fortran_order: True`.
 *
 * @example parseNpyHeader(bytes, "x.npy").shape // → [2, 3]
 */
export function parseNpyHeader(bytes: Uint8Array, source: string): NpyHeader {
  const end = npyHeaderLength(bytes, source);
  if (bytes.length < end) throw bad(source, "truncated .npy header");
  const start = bytes[6] === 1 ? 10 : 12;
  const text = new TextDecoder(bytes[6] === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(start, end),
  );
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  if (!descr) {
    throw bad(source, "unsupported .npy dtype (structured arrays are not supported)");
  }
  const order = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  if (!order) throw bad(source, "malformed .npy header (no fortran_order)");
  if (order[1] === "True") {
    throw bad(
      source,
      "the array is in Fortran (column-major) order; save it in C order " +
        "(np.save(path, np.ascontiguousarray(a)))",
    );
  }
  const shapeMatch = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!shapeMatch) throw bad(source, "malformed .npy header (no shape)");
  const shape = shapeMatch[1].split(",").map((s) => s.trim()).filter((s) => s !== "").map(
    (s) => {
      const n = Number(s.replace(/L$/, ""));
      if (!Number.isInteger(n) || n < 0) throw bad(source, `malformed .npy shape (${s})`);
      return n;
    },
  );
  const d = descr[1];
  const order0 = d[0];
  const dtype = DESCR[d.slice(1)];
  if (order0 === ">" && dtype !== "uint8") {
    throw bad(source, `big-endian dtype '${d}' is not supported; save it little-endian`);
  }
  if (!dtype || !"<|=>".includes(order0)) {
    throw bad(
      source,
      `unsupported .npy dtype '${d}' (supported: float32, float64, float16, int64, int32, uint8)`,
    );
  }
  return { dtype, shape, dataOffset: end };
}

/**
 * Decodes an `.npy` file (versions 1–3, little-endian, C order). Throws PruneError("bad-npy")
 * naming `source` for anything else, or when the data is shorter than the shape says.
 *
 * @example const a = parseNpy(await Deno.readFile("ids.npy"), "ids.npy"); a.shape // [8, 128]
 */
export function parseNpy(bytes: Uint8Array, source: string): NpyArray {
  const h = parseNpyHeader(bytes, source);
  const count = h.shape.reduce((a, b) => a * b, 1);
  const size = count * ITEM_SIZE[h.dtype];
  if (bytes.length - h.dataOffset < size) {
    throw bad(
      source,
      `truncated .npy data: shape [${h.shape.join(", ")}] needs ${size} bytes, the file has ` +
        `${Math.max(0, bytes.length - h.dataOffset)}`,
    );
  }
  // A copy: the data need not be aligned in `bytes`.
  const buf = bytes.slice(h.dataOffset, h.dataOffset + size).buffer;
  return { dtype: h.dtype, shape: h.shape, data: typedArray(h.dtype, buf) };
}

function typedArray(dtype: NpyDtype, buf: ArrayBuffer): NpyData {
  switch (dtype) {
    case "float32":
      return new Float32Array(buf);
    case "float64":
      return new Float64Array(buf);
    case "float16":
      return new Uint16Array(buf);
    case "int64":
      return new BigInt64Array(buf);
    case "int32":
      return new Int32Array(buf);
    case "uint8":
      return new Uint8Array(buf);
  }
}

/**
 * Encodes an array as an `.npy` file (version 1.0 by default; 2.0/3.0 on request). The header
 * is padded so the data starts at a multiple of 64 bytes, as NumPy does.
 *
 * @example encodeNpy({ dtype: "int64", shape: [1, 3], data: new BigInt64Array([101n, 7n, 102n]) })
 */
export function encodeNpy(array: NpyArray, options: { version?: 1 | 2 | 3 } = {}): Uint8Array {
  const version = options.version ?? 1;
  const count = array.shape.reduce((a, b) => a * b, 1);
  if (array.data.length !== count) {
    throw new PruneError(
      "bad-npy",
      `encodeNpy: shape [${array.shape.join(", ")}] has ${count} elements, data has ` +
        `${array.data.length}`,
    );
  }
  const shape = array.shape.length === 1 ? `(${array.shape[0]},)` : `(${array.shape.join(", ")})`;
  let dict = `{'descr': '${DESCR_OF[array.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pre = version === 1 ? 10 : 12;
  const total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - pre - 1, " ") + "\n";
  const header = new TextEncoder().encode(dict);
  const data = new Uint8Array(
    array.data.buffer,
    array.data.byteOffset,
    array.data.byteLength,
  );
  const out = new Uint8Array(pre + header.length + data.length);
  out.set(MAGIC);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(header, pre);
  out.set(data, pre + header.length);
  return out;
}
