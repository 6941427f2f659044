/**
 * Reading and writing ONNX model files (with external data), with clear errors for files that
 * are not ONNX models, and atomic writes that never clobber the input.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { readInto, readWhole, writeAll, type WriteTo, writeWhole } from "./file_io.ts";
import { withFolderLock } from "./folder_lock.ts";
import { readModelSkeleton } from "./skeleton.ts";
import { cleanLeftovers, tempPath, trackTemp, untrackTemp } from "./temp_files.ts";
import { type ModelProto, onnx, scanWire, type TensorProto } from "./proto.ts";
import {
  allTensors,
  checkRelativeLocation,
  type DeferredBytes,
  deferredRawData,
  EXTERNAL_ORIGIN,
  hasExternalData,
  kindOf,
  loadExternalData,
  MODEL_SOURCE,
  type ModelWithSource,
  tensorDataSize,
  type TensorWithOrigin,
} from "./external_data.ts";

export { unknownFieldWarnings } from "./proto.ts";
export { allTensors, EXTERNAL_ORIGIN, MODEL_SOURCE } from "./external_data.ts";

const TWO_GIB = 2 ** 31;
/** Expected wire types of ModelProto's fields (IR 8 schema). */
const MODEL_WIRE: Record<number, number> = {
  1: 0,
  2: 2,
  3: 2,
  4: 2,
  5: 0,
  6: 2,
  7: 2,
  8: 2,
  14: 2,
  20: 2,
  25: 2,
};

function looksLikeTensor(bytes: Uint8Array): boolean {
  try {
    const t = onnx.TensorProto.decode(bytes);
    return (t.dataType ?? 0) > 0 && (t.rawData?.length ?? 0) + (t.dims?.length ?? 0) > 0;
  } catch {
    return false;
  }
}

/**
 * Decodes ONNX model bytes. Throws PruneError "not-onnx" (empty, not protobuf, protobuf but not a
 * model) or "truncated", with `source` (a file name) in the message.
 *
 * @example const model = decodeModel(await Deno.readFile("vit.onnx"), "vit.onnx");
 */
export function decodeModel(bytes: Uint8Array, source = "<bytes>"): ModelProto {
  if (bytes.length === 0) {
    throw new PruneError(
      "not-onnx",
      `${source}: the file is empty (0 bytes); expected an ONNX model`,
    );
  }
  const scan = scanWire(bytes);
  const notModel = (why: string) => {
    const hint = looksLikeTensor(bytes)
      ? " It looks like a serialized TensorProto (e.g. a test_data_set input_0.pb), not a model."
      : "";
    return new PruneError(
      "not-onnx",
      `${source}: not an ONNX model: ${why}.${hint}`,
    );
  };
  if (scan.status === "invalid") {
    throw new PruneError(
      "not-onnx",
      `${source}: not an ONNX model: the ${bytes.length} bytes are not a valid protobuf message ` +
        `(bad field tag after ${scan.fields.length} field(s)). Is this really a .onnx file?`,
    );
  }
  if (scan.status === "truncated") {
    const sawGraph = scan.fields.some(([f]) => f === 7);
    const plausible = scan.fields.length > 0 &&
      scan.fields.every(([f, wt]) => MODEL_WIRE[f] === undefined || MODEL_WIRE[f] === wt);
    if (plausible) {
      throw new PruneError(
        "truncated",
        `${source}: the ONNX model is truncated: a field runs past the end of the ${bytes.length}-byte ` +
          `file${sawGraph ? "" : " (the graph is cut off)"}. Was the download or copy incomplete?`,
      );
    }
    throw new PruneError(
      "not-onnx",
      `${source}: not an ONNX model: the ${bytes.length} bytes are not a valid protobuf message`,
    );
  }
  for (const [f, wt] of scan.fields) {
    if (MODEL_WIRE[f] !== undefined && MODEL_WIRE[f] !== wt) {
      throw notModel(`field ${f} has wire type ${wt}, which ModelProto does not allow`);
    }
  }
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/index out of range/.test(msg)) {
      throw new PruneError(
        "truncated",
        `${source}: the ONNX model is damaged or truncated inside (${msg})`,
      );
    }
    throw new PruneError("not-onnx", `${source}: not a valid ONNX model (${msg})`);
  }
  if (!Object.prototype.hasOwnProperty.call(model, "graph") || !model.graph) {
    throw notModel("it is a protobuf message but has no graph");
  }
  if (!Object.prototype.hasOwnProperty.call(model, "irVersion")) {
    throw notModel("it is a protobuf message but has no ir_version");
  }
  if (!model.opsetImport?.length) {
    throw notModel("it is a protobuf message but has no opset_import");
  }
  // Tensor data already points into these bytes: keeping them costs nothing.
  Object.defineProperty(model, DECODED_FROM, { value: bytes, configurable: true });
  return model;
}

