/**
 * The one place that imports `onnx-proto` (protobufjs 6 static code for the ONNX IR 8 schema,
 * onnx v1.10.2). Besides re-exporting the namespace, this module patches the generated
 * encoders/decoders so that a decode → encode round trip keeps everything:
 *
 * - **Unknown fields** (fields newer than the IR 8 schema, e.g. IR 10 `NodeProto.metadata_props`,
 *   `FunctionProto.value_info`, `TensorProto.metadata_props`, `ModelProto.configuration`) are
 *   kept as raw wire bytes on the decoded message (under the {@link UNKNOWN_FIELDS} symbol) and
 *   written back at the end of the message. Stock protobufjs silently drops them.
 * - **Unpacked repeated scalars**: onnx.proto is proto2, where `TensorProto.dims`,
 *   `SparseTensorProto.dims`, `AttributeProto.floats` and `AttributeProto.ints` are *not* packed,
 *   but onnx-proto was generated with packed encoding. We write them unpacked, as the reference
 *   C++/Python protobuf does, so unchanged models re-encode byte-identically.
 *
 * Field names are protobufjs' camelCase (`rawData`, `dataType`, `opsetImport`, ...). int64 fields
 * decode as `Long` objects: use {@link toNumber}.
 *
 * @module
 */
import p from "onnx-proto";
import { PruneError } from "../errors.ts";

/** The `onnx` protobuf namespace (classes ModelProto, GraphProto, NodeProto, TensorProto, ...). */
export const onnx: typeof p.onnx = p.onnx;

/** A protobufjs `Long` (what int64 fields decode to). */
export interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
}

/** Model (top-level message). Decoded messages are class instances; literals are accepted too. */
export type ModelProto = p.onnx.IModelProto;
/** Graph: nodes, initializers, inputs/outputs, value_info. */
export type GraphProto = p.onnx.IGraphProto;
/** One operator call. */
export type NodeProto = p.onnx.INodeProto;
/** Tensor data (initializers, Constant values, test data `.pb` files). */
export type TensorProto = p.onnx.ITensorProto;
/** Node attribute. */
export type AttributeProto = p.onnx.IAttributeProto;
/** Named, typed value (graph input/output/value_info). */
export type ValueInfoProto = p.onnx.IValueInfoProto;
/** Type of a value. */
export type TypeProto = p.onnx.ITypeProto;
/** Shape of a tensor type. */
export type TensorShapeProto = p.onnx.ITensorShapeProto;
/** Opset import entry. */
export type OperatorSetIdProto = p.onnx.IOperatorSetIdProto;
/** Key/value string pair (metadata_props, external_data). */
export type StringStringEntryProto = p.onnx.IStringStringEntryProto;
/** Model-local function. */
export type FunctionProto = p.onnx.IFunctionProto;
/** Sparse tensor. */
export type SparseTensorProto = p.onnx.ISparseTensorProto;

/** ONNX `TensorProto.DataType` values. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;

/** Name of a data type number, e.g. `dataTypeName(1) === "FLOAT"`. */
export function dataTypeName(dataType: number): string {
  for (const [k, v] of Object.entries(DataType)) if (v === dataType) return k;
  return `unknown(${dataType})`;
}

/**
 * Converts an int64 field value (number, protobufjs Long, bigint) to a JS number.
 * Throws a PruneError when the value is not exactly representable.
 *
 * @example toNumber(model.irVersion) // → 8
 */
export function toNumber(v: number | bigint | LongLike | null | undefined): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  if (typeof v === "bigint") {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) {
      throw new PruneError("int-overflow", `integer ${v} does not fit in a JS number`);
    }
    return n;
  }
  const lo = v.low >>> 0;
  const hi = v.unsigned ? v.high >>> 0 : v.high | 0;
  const n = hi * 4294967296 + lo;
  if (!Number.isSafeInteger(n)) {
    const big = (BigInt(hi) << 32n) + BigInt(lo);
    throw new PruneError("int-overflow", `integer ${big} does not fit in a JS number`);
  }
  return n;
}

