/**
 * Attribute types and ranges of the ops the analysis reads, checked before anything reads them:
 * an attribute of the wrong type (a `perm` stored as FLOATS) or an axis out of any tensor's range
 * (-4294967297, which onnxruntime would quietly truncate) is refused naming the node, instead of
 * failing somewhere inside the analysis.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import type { AttributeProto, GraphProto, NodeProto } from "../onnx/proto.ts";
import { toNumber } from "../onnx/proto.ts";

const FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, GRAPH = 5, FLOATS = 6, INTS = 7;
const TYPE_NAMES: Record<number, string> = {
  0: "UNDEFINED",
  1: "FLOAT",
  2: "INT",
  3: "STRING",
  4: "TENSOR",
  5: "GRAPH",
  6: "FLOATS",
  7: "INTS",
  8: "STRINGS",
  9: "TENSORS",
  10: "GRAPHS",
  11: "SPARSE_TENSOR",
  12: "SPARSE_TENSORS",
  13: "TYPE_PROTO",
  14: "TYPE_PROTOS",
};

/** Attributes that hold an axis (or axes) of a tensor: checked against a rank. */
const AXIS = new Set(["axis", "axes"]);

const REDUCE = { axes: INTS, keepdims: INT, noop_with_empty_axes: INT };
const POOL = {
  kernel_shape: INTS,
  strides: INTS,
  pads: INTS,
  dilations: INTS,
  auto_pad: STRING,
  ceil_mode: INT,
};

/** Expected attribute types per op (default domain and onnxruntime's contrib ops alike). */
const SCHEMA: Record<string, Record<string, number>> = {
  Softmax: { axis: INT },
  LogSoftmax: { axis: INT },
  Hardmax: { axis: INT },
  Transpose: { perm: INTS },
  Concat: { axis: INT },
  Split: { axis: INT, split: INTS, num_outputs: INT },
  Gather: { axis: INT },
  GatherElements: { axis: INT },
  Flatten: { axis: INT },
  Squeeze: { axes: INTS },
  Unsqueeze: { axes: INTS },
  Slice: { starts: INTS, ends: INTS, axes: INTS },
  Reshape: { allowzero: INT },
  Cast: { to: INT },
  CumSum: { exclusive: INT, reverse: INT },
  ArgMax: { axis: INT, keepdims: INT, select_last_index: INT },
  ArgMin: { axis: INT, keepdims: INT, select_last_index: INT },
  ReduceMean: REDUCE,
  ReduceSum: REDUCE,
  ReduceMax: REDUCE,
  ReduceMin: REDUCE,
  ReduceProd: REDUCE,
  ReduceL2: REDUCE,
  ReduceSumSquare: REDUCE,
  LayerNormalization: { axis: INT, epsilon: FLOAT, stash_type: INT },
  SkipLayerNormalization: { epsilon: FLOAT },
  SimplifiedLayerNormalization: { axis: INT, epsilon: FLOAT, stash_type: INT },
  RMSNormalization: { axis: INT, epsilon: FLOAT, stash_type: INT },
  BatchNormalization: { epsilon: FLOAT, momentum: FLOAT, training_mode: INT },
  InstanceNormalization: { epsilon: FLOAT },
  GroupNormalization: { epsilon: FLOAT, num_groups: INT, stash_type: INT },
  Gemm: { alpha: FLOAT, beta: FLOAT, transA: INT, transB: INT },
  Conv: { ...POOL, group: INT },
  ConvTranspose: { ...POOL, group: INT, output_padding: INTS, output_shape: INTS },
  MaxPool: { ...POOL, storage_order: INT },
  AveragePool: { ...POOL, count_include_pad: INT },
  Gelu: { approximate: STRING },
  Einsum: { equation: STRING },
  Pad: { mode: STRING },
  Trilu: { upper: INT },
  Constant: {
    value: TENSOR,
    value_float: FLOAT,
    value_floats: FLOATS,
    value_int: INT,
    value_ints: INTS,
    value_string: STRING,
  },
  ConstantOfShape: { value: TENSOR },
  If: { then_branch: GRAPH, else_branch: GRAPH },
  Loop: { body: GRAPH },
  Scan: { body: GRAPH },
  DepthToSpace: { blocksize: INT, mode: STRING },
  SpaceToDepth: { blocksize: INT },
  Attention: { num_heads: INT, unidirectional: INT, qkv_hidden_sizes: INTS, scale: FLOAT },
  MultiHeadAttention: { num_heads: INT, scale: FLOAT, unidirectional: INT },
  GroupQueryAttention: { num_heads: INT, kv_num_heads: INT, scale: FLOAT },
  QuantizeLinear: { axis: INT, block_size: INT, saturate: INT },
  DequantizeLinear: { axis: INT, block_size: INT },
  MatMulNBits: { K: INT, N: INT, bits: INT, block_size: INT },
};

/** Flags onnxruntime reads as "is 1": any other value would be off there and on in a shape rule. */
const FLAGS = new Set(["keepdims", "noop_with_empty_axes", "allowzero", "transA", "transB"]);

/** Counts and sizes that must be positive int32s: onnxruntime divides by some of them unchecked
 * (a GroupQueryAttention with kv_num_heads 2^32, read as 0, stops the process with SIGFPE). */
const POSITIVE = new Set(["num_heads", "kv_num_heads", "K", "N", "bits", "block_size", "group"]);

/** Data types a Cast can produce (UNDEFINED, the complex types and unknown numbers cannot). */
const CAST_TO = new Set([
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  12,
  13,
  16,
  17,
  18,
  19,
  20,
  21,
  22,
  23,
]);

