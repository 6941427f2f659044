/**
 * MatMul of two activations (attention scores Q·Kᵀ and context P·V): the contracted axes are
 * coupled (Q and K must keep the same dims), batch axes are coupled (the same heads on both
 * sides), and the output keeps the left rows and the right columns.
 *
 * @module
 */
import type { Factor } from "../factors.ts";
import type { Rule } from "../trace.ts";
import { nodeLabel } from "../trace.ts";
import { couple, coupleUntracked, plain } from "./couple.ts";

export const activationMatMul: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const [aName, bName] = node.input;
  const aDims = ctx.dims(aName), bDims = ctx.dims(bName), outDims = ctx.dims(node.output[0]);
  if (!aDims || !bDims || !outDims || aDims.length < 2 || bDims.length < 2) {
    return ctx.blockInputs(node, `${label}: operand shapes unsupported`);
  }
  const aTracked = ctx.axesOf(aName), bTracked = ctx.axesOf(bName);
  const a = aTracked ?? aDims.map((d) => plain(d, label));
  const b = bTracked ?? bDims.map((d) => plain(d, label));
  const ra = a.length, rb = b.length, ro = outDims.length;
  const link = (x: Factor[], y: Factor[], why: string) => {
    if (aTracked && bTracked) couple(x, y, why);
    else coupleUntracked(aTracked ? x : y, why);
  };
  const contracted = a[ra - 1];
  link(contracted, b[rb - 2], `${label} (contracted axis)`);
  const batch: Factor[][] = [];
  for (let i = 0; i < ro - 2; i++) {
    const ia = i - (ro - ra), ib = i - (ro - rb);
    const fa = ia >= 0 && aDims[ia] === outDims[i] ? a[ia] : undefined;
    const fb = ib >= 0 && bDims[ib] === outDims[i] ? b[ib] : undefined;
    if (fa && fb && outDims[i] !== 1) link(fa, fb, `${label} (batch axis ${i})`);
    batch.push(fa ?? fb ?? plain(outDims[i], label));
  }
  const out = [...batch, a[ra - 2], b[rb - 1]];
  ctx.setAxes(node.output[0], out);
  ctx.trace.matmuls.push({ node, contracted, batch, rightColumns: b[rb - 1], leftRows: a[ra - 2] });
};
