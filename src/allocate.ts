/**
 * Global allocation: instead of the same ratio in every block, every prunable unit of every
 * block — an MLP hidden channel, an attention head, a per-head dim (the same dim of every head),
 * a channel of the embedding width — is scored, and the lowest units go first until the budget
 * is spent: as many parameters as the per-block ratios would remove, or an amount of parameters,
 * MACs or estimated latency asked for by a target. Blocks that matter keep more.
 *
 * How units of different kinds meet on one scale:
 * - "global": scores as they are, each kind divided by a factor (NViT: heads ÷ 6, embedding
 *   channels ÷ the number of blocks; gradient criteria are in loss units);
 * - "flap": scores standardised per kind across blocks (z-scores; FLAP's adaptive structure);
 * - "isomorphic": each kind ranked only against itself with its own share of the budget
 *   (Torch-Pruning's isomorphic ranking: only groups of the same structure compete).
 *
 * With a budget (a target), "global" scores are per weight: a unit's score is an average over
 * its layers and its cells (heads, dims), so a head dim, which spans every head's q, k, v and
 * output weights, scores more than an MLP channel of the same weights' magnitude; divided by
 * the weights one cell of one layer holds, every kind is on the scale of a mean |w|ᵖ, and the
 * budget goes where that is lowest. A budget spent on one kind alone, where others could go, is
 * said in a note.
 *
 * With `perCost` (speed-up targets) the per-weight score times the unit's weights is a unit's
 * whole score: what it removes. That, divided by what removing the unit saves of the budget's
 * metric, orders the units: importance lost per millisecond saved. It is NViT's latency-aware
 * saliency I − η·ΔLatency with η set from the data: the units removed are those with
 * I − η·ΔLatency < 0 for the η at which they spend the budget. Heads, head dims and MLP channels
 * compete on what they cost.
 *
 * @module
 */
import type { ComputeCore } from "./core/mod.ts";
import type { Factor } from "./analysis/factors.ts";
import type { AttentionGroup, Group } from "./analysis/groups.ts";
import { attentionScores, type Criterion, dimScores, mlpScores } from "./importance.ts";
import { tensorNumel } from "./onnx/tensor.ts";
import type { ProbedTensor } from "./runtime/probe.ts";
import { PruneError } from "./errors.ts";

/** Units to remove per group, by kind. */
export interface GroupCounts {
  heads?: number;
  dims?: number;
  /** Q/K dims and V dims, when they are pruned separately. */
  qk?: number;
  v?: number;
  channels?: number;
}

/** What one unit of a global ranking removes: a head, a dim of every head (Q, K and V alike, or
 * Q/K and V apart), an MLP channel, or a channel of the embedding width. */
export type UnitKind = "heads" | "dims" | "qk" | "v" | "channels" | "embedding";
export type Ranking = "global" | "flap" | "isomorphic";
/** What a budget counts: parameters, MACs, or estimated latency (ms). */
export type Metric = "params" | "macs" | "latency";
export type GqaPolicy = "query-heads" | "kv-groups";

/** NViT's defaults: a head weighs like 6 units of the other kinds, an embedding channel like
 * one unit per block it crosses; `blocks` 0: all 1 (per-weight scores, see the module doc). */
export function defaultKindScale(blocks: number): Record<UnitKind, number> {
  if (blocks === 0) return { heads: 1, dims: 1, qk: 1, v: 1, channels: 1, embedding: 1 };
  return { heads: 6, dims: 1, qk: 1, v: 1, channels: 1, embedding: Math.max(1, blocks) };
}

/** Cost of removing one unit of a kind from a group, in every metric. */
export interface UnitCost {
  params: number;
  macs: number;
  /** Estimated latency saved (ms), when a latency model is given. */
  latency?: number;
}

