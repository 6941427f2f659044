/**
 * BatchNormalization at inference: y = (x − mean) / √(var + ε) · scale + bias, one affine map
 * per channel of axis 1. Channels pass through it; its four per-channel constants are sliced
 * with them (LeViT's Linear + BatchNorm, BatchNorm inside Paddle-style MLPs).
 *
 * @module
 */
import { tensorDims } from "../../onnx/tensor.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";

export const batchNorm: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const axes = ctx.axesOf(node.input[0])!;
  if (axes.length < 2) return ctx.blockInputs(node, `${label}: input has no channel axis`);
  // Training mode: the batch statistics computed over channels are outputs too.
  if (node.output.slice(1).some((o) => o && ctx.graph.consumers(o).length)) {
    return ctx.blockInputs(node, `${label}: running statistics are used (training mode)`);
  }
  for (let inputIndex = 1; inputIndex <= 4; inputIndex++) {
    const ref = ctx.graph.constant(node.input[inputIndex]);
    if (!ref || tensorDims(ref.tensor).length !== 1) {
      blockList(axes[1], `${label}: scale, bias, mean or variance is not a constant vector`);
      continue;
    }
    ctx.touchTensor({ use: { node, inputIndex }, ref, axis: 0, factors: axes[1], role: "operand" });
  }
  ctx.setAxes(node.output[0], axes);
};
