/**
 * Prunable groups read off a trace: attention blocks (heads and per-head dims, found from the
 * activation MatMuls Q·Kᵀ and P·V that share a head factor) and MLP hidden channels (a linear's
 * output channels that reach another linear's input unchanged).
 *
 * @module
 */
import type { NodeProto } from "../graph/graph.ts";
import { Factor } from "./factors.ts";
import type { ActivationMatMul, Linear, TensorTouch, Trace } from "./trace.ts";
import { ropeNode, ropeReason } from "./rope.ts";
import { whyNotAttention } from "./why.ts";
import { attrInts } from "../graph/graph.ts";
import { tensorDims } from "../onnx/tensor.ts";

export interface AttentionGroup {
  kind: "attention";
  /** Name of the first linear producing Q (the fused qkv / in_proj / query layer). */
  name: string;
  /** Query heads (per KV group when `kvGroups` is set). */
  heads: Factor;
  /** Grouped-query attention: the KV heads, each shared by `heads.size` query heads. */
  kvGroups: Factor | null;
  /** Per-head Q/K dims, and V dims (the same factor when q, k, v come from one fused layer). */
  qkDim: Factor;
  vDim: Factor;
  /** Weights that carry the heads: producers' output axes and consumers' input axes. */
  members: TensorTouch[];
  linears: NodeProto[];
  /** Why the (query) heads, the KV heads, or the dims cannot be pruned (null when they can). */
  headsBlocked: string | null;
  kvGroupsBlocked: string | null;
  /** Why Q/K dims, or V dims, cannot be pruned on their own (null when they can). */
  qkBlocked: string | null;
  vBlocked: string | null;
  dimsBlocked: string | null;
}

export interface MlpGroup {
  kind: "mlp";
  /** Name of the linear producing the hidden channels (fc1). */
  name: string;
  channels: Factor;
  members: TensorTouch[];
  linears: NodeProto[];
  blocked: string | null;
}

/** The embedding (residual) width: one group across the whole model. */
export interface EmbeddingGroup {
  kind: "embedding";
  /** Name of the first layer producing the residual channels (the patch or token embedding). */
  name: string;
  channels: Factor;
  /** Weights scored for importance (producers, consumers, LayerNorm scales). */
  members: TensorTouch[];
  linears: NodeProto[];
  blocked: string | null;
  /** Some LayerNorm normalises these channels: pruning changes its statistics. */
  normalized: boolean;
}

export type Group = AttentionGroup | MlpGroup | EmbeddingGroup;

function channelLeaves(list: Factor[]): Factor[] {
  return list.flatMap((f) => f.leaves()).filter((f) => f.channel && f.size > 1);
}

/**
 * The atoms of each stretch of an axis that one segment of its factors covers (one part for an
 * axis without segments): q, k and v of a fused projection apart.
 */
function segmentParts(list: Factor[]): Factor[][] {
  let parts: Factor[][] = [[]];
  for (const leaf of list.flatMap((f) => f.leaves())) {
    const own = leaf.segments()?.flatMap((s) => segmentParts([s])) ?? [[leaf]];
    parts = parts.flatMap((p) => own.map((o) => [...p, ...o]));
  }
  return parts;
}

function nodeName(node: NodeProto): string {
  return node.name || node.output[0];
}

/** Heads found so far, with the Q·Kᵀ and P·V MatMuls that carry them; `qkSplit`: the dims of a
 * head are regrouped (interleaved rotary pairs), why they stay. */
type Heads = {
  heads: Factor[];
  qk?: Factor;
  v?: Factor;
  qkNode?: NodeProto;
  pvNode?: NodeProto;
  qkSplit?: string;
  /** Every activation MatMul on these heads (the branches of an If each have theirs). */
  nodes?: NodeProto[];
};

/** Ops between the attention scores and P·V (scaling, masking, softmax, casts). */
const SCORE_PATH = new Set(["Softmax", "Div", "Mul", "Add", "Sub", "Where", "Cast", "Dropout"]);

/**
 * Attention down to one head (a model pruned before) has no head axis that the trace can see: an
 * axis of size 1 carries no identity. Each Q·Kᵀ without heads is paired with the P·V its softmax
 * feeds, and the Q/K and V channels are given one shared head factor of size 1, as a model with
 * more heads has. Returns those blocks and the MatMuls they account for.
 */
