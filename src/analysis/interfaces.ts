/**
 * Interface tensors: graph inputs and outputs whose axes carry channels. A decoder with a KV
 * cache reads the cache of the earlier tokens as graph inputs (`past_key_values.N.key`,
 * [batch, kv_heads, past, head_dim]), concatenates it with the new keys along the sequence, and
 * returns the result as graph outputs (`present.N.key`) that the runtime feeds back at the next
 * step. Heads removed from the model are removed from that state too: the inputs and outputs
 * change their declared shapes, and the report lists them.
 *
 * A cache is recognised by its structure: a float graph input concatenated with what the model
 * computes, the result returned as a graph output. Such inputs are followed from the start, with
 * plain factors. Head channels that reach both ends of a cache may be pruned: the model itself
 * produces what the runtime feeds back. Any other channels at the boundary (a hidden state the
 * user reads, features the user computes) stay blocked, with the tensor named.
 *
 * @module
 */
import type { Factor } from "./factors.ts";
import type { TraceContext } from "./trace.ts";
import type { Trace } from "./trace.ts";
import type { Plan } from "../plan.ts";
import { keptAxisIndices, sizeRatio } from "../plan.ts";
import { blockList } from "./trace.ts";

/** ONNX element types of the float tensors followed from the graph inputs. */
const FLOAT_TYPES = new Set([1, 10, 11, 16]);

/** Ops a cache may pass through between the graph boundary and its Concat. */
const CARRY = new Set(["Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze"]);

/** onnxruntime's fused attention ops that append to a cache themselves: past input index →
 * present output index. */
const FUSED_CACHE: Record<string, Record<number, number>> = {
  GroupQueryAttention: { 3: 1, 4: 2 },
  MultiHeadAttention: { 6: 1, 7: 2 },
};

/** What settleBoundary needs: the cache inputs followed, and the outputs they are appended to. */
export interface Boundary {
  inputs: string[];
  outputs: Set<string>;
}

/**
 * Finds the caches: float graph inputs that reach a Concat (through casts and layout ops),
 * whose result reaches graph outputs the same way — the state a decoder appends to and returns.
 * Those inputs get tracked plain axes; other graph inputs stay untracked, as before.
 */
export function seedGraphInputs(ctx: TraceContext): Boundary {
  const { graph } = ctx;
  const boundary: Boundary = { inputs: [], outputs: new Set() };
  const forward = (name: string, depth: number, visit: (name: string) => boolean): void => {
    if (visit(name) || depth > 3) return;
    // A branch's output is its If's output.
    const owner = graph.bodyOutput(name);
    if (owner) forward(owner.owner.output[owner.index], depth, visit);
    for (const use of graph.consumers(name)) {
      // A Concat of one tensor is a copy (a cache appended to an empty one).
      const copy = use.node.opType === "Concat" && use.node.input.length === 1;
      if ((CARRY.has(use.node.opType) || copy) && use.inputIndex === 0) {
        forward(use.node.output[0], depth + 1, visit);
      }
    }
  };
  for (const input of graph.proto.input) {
    const name = input.name ?? "";
    if (!graph.isGraphInput(name)) continue;
    if (!FLOAT_TYPES.has(input.type?.tensorType?.elemType ?? 0)) continue;
    const outputs: string[] = [];
    forward(name, 0, (tensor) => {
      // Appended by a Concat, or inside a fused attention op that returns the present state.
      const appended = graph.consumers(tensor).flatMap((u) => {
        if (u.node.opType === "Concat" && u.node.input.length > 1) return [u.node.output[0]];
        const present = u.node.domain === "com.microsoft"
          ? FUSED_CACHE[u.node.opType]?.[u.inputIndex]
          : undefined;
        return present !== undefined && u.node.output[present] ? [u.node.output[present]] : [];
      });
      for (const a of appended) {
        forward(a, 0, (t) => {
          if (graph.outputNames.has(t)) outputs.push(t);
          return false;
        });
      }
      return appended.length > 0;
    });
    if (outputs.length === 0) continue;
    const axes = ctx.plainAxes(name, `graph input "${name}"`);
    if (!axes) continue;
    ctx.setAxes(name, axes);
    boundary.inputs.push(name);
    for (const o of outputs) boundary.outputs.add(o);
  }
  return boundary;
}

function channelLeaves(axes: Factor[][] | undefined): Factor[] {
  return (axes ?? []).flat().flatMap((f) => f.leaves()).filter((f) => f.channel && f.size > 1);
}

