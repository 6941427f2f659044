/**
 * The dependency trace: one pass over the nodes in topological order that follows the channels
 * born at every linear layer through the graph, with one propagation rule per op family
 * (`rules/`). What it records — constant tensors sliced along a channel axis, shape constants
 * that encode channel counts, activation-by-activation products — is everything the planner and
 * the rewriter need.
 *
 * @module
 */
import type { NodeProto } from "../graph/graph.ts";
import { type ConstantRef, type Graph, subgraphNames, type Use } from "../graph/graph.ts";
import type { ProbedTensor } from "../runtime/probe.ts";
import { Factor, hasChannel, leavesOf } from "./factors.ts";
import { tensorDims } from "../onnx/tensor.ts";
import type { Dequantization } from "./quantization.ts";
import { RULES } from "./rules/mod.ts";
import { REDUCTIONS } from "./rules/normalization.ts";
import { seedGraphInputs, settleBoundary } from "./interfaces.ts";
import { traceParameterOperands } from "./parameter_terms.ts";
import { traceBranches } from "./branches.ts";
import { tieSharedWeights } from "./shared_weights.ts";

/** A constant input of a node whose `axis` carries the channels in `factors`. */
export interface TensorTouch {
  use: Use;
  ref: ConstantRef;
  axis: number;
  factors: Factor[];
  /** Weight of the linear producing the channels, weight of a linear consuming them, or other. */
  role: "weight-out" | "weight-in" | "operand";
  /** The linear layer node, for weight roles. */
  linear?: NodeProto;
  /** The constant holds quantized integers: how they map to real values. */
  quant?: Dequantization;
}

/** A shape vector element that must hold the new size of an axis. */
export interface ShapeTouch {
  /** Node and input index of the shape vector (Reshape target, Split sizes, Slice bounds). */
  use: Use;
  /** Element index inside the vector. */
  index: number;
  /** The element scales by new / old size of these factors. */
  factors: Factor[];
  /** For split sizes / slice bounds carried in attributes instead of inputs; "num_outputs" for
   * a Split into equal parts, which gets explicit sizes when the parts stop being equal. */
  attribute?: string;
  /**
   * A position along a segmented axis (a Slice bound, a Split size): the element becomes the
   * number of kept channels of `axis` in [from, to) — negated for a bound counted from the end —
   * instead of scaling with `factors`.
   */
  renumber?: { axis: Factor[]; from: number; to: number; negative?: boolean };
  /** Gather indices along a pruned axis: the vector becomes the new positions of the `picked`
   * channels that stay. */
  indices?: { axis: Factor[]; picked: number[] };
}

/** An activation × activation MatMul (attention scores and context). */
export interface ActivationMatMul {
  node: NodeProto;
  contracted: Factor[];
  batch: Factor[][];
  /** Last axis of the second operand (the value channels for attention · V). */
  rightColumns: Factor[];
  /** Second-to-last axis of the first operand (the value channels for V · attentionᵀ, the
   * context of attention written over channels-first maps). */
  leftRows?: Factor[];
}

/** A linear layer: MatMul/Gemm with a constant weight. */
export interface Linear {
  node: NodeProto;
  weight: TensorTouch;
  /** Channels created at the output. */
  out: Factor;
  /** Channels of the input, when they are tracked. */
  input: Factor[];
}

/**
 * An attention op that computes the whole block (onnxruntime's fused Attention ops), or the
 * reason its layout could not be read.
 */
export type FusedAttention = {
  node: NodeProto;
  /** Head factors: [H], or [KV heads, query heads per KV head] for grouped-query attention. */
  heads: Factor[];
  qk: Factor;
  v: Factor;
} | { node: NodeProto; refused: string };

/** Rewrites a node's attributes once the plan is known, given the kept size of a factor list. */
export type AttributeRewrite = (keptSize: (factors: Factor[]) => number) => void;

export interface Trace {
  graph: Graph;
  /** Version of the default ONNX domain the model imports (op semantics change with it). */
  opset: number;
  shapes: Map<string, ProbedTensor>;
  axes: Map<string, Factor[][]>;
  linears: Linear[];
  tensorTouches: TensorTouch[];
  shapeTouches: ShapeTouch[];
  matmuls: ActivationMatMul[];
  /** Channels a LayerNorm normalises: prunable only as the embedding width. */
  normalized: { factors: Factor[]; reason: string }[];
  /** Fused attention ops: attention blocks besides those found from Q·Kᵀ and P·V. */
  fusedAttention: FusedAttention[];
  /** Attributes that encode head counts and sizes (num_heads, the scale), rewritten on apply. */
  attributeRewrites: AttributeRewrite[];
}

