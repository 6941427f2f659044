/**
 * Normalisations and reductions mix every channel of the axes they reduce. A LayerNorm's
 * channels are followed (its scale and bias are sliced with them) but marked as normalised:
 * removing them changes the statistics, which only the embedding-width group accepts (as
 * Torch-Pruning and NViT do); heads, head dims and MLP channels there stay exact or are refused.
 * Reductions block the channels they reduce.
 *
 * @module
 */
import { attrInt } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { normAxis } from "./couple.ts";

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

export function normalizationRules(): Record<string, Rule> {
  const rules: Record<string, Rule> = {
    LayerNormalization: layerNorm,
    "com.microsoft:SimplifiedLayerNormalization": layerNorm,
    SimplifiedLayerNormalization: layerNorm,
  };
  for (
    const op of [
      "ReduceMean",
      "ReduceSum",
      "ReduceMax",
      "ReduceMin",
      "ReduceProd",
      "ReduceL1",
      "ReduceL2",
      "ReduceSumSquare",
      "ReduceLogSumExp",
    ]
  ) {
    rules[op] = (ctx, node) =>
      ctx.blockInputs(node, `${nodeLabel(node)}: reduction over tracked channels`);
  }
  return rules;
}