/** Symbol under which a decoded model keeps the bytes it was decoded from. */
export const DECODED_FROM: unique symbol = Symbol.for("prune-vit.onnx.decodedFrom");

/**
 * Encodes a model to bytes (byte-identical to the input for unchanged models decoded here).
 * Throws PruneError "too-large" above protobuf's 2 GiB limit.
 *
 * @example await Deno.writeFile("copy.onnx", encodeModel(model));
 */
export function encodeModel(model: ModelProto): Uint8Array {
  let out: Uint8Array;
  try {
    const buf = onnx.ModelProto.encode(model).finish(); // a Node Buffer: expose a plain view
    out = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    if (e instanceof RangeError) {
      throw new PruneError(
        "too-large",
        `the model cannot be encoded as one protobuf (${e.message}); write it with external data`,
      );
    }
    throw e;
  }
  if (out.length >= TWO_GIB) {
    throw new PruneError(
      "too-large",
      `the encoded model is ${out.length} bytes, over protobuf's 2 GiB limit; use external data`,
    );
  }
  return out;
}

/** Byte fields at least this long are written from their own bytes, not copied. */
const PIECE_FROM = 64 << 10;

/** One pending write of protobufjs' Writer: `fn(val, buf, pos)` fills `len` bytes at `pos`. */
interface WriterOp {
  fn(val: unknown, buf: Uint8Array, pos: number): void;
  len: number;
  val: unknown;
  next?: WriterOp;
}

/** A piece of an encoded model: bytes, or bytes produced when asked for (once): whole, or in
 * pieces handed to a sink where the tensor can be. */
export type ModelPiece = Uint8Array | DeferredBytes;

/**
 * The bytes of {@link encodeModel}, as pieces to write one after another: every large byte
 * field (a tensor's raw data) is its own bytes — a view into the model it came from, never copied
 * — or, for a tensor whose bytes are produced when asked for (cut from the input while the output
 * is written), a reader called when its piece is written; the framing between them (tags,
 * lengths, names, small fields) is laid out in a few buffers of its own. protobufjs computes
 * every length before it copies anything (its writer records the writes, then runs them into one
 * buffer): the records are run here instead, except the copies of large byte fields. Throws
 * PruneError "too-large" above protobuf's 2 GiB limit.
 *
 * @example for (const p of encodeModelPieces(model)) await file.write(p instanceof Uint8Array ? p : p.read());
 */
