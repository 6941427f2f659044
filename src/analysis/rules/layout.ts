/**
 * Layout ops move channels between axes without mixing them: reshapes split and merge factors,
 * transposes permute axes, and Split/Slice/Gather select whole blocks of a leading factor (q, k
 * and v out of a fused qkv). Shape vectors that encode a channel count are recorded as touches.
 *
 * @module
 */
import type { NodeProto, Use } from "../../graph/graph.ts";
import { attrInts } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import { attrInt } from "../../graph/graph.ts";
import { Factor } from "../factors.ts";
import { hasChannel, leavesOf, regroup, sizeOf } from "../factors.ts";
import type { Rule, TraceContext } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { couple, normAxis, plain } from "./couple.ts";
import { checkShapeElement, shapeElement } from "../shape_values.ts";
import { selectSegment } from "../segments.ts";

/** Reshape, Flatten, Squeeze, Unsqueeze: same elements, new axes. */
export const reshape: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const outDims = ctx.dims(node.output[0]);
  const label = nodeLabel(node);
  const regrouped = outDims ? regroup(axes, outDims, label) : null;
  if (!regrouped) {
    for (const a of axes) blockList(a, `${label}: cannot follow the reshape`);
    return;
  }
  ctx.setAxes(node.output[0], regrouped);
  if (node.opType !== "Reshape") return;
  const target = node.input[1];
  const values = ctx.graph.constantInts(target) ?? ctx.trace.shapes.get(target)?.values;
  // Every axis, plain ones included: a plain factor may join a channel class later in the pass.
  regrouped.forEach((axis, index) => {
    const value = values?.[index];
    if (value === -1) return;
    if (value === 0 && !attrInt(node, "allowzero", 0)) {
      // "Copy the input's dim": right only while both axes hold the same factors.
      const same = axes[index] && sameLeaves(axes[index], axis);
      if (!same) blockList(axis, `${label}: target dim ${index} copies another axis`);
      return;
    }
    followShapeElement(ctx, { node, inputIndex: 1 }, index, axis, label);
  });
};

function sameLeaves(a: Factor[], b: Factor[]): boolean {
  const x = leavesOf(a).filter((f) => f.size !== 1), y = leavesOf(b).filter((f) => f.size !== 1);
  return x.length === y.length && x.every((f, i) => f.root() === y[i].root());
}

/**
 * A shape-vector element that sets the size of an axis: recorded so the rewrite can scale it,
 * blocked when its value cannot be followed; a size read at run time from another tensor's axis
 * couples that axis with this one.
 */
export function followShapeElement(
  ctx: TraceContext,
  use: Use,
  index: number,
  axis: Factor[],
  label: string,
): void {
  const problem = checkShapeElement(ctx.trace, use, index);
  if (problem) return blockList(axis, `${label}: target dim ${index} ${problem}`);
  const element = shapeElement(ctx.trace, use, index);
  // A one-element piece of a Concat can be replaced by a constant at rewrite time; a bare
  // run-time size has to follow the pruning by itself.
  if (element.kind === "dim" && !element.piece) {
    const source = ctx.axesOf(element.tensor)?.[element.axis];
    if (source) couple(source, axis, `${label}: target dim ${index}`);
    else blockList(axis, `${label}: target dim ${index} is read from an untracked tensor`);
  }
  ctx.touchShape({ use, index, factors: axis });
}

export const transpose: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const perm = attrInts(node, "perm") ?? axes.map((_, i) => axes.length - 1 - i);
  ctx.setAxes(node.output[0], perm.map((p) => axes[p]));
};

/**
 * Selecting the range [start, start+length) of an axis. Where the range covers whole blocks of
 * the trailing factors it only picks values of the leading factors (which are then blocked: they
 * index q/k/v, not channels one could drop) and the bounds scale with the trailing factors.
 * Otherwise, where the range lies inside one factor (a fused q | k | v or gate | up projection
 * taken apart by Split or Slice), that factor is cut into segments and the range's segment is
 * selected: the bounds then count the kept channels before them (`renumber`).
 */
