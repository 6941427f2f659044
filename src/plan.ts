/**
 * The plan: which channels of which factor survive. Counts follow Torch-Pruning's local
 * (per-layer) rules so the same options give the same model:
 * - heads: remove ceil(r·H) (at least one head is always kept);
 * - dims per head: remove D − trunc(D·(1−r)), the same dims in every head;
 * - MLP channels: remove C − trunc(C·(1−r)); with round_to the kept count is rounded down to a
 *   multiple (never below one multiple).
 *
 * @module
 */
import type { ComputeCore } from "./core/mod.ts";
import type { Factor } from "./analysis/factors.ts";
import type { AttentionGroup, EmbeddingGroup, Group, MlpGroup } from "./analysis/groups.ts";
import { attentionScores, type Criterion, dimScores, mlpScores } from "./importance.ts";
import { PruneError } from "./errors.ts";
import {
  defaultKindScale,
  globalCounts,
  type GroupCounts,
  headUnits,
  type Metric,
  type Ranking,
  type UnitKind,
} from "./allocate.ts";
import type { ProbedTensor } from "./runtime/probe.ts";

/** Kept indices (ascending) of each pruned factor. */
export type Plan = Map<Factor, number[]>;

export interface GroupDecision {
  group: Group;
  /** Ratio applied to this group (after per-layer overrides). */
  ratio: number;
  /** Kept query heads (per KV group under grouped-query attention). */
  keptHeads?: number[];
  /** Kept KV heads (grouped-query attention, "kv-groups" policy). */
  keptKvGroups?: number[];
  keptDims?: number[];
  /** Kept V dims, when Q/K and V dims were pruned separately. */
  keptVDims?: number[];
  keptChannels?: number[];
  /** Why this group was left (partly) as it is although asked to prune it. */
  note?: string;
}

