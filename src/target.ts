/**
 * Pruning to a target (NViT): "fit in 25 M parameters", "half the MACs", "2× faster". The model
 * is pruned in steps; each step scores every unit of the current (already pruned) model again —
 * calibration statistics and gradients included — ranks them globally, and removes the lowest
 * units worth a share of the remaining gap. Pruning stops when the target is met; the report
 * says how close it got and what every step did.
 *
 * @module
 */
import { PruneError } from "./errors.ts";
import type { ModelProto } from "./onnx/proto.ts";
import type { BlockReport, PruneReport } from "./report.ts";
import { largestTensor, pruneModel, type PruneResult, type RunOptions } from "./prune.ts";
import type { Metric } from "./allocate.ts";
import { createCore } from "./core/mod.ts";
import { encodeModel } from "./onnx/model_io.ts";
import { distillModel, readBatches } from "./distill/mod.ts";

/** A target and how to reach it. */
export interface TargetOptions {
  /** Parameters to end with: a count, or (≤ 1) a share of the original's. */
  params?: number;
  /** MACs to end with: a count, or (≤ 1) a share of the original's. */
  macs?: number;
  /** Speed-up to reach on the latency model's runtime (> 1). */
  speedup?: number;
  /** Pruning steps (default 4). */
  steps?: number;
  /** The latency model, for `speedup` (see latency/). */
  latency?: LatencyEstimator;
  /** Called with the model after every step (e.g. to measure it); the next step prunes the same
   * object further, so copy it to keep it. */
  onStep?: (model: ModelProto, step: TargetStep) => void | Promise<void>;
}

/** Estimated latency of a model, and the latency one unit of a group saves. */
export interface LatencyEstimator {
  /** Estimated latency (ms) of the model as it is. */
  estimate(model: ModelProto): Promise<number>;
  /** Per-unit savings for the next step, computed on `model`. */
  costs(model: ModelProto): Promise<RunOptions["latencyCost"]>;
}

/** One step of a target run. */
export interface TargetStep {
  /** Parameters after the step. */
  params: number;
  /** MACs after the step. */
  macs: number;
  /** Estimated latency after the step (ms), with a latency model. */
  latencyMs?: number;
}

/** The report of a target run. */
export interface TargetReport {
  /** What the goal counts. */
  metric: Metric;
  /** Goal in the metric's unit (parameters, MACs, or milliseconds). */
  goal: number;
  /** Value reached, and whether it is at or under the goal. */
  reached: number;
  /** Whether the value reached is at or under the goal. */
  met: boolean;
  /** The original model's value. */
  before: number;
  /** Every step, in order. */
  steps: TargetStep[];
}

function goalOf(value: number | undefined, original: number, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value <= 0) {
    throw new PruneError("bad-option", `${name} must be positive, got ${value}`);
  }
  if (value > 1 && !Number.isInteger(value)) {
    throw new PruneError(
      "bad-option",
      `${name} ${value} is neither a share of the original (below 1) nor a whole count`,
    );
  }
  const goal = value <= 1 ? value * original : value;
  if (goal >= original) {
    throw new PruneError(
      "bad-option",
      `${name} ${value} asks for ${Math.round(goal)}, not less than the model's ${original}`,
    );
  }
  return goal;
}

/** Composes kept indices of a later step (relative to the earlier result) onto the earlier. */
function compose(first: BlockReport[], next: BlockReport[]): BlockReport[] {
  return next.map((b) => {
    const a = first.find((x) => x.kind === b.kind && x.name === b.name);
    if (!a) return b;
    if (a.kind === "attention" && b.kind === "attention") {
      const heads = b.keptHeads.map((h) => a.keptHeads[h]);
      // Per kept head, its dims: this step's choice among the dims the earlier steps kept.
      const perHead = (earlier?: number[][], later?: number[][]) =>
        later?.map((d, i) => {
          const before = earlier?.[b.keptHeads[i]];
          return before ? d.map((j) => before[j]) : d;
        }) ?? (earlier && b.keptHeads.map((h) => earlier[h]));
      const dims = perHead(a.keptDims, b.keptDims);
      const vDims = perHead(a.keptVDims, b.keptVDims);
      const vHeadDim = a.vHeadDim || b.vHeadDim
        ? {
          before: a.vHeadDim?.before ?? a.headDim.before,
          after: b.vHeadDim?.after ?? a.vHeadDim?.after ?? b.headDim.after,
        }
        : undefined;
      return {
        ...b,
        heads: { before: a.heads.before, after: b.heads.after },
        // A block down to one KV head reads as plain multi-head attention in later steps.
        ...(a.kvHeads
          ? { kvHeads: { before: a.kvHeads.before, after: b.kvHeads?.after ?? a.kvHeads.after } }
          : {}),
        headDim: { before: a.headDim.before, after: b.headDim.after },
        keptHeads: heads,
        ...(dims ? { keptDims: dims } : {}),
        ...(vDims ? { keptVDims: vDims } : {}),
        ...(vHeadDim ? { vHeadDim } : {}),
      };
    }
    if (a.kind !== "attention" && b.kind !== "attention") {
      return {
        ...b,
        channels: { before: a.channels.before, after: b.channels.after },
        keptChannels: b.keptChannels.map((c) => a.keptChannels[c]),
      };
    }
    return b;
  });
}