/** What global allocation needs of the pruning settings. */
export interface AllocationSettings {
  pruneNumHeads: boolean;
  pruneHeadDims: boolean;
  /** Grouped-query attention: what a head unit is (see `headUnits`). */
  gqaPolicy: GqaPolicy;
  /** Head dims as two kinds, Q/K dims and V dims (NViT), where q, k and v are separate. */
  separateDims: boolean;
  /** Which kinds take part (MLP channels, embedding width); heads and dims follow the flags. */
  pruneMlp: boolean;
  pruneEmbedding: boolean;
  roundTo: number;
  criterion: Criterion;
  ranking: Ranking;
  /** Divisors of the scores per kind ("global" ranking). */
  kindScale: Record<UnitKind, number>;
  /** Probed shapes of the model (positions each layer runs on, for MAC costs). */
  shapes: Map<string, ProbedTensor>;
  /** The budget: an amount of a metric, or (undefined) the parameters the per-block ratios
   * would remove, `localCounts` giving those. */
  budget?: { metric: Metric; amount: number };
  localCounts: (group: Group) => GroupCounts & { embedding?: number };
  /** Estimated latency saved by removing one unit (latency budgets). */
  latencyCost?: (group: Group, kind: UnitKind) => number;
  /** Latency-aware ranking: score − η × latency saved (needs `latencyCost`). */
  latencyEta?: number;
  /** Rank by whole score per unit of the budget's metric saved (see the module notes). */
  perCost?: boolean;
  /** Units of a kind a group keeps at least (a floor per block), beyond the structural one. */
  minKept?: (group: { name: string }, kind: UnitKind) => number;
  /** Attention blocks whose heads must all stay. */
  headsFixed?: (group: Group) => boolean;
  /** Groups left alone (a per-block ratio of 0). */
  skip?: (group: Group) => boolean;
  /** Receives what the report should say about the allocation. */
  onNote?: (note: string) => void;
}

interface Unit {
  group: number;
  kind: UnitKind;
  score: number;
  cost: number;
  /** Parameters the unit holds. */
  params: number;
  /** η × latency the unit saves, taken off its (scaled) score. */
  saves: number;
}

/** Positions (tokens × batch-1 samples) a linear layer runs on. */
function positions(shapes: Map<string, ProbedTensor>, output: string): number {
  const dims = shapes.get(output)?.dims;
  if (!dims || dims.length === 0) return 1;
  return dims.reduce((a, b) => a * b, 1) / Math.max(1, dims[dims.length - 1]);
}

/** Parameters and MACs that one unit of `factor` (one of `units`) carries in the group. */
export function unitCost(
  group: Group,
  factor: Factor,
  units: number,
  shapes: Map<string, ProbedTensor>,
): UnitCost {
  const seen = new Set<string>();
  let params = 0, macs = 0;
  for (const t of group.members) {
    if (seen.has(t.ref.name)) continue;
    if (!t.factors.flatMap((f) => f.atoms()).includes(factor)) continue;
    seen.add(t.ref.name);
    const n = tensorNumel(t.ref.tensor);
    params += n;
    // Weights of linear layers cost a MAC per element per position; biases and scales nothing.
    if (t.role !== "operand" && t.linear) macs += n * positions(shapes, t.linear.output[0]);
  }
  return { params: params / units, macs: macs / units };
}

/** The unit head pruning removes: a head, or under grouped-query attention with the
 * "kv-groups" policy a KV head with every query head of its group; with "query-heads" the same
 * query head of every KV group. */
export function headUnits(
  group: AttentionGroup,
  policy: GqaPolicy,
): { factor: Factor; blocked: string | null } {
  return group.kvGroups && policy === "kv-groups"
    ? { factor: group.kvGroups, blocked: group.kvGroupsBlocked }
    : { factor: group.heads, blocked: group.headsBlocked };
}

/** Raw scores average a unit's energy over the layers that hold it and the cells (heads or
 * dims) it spans; times this, a score is per weight (see the module doc). */
function perWeight(group: Group, factor: Factor | Factor[], cells: number, params: number) {
  const factors = [factor].flat();
  const layers = new Set<string>();
  for (const t of group.members) {
    if (t.factors.flatMap((f) => f.atoms()).some((a) => factors.includes(a))) {
      layers.add(`${t.ref.name}:${t.axis}:${t.role}`);
    }
  }
  return params > 0 ? (layers.size * cells) / params : 1;
}

const KIND_NAMES: Record<UnitKind, string> = {
  heads: "heads",
  dims: "head dims",
  qk: "Q/K dims",
  v: "V dims",
  channels: "MLP channels",
  embedding: "embedding channels",
};

function standardise(units: Unit[]) {
  const n = units.length;
  if (n === 0) return;
  const mean = units.reduce((s, u) => s + u.score, 0) / n;
  const sd = Math.sqrt(units.reduce((s, u) => s + (u.score - mean) ** 2, 0) / n) || 1;
  for (const u of units) u.score = (u.score - mean) / sd;
}

