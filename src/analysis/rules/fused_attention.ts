/**
 * onnxruntime's fused attention ops, read as what they compute: Q, K and V channels laid out
 * [heads, head_dim] (grouped-query attention: Q [KV heads, query heads per KV head, head_dim],
 * K and V [KV heads, head_dim]), the context [heads, v_head_dim] going to the output
 * projection. The op is an attention block of its own (`trace.fusedAttention`); its head count
 * attributes are rewritten after pruning, and its scale is pinned to the original
 * 1/sqrt(head_dim) when head dims go.
 *
 * - `Attention`: input · packed weight [in, 3·hidden] + bias inside the op. The packed axis is
 *   read as [3, heads, head_dim] (Q, K and V of equal size share heads and dims).
 * - `MultiHeadAttention`: q, k, v given (from MatMuls), 3-D; or packed q|k|v [B, S, N, 3, H];
 *   or k, v per head [B, N, L, H]. A packed bias [3·hidden] ties Q/K dims and V dims together.
 * - `GroupQueryAttention`: q, k, v given 3-D. Its rotary embedding (do_rotary) forbids head-dim
 *   pruning; onnxruntime also needs a head size that is a multiple of 16, so dims stay.
 *
 * A packed GroupQueryAttention query (Q | K | V of unequal sizes) is read as segments. What
 * cannot be followed (unequal qkv_hidden_sizes,
 * per-head inputs the analysis does not track) blocks with the node and the reason.
 *
 * @module
 */
import type { NodeProto } from "../../graph/graph.ts";
import { attr, attrInt, attrInts } from "../../graph/graph.ts";
import { onnx } from "../../onnx/proto.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import { Factor } from "../factors.ts";
import type { TraceContext } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { couple } from "./couple.ts";

const MS = "com.microsoft";

/** Sets (or adds) an int or float attribute. */
function setAttribute(node: NodeProto, name: string, value: number, float = false): void {
  let a = node.attribute.find((x) => x.name === name);
  if (!a) {
    a = onnx.AttributeProto.create({ name, type: float ? 1 : 2 });
    node.attribute.push(a);
  }
  if (float) a.f = value;
  else a.i = value;
}

/** Per-head inputs and outputs of a fused op, and what it computes them from. */
interface Block {
  ctx: TraceContext;
  node: NodeProto;
  label: string;
  heads: Factor[];
  qk: Factor;
  v: Factor;
}

/** Couples a tracked axis with the given factors, or blocks them when the axis is not tracked. */
function linkAxis(b: Block, name: string, axis: number, factors: Factor[], what: string): void {
  const axes = b.ctx.axesOf(name);
  if (axes && axes[axis]) return couple(axes[axis], factors, `${b.label} (${what})`);
  blockList(factors, `${b.label}: ${what} "${name}" is not a tensor the analysis follows`);
  for (const f of factors) f.block(`${b.label}: ${what} "${name}" is not followed`);
}

/** Channel factors on the leading axes of an input would be mixed across tokens. */
function blockLeading(b: Block, name: string): void {
  const axes = b.ctx.axesOf(name);
  axes?.slice(0, -1).forEach((a) => blockList(a, `${b.label}: attention mixes this axis`));
}

/** A per-head input (attention bias [B, heads, S, T], head sinks [heads]): sliced with the heads
 * when constant, coupled when tracked, else the heads stay. */
function perHeadInput(b: Block, index: number, axis: number, what: string): void {
  const name = b.node.input[index];
  if (!name) return;
  const dims = b.ctx.dims(name);
  const size = b.heads.reduce((a, h) => a * h.size, 1);
  if (!dims || dims[axis] === 1) return; // broadcast over heads
  const ref = b.ctx.graph.constant(name);
  if (ref && tensorDims(ref.tensor)[axis] === size) {
    b.ctx.touchTensor({
      use: { node: b.node, inputIndex: index },
      ref,
      axis,
      factors: b.heads,
      role: "operand",
    });
  } else linkAxis(b, name, axis, b.heads, what);
}

