/**
 * The one place that loads ONNX Runtime, on first use only: onnxruntime-node (native; Deno needs
 * `--allow-ffi`), falling back to onnxruntime-web (wasm, single-threaded; it reads its `.wasm`
 * file, so Deno needs `--allow-read`) when the native one cannot load or when
 * `PRUNE_VIT_ORT=web`. `PRUNE_VIT_ORT=node` makes a failure of the native one an error. Without
 * either permission nothing is tried: the error names the feature that needed onnxruntime and
 * the flags.
 *
 * @module
 */
import type * as OrtTypes from "onnxruntime-common";
import { PruneError } from "../errors.ts";
import { importOnDemand } from "./on_demand.ts";
import { permitted } from "../permissions.ts";
import { DataType, dataTypeName, type TensorProto } from "../onnx/proto.ts";
import { f16BitsToF32, tensorDims, tensorRawBytes } from "../onnx/tensor.ts";

/** The onnxruntime API (the onnxruntime-common surface shared by -node and -web). */
export type Ort = typeof OrtTypes;
/** An ORT tensor. */
export type OrtTensor = OrtTypes.Tensor;
/** An ORT inference session. */
export type OrtSession = OrtTypes.InferenceSession;

/** onnxruntime's element type names, by ONNX TensorProto data type. */
export const ORT_ELEMENT_TYPES: Record<number, string> = {
  1: "float32",
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  9: "bool",
  10: "float16",
  11: "float64",
  12: "uint32",
  13: "uint64",
};

let ortPromise: Promise<Ort> | undefined;
let ortLoaded: Ort | undefined;
let backend: "node" | "web" | undefined;
let nodeError: string | undefined;

function envChoice(): string | undefined {
  if (!permitted({ name: "env", variable: "PRUNE_VIT_ORT" })) return undefined;
  return Deno.env.get("PRUNE_VIT_ORT")?.toLowerCase();
}

/** The error for a feature that needs onnxruntime where Deno's permissions keep it out. */
function permissionError(purpose: string, detail?: string): PruneError {
  return new PruneError(
    "permission",
    `${purpose} needs onnxruntime, which Deno cannot load without a permission: run with ` +
      `--allow-ffi (onnxruntime-node) or --allow-read (onnxruntime-web reads its .wasm file)` +
      (detail ? ` (${detail})` : ""),
  );
}

async function loadWeb(): Promise<Ort> {
  const ort = (await importOnDemand("onnxruntime-web")) as Ort & {
    env: { wasm: { numThreads?: number; proxy?: boolean } };
  };
  ort.env.wasm.numThreads = 1; // worker threads need extra permissions and can hang in Deno
  ort.env.logLevel = "fatal";
  backend = "web";
  return ort;
}

async function load(purpose: string): Promise<Ort> {
  const choice = envChoice();
  const ffi = permitted({ name: "ffi" }), read = permitted({ name: "read" });
  if (!ffi && !read) throw permissionError(purpose);
  if (!ffi && choice === "node") {
    throw new PruneError(
      "permission",
      `${purpose} needs onnxruntime-node (PRUNE_VIT_ORT=node): run Deno with --allow-ffi`,
    );
  }
  if (!ffi) nodeError = "Deno was not given --allow-ffi";
  if (choice === "web" || !ffi) return loadWeb();
  try {
    const ort = (await importOnDemand("onnxruntime-node")) as Ort;
    // Importing can succeed while the addon is unusable; touch the backend list to be sure.
    void ort.InferenceSession;
    ort.env.logLevel = "fatal";
    backend = "node";
    return ort;
  } catch (e) {
    nodeError = e instanceof Error ? e.message : String(e);
    if (choice === "node") {
      throw new PruneError(
        "ort-unavailable",
        `onnxruntime-node could not be loaded (${nodeError}); run Deno with --allow-ffi, or ` +
          `unset PRUNE_VIT_ORT to fall back to onnxruntime-web`,
      );
    }
    return loadWeb();
  }
}

/**
 * Loads ONNX Runtime once (node, else web). `purpose` names the feature in the error when Deno's
 * permissions keep onnxruntime out.
 *
 * @example const ort = await loadOrt(); new ort.Tensor("float32", new Float32Array(4), [2, 2]);
 */
