/**
 * Elementwise ops: channels pass through unchanged; operands broadcast against each other are
 * coupled axis by axis (aligned from the right), and constant operands that carry a channel axis
 * (biases, per-channel scales) are sliced with it.
 *
 * @module
 */
import { tensorDims } from "../../onnx/tensor.ts";
import { attrInt } from "../../graph/graph.ts";
import type { Factor } from "../factors.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { alignedAxis, couple, normAxis, plain } from "./couple.ts";
import { untrackedTerm } from "../parameter_terms.ts";

/** One input → one output of the same shape. */
export const passThrough: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0]);
  if (axes) ctx.setAxes(node.output[0], axes);
  for (const name of node.input.slice(1)) {
    // Extra inputs (Clip bounds, Dropout ratio) must be scalars that do not touch channels.
    const dims = ctx.dims(name) ??
      (ctx.graph.constant(name) && tensorDims(ctx.graph.constant(name)!.tensor));
    if (name && dims && dims.some((d) => d > 1)) {
      ctx.blockInputs(node, `${nodeLabel(node)}: non-scalar extra input "${name}"`);
    }
  }
};

/** Broadcasting n-ary op (Add, Mul, Where, …). */
export const broadcast: Rule = (ctx, node) => {
  const out = node.output[0];
  const outDims = ctx.dims(out);
  if (!outDims) return ctx.blockInputs(node, `${nodeLabel(node)}: output shape unknown`);
  const rank = outDims.length;
  const label = nodeLabel(node);
  const outAxes: Factor[][] = [];
  for (let axis = 0; axis < rank; axis++) {
    let merged: Factor[] | undefined;
    const untracked: string[] = [];
    const constants: { index: number; axis: number }[] = [];
    node.input.forEach((name, index) => {
      if (!name) return;
      const tracked = ctx.axesOf(name);
      const constant = ctx.graph.constant(name);
      const dims = tracked ? undefined : constant ? tensorDims(constant.tensor) : ctx.dims(name);
      const inRank = tracked ? tracked.length : dims?.length ?? 0;
      const a = alignedAxis(axis, rank, inRank);
      if (a < 0) return;
      if (tracked) {
        if (ctx.dims(name)?.[a] !== outDims[axis] && outDims[axis] !== 1) return; // broadcast
        if (merged) couple(merged, tracked[a], label);
        else merged = tracked[a];
      } else if (dims && dims[a] === outDims[axis] && outDims[axis] !== 1) {
        if (constant) constants.push({ index, axis: a });
        else untracked.push(name);
      }
    });
    const list = merged ?? plain(outDims[axis], label);
    if (untracked.length) {
      const why = untrackedTerm(ctx.trace, untracked[0]);
      blockList(list, `${label}: combined with untracked tensor "${untracked[0]}"${why}`);
    }
    // Recorded even on plain axes: they may join a channel class later in the pass.
    for (const c of constants) {
      const ref = ctx.graph.constant(node.input[c.index])!;
      ctx.touchTensor({
        use: { node, inputIndex: c.index },
        ref,
        axis: c.axis,
        factors: list,
        role: "operand",
      });
    }
    outAxes.push(list);
  }
  ctx.setAxes(out, outAxes);
};

/** Softmax-like: elementwise, but the channels along the normalised axis cannot be removed. */
export const softmax: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0]);
  if (!axes) return;
  // Before opset 13 Softmax flattens from `axis` (default 1) and normalises the whole tail.
  const opset13 = ctx.trace.opset >= 13;
  const axis = normAxis(attrInt(node, "axis", opset13 ? -1 : 1), axes.length);
  for (let i = axis; i < (opset13 ? axis + 1 : axes.length); i++) {
    blockList(axes[i], `${nodeLabel(node)}: channels along the normalised axis`);
  }
  ctx.setAxes(node.output[0], axes);
};

export function elementwiseRules(): Record<string, Rule> {
  const rules: Record<string, Rule> = {};
  for (
    const op of [
      "Identity",
      "Cast",
      "Erf",
      "Gelu",
      "Relu",
      "LeakyRelu",
      "Sigmoid",
      "Tanh",
      "Sqrt",
      "Neg",
      "Abs",
      "Exp",
      "Log",
      "Dropout",
      "HardSigmoid",
      "HardSwish",
      "Softplus",
      "Softsign",
      "Mish",
      "Elu",
      "Selu",
      "Celu",
      "Clip",
      "Reciprocal",
      "Sin",
      "Cos",
      "Floor",
      "Ceil",
      "Round",
      "Sign",
      "IsNaN",
      "Not",
      "CastLike",
      "com.microsoft:FastGelu",
      "com.microsoft:QuickGelu",
      "com.microsoft:Gelu",
    ]
  ) rules[op] = passThrough;
  for (
    const op of [
      "Add",
      "Sub",
      "Mul",
      "Div",
      "Pow",
      "Max",
      "Min",
      "Sum",
      "Mean",
      "Where",
      "Equal",
      "Less",
      "Greater",
      "LessOrEqual",
      "GreaterOrEqual",
      "And",
      "Or",
      "Xor",
      "Mod",
      "PRelu",
      "com.microsoft:BiasGelu",
    ]
  ) rules[op] = broadcast;
  rules["Softmax"] = softmax;
  rules["LogSoftmax"] = softmax;
  return rules;
}