/** Converts an int64 field value to a bigint (exact). @example toBigInt(t.int64Data[0]) */
export function toBigInt(v: number | bigint | LongLike | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return BigInt(v);
  const lo = BigInt(v.low >>> 0);
  const hi = BigInt(v.unsigned ? v.high >>> 0 : v.high | 0);
  return (hi << 32n) + lo;
}

// ---------------------------------------------------------------------------------------------
// Unknown-field preservation and proto2-compatible encoding.

/**
 * Symbol under which a decoded message keeps the raw bytes (tag + value) of fields unknown to
 * the IR 8 schema. They are re-emitted at the end of the message when encoding.
 */
export const UNKNOWN_FIELDS: unique symbol = Symbol.for("prune-vit.onnx.unknownFields");

/** A message object that may carry preserved unknown fields. */
export type WithUnknown = { [UNKNOWN_FIELDS]?: Uint8Array[] };

// deno-lint-ignore no-explicit-any
type AnyType = any;
// deno-lint-ignore no-explicit-any
type Writer = any;

/** Field numbers of newer ONNX versions, for readable warnings. Keyed by protobufjs class name. */
const NEWER_FIELDS: Record<string, Record<number, string>> = {
  ModelProto: { 26: "configuration (IR 10)" },
  GraphProto: { 16: "metadata_props (IR 10)" },
  NodeProto: { 8: "overload (IR 10)", 9: "metadata_props (IR 10)", 10: "device_configurations" },
  ValueInfoProto: { 4: "metadata_props (IR 10)" },
  TensorProto: { 16: "metadata_props (IR 10)" },
  FunctionProto: {
    11: "attribute_proto (IR 9)",
    12: "value_info (IR 10)",
    13: "overload (IR 10)",
    14: "metadata_props (IR 10)",
  },
  AttributeProto: {},
};

/** Message classes and the field numbers their (generated) decoder knows. */
const knownFieldsByType = new Map<AnyType, Set<number>>();

function messageTypes(): [string, AnyType][] {
  const out: [string, AnyType][] = [];
  const visit = (prefix: string, ns: Record<string, AnyType>) => {
    for (const [name, v] of Object.entries(ns)) {
      if (typeof v === "function" && typeof v.decode === "function") {
        out.push([prefix + name, v]);
        visit(prefix + name + ".", v as Record<string, AnyType>);
      }
    }
  };
  visit("", p.onnx as unknown as Record<string, AnyType>);
  return out;
}

/** Reads a varint at `pos`; returns [value (number, may lose precision above 2^53), newPos]. */
function readVarint(buf: Uint8Array, pos: number, end: number): [number, number] {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) return [-1, -1];
    const b = buf[pos++];
    result += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return [result, pos];
    mul *= 128;
  }
  return [-1, -1];
}

/**
 * Skips one field value of wire type `wt` starting at `pos`. Returns the position after it, or
 * -1 when the bytes are malformed/truncated.
 */
function skipField(buf: Uint8Array, pos: number, end: number, wt: number, depth = 0): number {
  switch (wt) {
    case 0: {
      const [, np] = readVarint(buf, pos, end);
      return np;
    }
    case 1:
      return pos + 8 <= end ? pos + 8 : -1;
    case 2: {
      const [len, np] = readVarint(buf, pos, end);
      if (np < 0 || np + len > end) return -1;
      return np + len;
    }
    case 5:
      return pos + 4 <= end ? pos + 4 : -1;
    case 3: {
      if (depth > 64) return -1;
      while (pos < end) {
        const [tag, np] = readVarint(buf, pos, end);
        if (np < 0) return -1;
        if ((tag & 7) === 4) return np;
        pos = skipField(buf, np, end, tag & 7, depth + 1);
        if (pos < 0) return -1;
      }
      return -1;
    }
    default:
      return -1;
  }
}

/** Result of a shallow scan of one message's top-level fields. */
export interface WireScan {
  /** "ok", "truncated" (a field runs past the end), or "invalid" (bad tag / wire type). */
  status: "ok" | "truncated" | "invalid";
  /** [fieldNumber, wireType] of each top-level field, in order. */
  fields: [number, number][];
}

