/**
 * Other places where channels are born, besides linear layers: convolutions (a ViT's patch
 * embedding) and embedding tables (a Gather from a constant table by token ids). Constants that
 * meet channels through other ops (class tokens broadcast by Expand, position-bias tables) are
 * traced where they meet them (`../parameter_terms.ts`).
 *
 * @module
 */
import type { NodeProto } from "../../graph/graph.ts";
import { attrInt } from "../../graph/graph.ts";
import { isFloatType, tensorDims } from "../../onnx/tensor.ts";
import { Factor } from "../factors.ts";
import type { TraceContext } from "../trace.ts";
import { blockList, nodeLabel } from "../trace.ts";
import { groupedConv } from "./depthwise.ts";

/** Conv with a constant weight [Cout, Cin/group, k…]: output axis 1 carries fresh channels. */
function convRule(ctx: TraceContext, node: NodeProto): boolean {
  if (node.opType !== "Conv" || node.domain) return false;
  const ref = ctx.graph.constant(node.input[1]);
  const outDims = ctx.dims(node.output[0]);
  if (!ref || !outDims) return false;
  const label = node.name || node.output[0];
  const inAxes = ctx.axesOf(node.input[0]);
  if (attrInt(node, "group", 1) !== 1) return groupedConv(ctx, node);
  const wdims = tensorDims(ref.tensor);
  const out = new Factor(wdims[0], true, label);
  ctx.setAxes(
    node.output[0],
    outDims.map((d, i) => i === 1 ? [out] : [new Factor(d, false, label)]),
  );
  const use = { node, inputIndex: 1 };
  const weight = { use, ref, axis: 0, factors: [out], role: "weight-out" as const, linear: node };
  ctx.touchTensor(weight);
  const input = inAxes?.[1] ?? [];
  if (inAxes) {
    ctx.touchTensor({ use, ref, axis: 1, factors: input, role: "weight-in", linear: node });
    // Spatial axes mix positions, not channels: channels there cannot follow a pruning.
    inAxes.forEach((axis, i) => {
      if (i !== 1) blockList(axis, `${nodeLabel(node)}: convolved axis`);
    });
  }
  const bias = node.input[2] ? ctx.graph.constant(node.input[2]) : undefined;
  if (bias) {
    ctx.touchTensor({
      use: { node, inputIndex: 2 },
      ref: bias,
      axis: 0,
      factors: [out],
      role: "operand",
    });
  }
  ctx.trace.linears.push({ node, weight, out, input });
  return true;
}

/** Gather(table, ids) from a constant table [V, D] by ids: the output's last axis is D. */
function embeddingRule(ctx: TraceContext, node: NodeProto): boolean {
  if (node.opType !== "Gather" || node.domain || attrInt(node, "axis", 0) !== 0) return false;
  const ref = ctx.graph.constant(node.input[0]);
  if (!ref || ctx.graph.constant(node.input[1]) || ctx.axesOf(node.input[1])) return false;
  const wdims = tensorDims(ref.tensor);
  const outDims = ctx.dims(node.output[0]);
  if (wdims.length !== 2 || !outDims || !isFloatType(ref.tensor.dataType ?? 0)) return false;
  const label = node.name || node.output[0];
  const out = new Factor(wdims[1], true, label);
  ctx.setAxes(
    node.output[0],
    outDims.map((d, i) => i === outDims.length - 1 ? [out] : [new Factor(d, false, label)]),
  );
  const weight = {
    use: { node, inputIndex: 0 },
    ref,
    axis: 1,
    factors: [out],
    role: "weight-out" as const,
    linear: node,
  };
  ctx.touchTensor(weight);
  ctx.trace.linears.push({ node, weight, out, input: [] });
  return true;
}

/** Runs the source rules; true when the node was fully handled. */
export function sourceRule(ctx: TraceContext, node: NodeProto): boolean {
  return convRule(ctx, node) || embeddingRule(ctx, node) || embedLayerNormRule(ctx, node);
}

/**
 * onnxruntime's EmbedLayerNormalization (the optimizer's BERT embeddings): word, position and
 * segment tables [*, H] gathered, summed and layer-normalised in one op. Its output (and the
 * sum before the norm) carries fresh channels of width H, sliced in every table and in gamma
 * and beta; normalised, so prunable only as the embedding width.
 */
function embedLayerNormRule(ctx: TraceContext, node: NodeProto): boolean {
  if (node.opType !== "EmbedLayerNormalization" || node.domain !== "com.microsoft") return false;
  const word = ctx.graph.constant(node.input[2]);
  const outDims = ctx.dims(node.output[0]);
  const wdims = word ? tensorDims(word.tensor) : undefined;
  if (!word || !outDims || wdims?.length !== 2) return false;
  const label = node.name || node.output[0];
  const out = new Factor(wdims[1], true, label);
  const axes = outDims.map((d, i) =>
    i === outDims.length - 1 ? [out] : [new Factor(d, false, label)]
  );
  ctx.setAxes(node.output[0], axes);
  if (node.output[2]) ctx.setAxes(node.output[2], axes);
  ctx.trace.normalized.push({ factors: [out], reason: `${nodeLabel(node)}: normalised axis` });
  const weight = {
    use: { node, inputIndex: 2 },
    ref: word,
    axis: 1,
    factors: [out],
    role: "weight-out" as const,
    linear: node,
  };
  ctx.touchTensor(weight);
  // Position and segment tables [*, H], gamma and beta [H].
  for (const [inputIndex, axis] of [[3, 1], [4, 1], [5, 0], [6, 0]]) {
    if (!node.input[inputIndex]) continue;
    const ref = ctx.graph.constant(node.input[inputIndex]);
    if (!ref) {
      out.block(`${nodeLabel(node)}: input ${inputIndex} is not a constant`);
      continue;
    }
    ctx.touchTensor({ use: { node, inputIndex }, ref, axis, factors: [out], role: "operand" });
  }
  ctx.trace.linears.push({ node, weight, out, input: [] });
  return true;
}