/**
 * Settles the boundary once the pass is over. A channel class may reach the graph's inputs and
 * outputs only as a cache: it is carried by a cache input and by an output that input is
 * appended to, and it indexes heads or head dims (it meets an activation MatMul). Anything else
 * that reaches the boundary is blocked, with the tensor named.
 */
export function settleBoundary(ctx: TraceContext, boundary: Boundary): void {
  const { trace, graph } = ctx;
  const attention = new Set<Factor>();
  for (const m of trace.matmuls) {
    for (const f of [...m.batch.flat(), ...m.contracted, ...m.rightColumns]) {
      for (const leaf of f.leaves()) attention.add(leaf.root());
    }
  }
  for (const a of trace.fusedAttention) {
    if ("refused" in a) continue;
    for (const f of [...a.heads, a.qk, a.v]) {
      for (const leaf of f.leaves()) attention.add(leaf.root());
    }
  }
  const atInputs = new Set<Factor>(), atOutputs = new Set<Factor>();
  for (const name of boundary.inputs) {
    for (const f of channelLeaves(trace.axes.get(name))) atInputs.add(f.root());
  }
  for (const name of boundary.outputs) {
    for (const f of channelLeaves(trace.axes.get(name))) atOutputs.add(f.root());
  }
  const cache = (f: Factor) =>
    atInputs.has(f.root()) && atOutputs.has(f.root()) && attention.has(f.root());
  for (const name of graph.outputNames) {
    for (const axis of trace.axes.get(name) ?? []) {
      const leaves = axis.flatMap((f) => f.leaves());
      const alone = boundary.outputs.has(name) ? leaves.filter((f) => !cache(f)) : leaves;
      blockList(alone, `reaches graph output "${name}"`);
    }
  }
  for (const name of boundary.inputs) {
    for (const axis of trace.axes.get(name) ?? []) {
      const alone = axis.flatMap((f) => f.leaves()).filter((f) => !cache(f));
      blockList(
        alone,
        `graph input "${name}" carries these channels and no cache output returns them`,
      );
    }
  }
}

/** A graph input or output whose declared shape the pruning changes. */
export interface InterfaceChange {
  /** The graph input's or output's name. */
  name: string;
  /** Whether it is a graph input or a graph output. */
  kind: "input" | "output";
  /** Declared dims before: sizes, or the symbolic names kept as they are. */
  before: (number | string)[];
  /** Declared dims after. */
  after: (number | string)[];
  /** Per changed axis, the indices kept (original numbering): which slices of a cache the
   * pruned model reads and writes. */
  kept: { axis: number; indices: number[] }[];
}

/** Declared dims of a value info: numbers where static, names where symbolic, "?" unknown. */
function declared(
  dims: { dimValue?: unknown; dimParam?: string | null }[],
): (number | string)[] {
  return dims.map((d) => d.dimParam ? d.dimParam : d.dimValue != null ? Number(d.dimValue) : "?");
}

/**
 * Graph inputs and outputs whose axes change size under the plan, with their declared dims
 * before and after (static dims scaled; symbolic ones keep their names). Read before the rewrite.
 */
export function interfaceChanges(trace: Trace, plan: Plan): InterfaceChange[] {
  const changes: InterfaceChange[] = [];
  const proto = trace.graph.proto;
  const lists: [typeof proto.input, "input" | "output"][] = [
    [proto.input.filter((v) => trace.graph.isGraphInput(v.name ?? "")), "input"],
    [proto.output, "output"],
  ];
  for (const [list, kind] of lists) {
    for (const vi of list) {
      const name = vi.name ?? "";
      const axes = trace.axes.get(name);
      if (!axes) continue;
      const ratios = axes.map((a) => sizeRatio(plan, a));
      if (ratios.every((r) => r.num === r.den)) continue;
      const probed = trace.shapes.get(name)?.dims;
      const dims = vi.type?.tensorType?.shape?.dim ?? [];
      const before = dims.length === axes.length
        ? declared(dims)
        : (probed ?? []).map((d) => d as number | string);
      const after = before.map((d, i) =>
        typeof d === "number" ? (d * ratios[i].num) / ratios[i].den : d
      );
      const kept = axes.flatMap((a, axis) => {
        const indices = keptAxisIndices(plan, a);
        return indices ? [{ axis, indices }] : [];
      });
      changes.push({ name, kind, before, after, kept });
    }
  }
  return changes;
}
