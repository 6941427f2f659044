/**
 * A copy of a model that a dry run can rewrite like the real thing at the cost of its graph
 * only: every message, list and attribute is copied, tensor bytes are shared (nothing writes
 * them in place: a rewrite assigns new bytes), and every weight's data is read when asked for
 * — so cutting it is deferred too and never happens, since a dry run writes nothing. The
 * report of a dry run then comes from the rewritten copy: its parameters, MACs and shapes are
 * those the real run would give.
 *
 * @module
 */
import { onnx } from "./proto.ts";
import type { ModelProto, TensorProto } from "./proto.ts";
import { deferRawData, deferredRawData } from "./external_data.ts";

/** Tensors at most this large keep their bytes in place (shape vectors, scalars). */
const SMALL = 1024;

/**
 * The copy; `model` is left as it is.
 *
 * @example const copy = structuralCopy(model); await pruneModel(copy, options);
 */
export function structuralCopy(model: ModelProto): ModelProto {
  const copies = new Map<object, unknown>();
  const copy = (value: unknown): unknown => {
    if (value === null || typeof value !== "object") return value;
    if (ArrayBuffer.isView(value)) return value; // shared bytes
    const known = copies.get(value);
    if (known) return known;
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      copies.set(value, out);
      for (const x of value) out.push(copy(x));
      return out;
    }
    const out = Object.create(Object.getPrototypeOf(value));
    copies.set(value, out);
    for (const key of Reflect.ownKeys(value)) {
      const d = Object.getOwnPropertyDescriptor(value, key)!;
      if (key === "rawData" && value instanceof onnx.TensorProto) continue;
      Object.defineProperty(out, key, "value" in d ? { ...d, value: copy(d.value) } : d);
    }
    if (value instanceof onnx.TensorProto) shareData(value, out as TensorProto);
    return out;
  };
  return copy(model) as ModelProto;
}

function shareData(from: TensorProto, to: TensorProto): void {
  const later = deferredRawData(from);
  if (later) return deferRawData(to, later.length, later.read);
  const d = Object.getOwnPropertyDescriptor(from, "rawData");
  const raw = (d && ("value" in d ? d.value : d.get?.call(from))) as Uint8Array | undefined;
  if (!raw || raw.length <= SMALL) {
    if (raw) to.rawData = raw;
    return;
  }
  deferRawData(to, raw.length, () => raw);
}