export function loadOrt(purpose = "this feature"): Promise<Ort> {
  ortPromise ??= load(purpose).then((ort) => (ortLoaded = ort)).catch((e) => {
    ortPromise = undefined;
    throw e;
  });
  return ortPromise;
}

/**
 * Which backend {@link loadOrt} picked: "node", "web", or "none" before loading.
 *
 * @example await loadOrt(); console.log(ortBackendName()); // "node"
 */
export function ortBackendName(): "node" | "web" | "none" {
  return backend ?? "none";
}

/** Whether onnxruntime is loaded already (using it then costs no download and no permission). */
export function ortIsLoaded(): boolean {
  return ortLoaded !== undefined;
}

/** Why onnxruntime-node was not used (undefined when it was, or was not tried). */
export function ortNodeLoadError(): string | undefined {
  return nodeError;
}

/**
 * Creates an inference session from model bytes (or a model file's path, where onnxruntime reads
 * files) with quiet logging (fatal only: errors come back as exceptions).
 *
 * @example const s = await createSession(encodeModel(model)); const out = await s.run(feeds);
 */
export async function createSession(
  modelBytes: Uint8Array | string,
  options: OrtTypes.InferenceSession.SessionOptions = {},
  purpose?: string,
): Promise<OrtSession> {
  const ort = await loadOrt(purpose);
  const opts: OrtTypes.InferenceSession.SessionOptions = {
    logSeverityLevel: 4, // fatal only: every failure reaches the caller as an exception
    logVerbosityLevel: 0,
    ...(backend === "web" ? { executionProviders: ["wasm"] } : {}),
    ...options,
  };
  try {
    return typeof modelBytes === "string"
      ? await ort.InferenceSession.create(modelBytes, opts)
      : await ort.InferenceSession.create(modelBytes, opts);
  } catch (e) {
    // A partial --allow-read that leaves out onnxruntime-web's own files: not the model's fault.
    const message = e instanceof Error ? e.message : String(e);
    if (/NotCapable|Requires (read|ffi) access/.test(message)) {
      throw permissionError(purpose ?? "this feature", message.split("\n")[0]);
    }
    throw e;
  }
}

function copyBytes(bytes: Uint8Array): ArrayBuffer {
  return new Uint8Array(bytes).buffer; // a copy (Buffer.slice would be a view)
}

/**
 * Converts a TensorProto (e.g. a test_data_set `input_0.pb`) to an ORT tensor. Supports numeric,
 * bool, float16 and string tensors; bfloat16/complex/float8 throw PruneError "unsupported-dtype".
 * Synchronous: `await loadOrt()` (or createSession) must have run first.
 *
 * @example await loadOrt(); const x = tensorProtoToOrt(onnx.TensorProto.decode(bytes));
 */
export function tensorProtoToOrt(t: TensorProto): OrtTensor {
  const ort = ortLoaded;
  if (!ort) {
    throw new PruneError("ort-not-loaded", "tensorProtoToOrt: call `await loadOrt()` first");
  }
  const dims = tensorDims(t);
  const dt = t.dataType ?? 0;
  if (dt === DataType.STRING) {
    const dec = new TextDecoder();
    return new ort.Tensor("string", (t.stringData ?? []).map((s) => dec.decode(s)), dims);
  }
  const buf = () => copyBytes(tensorRawBytes(t));
  switch (dt) {
    case DataType.FLOAT:
      return new ort.Tensor("float32", new Float32Array(buf()), dims);
    case DataType.DOUBLE:
      return new ort.Tensor("float64", new Float64Array(buf()), dims);
    case DataType.FLOAT16:
      return new ort.Tensor("float16", new Uint16Array(buf()), dims);
    case DataType.INT8:
      return new ort.Tensor("int8", new Int8Array(buf()), dims);
    case DataType.UINT8:
      return new ort.Tensor("uint8", new Uint8Array(buf()), dims);
    case DataType.INT16:
      return new ort.Tensor("int16", new Int16Array(buf()), dims);
    case DataType.UINT16:
      return new ort.Tensor("uint16", new Uint16Array(buf()), dims);
    case DataType.INT32:
      return new ort.Tensor("int32", new Int32Array(buf()), dims);
    case DataType.UINT32:
      return new ort.Tensor("uint32", new Uint32Array(buf()), dims);
    case DataType.INT64:
      return new ort.Tensor("int64", new BigInt64Array(buf()), dims);
    case DataType.UINT64:
      return new ort.Tensor("uint64", new BigUint64Array(buf()), dims);
    case DataType.BOOL:
      return new ort.Tensor("bool", new Uint8Array(buf()), dims);
    default:
      throw new PruneError(
        "unsupported-dtype",
        `tensor '${t.name ?? ""}': data type ${dataTypeName(dt)} cannot be given to onnxruntime`,
      );
  }
}

