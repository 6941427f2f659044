/**
 * The shape of every tensor of a model worked out from the graph alone, without running it:
 * dims follow from each op's rules, and the values of small integer tensors (the shape vectors
 * exporters compute with Shape, Gather, Concat, …) are computed along the way. What the probe
 * run in onnxruntime learns, at none of its cost: no weights encoded, loaded or multiplied —
 * which is what lets big models be analysed in bounded memory. An op (or a case) it does not
 * know ends the attempt with {@link StaticShapeUnknown}; the caller then runs the probe.
 *
 * @module
 */
import type { AttributeProto, ModelProto, NodeProto, TensorProto } from "../onnx/proto.ts";
import { toNumber } from "../onnx/proto.ts";
import { tensorDims, tensorNumel, tensorRawBytes, tensorToNumbers } from "../onnx/tensor.ts";
import type { ProbedTensor } from "./probe.ts";
import { PruneError } from "../errors.ts";

/** Thrown where the graph needs more than these rules know. */
export class StaticShapeUnknown extends Error {}

/** ONNX data types used here. */
const FLOAT = 1, INT64 = 7, BOOL = 9, DOUBLE = 11;
const INTEGER = new Set([2, 3, 4, 5, 6, 7, 12, 13]);

/** Values are carried for tensors up to this many elements (shape vectors and scalars). */
const VALUE_LIMIT = 4096;

interface Abstract {
  dims: number[];
  type: number;
  values?: number[];
}

const numel = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

function unknown(node: NodeProto, why: string): never {
  throw new StaticShapeUnknown(`${node.opType} "${node.name ?? ""}": ${why}`);
}

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

function attrInt(node: NodeProto, name: string, dflt: number): number {
  const a = attr(node, name);
  return a ? toNumber(a.i) : dflt;
}

/** An int64 attribute value as a number (sentinels such as INT64_MAX only close). */
function looseNumber(v: Parameters<typeof toNumber>[0]): number {
  if (v !== null && typeof v === "object") {
    return (v.unsigned ? v.high >>> 0 : v.high | 0) * 4294967296 + (v.low >>> 0);
  }
  return typeof v === "bigint" ? Number(v) : v ?? 0;
}

function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map(looseNumber) : undefined;
}

/** Rounds a computed value to what a tensor of `type` holds. */
function store(type: number, v: number): number {
  if (type === BOOL) return v ? 1 : 0;
  if (INTEGER.has(type)) return Math.trunc(v);
  if (type === DOUBLE) return v;
  return Math.fround(v);
}

function broadcast(node: NodeProto, shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (d !== 1 && d !== x) unknown(node, `cannot broadcast ${JSON.stringify(shapes)}`);
      d = x;
    }
    out.push(d);
  }
  return out;
}

