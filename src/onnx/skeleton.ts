/**
 * Reading a one-file model without holding its weights. The protobuf is walked from the file down
 * to the graph's initializers; each large `raw_data` field is skipped and its place in the file
 * recorded. The rest — the skeleton: nodes, names, shapes, small tensors — is decoded as usual,
 * and the large tensors are read from the file when used, as external data is: a model is never
 * held whole, and each weight's bytes land in a buffer of its own size when asked for (one buffer
 * of the file's size costs its page faults: ViT-B, 330 MiB, 0.35–0.49 s to read whole against
 * 0.11 s for `cp`, bench/RESULTS.md).
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { dimsByteLength, lazyRawData } from "./external_data.ts";
import type { ModelProto } from "./proto.ts";

/** Raw data at least this long is left in the file until used. */
export const SKELETON_RAW_FROM = 64 << 10;

/** Where a skipped `raw_data` lies in the file, by the initializer's index in the graph. */
interface Skipped {
  index: number;
  offset: number;
  length: number;
}

/** Wire type of length-delimited fields (messages, bytes, strings). */
const LEN = 2;
/** ModelProto.graph, GraphProto.initializer, TensorProto.raw_data. */
const MODEL_GRAPH = 7, GRAPH_INITIALIZER = 5, TENSOR_RAW_DATA = 9;

/** A window of the file, refilled where a read falls outside it: small, since after each skipped
 * raw data it is refilled past it, and a large window would read what was skipped. */
class FileWindow {
  #buffer = new Uint8Array(64 << 10);
  #start = 0;
  #end = 0;

  constructor(readonly file: Deno.FsFile, readonly size: number, readonly path: string) {}

