/**
 * ONNX external tensor data: finding every tensor of a model, validating `location`s, loading
 * them into raw_data, and choosing which tensors to write externally.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import type {
  AttributeProto,
  GraphProto,
  ModelProto,
  NodeProto,
  SparseTensorProto,
  TensorProto,
} from "./proto.ts";
import { elementSize, tensorNumel } from "./tensor.ts";

const EXTERNAL = 1;

/** Where a tensor's data lived when it was read (kept on the tensor under {@link EXTERNAL_ORIGIN}). */
export interface ExternalOrigin {
  location: string;
  offset: number;
  length: number;
  checksum?: string;
  /** All original external_data entries, verbatim. */
  entries: { key: string; value: string }[];
}

/** Symbol under which a loaded tensor remembers its original external-data reference. */
export const EXTERNAL_ORIGIN: unique symbol = Symbol.for("prune-vit.onnx.externalOrigin");

/** Symbol under which readModelFile records where a model came from. */
export const MODEL_SOURCE: unique symbol = Symbol.for("prune-vit.onnx.modelSource");

/** Where a model was read from. */
export interface ModelSource {
  /** Real path of the model file. */
  path: string;
  /** Real paths of the external data files it referenced. */
  externalFiles: string[];
}

/** A tensor with an optional remembered external origin. */
export type TensorWithOrigin = TensorProto & { [EXTERNAL_ORIGIN]?: ExternalOrigin };

/** A model with an optional recorded source. */
export type ModelWithSource = ModelProto & { [MODEL_SOURCE]?: ModelSource };

/**
 * Every TensorProto of a model, including Constant/attribute tensors, sparse tensors, subgraphs,
 * functions and training info.
 *
 * @example for (const t of allTensors(model)) console.log(t.name);
 */
export function allTensors(model: ModelProto): TensorProto[] {
  const out: TensorProto[] = [];
  const seen = new Set<object>();
  const sparse = (s: SparseTensorProto | null | undefined) => {
    if (s?.values) out.push(s.values);
    if (s?.indices) out.push(s.indices);
  };
  const attr = (a: AttributeProto) => {
    if (a.t) out.push(a.t);
    for (const t of a.tensors ?? []) out.push(t);
    sparse(a.sparseTensor);
    for (const s of a.sparseTensors ?? []) sparse(s);
    if (a.g) graph(a.g);
    for (const g of a.graphs ?? []) graph(g);
  };
  const node = (n: NodeProto) => {
    for (const a of n.attribute ?? []) attr(a);
  };
  const graph = (g: GraphProto) => {
    if (seen.has(g)) return;
    seen.add(g);
    for (const t of g.initializer ?? []) out.push(t);
    for (const s of g.sparseInitializer ?? []) sparse(s);
    for (const n of g.node ?? []) node(n);
  };
  if (model.graph) graph(model.graph);
  for (const f of model.functions ?? []) for (const n of f.node ?? []) node(n);
  for (const ti of model.trainingInfo ?? []) {
    if (ti.initialization) graph(ti.initialization);
    if (ti.algorithm) graph(ti.algorithm);
  }
  return out;
}

function label(t: TensorProto) {
  return t.name ? `tensor '${t.name}'` : "an unnamed tensor";
}

/**
 * Validates an external-data location (relative, no `..`, no drive/UNC prefix) and returns its
 * path segments. Throws PruneError naming the tensor and location.
 *
 * @example checkRelativeLocation("weights.bin", "w", "model.onnx") // → ["weights.bin"]
 */
export function checkRelativeLocation(location: string, tensor: string, file: string): string[] {
  const bad = (why: string) =>
    new PruneError(
      "unsafe-external-data",
      `${file}: tensor '${tensor}' has external data location '${location}', which ${why}; ` +
        `external data must be a relative path inside the model's folder`,
    );
  if (location === "") throw bad("is empty");
  if (location.includes("\0")) throw bad("contains a NUL character");
  if (location.startsWith("/") || location.startsWith("\\") || /^[A-Za-z]:/.test(location)) {
    throw bad("is absolute");
  }
  const parts = location.split(/[\\/]+/).filter((s) => s !== "" && s !== ".");
  if (parts.includes("..")) throw bad("contains '..'");
  if (parts.length === 0) throw bad("names no file");
  return parts;
}

