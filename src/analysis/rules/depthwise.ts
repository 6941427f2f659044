/**
 * A depthwise convolution (group = input channels, weight [C·m, 1, k…]) filters every channel
 * on its own: channels pass through it (each followed by its m filters), the weight and bias are
 * sliced with them, and the `group` attribute is rewritten to the new channel count (PVTv2's
 * 3×3 convolution between fc1 and fc2). Other grouped convolutions mix the channels of a group.
 *
 * @module
 */
import type { NodeProto } from "../../graph/graph.ts";
import { attrInt } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import type { TraceContext } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { plain } from "./couple.ts";

/** Handles a grouped Conv (group ≠ 1); true when the node needs no further rule. */
export function groupedConv(ctx: TraceContext, node: NodeProto): boolean {
  const label = nodeLabel(node);
  const group = attrInt(node, "group", 1);
  const ref = ctx.graph.constant(node.input[1])!;
  const inAxes = ctx.axesOf(node.input[0]);
  const inDims = ctx.dims(node.input[0]), outDims = ctx.dims(node.output[0]);
  const wdims = tensorDims(ref.tensor);
  if (!inAxes) return true;
  if (!inDims || !outDims || group !== inDims[1] || wdims[1] !== 1 || wdims[0] % group !== 0) {
    ctx.blockInputs(node, `${label}: grouped convolution (group ${group}) mixes channels`);
    return true;
  }
  // Spatial axes mix positions, not channels: channels there cannot follow a pruning.
  inAxes.forEach((axis, i) => {
    if (i > 1) blockList(axis, `${label}: convolved axis`);
  });
  const multiplier = wdims[0] / group;
  const channels = multiplier === 1 ? inAxes[1] : [...inAxes[1], ...plain(multiplier, label)];
  ctx.setAxes(
    node.output[0],
    outDims.map((d, i) => i === 0 ? inAxes[0] : i === 1 ? channels : plain(d, label)),
  );
  const use = { node, inputIndex: 1 };
  ctx.touchTensor({ use, ref, axis: 0, factors: channels, role: "operand" });
  const bias = node.input[2] ? ctx.graph.constant(node.input[2]) : undefined;
  if (node.input[2] && !bias) blockList(channels, `${label}: bias is not a constant`);
  if (bias) {
    const biasUse = { node, inputIndex: 2 };
    ctx.touchTensor({ use: biasUse, ref: bias, axis: 0, factors: channels, role: "operand" });
  }
  // One group per input channel: the attribute follows the channel count.
  ctx.touchShape({
    use: { node, inputIndex: -1 },
    index: 0,
    factors: inAxes[1],
    attribute: "group",
  });
  return true;
}
