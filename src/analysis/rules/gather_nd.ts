/**
 * GatherND(data, indices, batch_dims = b): each index tuple of length k picks a slice of data
 * along axes b … b+k−1; the leading b axes are shared with the indices and the axes after the
 * picked ones are copied whole (a relative-position bias `[table, H]` read by `[N·N, 1]`
 * indices keeps its head axis). Channels on the picked axes cannot follow.
 *
 * @module
 */
import { attrInt } from "../../graph/graph.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { plain } from "./couple.ts";

export const gatherND: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const data = ctx.axesOf(node.input[0])!;
  const indexDims = ctx.dims(node.input[1]);
  if (!indexDims || indexDims.length === 0 || ctx.axesOf(node.input[1])) {
    return ctx.blockInputs(node, `${label}: indices unknown or tracked`);
  }
  const b = attrInt(node, "batch_dims", 0);
  const k = indexDims[indexDims.length - 1];
  for (let i = b; i < b + k && i < data.length; i++) {
    blockList(data[i], `${label}: gathers along these channels`);
  }
  ctx.setAxes(node.output[0], [
    ...data.slice(0, b),
    ...indexDims.slice(b, -1).map((d) => plain(d, label)),
    ...data.slice(b + k),
  ]);
};
