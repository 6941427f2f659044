/**
 * Group magnitude importance with Torch-Pruning's semantics (`GroupMagnitudeImportance`):
 * every weight coupled to a channel contributes Σ|w|^p over that channel's row or column
 * (biases are not counted), contributions of one weight to the same channel are added, the
 * group's score is the mean over its weights, normalised by its mean over channels. Head
 * scores are the mean over a head's channels, dim scores the mean over heads.
 *
 * @module
 */
import { type ComputeCore, dissimilarityNow, Float32Bytes } from "./core/mod.ts";
import type { Factor } from "./analysis/factors.ts";
import type { AttentionGroup, EmbeddingGroup, MlpGroup } from "./analysis/groups.ts";
import type { TensorTouch } from "./analysis/trace.ts";
import { tensorDims, tensorRawBytes, tensorToFloat32 } from "./onnx/tensor.ts";
import { DataType } from "./onnx/proto.ts";
import { deferredRawData } from "./onnx/external_data.ts";
import type { ChannelStats } from "./calibration/stats.ts";
import type { GateStats } from "./calibration/gradients.ts";
import { dequantize } from "./analysis/quantization.ts";

/**
 * L1/L2 group magnitude, or a data-aware criterion over calibration statistics of each consumer
 * layer's input X (Wanda-sp: Σᵢ|Wᵢⱼ|·‖Xⱼ‖₂; FLAP's fluctuation: ‖W:,ⱼ‖²·Var(Xⱼ)), scored on the
 * weights that read the channels.
 */
export type Criterion = "l1" | "l2" | DataCriterion | GradientCriterion;

export interface DataCriterion {
  /** "apma": Wanda-sp weighted by each channel's dissimilarity to the other channels of its
   * head (APMA's similarity weight, used here without APMA's training). */
  kind: "wanda" | "flap" | "apma";
  /** Statistics by tensor name (the consumer layers' inputs). */
  stats: Map<string, ChannelStats>;
}

/**
 * Gradient criteria over the gates of the channels at the consumer layers' inputs (see
 * calibration/gradients.ts): "taylor" — first-order Taylor, (Σ s)² over the removed group
 * (NViT; Σ g·w over the consumer's weights); "fisher" — second order: per head the Fisher of
 * the head's gate Σ (Σ_head s)² (Kwon et al. 2022), per channel or dim the sum of its diagonal
 * Fisher terms Σ s²; "michel" — E|Σ s| per head (Michel et al. 2019), E|s| per channel.
 */
export interface GradientCriterion {
  kind: "taylor" | "fisher" | "michel";
  gates: Map<string, GateStats>;
}

function isGradient(c: Criterion): c is GradientCriterion {
  return typeof c === "object" &&
    (c.kind === "taylor" || c.kind === "fisher" || c.kind === "michel");
}

/**
 * Cell of each element of the touched axis, cells laid out over `cells` (major → minor); leaves
 * of the axis not in a cell are summed into it. Undefined when a cell factor is not on the axis;
 * on a segmented axis (a fused q | k | v weight), -1 for elements of segments without the cells.
 */
export function channelCells(touch: TensorTouch, cells: Factor[][]): Int32Array | undefined {
  const cellSizes = cells.map((alts) => alts[0].size);
  const leaves = touch.factors.flatMap((f) => f.leaves());
  if (leaves.some((l) => l.segments())) return segmentedCells(leaves, cells);
  const where = cells.map((alts) => leaves.findIndex((l) => alts.includes(l)));
  if (where.some((w) => w < 0)) return undefined;
  const sizes = leaves.map((l) => l.size);
  const n = sizes.reduce((a, b) => a * b, 1);
  const out = new Int32Array(n);
  const coord = new Array<number>(leaves.length);
  for (let i = 0; i < n; i++) {
    let rest = i;
    for (let k = leaves.length - 1; k >= 0; k--) {
      coord[k] = rest % sizes[k];
      rest = Math.floor(rest / sizes[k]);
    }
    let cell = 0;
    for (let c = 0; c < cells.length; c++) cell = cell * cellSizes[c] + coord[where[c]];
    out[i] = cell;
  }
  return out;
}

