/**
 * Control flow the trace follows: an `If` runs one of its two branches, each a graph of its own
 * whose nodes read outer tensors by name and whose outputs become the If's outputs (a merged
 * decoder holds its no-cache and its cache graphs so). Both branches are traced with the outer
 * tensors' factors in scope; each output of the If carries the factors its two branch outputs
 * agree on, unified, so that a channel removed in one branch is removed in the other. Channels
 * that one branch returns and the other does not, or returns laid out otherwise, are blocked
 * with the If named. Loop and Scan bodies run many times over carried state: they are not
 * followed (the caller blocks the channels they read).
 *
 * @module
 */
import { ifBranches, type NodeProto } from "../graph/graph.ts";
import { Factor, hasChannel, sizeOf, unifyLists } from "./factors.ts";
import { blockList, nodeLabel, type TraceContext } from "./trace.ts";

type Walk = (ctx: TraceContext, nodes: NodeProto[]) => void;

/** Traces both branches of an If node and unifies their outputs; false for any other node. */
export function traceBranches(ctx: TraceContext, node: NodeProto, walk: Walk): boolean {
  const branches = ifBranches(node);
  if (!branches) return false;
  for (const body of branches) walk(ctx, body.node as NodeProto[]);
  const [a, b] = branches.map((g) => g.output.map((o) => o.name ?? ""));
  node.output.forEach((out, i) => {
    if (!out) return;
    const x = ctx.axesOf(a[i] ?? ""), y = ctx.axesOf(b[i] ?? "");
    const where = `${nodeLabel(node)}: output "${out}"`;
    if (!x || !y) {
      const one = x ?? y;
      if (one?.some(hasChannel)) {
        for (const axis of one) blockList(axis, `${where} carries channels in one branch only`);
        // Followed on, blocked: the layers downstream say why they stay.
        ctx.setAxes(out, one);
      }
      return;
    }
    if (x.length !== y.length) {
      for (const axis of [...x, ...y]) {
        blockList(axis, `${where} has rank ${x.length} in one branch, ${y.length} in the other`);
      }
      return;
    }
    const dims = ctx.dims(out);
    const axes = x.map((xa, k) => {
      const ya = y[k];
      if (!hasChannel(xa) && !hasChannel(ya)) {
        // Plain axes (tokens: the cache branch returns past + new) may differ in size.
        const size = dims?.[k];
        return size === undefined || sizeOf(xa) === size
          ? xa
          : [new Factor(size, false, nodeLabel(node))];
      }
      if (sizeOf(xa) !== sizeOf(ya) || !unifyLists(xa, ya)) {
        const reason = `${where}: the branches lay out the channels of axis ${k} differently`;
        blockList(xa, reason);
        blockList(ya, reason);
      }
      return xa;
    });
    ctx.setAxes(out, axes);
  });
  return true;
}