export interface PlanSettings {
  pruningRatio: number;
  headPruningRatio: number;
  pruneNumHeads: boolean;
  pruneHeadDims: boolean;
  roundTo: number;
  criterion: Criterion;
  /** Fractions of the per-head Q/K dims and V dims, pruned separately (NViT); undefined: both
   * follow the head ratio and the same dims go from Q, K and V. */
  qkRatio?: number;
  vRatio?: number;
  /** Q/K and V dims pruned separately even without ratios for them (a global budget). */
  separateDims?: boolean;
  /** Fraction of the embedding (residual) width to remove. */
  embeddingPruningRatio: number;
  /** Grouped-query attention: remove query heads inside every KV group (Torch-Pruning), or whole
   * KV groups with their query heads (LLM-Pruner). */
  gqaPolicy: "query-heads" | "kv-groups";
  /** Ratio override for a group, by group (layer) name, or undefined. */
  ratioFor: (group: Group) => number | undefined;
  /** Attention blocks whose heads must all stay. */
  headsFixed?: (group: Group) => boolean;
  /** "local": every block loses its ratio (default); otherwise the ranking across blocks that
   * spends the budget (allocate.ts). */
  allocation?: "local" | Ranking;
  /** Score divisors per kind for the "global" ranking (default: NViT's). */
  kindScale?: Partial<Record<UnitKind, number>>;
  /** Budget of a global allocation; default: the parameters the ratios would remove. */
  budget?: { metric: Metric; amount: number };
  /** With a budget: which kinds take part beyond the head flags. */
  pruneMlp?: boolean;
  pruneEmbedding?: boolean;
  /** Probed shapes (MAC costs of a global allocation). */
  shapes?: Map<string, ProbedTensor>;
  latencyCost?: (group: Group, kind: UnitKind) => number;
  latencyEta?: number;
  /** Rank by whole score per unit of the budget saved (allocate.ts); NViT's kind divisors are
   * then left out (the sums weigh what each unit removes). */
  perCost?: boolean;
  /** Units of a kind a group keeps at least (a floor per block). */
  minKept?: (group: { name: string }, kind: UnitKind) => number;
  /** Receives what the report should say about a global allocation. */
  onNote?: (note: string) => void;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function headsToRemove(heads: number, ratio: number): number {
  return Math.ceil(ratio * heads);
}

export function channelsToKeep(count: number, ratio: number, roundTo: number): number {
  const removed = count - Math.trunc(count * (1 - ratio));
  let kept = count - removed;
  if (roundTo > 1) kept = Math.max(kept - (kept % roundTo), Math.min(roundTo, count));
  return Math.max(kept, 1);
}

/** Decides every group's kept channels and returns the plan with the decisions. */
export async function makePlan(
  core: ComputeCore,
  groups: Group[],
  settings: PlanSettings,
): Promise<{ plan: Plan; decisions: GroupDecision[] }> {
  const plan: Plan = new Map();
  const decisions: GroupDecision[] = [];
  let counts: Map<Group, GroupCounts> | undefined;
  if (settings.allocation && settings.allocation !== "local") {
    const blocks = groups.filter((g) => g.kind === "attention").length;
    counts = await globalCounts(core, groups, {
      ...settings,
      separateDims: isSeparate(settings),
      pruneMlp: settings.pruneMlp ?? settings.pruningRatio > 0,
      pruneEmbedding: settings.pruneEmbedding ?? settings.embeddingPruningRatio > 0,
      ranking: settings.allocation,
      // Per-weight scores (a budget, "global"; or ranked per cost) need no divisor for what a
      // unit spans.
      kindScale: {
        ...defaultKindScale(
          settings.perCost || (settings.budget && settings.allocation === "global") ? 0 : blocks,
        ),
        ...settings.kindScale,
      },
      shapes: settings.shapes ?? new Map(),
      localCounts: localCounts(settings),
      skip: (g) => settings.ratioFor(g) === 0,
    });
  }
  for (const group of groups) {
    const override = settings.ratioFor(group);
    if (group.kind === "attention") {
      const ratio = override ?? settings.headPruningRatio;
      decisions.push(await planAttention(core, group, ratio, settings, plan, counts?.get(group)));
    } else if (group.kind === "mlp") {
      const ratio = override ?? settings.pruningRatio;
      decisions.push(await planMlp(core, group, ratio, settings, plan, counts?.get(group)));
    } else {
      const ratio = settings.embeddingPruningRatio;
      decisions.push(await planMlp(core, group, ratio, settings, plan, counts?.get(group)));
    }
  }
  return { plan, decisions };
}

function isSeparate(s: PlanSettings): boolean {
  return !!s.separateDims || s.qkRatio !== undefined || s.vRatio !== undefined;
}

/** Units each group loses under its per-block ratio (the budget of a global allocation). */
function localCounts(s: PlanSettings): (group: Group) => GroupCounts & { embedding?: number } {
  return (group) => {
    const override = s.ratioFor(group);
    if (group.kind === "attention") {
      const ratio = override ?? s.headPruningRatio;
      const d = group.qkDim.size;
      const units = headUnits(group, s.gqaPolicy).factor.size;
      return {
        heads: s.pruneNumHeads && !s.headsFixed?.(group)
          ? Math.min(headsToRemove(units, ratio), units - 1)
          : 0,
        dims: s.pruneHeadDims ? d - channelsToKeep(d, ratio, s.roundTo) : 0,
        qk: s.pruneHeadDims ? d - channelsToKeep(d, override ?? s.qkRatio ?? 0, s.roundTo) : 0,
        v: s.pruneHeadDims
          ? group.vDim.size - channelsToKeep(group.vDim.size, override ?? s.vRatio ?? 0, s.roundTo)
          : 0,
      };
    }
    const c = group.channels.size;
    if (group.kind === "mlp") {
      return { channels: c - channelsToKeep(c, override ?? s.pruningRatio, s.roundTo) };
    }
    return { embedding: c - channelsToKeep(c, s.embeddingPruningRatio, s.roundTo) };
  };
}

async function planAttention(
  core: ComputeCore,
  group: AttentionGroup,
  ratio: number,
  s: PlanSettings,
  plan: Plan,
  counts?: GroupCounts,
): Promise<GroupDecision> {
  const decision: GroupDecision = { group, ratio };
  const byKvGroups = !!group.kvGroups && s.gqaPolicy === "kv-groups";
  const headsBlocked = byKvGroups ? group.kvGroupsBlocked : group.headsBlocked;
  const askHeads = s.pruneNumHeads && (counts ? (counts.heads ?? 0) > 0 : ratio > 0);
  // A block's last head cannot go: a one-head block keeps it, and the others are still pruned.
  const oneHead = headUnits(group, s.gqaPolicy).factor.size === 1;
  if (askHeads && oneHead && !headsBlocked) {
    const what = byKvGroups ? "KV head" : "head";
    decision.note = `attention block "${group.name}" has one ${what}, which stays`;
  }
  const wantHeads = askHeads && !oneHead && !headsBlocked && !s.headsFixed?.(group);
  const wantDims = s.pruneHeadDims && (counts ? (counts.dims ?? 0) > 0 : ratio > 0) &&
    !group.dimsBlocked;
  const separate = isSeparate(s);
  if (!wantHeads && !wantDims && !(s.pruneHeadDims && separate)) return decision;
  const scores = await attentionScores(core, group, s.criterion);
  if (wantHeads && byKvGroups) {
    // LLM-Pruner's policy: whole KV heads go, with every query head of their group.
    const g = group.kvGroups!.size;
    const drop = counts ? counts.heads ?? 0 : headsToRemove(g, ratio);
    if (drop >= g) throw allHeads(ratio, g, "KV heads", group.name);
    decision.keptKvGroups = [...await core.selectKeep(scores.kvGroups!, drop)];
    if (drop > 0) plan.set(group.kvGroups!, decision.keptKvGroups);
  } else if (wantHeads) {
    // Torch-Pruning's policy under grouped-query attention: the same query heads go in every
    // KV group, the KV heads stay.
    const h = group.heads.size;
    const drop = counts ? counts.heads ?? 0 : headsToRemove(h, ratio);
    if (drop >= h) {
      throw allHeads(ratio, h, group.kvGroups ? "query heads per KV head" : "heads", group.name);
    }
    decision.keptHeads = [...await core.selectKeep(scores.heads, drop)];
    if (drop > 0) plan.set(group.heads, decision.keptHeads);
  }
  if (wantDims && !separate) {
    const d = group.qkDim.size;
    const keep = counts ? d - (counts.dims ?? 0) : channelsToKeep(d, ratio, s.roundTo);
    decision.keptDims = [...await core.selectKeep(scores.dims, d - keep)];
    if (keep < d) {
      plan.set(group.qkDim, decision.keptDims);
      plan.set(group.vDim, decision.keptDims);
    }
  }
  if (s.pruneHeadDims && separate) {
    await planSeparateDims(core, group, s, plan, decision, counts);
  }
  return decision;
}

/** NViT's design space: Q/K dims and V dims of a head are pruned each with its own ratio. */
async function planSeparateDims(
  core: ComputeCore,
  group: AttentionGroup,
  s: PlanSettings,
  plan: Plan,
  decision: GroupDecision,
  counts?: GroupCounts,
): Promise<void> {
  // A per-layer ratio sets both for its block.
  const override = s.ratioFor(group);
  const qkRatio = override ?? s.qkRatio ?? 0, vRatio = override ?? s.vRatio ?? 0;
  if (group.qkDim === group.vDim) {
    throw new PruneError(
      "bad-option",
      `attention block "${group.name}" computes Q, K and V with one fused layer whose head dims ` +
        `are shared: Q/K and V dims cannot be pruned separately there (give one ratio)`,
    );
  }
  const cut = async (dim: Factor, r: number, blocked: string | null, removed?: number) => {
    if (blocked || (counts ? !(removed! > 0) : r <= 0)) return undefined;
    const keep = counts ? dim.size - removed! : channelsToKeep(dim.size, r, s.roundTo);
    const kept = [
      ...await core.selectKeep(await dimScores(core, group, dim, s.criterion), dim.size - keep),
    ];
    if (keep < dim.size) plan.set(dim, kept);
    return kept;
  };
  decision.keptDims = await cut(group.qkDim, qkRatio, group.qkBlocked, counts?.qk ?? 0);
  decision.keptVDims = await cut(group.vDim, vRatio, group.vBlocked, counts?.v ?? 0);
}

function allHeads(ratio: number, count: number, what: string, block: string): PruneError {
  return new PruneError(
    "bad-option",
    `head pruning ratio ${ratio} would remove all ${count} ${what} of attention block "${block}"`,
  );
}

/** MLP hidden channels, or the embedding width: one channel factor, ranked as a whole. */
async function planMlp(
  core: ComputeCore,
  group: MlpGroup | EmbeddingGroup,
  ratio: number,
  s: PlanSettings,
  plan: Plan,
  counts?: GroupCounts,
): Promise<GroupDecision> {
  const decision: GroupDecision = { group, ratio };
  if (group.blocked || (counts ? !((counts.channels ?? 0) > 0) : ratio <= 0)) return decision;
  const c = group.channels.size;
  const keep = counts ? c - (counts.channels ?? 0) : channelsToKeep(c, ratio, s.roundTo);
  if (keep >= c) {
    decision.keptChannels = range(c);
    return decision;
  }
  const scores = await mlpScores(core, group, s.criterion);
  decision.keptChannels = [...await core.selectKeep(scores, c - keep)];
  plan.set(group.channels, decision.keptChannels);
  return decision;
}

/** Kept count of a factor under the plan. */
export function keptCount(plan: Plan, factor: Factor): number {
  return keptOf(plan, factor)?.length ?? factor.root().size;
}

/** New size / old size of a list of factors (channel factors only change). */
export function sizeRatio(plan: Plan, factors: Factor[]): { num: number; den: number } {
  let num = 1, den = 1;
  for (const leaf of factors.flatMap((f) => f.leaves())) {
    num *= keptCount(plan, leaf);
    den *= leaf.size;
  }
  return { num, den };
}

/**
 * Kept indices (ascending) of one factor in its own numbering, or null when all stay: the plan's
 * own entry, or those of its parts — segments side by side, refinements in mixed radix.
 */
function keptOf(plan: Plan, factor: Factor): number[] | null {
  const r = factor.root();
  const own = plan.get(r);
  if (own) return own;
  const children = r.children();
  if (children) return keptAxisIndices(plan, children);
  const segments = r.segments();
  if (!segments) return null;
  const parts = segments.map((s) => keptOf(plan, s));
  if (parts.every((k) => k === null)) return null;
  const out: number[] = [];
  let offset = 0;
  segments.forEach((s, i) => {
    for (const k of parts[i] ?? range(s.root().size)) out.push(offset + k);
    offset += s.root().size;
  });
  return out;
}

/** Kept indices along an axis made of `factors` (mixed radix, major → minor). */
export function keptAxisIndices(plan: Plan, factors: Factor[]): number[] | null {
  const leaves = factors.flatMap((f) => f.leaves());
  const kept = leaves.map((l) => keptOf(plan, l));
  if (kept.every((k) => k === null)) return null;
  let indices = [0];
  leaves.forEach((leaf, i) => {
    const keep = kept[i] ?? range(leaf.size);
    const next: number[] = [];
    for (const p of indices) for (const k of keep) next.push(p * leaf.size + k);
    indices = next;
  });
  return indices;
}