function join(dir: string, parts: string[]) {
  return [dir.replace(/\/+$/, ""), ...parts].join("/");
}

function dirname(path: string) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** What a file system entry is, in words. */
export function kindOf(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO (named pipe)";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  if (info.isSymlink) return "a symbolic link";
  return "not a regular file";
}

function parseEntries(t: TensorProto, file: string): ExternalOrigin {
  const entries = (t.externalData ?? []).map((e) => ({ key: e.key ?? "", value: e.value ?? "" }));
  const get = (k: string) => entries.find((e) => e.key === k)?.value;
  const location = get("location");
  if (location === undefined) {
    throw new PruneError(
      "bad-external-data",
      `${file}: ${label(t)} is marked as external data but has no 'location' entry`,
    );
  }
  const num = (k: string, dflt: number) => {
    const v = get(k);
    if (v === undefined || v === "") return dflt;
    if (!/^\d+$/.test(v.trim())) {
      throw new PruneError(
        "bad-external-data",
        `${file}: ${label(t)} has a non-numeric external data '${k}' entry '${v}'`,
      );
    }
    return Number(v.trim());
  };
  return {
    location,
    offset: num("offset", 0),
    length: num("length", -1),
    checksum: get("checksum"),
    entries,
  };
}

/**
 * Loads every external tensor of a model read from `modelPath` into raw_data (marking it DEFAULT
 * and remembering the origin under {@link EXTERNAL_ORIGIN}). Refuses unsafe locations.
 * Returns the real paths of the data files used.
 *
 * @example await loadExternalData(model, "/models/vit.onnx");
 */
export async function loadExternalData(model: ModelProto, modelPath: string): Promise<string[]> {
  const tensors = allTensors(model).filter((t) => t.dataLocation === EXTERNAL);
  if (tensors.length === 0) return [];
  const dir = await Deno.realPath(dirname(modelPath));
  const files = new Map<string, number>();
  const resolved = new Map<string, string>();
  for (const t of tensors) {
    const origin = parseEntries(t, modelPath);
    const parts = checkRelativeLocation(origin.location, t.name ?? "", modelPath);
    const joined = join(dir, parts);
    let real = resolved.get(joined);
    if (real === undefined) {
      try {
        real = await Deno.realPath(joined);
        resolved.set(joined, real);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          throw new PruneError(
            "not-found",
            `${modelPath}: external data file '${origin.location}' of ${
              label(t)
            } not found (${joined})`,
          );
        }
        throw e;
      }
    }
    if (!real.startsWith(dir.endsWith("/") ? dir : dir + "/")) {
      throw new PruneError(
        "unsafe-external-data",
        `${modelPath}: tensor '${t.name ?? ""}' has external data location '${origin.location}', ` +
          `which resolves to '${real}' outside the model's folder '${dir}' (through a symlink); refused`,
      );
    }
    let fileSize = files.get(real);
    if (fileSize === undefined) {
      const info = await Deno.stat(real);
      // A FIFO would block the read forever, a directory fail later under another name.
      if (!info.isFile) {
        throw new PruneError(
          "bad-external-data",
          `${modelPath}: external data file '${origin.location}' of ${label(t)} is ${
            kindOf(info)
          }, not a regular file (${real})`,
        );
      }
      fileSize = info.size;
      files.set(real, fileSize);
    }
    const length = origin.length >= 0 ? origin.length : fileSize - origin.offset;
    if (origin.offset > fileSize || origin.offset + length > fileSize || length < 0) {
      throw new PruneError(
        "truncated",
        `${modelPath}: ${label(t)} wants bytes ${origin.offset}..${origin.offset + length} of ` +
          `'${origin.location}', which has only ${fileSize} bytes (truncated data file?)`,
      );
    }
    const expected = dimsByteLength(t);
    if (expected >= 0 && expected !== length) {
      throw new PruneError(
        "bad-external-data",
        `${modelPath}: ${label(t)} has ${length} bytes of external data in '${origin.location}', ` +
          `but its dims need ${expected}`,
      );
    }
    lazyRawData(t, real, origin.offset, length);
    t.externalData = [];
    delete t.dataLocation;
    (t as TensorWithOrigin)[EXTERNAL_ORIGIN] = { ...origin, length };
  }
  return [...files.keys()];
}