/** Past key/value [B, heads, P, dim] in, present [B, heads, T, dim] out. */
function cache(b: Block, pastIndex: number, presentIndex: number, heads: Factor[], dim: Factor) {
  const past = b.node.input[pastIndex];
  // A cache the analysis does not follow (a graph input) keeps its heads and dims.
  if (past) linkAxis(b, past, 1, heads, "past key/value");
  if (past) linkAxis(b, past, 3, [dim], "past key/value");
  const present = b.node.output[presentIndex];
  const dims = present ? b.ctx.dims(present) : undefined;
  if (dims?.length === 4) {
    const plain = (d: number) => [new Factor(d, false, b.label)];
    b.ctx.setAxes(present, [plain(dims[0]), heads, plain(dims[2]), [dim]]);
  }
}

/** Output [B, S, heads·v_dim]: leading axes plain. */
function output(b: Block, heads: Factor[]): void {
  const out = b.node.output[0];
  const dims = b.ctx.dims(out);
  if (!dims) return;
  b.ctx.setAxes(
    out,
    dims.map((d, i) => i === dims.length - 1 ? [...heads, b.v] : [new Factor(d, false, b.label)]),
  );
}

/** num_heads (and kv_num_heads) follow the kept heads; the scale stays the original one. */
function rewriteAttributes(b: Block, kv?: Factor): void {
  const { node, heads, qk } = b;
  const scale = attr(node, "scale");
  const original = typeof scale === "number" && scale !== 0 ? scale : 1 / Math.sqrt(qk.size);
  b.ctx.trace.attributeRewrites.push((kept) => {
    setAttribute(node, "num_heads", kept(heads));
    if (kv) setAttribute(node, "kv_num_heads", kept([kv]));
    const sizes = attrInts(node, "qkv_hidden_sizes");
    if (sizes) {
      const a = node.attribute.find((x) => x.name === "qkv_hidden_sizes")!;
      a.ints = [kept([...heads, qk]), kept([...heads, qk]), kept([...heads, b.v])];
    }
    if (kept([qk]) !== qk.size) setAttribute(node, "scale", original, true);
  });
}

/** The op's layout cannot be read: its inputs' channels stay, and the reason is kept. */
function refuse(ctx: TraceContext, node: NodeProto, reason: string): void {
  const why = `${nodeLabel(node)}: ${reason}`;
  ctx.blockInputs(node, why);
  ctx.trace.fusedAttention.push({ node, refused: why });
}

function register(b: Block): void {
  b.ctx.trace.fusedAttention.push({ node: b.node, heads: b.heads, qk: b.qk, v: b.v });
}

/** com.microsoft Attention: the op is its own q/k/v projection. */
function attention(ctx: TraceContext, node: NodeProto): void {
  const label = nodeLabel(node);
  const ref = ctx.graph.constant(node.input[1]);
  const inAxes = ctx.axesOf(node.input[0]);
  const n = attrInt(node, "num_heads", 0);
  const wdims = ref ? tensorDims(ref.tensor) : undefined;
  if (!ref || wdims?.length !== 2 || n < 1) {
    return refuse(ctx, node, `weights are not a constant [in, 3·hidden] matrix`);
  }
  const sizes = attrInts(node, "qkv_hidden_sizes") ?? [0, 1, 2].map(() => wdims[1] / 3);
  if (sizes[0] !== sizes[1] || sizes[1] !== sizes[2] || sizes[0] % n !== 0) {
    return refuse(ctx, node, `Q, K and V parts of unequal sizes (${sizes})`);
  }
  // The packed output axis, born here like a linear layer's: [q|k|v, heads, head_dim].
  const out = new Factor(wdims[1], true, node.name || node.output[0]);
  const [, heads, dim] = out.refine([3, n, sizes[0] / n]);
  const b: Block = { ctx, node, label, heads: [heads], qk: dim, v: dim };
  const use = { node, inputIndex: 1 };
  const weight = { use, ref, axis: 1, factors: [out], role: "weight-out" as const, linear: node };
  ctx.touchTensor(weight);
  const input = inAxes ? inAxes[inAxes.length - 1] : [];
  if (inAxes) {
    ctx.touchTensor({ use, ref, axis: 0, factors: input, role: "weight-in", linear: node });
    blockLeading(b, node.input[0]);
  }
  ctx.trace.linears.push({ node, weight, out, input });
  const bias = node.input[2] ? ctx.graph.constant(node.input[2]) : undefined;
  if (bias) {
    const use = { node, inputIndex: 2 };
    ctx.touchTensor({ use, ref: bias, axis: 0, factors: [out], role: "operand" });
  } else if (node.input[2]) out.block(`${label}: bias is not a constant`);
  if (attrInt(node, "do_rotary", 0)) {
    dim.block(
      `${label}: rotary position embedding (RoPE) inside the op (do_rotary) rotates pairs of head dims`,
    );
  }
  // past [2, B, heads, P, dim] / present: the same layout with K and V stacked first.
  const past = node.input[4];
  if (past) {
    blockList([heads, dim], `${label}: past state "${past}" is not followed`);
  }
  if (node.output[1] && ctx.graph.consumers(node.output[1]).length) {
    blockList([heads, dim], `${label}: present state is read`);
  }
  perHeadInput(b, 5, 1, "attention bias");
  output(b, [heads]);
  rewriteAttributes(b);
  register(b);
}