/** Coordinates (factor → index) of every element of an axis made of `leaves`, in order. */
function coordinates(leaves: Factor[]): Map<Factor, number>[] {
  let all: Map<Factor, number>[] = [new Map()];
  for (const leaf of leaves) {
    const segments = leaf.segments();
    const own = segments
      ? segments.flatMap((s) => coordinates(s.leaves()))
      : Array.from({ length: leaf.size }, (_, i) => new Map([[leaf, i]]));
    all = all.flatMap((a) => own.map((b) => new Map([...a, ...b])));
  }
  return all;
}

function segmentedCells(leaves: Factor[], cells: Factor[][]): Int32Array | undefined {
  const cellSizes = cells.map((alts) => alts[0].size);
  const roots = cells.map((alts) => alts.map((f) => f.root()));
  let found = false;
  const out = Int32Array.from(coordinates(leaves), (coords) => {
    let cell = 0;
    for (let c = 0; c < cells.length; c++) {
      const k = roots[c].map((f) => coords.get(f)).find((v) => v !== undefined);
      if (k === undefined) return -1;
      cell = cell * cellSizes[c] + k;
    }
    found = true;
    return cell;
  });
  return found ? out : undefined;
}

/**
 * Per-cell sums of a gate statistic over the members' activations (each activation once):
 * Σ s ("sum"), Σ s² ("squares") or Σ|s| ("absolute"). Undefined when no member has gates.
 */
function gateCellSums(
  members: TensorTouch[],
  cells: Factor[][],
  gates: Map<string, GateStats>,
  field: "sum" | "squares" | "absolute",
): Float64Array | undefined {
  const total = cells.reduce((a, alts) => a * alts[0].size, 1);
  const out = new Float64Array(total);
  const seen = new Set<string>();
  for (const touch of members) {
    if (touch.role !== "weight-in") continue;
    const x = touch.linear!.input[0];
    const g = gates.get(x);
    if (!g || seen.has(x)) continue;
    const where = channelCells(touch, cells);
    if (!where || where.length !== g.channels) continue;
    seen.add(x);
    for (let i = 0; i < where.length; i++) if (where[i] >= 0) out[where[i]] += g[field][i];
  }
  return seen.size ? out : undefined;
}

/**
 * Gradient scores of groups of cells: `groupOf` maps each cell to its group; Taylor squares the
 * group's summed gate gradient, Fisher and Michel add their (non-negative) cell terms.
 */
function gradientGroupScores(
  members: TensorTouch[],
  cells: Factor[][],
  criterion: GradientCriterion,
  groupOf: (cell: number) => number,
  groups: number,
): Float32Array | undefined {
  const field = criterion.kind === "taylor"
    ? "sum"
    : criterion.kind === "fisher"
    ? "squares"
    : "absolute";
  const perCell = gateCellSums(members, cells, criterion.gates, field);
  if (!perCell) return undefined;
  const out = new Float64Array(groups);
  perCell.forEach((v, i) => out[groupOf(i)] += v);
  return Float32Array.from(out, (v) => criterion.kind === "taylor" ? v * v : v);
}

/**
 * Head scores from the head-level gate sums, when the gates carry them: Michel's importance
 * E|Σ_{head} s|, or the Fisher of the head's gate E(Σ_{head} s)² (Kwon et al.), which unlike
 * the sum of its channels' diagonal terms counts how their gradients add up or cancel.
 */
function headGateScores(
  members: TensorTouch[],
  gates: Map<string, GateStats>,
  heads: number,
  field: "cellAbsolute" | "cellSquares",
): Float32Array | undefined {
  for (const touch of members) {
    if (touch.role !== "weight-in") continue;
    const cells = gates.get(touch.linear!.input[0])?.[field];
    if (cells?.length === heads) return Float32Array.from(cells);
  }
  return undefined;
}

