/**
 * Why an activation MatMul is not part of an attention block, in words that name nodes: for each
 * operand that carries no channels of a linear layer, the nearest place upstream where such
 * channels stopped being followed and the rule that stopped them; for an operand whose channels
 * are followed but blocked, the reason they were blocked.
 *
 * @module
 */
import type { NodeProto } from "../graph/graph.ts";
import type { Factor } from "./factors.ts";
import { nodeLabel, type Trace } from "./trace.ts";

function channels(trace: Trace, tensor: string): Factor[] {
  return (trace.axes.get(tensor) ?? []).flat().flatMap((f) => f.leaves()).filter((f) =>
    f.channel && f.size > 1
  );
}

/**
 * The nearest node upstream of `tensor` that reads channels of a linear layer and passes none
 * on, with the reason its input's channels were blocked; null when no linear layer's channels
 * reach the tensor at all (position ids, masks, constants).
 */
export function whereChannelsStop(trace: Trace, tensor: string, maxDepth = 24): string | null {
  const graph = trace.graph;
  const seen = new Set<string>([tensor]);
  let frontier = [tensor];
  for (let depth = 0; depth < maxDepth && frontier.length; depth++) {
    const next: string[] = [];
    for (const name of frontier) {
      const node = graph.producer(name);
      if (!node) continue;
      for (const input of node.input) {
        if (!input || graph.constant(input)) continue;
        const leaves = channels(trace, input);
        if (leaves.length && !channels(trace, name).length) {
          const reason = leaves.map((f) => f.blockedReason()).find((r) => r);
          return reason ?? `${nodeLabel(node)} passes on none of its input's channels`;
        }
        if (!seen.has(input)) {
          seen.add(input);
          next.push(input);
        }
      }
    }
    frontier = next;
  }
  return null;
}

/**
 * Why the activation MatMul `node` (both operands computed) belongs to no attention block, one
 * reason per operand that has one; null when nothing upstream of it comes from a linear layer
 * (it is no attention candidate).
 */
export function whyNotAttention(trace: Trace, node: NodeProto): string[] | null {
  const reasons: string[] = [];
  let candidate = false;
  for (const operand of node.input.slice(0, 2)) {
    const leaves = channels(trace, operand);
    if (leaves.length) {
      candidate = true;
      const blocked = leaves.map((f) => f.blockedReason()).find((r) => r);
      if (blocked) reasons.push(`operand "${operand}": ${blocked}`);
      continue;
    }
    const stop = whereChannelsStop(trace, operand);
    if (stop) {
      candidate = true;
      reasons.push(`operand "${operand}" carries no traced channels (stopped at ${stop})`);
    }
  }
  return candidate ? reasons : null;
}