function selectRange(
  axis: Factor[],
  start: number,
  length: number,
  label: string,
): { out: Factor[]; trailing: Factor[]; segmented: boolean } {
  // An empty range (partial RoPE's pass-through part when the rotary dim is the whole head).
  if (length === 0) return { out: plain(0, label), trailing: [], segmented: false };
  const leaves = leavesOf(axis).filter((f) => f.root().size !== 1);
  for (let j = 0; j < leaves.length; j++) {
    const trailing = leaves.slice(j);
    const m = sizeOf(trailing);
    if (start % m === 0 && length % m === 0) {
      const leading = leaves.slice(0, j);
      if (length / m === sizeOf(leading)) return { out: axis, trailing, segmented: false }; // all
      blockList(leading, `${label}: selects a block of these channels`);
      return { out: [...plain(length / m, label), ...trailing], trailing, segmented: false };
    }
  }
  for (let p = 0; p < leaves.length; p++) {
    const inner = sizeOf(leaves.slice(p + 1));
    const block = leaves[p].root().size * inner;
    const within = Math.floor(start / block) === Math.floor((start + length - 1) / block);
    if (start % inner !== 0 || length % inner !== 0 || !within) continue;
    const segment = selectSegment(leaves[p], (start % block) / inner, length / inner);
    if (!segment) break;
    blockList(leaves.slice(0, p), `${label}: selects a block of these channels`);
    return { out: [segment, ...leaves.slice(p + 1)], trailing: [], segmented: true };
  }
  blockList(leaves, `${label}: selects a range that is not one block or segment of these channels`);
  return { out: plain(length, label), trailing: [], segmented: false };
}

export const split: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const axis = normAxis(attrInt(node, "axis", 0), axes.length);
  const label = nodeLabel(node);
  const sizes = node.output.map((o) => ctx.dims(o)?.[axis]);
  if (sizes.some((s) => s === undefined)) {
    return ctx.blockInputs(node, `${label}: output shape unknown`);
  }
  let start = 0;
  const fromInput = node.input[1] ? { node, inputIndex: 1 } : undefined;
  // Where the sizes are: an input, the "split" attribute (opset < 13), or equal parts.
  const sizesAt = (i: number) =>
    fromInput
      ? { use: fromInput, index: i }
      : attrInts(node, "split")
      ? { use: { node, inputIndex: -1 }, index: i, attribute: "split" }
      : { use: { node, inputIndex: -1 }, index: i, attribute: "num_outputs" };
  node.output.forEach((out, i) => {
    const size = sizes[i]!;
    const outAxes = [...axes];
    if (hasChannel(axes[axis])) {
      const sel = selectRange(axes[axis], start, size, label);
      if (!sel) {
        blockList(axes[axis], `${label}: split does not follow channel blocks`);
      } else {
        outAxes[axis] = sel.out;
        if (sel.segmented) {
          const renumber = { axis: axes[axis], from: start, to: start + size };
          ctx.touchShape({ ...sizesAt(i), factors: sel.out, renumber });
        } else if (sel.out !== axes[axis]) {
          const at = sizesAt(i);
          if (at.attribute !== "num_outputs") ctx.touchShape({ ...at, factors: sel.trailing });
        }
      }
    } else {
      blockList(axes[axis], `${label}: splits these channels`);
      outAxes[axis] = plain(size, label);
    }
    ctx.setAxes(out, outAxes);
    start += size;
  });
};

