/**
 * Normalisations and reductions mix every channel of the axes they reduce: channels there cannot
 * be dropped without changing the statistics, so they are blocked (the embedding width, which
 * LayerNorm normalises, is pruned as one model-wide group — not by this rule).
 *
 * @module
 */
import { attrInt } from "../../graph/graph.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { normAxis } from "./couple.ts";

export const layerNorm: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const axis = normAxis(attrInt(node, "axis", -1), axes.length);
  for (let i = axis; i < axes.length; i++) {
    blockList(axes[i], `${nodeLabel(node)}: normalised axis`);
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