/**
 * Scans the top-level fields of a protobuf message without decoding it.
 *
 * @example scanWire(bytes).status // → "ok"
 */
export function scanWire(buf: Uint8Array, start = 0, end = buf.length): WireScan {
  const fields: [number, number][] = [];
  let pos = start;
  while (pos < end) {
    const [tag, np] = readVarint(buf, pos, end);
    if (np < 0) return { status: "truncated", fields };
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 0 || wt === 4 || wt === 6 || wt === 7) return { status: "invalid", fields };
    const after = skipField(buf, np, end, wt);
    if (after < 0) return { status: wt === 3 ? "invalid" : "truncated", fields };
    fields.push([field, wt]);
    pos = after;
  }
  return { status: "ok", fields };
}

function collectUnknown(
  buf: Uint8Array,
  start: number,
  end: number,
  known: Set<number>,
): Uint8Array[] | undefined {
  let out: Uint8Array[] | undefined;
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const [tag, np] = readVarint(buf, pos, end);
    if (np < 0) break;
    const after = skipField(buf, np, end, tag & 7);
    if (after < 0) break;
    if (!known.has(Math.floor(tag / 8))) (out ??= []).push(buf.subarray(fieldStart, after));
    pos = after;
  }
  return out;
}

function writeRaw(val: Uint8Array, buf: Uint8Array, pos: number) {
  buf.set(val, pos);
}

function appendUnknown(message: AnyType, writer: Writer) {
  const unk: Uint8Array[] | undefined = message?.[UNKNOWN_FIELDS];
  if (unk) { for (const raw of unk) writer._push(writeRaw, raw.length, raw); }
}

function own(o: AnyType, k: string) {
  return o != null && Object.prototype.hasOwnProperty.call(o, k) && o[k] != null;
}

/** Shallow copy of a message without the given keys (own properties only matter to encoders). */
function without(message: AnyType, keys: string[]): AnyType {
  const copy: AnyType = {};
  for (const k of Object.keys(message)) if (!keys.includes(k)) copy[k] = message[k];
  return copy;
}

function pick(message: AnyType, keys: string[]): AnyType {
  const copy: AnyType = {};
  for (const k of keys) if (own(message, k)) copy[k] = message[k];
  return copy;
}

let patched = false;

