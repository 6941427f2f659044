/**
 * A mutable view of an ONNX graph: who produces and who consumes each tensor, which tensors are
 * constants, and copy-on-write replacement of constant inputs.
 *
 * @module
 */
import { onnx, type TensorProto as ITensorProto } from "../onnx/proto.ts";

/** Decoded protobuf messages: repeated fields are arrays, scalars have defaults. */
export type NodeProto = InstanceType<typeof onnx.NodeProto>;
export type TensorProto = ITensorProto;
export type GraphProto = InstanceType<typeof onnx.GraphProto>;
import { setTensorRawBytes, tensorDims, tensorRawBytes, tensorToNumbers } from "../onnx/tensor.ts";

/** One use of a tensor: `node.input[inputIndex]`. */
export interface Use {
  node: NodeProto;
  inputIndex: number;
}

/** A subgraph of a node (an If branch, a Loop or Scan body). */
export interface Body {
  owner: NodeProto;
  /** The attribute that holds it ("then_branch", "else_branch", "body"). */
  attribute: string;
  proto: GraphProto;
  nodes: NodeProto[];
}

/**
 * Graph with producer/consumer maps. `nodes` are the main graph's; the nodes of subgraphs are
 * indexed too (producers, consumers, constants): names are unique across scopes (see
 * `uniqueScopeNames`), and a body reads outer tensors by name.
 */
export class Graph {
  readonly proto: GraphProto;
  readonly nodes: NodeProto[];
  /** Every subgraph, outer ones first. */
  readonly bodies: Body[] = [];
  readonly #producer = new Map<string, NodeProto>();
  readonly #consumers = new Map<string, Use[]>();
  readonly #initializers = new Map<string, TensorProto>();
  readonly #names = new Set<string>();
  /** The node list each node sits in (the main graph's or a body's). */
  readonly #listOf = new Map<NodeProto, NodeProto[]>();
  /** Outputs of bodies: which output of the owner node each one becomes. */
  readonly #bodyOutputs = new Map<string, { owner: NodeProto; index: number }>();
  readonly outputNames: Set<string>;

  constructor(graph: GraphProto) {
    this.proto = graph;
    this.nodes = graph.node as NodeProto[];
    this.outputNames = new Set(graph.output.map((o) => o.name as string));
    this.#index(graph);
  }

