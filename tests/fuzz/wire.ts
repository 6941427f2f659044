/**
 * The protobuf wire structure of an ONNX model, walked with ONNX's schema: where every tag,
 * length prefix and varint value sits. Wire-level mutations flip bits at these sites, so they hit
 * framing and integers (types, dims, attribute values) rather than tensor payloads.
 */

/** One varint in the encoded model. */
export interface WireSite {
  /** Byte offset of the varint and its length in bytes. */
  pos: number;
  len: number;
  /** A field's tag, a length prefix, or an integer value (a packed element counts as one). */
  kind: "tag" | "length" | "value";
  /** Message and field, e.g. "TensorProto.dims". */
  field: string;
}

type Kind = "msg" | "packed" | "bytes" | "scalar";
/** Field number → [name, what a length-delimited occurrence holds, message type]. */
type Schema = Record<number, [string, Kind, string?]>;

// ONNX's onnx.proto: sub-messages and packed integers to descend into, and the names of the
// scalar fields a mutation report mentions.
const SCHEMA: Record<string, Schema> = {
  ModelProto: {
    1: ["ir_version", "scalar"],
    7: ["graph", "msg", "GraphProto"],
    8: ["opset_import", "msg", "OperatorSetIdProto"],
    14: ["metadata_props", "msg", "StringStringEntryProto"],
    25: ["functions", "msg", "FunctionProto"],
  },
  GraphProto: {
    1: ["node", "msg", "NodeProto"],
    5: ["initializer", "msg", "TensorProto"],
    11: ["input", "msg", "ValueInfoProto"],
    12: ["output", "msg", "ValueInfoProto"],
    13: ["value_info", "msg", "ValueInfoProto"],
    15: ["sparse_initializer", "msg", "SparseTensorProto"],
    2: ["name", "bytes"],
  },
  FunctionProto: {
    7: ["node", "msg", "NodeProto"],
    11: ["attribute_proto", "msg", "AttributeProto"],
    4: ["opset_import", "msg", "OperatorSetIdProto"],
  },
  NodeProto: {
    1: ["input", "bytes"],
    2: ["output", "bytes"],
    3: ["name", "bytes"],
    4: ["op_type", "bytes"],
    5: ["attribute", "msg", "AttributeProto"],
    7: ["domain", "bytes"],
  },
  AttributeProto: {
    1: ["name", "bytes"],
    2: ["f", "scalar"],
    3: ["i", "scalar"],
    4: ["s", "bytes"],
    7: ["floats", "bytes"],
    20: ["type", "scalar"],
    5: ["t", "msg", "TensorProto"],
    6: ["g", "msg", "GraphProto"],
    8: ["ints", "packed"],
    10: ["tensors", "msg", "TensorProto"],
    11: ["graphs", "msg", "GraphProto"],
    14: ["tp", "msg", "TypeProto"],
  },
  TensorProto: {
    1: ["dims", "packed"],
    2: ["data_type", "scalar"],
    4: ["float_data", "bytes"],
    8: ["name", "bytes"],
    9: ["raw_data", "bytes"],
    14: ["data_location", "scalar"],
    3: ["segment", "msg", "Segment"],
    5: ["int32_data", "packed"],
    7: ["int64_data", "packed"],
    11: ["uint64_data", "packed"],
    13: ["external_data", "msg", "StringStringEntryProto"],
  },
  SparseTensorProto: {
    1: ["values", "msg", "TensorProto"],
    2: ["indices", "msg", "TensorProto"],
    3: ["dims", "packed"],
  },
  ValueInfoProto: { 1: ["name", "bytes"], 2: ["type", "msg", "TypeProto"] },
  TypeProto: {
    1: ["tensor_type", "msg", "TypeProto.Tensor"],
    4: ["sequence_type", "msg", "TypeProto.Sequence"],
    9: ["optional_type", "msg", "TypeProto.Sequence"],
  },
  "TypeProto.Sequence": { 1: ["elem_type", "msg", "TypeProto"] },
  "TypeProto.Tensor": { 1: ["elem_type", "scalar"], 2: ["shape", "msg", "TensorShapeProto"] },
  TensorShapeProto: { 1: ["dim", "msg", "TensorShapeProto.Dimension"] },
  "TensorShapeProto.Dimension": { 1: ["dim_value", "scalar"], 2: ["dim_param", "bytes"] },
  OperatorSetIdProto: { 1: ["domain", "bytes"], 2: ["version", "scalar"] },
  StringStringEntryProto: {},
  Segment: {},
};

function varintEnd(buf: Uint8Array, pos: number, end: number): number {
  for (let i = pos; i < end && i < pos + 10; i++) if ((buf[i] & 0x80) === 0) return i + 1;
  return -1;
}

function varintValue(buf: Uint8Array, pos: number, end: number): number {
  let v = 0, mul = 1;
  for (let i = pos; i < end; i++) {
    v += (buf[i] & 0x7f) * mul;
    mul *= 128;
  }
  return v;
}

/**
 * Every varint of a well-formed model, in order. Stops quietly where the bytes stop making
 * sense (the seeds are valid models; this is only used on them).
 */
export function wireSites(buf: Uint8Array): WireSite[] {
  const sites: WireSite[] = [];
  // An explicit stack: [start, end, message type].
  const stack: [number, number, string][] = [[0, buf.length, "ModelProto"]];
  while (stack.length) {
    const [start, end, type] = stack.pop()!;
    const schema = SCHEMA[type] ?? {};
    let pos = start;
    while (pos < end) {
      const tagEnd = varintEnd(buf, pos, end);
      if (tagEnd < 0) break;
      const tag = varintValue(buf, pos, tagEnd);
      const field = Math.floor(tag / 8), wt = tag % 8;
      const [name, kind, sub] = schema[field] ?? [`#${field}`, "bytes"];
      const where = `${type}.${name}`;
      sites.push({ pos, len: tagEnd - pos, kind: "tag", field: where });
      pos = tagEnd;
      if (wt === 0) {
        const e = varintEnd(buf, pos, end);
        if (e < 0) break;
        sites.push({ pos, len: e - pos, kind: "value", field: where });
        pos = e;
      } else if (wt === 1) pos += 8;
      else if (wt === 5) pos += 4;
      else if (wt === 2) {
        const e = varintEnd(buf, pos, end);
        if (e < 0) break;
        const n = varintValue(buf, pos, e);
        sites.push({ pos, len: e - pos, kind: "length", field: where });
        const bodyEnd = e + n;
        if (bodyEnd > end) break;
        if (kind === "msg") stack.push([e, bodyEnd, sub!]);
        else if (kind === "packed") {
          for (let p = e; p < bodyEnd;) {
            const ve = varintEnd(buf, p, bodyEnd);
            if (ve < 0) break;
            sites.push({ pos: p, len: ve - p, kind: "value", field: where });
            p = ve;
          }
        }
        pos = bodyEnd;
      } else break;
    }
  }
  return sites.sort((a, b) => a.pos - b.pos);
}

/**
 * `value` as a varint of exactly `len` bytes where it fits (protobuf readers accept padded,
 * non-minimal varints), so the framing around it stays intact; else its minimal encoding.
 */
export function encodeVarint(value: bigint, len = 1): Uint8Array {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  do {
    out.push(Number(v & 0x7fn));
    v >>= 7n;
  } while (v > 0n);
  while (out.length < len) out.push(0);
  for (let i = 0; i < out.length - 1; i++) out[i] |= 0x80;
  return Uint8Array.from(out);
}
