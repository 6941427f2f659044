/**
 * Operands computed at run time from parameters only: a relative-position bias gathered from a
 * `[table, H]` parameter, a per-head logit scale `exp(clip(s))`, a gate `sigmoid(g)`, a small MLP
 * over constant coordinates producing `[table, H]`, a class token broadcast by Expand. When such
 * an operand meets tracked channels, the subgraph that computes it is traced like any other part
 * of the graph: each constant it reads gets plain factors (recorded as touches on that use, so it
 * is sliced if they become channels — heads, when the term is added to the scores), and the
 * ops' own rules carry those factors to the operand, where they are coupled with the channels.
 * A term that mixes what it meets in a way the rules cannot follow (a softmax over heads, an op
 * without a rule) is blocked by those rules, with the node named.
 *
 * @module
 */
import type { NodeProto } from "../graph/graph.ts";
import { subgraphNames } from "../graph/graph.ts";
import { tensorDims } from "../onnx/tensor.ts";
import { Factor } from "./factors.ts";
import { RULES } from "./rules/mod.ts";
import { DATA_FIRST, nodeLabel, type Rule, type Trace, type TraceContext } from "./trace.ts";

/** Nodes one term may take; larger constant subgraphs are left untracked. */
const MAX_NODES = 256;

/** Inputs whose values a rule follows (the others are shapes, indices, axes, bounds). */
export function dataInputs(node: NodeProto): number[] {
  if (DATA_FIRST.has(node.opType)) return node.input[0] ? [0] : [];
  return node.input.flatMap((name, i) => name ? [i] : []);
}

/** Per trace: tensors that are not traced from parameters (with why, when they are computed
 * from parameters but cannot be followed), and node order. */
const notParameters = new WeakMap<Trace, Map<string, string>>();
const orders = new WeakMap<Trace, Map<NodeProto, number>>();
/** Per trace: tensors traced as terms of parameters. */
const terms = new WeakMap<Trace, Set<string>>();

/**
 * Traces the untracked data inputs of `node` that are computed from parameters only, so that
 * the node's rule sees them as tracked tensors.
 */
export function traceParameterOperands(ctx: TraceContext, node: NodeProto): void {
  for (const i of dataInputs(node)) {
    const name = node.input[i];
    if (ctx.axesOf(name) || ctx.graph.constant(name)) continue;
    const nodes = parameterSubgraph(ctx, name);
    if (nodes) traceNodes(ctx, nodes);
  }
}

/**
 * Why a tensor computed from parameters was left untracked (an op no rule follows on the way),
 * as words to append to a refusal; empty when it is not computed from parameters only.
 */
export function untrackedTerm(trace: Trace, name: string): string {
  const why = notParameters.get(trace)?.get(name);
  return why ? ` (computed from parameters through ${why})` : "";
}

/**
 * The nodes between the parameters and `name`, in graph order, or undefined when a graph input
 * (or anything else that varies at run time) reaches it through a data input. Tracked tensors
 * (already traced) and shape reads are where the walk stops.
 */
function parameterSubgraph(ctx: TraceContext, name: string): NodeProto[] | undefined {
  const trace = ctx.trace;
  let bad = notParameters.get(trace);
  if (!bad) notParameters.set(trace, bad = new Map());
  if (bad.has(name)) return undefined;
  const nodes = new Set<NodeProto>();
  const seen = new Set<string>();
  let blocker = "";
  let constants = 0;
  const stack = [name];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t !== name && ctx.axesOf(t)) {
      // A term traced before is shared; anything else tracked is an activation.
      if (terms.get(trace)?.has(t)) continue;
      bad.set(name, "");
      return undefined;
    }
    if (ctx.graph.constant(t)) {
      constants++;
      continue;
    }
    const producer = ctx.graph.producer(t);
    if (producer?.opType === "Shape" || producer?.opType === "Size") continue;
    // A run-time value inside the term (ALiBi's positions from the attention mask, times the
    // per-head slopes) stays an untracked operand: the rules block whatever channels it spans,
    // and the axes it broadcasts over (the heads) stay the parameters'.
    if (t !== name && varies(ctx, t) && !carriesParameters(ctx, t)) continue;
    const runtime = !producer || subgraphNames(producer).length > 0 ||
      producer.input.every((x) => !x) || (bad.has(t) && !bad.get(t));
    if (runtime) {
      bad.set(name, "");
      return undefined;
    }
    if (nodes.size >= MAX_NODES) {
      // Too far to tell (and to trace): left untracked, no claim made about it.
      bad.set(name, "");
      return undefined;
    }
    // Walked on, to tell a term of parameters from one that also reads the inputs.
    blocker ||= bad.get(t) ||
      (ruleOf(producer) ? "" : `${nodeLabel(producer)}, which no rule follows`);
    nodes.add(producer);
    for (const i of dataInputs(producer)) stack.push(producer.input[i]);
  }
  if (blocker) {
    bad.set(name, blocker);
    return undefined;
  }
  if (constants === 0) {
    bad.set(name, "");
    return undefined;
  }
  let order = orders.get(trace);
  if (!order) orders.set(trace, order = new Map(ctx.graph.nodes.map((n, i) => [n, i])));
  return [...nodes].sort((a, b) => order!.get(a)! - order!.get(b)!);
}

