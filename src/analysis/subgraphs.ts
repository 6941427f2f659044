/**
 * Models whose layers sit inside control flow the trace does not follow: the body of a `Loop` or
 * `Scan` runs many times over carried state (the branches of an `If` are traced, see
 * `branches.ts`). Such a model is refused with the node named instead of "nothing found".
 *
 * @module
 */
import { type Graph, ifBranches, type NodeProto } from "../graph/graph.ts";

type Body = { node?: { opType?: string | null; attribute?: unknown[] | null }[] | null };

const LAYERS = new Set(["MatMul", "Gemm", "Conv"]);

function holdsLayers(g: Body, depth = 0): boolean {
  for (const n of g.node ?? []) {
    if (LAYERS.has(n.opType ?? "")) return true;
    for (const a of (n.attribute ?? []) as { g?: Body; graphs?: Body[] }[]) {
      if (depth < 4 && [a.g, ...(a.graphs ?? [])].some((s) => s && holdsLayers(s, depth + 1))) {
        return true;
      }
    }
  }
  return false;
}

/** The first node whose untraced subgraphs (Loop/Scan bodies, at any depth of If branches)
 * hold linear layers, or undefined. */
export function layersInSubgraph(graph: Graph): NodeProto | undefined {
  return graph.allNodes().find((node) =>
    !ifBranches(node) &&
    node.attribute.some((a) => [a.g, ...(a.graphs ?? [])].some((s) => s && holdsLayers(s as Body)))
  );
}

/** Why nothing was found, when the layers are inside a subgraph ("" otherwise). */
export function subgraphHint(graph: Graph): string {
  const node = layersInSubgraph(graph);
  if (!node) return "";
  return `: the layers are inside the body of ${node.opType} node "${
    node.name || node.output[0]
  }", which runs over carried state and which this version does not trace`;
}