  #index(graph: GraphProto): void {
    for (const t of graph.initializer as TensorProto[]) {
      this.#initializers.set(t.name ?? "", t);
      this.#names.add(t.name ?? "");
    }
    for (const v of graph.input) this.#names.add(v.name as string);
    const nodes = graph.node as NodeProto[];
    for (const node of nodes) {
      this.#listOf.set(node, nodes);
      if (node.name) this.#names.add(node.name);
      for (const out of node.output) {
        if (out) this.#producer.set(out, node);
        this.#names.add(out);
      }
      node.input.forEach((name, inputIndex) => {
        if (!name) return;
        let uses = this.#consumers.get(name);
        if (!uses) this.#consumers.set(name, uses = []);
        uses.push({ node, inputIndex });
      });
    }
    for (const owner of nodes) {
      for (const a of owner.attribute) {
        for (const sub of [a.g, ...(a.graphs ?? [])]) {
          if (!sub) continue;
          const proto = sub as GraphProto;
          this.bodies.push({
            owner,
            attribute: a.name ?? "",
            proto,
            nodes: proto.node as NodeProto[],
          });
          // An If's outputs are its branch's outputs, one for one (a Loop's are not).
          if (owner.opType === "If") {
            proto.output.forEach((o, index) =>
              this.#bodyOutputs.set(o.name ?? "", { owner, index })
            );
          }
          this.#index(proto);
        }
      }
    }
  }

  /** The owner node's output that a body output becomes (If branches), or undefined. */
  bodyOutput(name: string): { owner: NodeProto; index: number } | undefined {
    return this.#bodyOutputs.get(name);
  }

  /** Every node, a body's nodes just before the node that holds the body (trace order). */
  allNodes(): NodeProto[] {
    const out: NodeProto[] = [];
    const visit = (nodes: NodeProto[]) => {
      for (const node of nodes) {
        for (const b of this.bodies) if (b.owner === node) visit(b.nodes);
        out.push(node);
      }
    };
    visit(this.nodes);
    return out;
  }

  producer(tensor: string): NodeProto | undefined {
    return this.#producer.get(tensor);
  }

  consumers(tensor: string): Use[] {
    return this.#consumers.get(tensor) ?? [];
  }

  initializer(name: string): TensorProto | undefined {
    return this.#initializers.get(name);
  }

  isGraphInput(name: string): boolean {
    return this.proto.input.some((v) => v.name === name) && !this.#initializers.has(name);
  }

  /**
   * The constant behind a tensor name: an initializer, a Constant node's value, or either of
   * those seen through Identity nodes. Returns where it is stored so it can be rewritten.
   */
  constant(name: string): ConstantRef | undefined {
    // A loop, not recursion: a chain of 200k Identity nodes is a valid graph. A cycle is not,
    // and ends the walk after as many steps as there are nodes.
    for (let steps = 0; steps <= this.#producer.size; steps++) {
      const init = this.#initializers.get(name);
      if (init && !this.isGraphInputOverride(name)) {
        return { tensor: init, home: "initializer", name };
      }
      const node = this.#producer.get(name);
      if (!node) return undefined;
      if (node.opType === "Identity") {
        name = node.input[0];
        continue;
      }
      if (node.opType === "Constant") {
        const tensor = constantNodeTensor(node);
        return tensor ? { tensor, home: "constant-node", name, node } : undefined;
      }
      return undefined;
    }
    return undefined;
  }

  /** An initializer that is also listed as a graph input can be overridden at run time. */
  private isGraphInputOverride(name: string): boolean {
    return this.proto.input.some((v) => v.name === name);
  }

  /** Integer values of a constant tensor (shape targets, axes, split sizes). */
  constantInts(name: string): number[] | undefined {
    const c = this.constant(name);
    if (!c) return undefined;
    try {
      return tensorToNumbers(c.tensor);
    } catch {
      // int64 sentinels such as INT64_MAX ("to the end") do not fit a JS number: clamp them.
      const bytes = tensorRawBytes(c.tensor);
      if (c.tensor.dataType !== 7) return undefined;
      const view = new BigInt64Array(bytes.slice().buffer);
      const limit = BigInt(Number.MAX_SAFE_INTEGER);
      return Array.from(view, (v) => Number(v > limit ? limit : v < -limit ? -limit : v));
    }
  }

  /** A name not used anywhere in the graph yet. */
  uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.#names.has(name); i++) name = `${base}_${i}`;
    this.#names.add(name);
    return name;
  }

  /** Adds an initializer and returns its name. */
  addInitializer(tensor: TensorProto): string {
    tensor.name = this.uniqueName(tensor.name || "pruned_const");
    this.proto.initializer.push(tensor);
    this.#initializers.set(tensor.name, tensor);
    return tensor.name;
  }

  /** A copy of `node` with fresh output names, inserted just before `before`. */
  cloneBefore(node: NodeProto, before: NodeProto): NodeProto {
    const clone = onnx.NodeProto.decode(onnx.NodeProto.encode(node).finish());
    if (clone.name) clone.name = this.uniqueName(`${clone.name}_pruned`);
    clone.output = clone.output.map((o) => o ? this.uniqueName(`${o}_pruned`) : o);
    const list = this.#listOf.get(before) ?? this.nodes;
    list.splice(list.indexOf(before), 0, clone);
    this.#listOf.set(clone, list);
    for (const o of clone.output) if (o) this.#producer.set(o, clone);
    clone.input.forEach((name, inputIndex) => {
      if (!name) return;
      let uses = this.#consumers.get(name);
      if (!uses) this.#consumers.set(name, uses = []);
      uses.push({ node: clone, inputIndex });
    });
    return clone;
  }

  /**
   * Makes the chain of nodes walked by `path` (from a consumer down to a constant) private to
   * that consumer: from the first node whose output other nodes read too, the rest of the chain
   * is cloned. Returns the path as it is now (uses on the clones).
   */
  privatize(path: Use[]): Use[] {
    const out: Use[] = [path[0]];
    let shared = false;
    for (let j = 1; j < path.length; j++) {
      const use = path[j];
      const output = use.node.output[0];
      shared ||= this.consumers(output).length > 1 || this.outputNames.has(output) ||
        this.#bodyOutputs.has(output);
      if (!shared) {
        out.push(use);
        continue;
      }
      const previous = out[j - 1];
      const clone = this.cloneBefore(use.node, previous.node);
      this.rewire(previous, clone.output[0]);
      out.push({ node: clone, inputIndex: use.inputIndex });
    }
    return out;
  }

  /** Points `use` at another tensor and keeps the consumer map current. */
  rewire(use: Use, newName: string): void {
    const old = use.node.input[use.inputIndex];
    const uses = this.#consumers.get(old);
    if (uses) {
      const i = uses.findIndex((u) => u.node === use.node && u.inputIndex === use.inputIndex);
      if (i >= 0) uses.splice(i, 1);
    }
    use.node.input[use.inputIndex] = newName;
    let next = this.#consumers.get(newName);
    if (!next) this.#consumers.set(newName, next = []);
    next.push(use);
  }

  /** Number of uses of the stored constant, counting uses through Identity nodes. */
  constantUseCount(ref: ConstantRef): number {
    const root = ref.home === "initializer" ? ref.name : ref.node!.output[0];
    let count = 0;
    const stack = [root];
    const seen = new Set<string>();
    while (stack.length) {
      const name = stack.pop()!;
      if (seen.has(name)) continue;
      seen.add(name);
      if (this.outputNames.has(name) || this.#bodyOutputs.has(name)) count++;
      for (const use of this.consumers(name)) {
        if (use.node.opType === "Identity") stack.push(use.node.output[0]);
        else count++;
      }
    }
    return count;
  }

  /**
   * Nodes and initializers that no graph output depends on. Names used inside subgraphs
   * (If/Loop bodies may read outer tensors) count as inputs of the node holding the subgraph.
   */
  deadParts(): { nodes: Set<NodeProto>; initializers: Set<string> } {
    const live = new Set<string>(this.outputNames);
    const nodes = new Set<NodeProto>();
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const node = this.nodes[i];
      if (!node.output.some((o) => live.has(o))) {
        nodes.add(node);
        continue;
      }
      for (const name of [...node.input, ...subgraphNames(node)]) if (name) live.add(name);
    }
    const initializers = new Set<string>();
    for (const name of this.#initializers.keys()) {
      if (!live.has(name) && !this.proto.input.some((v) => v.name === name)) initializers.add(name);
    }
    return { nodes, initializers };
  }

  /** Removes what became dead since `before` (what was dead already is left as it was). */
  removeNewlyDead(before: { nodes: Set<NodeProto>; initializers: Set<string> }): void {
    const now = this.deadParts();
    const removable = new Set([...now.nodes].filter((n) => !before.nodes.has(n)));
    // Nodes that were dead already stay, and so does anything they read.
    for (let changed = true; changed;) {
      changed = false;
      const read = new Set<string>();
      for (const n of this.nodes) {
        if (!removable.has(n)) {
          for (const name of [...n.input, ...subgraphNames(n)]) read.add(name);
        }
      }
      for (const n of removable) {
        if (n.output.some((o) => read.has(o))) {
          removable.delete(n);
          changed = true;
        }
      }
    }
    const stillRead = new Set<string>();
    for (const n of this.nodes) {
      if (!removable.has(n)) {
        for (const name of [...n.input, ...subgraphNames(n)]) stillRead.add(name);
      }
    }
    const nodes = [...removable];
    const inits = [...now.initializers].filter((n) =>
      !before.initializers.has(n) && !stillRead.has(n)
    );
    if (nodes.length) {
      const drop = new Set(nodes);
      const kept = this.nodes.filter((n) => !drop.has(n));
      this.nodes.length = 0;
      this.nodes.push(...kept);
      for (const n of nodes) {
        n.input.forEach((name, inputIndex) => {
          const uses = this.#consumers.get(name);
          const i = uses?.findIndex((u) => u.node === n && u.inputIndex === inputIndex) ?? -1;
          if (i >= 0) uses!.splice(i, 1);
        });
        for (const o of n.output) this.#producer.delete(o);
      }
    }
    if (inits.length) {
      const drop = new Set(inits);
      const kept = (this.proto.initializer as TensorProto[]).filter((t) => !drop.has(t.name ?? ""));
      this.proto.initializer.length = 0;
      this.proto.initializer.push(...(kept as typeof this.proto.initializer));
      for (const name of inits) this.#initializers.delete(name);
      this.proto.valueInfo = this.proto.valueInfo.filter((v) => !drop.has(v.name ?? ""));
    }
  }

  /** Rewrites the declared shape of a tensor (value_info, graph inputs) after it was resized. */
  setDeclaredDims(name: string, dims: number[]): void {
    const bodies = this.bodies.flatMap((b) => [...b.proto.valueInfo, ...b.proto.input]);
    for (const vi of [...this.proto.valueInfo, ...this.proto.input, ...bodies]) {
      const shape = vi.name === name ? vi.type?.tensorType?.shape : undefined;
      if (!shape?.dim || shape.dim.length !== dims.length) continue;
      shape.dim.forEach((d, i) => {
        if (!d.dimParam) d.dimValue = dims[i];
      });
    }
  }
}

