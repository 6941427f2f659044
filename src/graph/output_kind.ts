/**
 * Whether a model's first output is a classifier's scores or an embedding. Both may be
 * [batch, width]; a classifier's come from a linear layer (logits, a softmax of them, or an
 * average of several heads' logits, as DeiT's distilled head), an embedding from pooling,
 * normalisation or a tanh (sentence embeddings, BERT's pooler). Classifiers are compared by KL and
 * scored on cross-entropy; embeddings by cosine.
 *
 * @module
 */
import { Graph, type GraphProto } from "./graph.ts";
import type { ModelProto } from "../onnx/proto.ts";

/** Layers whose output, as a graph output, is logits. */
const LINEAR = new Set(["Gemm", "MatMul", "FusedMatMul", "Conv"]);
/** Ops that keep what their first input is. */
const PASS = new Set([
  "Identity",
  "Reshape",
  "Flatten",
  "Squeeze",
  "Unsqueeze",
  "Cast",
  "Softmax",
  "LogSoftmax",
]);

/**
 * Whether the first output of `model`, of probed dims `dims`, holds one score per class per
 * sample: [batch, classes] with more than one class, computed from linear layers.
 *
 * @example isClassifierOutput(vit, [2, 1000]) // → true (its head); false for a pooled embedding
 */
export function isClassifierOutput(model: ModelProto, dims: number[]): boolean {
  if (dims.length !== 2 || !(dims[1] > 1)) return false;
  const output = model.graph?.output?.[0]?.name;
  if (!output) return false;
  const graph = new Graph(model.graph as GraphProto);
  const constant = (t: string) =>
    !!graph.initializer(t) || graph.producer(t)?.opType === "Constant";
  const seen = new Set<string>();
  const logits = (t: string): boolean => {
    if (seen.has(t)) return false;
    seen.add(t);
    const node = graph.producer(t);
    if (!node) return false;
    if (LINEAR.has(node.opType)) return true;
    if (PASS.has(node.opType)) return logits(node.input[0]);
    const inputs = node.input.filter((x) => x && !constant(x));
    // A bias, a sum or difference of logits; a scale by a constant (an average of heads).
    if (node.opType === "Add" || node.opType === "Sub") return inputs.every(logits);
    if (node.opType === "Mul") return inputs.length === 1 && logits(inputs[0]);
    if (node.opType === "Div") {
      return inputs.length === 1 && inputs[0] === node.input[0] && logits(inputs[0]);
    }
    return false;
  };
  return logits(output);
}