export const slice: Rule = (ctx, node) => {
  const axes = ctx.axesOf(node.input[0])!;
  const label = nodeLabel(node);
  const outDims = ctx.dims(node.output[0]);
  const inDims = ctx.dims(node.input[0]);
  if (!outDims || !inDims) return ctx.blockInputs(node, `${label}: shape unknown`);
  // Bounds computed at run time are read from the probe run (rewriting them, when channels
  // move, goes through the shape-value provenance like any shape vector).
  const ints = (i: number, attrName: string) =>
    node.input[i]
      ? ctx.graph.constantInts(node.input[i]) ?? ctx.trace.shapes.get(node.input[i])?.values
      : attrInts(node, attrName);
  const starts = ints(1, "starts"), ends = ints(2, "ends");
  const sliceAxes = ints(3, "axes") ?? (node.input[3] ? undefined : starts?.map((_, i) => i));
  const steps = ints(4, "steps") ?? (node.input[4] ? undefined : starts?.map(() => 1));
  const outAxes = axes.map((a, i) => outDims[i] === inDims[i] ? a : plain(outDims[i], label));
  if (!starts || !ends || !sliceAxes || !steps) {
    for (let i = 0; i < axes.length; i++) {
      if (outDims[i] !== inDims[i]) blockList(axes[i], `${label}: bounds are not known`);
    }
    ctx.setAxes(node.output[0], outAxes);
    return;
  }
  sliceAxes.forEach((rawAxis, k) => {
    const axis = normAxis(rawAxis, axes.length);
    if (outDims[axis] === inDims[axis]) return; // whole axis
    if (!hasChannel(axes[axis])) return blockList(axes[axis], `${label}: slices these channels`);
    if (steps && steps[k] !== 1) {
      return blockList(axes[axis], `${label}: strided slice of channels`);
    }
    const size = inDims[axis];
    const start = Math.min(Math.max(starts[k] < 0 ? starts[k] + size : starts[k], 0), size);
    const sel = selectRange(axes[axis], start, outDims[axis], label);
    if (!sel) return blockList(axes[axis], `${label}: slice does not follow channel blocks`);
    outAxes[axis] = sel.out;
    if (!node.input[1]) {
      return blockList(axes[axis], `${label}: bounds in attributes are not rewritten`);
    }
    const end = ends[k];
    const endsInside = end < size && end > -size;
    if (sel.segmented) {
      const to = start + outDims[axis];
      const bound = (value: number, at: number) =>
        value < 0
          ? { axis: axes[axis], from: at, to: size, negative: true }
          : { axis: axes[axis], from: 0, to: at };
      const factors = sel.out;
      ctx.touchShape({
        use: { node, inputIndex: 1 },
        index: k,
        factors,
        renumber: bound(starts[k], start),
      });
      if (endsInside) {
        ctx.touchShape({
          use: { node, inputIndex: 2 },
          index: k,
          factors,
          renumber: bound(end, to),
        });
      }
      return;
    }
    ctx.touchShape({ use: { node, inputIndex: 1 }, index: k, factors: sel.trailing });
    if (endsInside) {
      ctx.touchShape({ use: { node, inputIndex: 2 }, index: k, factors: sel.trailing });
    }
  });
  ctx.setAxes(node.output[0], outAxes);
};