/**
 * ORT tensor values as a Float64Array (bigints and float16 converted; bool → 0/1). Throws for
 * string tensors.
 *
 * @example const y = ortToFloat64Array(outputs.logits);
 */
export function ortToFloat64Array(t: OrtTensor): Float64Array {
  const data = t.data as unknown;
  if (t.type === "string") {
    throw new PruneError("unsupported-dtype", "a string tensor has no numeric values");
  }
  const n = (data as ArrayLike<unknown>).length;
  const out = new Float64Array(n);
  if (t.type === "float16" && data instanceof Uint16Array) {
    for (let i = 0; i < n; i++) out[i] = f16BitsToF32(data[i]);
    return out;
  }
  const arr = data as ArrayLike<number | bigint>;
  for (let i = 0; i < n; i++) out[i] = Number(arr[i]);
  return out;
}

/**
 * The bytes of an ORT tensor's data (typed arrays) or its UTF-8 JSON (strings), for bitwise
 * comparisons.
 *
 * @example ortTensorBytes(a).length
 */
export function ortTensorBytes(t: OrtTensor): Uint8Array {
  const data = t.data as unknown;
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return new TextEncoder().encode(JSON.stringify(data));
}

/**
 * Whether two ORT tensors have the same type, dims and bit-identical data.
 *
 * @example ortTensorsBitwiseEqual(outA.y, outB.y) // → true
 */
export function ortTensorsBitwiseEqual(a: OrtTensor, b: OrtTensor): boolean {
  if (a.type !== b.type || a.dims.length !== b.dims.length) return false;
  if (a.dims.some((d, i) => d !== b.dims[i])) return false;
  const x = ortTensorBytes(a);
  const y = ortTensorBytes(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Result of {@link compareClose}. */
export interface CloseResult {
  ok: boolean;
  /** Index of the first mismatch (-1 if none). */
  firstBad: number;
  maxAbsDiff: number;
  message: string;
}

/**
 * Compares actual vs expected like numpy's `assert_allclose` (|a-e| ≤ atol + rtol·|e|; NaN
 * equals NaN; infinities must match exactly).
 *
 * @example compareClose(ortToFloat64Array(y), expected, 1e-3, 1e-7).ok
 */
export function compareClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-3,
  atol = 1e-7,
): CloseResult {
  if (actual.length !== expected.length) {
    return {
      ok: false,
      firstBad: 0,
      maxAbsDiff: Infinity,
      message: `length ${actual.length} ≠ expected ${expected.length}`,
    };
  }
  let firstBad = -1;
  let maxAbsDiff = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    let bad: boolean;
    if (Number.isNaN(a) || Number.isNaN(e)) bad = Number.isNaN(a) !== Number.isNaN(e);
    else if (!Number.isFinite(a) || !Number.isFinite(e)) bad = a !== e;
    else {
      const d = Math.abs(a - e);
      if (d > maxAbsDiff) maxAbsDiff = d;
      bad = d > atol + rtol * Math.abs(e);
    }
    if (bad && firstBad < 0) firstBad = i;
  }
  return {
    ok: firstBad < 0,
    firstBad,
    maxAbsDiff,
    message: firstBad < 0
      ? "ok"
      : `element ${firstBad}: ${actual[firstBad]} vs expected ${
        expected[firstBad]
      } (max |diff| ${maxAbsDiff})`,
  };
}
