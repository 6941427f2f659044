/**
 * Shapes inside the branches of `If` nodes. onnxruntime runs one branch and exposes none of its
 * tensors, and the static rules read one graph; so the model is probed as two plain graphs: one
 * with every If replaced by the nodes of its then-branch, one by those of its else-branch (each
 * branch output passed on to the If's output by an Identity). Names are unique across scopes
 * (`uniqueScopeNames`), so the two probes' shapes merge into one map; tensors outside the
 * branches take the then-branch probe's shapes.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { type GraphProto, ifBranches, type NodeProto, type TensorProto } from "../graph/graph.ts";

/** Whether the main graph has an If node with both branches. */
export function hasBranches(model: ModelProto): boolean {
  return (model.graph?.node ?? []).some((n) => ifBranches(n as NodeProto));
}

/** A shallow copy of the model in which every If runs branch `which` (0: then, 1: else). */
export function inlineBranches(model: ModelProto, which: 0 | 1): ModelProto {
  const graph = model.graph as GraphProto;
  const initializers: TensorProto[] = [];
  const inline = (nodes: NodeProto[]): NodeProto[] =>
    nodes.flatMap((node) => {
      const branches = ifBranches(node);
      if (!branches) return [node];
      const body = branches[which];
      initializers.push(...(body.initializer as TensorProto[]));
      const passOn = body.output.flatMap((o, i) =>
        node.output[i]
          ? [
            onnx.NodeProto.create({
              opType: "Identity",
              input: [o.name ?? ""],
              output: [node.output[i]],
            }),
          ]
          : []
      );
      return [...inline(body.node as NodeProto[]), ...passOn] as NodeProto[];
    });
  const node = inline(graph.node as NodeProto[]);
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...graph,
      node,
      initializer: [...graph.initializer, ...initializers],
    }),
  });
}