export const gather: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const data = ctx.axesOf(node.input[0]);
  if (!data || ctx.axesOf(node.input[1])) {
    return ctx.blockInputs(node, `${label}: gather by tracked indices`);
  }
  const axis = normAxis(attrInt(node, "axis", 0), data.length);
  const indexConst = ctx.graph.constant(node.input[1]);
  const indexDims = indexConst ? tensorDims(indexConst.tensor) : ctx.dims(node.input[1]);
  if (!indexDims) return ctx.blockInputs(node, `${label}: indices shape unknown`);
  const leaves = leavesOf(data[axis]).filter((f) => f.root().size !== 1);
  // Constant indices that pick a run of consecutive channels (Falcon's `qkv[..., [-2], :]` for
  // the key head): a range, like a Slice's; the indices are renumbered after pruning.
  const indices = ctx.graph.constantInts(node.input[1]);
  const size = ctx.dims(node.input[0])?.[axis];
  const picked = indices && size ? indices.map((i) => i < 0 ? i + size : i) : undefined;
  const run = picked && indexDims.length === 1 && picked.length > 0 &&
    picked.every((v, k) => v === picked[0] + k) && picked[0] >= 0 && picked.at(-1)! < size!;
  if (run && hasChannel(data[axis])) {
    const sel = selectRange(data[axis], picked[0], picked.length, label);
    const use = { node, inputIndex: 1 };
    ctx.touchShape({ use, index: 0, factors: sel.out, indices: { axis: data[axis], picked } });
    ctx.setAxes(node.output[0], [...data.slice(0, axis), sel.out, ...data.slice(axis + 1)]);
    return;
  }
  if (!hasChannel(data[axis]) || leaves.length !== 1 || indexDims.length !== 0) {
    blockList(data[axis], `${label}: gathers channels`);
  } else {
    blockList(leaves, `${label}: selects one of these channels`);
  }
  const out = [
    ...data.slice(0, axis),
    ...indexDims.map((d) => plain(d, label)),
    ...data.slice(axis + 1),
  ];
  ctx.setAxes(node.output[0], out);
};

export const concat: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const outDims = ctx.dims(node.output[0]);
  if (!outDims) return ctx.blockInputs(node, `${label}: output shape unknown`);
  const axis = normAxis(attrInt(node, "axis", 0), outDims.length);
  const outAxes: Factor[][] = outDims.map((d) => plain(d, label));
  const inputAxes = new Map(node.input.map((n, i) => [n, concatInputAxes(ctx, node, i)]));
  const axesOf = (n: string) => inputAxes.get(n);
  const first = node.input.find((n) => axesOf(n));
  const base = axesOf(first!)!;
  for (let i = 0; i < outDims.length; i++) {
    if (i === axis) {
      // Empty pieces add nothing.
      const pieces = node.input.filter((n) => ctx.dims(n)?.[i] !== 0);
      if (pieces.length === 1 && ctx.axesOf(pieces[0])) {
        outAxes[i] = ctx.axesOf(pieces[0])![i];
        continue;
      }
      // Copies of the same channels side by side (Swin's patch merging joins four spatial
      // slices of one tensor) form the axis [copy, channels…]; anything else is refused.
      const lists = node.input.map((n) => axesOf(n)?.[i]);
      const sizes = node.input.map((n) => ctx.dims(n)?.[i]);
      const channels = lists.every((l) => l && hasChannel(l));
      const single = lists.map((l) => l && leavesOf(l).filter((f) => f.root().size !== 1));
      const same = single.every((l) => l?.length === 1 && l[0].root() === single[0]![0].root());
      if (channels && !same && single.every((l) => l?.length === 1)) {
        // Different channels side by side (RoPE's rotate_half puts x's second half before its
        // first): one factor made of those segments.
        const parts = single.map((l) => l![0].root().size);
        const joined = new Factor(parts.reduce((a, b) => a + b, 0), true, label);
        joined.segment(parts)
          .forEach((segment, k) => Factor.unify(segment, single[k]![0]));
        outAxes[i] = [joined];
        continue;
      }
      const copies = channels && sizes.every((d) => d === sizes[0]);
      if (copies) {
        for (const l of lists.slice(1)) couple(lists[0]!, l!, label);
        outAxes[i] = [...plain(lists.length, label), ...lists[0]!];
        continue;
      }
      for (const l of lists) if (l) blockList(l, `${label}: concatenates along channels`);
      continue;
    }
    outAxes[i] = base[i];
    for (const n of node.input) {
      const a = axesOf(n);
      if (a && a !== base) couple(base[i], a[i], label);
      else if (!a) blockList(base[i], `${label}: concatenated with untracked tensor "${n}"`);
    }
  }
  ctx.setAxes(node.output[0], outAxes);
};

