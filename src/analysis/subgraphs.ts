/**
 * Models whose layers sit inside control flow: a merged decoder (Optimum) holds the whole
 * decoder twice, as the two branches of an `If` on `use_cache_branch`. The trace follows the
 * main graph only, so such a model is refused with the node named instead of "nothing found".
 *
 * @module
 */
import type { Graph, NodeProto } from "../graph/graph.ts";

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

/** The first node of the main graph whose subgraphs (If branches, Loop/Scan bodies) hold
 * linear layers, or undefined. */
export function layersInSubgraph(graph: Graph): NodeProto | undefined {
  return graph.nodes.find((node) =>
    node.attribute.some((a) => [a.g, ...(a.graphs ?? [])].some((s) => s && holdsLayers(s as Body)))
  );
}

/** Why nothing was found, when the layers are inside a subgraph ("" otherwise). */
export function subgraphHint(graph: Graph): string {
  const node = layersInSubgraph(graph);
  if (!node) return "";
  return `: the layers are inside the subgraphs of ${node.opType} node "${
    node.name || node.output[0]
  }" (a merged decoder holds its no-cache and cache graphs as the two branches of an If), ` +
    `which this version does not trace; prune the decoder exported with past, not merged`;
}
