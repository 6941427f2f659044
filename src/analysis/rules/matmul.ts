/**
 * MatMul of two activations (attention scores Q·Kᵀ and context P·V): the contracted axes are
 * coupled (Q and K must keep the same dims), batch axes are coupled (the same heads on both
 * sides), and the output keeps the left rows and the right columns. onnxruntime's FusedMatMul
 * (alpha · op(A) · op(B), the optimizer's form of a scaled Q·Kᵀ) is the same with its operands'
 * last two axes swapped where it transposes them.
 *
 * @module
 */
import type { Factor } from "../factors.ts";
import type { Rule } from "../trace.ts";
import { nodeLabel } from "../trace.ts";
import { attrInt } from "../../graph/graph.ts";
import { couple, coupleUntracked, plain } from "./couple.ts";

export const activationMatMul: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const [aName, bName] = node.input;
  const fused = node.domain === "com.microsoft";
  if (fused && (attrInt(node, "transBatchA", 0) || attrInt(node, "transBatchB", 0))) {
    return ctx.blockInputs(node, `${label}: batch-transposed operands are not followed`);
  }
  // The operands as the product reads them (FusedMatMul's transA / transB swap the last two).
  const swap = <T>(x: T[] | undefined, on: boolean) =>
    x && on && x.length >= 2 ? [...x.slice(0, -2), x[x.length - 1], x[x.length - 2]] : x;
  const ta = fused && attrInt(node, "transA", 0) === 1;
  const tb = fused && attrInt(node, "transB", 0) === 1;
  const aDims = swap(ctx.dims(aName), ta), bDims = swap(ctx.dims(bName), tb);
  const outDims = ctx.dims(node.output[0]);
  if (!aDims || !bDims || !outDims || aDims.length < 2 || bDims.length < 2) {
    return ctx.blockInputs(node, `${label}: operand shapes unsupported`);
  }
  const aTracked = swap(ctx.axesOf(aName), ta), bTracked = swap(ctx.axesOf(bName), tb);
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