/** Ops whose `axis` / `axes` count from the rank of the output rather than the input. */
const AXIS_OF_OUTPUT = new Set(["Unsqueeze"]);

/** Largest rank an axis can refer to when the tensor's rank is not known here. */
const ANY_RANK = 1 << 16;

function nodeName(n: NodeProto) {
  return `${n.opType} node "${n.name ?? ""}"`;
}

function ints(a: AttributeProto): number[] {
  return (a.ints ?? []).map((x) => toNumber(x));
}

/** Ranks of the tensors whose shapes the graph states (inputs, value_info, initializers). */
function knownRanks(g: GraphProto): Map<string, number> {
  const ranks = new Map<string, number>();
  for (const v of [...(g.input ?? []), ...(g.valueInfo ?? []), ...(g.output ?? [])]) {
    const shape = v.type?.tensorType?.shape;
    if (v.name && shape) ranks.set(v.name, (shape.dim ?? []).length);
  }
  for (const t of g.initializer ?? []) if (t.name) ranks.set(t.name, (t.dims ?? []).length);
  return ranks;
}

function checkNode(n: NodeProto, ranks: Map<string, number>, file: string): void {
  const schema = (n.domain === "" || n.domain === "ai.onnx" || n.domain === "com.microsoft" ||
      !n.domain)
    ? SCHEMA[n.opType ?? ""]
    : undefined;
  const bad = (why: string) => new PruneError("bad-attribute", `${file}${nodeName(n)}: ${why}`);
  for (const a of n.attribute ?? []) {
    const name = a.name ?? "";
    const want = schema?.[name];
    if (want !== undefined && a.type !== want) {
      throw bad(
        `attribute '${name}' is ${TYPE_NAMES[a.type ?? 0] ?? `of type ${a.type}`}, ` +
          `${n.opType} expects ${TYPE_NAMES[want]}`,
      );
    }
    if (!schema) continue;
    if (a.type === INT && !Number.isSafeInteger(toNumber(a.i ?? 0))) {
      throw bad(`attribute '${name}' = ${a.i} is out of range`);
    }
    if (FLAGS.has(name) && a.type === INT && toNumber(a.i ?? 0) !== 0 && toNumber(a.i) !== 1) {
      throw bad(`attribute '${name}' = ${a.i} must be 0 or 1`);
    }
    if (POSITIVE.has(name) && a.type === INT) {
      const v = toNumber(a.i ?? 0);
      if (v < 1 || v > 2 ** 31 - 1) {
        throw bad(`attribute '${name}' = ${a.i} must be a positive count`);
      }
    }
    if (name === "kv_num_heads" && a.type === INT) {
      const heads = n.attribute!.find((x) => x.name === "num_heads");
      if (heads && toNumber(heads.i ?? 0) % toNumber(a.i ?? 1) !== 0) {
        throw bad(`num_heads = ${heads.i} is not a multiple of kv_num_heads = ${a.i}`);
      }
    }
    if (name === "to" && n.opType === "Cast" && a.type === INT && !CAST_TO.has(toNumber(a.i))) {
      throw bad(`attribute 'to' = ${a.i} is not a data type a Cast can produce`);
    }
    const rankOf = (tensor: string | undefined, extra = 0) =>
      tensor !== undefined && ranks.has(tensor) ? ranks.get(tensor)! + extra : undefined;
    if (AXIS.has(name) && (a.type === INT || a.type === INTS)) {
      const values = a.type === INT ? [toNumber(a.i ?? 0)] : ints(a);
      const rank = AXIS_OF_OUTPUT.has(n.opType ?? "")
        ? rankOf(n.output?.[0])
        : rankOf(n.input?.[0]);
      const r = rank ?? ANY_RANK;
      // Flatten's axis may be the rank itself (everything in the first dim).
      const top = n.opType === "Flatten" ? r + 1 : r;
      const out = values.find((v) => !Number.isSafeInteger(v) || v < -r || v >= top);
      if (out !== undefined) {
        throw bad(
          `attribute '${name}' = ${out} is out of range` +
            (rank !== undefined ? ` for a tensor of rank ${rank} ([-${r}, ${r - 1}])` : ""),
        );
      }
    }
    if (name === "perm" && n.opType === "Transpose" && a.type === INTS) {
      const perm = ints(a);
      const seen = new Set(perm);
      const rank = rankOf(n.input?.[0]);
      if (
        seen.size !== perm.length || perm.some((p) => !(p >= 0 && p < perm.length)) ||
        (rank !== undefined && rank !== perm.length)
      ) {
        throw bad(
          `attribute 'perm' = [${perm}] is not a permutation of ` +
            `${
              rank !== undefined && rank !== perm.length
                ? `the input's ${rank} axes`
                : `0..${perm.length - 1}`
            }`,
        );
      }
    }
  }
}

/**
 * Checks the attributes of every node of a graph (and of the graphs inside its nodes). Throws
 * PruneError "bad-attribute" naming the node, the attribute, and what was expected.
 *
 * @example checkAttributes(model.graph!);
 */
export function checkAttributes(graph: GraphProto, file = ""): void {
  const prefix = file ? `${file}: ` : "";
  const stack: GraphProto[] = [graph];
  while (stack.length) {
    const g = stack.pop()!;
    const ranks = knownRanks(g);
    for (const n of g.node ?? []) {
      checkNode(n, ranks, prefix);
      for (const a of n.attribute ?? []) {
        if (a.g) stack.push(a.g);
        for (const sub of a.graphs ?? []) stack.push(sub);
      }
    }
  }
}