/**
 * Axes of a Concat input: tracked ones, or for a constant (a class token the exporter folded)
 * plain factors recorded as touches of this use, so that it is sliced with what it meets.
 */
function concatInputAxes(ctx: TraceContext, node: NodeProto, inputIndex: number) {
  const name = node.input[inputIndex];
  const tracked = ctx.axesOf(name);
  const ref = tracked ? undefined : ctx.graph.constant(name);
  if (!ref) return tracked;
  const axes = tensorDims(ref.tensor).map((d) => plain(d, nodeLabel(node)));
  axes.forEach((factors, axis) => {
    if (factors[0].size > 1) {
      ctx.touchTensor({ use: { node, inputIndex }, ref, axis, factors, role: "operand" });
    }
  });
  return axes;
}

/**
 * Expand broadcasts size-1 axes (repeat_kv in grouped-query attention expands each KV head over
 * its group). Axes that keep their size keep their factors; a channel axis whose size is spelled
 * out in the target shape gets that element rewritten.
 */
export const expand: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const axes = ctx.axesOf(node.input[0])!;
  const inDims = ctx.dims(node.input[0]), outDims = ctx.dims(node.output[0]);
  if (!inDims || !outDims) return ctx.blockInputs(node, `${label}: shape unknown`);
  const target = ctx.graph.constantInts(node.input[1]) ??
    ctx.trace.shapes.get(node.input[1])?.values;
  const offset = outDims.length - inDims.length;
  const shapeOffset = outDims.length - (target?.length ?? outDims.length);
  const out = outDims.map((d, i) => {
    const a = i - offset;
    // A broadcast axis is new and plain, but it may join a channel class later (repeat_kv's
    // group size meets the query heads at Q·Kᵀ), so its target element is recorded too.
    const list = a < 0 || inDims[a] !== d ? plain(d, label) : axes[a];
    const index = i - shapeOffset;
    if (index >= 0 && target?.[index] !== 1) {
      followShapeElement(ctx, { node, inputIndex: 1 }, index, list, label);
    }
    return list;
  });
  ctx.setAxes(node.output[0], out);
};

/**
 * Pad: axes that are not padded keep their factors (Swin pads windows spatially, with pads that
 * are often zero); padding along channels is refused.
 */
export const pad: Rule = (ctx, node) => {
  const label = nodeLabel(node);
  const axes = ctx.axesOf(node.input[0])!;
  const pads = node.input[1]
    ? ctx.graph.constantInts(node.input[1]) ?? ctx.trace.shapes.get(node.input[1])?.values
    : attrInts(node, "pads");
  const padAxes = node.input[3]
    ? ctx.graph.constantInts(node.input[3])?.map((a) => normAxis(a, axes.length))
    : axes.map((_, i) => i);
  if (!pads || !padAxes) return ctx.blockInputs(node, `${label}: pads are not known`);
  const n = padAxes.length;
  const outDims = ctx.dims(node.output[0]);
  const out = axes.map((axis, i) => {
    const k = padAxes.indexOf(i);
    const padded = k >= 0 && (pads[k] !== 0 || pads[k + n] !== 0);
    if (!padded) return axis;
    blockList(axis, `${label}: pads these channels`);
    return plain(outDims?.[i] ?? 1, label);
  });
  ctx.setAxes(node.output[0], out);
};

/** Shape reads a tracked tensor but produces a shape vector (followed by shape_values). */
export const shapeOf: Rule = () => {};

export function layoutRules(): Record<string, Rule> {
  return {
    Reshape: reshape,
    Flatten: reshape,
    Squeeze: reshape,
    Unsqueeze: reshape,
    Transpose: transpose,
    Split: split,
    Slice: slice,
    Gather: gather,
    Concat: concat,
    Expand: expand,
    Pad: pad,
    Shape: shapeOf,
    Size: shapeOf,
  };
}
