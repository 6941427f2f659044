/**
 * Rotary position embedding (RoPE) in front of Q·Kᵀ: `x·cos + rotate(x)·sin`, where `rotate`
 * only moves and negates dims of the same head (rotate_half's halves swapped, or interleaved
 * pairs), or a fused RotaryEmbedding op. It pairs dims i and i+d/2 (or 2i and 2i+1) inside each
 * head, so head dims there are refused with this reason rather than the first blocked op's.
 *
 * @module
 */
import type { Graph, NodeProto } from "../graph/graph.ts";

/** Ops between a rotation and the Q·Kᵀ operand (layout, scaling, casts, a KV cache concat). */
const TO_SCORES = new Set([
  "Transpose",
  "Reshape",
  "Cast",
  "Identity",
  "Expand",
  "Concat",
  "Unsqueeze",
  "Squeeze",
  "Mul",
  "Div",
  "Slice",
]);

/** Ops a rotation is made of: they move, pick and negate elements. */
const ROTATION = new Set([
  "Slice",
  "Split",
  "Gather",
  "Neg",
  "Concat",
  "Reshape",
  "Transpose",
  "Unsqueeze",
  "Squeeze",
  "Flatten",
  "Cast",
  "Identity",
]);

/** Ops that pick a part of the dims: a rotation moves dims only through one of these. */
const PICKS = new Set(["Slice", "Split", "Gather"]);

function computed(graph: Graph, node: NodeProto): string[] {
  return node.input.filter((n) => n && !graph.constant(n));
}

/** Whether `from` is computed from `to` by rotation ops only, picking some of its dims. */
function rotates(graph: Graph, from: string, to: string): boolean {
  let frontier: { name: string; picked: boolean }[] = [{ name: from, picked: false }];
  for (let depth = 0; depth < 8 && frontier.length; depth++) {
    const next: typeof frontier = [];
    for (const { name, picked } of frontier) {
      if (name === to) {
        if (picked) return true;
        continue;
      }
      const node = graph.producer(name);
      if (!node || !ROTATION.has(node.opType)) continue;
      const isPick = picked || PICKS.has(node.opType);
      // Data inputs only: Slice bounds and Reshape targets are shapes.
      const data = node.opType === "Concat" ? computed(graph, node) : [node.input[0]];
      for (const input of data) next.push({ name: input, picked: isPick });
    }
    frontier = next;
  }
  return false;
}

/** `a·c + r·s` with r a rotation of a (either order, Add or Sub). */
function isRotation(graph: Graph, node: NodeProto): boolean {
  if (node.opType !== "Add" && node.opType !== "Sub") return false;
  const muls = node.input.map((n) => graph.producer(n));
  if (muls.length !== 2 || muls.some((m) => m?.opType !== "Mul")) return false;
  const [a, b] = muls.map((m) => computed(graph, m!));
  return a.some((x) => b.some((r) => rotates(graph, r, x) || rotates(graph, x, r)));
}

/**
 * The node applying rotary position embedding to `tensor` (an operand of Q·Kᵀ), looking
 * upstream through layout ops; undefined when there is none.
 */
export function ropeNode(graph: Graph, tensor: string): NodeProto | undefined {
  const seen = new Set<string>();
  let frontier = [tensor];
  for (let depth = 0; depth < 10 && frontier.length; depth++) {
    const next: string[] = [];
    for (const name of frontier) {
      if (seen.has(name)) continue;
      seen.add(name);
      const node = graph.producer(name);
      if (!node) continue;
      if (node.opType === "RotaryEmbedding" || isRotation(graph, node)) return node;
      if (!TO_SCORES.has(node.opType)) continue;
      next.push(...(node.opType === "Concat" ? computed(graph, node) : [node.input[0]]));
      if (node.opType === "Mul" || node.opType === "Div") next.push(...computed(graph, node));
    }
    frontier = next;
  }
  return undefined;
}

/** The refusal reason for head dims under RoPE, naming the node. */
export function ropeReason(node: NodeProto): string {
  return `rotary position embedding (RoPE, ${node.opType} node "${node.name || node.output[0]}") ` +
    `pairs dims i and i+d/2 inside each head: head dims cannot be pruned, whole heads can`;
}
