/**
 * Quantized linear layers and quantized activations.
 *
 * A linear layer is also: a MatMul/Gemm whose weight is a constant seen through
 * DequantizeLinear (QDQ); MatMulInteger (dynamic quantization, its output scaled by a later Mul);
 * onnxruntime's fused DynamicQuantizeMatMul and MatMulIntegerToFloat; and the block-wise
 * MatMulNBits. Per-channel scales and zero points along the weight's output (or input) axis
 * are sliced with those channels; per-tensor ones have nothing to slice. Activations pass
 * through QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear with their channels (their
 * per-tensor scales are scalars; DynamicQuantizeLinear's range always holds 0, so zeroed
 * channels do not move it).
 *
 * @module
 */
import type { ConstantRef, Graph, NodeProto, Use } from "../../graph/graph.ts";
import { attrInt } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import { DataType } from "../../onnx/proto.ts";
import { Factor } from "../factors.ts";
import type { Dequantization } from "../quantization.ts";
import type { Linear, Rule, TraceContext } from "../trace.ts";
import { nodeLabel } from "../trace.ts";
import { passThrough } from "./elementwise.ts";

/** A quantized constant behind a DequantizeLinear node, as a layer's weight or bias. */
export interface DequantizedConstant {
  ref: ConstantRef;
  /** The DequantizeLinear input that reads the stored integers. */
  use: Use;
  quant: Dequantization;
}

function isOp(node: NodeProto | undefined, op: string, domains = ["", "com.microsoft"]) {
  return !!node && node.opType === op && domains.includes(node.domain ?? "");
}

function numel(ref: ConstantRef): number {
  return tensorDims(ref.tensor).reduce((a, b) => a * b, 1);
}

/** The constant a DequantizeLinear output is computed from, with its scale and zero point. */
export function dequantizedConstant(graph: Graph, name: string): DequantizedConstant | undefined {
  const node = graph.producer(name);
  if (!isOp(node, "DequantizeLinear")) return undefined;
  const ref = graph.constant(node!.input[0]);
  const scale = graph.constant(node!.input[1]);
  const zeroPoint = node!.input[2] ? graph.constant(node!.input[2]) : undefined;
  if (!ref || !scale || (node!.input[2] && !zeroPoint)) return undefined;
  // Blocked DequantizeLinear (opset 21 block_size) is not read here: the layer stays float.
  if (attrInt(node!, "block_size", 0) > 0) return undefined;
  const rank = tensorDims(ref.tensor).length;
  const perChannel = numel(scale) > 1 || (zeroPoint && numel(zeroPoint) > 1);
  let axis = attrInt(node!, "axis", 1);
  if (axis < 0) axis += rank;
  return {
    ref,
    use: { node: node!, inputIndex: 0 },
    quant: { scale, zeroPoint, axis: perChannel ? axis : null },
  };
}

/**
 * Records the touches of a dequantized weight's per-channel scale and zero point: along the
 * weight's output axis they go with the output channels, along its input axis with the input's.
 */
export function touchQuantParams(
  ctx: TraceContext,
  quant: Dequantization,
  uses: { scale?: Use; zeroPoint?: Use },
  axisFactors: (axis: number) => Factor[] | undefined,
): void {
  if (quant.axis === null) return;
  const factors = axisFactors(quant.axis);
  if (!factors) return;
  for (const key of ["scale", "zeroPoint"] as const) {
    const ref = quant[key], use = uses[key];
    if (!ref || !use || numel(ref) === 1) continue;
    ctx.touchTensor({ use, ref, axis: 0, factors, role: "operand" });
  }
}

/** Bias or per-output-channel constant input of a fused quantized layer. */
function touchPerOutput(ctx: TraceContext, node: NodeProto, index: number, out: Factor) {
  if (!node.input[index]) return;
  const ref = ctx.graph.constant(node.input[index]);
  if (!ref) return out.block(`${nodeLabel(node)}: input ${index} is not a constant`);
  if (numel(ref) === 1) return;
  const dims = tensorDims(ref.tensor);
  ctx.touchTensor({
    use: { node, inputIndex: index },
    ref,
    axis: dims.length - 1,
    factors: [out],
    role: "operand",
  });
}

