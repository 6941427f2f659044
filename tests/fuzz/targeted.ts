/**
 * The second mutation strategy: each case makes one or a few edits aimed at what a pruner reads —
 * bit flips and replaced values in the varints of the wire format (tags, lengths, dims, types,
 * attribute values), tensor data type swaps, edits of shape constants and integer attributes,
 * and removed or bypassed nodes. Deterministic in (model bytes, seed, case number).
 */
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { dataTypeName, toBigInt } from "../../src/onnx/proto.ts";
import type {
  AttributeProto,
  GraphProto,
  ModelProto,
  NodeProto,
  TensorProto,
  TypeProto,
} from "../../src/onnx/proto.ts";
import { elementSize, tensorRawBytes } from "../../src/onnx/tensor.ts";
import { mulberry32 } from "../seeded_random.ts";
import { encodeVarint, type WireSite, wireSites } from "./wire.ts";

/** Uniform integer in [0, n). */
type Pick = (n: number) => number;

function picker(seed: number, n: number): Pick {
  const r = mulberry32((Math.imul(seed, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca77)) >>> 0);
  return (k) => Math.floor(r() * Math.max(1, k));
}

function choose<T>(pick: Pick, xs: readonly T[]): T {
  return xs[pick(xs.length)];
}

const sitesOf = new WeakMap<Uint8Array, WireSite[]>();

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/** Values that break assumptions: zero, negatives, off by one, past int32 and int64. */
function edgeValue(pick: Pick, v: bigint): bigint {
  return choose(pick, [
    0n,
    1n,
    2n,
    -1n,
    -2n,
    v + 1n,
    v - 1n,
    v * 2n,
    v / 2n,
    -v,
    3n,
    7n,
    64n,
    (1n << 31n) - 1n,
    1n << 31n,
    -(1n << 31n) - 1n,
    1n << 32n,
    1n << 53n,
    INT64_MAX,
    INT64_MIN,
  ]);
}

function wireMutation(bytes: Uint8Array, pick: Pick): [Uint8Array, string] {
  let sites = sitesOf.get(bytes);
  if (!sites) sitesOf.set(bytes, sites = wireSites(bytes));
  const byKind = {
    value: sites.filter((s) => s.kind === "value"),
    length: sites.filter((s) => s.kind === "length"),
    tag: sites.filter((s) => s.kind === "tag"),
  };
  const out = bytes.slice();
  const edits: string[] = [];
  // Each edit keeps its varint's byte length where the value fits, so later edits and the
  // framing around them stay where they were.
  const count = 1 + pick(3);
  for (let e = 0; e < count; e++) {
    const kind = choose(pick, ["value", "value", "length", "length", "tag"] as const);
    const site = choose(pick, byKind[kind]);
    if (!site) continue;
    if (pick(3) < 2) {
      const bit = pick(site.len * 7); // payload bits; continuation bits framed below
      out[site.pos + Math.floor(bit / 7)] ^= 1 << (bit % 7);
      edits.push(`bit ${bit} of the ${kind} of ${site.field} at byte ${site.pos} flipped`);
    } else {
      let old = 0n;
      for (let i = site.len - 1; i >= 0; i--) old = (old << 7n) | BigInt(out[site.pos + i] & 0x7f);
      // A length stays a length: near its value, or past the end.
      const v = kind === "length"
        ? choose(pick, [old + 1n, old - 1n, old + 8n, old - 8n, 0n, old * 2n, old / 2n, 1n << 31n])
        : edgeValue(pick, old);
      const enc = encodeVarint(v, site.len);
      if (enc.length === site.len) out.set(enc, site.pos);
      else {
        const grown = new Uint8Array(out.length - site.len + enc.length);
        grown.set(out.subarray(0, site.pos));
        grown.set(enc, site.pos);
        grown.set(out.subarray(site.pos + site.len), site.pos + enc.length);
        edits.push(`the ${kind} of ${site.field} at byte ${site.pos}: ${old} → ${v} (longer)`);
        return [grown, `wire: ${edits.join("; ")}`];
      }
      edits.push(`the ${kind} of ${site.field} at byte ${site.pos}: ${old} → ${v}`);
    }
  }
  return [out, `wire: ${edits.join("; ") || "nothing"}`];
}

