/**
 * Global allocation: instead of the same ratio in every block, every prunable unit of every
 * block — an MLP hidden channel, an attention head, or a per-head dim (the same dim of every
 * head) — is scored, and the lowest units go first until as many parameters are removed as the
 * per-block ratios would remove. Blocks that matter keep more, blocks that do not lose more.
 * Scores are compared as they are (NViT's global ranking; gradient criteria are in loss units),
 * or standardised per kind across blocks first (z-scores: FLAP's adaptive structure search).
 *
 * @module
 */
import type { ComputeCore } from "./core/mod.ts";
import type { Factor } from "./analysis/factors.ts";
import type { Group } from "./analysis/groups.ts";
import { attentionScores, type Criterion, mlpScores } from "./importance.ts";
import { tensorNumel } from "./onnx/tensor.ts";
import { PruneError } from "./errors.ts";

/** Units to remove per group, by kind. */
export interface GroupCounts {
  heads?: number;
  dims?: number;
  channels?: number;
}

/** What global allocation needs of the pruning settings. */
export interface AllocationSettings {
  pruningRatio: number;
  headPruningRatio: number;
  pruneNumHeads: boolean;
  pruneHeadDims: boolean;
  roundTo: number;
  criterion: Criterion;
  /** Standardise scores per kind across blocks (FLAP) instead of comparing them as they are. */
  standardise: boolean;
  /** Units the per-block ratios would remove from a group (the budget, in parameters). */
  localCounts: (group: Group) => GroupCounts;
}

interface Unit {
  group: number;
  kind: keyof GroupCounts;
  score: number;
  /** Parameters removed with the unit. */
  cost: number;
}

/** Parameters of the group's weights that one unit of `factor` (of `units`) carries. */
function unitCost(group: Group, factor: Factor, units: number): number {
  const seen = new Set<string>();
  let total = 0;
  for (const t of group.members) {
    if (seen.has(t.ref.name)) continue;
    if (!t.factors.flatMap((f) => f.leaves()).includes(factor)) continue;
    seen.add(t.ref.name);
    total += tensorNumel(t.ref.tensor);
  }
  return total / units;
}

function standardise(units: Unit[]) {
  const n = units.length;
  if (n === 0) return;
  const mean = units.reduce((s, u) => s + u.score, 0) / n;
  const sd = Math.sqrt(units.reduce((s, u) => s + (u.score - mean) ** 2, 0) / n) || 1;
  for (const u of units) u.score = (u.score - mean) / sd;
}

/** Units to remove from each group under a global ranking with the local ratios' budget. */
export async function globalCounts(
  core: ComputeCore,
  groups: Group[],
  s: AllocationSettings,
): Promise<Map<Group, GroupCounts>> {
  const byKind: Record<keyof GroupCounts, Unit[]> = { heads: [], dims: [], channels: [] };
  const sizes: Required<GroupCounts>[] = [];
  let budget = 0;
  for (const [i, group] of groups.entries()) {
    sizes.push({ heads: 0, dims: 0, channels: 0 });
    const local = s.localCounts(group);
    if (group.kind === "attention") {
      if (group.kvGroups) {
        throw new PruneError(
          "bad-option",
          `global allocation does not handle grouped-query attention yet (block "${group.name}")`,
        );
      }
      const heads = s.pruneNumHeads && !group.headsBlocked && (local.heads ?? 0) > 0;
      const dims = s.pruneHeadDims && !group.dimsBlocked && (local.dims ?? 0) > 0;
      if (!heads && !dims) continue;
      const scores = await attentionScores(core, group, s.criterion, true);
      if (heads) {
        const cost = unitCost(group, group.heads, group.heads.size);
        scores.heads.forEach((v) => byKind.heads.push({ group: i, kind: "heads", score: v, cost }));
        sizes[i].heads = group.heads.size;
        budget += local.heads! * cost;
      }
      if (dims) {
        const cost = unitCost(group, group.qkDim, group.qkDim.size) +
          (group.vDim === group.qkDim ? 0 : unitCost(group, group.vDim, group.vDim.size));
        scores.dims.forEach((v) => byKind.dims.push({ group: i, kind: "dims", score: v, cost }));
        sizes[i].dims = group.qkDim.size;
        budget += local.dims! * cost;
      }
    } else if (group.kind === "mlp" && !group.blocked && (local.channels ?? 0) > 0) {
      const scores = await mlpScores(core, group, s.criterion, true);
      const cost = unitCost(group, group.channels, group.channels.size);
      scores.forEach((v) => byKind.channels.push({ group: i, kind: "channels", score: v, cost }));
      sizes[i].channels = group.channels.size;
      budget += local.channels! * cost;
    }
  }
  if (s.standardise) Object.values(byKind).forEach(standardise);
  const units = Object.values(byKind).flat().sort((a, b) => a.score - b.score);
  const removed = sizes.map(() => ({ heads: 0, dims: 0, channels: 0 }));
  let spent = 0;
  for (const u of units) {
    if (spent >= budget) break;
    // Every block keeps at least one unit of each kind (and one multiple of roundTo).
    const floor = u.kind === "heads" ? 1 : Math.min(s.roundTo, sizes[u.group][u.kind]);
    if (sizes[u.group][u.kind] - removed[u.group][u.kind] <= floor) continue;
    removed[u.group][u.kind]++;
    spent += u.cost;
  }
  const counts = new Map<Group, GroupCounts>();
  groups.forEach((g, i) => {
    const r = removed[i], size = sizes[i];
    // Kept dims and channels are rounded down to a multiple of roundTo, as per-block ratios do.
    const round = (kind: "dims" | "channels") => {
      if (!size[kind] || !r[kind]) return r[kind];
      const kept = size[kind] - r[kind];
      return size[kind] - Math.max(kept - (kept % s.roundTo), Math.min(s.roundTo, size[kind]));
    };
    counts.set(g, { heads: r.heads, dims: round("dims"), channels: round("channels") });
  });
  return counts;
}