/** Query heads of an attention block (a dim's score is a mean over them). */
function queryHeads(group: AttentionGroup): number {
  return group.heads.size * (group.kvGroups?.size ?? 1);
}

/** Units to remove from each group (embedding channels under `channels` of its group). */
export async function globalCounts(
  core: ComputeCore,
  groups: Group[],
  s: AllocationSettings,
): Promise<Map<Group, GroupCounts>> {
  const none = () => ({ heads: 0, dims: 0, qk: 0, v: 0, channels: 0, embedding: 0 });
  const byKind: Record<UnitKind, Unit[]> = {
    heads: [],
    dims: [],
    qk: [],
    v: [],
    channels: [],
    embedding: [],
  };
  const sizes = groups.map(none);
  const localBudget: Record<UnitKind, number> = none();
  const metric = s.budget?.metric ?? "params";
  const perWeightScores = s.perCost || (!!s.budget && s.ranking === "global");
  const add = (
    i: number,
    kind: UnitKind,
    scores: ArrayLike<number>,
    cost: UnitCost,
    scale = 1,
  ) => {
    const c = metric === "latency" ? s.latencyCost?.(groups[i], kind) ?? 0 : cost[metric];
    const saves = s.latencyEta && s.latencyCost ? s.latencyEta * s.latencyCost(groups[i], kind) : 0;
    const k = perWeightScores ? scale : 1;
    for (let j = 0; j < scores.length; j++) {
      byKind[kind].push({
        group: i,
        kind,
        score: scores[j] * k,
        cost: c,
        params: cost.params,
        saves,
      });
    }
    sizes[i][kind] = scores.length;
    const local = s.localCounts(groups[i]);
    const n = kind === "embedding" ? local.embedding : local[kind];
    localBudget[kind] += (n ?? 0) * c;
  };
  for (const [i, group] of groups.entries()) {
    if (s.skip?.(group)) continue;
    if (group.kind === "attention") {
      const heads = s.pruneNumHeads && !headUnits(group, s.gqaPolicy).blocked &&
        !s.headsFixed?.(group);
      const separate = s.pruneHeadDims && s.separateDims;
      const dims = s.pruneHeadDims && !separate && !group.dimsBlocked;
      if (separate && group.qkDim === group.vDim) {
        throw new PruneError(
          "bad-option",
          `attention block "${group.name}" computes Q, K and V with one fused layer whose head ` +
            `dims are shared: Q/K and V dims cannot be pruned separately there`,
        );
      }
      if (separate) {
        for (
          const [kind, factor, blocked] of [
            ["qk", group.qkDim, group.qkBlocked],
            ["v", group.vDim, group.vBlocked],
          ] as const
        ) {
          if (blocked) continue;
          const scores = await dimScores(core, group, factor, s.criterion, true);
          const cost = unitCost(group, factor, factor.size, s.shapes);
          add(i, kind, scores, cost, perWeight(group, factor, queryHeads(group), cost.params));
        }
      }
      if (!heads && !dims) continue;
      const scores = await attentionScores(core, group, s.criterion, true);
      if (heads) {
        const unit = headUnits(group, s.gqaPolicy).factor;
        const headScores = unit === group.heads ? scores.heads : scores.kvGroups!;
        const cost = unitCost(group, unit, unit.size, s.shapes);
        // A query head's score is a mean over its dims (and KV groups); a KV group's a sum.
        const cells = unit === group.heads ? (group.kvGroups?.size ?? 1) * group.qkDim.size : 1;
        add(i, "heads", headScores, cost, perWeight(group, unit, cells, cost.params));
      }
      if (dims) {
        const qk = unitCost(group, group.qkDim, group.qkDim.size, s.shapes);
        const v = group.vDim === group.qkDim
          ? { params: 0, macs: 0 }
          : unitCost(group, group.vDim, group.vDim.size, s.shapes);
        const cost = { params: qk.params + v.params, macs: qk.macs + v.macs };
        const factors = [group.qkDim, group.vDim];
        const scale = perWeight(group, factors, queryHeads(group), cost.params);
        add(i, "dims", scores.dims, cost, scale);
      }
    } else if (group.kind === "mlp" && s.pruneMlp && !group.blocked) {
      const scores = await mlpScores(core, group, s.criterion, true);
      const cost = unitCost(group, group.channels, group.channels.size, s.shapes);
      add(i, "channels", scores, cost, perWeight(group, group.channels, 1, cost.params));
    } else if (group.kind === "embedding" && s.pruneEmbedding && !group.blocked) {
      const scores = await mlpScores(core, group, s.criterion, true);
      const cost = unitCost(group, group.channels, group.channels.size, s.shapes);
      add(i, "embedding", scores, cost, perWeight(group, group.channels, 1, cost.params));
    }
  }
  const removed = sizes.map(none);
  // Every block keeps a head, and two channels of each other kind (one would leave an axis of
  // size 1, which later analyses read as broadcast, not channels), or one roundTo — and what
  // `minKept` asks.
  const keepAtLeast = (i: number, kind: UnitKind, size: number) =>
    Math.min(
      size,
      Math.max(
        kind === "heads" ? 1 : Math.min(Math.max(2, s.roundTo), size),
        s.minKept?.(groups[i], kind) ?? 0,
      ),
    );
  const take = (units: Unit[], budget: number) => {
    let spent = 0;
    for (const u of units.sort((a, b) => a.score - b.score)) {
      if (spent >= budget) break;
      const size = sizes[u.group][u.kind];
      if (size - removed[u.group][u.kind] <= keepAtLeast(u.group, u.kind, size) || u.cost <= 0) {
        continue;
      }
      removed[u.group][u.kind]++;
      spent += u.cost;
    }
    return spent;
  };
  const kinds = Object.keys(byKind) as UnitKind[];
  const total = s.budget?.amount ?? kinds.reduce((a, k) => a + localBudget[k], 0);
  if (s.ranking === "isomorphic") {
    // Each kind spends its share: the local one, or the target split as the local would be.
    const localTotal = kinds.reduce((a, k) => a + localBudget[k], 0);
    for (const k of kinds) {
      const share = s.budget
        ? (localTotal > 0 ? localBudget[k] / localTotal : 1 / kinds.length) * total
        : localBudget[k];
      for (const u of byKind[k]) u.score -= u.saves;
      take(byKind[k], share);
    }
  } else if (s.perCost && s.ranking === "global") {
    // Per-weight score × the unit's weights: its whole score, per unit of the budget it saves.
    for (const k of kinds) {
      for (const u of byKind[k]) {
        u.score = (u.score * u.params) / (s.kindScale[k] || 1) / Math.max(u.cost, 1e-30);
      }
    }
    take(kinds.flatMap((k) => byKind[k]), total);
  } else {
    if (s.ranking === "flap") kinds.forEach((k) => standardise(byKind[k]));
    else {
      for (const k of kinds) for (const u of byKind[k]) u.score /= s.kindScale[k] || 1;
    }
    for (const k of kinds) for (const u of byKind[k]) u.score -= u.saves;
    take(kinds.flatMap((k) => byKind[k]), total);
  }
  // Kinds that had a unit to give (a block at its floor has none).
  const offered = kinds.filter((k) =>
    byKind[k].some((u) =>
      u.cost > 0 && sizes[u.group][k] > keepAtLeast(u.group, k, sizes[u.group][k])
    )
  );
  const spent = offered.filter((k) => removed.some((r) => r[k] > 0));
  if (s.budget && offered.length > 1 && spent.length === 1) {
    const kept = offered.filter((k) => k !== spent[0]).map((k) => KIND_NAMES[k]).join(", ");
    s.onNote?.(
      `the budget went to ${KIND_NAMES[spent[0]]} only: ${kept} ` +
        `${s.perCost ? "lost more per unit saved" : "scored higher"} in every block ` +
        `(to give every kind a share of its own: allocation "isomorphic")`,
    );
  }
  const counts = new Map<Group, GroupCounts>();
  groups.forEach((g, i) => {
    const r = removed[i], size = sizes[i];
    // Kept dims and channels are rounded down to a multiple of roundTo, as per-block ratios do.
    const round = (kind: "dims" | "qk" | "v" | "channels" | "embedding") => {
      if (!size[kind] || !r[kind]) return r[kind];
      const kept = size[kind] - r[kind];
      return size[kind] - Math.max(kept - (kept % s.roundTo), keepAtLeast(i, kind, size[kind]));
    };
    counts.set(g, {
      heads: r.heads,
      dims: round("dims"),
      qk: round("qk"),
      v: round("v"),
      channels: g.kind === "embedding" ? round("embedding") : round("channels"),
    });
  });
  return counts;
}