/** Scores of the channels of a group, laid out over `cells` (major → minor), e.g. [heads, dims]. */
export async function groupChannelScores(
  core: ComputeCore,
  members: TensorTouch[],
  cells: Factor[][],
  criterion: Criterion,
  raw = false,
): Promise<Float32Array> {
  const cellSizes = cells.map((alts) => alts[0].size);
  const total = cellSizes.reduce((a, b) => a * b, 1);
  // Sums in float64: near-ties between channels are decided by the last bits.
  const sum = new Float64Array(total);
  const seen = new Set<string>();
  if (isGradient(criterion)) {
    const scores = gradientGroupScores(members, cells, criterion, (i) => i, total);
    // No reading layer with gates (a channel read only by Q·Kᵀ): magnitude decides.
    return scores ?? groupChannelScores(core, members, cells, "l2", raw);
  }
  const data = typeof criterion === "object" ? criterion : undefined;
  let count = 0;
  for (const touch of members) {
    const key = `${touch.ref.name}:${touch.axis}:${touch.role}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const activation = data && touch.role === "weight-in"
      ? data.stats.get(touch.linear!.input[0])
      : undefined;
    if (data && !activation) continue;
    const p = data ? (data.kind === "flap" ? 2 : 1) : criterion === "l1" ? 1 : 2;
    const local = await axisScores(core, touch, p);
    const where = channelCells(touch, cells);
    if (!where) continue;
    if (activation && activation.channels === local.length) {
      for (let i = 0; i < local.length; i++) {
        local[i] *= data!.kind === "flap" ? activation.variance(i) : activation.norm(i);
      }
      if (data!.kind === "apma") {
        // Heads (all cells but the innermost) bound the channels a channel is compared with.
        const heads = cells.length > 1 ? channelCells(touch, cells.slice(0, -1)) : undefined;
        const weight = dissimilarity(activation, heads);
        for (let i = 0; i < local.length; i++) local[i] *= weight[i];
      }
    } else if (activation) continue;
    for (let i = 0; i < local.length; i++) if (where[i] >= 0) sum[where[i]] += local[i];
    count++;
  }
  // No consumer with statistics (a channel read only by Q·Kᵀ): magnitude decides.
  if (count === 0 && data) return groupChannelScores(core, members, cells, "l2", raw);
  if (count === 0) return new Float32Array(total);
  // Raw scores compare across layers (global allocation); normalised ones only within a group.
  if (raw) return Float32Array.from(sum, (v) => v / count);
  let mean = 0;
  for (let i = 0; i < total; i++) mean += sum[i] / count;
  mean /= total;
  return Float32Array.from(sum, (v) => mean > 0 ? v / count / mean : 0);
}

/**
 * 1 − max |cos(xᵢ, xⱼ)| over the other channels j of the same head (`heads`: head of each
 * channel; undefined: the whole layer), from the Gram matrix: a channel another one nearly
 * duplicates carries little of its own. Without a Gram matrix, all ones.
 */
export function dissimilarity(x: ChannelStats, heads?: Int32Array): Float64Array {
  if (!x.gram) return new Float64Array(x.channels).fill(1);
  return dissimilarityNow(x.gram, x.channels, heads);
}

/** float16 bytes as bits, copied only when they do not start at an even byte. */
function float16Bits(bytes: Uint8Array): Uint16Array {
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  return new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2);
}

/** Scores already computed, by the object holding a tensor's bytes (its data, or the reader of
 * data read when asked for: a new object once the tensor is cut or rewritten), then axis and p.
 * Grouped-query attention scores the same weights for heads and for KV groups. */
const scored = new WeakMap<object, Map<string, Float32Array>>();

/** Σ|w|^p along every axis but the touched one (a copy: callers weight it in place). */
async function axisScores(
  core: ComputeCore,
  touch: TensorTouch,
  p: 1 | 2,
): Promise<Float32Array> {
  const t = touch.ref.tensor;
  const bytes = Object.getOwnPropertyDescriptor(t, "rawData")?.value;
  const holder: object | undefined = deferredRawData(t)?.read ??
    (bytes instanceof Uint8Array && bytes.length > 0 ? bytes : undefined);
  const key = `${touch.axis}:${p}:${tensorDims(t).join("x")}`;
  const known = holder && scored.get(holder)?.get(key);
  if (known) return known.slice();
  const scores = await computeAxisScores(core, touch, p);
  if (holder) {
    const byKey = scored.get(holder) ?? new Map<string, Float32Array>();
    byKey.set(key, scores.slice());
    scored.set(holder, byKey);
  }
  return scores;
}

function computeAxisScores(core: ComputeCore, touch: TensorTouch, p: 1 | 2): Promise<Float32Array> {
  const t = touch.ref.tensor;
  if (touch.quant) {
    // Quantized weights are scored on their real values, scale × (q − zero point).
    const { data, dims } = dequantize(t, touch.quant);
    return core.channelLpScores(data, dims, touch.axis, p);
  }
  const dims = tensorDims(t);
  const data = t.dataType === DataType.FLOAT16
    ? float16Bits(tensorRawBytes(t))
    : t.dataType === DataType.FLOAT
    ? new Float32Bytes(tensorRawBytes(t))
    : tensorToFloat32(t);
  return core.channelLpScores(data, dims, touch.axis, p);
}

/**
 * Scores of an attention block: per head (mean over the head's dims), per dim (mean over heads),
 * and with grouped-query attention per KV group (its query heads and K/V weights together).
 */
export async function attentionScores(
  core: ComputeCore,
  group: AttentionGroup,
  criterion: Criterion,
  raw = false,
): Promise<{ heads: Float32Array; dims: Float32Array; kvGroups?: Float32Array }> {
  // With Q/K and V heads of different sizes there is no common per-head dim grid: heads are
  // scored over all their channels (dims cannot be pruned then).
  const sameSize = group.qkDim.size === group.vDim.size;
  const dims = sameSize ? [[group.qkDim, group.vDim]] : [];
  const g = group.kvGroups?.size ?? 1, r = group.heads.size, d = sameSize ? group.qkDim.size : 1;
  const cells = [...(group.kvGroups ? [[group.kvGroups]] : []), [group.heads], ...dims];
  if (isGradient(criterion)) {
    const fallback = await attentionScores(core, group, "l2", raw);
    const score = (groupOf: (cell: number) => number, n: number) =>
      gradientGroupScores(group.members, cells, criterion, groupOf, n);
    let heads = score((c) => Math.floor(c / d) % r, r);
    if (criterion.kind !== "taylor") {
      const field = criterion.kind === "michel" ? "cellAbsolute" : "cellSquares";
      const perHead = headGateScores(group.members, criterion.gates, g * r, field);
      if (perHead) {
        heads = new Float32Array(r);
        for (let i = 0; i < g * r; i++) heads[i % r] += perHead[i];
      }
    }
    return {
      heads: heads ?? fallback.heads,
      dims: score((c) => c % d, d) ?? fallback.dims,
      ...(group.kvGroups
        ? { kvGroups: score((c) => Math.floor(c / (r * d)), g) ?? fallback.kvGroups }
        : {}),
    };
  }
  // Query-head cells: K and V weights (which have no query-head axis) do not enter them.
  const channel = await groupChannelScores(core, group.members, cells, criterion, raw);
  const perHead = await core.groupScores(channel, g * r, "mean");
  const heads = new Float32Array(r);
  for (let i = 0; i < g; i++) for (let j = 0; j < r; j++) heads[j] += perHead[i * r + j] / g;
  const perDim = new Float32Array(d);
  for (let i = 0; i < g * r; i++) {
    for (let j = 0; j < d; j++) perDim[j] += channel[i * d + j] / (g * r);
  }
  if (!group.kvGroups) return { heads, dims: perDim };
  const kvGroups = await groupChannelScores(
    core,
    group.members,
    [[group.kvGroups]],
    criterion,
    raw,
  );
  return { heads, dims: perDim, kvGroups };
}

/** Scores of one per-head dim factor (Q/K dims or V dims) alone: the mean over heads. */
export async function dimScores(
  core: ComputeCore,
  group: AttentionGroup,
  dim: Factor,
  criterion: Criterion,
  raw = false,
): Promise<Float32Array> {
  const cells = [...(group.kvGroups ? [[group.kvGroups]] : []), [group.heads], [dim]];
  const heads = (group.kvGroups?.size ?? 1) * group.heads.size, d = dim.size;
  if (isGradient(criterion)) {
    const scores = gradientGroupScores(group.members, cells, criterion, (c) => c % d, d);
    if (scores) return scores;
    criterion = "l2";
  }
  const channel = await groupChannelScores(core, group.members, cells, criterion, raw);
  const perDim = new Float32Array(d);
  for (let i = 0; i < heads; i++) {
    for (let j = 0; j < d; j++) perDim[j] += channel[i * d + j] / heads;
  }
  return perDim;
}

export function mlpScores(
  core: ComputeCore,
  group: MlpGroup | EmbeddingGroup,
  criterion: Criterion,
  raw = false,
) {
  return groupChannelScores(core, group.members, [[group.channels]], criterion, raw);
}