function patch() {
  if (patched) return;
  patched = true;
  const origModelEncode = (p.onnx.ModelProto as AnyType).encode;
  for (const [, T] of messageTypes()) {
    const origDecode = T.decode;
    const known = new Set<number>();
    for (const m of String(origDecode).matchAll(/case (\d+):/g)) known.add(Number(m[1]));
    knownFieldsByType.set(T, known);
    T.decode = function decode(reader: AnyType, length?: number) {
      let buf: Uint8Array, start: number, end: number;
      if (reader instanceof Uint8Array) {
        // Decode from a plain Uint8Array view, so bytes fields are plain Uint8Array views too
        // (a Node Buffer input would give Buffers, whose .slice() does not copy).
        if (reader.constructor !== Uint8Array) {
          reader = new Uint8Array(reader.buffer, reader.byteOffset, reader.byteLength);
        }
        buf = reader;
        start = 0;
        end = reader.length;
      } else {
        buf = reader.buf;
        start = reader.pos;
        end = length === undefined ? reader.len : reader.pos + length;
      }
      const message = origDecode.call(T, reader, length);
      const unk = collectUnknown(buf, start, end, known);
      if (unk) message[UNKNOWN_FIELDS] = unk;
      return message;
    };
    const origEncode = T.encode;
    T.encode = function encode(message: AnyType, writer?: Writer) {
      writer = origEncode.call(T, message, writer);
      appendUnknown(message, writer);
      return writer;
    };
  }

  // proto2 unpacked repeated scalars (onnx.proto declares no [packed=true] on these). The copies
  // passed to the generated encoders have no UNKNOWN_FIELDS (Object.keys skips symbols); the
  // unknown fields are appended last, after the known ones, as protoc-generated code does.
  const newWriter = (): Writer => origModelEncode.call(p.onnx.ModelProto, {});
  const Tensor = p.onnx.TensorProto as AnyType;
  const tensorEncode = Tensor.encode;
  Tensor.encode = function encode(message: AnyType, writer?: Writer) {
    if (!message?.dims?.length) return tensorEncode.call(Tensor, message, writer);
    const w = writer ?? newWriter();
    for (const d of message.dims) w.uint32(8).int64(d); // field 1
    tensorEncode.call(Tensor, without(message, ["dims"]), w);
    appendUnknown(message, w);
    return w;
  };
  const Sparse = p.onnx.SparseTensorProto as AnyType;
  const sparseEncode = Sparse.encode;
  Sparse.encode = function encode(message: AnyType, writer?: Writer) {
    if (!message?.dims?.length) return sparseEncode.call(Sparse, message, writer);
    const w = sparseEncode.call(Sparse, without(message, ["dims"]), writer); // fields 1, 2
    for (const d of message.dims) w.uint32(24).int64(d); // field 3
    appendUnknown(message, w);
    return w;
  };
  const Attr = p.onnx.AttributeProto as AnyType;
  const attrEncode = Attr.encode;
  const headKeys = ["name", "f", "i", "s", "t", "g"];
  Attr.encode = function encode(message: AnyType, writer?: Writer) {
    if (!message?.floats?.length && !message?.ints?.length) {
      return attrEncode.call(Attr, message, writer);
    }
    const w = attrEncode.call(Attr, pick(message, headKeys), writer); // fields 1..6
    for (const f of message.floats ?? []) w.uint32(61).float(f); // field 7, wire type 5
    for (const i of message.ints ?? []) w.uint32(64).int64(i); // field 8, wire type 0
    attrEncode.call(Attr, without(message, [...headKeys, "floats", "ints"]), w); // 9..
    appendUnknown(message, w);
    return w;
  };
}

patch();

/**
 * Lists the fields of a decoded model that the IR 8 schema of onnx-proto does not know (they are
 * preserved verbatim on re-encode, but cannot be inspected or edited). One line per message.
 *
 * @example for (const w of unknownFieldWarnings(model)) console.warn(w);
 */
export function unknownFieldWarnings(model: ModelProto): string[] {
  const out: string[] = [];
  const seen = new Set<object>();
  const visit = (v: unknown, path: string) => {
    if (v === null || typeof v !== "object" || seen.has(v)) return;
    if (v instanceof Uint8Array || ArrayBuffer.isView(v)) return;
    seen.add(v);
    if (Array.isArray(v)) {
      v.forEach((x, i) => visit(x, `${path}[${i}]`));
      return;
    }
    const o = v as Record<string, unknown> & WithUnknown;
    if ("low" in o && "high" in o && "unsigned" in o) return; // Long
    const unk = o[UNKNOWN_FIELDS];
    if (unk?.length) {
      const typeName = (o.constructor as { name?: string })?.name ?? "message";
      const names = unk.map((raw) => {
        const [tag] = readVarint(raw, 0, raw.length);
        const num = Math.floor(tag / 8);
        const label = NEWER_FIELDS[typeName]?.[num];
        return label ? `${num} ${label}` : `${num}`;
      });
      const label = typeof o.name === "string" && o.name ? ` '${o.name}'` : "";
      out.push(
        `${path || "model"}${label} (${typeName}): field(s) ${
          [...new Set(names)].join(", ")
        } unknown to the IR 8 schema; kept verbatim, not interpreted`,
      );
    }
    for (const [k, x] of Object.entries(o)) visit(x, path ? `${path}.${k}` : k);
  };
  visit(model, "");
  return out;
}

/**
 * Field numbers the bundled (IR 8) decoder knows for a message class.
 *
 * @example knownFieldNumbers(onnx.NodeProto) // → Set {1,2,3,4,5,6,7}
 */
export function knownFieldNumbers(type: unknown): Set<number> {
  return new Set(knownFieldsByType.get(type) ?? []);
}
