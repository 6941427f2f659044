/**
 * Resize interpolates along the axes whose size or scale changes and copies every other axis
 * unchanged (the head axis of a `[1, H, h, w]` position-bias table resized to a new grid).
 * Channels pass through those axes, with their element of `sizes` rewritten; channels on an
 * interpolated axis cannot follow.
 *
 * @module
 */
import { attr, attrInts } from "../../graph/graph.ts";
import { tensorToNumbers } from "../../onnx/tensor.ts";
import type { Factor } from "../factors.ts";
import type { Rule } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { normAxis, plain } from "./couple.ts";
import { followShapeElement } from "./layout.ts";

export const resize: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const axes = ctx.axesOf(node.input[0])!;
  const inDims = ctx.dims(node.input[0]), outDims = ctx.dims(node.output[0]);
  if (!inDims || !outDims || inDims.length !== outDims.length) {
    return ctx.blockInputs(node, `${label}: shape unknown`);
  }
  // Opset 10 takes scales as input 1; later versions take roi, scales, sizes.
  const [scalesName, sizesName] = node.input.length === 2
    ? [node.input[1], undefined]
    : [node.input[2], node.input[3]];
  const listed = attrInts(node, "axes")?.map((a) => normAxis(a, axes.length)) ??
    axes.map((_, i) => i);
  const scalesRef = scalesName ? ctx.graph.constant(scalesName) : undefined;
  let scales: number[] | undefined;
  try {
    scales = scalesRef ? tensorToNumbers(scalesRef.tensor) : undefined;
  } catch {
    scales = undefined; // unreadable: no axis counts as copied by its scale
  }
  const crop = attr(node, "coordinate_transformation_mode") === "tf_crop_and_resize";
  const bySizes = !!sizesName;
  const out: Factor[][] = axes.map((axis, i) => {
    const k = listed.indexOf(i);
    // With sizes, an axis of unchanged size has scale 1; given scales must say so themselves.
    const copied = !crop && inDims[i] === outDims[i] &&
      (k < 0 || bySizes || (scales !== undefined && scales[k] === 1));
    if (!copied) {
      blockList(axis, `${label}: interpolated axis`);
      return plain(outDims[i], label);
    }
    if (bySizes && k >= 0) followShapeElement(ctx, { node, inputIndex: 3 }, k, axis, label);
    return axis;
  });
  ctx.setAxes(node.output[0], out);
};