/** Output axes of a layer [..., N] whose leading axes follow its input's. */
function outputAxes(ctx: TraceContext, node: NodeProto, out: Factor): Factor[][] | undefined {
  const outDims = ctx.dims(node.output[0]);
  if (!outDims) return undefined;
  const inAxes = ctx.axesOf(node.input[0]);
  const inDims = ctx.dims(node.input[0]);
  const label = node.name || node.output[0];
  return outDims.map((d, i) => {
    if (i === outDims.length - 1) return [out];
    const j = i - (outDims.length - (inDims?.length ?? 0));
    return inAxes && inDims && j >= 0 && inDims[j] === d
      ? inAxes[j]
      : [new Factor(d, false, label)];
  });
}

/**
 * The scale a MatMulInteger's int32 output is multiplied by: Cast → Mul(·, s), where s is a
 * constant or a product of the activation's scale and a constant (the weight's scale).
 */
function outputScale(graph: Graph, node: NodeProto): ConstantRef | undefined {
  let name = node.output[0];
  for (let depth = 0; depth < 3; depth++) {
    const uses = graph.consumers(name);
    if (uses.length !== 1) return undefined;
    const next = uses[0].node;
    if (isOp(next, "Cast", [""])) {
      name = next.output[0];
      continue;
    }
    if (!isOp(next, "Mul", [""])) return undefined;
    const other = next.input[1 - uses[0].inputIndex];
    const direct = graph.constant(other);
    if (direct) return direct;
    const product = graph.producer(other);
    if (!isOp(product, "Mul", [""])) return undefined;
    const consts = product!.input.map((i) => graph.constant(i)).filter((c) => c);
    return consts.length === 1 ? consts[0] : undefined;
  }
  return undefined;
}

interface QuantizedInputs {
  weight: number;
  scale?: number;
  zeroPoint?: number;
  bias?: number;
}

/**
 * MatMulInteger, DynamicQuantizeMatMul, MatMulIntegerToFloat: a constant integer weight
 * [K, N] (per-tensor or per-column scale and zero point).
 */
function integerMatMul(ctx: TraceContext, node: NodeProto, inputs: QuantizedInputs): boolean {
  const graph = ctx.graph;
  const ref = graph.constant(node.input[inputs.weight]);
  if (!ref || graph.constant(node.input[0]) || tensorDims(ref.tensor).length !== 2) return false;
  const label = nodeLabel(node);
  const [, n] = tensorDims(ref.tensor);
  const scale = inputs.scale !== undefined
    ? graph.constant(node.input[inputs.scale])
    : outputScale(graph, node);
  const zi = inputs.zeroPoint;
  const zeroPoint = zi !== undefined && node.input[zi] ? graph.constant(node.input[zi]) : undefined;
  const out = new Factor(n, true, node.name || node.output[0]);
  const axes = outputAxes(ctx, node, out);
  if (!axes) return true;
  ctx.setAxes(node.output[0], axes);
  if (zi !== undefined && node.input[zi] && !zeroPoint) {
    out.block(`${label}: zero point is not a constant`);
  }
  if (inputs.scale !== undefined && !scale) out.block(`${label}: scale is not a constant`);
  const perColumn = (scale && numel(scale) > 1) || (zeroPoint && numel(zeroPoint) > 1);
  const quant: Dequantization = { scale, zeroPoint, axis: perColumn ? 1 : null };
  const use = { node, inputIndex: inputs.weight };
  const weight = { use, ref, axis: 1, factors: [out], role: "weight-out" as const, linear: node };
  ctx.touchTensor({ ...weight, quant });
  const inAxes = ctx.axesOf(node.input[0]);
  const input = inAxes ? inAxes[inAxes.length - 1] : [];
  if (inAxes) {
    ctx.touchTensor({ use, ref, axis: 0, factors: input, role: "weight-in", linear: node, quant });
  }
  // The weight's scale of MatMulInteger is sliced where its product meets the output.
  if (inputs.scale !== undefined) touchPerOutput(ctx, node, inputs.scale, out);
  if (zi !== undefined) touchPerOutput(ctx, node, zi, out);
  if (inputs.bias !== undefined) touchPerOutput(ctx, node, inputs.bias, out);
  const linear: Linear = { node, weight: { ...weight, quant }, out, input };
  ctx.trace.linears.push(linear);
  return true;
}

/**
 * MatMulNBits(A, B[N, blocks, blob], scales, zero_points?, g_idx?, bias?): output channels are
 * whole rows of every tensor; input channels are cut at whole blocks, or re-quantized.
 */