export function encodeModelPieces(model: ModelProto): ModelPiece[] {
  // Tensors read when asked for are encoded from a stand-in of their length.
  const later = new Map<object, DeferredBytes>();
  const restore: [TensorProto, PropertyDescriptor][] = [];
  for (const t of allTensors(model)) {
    const d = deferredRawData(t);
    if (!d || d.length < PIECE_FROM) continue;
    const standIn = { length: d.length };
    later.set(standIn, d);
    restore.push([t, Object.getOwnPropertyDescriptor(t, "rawData")!]);
    Object.defineProperty(t, "rawData", { configurable: true, enumerable: true, value: standIn });
  }
  let writer;
  try {
    writer = onnx.ModelProto.encode(model) as unknown as {
      head: WriterOp;
      len: number;
      constructor: { alloc(size: number): Uint8Array };
    };
  } finally {
    for (const [t, own] of restore) Object.defineProperty(t, "rawData", own);
  }
  if (writer.len >= TWO_GIB) {
    throw new PruneError(
      "too-large",
      `the encoded model is ${writer.len} bytes, over protobuf's 2 GiB limit; use external data`,
    );
  }
  const pieces: ModelPiece[] = [];
  let run: WriterOp | undefined, runLength = 0;
  const flush = (end: WriterOp | undefined) => {
    if (!run || runLength === 0) return;
    // The writer's own buffer type: its string writes use Buffer methods.
    const buf = writer.constructor.alloc(runLength);
    let pos = 0;
    for (let op: WriterOp | undefined = run; op !== end; op = op!.next) {
      op!.fn(op!.val, buf, pos);
      pos += op!.len;
    }
    pieces.push(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
  };
  for (let op = writer.head.next; op; op = op.next) {
    const v = op.val as object;
    const lazy = later.get(v);
    if (lazy || (op.len >= PIECE_FROM && v instanceof Uint8Array && v.length === op.len)) {
      flush(op);
      run = undefined;
      runLength = 0;
      pieces.push(lazy ?? v as Uint8Array);
      continue;
    }
    if (!run) run = op;
    runLength += op.len;
  }
  flush(undefined);
  return pieces;
}

/**
 * Reads an ONNX file, loading external tensor data (relative locations inside the model's
 * folder only) into raw_data. PruneError "not-found", "not-onnx", "truncated",
 * "unsafe-external-data".
 *
 * @example const model = await readModelFile("models/vit-base.onnx");
 */
export async function readModelFile(path: string): Promise<ModelProto> {
  let model: ModelWithSource | undefined;
  try {
    const size = await checkModelFile(path);
    if (size >= SKELETON_FROM) {
      // The weights stay in the file until used (onnx/skeleton.ts).
      model = await readModelSkeleton(await Deno.realPath(path), (b) => decodeModel(b, path))
        .catch((e) => {
          // A damaged file is read whole, for decodeModel's account of what is wrong.
          if (e instanceof PruneError && e.code === "truncated") return undefined;
          throw e;
        });
      // The skeleton's bytes are not the model's: nothing may stand for the model with them.
      if (model) delete (model as { [DECODED_FROM]?: Uint8Array })[DECODED_FROM];
    }
    model ??= decodeModel(await readWhole(path), path);
  } catch (e) {
    if (e instanceof PruneError) throw e;
    if (e instanceof Deno.errors.NotFound) {
      throw new PruneError("not-found", `${path}: no such file`);
    }
    if (e instanceof Deno.errors.IsADirectory) {
      throw new PruneError("not-onnx", `${path}: is a directory, expected an .onnx file`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new PruneError("unreadable", `${path}: permission denied`);
    }
    throw e;
  }
  const externalFiles = await loadExternalData(model, path);
  Object.defineProperty(model, MODEL_SOURCE, {
    value: { path: await Deno.realPath(path), externalFiles },
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return model;
}

/** Files at least this large are looked at before they are read whole. */
const HEAD_CHECKED_ABOVE = 16 << 20;
/** One-file models at least this large are read as a skeleton, their weights left in the file. */
const SKELETON_FROM = 32 << 20;

/**
 * Looks at a model file before reading it whole: a regular file (a FIFO would block), under
 * protobuf's 2 GiB limit, and starting with fields a ModelProto can have.
 */
async function checkModelFile(path: string): Promise<number> {
  const info = await Deno.stat(path);
  if (info.isDirectory) {
    throw new PruneError("not-onnx", `${path}: is a directory, expected an .onnx file`);
  }
  if (!info.isFile) {
    throw new PruneError("not-onnx", `${path}: is ${kindOf(info)}, expected an .onnx file`);
  }
  if (info.size >= TWO_GIB) {
    throw new PruneError(
      "not-onnx",
      `${path}: not an ONNX model: the file has ${info.size} bytes, and a model in one protobuf ` +
        `file is below 2 GiB (larger models keep their tensors in external data files)`,
    );
  }
  if (info.size < HEAD_CHECKED_ABOVE) return info.size; // decodeModel says what is wrong
  const file = await Deno.open(path);
  const head = new Uint8Array(Math.min(info.size, 4096));
  const n = await readInto(file, head).finally(() => file.close());
  const scan = scanWire(head, 0, n);
  const badWire = scan.fields.find(([f, wt]) =>
    MODEL_WIRE[f] !== undefined && MODEL_WIRE[f] !== wt
  );
  if (scan.status === "invalid" || badWire) {
    throw new PruneError(
      "not-onnx",
      `${path}: not an ONNX model: the file does not start like a protobuf ModelProto ` +
        `(${badWire ? `field ${badWire[0]} has wire type ${badWire[1]}` : "bad field tag"} in ` +
        `its first ${n} bytes). Is this really a .onnx file?`,
    );
  }
  return info.size;
}

/** Options of {@link writeModelFile}. */
export interface WriteModelOptions {
  /** The file the model was read from: never overwritten (real paths compared). */
  inputPath?: string;
  /**
   * true / {location, sizeThreshold}: tensors ≥ sizeThreshold bytes (default 1024), and those that
   * were external in the input, go to `location` next to the output (default
   * `<output basename>.<hash of the data>.data`: a model never meets another run's data file, and
   * the data file of the model it replaces is removed). false: all inline. Default: external if the input had external data or the model
   * would exceed 2 GiB.
   */
  externalData?: boolean | { location?: string; sizeThreshold?: number };
}

function dirname(path: string) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function basename(path: string) {
  return path.slice(path.lastIndexOf("/") + 1);
}

async function realOrPlanned(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  let dir: string;
  try {
    dir = await Deno.realPath(dirname(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PruneError(
        "not-found",
        `${path}: the output folder '${dirname(path)}' does not exist`,
      );
    }
    throw e;
  }
  return `${dir === "/" ? "" : dir}/${basename(path)}`;
}

/** Bytes of the model's tensor data (inline and external): what one protobuf would hold. */
export function estimateSize(model: ModelProto): number {
  let n = 0;
  for (const t of allTensors(model)) n += tensorDataSize(t);
  return n;
}

/** What a write found and did besides writing the model. */
export interface WriteResult {
  /** Temp files of earlier runs into the same folder that were killed while writing: removed
   * (their process is gone) or kept (their process cannot be checked on this system). */
  leftovers: { removed: string[]; kept: string[] };
}

/**
 * Writes a model atomically (temp file + rename, also for its external data file), refusing to
 * overwrite `inputPath` or the input's external data.
 *
 * @example await writeModelFile(model, "out/vit-pruned.onnx", { inputPath: "vit.onnx" });
 */
export async function writeModelFile(
  model: ModelProto,
  path: string,
  options: WriteModelOptions = {},
): Promise<WriteResult> {
  const outReal = await realOrPlanned(path);
  const source = (model as ModelWithSource)[MODEL_SOURCE];
  const protectedFiles = new Map<string, string>();
  if (options.inputPath) {
    try {
      protectedFiles.set(await Deno.realPath(options.inputPath), "the input model");
    } catch { /* input gone: nothing to protect */ }
  }
  if (source) protectedFiles.set(source.path, "the file this model was read from");
  for (const f of source?.externalFiles ?? []) {
    protectedFiles.set(f, "an external data file of the input model");
  }
  const refuse = (target: string, what: string) => {
    const hit = protectedFiles.get(target);
    if (hit) {
      throw new PruneError(
        "would-overwrite-input",
        `${what} '${target}' is ${hit}; refusing to overwrite it. Choose another output path.`,
      );
    }
  };
  refuse(outReal, "output");
  const keep = async (file: string) => protectedFiles.has(await realOrPlanned(file));

  const opt = options.externalData;
  const external = opt === undefined
    ? hasExternalData(model) || estimateSize(model) >= TWO_GIB - 64 * 2 ** 20
    : opt !== false;
  if (!external) {
    const unresolved = allTensors(model).find((t) => t.dataLocation === 1);
    if (unresolved) {
      throw new PruneError(
        "external-data",
        `${path}: tensor '${unresolved.name}' still refers to external data that was not loaded ` +
          `(read the model with readModelFile)`,
      );
    }
    // Written piece by piece: the tensors go out from their own bytes (or are cut as they go
    // out), with no copy of the model.
    const pieces = encodeModelPieces(model);
    return await atomicWrite(path, keep, async (stage) => {
      const written = await stage.write(async (file) => {
        for (const piece of pieces) {
          if (piece instanceof Uint8Array) await writeAll(file, piece);
          else if (!piece.stream) await writeAll(file, piece.read());
          else {
            let n = 0;
            await piece.stream((bytes) => (n += bytes.length, writeAll(file, bytes)));
            if (n !== piece.length) {
              throw new PruneError(
                "internal",
                `a tensor written in pieces gave ${n} bytes instead of ${piece.length}`,
              );
            }
          }
        }
      });
      stage.place(written, path);
    });
  }

  const cfg = typeof opt === "object" ? opt : {};
  const threshold = cfg.sizeThreshold ?? 1024;
  const checkLocation = async (location: string) => {
    const parts = checkRelativeLocation(location, "(output)", path);
    const dataPath = `${dirname(path)}/${parts.join("/")}`;
    refuse(await realOrPlanned(dataPath), "external data file");
    if (await realOrPlanned(dataPath) === outReal) {
      throw new PruneError(
        "bad-option",
        `${path}: the external data location '${location}' is the model file itself`,
      );
    }
    return { parts, dataPath };
  };
  if (cfg.location !== undefined) await checkLocation(cfg.location);

  // Lay out the data file, then encode with temporary external references; restore afterwards.
  // Tensors read lazily from the input's data file are measured, not read, until written.
  const chosen: {
    t: TensorProto;
    length: number;
    offset: number;
    own?: PropertyDescriptor;
  }[] = [];
  let size = 0;
  for (const t of allTensors(model)) {
    if (t.dataLocation === 1) {
      throw new PruneError(
        "external-data",
        `${path}: tensor '${t.name}' still refers to external data that was not loaded ` +
          `(read the model with readModelFile)`,
      );
    }
    if (t.dataType === onnx.TensorProto.DataType.STRING) continue;
    const own = Object.getOwnPropertyDescriptor(t, "rawData");
    const length = deferredRawData(t)?.length ?? t.rawData?.length ?? 0;
    const wasExternal = (t as TensorWithOrigin)[EXTERNAL_ORIGIN] !== undefined;
    if (!length || (length < threshold && !wasExternal)) continue;
    const align = length >= 2 ** 20 ? 4096 : 64;
    size = Math.ceil(size / align) * align;
    chosen.push({ t, length, offset: size, own });
    size += length;
  }
  // Streamed tensor by tensor: the data file is never held in memory as a whole. A tensor read
  // (and cut) when asked for is produced while the one before it is being written, and hashed
  // while it is written: the hash names the data file, so a model only ever meets its own data.
  const digests: Uint8Array[] = [];
  const writeData = async (file: Deno.FsFile) => {
    let at = 0;
    let writing: Promise<unknown> = Promise.resolve();
    for (const c of chosen) {
      const bytes = c.t.rawData!;
      await writing;
      if (c.offset > at) await writeAll(file, new Uint8Array(c.offset - at));
      writing = Promise.all([
        writeAll(file, bytes),
        crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>).then((d) =>
          digests.push(new Uint8Array(d))
        ),
      ]);
      at = c.offset + c.length;
    }
    await writing;
  };
  return await atomicWrite(path, keep, async (stage) => {
    let location = cfg.location;
    let dataPath: string | undefined;
    if (chosen.length) {
      const dataTemp = await stage.write(writeData);
      if (location === undefined) location = `${basename(path)}.${await dataHash()}.data`;
      const checked = await checkLocation(location);
      dataPath = checked.dataPath;
      stage.place(dataTemp, dataPath);
    }
    const bytes = encodeWithLocation(location ?? "");
    stage.place(await stage.write(bytes), path);
  });

  async function dataHash(): Promise<string> {
    const layout = new TextEncoder().encode(chosen.map((c) => `${c.offset}+${c.length}`).join(","));
    const all = new Uint8Array(layout.length + 32 * digests.length);
    all.set(layout);
    digests.forEach((d, i) => all.set(d, layout.length + 32 * i));
    const d = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
    return [...d.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function encodeWithLocation(location: string): Uint8Array {
    const saved = chosen.map((c) => ({
      externalData: c.t.externalData,
      hadLocation: Object.hasOwn(c.t, "dataLocation"),
      dataLocation: c.t.dataLocation,
    }));
    try {
      for (const c of chosen) {
        delete c.t.rawData;
        c.t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        c.t.externalData = [
          { key: "location", value: checkRelativeLocation(location, "(output)", path).join("/") },
          { key: "offset", value: String(c.offset) },
          { key: "length", value: String(c.length) },
        ];
      }
      return encodeModel(model);
    } finally {
      chosen.forEach((c, i) => {
        if (c.own) Object.defineProperty(c.t, "rawData", c.own);
        else delete c.t.rawData;
        c.t.externalData = saved[i].externalData ?? [];
        if (saved[i].hadLocation) c.t.dataLocation = saved[i].dataLocation;
        else delete c.t.dataLocation;
      });
    }
  }
}

/** The files of one write: each written to a temp file first, then put in place together. */
interface Stage {
  /** Writes a temp file beside the output; its path. */
  write(content: Uint8Array | WriteTo): Promise<string>;
  /** Puts a written temp file at `target` when the write commits (in the order asked). */
  place(temp: string, target: string): void;
}

/** Data files that earlier writes of `output` named after their content (`<name>.<hash>.data`). */
async function formerDataFiles(output: string): Promise<string[]> {
  const base = basename(output).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`^${base}\\.[0-9a-f]{16}\\.data$`);
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dirname(output))) {
      if (e.isFile && pattern.test(e.name)) out.push(`${dirname(output)}/${e.name}`);
    }
  } catch { /* not listable: nothing to clean */ }
  return out;
}

/**
 * Writes the files of a model through temp files, then, holding the folder's lock, renames them
 * into place (data file first, the model last: the model's rename is the moment the new pair
 * appears) and removes the data files of the model it replaced. On failure, or SIGINT/SIGTERM,
 * the temp files are removed and nothing that existed before is changed.
 */
async function atomicWrite(
  output: string,
  keep: (file: string) => Promise<boolean>,
  build: (stage: Stage) => Promise<void>,
): Promise<WriteResult> {
  const leftovers = await cleanLeftovers(output);
  const temps: string[] = [];
  const moves: [string, string][] = [];
  const fail = (target: string, e: unknown): never => {
    if (e instanceof PruneError) throw e;
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new PruneError("unwritable", `${target}: cannot write here (permission denied)`);
    }
    if (e instanceof Deno.errors.NotFound) {
      throw new PruneError("not-found", `${target}: the output folder does not exist`);
    }
    throw new PruneError(
      "unwritable",
      `${target}: writing failed (${e instanceof Error ? e.message : e})`,
    );
  };
  const stage: Stage = {
    async write(content) {
      const tmp = tempPath(output);
      temps.push(tmp);
      trackTemp(tmp);
      try {
        await writeWhole(tmp, content);
      } catch (e) {
        fail(output, e);
      }
      return tmp;
    },
    place(temp, target) {
      moves.push([temp, target]);
    },
  };
  try {
    await build(stage);
    for (const [, target] of moves) {
      if ((await Deno.stat(target).catch(() => null))?.isDirectory) {
        throw new PruneError("unwritable", `${target}: is a directory; cannot write a file there`);
      }
    }
    await withFolderLock(dirname(output), async () => {
      const former = await formerDataFiles(output);
      const placed: string[] = [];
      try {
        for (const [temp, target] of moves) {
          const existed = await Deno.stat(target).then(() => true, () => false);
          try {
            await Deno.rename(temp, target);
          } catch (e) {
            throw new PruneError(
              "unwritable",
              `${target}: cannot replace the file (${e instanceof Error ? e.message : e})`,
            );
          }
          if (!existed) placed.push(target);
        }
      } catch (e) {
        for (const p of placed) await Deno.remove(p).catch(() => {});
        throw e;
      }
      const kept = new Set(moves.map(([, target]) => target));
      for (const f of former) {
        if (!kept.has(f) && !(await keep(f))) await Deno.remove(f).catch(() => {});
      }
    });
  } finally {
    for (const t of temps) {
      await Deno.remove(t).catch(() => {});
      untrackTemp(t);
    }
  }
  return { leftovers };
}