/** q, k, v inputs of MultiHeadAttention or GroupQueryAttention: 3-D [B, S, heads·dim]. */
function projected(b: Block, index: number, factors: Factor[], what: string): void {
  const name = b.node.input[index];
  if (!name) return;
  blockLeading(b, name);
  linkAxis(b, name, (b.ctx.dims(name)?.length ?? 3) - 1, factors, what);
}

function multiHeadAttention(ctx: TraceContext, node: NodeProto): void {
  const label = nodeLabel(node);
  const n = attrInt(node, "num_heads", 0);
  const [q, k, v] = node.input;
  const qDims = ctx.dims(q), kDims = k ? ctx.dims(k) : undefined;
  const vDims = v ? ctx.dims(v) : undefined;
  if (!qDims || n < 1) return refuse(ctx, node, `query shape unknown`);
  const heads = new Factor(n, false, label);
  if (qDims.length === 5) {
    // Packed q|k|v [B, S, N, 3, H]: heads major, one head size for all three.
    const dim = new Factor(qDims[4], false, label);
    const b: Block = { ctx, node, label, heads: [heads], qk: dim, v: dim };
    linkAxis(b, q, 2, [heads], "packed query");
    linkAxis(b, q, 4, [dim], "packed query");
    blockLeading(b, q);
    return finishMha(b);
  }
  const qk = new Factor(qDims[qDims.length - 1] / n, false, label);
  const b: Block = { ctx, node, label, heads: [heads], qk, v: qk };
  if (qDims.length !== 3 || !kDims || !Number.isInteger(qk.size)) {
    return refuse(ctx, node, `query/key layout not recognised`);
  }
  projected(b, 0, [heads, qk], "query");
  if (kDims.length === 5) {
    // Packed k|v [B, L, N, 2, H].
    linkAxis(b, k, 2, [heads], "packed key/value");
    linkAxis(b, k, 4, [qk], "packed key/value");
    return finishMha(b);
  }
  if (kDims.length === 4) {
    linkAxis(b, k, 1, [heads], "key");
    linkAxis(b, k, 3, [qk], "key");
  } else projected(b, 1, [heads, qk], "key");
  if (!vDims) return refuse(ctx, node, `value shape unknown`);
  const vSize = (vDims.length === 4 ? vDims[1] * vDims[3] : vDims[vDims.length - 1]) / n;
  // A packed bias [q | k | v] is read as [3, heads, dim]: V dims go with the Q/K dims.
  b.v = node.input[3] ? qk : new Factor(vSize, false, label);
  if (node.input[3] && vSize !== qk.size) {
    return refuse(ctx, node, `packed bias over Q/K and V heads of unequal size`);
  }
  if (vDims.length === 4) {
    linkAxis(b, v, 1, [heads], "value");
    linkAxis(b, v, 3, [b.v], "value");
  } else projected(b, 2, [heads, b.v], "value");
  finishMha(b);
}