/** What a rule sees and may do. */
export class TraceContext {
  readonly trace: Trace;
  constructor(trace: Trace) {
    this.trace = trace;
  }
  get graph(): Graph {
    return this.trace.graph;
  }
  /** Concrete dims of a tensor: from the probe run, or a constant's own dims. */
  dims(name: string): number[] | undefined {
    const probed = this.trace.shapes.get(name)?.dims;
    if (probed) return probed;
    const constant = this.graph.constant(name);
    return constant ? tensorDims(constant.tensor) : undefined;
  }
  axesOf(name: string): Factor[][] | undefined {
    return this.trace.axes.get(name);
  }
  setAxes(name: string, axes: Factor[][]): void {
    this.trace.axes.set(name, axes);
  }
  /** Plain factors for every axis of a tensor with known dims. */
  plainAxes(name: string, origin: string): Factor[][] | undefined {
    const dims = this.dims(name);
    return dims?.map((d) => [new Factor(d, false, origin)]);
  }
  touchTensor(t: TensorTouch): void {
    this.trace.tensorTouches.push(t);
  }
  touchShape(t: ShapeTouch): void {
    this.trace.shapeTouches.push(t);
  }
  /** Blocks every channel factor of the node's tracked inputs. */
  blockInputs(node: NodeProto, reason: string): void {
    for (const name of node.input) {
      for (const axis of this.axesOf(name) ?? []) blockList(axis, reason);
    }
  }
}

/** Ops whose rule reads the data input (input 0) and treats the others as shapes or indices. */
export const DATA_FIRST = new Set([
  "Reshape",
  "Flatten",
  "Squeeze",
  "Unsqueeze",
  "Transpose",
  "Split",
  "Slice",
  "Gather",
  "GatherND",
  "Expand",
  "Resize",
  "LayerNormalization",
  ...REDUCTIONS,
  "Pad",
  "Softmax",
  "LogSoftmax",
]);

/** A propagation rule: reads the node's tracked inputs, sets its outputs' axes, records touches. */
export type Rule = (ctx: TraceContext, node: NodeProto) => void;

/**
 * Blocks the channel factors of a list. A factor that is plain now may join a channel class
 * later in the pass (repeat_kv's group axis meets the query heads only at Q·Kᵀ), so every block
 * is also recorded and replayed once the pass is over.
 */
export function blockList(list: Factor[], reason: string): void {
  pendingBlocks?.push({ list, reason });
  for (const f of leavesOf(list)) if (f.channel) f.block(reason);
}

let pendingBlocks: { list: Factor[]; reason: string }[] | undefined;

export function nodeLabel(node: NodeProto): string {
  return `${node.opType} node "${node.name || node.output[0]}"`;
}

/** Runs the propagation over the whole graph. */
export function traceGraph(
  graph: Graph,
  shapes: Map<string, ProbedTensor>,
  opset = 17,
): Trace {
  const trace: Trace = {
    graph,
    opset,
    shapes,
    axes: new Map(),
    linears: [],
    tensorTouches: [],
    shapeTouches: [],
    matmuls: [],
    normalized: [],
    fusedAttention: [],
    attributeRewrites: [],
  };
  const ctx = new TraceContext(trace);
  pendingBlocks = [];
  try {
    propagate(ctx);
    for (const { list, reason } of pendingBlocks) {
      for (const f of leavesOf(list)) if (f.channel) f.block(reason);
    }
  } finally {
    pendingBlocks = undefined;
  }
  return trace;
}

function propagate(ctx: TraceContext): void {
  const boundary = seedGraphInputs(ctx);
  propagateNodes(ctx, ctx.graph.nodes);
  tieSharedWeights(ctx.trace);
  settleBoundary(ctx, boundary);
}

/** The pass over one node list (the main graph's, or a branch body's). */
function propagateNodes(ctx: TraceContext, nodes: NodeProto[]): void {
  const { trace } = ctx;
  for (const node of nodes) {
    if (RULES.source(ctx, node)) continue;
    if (traceBranches(ctx, node, propagateNodes)) continue;
    // If/Loop/Scan bodies may read outer tensors: channels read there cannot follow a pruning.
    for (const name of subgraphNames(node)) {
      for (const axis of trace.axes.get(name) ?? []) {
        blockList(axis, `${nodeLabel(node)}: read inside a subgraph`);
      }
    }
    const tracked = node.input.some((n) => n && trace.axes.has(n));
    if (!tracked) continue;
    traceParameterOperands(ctx, node);
    if (DATA_FIRST.has(node.opType) && !trace.axes.has(node.input[0])) {
      ctx.blockInputs(node, `${nodeLabel(node)}: channels reach a shape or index input`);
      continue;
    }
    const rule = RULES.byOp[node.domain ? `${node.domain}:${node.opType}` : node.opType];
    if (rule) rule(ctx, node);
    else ctx.blockInputs(node, `${nodeLabel(node)}: no propagation rule for ${node.opType}`);
  }
}

export function anyChannel(axes: Factor[][] | undefined): boolean {
  return !!axes && axes.some(hasChannel);
}