/** Row-major strides. */
function strides(dims: number[]): number[] {
  const s = new Array(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

/** Values of `a` broadcast to `dims`. */
function expandValues(a: Abstract, dims: number[]): number[] {
  const n = numel(dims), out = new Array(n);
  const st = strides(dims), sa = strides(a.dims), off = dims.length - a.dims.length;
  for (let i = 0; i < n; i++) {
    let rest = i, j = 0;
    for (let k = 0; k < dims.length; k++) {
      const idx = Math.floor(rest / st[k]);
      rest -= idx * st[k];
      const ka = k - off;
      if (ka >= 0 && a.dims[ka] !== 1) j += idx * sa[ka];
    }
    out[i] = a.values![j];
  }
  return out;
}

function elementwise(
  node: NodeProto,
  ins: Abstract[],
  type: number,
  f?: (...xs: number[]) => number,
): Abstract {
  const dims = broadcast(node, ins.map((x) => x.dims));
  const out: Abstract = { dims, type };
  if (f && ins.every((x) => x.values) && numel(dims) <= VALUE_LIMIT) {
    const cols = ins.map((x) => expandValues(x, dims));
    out.values = cols[0].map((_, i) => store(type, f(...cols.map((c) => c[i]))));
  }
  return out;
}

const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Axes read from a tensor, normalised; outside the rank (or repeated) the model is invalid and
 * onnxruntime is left to say so — an axis of 2^31 must not index an array. */
function dataAxes(node: NodeProto, x: Abstract | undefined, rank: number): number[] {
  const axes = ints(node, x, "the axes").map((a) => normAxis(a, rank));
  if (axes.some((a) => a < 0 || a >= rank) || new Set(axes).size !== axes.length) {
    unknown(node, `axes [${x!.values}] for rank ${rank}`);
  }
  return axes;
}

/** The most elements a tensor may have at the probe's small input sizes (batch 1, a few tokens):
 * activations there are far smaller than the weights, so many times the largest weight (and at
 * least 2^27) is a model asking for a buffer no run can hold — a Range from -2^31, say. */
function tensorLimit(known: Map<string, Abstract>): number {
  let largest = 0;
  for (const x of known.values()) largest = Math.max(largest, numel(x.dims));
  return Math.max(2 ** 27, 16 * largest);
}

/** Values of a tensor as ints, or unknown. */
function ints(node: NodeProto, x: Abstract | undefined, what: string): number[] {
  if (!x?.values) unknown(node, `${what} is computed from data`);
  if (!x.values.every(Number.isInteger)) unknown(node, `${what} [${x.values}] are not integers`);
  return x.values;
}

/** Picks `index` (per output element) out of `x`'s values, for the layout ops. */
function gatherValues(x: Abstract, dims: number[], source: (i: number[]) => number[]) {
  if (!x.values || numel(dims) > VALUE_LIMIT) return undefined;
  const st = strides(dims), sx = strides(x.dims), out: number[] = [];
  for (let i = 0; i < numel(dims); i++) {
    let rest = i;
    const idx = st.map((s) => {
      const q = Math.floor(rest / s);
      rest -= q * s;
      return q;
    });
    const from = source(idx);
    out.push(x.values[from.reduce((a, v, k) => a + v * sx[k], 0)]);
  }
  return out;
}

function sliceDims(
  data: number[],
  starts: number[],
  ends: number[],
  axes: number[],
  steps: number[],
) {
  const dims = [...data];
  const first = data.map(() => 0), step = data.map(() => 1);
  axes.forEach((a0, i) => {
    const a = normAxis(a0, data.length), n = data[a], s = steps[i] ?? 1;
    let b = starts[i], e = ends[i];
    if (b < 0) b += n;
    if (e === Infinity) e = s < 0 ? -1 : n;
    else if (e < 0) e += n;
    if (s > 0) {
      b = Math.min(Math.max(b, 0), n);
      e = Math.min(Math.max(e, 0), n);
      dims[a] = Math.max(0, Math.ceil((e - b) / s));
    } else {
      b = Math.min(Math.max(b, 0), n - 1);
      e = Math.min(Math.max(e, -1), n - 1);
      dims[a] = Math.max(0, Math.ceil((e - b) / s));
    }
    first[a] = b;
    step[a] = s;
  });
  return { dims, first, step };
}

function reduce(node: NodeProto, x: Abstract, axesIn?: number[]): Abstract {
  const keep = attrInt(node, "keepdims", 1);
  let axes = axesIn ?? attrInts(node, "axes");
  if (!axes || axes.length === 0) {
    if (attrInt(node, "noop_with_empty_axes", 0)) return { dims: x.dims, type: x.type };
    axes = x.dims.map((_, i) => i);
  }
  const set = new Set(axes.map((a) => normAxis(a, x.dims.length)));
  const dims = x.dims.flatMap((d, i) => (set.has(i) ? (keep ? [1] : []) : [d]));
  return { dims, type: x.type };
}

function matmulDims(node: NodeProto, a: number[], b: number[]): number[] {
  const A = a.length === 1 ? [1, a[0]] : a, B = b.length === 1 ? [b[0], 1] : b;
  if (A[A.length - 1] !== B[B.length - 2]) unknown(node, `inner dims ${a} × ${b}`);
  const batch = broadcast(node, [A.slice(0, -2), B.slice(0, -2)]);
  const out = [...batch, A[A.length - 2], B[B.length - 1]];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.splice(out.length - 1, 1);
  return out;
}

function convDims(node: NodeProto, x: number[], w: number[]): number[] {
  const spatial = x.length - 2;
  const kernel = attrInts(node, "kernel_shape") ?? w.slice(2);
  if (kernel.join() !== w.slice(2).join()) {
    unknown(node, `kernel_shape [${kernel}] of weight [${w}]`);
  }
  const stride = attrInts(node, "strides") ?? new Array(spatial).fill(1);
  const dil = attrInts(node, "dilations") ?? new Array(spatial).fill(1);
  const pads = attrInts(node, "pads") ?? new Array(2 * spatial).fill(0);
  const auto = attr(node, "auto_pad");
  const mode = auto?.s ? new TextDecoder().decode(auto.s) : "NOTSET";
  const out = [x[0], w[0]];
  for (let i = 0; i < spatial; i++) {
    const k = (kernel[i] - 1) * dil[i] + 1;
    if (mode === "SAME_UPPER" || mode === "SAME_LOWER") out.push(Math.ceil(x[2 + i] / stride[i]));
    else if (mode === "VALID") out.push(Math.floor((x[2 + i] - k) / stride[i]) + 1);
    else out.push(Math.floor((x[2 + i] + pads[i] + pads[i + spatial] - k) / stride[i]) + 1);
  }
  return out;
}

function constantOf(node: NodeProto): Abstract {
  const a = (node.attribute ?? [])[0];
  if (!a) unknown(node, "no value");
  const scalar = (type: number, v: number): Abstract => ({ dims: [], type, values: [v] });
  switch (a.name) {
    case "value":
      if (!a.t) unknown(node, "a value attribute without a tensor");
      return fromTensor(a.t as TensorProto);
    case "value_float":
      return scalar(FLOAT, a.f ?? 0);
    case "value_int":
      return scalar(INT64, looseNumber(a.i));
    case "value_floats":
      return { dims: [a.floats?.length ?? 0], type: FLOAT, values: [...(a.floats ?? [])] };
    case "value_ints": {
      const v = (a.ints ?? []).map(looseNumber);
      return { dims: [v.length], type: INT64, values: v };
    }
  }
  unknown(node, `attribute ${a.name}`);
}

function int64s(t: TensorProto, unsigned: boolean): bigint[] {
  const bytes = tensorRawBytes(t);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from(
    { length: bytes.length / 8 },
    (_, i) => unsigned ? view.getBigUint64(8 * i, true) : view.getBigInt64(8 * i, true),
  );
}

function fromTensor(t: TensorProto): Abstract {
  const dims = tensorDims(t), type = t.dataType ?? 0;
  const out: Abstract = { dims, type };
  if (tensorNumel(t) <= VALUE_LIMIT && type !== 8 && t.dataLocation !== 1) {
    try {
      // int64 sentinels (INT64_MAX as "to the end") do not fit a JS number exactly; close is
      // enough for them, and what onnxruntime's results read as too.
      out.values = type === INT64 || type === 13
        ? Array.from(int64s(t, type === 13), Number)
        : tensorToNumbers(t);
    } catch { /* a type without number values: dims only */ }
  }
  return out;
}

type Rule = (node: NodeProto, ins: (Abstract | undefined)[], opset: number) => Abstract[];

/** A reduction whose axes became an input at `axesInputFrom` (an attribute before). */
const reduceRule = (axesInputFrom: number): Rule => (node, [x, axes], opset) => [
  reduce(
    node,
    x!,
    opset >= axesInputFrom && axes ? dataAxes(node, axes, x!.dims.length) : undefined,
  ),
];

const unary = (f?: (x: number) => number, type?: number): Rule => (node, [x]) => [
  elementwise(node, [x!], type ?? x!.type, f),
];
const binary = (f: (a: number, b: number) => number, bool = false): Rule => (node, ins) => [
  elementwise(node, ins as Abstract[], bool ? BOOL : ins[0]!.type, f),
];
const same: Rule = (_n, [x]) => [{ dims: x!.dims, type: x!.type }];

/** Integer arithmetic whose result a double does not hold exactly (past 2^53, or past int32 for
 * int32): onnxruntime wraps around where this would not, so the run decides. */
const exact = (rule: Rule): Rule => (node, ins, opset) => {
  const outs = rule(node, ins, opset);
  for (const x of outs) {
    const bound = x.type === 6 ? 2 ** 31 : 2 ** 53;
    if (INTEGER.has(x.type) && x.values?.some((v) => Math.abs(v) >= bound)) {
      unknown(node, `integer arithmetic past ${x.type === 6 ? "2^31" : "2^53"}`);
    }
  }
  return outs;
};

const RULES: Record<string, Rule> = {
  Identity: (_n, [x]) => [x!],
  Add: exact(binary((a, b) => a + b)),
  Sub: exact(binary((a, b) => a - b)),
  Mul: exact(binary((a, b) => a * b)),
  Div: exact((node, ins) => {
    const integer = INTEGER.has(ins[0]!.type);
    return [
      elementwise(
        node,
        ins as Abstract[],
        ins[0]!.type,
        (a, b) => integer ? Math.trunc(a / b) : a / b,
      ),
    ];
  }),
  Pow: exact(binary((a, b) => a ** b)),
  Mod: (node, ins) => {
    const fmod = attrInt(node, "fmod", 0);
    return [
      elementwise(
        node,
        ins as Abstract[],
        ins[0]!.type,
        (a, b) => fmod ? a % b : ((a % b) + b) % b,
      ),
    ];
  },
  Max: (node, ins) => [elementwise(node, ins as Abstract[], ins[0]!.type, Math.max)],
  Min: (node, ins) => [elementwise(node, ins as Abstract[], ins[0]!.type, Math.min)],
  Sum: exact((node, ins) => [
    elementwise(node, ins as Abstract[], ins[0]!.type, (...x) => x.reduce((a, b) => a + b, 0)),
  ]),
  Equal: binary((a, b) => +(a === b), true),
  Less: binary((a, b) => +(a < b), true),
  Greater: binary((a, b) => +(a > b), true),
  LessOrEqual: binary((a, b) => +(a <= b), true),
  GreaterOrEqual: binary((a, b) => +(a >= b), true),
  And: binary((a, b) => +(a && b), true),
  Or: binary((a, b) => +(a || b), true),
  Xor: binary((a, b) => +(!!a !== !!b), true),
  Not: unary((a) => +!a, BOOL),
  IsNaN: unary((a) => +Number.isNaN(a), BOOL),
  IsInf: unary((a) => +(Math.abs(a) === Infinity), BOOL),
  Neg: unary((a) => -a),
  Abs: unary(Math.abs),
  Sqrt: unary(Math.sqrt),
  Reciprocal: unary((a) => 1 / a),
  Exp: unary(Math.exp),
  Log: unary(Math.log),
  Floor: unary(Math.floor),
  Ceil: unary(Math.ceil),
  Sign: unary(Math.sign),
  Relu: unary((a) => Math.max(0, a)),
  Erf: unary(),
  Tanh: unary(Math.tanh),
  Sigmoid: unary(),
  Sin: unary(Math.sin),
  Cos: unary(Math.cos),
  Gelu: unary(),
  Softplus: unary(),
  HardSigmoid: unary(),
  HardSwish: unary(),
  LeakyRelu: unary(),
  Elu: unary(),
  Clip: same,
  Softmax: same,
  LogSoftmax: same,
  CumSum: same,
  Trilu: same,
  Dropout: (_n, [x]) => [{ dims: x!.dims, type: x!.type, values: x!.values }, {
    dims: x!.dims,
    type: BOOL,
  }],
  Cast: (node, [x]) => {
    const to = attrInt(node, "to", FLOAT);
    return [{ dims: x!.dims, type: to, values: x!.values?.map((v) => store(to, v)) }];
  },
  CastLike: (_n, [x, like]) => [{
    dims: x!.dims,
    type: like!.type,
    values: x!.values?.map((v) => store(like!.type, v)),
  }],
  Where: (node, ins) => [
    elementwise(node, ins as Abstract[], ins[1]!.type, (c, a, b) => (c ? a : b)),
  ],
  Shape: (node, [x]) => {
    const r = x!.dims.length;
    let start = attrInt(node, "start", 0), end = attrInt(node, "end", r);
    start = Math.min(Math.max(normAxis(start, r), 0), r);
    end = Math.min(Math.max(normAxis(end, r), 0), r);
    const v = x!.dims.slice(start, Math.max(start, end));
    return [{ dims: [v.length], type: INT64, values: v }];
  },
  Size: (_n, [x]) => [{ dims: [], type: INT64, values: [numel(x!.dims)] }],
  Constant: (node) => [constantOf(node)],
  ConstantOfShape: (node, [shape]) => {
    const dims = ints(node, shape, "the shape");
    if (dims.some((d) => d < 0)) unknown(node, `shape [${dims}]`);
    const a = attr(node, "value");
    const fill = a?.t ? fromTensor(a.t as TensorProto) : { dims: [1], type: FLOAT, values: [0] };
    const out: Abstract = { dims, type: fill.type };
    if (numel(dims) <= VALUE_LIMIT && fill.values) {
      out.values = new Array(numel(dims)).fill(fill.values[0]);
    }
    return [out];
  },
  Reshape: (node, [x, shape]) => {
    const target = ints(node, shape, "the target shape");
    const allowZero = attrInt(node, "allowzero", 0);
    const dims = target.map((d, i) => (d === 0 && !allowZero ? x!.dims[i] : d));
    const known = dims.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const free = dims.indexOf(-1);
    if (free >= 0) dims[free] = known === 0 ? 0 : numel(x!.dims) / known;
    if (numel(dims) !== numel(x!.dims) || !dims.every(Number.isInteger)) {
      // A shape vector reshaped to a huge length: onnxruntime's shape inference would spend
      // minutes and gigabytes propagating its values before failing, so it is not asked.
      if (x!.values && numel(dims) > VALUE_LIMIT) {
        throw new PruneError(
          "invalid-model",
          `${node.opType} node "${node.name ?? ""}": cannot reshape [${x!.dims}] to [${target}]`,
        );
      }
      unknown(node, `cannot reshape [${x!.dims}] to [${target}]`);
    }
    return [{ dims, type: x!.type, values: x!.values }];
  },
  Flatten: (node, [x]) => {
    const axis = normAxis(attrInt(node, "axis", 1), x!.dims.length);
    return [{
      dims: [numel(x!.dims.slice(0, axis)), numel(x!.dims.slice(axis))],
      type: x!.type,
      values: x!.values,
    }];
  },
  Transpose: (node, [x]) => {
    const r = x!.dims.length;
    const perm = attrInts(node, "perm") ?? x!.dims.map((_, i) => r - 1 - i);
    const dims = perm.map((p) => x!.dims[p]);
    const values = gatherValues(x!, dims, (idx) => {
      const from = new Array(r);
      perm.forEach((p, k) => (from[p] = idx[k]));
      return from;
    });
    return [{ dims, type: x!.type, values }];
  },
  Squeeze: (node, [x, axesIn], opset) => {
    const r = x!.dims.length;
    const axes = opset >= 13
      ? (axesIn ? dataAxes(node, axesIn, r) : undefined)
      : attrInts(node, "axes");
    const drop = new Set(
      axes ? axes.map((a) => normAxis(a, r)) : x!.dims.flatMap((d, i) => (d === 1 ? [i] : [])),
    );
    if ([...drop].some((a) => x!.dims[a] !== 1)) unknown(node, `axes [${axes}] of [${x!.dims}]`);
    return [{ dims: x!.dims.filter((_, i) => !drop.has(i)), type: x!.type, values: x!.values }];
  },
  Unsqueeze: (node, [x, axesIn], opset) => {
    const axes = opset >= 13 ? ints(node, axesIn, "the axes") : attrInts(node, "axes") ?? [];
    const r = x!.dims.length + axes.length;
    const set = new Set(opset >= 13 ? dataAxes(node, axesIn, r) : axes.map((a) => normAxis(a, r)));
    const dims: number[] = [];
    let j = 0;
    for (let i = 0; i < r; i++) dims.push(set.has(i) ? 1 : x!.dims[j++]);
    return [{ dims, type: x!.type, values: x!.values }];
  },
  Concat: (node, ins) => {
    const xs = ins.filter((x): x is Abstract => !!x);
    const axis = normAxis(attrInt(node, "axis", 0), xs[0].dims.length);
    const dims = [...xs[0].dims];
    if (
      xs.some((x) =>
        x.dims.length !== dims.length || x.dims.some((d, i) => i !== axis && d !== dims[i])
      )
    ) {
      unknown(node, `inputs [${xs.map((x) => `[${x.dims}]`)}] differ off axis ${axis}`);
    }
    dims[axis] = xs.reduce((a, x) => a + x.dims[axis], 0);
    const out: Abstract = { dims, type: xs[0].type };
    if (xs.every((x) => x.values) && numel(dims) <= VALUE_LIMIT) {
      const outer = numel(dims.slice(0, axis));
      const values: number[] = [];
      for (let o = 0; o < outer; o++) {
        for (const x of xs) {
          const inner = numel(x.dims.slice(axis));
          values.push(...x.values!.slice(o * inner, (o + 1) * inner));
        }
      }
      out.values = values;
    }
    return [out];
  },
  Slice: (node, [x, s, e, a, st], opset) => {
    const r = x!.dims.length;
    const starts = opset >= 10 ? ints(node, s, "the starts") : attrInts(node, "starts")!;
    const ends = opset >= 10 ? ints(node, e, "the ends") : attrInts(node, "ends")!;
    const axes = (opset >= 10 ? (a ? dataAxes(node, a, r) : undefined) : attrInts(node, "axes")) ??
      starts.map((_, i) => i);
    const steps = opset >= 10 && st ? ints(node, st, "the steps") : starts.map(() => 1);
    const notVector = opset >= 10 && [s, e, a, st].some((v) => v && v.dims.length !== 1);
    if (
      [ends, axes, steps].some((v) => v.length !== starts.length) || steps.includes(0) || notVector
    ) {
      unknown(node, `starts [${starts}], ends [${ends}], axes [${axes}], steps [${steps}]`);
    }
    const big = (v: number) => (v > 2 ** 52 ? 2 ** 52 : v < -(2 ** 52) ? -(2 ** 52) : v);
    // onnxruntime reads an end of INT32_MAX or INT64_MAX as "to the end" in the step's direction,
    // also backwards (where the spec would clamp it to the last element). Other ends this large
    // are not exact as numbers: backwards, the run decides.
    const end = (v: number, i: number) => {
      if (v === 2147483647 || v >= 2 ** 63) return Infinity;
      if (steps[i] < 0 && v > 2 ** 52) unknown(node, `end ${v} with step ${steps[i]}`);
      return big(v);
    };
    const { dims, first, step } = sliceDims(
      x!.dims,
      starts.map(big),
      ends.map(end),
      axes.map((v) => normAxis(v, r)),
      steps,
    );
    const values = gatherValues(x!, dims, (idx) => idx.map((v, k) => first[k] + v * step[k]));
    return [{ dims, type: x!.type, values }];
  },
  Gather: (node, [x, idx]) => {
    const r = x!.dims.length, axis = normAxis(attrInt(node, "axis", 0), r);
    const dims = [...x!.dims.slice(0, axis), ...idx!.dims, ...x!.dims.slice(axis + 1)];
    let values: number[] | undefined;
    if (idx!.values) {
      const n = x!.dims[axis];
      if (idx!.values.some((v) => v < -n || v >= n)) unknown(node, `index out of [${-n}, ${n})`);
      const ix = idx!.values.map((v) => (v < 0 ? v + n : v));
      const q = idx!.dims.length;
      values = gatherValues(x!, dims, (o) => [
        ...o.slice(0, axis),
        ix[o.slice(axis, axis + q).reduce((a, v, k) => a + v * strides(idx!.dims)[k], 0)],
        ...o.slice(axis + q),
      ]);
    }
    return [{ dims, type: x!.type, values }];
  },
  GatherND: (node, [x, idx]) => {
    const b = attrInt(node, "batch_dims", 0), last = idx!.dims[idx!.dims.length - 1];
    return [{ dims: [...idx!.dims.slice(0, -1), ...x!.dims.slice(b + last)], type: x!.type }];
  },
  Expand: (node, [x, shape]) => {
    const dims = broadcast(node, [x!.dims, ints(node, shape, "the shape")]);
    const values = x!.values && numel(dims) <= VALUE_LIMIT ? expandValues(x!, dims) : undefined;
    return [{ dims, type: x!.type, values }];
  },
  Tile: (node, [x, reps]) => {
    const r = ints(node, reps, "the repeats");
    return [{ dims: x!.dims.map((d, i) => d * r[i]), type: x!.type }];
  },
  Range: (node, [s, l, d]) => {
    const [start] = ints(node, s, "start"), [limit] = ints(node, l, "limit");
    const [delta] = ints(node, d, "delta");
    const n = Math.max(Math.ceil((limit - start) / delta), 0);
    const out: Abstract = { dims: [n], type: s!.type };
    if (n <= VALUE_LIMIT) {
      out.values = Array.from({ length: n }, (_, i) => store(s!.type, start + i * delta));
    }
    return [out];
  },
  Split: (node, [x, splitIn], opset) => {
    const r = x!.dims.length, axis = normAxis(attrInt(node, "axis", 0), r);
    const outputs = (node.output ?? []).length;
    let split = opset >= 13
      ? (splitIn ? ints(node, splitIn, "the split") : undefined)
      : attrInts(node, "split");
    if (!split || split.length === 0) {
      const n = x!.dims[axis], chunk = Math.ceil(n / outputs);
      split = Array.from({ length: outputs }, (_, i) => Math.min(chunk, n - i * chunk));
    }
    if (split.length !== outputs || split.reduce((a, b) => a + b, 0) !== x!.dims[axis]) {
      unknown(node, `split [${split}] of ${x!.dims[axis]} into ${outputs} outputs`);
    }
    return split.map((len) => {
      const dims = [...x!.dims];
      dims[axis] = len;
      return { dims, type: x!.type };
    });
  },
  MatMul: (node, [a, b]) => [{ dims: matmulDims(node, a!.dims, b!.dims), type: a!.type }],
  Gemm: (node, [a, b]) => {
    const A = attrInt(node, "transA", 0) ? [...a!.dims].reverse() : a!.dims;
    const B = attrInt(node, "transB", 0) ? [...b!.dims].reverse() : b!.dims;
    if (A.length !== 2 || B.length !== 2 || A[1] !== B[0]) unknown(node, `[${A}] × [${B}]`);
    return [{ dims: [A[0], B[1]], type: a!.type }];
  },
  Conv: (node, [x, w]) => {
    if (
      x!.dims[1] !== w!.dims[1] * attrInt(node, "group", 1) || x!.dims.length !== w!.dims.length
    ) {
      unknown(node, `input [${x!.dims}] and weight [${w!.dims}]`);
    }
    return [{ dims: convDims(node, x!.dims, w!.dims), type: x!.type }];
  },
  Pad: (node, [x, p, _c, axesIn], opset) => {
    const pads = opset >= 11 ? ints(node, p, "the pads") : attrInts(node, "pads")!;
    const r = x!.dims.length;
    const axes = axesIn ? dataAxes(node, axesIn, r) : x!.dims.map((_, i) => i);
    const dims = [...x!.dims];
    axes.forEach((a, i) => (dims[a] += pads[i] + pads[i + axes.length]));
    return [{ dims, type: x!.type }];
  },
  LayerNormalization: (node, [x, scale, bias]) => {
    const r = x!.dims.length, axis = normAxis(attrInt(node, "axis", -1), r);
    for (const p of [scale, bias]) {
      if (
        p && broadcast(node, [x!.dims.slice(axis), p.dims]).join() !== x!.dims.slice(axis).join()
      ) {
        unknown(node, `scale or bias [${p.dims}] for normalized dims [${x!.dims.slice(axis)}]`);
      }
    }
    const stat = x!.dims.map((d, i) => (i < axis ? d : 1));
    return [{ dims: x!.dims, type: x!.type }, { dims: stat, type: FLOAT }, {
      dims: stat,
      type: FLOAT,
    }];
  },
  ReduceMean: reduceRule(18),
  ReduceSum: reduceRule(13),
  ReduceMax: reduceRule(18),
  ReduceL2: reduceRule(18),
  GlobalAveragePool: (_n, [x]) => [{
    dims: x!.dims.map((d, i) => (i < 2 ? d : 1)),
    type: x!.type,
  }],
  ArgMax: (node, [x]) => {
    const r = x!.dims.length, axis = normAxis(attrInt(node, "axis", 0), r);
    const keep = attrInt(node, "keepdims", 1);
    return [{
      dims: x!.dims.flatMap((d, i) => (i === axis ? (keep ? [1] : []) : [d])),
      type: INT64,
    }];
  },
};

/** Axis attributes outside the input's rank are invalid models: onnxruntime is left to say so. */
function checkAxes(node: NodeProto, x: Abstract | undefined) {
  if (!x) return;
  const r = x.dims.length, op = node.opType;
  const axis = attr(node, "axis");
  if (axis && op !== "Unsqueeze") {
    const a = toNumber(axis.i), top = op === "Flatten" ? r : r - 1;
    if (a < -r || a > top) unknown(node, `axis ${a} outside rank ${r}`);
  }
  const perm = op === "Transpose" ? attrInts(node, "perm") : undefined;
  if (perm && [...perm].sort((a, b) => a - b).some((p, i) => p !== i || perm.length !== r)) {
    unknown(node, `perm [${perm}] for rank ${r}`);
  }
  const axes = op === "Unsqueeze" ? undefined : attrInts(node, "axes");
  if (axes?.some((a) => a < -r || a >= r)) unknown(node, `axes [${axes}] outside rank ${r}`);
}

/** Contributed ops of onnxruntime's optimizer that keep the first input's shape. */
const MICROSOFT_SAME: Record<string, true> = {
  BiasGelu: true,
  FastGelu: true,
  Gelu: true,
  SkipLayerNormalization: true,
};

/**
 * Dims of every graph input and node output (and values of the small ones computed from
 * shapes and constants), given the graph inputs' dims. Throws {@link StaticShapeUnknown}.
 */
export function staticShapes(
  model: ModelProto,
  inputDims: Map<string, number[]>,
  maxValues = 64,
): Map<string, ProbedTensor> {
  const graph = model.graph!;
  if ((model.functions ?? []).length) throw new StaticShapeUnknown("model-local functions");
  const opset = toNumber(
    (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx")?.version ?? 17,
  );
  const known = new Map<string, Abstract>();
  for (const t of graph.initializer ?? []) known.set(t.name ?? "", fromTensor(t));
  const limit = tensorLimit(known);
  const result = new Map<string, ProbedTensor>();
  for (const input of graph.input ?? []) {
    const dims = inputDims.get(input.name ?? "");
    if (!dims) continue;
    known.set(input.name!, { dims, type: input.type?.tensorType?.elemType ?? FLOAT });
    result.set(input.name!, { dims });
  }
  // Past a node without a rule the walk goes on where it can, so that the checks on the way (a
  // shape vector reshaped to billions, a tensor far larger than the weights) see every node
  // before onnxruntime does; the first node it could not follow is reported at the end.
  let first: StaticShapeUnknown | undefined;
  for (const node of graph.node ?? []) {
    try {
      const op = node.opType ?? "";
      const domain = node.domain ?? "";
      const ins = (node.input ?? []).map((name) => {
        if (!name) return undefined;
        const x = known.get(name);
        if (!x) unknown(node, `input "${name}" not computed`);
        return x;
      });
      let outs: Abstract[];
      if ((domain === "" || domain === "ai.onnx") && RULES[op]) {
        if ((node.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length)) {
          unknown(node, "subgraph");
        }
        try {
          checkAxes(node, ins[0]);
          outs = RULES[op](node, ins, opset);
        } catch (e) {
          // A malformed node (an input missing, an attribute of the wrong kind): the run says what.
          if (e instanceof StaticShapeUnknown || e instanceof PruneError) throw e;
          unknown(node, e instanceof Error ? e.message : String(e));
        }
      } else if (domain === "com.microsoft" && MICROSOFT_SAME[op]) {
        // SkipLayerNormalization's 4th output (input + skip + bias) has the input's shape too;
        // its mean and inverse deviation (2nd, 3rd) are not followed.
        const x = { dims: ins[0]!.dims, type: ins[0]!.type };
        outs = (node.output ?? []).map((
          _,
          i,
        ) => (i === 0 || i === 3 ? x : undefined)) as Abstract[];
      } else {
        unknown(node, "no static rule for this op");
      }
      (node.output ?? []).forEach((name, i) => {
        if (!name) return;
        const x = outs[i];
        if (!x) unknown(node, `output ${i} has no static rule`);
        if (!x.dims.every((d) => Number.isInteger(d) && d >= 0)) {
          unknown(node, `output dims [${x.dims}]`);
        }
        if (numel(x.dims) > limit) {
          throw new PruneError(
            "too-large",
            `${op} node "${node.name ?? ""}": its output "${name}" would have ${numel(x.dims)} ` +
              `elements ([${x.dims}]) at the probe's input sizes, far more than any weight of the ` +
              `model; refused before onnxruntime tries to allocate it`,
          );
        }
        known.set(name, x);
        const entry: ProbedTensor = { dims: x.dims };
        if (x.values && x.values.length <= maxValues) {
          entry.values = x.values;
        }
        result.set(name, entry);
      });
    } catch (e) {
      if (!(e instanceof StaticShapeUnknown)) throw e;
      first ??= e;
    }
  }
  if (first) throw first;
  return result;
}
