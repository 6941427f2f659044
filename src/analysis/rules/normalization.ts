/**
 * Normalisations and reductions mix every channel of the axes they reduce. A LayerNorm's
 * channels are followed (its scale and bias are sliced with them) but marked as normalised:
 * removing them changes the statistics, which only the embedding-width group accepts (as
 * Torch-Pruning and NViT do); heads, head dims and MLP channels there stay exact or are refused.
 * Reductions block the channels they reduce.
 *
 * @module
 */
import { attrInt, attrInts } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { couple, normAxis, plain } from "./couple.ts";

export const layerNorm: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const axis = normAxis(attrInt(node, "axis", -1), axes.length);
  const label = nodeLabel(node);
  if (axis !== axes.length - 1) {
    for (let i = axis; i < axes.length; i++) blockList(axes[i], `${label}: normalised axes`);
  } else {
    ctx.trace.normalized.push({ factors: axes[axis], reason: `${label}: normalised axis` });
    // Scale (input 1) and bias (input 2) hold one value per channel of the last axis.
    for (const inputIndex of [1, 2]) {
      const ref = node.input[inputIndex] ? ctx.graph.constant(node.input[inputIndex]) : undefined;
      if (node.input[inputIndex] && !ref) {
        blockList(axes[axis], `${label}: scale or bias is not a constant`);
      } else if (ref) {
        const dims = tensorDims(ref.tensor);
        ctx.touchTensor({
          use: { node, inputIndex },
          ref,
          axis: dims.length - 1,
          factors: axes[axis],
          role: "operand",
        });
      }
    }
  }
  ctx.setAxes(node.output[0], axes);
};

/**
 * A mean (or sum of squares) over the last axis with the axis kept: the statistic of a LayerNorm
 * or RMSNorm written out as ops (opset < 17 exports, Llama's RMSNorm). Its channels are marked
 * normalised like LayerNorm's; any other reduction blocks the channels it reduces.
 */
export const reduction: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const label = nodeLabel(node);
  const listed = node.input[1] ? ctx.graph.constantInts(node.input[1]) : attrInts(node, "axes");
  if (node.input[1] && !listed) return ctx.blockInputs(node, `${label}: axes are not constant`);
  const keep = attrInt(node, "keepdims", 1) === 1;
  const reduced = new Set((listed ?? axes.map((_, i) => i)).map((a) => normAxis(a, axes.length)));
  const last = axes.length - 1;
  const statistic = ["ReduceMean", "ReduceSumSquare", "ReduceL2"].includes(node.opType);
  const norm = node.opType === "ReduceL2" || node.opType === "ReduceSumSquare";
  if (norm && keep && reduced.size === 1 && reduced.has(last)) {
    // A sum of squares over the channels (cosine attention's ‖q‖, ‖k‖): a removed channel,
    // zero in the masked model, adds nothing to it — removing it is exact.
  } else if (statistic && keep && reduced.size === 1 && reduced.has(last)) {
    ctx.trace.normalized.push({ factors: axes[last], reason: `${label}: normalised axis` });
  } else {
    for (const i of reduced) blockList(axes[i], `${label}: reduction over tracked channels`);
  }
  // Axes not reduced keep their factors (a global average pool over tokens keeps channels).
  const out = axes.flatMap((axis, i) => reduced.has(i) ? (keep ? [plain(1, label)] : []) : [axis]);
  ctx.setAxes(node.output[0], out);
};

/**
 * onnxruntime's fused SkipLayerNormalization(input, skip, gamma, beta?, bias?): the residual add
 * and the LayerNorm in one op (output 3, when present, is the sum before normalisation).
 */
export const skipLayerNorm: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const a = ctx.axesOf(node.input[0]), b = ctx.axesOf(node.input[1]);
  if (!a || !b || a.length !== b.length) {
    return ctx.blockInputs(node, `${label}: input and skip must both be tracked`);
  }
  a.forEach((axis, i) => couple(axis, b[i], label));
  const last = a[a.length - 1];
  ctx.trace.normalized.push({ factors: last, reason: `${label}: normalised axis` });
  for (const inputIndex of [2, 3, 4]) {
    if (!node.input[inputIndex]) continue;
    const ref = ctx.graph.constant(node.input[inputIndex]);
    if (!ref) return ctx.blockInputs(node, `${label}: gamma, beta or bias is not a constant`);
    ctx.touchTensor({ use: { node, inputIndex }, ref, axis: 0, factors: last, role: "operand" });
  }
  ctx.setAxes(node.output[0], a);
  if (node.output[3]) ctx.setAxes(node.output[3], a);
  // Outputs 1 and 2 (mean, inverse std) are statistics over the channels.
  for (const k of [1, 2]) {
    if (node.output[k] && ctx.graph.consumers(node.output[k]).length) {
      blockList(last, `${label}: its statistics are used`);
    }
  }
};

/**
 * LpNormalization: x / ‖x‖ₚ along one axis. Along the last axis a removed channel, zero in the
 * masked model, adds nothing to the norm: its channels stay prunable as they are.
 */
export const lpNormalization: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const axis = normAxis(attrInt(node, "axis", -1), axes.length);
  if (axis !== axes.length - 1) blockList(axes[axis], `${nodeLabel(node)}: normalised axis`);
  ctx.setAxes(node.output[0], axes);
};

/** GlobalAveragePool / GlobalMaxPool over the spatial axes of [N, C, …]: channels pass. */
export const globalPool: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const label = nodeLabel(node);
  axes.slice(2).forEach((a) => blockList(a, `${label}: pooled over these channels`));
  ctx.setAxes(node.output[0], axes.map((a, i) => i < 2 ? a : plain(1, label)));
};

/** The Reduce* ops. */
export const REDUCTIONS = [
  "ReduceMean",
  "ReduceSum",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceL1",
  "ReduceL2",
  "ReduceSumSquare",
  "ReduceLogSumExp",
];

export function normalizationRules(): Record<string, Rule> {
  const rules: Record<string, Rule> = {
    LayerNormalization: layerNorm,
    LpNormalization: lpNormalization,
    GlobalAveragePool: globalPool,
    GlobalMaxPool: globalPool,
    "com.microsoft:SimplifiedLayerNormalization": layerNorm,
    SimplifiedLayerNormalization: layerNorm,
  };
  for (const op of REDUCTIONS) {
    rules[op] = reduction;
  }
  rules["com.microsoft:SkipLayerNormalization"] = skipLayerNorm;
  rules["com.microsoft:SkipSimplifiedLayerNormalization"] = skipLayerNorm;
  return rules;
}