/** Per trace: whether a tensor's value depends on the graph's inputs (not on parameters alone). */
const runtimeValues = new WeakMap<Trace, Map<string, boolean>>();

/** Whether `name` depends on a graph input or on anything else that varies at run time. */
function varies(ctx: TraceContext, name: string): boolean {
  let memo = runtimeValues.get(ctx.trace);
  if (!memo) runtimeValues.set(ctx.trace, memo = new Map());
  const stack: [string, boolean][] = [[name, false]];
  while (stack.length) {
    const [t, expanded] = stack.pop()!;
    if (memo.has(t)) continue;
    if (ctx.graph.constant(t)) {
      memo.set(t, false);
      continue;
    }
    const producer = ctx.graph.producer(t);
    if (!producer || subgraphNames(producer).length > 0 || producer.input.every((x) => !x)) {
      // A graph input, a branch, or a source op such as RandomNormal / a Constant's output.
      memo.set(
        t,
        !producer || subgraphNames(producer).length > 0 ||
          !["Constant", "ConstantOfShape", "Range"].includes(producer.opType),
      );
      continue;
    }
    const inputs = producer.input.filter((x) => x);
    if (expanded) {
      memo.set(t, inputs.some((x) => memo!.get(x)));
      continue;
    }
    stack.push([t, true]);
    for (const x of inputs) if (!memo.has(x)) stack.push([x, false]);
  }
  return memo.get(name)!;
}

/** Per trace: whether a tensor is computed from a constant of more than one value. */
const parameterValues = new WeakMap<Trace, Map<string, boolean>>();

/** Whether `name` is computed (through data inputs) from a constant of more than one value: a
 * parameter, not a scalar such as the 1 in `cumsum(mask) - 1`. */
function carriesParameters(ctx: TraceContext, name: string): boolean {
  let memo = parameterValues.get(ctx.trace);
  if (!memo) parameterValues.set(ctx.trace, memo = new Map());
  const stack: [string, boolean][] = [[name, false]];
  while (stack.length) {
    const [t, expanded] = stack.pop()!;
    if (memo.has(t)) continue;
    const ref = ctx.graph.constant(t);
    if (ref) {
      memo.set(t, tensorDims(ref.tensor).reduce((a, b) => a * b, 1) > 1);
      continue;
    }
    const producer = ctx.graph.producer(t);
    if (!producer || producer.opType === "Shape" || producer.opType === "Size") {
      memo.set(t, false);
      continue;
    }
    const inputs = dataInputs(producer).map((i) => producer.input[i]);
    if (expanded) {
      memo.set(t, inputs.some((x) => memo!.get(x)));
      continue;
    }
    stack.push([t, true]);
    for (const x of inputs) if (!memo.has(x)) stack.push([x, false]);
  }
  return memo.get(name)!;
}

function ruleOf(node: NodeProto): Rule | undefined {
  return RULES.byOp[node.domain ? `${node.domain}:${node.opType}` : node.opType];
}

/** Runs the rules over the term's nodes, each constant data input seeded for that use only. */
function traceNodes(ctx: TraceContext, nodes: NodeProto[]): void {
  for (const node of nodes) {
    if (node.output.some((o) => o && ctx.axesOf(o))) continue;
    const label = node.name || node.output[0];
    const seeded: string[] = [];
    for (const inputIndex of dataInputs(node)) {
      const name = node.input[inputIndex];
      const ref = ctx.graph.constant(name);
      if (!ref || ctx.axesOf(name)) continue;
      const axes = tensorDims(ref.tensor).map((d) => [new Factor(d, false, label)]);
      ctx.setAxes(name, axes);
      seeded.push(name);
      axes.forEach((factors, axis) => {
        if (factors[0].size > 1) {
          ctx.touchTensor({ use: { node, inputIndex }, ref, axis, factors, role: "operand" });
        }
      });
    }
    const matmuls = ctx.trace.matmuls.length;
    const handled = RULES.source(ctx, node);
    const rule = ruleOf(node);
    const ready = DATA_FIRST.has(node.opType)
      ? ctx.axesOf(node.input[0])
      : node.input.some((n) => n && ctx.axesOf(n));
    if (!handled && rule && ready) rule(ctx, node);
    let traced = terms.get(ctx.trace);
    if (!traced) terms.set(ctx.trace, traced = new Set());
    for (const o of node.output) if (o && ctx.axesOf(o)) traced.add(o);
    // A product of parameters is not attention.
    ctx.trace.matmuls.splice(matmuls);
    for (const name of seeded) ctx.trace.axes.delete(name);
  }
}
