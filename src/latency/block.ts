/**
 * One pre-norm transformer block as an ONNX model, of any (EMB, H, QK, V, MLP) shape — what the
 * latency model times on the user's runtime: LayerNorm → Q, K, V projections → per-head
 * softmax(Q·Kᵀ/√d)·V → output projection → residual → LayerNorm → fc1 → GELU → fc2 → residual.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type { ModelProto } from "../onnx/proto.ts";

/** Sizes of a block: embedding width, heads, per-head Q/K and V dims, MLP hidden width. */
export interface BlockShape {
  emb: number;
  heads: number;
  qk: number;
  v: number;
  mlp: number;
}

/**
 * Heads of different sizes (unaligned pruning): dims of each head, for Q/K and V alike. A
 * dense runtime runs them either padded to the largest (`blockModel` with that size) or, as
 * built here, one head at a time: own projections, own attention, outputs concatenated.
 */
export interface UnalignedHeads {
  headDims: number[];
}

/** Deterministic small weights (timing does not depend on their values, only on finite ones). */
function weights(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296 - 0.5) * 0.1;
  });
}

/** The block as a model with input "x" [batch, tokens, emb] and output "y" of the same shape. */
export function blockModel(
  shape: BlockShape | (Omit<BlockShape, "heads" | "qk" | "v"> & UnalignedHeads),
  batch: number,
  tokens: number,
): ModelProto {
  const unaligned = "headDims" in shape ? shape.headDims : undefined;
  const { emb, mlp } = shape;
  const heads = unaligned ? unaligned.length : (shape as BlockShape).heads;
  const qk = unaligned ? 0 : (shape as BlockShape).qk, v = unaligned ? 0 : (shape as BlockShape).v;
  const init: ReturnType<typeof onnx.TensorProto.create>[] = [];
  const nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  let seed = 1;
  const tensor = (name: string, dims: number[], values?: number[]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    init.push(onnx.TensorProto.create({
      name,
      dataType: 1,
      dims,
      rawData: new Uint8Array((values ? Float32Array.from(values) : weights(n, seed++)).buffer),
    }));
    return name;
  };
  const ints = (name: string, values: number[]) => {
    init.push(
      onnx.TensorProto.create({ name, dataType: 7, dims: [values.length], int64Data: values }),
    );
    return name;
  };
  const node = (
    op: string,
    input: string[],
    output: string,
    attrs: Record<string, number | number[]> = {},
  ) => {
    nodes.push(onnx.NodeProto.create({
      opType: op,
      input,
      output: [output],
      attribute: Object.entries(attrs).map(([name, a]) =>
        Array.isArray(a)
          ? onnx.AttributeProto.create({ name, type: 7, ints: a })
          : Number.isInteger(a)
          ? onnx.AttributeProto.create({ name, type: 2, i: a })
          : onnx.AttributeProto.create({ name, type: 1, f: a })
      ),
    }));
    return output;
  };
  const ones = (name: string, n: number) => tensor(name, [n], new Array(n).fill(1));
  const zeros = (name: string, n: number) => tensor(name, [n], new Array(n).fill(0));
  const linear = (x: string, name: string, cin: number, cout: number) =>
    node("Add", [
      node("MatMul", [x, tensor(`${name}.w`, [cin, cout])], `${name}.mm`),
      zeros(`${name}.b`, cout),
    ], name);
  const heads4 = (x: string, name: string, d: number) =>
    node(
      "Transpose",
      [node("Reshape", [x, ints(`${name}.shape`, [0, 0, heads, d])], `${name}.r`)],
      name,
      {
        perm: [0, 2, 1, 3],
      },
    );

  const ln1 = node("LayerNormalization", ["x", ones("ln1.s", emb), zeros("ln1.b", emb)], "ln1", {
    axis: -1,
  });
  let merged: string, width: number;
  if (unaligned) {
    // One head at a time: [batch, tokens, d] projections, attention, then one concatenation.
    const outs = unaligned.map((d, h) => {
      const q = linear(ln1, `q${h}`, emb, d);
      const kt = node("Transpose", [linear(ln1, `k${h}`, emb, d)], `kt${h}`, { perm: [0, 2, 1] });
      const scores = node("Mul", [
        node("MatMul", [q, kt], `qk${h}`),
        tensor(`scale${h}`, [], [1 / Math.sqrt(d)]),
      ], `scores${h}`);
      const attn = node("Softmax", [scores], `attn${h}`, { axis: -1 });
      return node("MatMul", [attn, linear(ln1, `v${h}`, emb, d)], `ctx${h}`);
    });
    merged = node("Concat", outs, "merged", { axis: -1 });
    width = unaligned.reduce((a, b) => a + b, 0);
  } else {
    const q = heads4(linear(ln1, "q", emb, heads * qk), "qh", qk);
    const k = heads4(linear(ln1, "k", emb, heads * qk), "kh", qk);
    const vv = heads4(linear(ln1, "v", emb, heads * v), "vh", v);
    const kt = node("Transpose", [k], "kt", { perm: [0, 1, 3, 2] });
    const scores = node("Mul", [
      node("MatMul", [q, kt], "qk"),
      tensor("scale", [], [1 / Math.sqrt(qk)]),
    ], "scores");
    const attn = node("Softmax", [scores], "attn", { axis: -1 });
    const ctx = node("MatMul", [attn, vv], "ctx");
    merged = node(
      "Reshape",
      [
        node("Transpose", [ctx], "ctx.t", { perm: [0, 2, 1, 3] }),
        ints("merge.shape", [0, 0, heads * v]),
      ],
      "merged",
    );
    width = heads * v;
  }
  const h1 = node("Add", ["x", linear(merged, "proj", width, emb)], "h1");
  const ln2 = node("LayerNormalization", [h1, ones("ln2.s", emb), zeros("ln2.b", emb)], "ln2", {
    axis: -1,
  });
  const hidden = linear(ln2, "fc1", emb, mlp);
  const gelu = node(
    "Mul",
    [
      node("Mul", [hidden, tensor("half", [], [0.5])], "gelu.h"),
      node("Add", [
        node(
          "Erf",
          [node("Mul", [hidden, tensor("rsqrt2", [], [Math.SQRT1_2])], "gelu.s")],
          "gelu.e",
        ),
        tensor("one", [], [1]),
      ], "gelu.a"),
    ],
    "gelu",
  );
  node("Add", [h1, linear(gelu, "fc2", mlp, emb)], "y");
  return wrap(nodes, init, batch, tokens, emb);
}

/** What a session run costs with no block in it (feeding x, returning y): subtracted from every
 * timed block, which inside a model does not pay it again. */
export function passThroughModel(emb: number, batch: number, tokens: number): ModelProto {
  return wrap(
    [onnx.NodeProto.create({ opType: "Identity", input: ["x"], output: ["y"] })],
    [],
    batch,
    tokens,
    emb,
  );
}

function wrap(
  nodes: ReturnType<typeof onnx.NodeProto.create>[],
  init: ReturnType<typeof onnx.TensorProto.create>[],
  batch: number,
  tokens: number,
  emb: number,
): ModelProto {
  const io = (name: string) =>
    onnx.ValueInfoProto.create({
      name,
      type: {
        tensorType: {
          elemType: 1,
          shape: { dim: [batch, tokens, emb].map((d) => ({ dimValue: d })) },
        },
      },
    });
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    producerName: "prune-vit latency model",
    graph: { name: "block", node: nodes, initializer: init, input: [io("x")], output: [io("y")] },
  });
}