/**
 * Prunes `model` until the target is met (or nothing more can go). `options` says what may be
 * pruned (head flags, `pruneEmbedding`), the criterion, calibration and ranking
 * (`allocation`, default "global"); ratios are ignored.
 */
export async function pruneToTarget(
  model: ModelProto,
  target: TargetOptions,
  options: RunOptions = {},
): Promise<PruneResult & { target: TargetReport }> {
  const given = [target.params, target.macs, target.speedup].filter((v) => v !== undefined);
  if (given.length !== 1) {
    throw new PruneError("bad-option", "give exactly one target: params, MACs or speed-up");
  }
  const steps = target.steps ?? 4;
  if (!Number.isInteger(steps) || steps < 1) {
    throw new PruneError("bad-option", `steps must be a positive integer, got ${steps}`);
  }
  if (target.speedup !== undefined && !(target.speedup > 1)) {
    throw new PruneError("bad-option", `speed-up must be above 1, got ${target.speedup}`);
  }
  if (target.speedup !== undefined && !target.latency) {
    throw new PruneError("bad-option", "a speed-up target needs a latency model");
  }
  const core = options.core ??
    await createCore({ backend: options.backend ?? "auto", largestBytes: largestTensor(model) });
  try {
    const base: RunOptions = {
      ...options,
      core,
      allocation: options.allocation && options.allocation !== "local"
        ? options.allocation
        : "global",
      evaluation: undefined,
      distill: undefined,
    };
    // Distilled once, after the last step, from the model as given.
    const teacher = options.distill ? encodeModel(model) : undefined;
    // A dry look at the original for its size (and the latency model's estimate).
    const first = await pruneModel(model, { ...base, dryRun: true, budget: undefined });
    const metric: Metric = target.params !== undefined
      ? "params"
      : target.macs !== undefined
      ? "macs"
      : "latency";
    const measure = async (m: ModelProto, r: PruneReport) =>
      metric === "params"
        ? r.params.after
        : metric === "macs"
        ? r.macs.after
        : await target.latency!.estimate(m);
    // The original's own size: a dry run's "after" is what its options would remove.
    const before = metric === "params"
      ? first.report.params.before
      : metric === "macs"
      ? first.report.macs.before
      : await target.latency!.estimate(model);
    const goal = metric === "params"
      ? goalOf(target.params, first.report.params.before, "target params")!
      : metric === "macs"
      ? goalOf(target.macs, first.report.macs.before, "target MACs")!
      : before / target.speedup!;

    let current = model, value = before, report = first.report;
    let blocks: BlockReport[] | undefined;
    const history: TargetStep[] = [];
    let stalled: { from: number; to: number } | undefined;
    // A few extra steps mend the estimate's misses; a step that removes nothing ends the run.
    for (let step = 0; step < steps + 3 && value > goal; step++) {
      const share = (value - goal) / Math.max(1, steps - step);
      const latencyCost = metric === "latency" ? await target.latency!.costs(current) : undefined;
      // Under the "kv-groups" policy a block down to one KV head keeps its query heads: the
      // next step no longer sees the groups and would remove query heads inside the last one.
      const lastKv = options.gqaPolicy === "kv-groups"
        ? (blocks ?? []).filter((b) => b.kind === "attention" && b.kvHeads?.after === 1)
          .map((b) => b.name)
        : [];
      const result = await pruneModel(current, {
        ...base,
        keepHeads: [...(options.keepHeads ?? []), ...lastKv],
        budget: { metric, amount: share },
        latencyCost,
      });
      const next = await measure(result.model, result.report);
      if (!(next < value)) {
        stalled = { from: value, to: next };
        break;
      }
      current = result.model;
      value = next;
      blocks = blocks ? compose(blocks, result.report.blocks) : result.report.blocks;
      report = result.report;
      const done: TargetStep = {
        params: result.report.params.after,
        macs: result.report.macs.after,
        ...(metric === "latency" ? { latencyMs: next } : {}),
      };
      history.push(done);
      await target.onStep?.(current, done);
    }
    if (history.length === 0) {
      throw new PruneError(
        "unsupported-graph",
        "nothing could be pruned towards the target (no prunable unit left, or none allowed)" +
          (stalled
            ? metric === "latency"
              ? `; the latency model estimates the first step at ${stalled.to.toFixed(3)} ms ` +
                `against ${stalled.from.toFixed(3)} ms now (no saving: its table may be flat ` +
                `for these units; profile again with a larger --profile-budget)`
              : `; the first step gives ${stalled.to} against ${stalled.from}`
            : ""),
      );
    }
    const final: PruneReport = {
      ...report,
      params: { before: first.report.params.before, after: report.params.after },
      macs: { ...first.report.macs, after: report.macs.after },
      blocks: blocks ?? report.blocks,
      notes: [
        ...report.notes,
        `pruned in ${history.length} step${history.length > 1 ? "s" : ""} to a ${metric} target`,
      ],
    };
    if (teacher) {
      final.distill = await distillModel(
        current,
        teacher,
        await readBatches(options.calibration),
        options.distill!,
      );
    }
    return {
      model: current,
      report: final,
      stats: { tensorsSliced: 0, shapeValuesRewritten: 0, scalarsFrozen: 0 },
      target: { metric, goal, reached: value, met: value <= goal, before, steps: history },
    };
  } finally {
    if (!options.core) core.dispose();
  }
}