/** Every graph of the model, the main one first, then control-flow bodies. */
function graphs(model: ModelProto): GraphProto[] {
  const out: GraphProto[] = [];
  const stack = [model.graph!];
  while (stack.length) {
    const g = stack.pop()!;
    out.push(g);
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.g) stack.push(a.g);
        for (const b of a.graphs ?? []) stack.push(b);
      }
    }
  }
  return out;
}

function allNodes(model: ModelProto): NodeProto[] {
  return graphs(model).flatMap((g) => g.node ?? []);
}

/** Tensors a mutation may edit: initializers and Constant values. */
function tensors(model: ModelProto): [TensorProto, string][] {
  const out: [TensorProto, string][] = [];
  for (const g of graphs(model)) {
    for (const t of g.initializer ?? []) out.push([t, `initializer "${t.name}"`]);
    for (const n of g.node ?? []) {
      if (n.opType !== "Constant") continue;
      for (const a of n.attribute ?? []) if (a.t) out.push([a.t, `Constant "${n.name}"`]);
    }
  }
  return out;
}

const ALL_TYPES = [0, ...Array.from({ length: 23 }, (_, i) => i + 1), 99];

function sizeOf(dataType: number): number {
  try {
    return elementSize(dataType);
  } catch {
    return -1; // strings, 4-bit and unknown types
  }
}

function newType(pick: Pick, old: number): number {
  // Half of the swaps keep the element size: the data still fills the dims, so they get past the
  // size check and test what reads the values.
  const same = ALL_TYPES.filter((t) => t !== old && sizeOf(t) > 0 && sizeOf(t) === sizeOf(old));
  if (same.length && pick(2)) return choose(pick, same);
  return choose(pick, ALL_TYPES.filter((t) => t !== old));
}

function swapType(model: ModelProto, pick: Pick): string {
  const where = pick(4);
  if (where === 0) {
    const [t, label] = choose(pick, tensors(model));
    const old = t.dataType ?? 0;
    t.dataType = newType(pick, old);
    return `type of ${label}: ${dataTypeName(old)} → ${dataTypeName(t.dataType)}`;
  }
  if (where === 1) {
    const casts = allNodes(model).filter((n) => n.opType === "Cast");
    if (casts.length) {
      const node = choose(pick, casts);
      const a = (node.attribute ?? []).find((a) => a.name === "to");
      if (a) {
        const old = Number(a.i ?? 0);
        a.i = newType(pick, old);
        return `"to" of Cast "${node.name}": ${dataTypeName(old)} → ${dataTypeName(Number(a.i))}`;
      }
    }
  }
  const g = model.graph!;
  const values = [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])];
  const v = choose(pick, values);
  const tt = (v?.type as TypeProto | undefined)?.tensorType;
  if (!v || !tt) return "unchanged";
  const old = tt.elemType ?? 0;
  tt.elemType = newType(pick, old);
  return `type of value "${v.name}": ${dataTypeName(old)} → ${dataTypeName(tt.elemType)}`;
}

/** An int64 field value protobufjs encodes exactly (numbers above 2^53 would be rounded). */
function int64(v: bigint): number {
  const u = BigInt.asUintN(64, v);
  const long = { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: false };
  return long as unknown as number;
}

function readInts(t: TensorProto): bigint[] {
  const raw = tensorRawBytes(t);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: bigint[] = [];
  const w = t.dataType === 7 ? 8 : 4;
  for (let i = 0; i + w <= raw.length; i += w) {
    out.push(w === 8 ? view.getBigInt64(i, true) : BigInt(view.getInt32(i, true)));
  }
  return out;
}

function writeInts(t: TensorProto, values: bigint[]) {
  const w = t.dataType === 7 ? 8 : 4;
  const raw = new Uint8Array(values.length * w);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) =>
    w === 8 ? view.setBigInt64(i * w, BigInt.asIntN(64, v), true) : view.setInt32(
      i * w,
      Number(BigInt.asIntN(32, v)),
      true,
    )
  );
  t.rawData = raw; // a copy: the seed's bytes stay as they were
  t.int64Data = [];
  t.int32Data = [];
}

