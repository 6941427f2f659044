/**
 * Linear layers (MatMul or Gemm with a constant weight) are where channels are born: the output
 * gets a fresh channel factor, and the weight's input axis is coupled with the input channels.
 *
 * @module
 */
import type { NodeProto } from "../../graph/graph.ts";
import type { ConstantRef, Graph, Use } from "../../graph/graph.ts";
import { attrInt } from "../../graph/graph.ts";
import { tensorDims } from "../../onnx/tensor.ts";
import { Factor } from "../factors.ts";
import type { Linear, TraceContext } from "../trace.ts";
import { nodeLabel } from "../trace.ts";
import type { Dequantization } from "../quantization.ts";
import { dequantizedConstant, touchQuantParams } from "./quantized.ts";

/** A constant weight seen through Identity, 2-D Transpose and DequantizeLinear nodes. */
interface WeightSource {
  ref: ConstantRef;
  /** True when the stored tensor is the transpose of what the node consumes. */
  transposed: boolean;
  /** The use that reads the constant: a copy made on write is wired there (under the
   * Transpose, when there is one, so the layout stays right). */
  use?: Use;
  /** The stored tensor holds quantized integers (QDQ). */
  quant?: Dequantization;
}

function weightSource(graph: Graph, name: string): WeightSource | undefined {
  const ref = graph.constant(name);
  if (ref) return { ref, transposed: false };
  const dq = dequantizedConstant(graph, name);
  if (dq) return { ref: dq.ref, transposed: false, use: dq.use, quant: dq.quant };
  const node = graph.producer(name);
  if (node?.opType === "Transpose") {
    const inner = weightSource(graph, node.input[0]);
    if (inner && tensorDims(inner.ref.tensor).length === 2) {
      return {
        ...inner,
        transposed: !inner.transposed,
        use: inner.use ?? { node, inputIndex: 0 },
      };
    }
  }
  return undefined;
}

/** Recognises a linear layer; returns true when the node was handled. */
export function linearRule(ctx: TraceContext, node: NodeProto): boolean {
  const isMatMul = node.opType === "MatMul" && !node.domain;
  const isGemm = node.opType === "Gemm" && !node.domain;
  if (!isMatMul && !isGemm) return false;
  const graph = ctx.graph;
  if (graph.constant(node.input[0])) return false;
  const w = weightSource(graph, node.input[1]);
  if (!w) return false;
  const wdims = tensorDims(w.ref.tensor);
  if (wdims.length !== 2) return false;
  if (isGemm && attrInt(node, "transA", 0) !== 0) {
    ctx.blockInputs(node, `${nodeLabel(node)}: Gemm with transA is not supported`);
    return true;
  }
  // Axis of the stored weight that indexes input features (K) and output features (N).
  let kAxis = isGemm && attrInt(node, "transB", 0) === 1 ? 1 : 0;
  if (w.transposed) kAxis = 1 - kAxis;
  const nAxis = 1 - kAxis;
  const outName = node.output[0];
  const outDims = ctx.dims(outName);
  if (!outDims) return true;
  const label = node.name || outName;
  const out = new Factor(wdims[nAxis], true, label);
  const inAxes = ctx.axesOf(node.input[0]);
  const inDims = ctx.dims(node.input[0]);
  // Leading axes pass through the weight unchanged (a channel factor there stays tracked).
  const axes = outDims.map((d, i) => {
    if (i === outDims.length - 1) return [out];
    const j = i - (outDims.length - (inDims?.length ?? 0));
    return inAxes && inDims && j >= 0 && inDims[j] === d
      ? inAxes[j]
      : [new Factor(d, false, label)];
  });
  ctx.setAxes(outName, axes);
  const use = w.use ?? { node, inputIndex: 1 };
  const weightOut = {
    use,
    ref: w.ref,
    axis: nAxis,
    factors: [out],
    role: "weight-out" as const,
    linear: node,
    ...(w.quant ? { quant: w.quant } : {}),
  };
  ctx.touchTensor(weightOut);
  const input = inAxes ? inAxes[inAxes.length - 1] : [];
  if (inAxes) {
    ctx.touchTensor({
      use,
      ref: w.ref,
      axis: kAxis,
      factors: input,
      role: "weight-in",
      linear: node,
      ...(w.quant ? { quant: w.quant } : {}),
    });
    // The input's other axes do not reach the output through the weight.
  }
  if (w.quant) {
    const dq = w.use!.node;
    touchQuantParams(
      ctx,
      w.quant,
      { scale: { node: dq, inputIndex: 1 }, zeroPoint: { node: dq, inputIndex: 2 } },
      (axis) => axis === nAxis ? [out] : inAxes ? input : undefined,
    );
  }
  if (isGemm && node.input[2]) {
    const dqBias = dequantizedConstant(graph, node.input[2]);
    const bias = graph.constant(node.input[2]) ?? dqBias?.ref;
    if (dqBias?.quant.axis === 0) {
      touchQuantParams(ctx, dqBias.quant, {
        scale: { node: dqBias.use.node, inputIndex: 1 },
        zeroPoint: { node: dqBias.use.node, inputIndex: 2 },
      }, () => [out]);
    }
    if (bias) {
      const bdims = tensorDims(bias.tensor);
      if (bdims.length > 0 && bdims[bdims.length - 1] === wdims[nAxis]) {
        ctx.touchTensor({
          use: dqBias?.use ?? { node, inputIndex: 2 },
          ref: bias,
          axis: bdims.length - 1,
          factors: [out],
          role: "operand",
          ...(dqBias ? { quant: dqBias.quant } : {}),
        });
      }
    } else out.block(`${nodeLabel(node)}: bias is not a constant`);
  }
  const linear: Linear = { node, weight: weightOut, out, input };
  ctx.trace.linears.push(linear);
  return true;
}