/**
 * The bytes a tensor's dims and element type call for; -1 where they say nothing (strings, an
 * unknown type).
 *
 * @example dimsByteLength(weight) // → 2359296 for a float32 [768, 768]
 */
export function dimsByteLength(t: TensorProto): number {
  try {
    return tensorNumel(t) * elementSize(t.dataType ?? 0);
  } catch {
    return -1;
  }
}

/**
 * Out of core: the tensor's raw_data is read from `file` (its data file, or a one-file model
 * itself) each time it is asked for (the page cache keeps repeats cheap), so only the tensors in
 * use are in memory.
 *
 * @example lazyRawData(tensor, "/models/vit.onnx.data", 4096, 2359296);
 */
export function lazyRawData(t: TensorProto, file: string, offset: number, length: number): void {
  deferRawData(t, length, () => {
    const bytes = new Uint8Array(length);
    const f = Deno.openSync(file);
    try {
      f.seekSync(offset, Deno.SeekMode.Start);
      for (let at = 0; at < length;) {
        const n = f.readSync(bytes.subarray(at));
        if (n === null) {
          throw new PruneError("truncated", `${file}: ended while reading ${label(t)}`);
        }
        at += n;
      }
    } finally {
      f.close();
    }
    return bytes;
  });
}

/** A tensor's bytes produced when asked for: whole (`read`), or, where it can, in pieces handed to
 * a sink one after another (`stream`: no allocation of the whole). */
export interface DeferredBytes {
  length: number;
  read: () => Uint8Array;
  stream?: (sink: (bytes: Uint8Array) => Promise<void>) => Promise<void>;
}

const deferred = new WeakMap<TensorProto, DeferredBytes>();

/**
 * Makes a tensor's raw_data computed when asked for, by `read` (which must return `length`
 * bytes): a tensor read from a data file, or one sliced from such a tensor, whose bytes are then
 * produced only while the output is written; `stream`, when given, hands the same bytes out in
 * pieces. Assigning raw_data replaces the reader with the value.
 */
export function deferRawData(
  t: TensorProto,
  length: number,
  read: () => Uint8Array,
  stream?: DeferredBytes["stream"],
): void {
  deferred.set(t, stream ? { length, read, stream } : { length, read });
  Object.defineProperty(t, "rawData", {
    configurable: true,
    enumerable: true,
    get: read,
    set(value: Uint8Array) {
      deferred.delete(t);
      Object.defineProperty(t, "rawData", {
        configurable: true,
        enumerable: true,
        writable: true,
        value,
      });
    },
  });
}

/** The reader and byte length of a tensor whose raw_data is produced when asked for. */
export function deferredRawData(t: TensorProto): DeferredBytes | undefined {
  const d = deferred.get(t);
  // A reader copied onto another object (a clone) is not this tensor's.
  return d && Object.getOwnPropertyDescriptor(t, "rawData")?.get === d.read ? d : undefined;
}

/** Tensor byte size if stored raw (0 for strings/unknown). */
export function tensorDataSize(t: TensorProto): number {
  const later = deferredRawData(t);
  if (later) return later.length; // not read just to be measured
  const raw = t.rawData;
  if (raw && raw.length) return raw.length;
  return Math.max(0, dimsByteLength(t));
}

/** Whether a model has tensors that came from (or still point to) external data. */
export function hasExternalData(model: ModelProto): boolean {
  if ((model as ModelWithSource)[MODEL_SOURCE]?.externalFiles.length) return true;
  return allTensors(model).some((t) =>
    t.dataLocation === EXTERNAL || (t as TensorWithOrigin)[EXTERNAL_ORIGIN] !== undefined
  );
}