/** The then- and else-branch bodies of an If node, or undefined for any other node. */
export function ifBranches(node: NodeProto): [GraphProto, GraphProto] | undefined {
  if (node.opType !== "If" || (node.domain && node.domain !== "ai.onnx")) return undefined;
  const body = (name: string) => node.attribute.find((a) => a.name === name)?.g as GraphProto;
  const then = body("then_branch"), otherwise = body("else_branch");
  return then && otherwise ? [then, otherwise] : undefined;
}

/** Every tensor name read by the nodes of a node's subgraphs (recursively). */
export function subgraphNames(node: NodeProto): string[] {
  const names: string[] = [];
  const visit = (
    g: { node?: { input?: string[] | null; attribute?: unknown[] | null }[] | null },
  ) => {
    for (const n of g.node ?? []) {
      names.push(...(n.input ?? []));
      for (const a of (n.attribute ?? []) as { g?: unknown; graphs?: unknown[] }[]) {
        if (a.g) visit(a.g as typeof g);
        for (const sub of a.graphs ?? []) visit(sub as typeof g);
      }
    }
  };
  for (const a of node.attribute) {
    if (a.g) visit(a.g as Parameters<typeof visit>[0]);
    for (const sub of a.graphs ?? []) visit(sub as Parameters<typeof visit>[0]);
  }
  return names;
}

