/**
 * The block outputs that hidden-state matching compares: for each transformer block (an MLP found
 * by the pruning analysis), the residual stream after it — the residual Add after the MLP's
 * output layer, or the LayerNormalization that alone reads it (post-norm blocks such as BERT's).
 * Pruning keeps the tensor names, so the same names address the original and the pruned model.
 *
 * @module
 */
import { Graph, type GraphProto, type NodeProto } from "../graph/graph.ts";
import type { ModelProto } from "../onnx/proto.ts";
import type { ProbedTensor } from "../runtime/probe.ts";
import { traceGraph } from "../analysis/trace.ts";
import { findGroups } from "../analysis/groups.ts";

/** Names of the block outputs of `model` in graph order, `output` (the distilled output) left
 * out. `shapes`: the model's probed tensors. */
export function blockOutputs(
  model: ModelProto,
  shapes: Map<string, ProbedTensor>,
  output: string,
): string[] {
  const graph = new Graph(model.graph as GraphProto);
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const { groups } = findGroups(traceGraph(graph, shapes, Number(opset?.version ?? 17)));
  const order = new Map(graph.nodes.map((n, i) => [n, i]));
  const found: string[] = [];
  for (const group of groups) {
    if (group.kind !== "mlp") continue;
    // The MLP's output layer: its last linear in graph order.
    const last = group.linears.reduce((a, b) => (order.get(b)! > order.get(a)! ? b : a));
    const after = residualAfter(graph, last.output[0]);
    if (after && after !== output && !found.includes(after)) found.push(after);
  }
  return found.sort((a, b) => order.get(graph.producer(a)!)! - order.get(graph.producer(b)!)!);
}

/** The residual stream after `tensor`: the first Add downstream that adds a computed tensor
 * (not a bias), or the LayerNormalization that is that Add's only reader. */
function residualAfter(graph: Graph, tensor: string): string | undefined {
  let at = tensor;
  for (let hop = 0; hop < 4; hop++) {
    const uses = graph.consumers(at);
    if (uses.length !== 1) return undefined;
    const node: NodeProto = uses[0].node;
    if (node.opType === "Add") {
      const other = node.input[1 - uses[0].inputIndex];
      if (other && !graph.constant(other)) {
        const readers = graph.consumers(node.output[0]);
        return readers.length === 1 && readers[0].node.opType === "LayerNormalization"
          ? readers[0].node.output[0]
          : node.output[0];
      }
    } else if (!["Reshape", "Transpose", "Cast", "Identity", "Dropout"].includes(node.opType)) {
      return undefined;
    }
    at = node.output[0];
  }
  return undefined;
}