function finishMha(b: Block): void {
  const { ctx, node, label } = b;
  const bias = node.input[3];
  if (bias) {
    const ref = ctx.graph.constant(bias);
    const three = new Factor(3, false, label);
    if (ref && tensorDims(ref.tensor).length === 1) {
      const use = { node, inputIndex: 3 };
      const factors = [three, ...b.heads, b.qk];
      ctx.touchTensor({ use, ref, axis: 0, factors, role: "operand" });
    } else blockList([...b.heads, b.qk], `${label}: bias is not a constant vector`);
  }
  perHeadInput(b, 5, 1, "attention bias");
  cache(b, 6, 1, b.heads, b.qk);
  cache(b, 7, 2, b.heads, b.v);
  if (node.output[3]) blockList(b.heads, `${label}: attention probabilities are an output`);
  output(b, b.heads);
  rewriteAttributes(b);
  register(b);
}

function groupQueryAttention(ctx: TraceContext, node: NodeProto): void {
  const label = nodeLabel(node);
  const n = attrInt(node, "num_heads", 0), kvN = attrInt(node, "kv_num_heads", 0);
  const [q, k, v] = node.input;
  const qDims = ctx.dims(q);
  if (!qDims || qDims.length !== 3 || n < 1 || kvN < 1 || n % kvN !== 0) {
    return refuse(ctx, node, `query layout not recognised`);
  }
  const groups = new Factor(kvN, false, label), perGroup = new Factor(n / kvN, false, label);
  const packed = !k || !v;
  const dim = new Factor(qDims[2] / (packed ? n + 2 * kvN : n), false, label);
  if (!Number.isInteger(dim.size)) return refuse(ctx, node, `query layout not recognised`);
  const heads = [groups, perGroup];
  // One head size for Q, K and V.
  const b: Block = { ctx, node, label, heads, qk: dim, v: dim };
  if (packed) {
    // Q | K | V in one input: the segments Q [KV heads, query heads, dim], K and V [KV heads, dim].
    const all = new Factor(qDims[2], false, label);
    const [sq, sk, sv] = all.segment([n, kvN, kvN].map((h) => h * dim.size));
    couple([sq], [groups, perGroup, dim], `${label} (packed query)`);
    couple([sk], [groups, dim], `${label} (packed key)`);
    couple([sv], [groups, dim], `${label} (packed value)`);
    projected(b, 0, [all], "packed query");
  } else {
    projected(b, 0, [groups, perGroup, dim], "query");
    projected(b, 1, [groups, dim], "key");
    projected(b, 2, [groups, dim], "value");
  }
  dim.block(
    attrInt(node, "do_rotary", 0)
      ? `${label}: rotary position embedding (RoPE) inside the op (do_rotary) rotates pairs of head dims`
      : `${label}: onnxruntime needs a head size that is a multiple of 16`,
  );
  cache(b, 3, 1, [groups], dim);
  cache(b, 4, 2, [groups], dim);
  perHeadInput(b, 10, 1, "attention bias");
  perHeadInput(b, 11, 0, "head sink");
  if (node.output[3]) blockList(heads, `${label}: attention probabilities are an output`);
  output(b, heads);
  rewriteAttributes(b, groups);
  // Without grouping (as many KV heads as query heads, or one KV head) one factor is the heads.
  const own = heads.filter((h) => h.size > 1);
  ctx.trace.fusedAttention.push({ node, heads: own.length ? own : [perGroup], qk: dim, v: dim });
}

/** Handles a fused attention op (a source: its weights may be the first tracked channels). */
export function fusedAttentionRule(ctx: TraceContext, node: NodeProto): boolean {
  if (node.domain !== MS) return false;
  if (node.opType === "Attention") attention(ctx, node);
  else if (node.opType === "MultiHeadAttention") multiHeadAttention(ctx, node);
  else if (node.opType === "GroupQueryAttention") groupQueryAttention(ctx, node);
  else return false;
  return true;
}