/** Where a constant lives, so that it can be replaced in place or copied on write. */
export interface ConstantRef {
  tensor: TensorProto;
  home: "initializer" | "constant-node";
  /** Name of the initializer, or of the tensor name a use referred to. */
  name: string;
  node?: NodeProto;
}

/**
 * Replaces the data of a stored constant in place. A Constant node that spells its value as
 * `value_ints` / `value_floats` (a tensor made up on each read) gets a `value` tensor instead.
 */
export function writeConstant(ref: ConstantRef, bytes: Uint8Array, dims: number[]): void {
  setTensorRawBytes(ref.tensor, bytes, dims);
  const node = ref.node;
  if (ref.home !== "constant-node" || !node) return;
  const i = node.attribute.findIndex((a) => a.name === "value");
  if (i >= 0) return;
  node.attribute = node.attribute.filter((a) => !(a.name ?? "").startsWith("value_"));
  node.attribute.push(onnx.AttributeProto.create({ name: "value", type: 4, t: ref.tensor }));
}

/** The tensor held by a Constant node (value, value_float(s), value_int(s)). */
export function constantNodeTensor(node: NodeProto): TensorProto | undefined {
  for (const a of node.attribute) {
    if (a.name === "value" && a.t) return a.t as TensorProto;
    if (a.name === "value_float") {
      return onnx.TensorProto.create({ dataType: 1, dims: [], floatData: [a.f ?? 0] });
    }
    if (a.name === "value_floats") {
      return onnx.TensorProto.create({
        dataType: 1,
        dims: [(a.floats ?? []).length],
        floatData: a.floats ?? [],
      });
    }
    if (a.name === "value_int") {
      return onnx.TensorProto.create({ dataType: 7, dims: [], int64Data: [a.i ?? 0] });
    }
    if (a.name === "value_ints") {
      return onnx.TensorProto.create({
        dataType: 7,
        dims: [(a.ints ?? []).length],
        int64Data: a.ints ?? [],
      });
    }
  }
  return undefined;
}

/** Reads an attribute of a node, converting Longs to numbers. */
export function attr(node: NodeProto, name: string): AttributeValue | undefined {
  const a = node.attribute.find((x) => x.name === name);
  if (!a) return undefined;
  switch (a.type) {
    case 1:
      return a.f ?? 0;
    case 2:
      return Number(a.i ?? 0);
    case 3:
      return typeof a.s === "string" ? a.s : new TextDecoder().decode(a.s ?? new Uint8Array());
    case 6:
      return [...(a.floats ?? [])];
    case 7:
      return (a.ints ?? []).map((x) => Number(x));
    case 4:
      return a.t as TensorProto;
    default:
      return undefined;
  }
}

export type AttributeValue = number | string | number[] | TensorProto;

export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const v = attr(node, name);
  return typeof v === "number" ? v : fallback;
}

export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const v = attr(node, name);
  return Array.isArray(v) ? v : undefined;
}

export { tensorDims };
