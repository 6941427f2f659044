/**
 * When the onnxruntime load check is left out. Loading a graph costs onnxruntime more than
 * linear time in its size on some shapes of graph (long chains of nodes sharing a constant, a
 * million tiny initializers: minutes and gigabytes), and a load cannot be interrupted once
 * started; above this size the shapes, worked out from the graph by the tool itself, are the
 * check, and the report says so. `verifyRun` still runs the model, whatever its size.
 *
 * @module
 */
import type { GraphProto, ModelProto } from "../onnx/proto.ts";

/** Nodes plus initializers (in every graph) above which the load check is left out. */
export const LOAD_CHECK_LIMIT = 10_000;

function size(graph: GraphProto): number {
  let n = 0;
  const stack = [graph];
  while (stack.length) {
    const g = stack.pop()!;
    n += (g.node?.length ?? 0) + (g.initializer?.length ?? 0);
    for (const node of g.node ?? []) {
      for (const a of node.attribute ?? []) {
        if (a.g) stack.push(a.g);
        for (const sub of a.graphs ?? []) stack.push(sub);
      }
    }
  }
  return n;
}

/** A note saying why the load check is left out for this model, or undefined to run it. */
export function loadCheckSkipped(model: ModelProto): string | undefined {
  const n = model.graph ? size(model.graph) : 0;
  if (n <= LOAD_CHECK_LIMIT) return undefined;
  return `onnxruntime load check left out: the graph has ${n} nodes and initializers ` +
    `(more than ${LOAD_CHECK_LIMIT}, where loading can take minutes); its shapes were checked ` +
    `from the graph. Use --verify-run to run it in onnxruntime.`;
}
