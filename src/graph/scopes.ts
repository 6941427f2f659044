/**
 * One name per tensor across the whole model. ONNX lets the bodies of control-flow nodes reuse
 * names: the two branches of a merged decoder's `If` are two exports of the same decoder and
 * define the same tensor and node names. The analysis follows both branches and keys what it
 * learns by tensor name, so names defined inside a body that are defined elsewhere too are
 * renamed first (uses inside the body follow, by ONNX's scoping rules). What the model computes
 * does not change.
 *
 * @module
 */
import type { GraphProto, NodeProto } from "./graph.ts";

type Scope = Map<string, string>;

function bodies(node: NodeProto): [string, GraphProto][] {
  const out: [string, GraphProto][] = [];
  for (const a of node.attribute ?? []) {
    if (a.g) out.push([a.name ?? "body", a.g as GraphProto]);
    for (const g of a.graphs ?? []) out.push([a.name ?? "body", g as GraphProto]);
  }
  return out;
}

/** Names a graph defines: inputs, initializers, node outputs. */
function definitions(g: GraphProto): string[] {
  const names = [
    ...(g.input ?? []).map((v) => v.name ?? ""),
    ...(g.initializer ?? []).map((t) => t.name ?? ""),
  ];
  for (const n of g.node ?? []) names.push(...(n.output ?? []));
  return names.filter((n) => n);
}

/**
 * Renames, in place, the tensors and nodes defined inside subgraphs whose names are also
 * defined in another scope (an outer graph or a sibling body). Returns how many names changed.
 */
export function uniqueScopeNames(graph: GraphProto): number {
  const taken = new Set(definitions(graph));
  const nodeNames = new Set<string>();
  for (const n of graph.node ?? []) if (n.name) nodeNames.add(n.name);
  let renamed = 0;
  // Suffixed with the body's attribute ("…_then_branch"): exporters' own names end in "_1".
  let suffix = "";
  const fresh = (name: string, used: Set<string>) => {
    let next = `${name}_${suffix}`;
    for (let i = 1; used.has(next); i++) next = `${name}_${suffix}_${i}`;
    used.add(next);
    return next;
  };
  const resolve = (stack: Scope[], name: string) => {
    for (let i = stack.length - 1; i >= 0; i--) {
      const n = stack[i].get(name);
      if (n !== undefined) return n;
    }
    return name;
  };
  const walkNodes = (g: GraphProto, stack: Scope[]) => {
    for (const node of g.node ?? []) {
      for (const [attribute, body] of bodies(node as NodeProto)) {
        suffix = attribute;
        walkBody(body, stack);
      }
    }
  };
  const walkBody = (g: GraphProto, outer: Scope[]) => {
    const scope: Scope = new Map();
    for (const name of definitions(g)) {
      if (scope.has(name)) continue;
      const next = taken.has(name) ? fresh(name, taken) : (taken.add(name), name);
      if (next !== name) renamed++;
      scope.set(name, next);
    }
    const stack = [...outer, scope];
    for (const v of g.input ?? []) v.name = resolve(stack, v.name ?? "");
    for (const t of g.initializer ?? []) t.name = resolve(stack, t.name ?? "");
    for (const node of g.node ?? []) {
      node.input = (node.input ?? []).map((n) => (n ? resolve(stack, n) : n));
      node.output = (node.output ?? []).map((n) => (n ? resolve(stack, n) : n));
      if (node.name) {
        const name = nodeNames.has(node.name) ? fresh(node.name, nodeNames) : node.name;
        nodeNames.add(name);
        node.name = name;
      }
    }
    for (const v of [...(g.output ?? []), ...(g.valueInfo ?? [])]) {
      v.name = resolve(stack, v.name ?? "");
    }
    walkNodes(g, stack);
  };
  walkNodes(graph, []);
  return renamed;
}