function editShapeConstant(model: ModelProto, pick: Pick): string {
  const small = tensors(model).filter(([t]) => {
    if (t.dataType !== 7 && t.dataType !== 6) return false;
    const n = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
    return n >= 1 && n <= 16;
  });
  if (!small.length) return "unchanged";
  const [t, label] = choose(pick, small);
  const values = readInts(t);
  const before = `[${values}]`;
  const how = pick(6);
  if (how === 0 && values.length > 1) {
    // Drop one element, dims with it: a shape vector of another rank.
    values.splice(pick(values.length), 1);
    t.dims = [values.length];
  } else {
    const i = pick(values.length);
    values[i] = edgeValue(pick, values[i]);
  }
  writeInts(t, values);
  return `value of ${label}: ${before} → [${values}]`;
}

function editIntAttribute(model: ModelProto, pick: Pick): string {
  const found: [NodeProto, AttributeProto][] = [];
  for (const n of allNodes(model)) {
    for (const a of n.attribute ?? []) if (a.type === 2 || a.type === 7) found.push([n, a]);
  }
  if (!found.length) return "unchanged";
  const [node, a] = choose(pick, found);
  const at = `attribute ${a.name} of "${node.name}" (${node.opType})`;
  const how = pick(8);
  if (how === 0) {
    node.attribute = node.attribute!.filter((x) => x !== a);
    return `${at} removed`;
  }
  if (how === 1) {
    // The same name with another type: an INT read as FLOAT, INTS as INT.
    if (a.type === 2) {
      a.type = 1;
      a.f = Number(toBigInt(a.i ?? 0)) + 0.5;
      delete a.i;
      return `${at} → FLOAT ${a.f}`;
    }
    a.type = 2;
    a.i = int64(toBigInt(a.ints?.[0] ?? 0));
    a.ints = [];
    return `${at} → INT ${toBigInt(a.i as unknown as bigint)}`;
  }
  if (a.type === 2) {
    const v = edgeValue(pick, toBigInt(a.i ?? 0));
    a.i = int64(v);
    return `${at} → ${BigInt.asIntN(64, v)}`;
  }
  const ints = (a.ints ?? []).map((x) => toBigInt(x));
  if (how === 2) ints.splice(pick(ints.length), 1);
  else if (how === 3) ints.push(edgeValue(pick, ints[ints.length - 1] ?? 0n));
  else if (ints.length) ints[pick(ints.length)] = edgeValue(pick, ints[pick(ints.length)]);
  a.ints = ints.map(int64);
  return `${at} → [${ints.map((v) => BigInt.asIntN(64, v))}]`;
}

function removeOrBypass(model: ModelProto, pick: Pick): string {
  const g = choose(pick, graphs(model));
  const nodes = g.node ?? [];
  if (!nodes.length) return "unchanged";
  const i = pick(nodes.length);
  const node = nodes[i];
  nodes.splice(i, 1);
  const ins = (node.input ?? []).filter((x) => x);
  const at = `node "${node.name}" (${node.opType})`;
  if (!ins.length || pick(3) === 0) return `${at} removed`;
  // Bypass: the readers of its first output read one of its inputs instead.
  const from = node.output?.[0] ?? "", to = choose(pick, ins);
  for (const n of allNodes(model)) {
    n.input = (n.input ?? []).map((x) => (x === from ? to : x));
  }
  for (const o of g.output ?? []) if (o.name === from) o.name = to;
  return `${at} bypassed: readers of "${from}" read "${to}"`;
}

/** The mutated bytes of case `n` of the targeted strategy, and what was done to them. */
export function mutateTargeted(bytes: Uint8Array, seed: number, n: number): [Uint8Array, string] {
  const pick = picker(seed, n);
  const kind = pick(5);
  if (kind === 0) return wireMutation(bytes, pick);
  const model = decodeModel(bytes);
  const what = [swapType, editShapeConstant, editIntAttribute, removeOrBypass][kind - 1](
    model,
    pick,
  );
  return [encodeModel(model), what];
}

/** The pruning options of case `n`: every mode of the table, one per case. */
export function caseMode(seed: number, n: number): [string, Record<string, unknown>] {
  const pick = picker(seed ^ 0x5bd1e995, n);
  return choose(pick, [
    ["heads", { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 }],
    ["dims", { pruneHeadDims: true, headPruningRatio: 0.5 }],
    ["qkv", { pruneHeadDims: true, qkPruningRatio: 0.25, vPruningRatio: 0.5 }],
    ["mlp", { pruningRatio: 0.5 }],
    ["embedding", { embeddingPruningRatio: 0.25 }],
  ] as [string, Record<string, unknown>][]);
}