function singleHeadBlocks(trace: Trace): { blocks: Heads[]; matmuls: Set<NodeProto> } {
  const headless = trace.matmuls.filter((m) =>
    !m.batch.flat().flatMap((f) => f.leaves()).some((f) => f.channel && f.size > 1)
  );
  const contexts = new Map(
    headless.filter((m) =>
      channelLeaves(m.contracted).length === 0 && channelLeaves(m.rightColumns).length === 1
    ).map((m) => [m.node, m]),
  );
  const blocks: Heads[] = [];
  const matmuls = new Set<NodeProto>();
  for (const m of headless) {
    const qkLeaves = channelLeaves(m.contracted);
    if (qkLeaves.length !== 1 || channelLeaves(m.rightColumns).length !== 0) continue;
    let frontier = [m.node.output[0]];
    let context: ActivationMatMul | undefined;
    for (let depth = 0; depth < 8 && frontier.length && !context; depth++) {
      const next: string[] = [];
      for (const name of frontier) {
        for (const use of trace.graph.consumers(name)) {
          const found = contexts.get(use.node);
          if (found && use.inputIndex === 0) context = found;
          else if (SCORE_PATH.has(use.node.opType)) next.push(...use.node.output);
        }
      }
      frontier = next;
    }
    if (!context || matmuls.has(context.node)) continue;
    const qk = qkLeaves[0].root(), v = channelLeaves(context.rightColumns)[0].root();
    if (qk.children() || v.children()) continue;
    // Q, K and V cut from one fused projection share their per-head dims.
    const [head, qkDim] = qk.refine([1, qk.size]);
    const vDim = qk === v ? qkDim : v.refine([1, v.size])[1];
    if (qk !== v) Factor.unify(head, v.children()![0]);
    blocks.push({
      heads: [head.root()],
      qk: qkDim,
      v: vDim,
      qkNode: m.node,
      pvNode: context.node,
    });
    matmuls.add(m.node).add(context.node);
  }
  return { blocks, matmuls };
}

/**
 * Activation × activation MatMuls fed by linear layers that no attention block accounts for and
 * no problem names yet, each with the reason (where their operands' channels stopped).
 */
function unexplainedMatMuls(
  trace: Trace,
  used: Set<NodeProto>,
  single: Set<NodeProto>,
  problems: string[],
): string[] {
  const linears = new Set(trace.linears.map((l) => l.node));
  const out: string[] = [];
  for (const node of trace.graph.allNodes()) {
    if (node.opType !== "MatMul" || node.domain || linears.has(node)) continue;
    if (used.has(node) || single.has(node)) continue;
    if (node.input.some((n) => !n || trace.graph.constant(n))) continue;
    const label = `MatMul "${nodeName(node)}"`;
    if (problems.some((p) => p.startsWith(label))) continue;
    const why = whyNotAttention(trace, node);
    if (why) out.push(`${label}: ${why.join("; ") || "head layout not recognised"}`);
  }
  return out;
}

/**
 * A 1×1 convolution with unit strides is a linear layer over the channels of every position (an
 * MLP written over NCHW); a larger kernel (a patch embedding, a convolutional stem) is not.
 */
function isPointwise(linear: Linear): boolean {
  const dims = tensorDims(linear.weight.ref.tensor);
  const strides = attrInts(linear.node, "strides") ?? [];
  return dims.slice(2).every((d) => d === 1) && strides.every((s) => s === 1);
}