  /** `length` bytes at `offset`: a view, valid until the next call. */
  view(offset: number, length: number): Uint8Array {
    if (offset + length > this.size) throw this.truncated();
    if (offset < this.#start || offset + length > this.#end) {
      if (length > this.#buffer.length) this.#buffer = new Uint8Array(length);
      this.file.seekSync(offset, Deno.SeekMode.Start);
      const want = Math.min(this.#buffer.length, this.size - offset);
      let at = 0;
      while (at < want) {
        const n = this.file.readSync(this.#buffer.subarray(at, want));
        if (n === null) throw this.truncated();
        at += n;
      }
      this.#start = offset;
      this.#end = offset + want;
    }
    return this.#buffer.subarray(offset - this.#start, offset - this.#start + length);
  }

  /** A varint at `offset`: its value and the offset after it. */
  varint(offset: number): [number, number] {
    const bytes = this.view(offset, Math.min(10, this.size - offset));
    let value = 0, scale = 1;
    for (let i = 0; i < bytes.length; i++) {
      value += (bytes[i] & 0x7f) * scale;
      if (bytes[i] < 0x80) return [value, offset + i + 1];
      scale *= 128;
    }
    throw this.truncated();
  }

  truncated(): PruneError {
    return new PruneError(
      "truncated",
      `${this.path}: the ONNX model is truncated or damaged: a field runs past the end of the ` +
        `${this.size}-byte file`,
    );
  }
}

/** One field of a message: where its tag starts, its number and wire type, where its value starts
 * (after a length prefix) and where the field ends. */
interface Field {
  start: number;
  number: number;
  wire: number;
  value: number;
  end: number;
}

/** The fields of the message in [start, end). Undefined for a group or a bad wire type: the
 * caller reads the file whole instead, and decodeModel says what is wrong. */
function fields(file: FileWindow, start: number, end: number): Field[] | undefined {
  const out: Field[] = [];
  for (let at = start; at < end;) {
    const [tag, afterTag] = file.varint(at);
    const number = Math.floor(tag / 8), wire = tag & 7;
    let value = afterTag, after: number;
    if (number === 0) return undefined;
    if (wire === 0) after = file.varint(afterTag)[1];
    else if (wire === 1) after = afterTag + 8;
    else if (wire === 5) after = afterTag + 4;
    else if (wire === LEN) {
      const [length, v] = file.varint(afterTag);
      value = v;
      after = v + length;
    } else return undefined;
    if (after > end) throw file.truncated();
    out.push({ start: at, number, wire, value, end: after });
    at = after;
  }
  return out;
}

function varintBytes(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** Bytes built from copies of file ranges and framing. */
class Pieces {
  readonly parts: Uint8Array[] = [];
  length = 0;
  copy(file: FileWindow, start: number, end: number) {
    for (let at = start; at < end;) {
      const n = Math.min(end - at, 64 << 10);
      this.push(file.view(at, n).slice());
      at += n;
    }
  }
  push(bytes: Uint8Array) {
    this.parts.push(bytes);
    this.length += bytes.length;
  }
  /** A length-delimited field holding `inner`. */
  field(number: number, inner: Pieces) {
    this.push(Uint8Array.from([...varintBytes(number * 8 + LEN), ...varintBytes(inner.length)]));
    for (const p of inner.parts) this.push(p);
  }
  join(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/**
 * The skeleton of the one-file model at `path` (its bytes with the graph initializers' large
 * raw data left out) and where each of those lies in the file; undefined when the file is not laid
 * out as expected (one graph field, each initializer's raw data once), for the caller to read it
 * whole instead.
 */
function skeletonOf(
  file: FileWindow,
  rawFrom: number,
): { bytes: Uint8Array; skipped: Skipped[] } | undefined {
  const top = fields(file, 0, file.size);
  const graphs = top?.filter((f) => f.number === MODEL_GRAPH);
  if (!top || graphs?.length !== 1 || graphs[0].wire !== LEN) return undefined;
  const model = new Pieces(), skipped: Skipped[] = [];
  for (const f of top) {
    if (f.number !== MODEL_GRAPH) {
      model.copy(file, f.start, f.end);
      continue;
    }
    const inGraph = fields(file, f.value, f.end);
    if (!inGraph) return undefined;
    const graph = new Pieces();
    let index = 0;
    for (const g of inGraph) {
      if (g.number !== GRAPH_INITIALIZER || g.wire !== LEN) {
        graph.copy(file, g.start, g.end);
        continue;
      }
      const inTensor = fields(file, g.value, g.end);
      if (!inTensor) return undefined;
      const raw = inTensor.filter((t) => t.number === TENSOR_RAW_DATA);
      if (raw.length > 1 || (raw[0] && raw[0].wire !== LEN)) return undefined;
      if (!raw[0] || raw[0].end - raw[0].value < rawFrom) {
        graph.copy(file, g.start, g.end);
      } else {
        const tensor = new Pieces();
        for (const t of inTensor) if (t !== raw[0]) tensor.copy(file, t.start, t.end);
        graph.field(GRAPH_INITIALIZER, tensor);
        skipped.push({ index, offset: raw[0].value, length: raw[0].end - raw[0].value });
      }
      index++;
    }
    model.field(MODEL_GRAPH, graph);
  }
  return { bytes: model.join(), skipped };
}

/**
 * Reads the one-file model at `path` with its large weights left in the file (see the module):
 * `decode` turns the skeleton's bytes into a model, whose initializers with at least `rawFrom`
 * bytes of raw data then read them from `path` when used. Undefined when the file is not laid
 * out as expected (the caller reads it whole). PruneError "truncated" when a field runs past the
 * end of the file.
 *
 * @example
 * const model = await readModelSkeleton("vit.onnx", (b) => decodeModel(b, "vit.onnx"));
 */
export async function readModelSkeleton(
  path: string,
  decode: (bytes: Uint8Array) => ModelProto,
  rawFrom: number = SKELETON_RAW_FROM,
): Promise<ModelProto | undefined> {
  const file = await Deno.open(path);
  let skeleton;
  try {
    skeleton = skeletonOf(new FileWindow(file, (await file.stat()).size, path), rawFrom);
  } finally {
    file.close();
  }
  if (!skeleton) return undefined;
  const model = decode(skeleton.bytes);
  const initializers = model.graph?.initializer ?? [];
  for (const { index, offset, length } of skeleton.skipped) {
    const t = initializers[index];
    lazyRawData(t, path, offset, length);
    const expected = dimsByteLength(t);
    // Data that does not fill its dims is read now (the read bytes replace the reader), for the
    // check a whole read gets (prune.ts).
    if (expected >= 0 && expected !== length) {
      const bytes = t.rawData!;
      t.rawData = bytes;
    }
  }
  return model;
}