function matMulNBits(ctx: TraceContext, node: NodeProto): boolean {
  const graph = ctx.graph;
  const ref = graph.constant(node.input[1]);
  if (!ref || tensorDims(ref.tensor).length !== 3) return false;
  const label = nodeLabel(node);
  const k = attrInt(node, "K", 0), n = attrInt(node, "N", 0);
  const bits = attrInt(node, "bits", 4), blockSize = attrInt(node, "block_size", 0);
  const out = new Factor(n, true, node.name || node.output[0]);
  const axes = outputAxes(ctx, node, out);
  if (!axes) return true;
  ctx.setAxes(node.output[0], axes);
  const scales = graph.constant(node.input[2]);
  const zeroPoints = node.input[3] ? graph.constant(node.input[3]) : undefined;
  const inAxes = ctx.axesOf(node.input[0]);
  const block = (why: string) => {
    out.block(`${label}: ${why}`);
    if (inAxes) ctx.blockInputs(node, `${label}: ${why}`);
  };
  if (!scales) return block("scales are not a constant"), true;
  if (![2, 4, 8].includes(bits) || blockSize < 1) {
    return block(`${bits}-bit blocks of ${blockSize} are not supported`), true;
  }
  if (node.input[3] && (!zeroPoints || zeroPoints.tensor.dataType !== DataType.UINT8)) {
    return block("zero points are not packed uint8 constants"), true;
  }
  if (node.input[4]) return block("g_idx (reordered input channels) is not supported"), true;
  const quant: Dequantization = {
    axis: null,
    packed: { node, bits, blockSize, k, n, scales, zeroPoints },
  };
  const use = { node, inputIndex: 1 };
  const weight = { use, ref, axis: 0, factors: [out], role: "weight-out" as const, linear: node };
  ctx.touchTensor({ ...weight, quant });
  const input = inAxes ? inAxes[inAxes.length - 1] : [];
  if (inAxes) {
    // Axis 1 stands for K here (the packed tensor's blocks): the rewrite reads `packed`.
    ctx.touchTensor({ use, ref, axis: 1, factors: input, role: "weight-in", linear: node, quant });
  }
  touchPerOutput(ctx, node, 5, out);
  ctx.trace.linears.push({ node, weight: { ...weight, quant }, out, input });
  return true;
}

/**
 * A runtime scalar times a constant vector (the activation scale times a per-channel weight
 * scale): the product gets tracked axes, plain for now, so that the constant is sliced with
 * the channels it later multiplies.
 */
function scaledConstant(ctx: TraceContext, node: NodeProto): boolean {
  if (!isOp(node, "Mul", [""]) || node.input.some((i) => ctx.axesOf(i))) return false;
  const consts = node.input.map((i) => ctx.graph.constant(i));
  const vector = consts.findIndex((c) => c && numel(c) > 1);
  if (vector < 0) return false;
  const scalars = node.input.every((name, i) =>
    i === vector || (ctx.dims(name) ?? [2]).every((d) => d === 1)
  );
  const outDims = ctx.dims(node.output[0]);
  const ref = consts[vector]!;
  const dims = tensorDims(ref.tensor);
  if (!scalars || !outDims || outDims.join() !== dims.join()) return false;
  const label = node.name || node.output[0];
  const axes = dims.map((d) => [new Factor(d, false, label)]);
  ctx.setAxes(node.output[0], axes);
  axes.forEach((factors, axis) => {
    if (dims[axis] > 1) {
      ctx.touchTensor({ use: { node, inputIndex: vector }, ref, axis, factors, role: "operand" });
    }
  });
  return true;
}

/** Source rules for quantized layers; true when the node was handled. */
export function quantizedSource(ctx: TraceContext, node: NodeProto): boolean {
  const ms = node.domain === "com.microsoft";
  if (node.opType === "MatMulInteger" && !node.domain) {
    return integerMatMul(ctx, node, { weight: 1, zeroPoint: 3 });
  }
  if (ms && node.opType === "DynamicQuantizeMatMul") {
    return integerMatMul(ctx, node, { weight: 1, scale: 2, zeroPoint: 3, bias: 4 });
  }
  if (ms && node.opType === "MatMulIntegerToFloat") {
    return integerMatMul(ctx, node, { weight: 1, scale: 3, zeroPoint: 5, bias: 6 });
  }
  if (ms && node.opType === "MatMulNBits") return matMulNBits(ctx, node);
  return scaledConstant(ctx, node);
}

/** Quantize and dequantize activations: channels pass through (scalar scales only). */
export function quantizedRules(): Record<string, Rule> {
  const rules: Record<string, Rule> = {};
  for (const op of ["QuantizeLinear", "DequantizeLinear"]) {
    rules[op] = passThrough;
    rules[`com.microsoft:${op}`] = passThrough;
  }
  rules["DynamicQuantizeLinear"] = passThrough;
  return rules;
}