/** Finds attention and MLP groups, in graph order, and the problems that kept MatMuls out. */
export function findGroups(trace: Trace): { groups: Group[]; problems: string[] } {
  const problems: string[] = [];
  const single = singleHeadBlocks(trace);
  // Heads are keyed by their factors: [H], or [G, R] for grouped-query attention.
  const byHead = new Map<string, Heads>();
  for (const b of single.blocks) byHead.set(String(b.heads[0].id), b);
  // A fused attention op says what its heads and dims are.
  for (const a of trace.fusedAttention) {
    if ("refused" in a) continue;
    const heads = a.heads.map((h) => h.root());
    byHead.set(heads.map((h) => h.id).join(","), { heads, qk: a.qk.root(), v: a.v.root() });
  }
  for (const m of trace.matmuls) {
    if (single.matmuls.has(m.node)) continue;
    const heads = [...new Set(m.batch.flatMap(channelLeaves).map((f) => f.root()))];
    const contracted = [...new Set(channelLeaves(m.contracted))];
    const columns = [...new Set(channelLeaves(m.rightColumns))];
    if (heads.length === 0 && contracted.length === 0 && columns.length === 0) continue;
    if (heads.length < 1 || heads.length > 2) {
      const seen = `${heads.length} head, ${contracted.length} contracted and ` +
        `${columns.length} column channel factors`;
      const why = whyNotAttention(trace, m.node)?.join("; ");
      problems.push(
        `MatMul "${nodeName(m.node)}": head layout not recognised (${seen})${
          why ? `: ${why}` : ""
        }`,
      );
      continue;
    }
    const key = heads.map((h) => h.id).join(",");
    const entry = byHead.get(key) ?? { heads };
    (entry.nodes ??= []).push(m.node);
    if (contracted.length >= 1) {
      entry.qk = contracted[0].root();
      entry.qkNode ??= m.node;
    }
    if (contracted.length > 1) {
      entry.qkSplit = `MatMul "${nodeName(m.node)}": the Q/K dims of each head are regrouped ` +
        `(${contracted.map((f) => f.size).join(" × ")}, as interleaved rotary pairs are)`;
    }
    if (columns.length >= 1 && contracted.length === 0) {
      entry.v = columns[0].root();
      entry.pvNode ??= m.node;
    }
    if (columns.length > 1 && contracted.length === 0) {
      entry.qkSplit ??= `MatMul "${nodeName(m.node)}": the dims of each head are regrouped ` +
        `(${columns.map((f) => f.size).join(" × ")}, as interleaved rotary pairs are)`;
    }
    // V · Pᵀ (channels-first maps): the value channels are the rows of the left operand.
    const rows = [...new Set(channelLeaves(m.leftRows ?? []))];
    if (columns.length === 0 && contracted.length === 0 && rows.length === 1) {
      entry.v = rows[0].root();
      entry.pvNode ??= m.node;
    }
    byHead.set(key, entry);
  }
  const weightTouches = trace.tensorTouches.filter((t) => t.role !== "operand");
  const leavesOfTouch = (t: TensorTouch) => t.factors.flatMap((f) => f.atoms());
  const groups: { order: number; group: Group }[] = [];
  const everyNode = trace.graph.allNodes();
  const order = (node: NodeProto) => everyNode.indexOf(node);
  const attentionFactors = new Set<Factor>();
  const used = new Set<NodeProto>();
  for (const { heads: headFactors, qk, v, qkNode, pvNode, qkSplit, nodes } of byHead.values()) {
    if (!qk || !v) {
      const [found, missing] = qk ? [qkNode, "P·V"] : [pvNode, "Q·Kᵀ"];
      const why = found ? whyNotAttention(trace, found)?.join("; ") : undefined;
      problems.push(
        `MatMul "${found ? nodeName(found) : "?"}": heads of size ` +
          `${headFactors.map((h) => h.size).join("×")} with no ${missing} on the same heads` +
          (why ? ` (${why})` : ""),
      );
      if (found) used.add(found);
      continue;
    }
    for (const n of [qkNode, pvNode, ...(nodes ?? [])]) if (n) used.add(n);
    const members = weightTouches.filter((t) =>
      headFactors.some((h) => leavesOfTouch(t).includes(h))
    );
    if (members.length === 0) continue;
    // Grouped-query attention: the KV-group factor is the one K and V carry without the other.
    let heads = headFactors[0], kvGroups: Factor | null = null;
    if (headFactors.length === 2) {
      const [a, b] = headFactors;
      // Per segment: a fused q | k | v weight carries both, its k and v segments one.
      const only = (x: Factor, y: Factor) =>
        members.some((t) => segmentParts(t.factors).some((p) => p.includes(x) && !p.includes(y)));
      const onlyA = only(a, b), onlyB = only(b, a);
      if (onlyA === onlyB) {
        problems.push(
          `MatMul "${
            qkNode ? nodeName(qkNode) : "?"
          }": attention with heads ${a.size}×${b.size}: ` +
            `query/KV grouping not recognised`,
        );
        continue;
      }
      [kvGroups, heads] = onlyA ? [a, b] : [b, a];
    }
    const producers = members.filter((t) => t.role === "weight-out").map((t) => t.linear!);
    const linears = [...new Set(members.map((t) => t.linear!))];
    const first = producers.sort((a, b) => order(a) - order(b))[0] ?? linears[0];
    for (const f of [heads, qk, v, ...(kvGroups ? [kvGroups] : [])]) attentionFactors.add(f);
    let qkBlocked = qk.blockedReason();
    // Under RoPE the first blocked op is some Mul by cos: say what the structure is instead.
    const rope = qkBlocked && qkNode
      ? qkNode.input.slice(0, 2).map((t) => ropeNode(trace.graph, t)).find((n) => n)
      : undefined;
    if (rope) qkBlocked = ropeReason(rope);
    qkBlocked ??= qkSplit ?? null;
    let dimsBlocked = qkBlocked ?? v.blockedReason();
    if (!dimsBlocked && qk.size !== v.size) {
      dimsBlocked = `attention block "${nodeName(first)}": Q/K heads of ${qk.size} dims and V ` +
        `heads of ${v.size} differ (prune them with separate Q/K and V ratios)`;
    }
    groups.push({
      order: order(first),
      group: {
        kind: "attention",
        name: nodeName(first),
        heads,
        kvGroups,
        qkDim: qk,
        vDim: v,
        members,
        linears,
        headsBlocked: heads.blockedReason(),
        kvGroupsBlocked: kvGroups?.blockedReason() ?? null,
        qkBlocked,
        vBlocked: v.blockedReason(),
        dimsBlocked,
      },
    });
  }
  problems.push(...unexplainedMatMuls(trace, used, single.matmuls, problems));
  // Channels a LayerNorm normalises stay exact only as the embedding width.
  const normalized = new Map<Factor, string>();
  for (const { factors, reason } of trace.normalized) {
    for (const leaf of factors.flatMap((f) => f.leaves())) {
      if (leaf.channel && !normalized.has(leaf.root())) normalized.set(leaf.root(), reason);
    }
  }
  for (const { group } of groups) {
    if (group.kind !== "attention") continue;
    group.headsBlocked ??= normalized.get(group.heads) ?? null;
    group.dimsBlocked ??= normalized.get(group.qkDim) ?? normalized.get(group.vDim) ?? null;
    group.qkBlocked ??= normalized.get(group.qkDim) ?? null;
    group.vBlocked ??= normalized.get(group.vDim) ?? null;
  }
  const seen = new Set<Factor>();
  for (const linear of trace.linears) {
    // One channel factor, or a fused layer's segments that all stand for the same channels
    // (gate | up of a gated MLP).
    const atoms = [...new Set(linear.out.atoms())];
    if (atoms.length !== 1) continue;
    const channels = atoms[0];
    if (seen.has(channels) || attentionFactors.has(channels)) continue;
    const members = weightTouches.filter((t) =>
      t.factors.length > 0 && t.factors.flatMap((f) => f.atoms()).includes(channels)
    );
    const consumers = members.filter((t) => t.role === "weight-in");
    if (consumers.length === 0) continue;
    // One channel factor per weight axis (plain factors such as patch merging's copies aside).
    const channelCount = (t: TensorTouch) =>
      new Set(t.factors.flatMap((f) => f.atoms()).filter((l) => l.channel && l.size > 1)).size;
    if (members.some((t) => channelCount(t) !== 1)) continue;
    // Hidden channels are produced from one input (fc1, or gate and up of a gated MLP); channels
    // produced by layers of several blocks are the residual stream, pruned as one model-wide group.
    // A weight used by several layers (a merged decoder's branches) counts once, at its first.
    const byWeight = new Map<object, string>();
    for (const t of members) {
      if (t.role === "weight-out" && !byWeight.has(t.ref.tensor)) {
        byWeight.set(t.ref.tensor, t.linear!.input[0]);
      }
    }
    const inputs = new Set(byWeight.values());
    seen.add(channels);
    const source = (linear.node.opType === "Conv" && !isPointwise(linear)) ||
      linear.node.opType === "Gather" || linear.node.opType === "EmbedLayerNormalization";
    // A convolution of traced channels made once (a squeeze-excitation's squeeze, a conv stem's
    // inner layer) is no residual width and no transformer MLP: no group.
    if (inputs.size === 1 && source && channelLeaves(linear.input).length > 0) continue;
    if (inputs.size !== 1 || source) {
      const scales = trace.tensorTouches.filter((t) =>
        t.role === "operand" && t.use.node.opType.endsWith("LayerNormalization") &&
        t.use.inputIndex === 1 && t.factors.flatMap((f) => f.atoms()).includes(channels)
      );
      groups.push({
        order: order(linear.node),
        group: {
          kind: "embedding",
          name: nodeName(linear.node),
          channels,
          members: [...members, ...scales],
          linears: [...new Set(members.map((t) => t.linear!))],
          blocked: channels.blockedReason(),
          normalized: normalized.has(channels),
        },
      });
      continue;
    }
    groups.push({
      order: order(linear.node),
      group: {
        kind: "mlp",
        name: nodeName(linear.node),
        channels,
        members,
        linears: [...new Set(members.map((t) => t.linear!))],
        blocked: channels.blockedReason() ?? normalized.get(channels) ?? null,
      },
    });
  }
  groups.sort((a, b) => a.order - b.order);
  // In graph order: the first MatMul stopped is usually where the cause is.
  const at = (p: string) => {
    const name = /^MatMul "([^"]*)"/.exec(p)?.[1];
    return everyNode.findIndex((n) => nodeName(n) === name);
  };
  problems.sort((a, b) => at(a) - at(b));
  return { groups: groups.map((g) => g.group), problems };
}
