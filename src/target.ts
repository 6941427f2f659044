/**
 * Pruning to a target (NViT): "fit in 25 M parameters", "half the MACs", "2× faster". The model
 * is pruned in steps; each step scores every unit of the current (already pruned) model again —
 * calibration statistics and gradients included — ranks them globally, and removes the lowest
 * units worth a share of the remaining gap. Every block keeps a floor of each kind (`minKeep`),
 * so no target empties a block. Pruning stops when the target is met; the report says how close
 * it got and what every step did.
 *
 * A speed-up target is planned on the latency model's estimates and judged by a measurement: the
 * step that reaches the goal has the neighbourhood of its shape timed exactly first, then the
 * pruned model is timed against the original by interleaved rounds, and when the measured
 * speed-up misses the goal, or passes it by more than the timing noise, that last step is done
 * again with a corrected budget. "Met" comes from that measurement only.
 *
 * @module
 */
import { originalAsBuffer, originalNeededBy } from "./runtime/model_session.ts";
import { fidelity } from "./evaluate.ts";
import { PruneError } from "./errors.ts";
import type { ModelProto } from "./onnx/proto.ts";
import type { BlockReport, PruneReport } from "./report.ts";
import { largestTensor, pruneModel, type PruneResult, type RunOptions } from "./prune.ts";
import type { Metric, UnitKind } from "./allocate.ts";
import { createCore } from "./core/mod.ts";
// Steps done again start from the model's bytes before them.
import { decodeModel, encodeModel } from "./onnx/model_io.ts";
import { distillModel, readBatches } from "./distill/mod.ts";
import { searches, searchPrune } from "./search/mod.ts";

/** Share of each kind every block keeps at least under a target, unless asked otherwise. */
export const DEFAULT_MIN_KEEP = 0.125;
/** The floors a search tries under a parameter or MAC target when none is given. */
const SEARCHED_FLOORS = [DEFAULT_MIN_KEEP, 0] as const;

/**
 * The fewest units of a kind a block of `size` keeps under a target: `minKeep` of it (rounded up
 * to `roundTo`), and never less than one head or two channels (one `roundTo`).
 */
export function keptFloor(kind: UnitKind, size: number, minKeep: number, roundTo = 1): number {
  const asked = Math.ceil(minKeep * size - 1e-9);
  if (kind === "heads") return Math.min(size, Math.max(1, asked));
  const rounded = Math.ceil(asked / roundTo) * roundTo;
  return Math.min(size, Math.max(Math.min(Math.max(2, roundTo), size), rounded));
}

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
  /** Share of each kind (MLP channels, heads, head dims, embedding width) of the original that
   * every block keeps at least (default {@link DEFAULT_MIN_KEEP}; 0: down to one head and two
   * channels). Left open under a parameter or MAC target with a `search`, the search tries
   * both. */
  minKeep?: number;
  /** The latency model, for `speedup` (see latency/). */
  latency?: LatencyEstimator;
  /** Corrections of the last step a speed-up target may make after measuring (default 3). */
  corrections?: number;
  /** Called with the model after every step (e.g. to measure it); the next step prunes the same
   * object further, so copy it to keep it. A corrected last step is passed again, with
   * `correction` set. */
  onStep?: (model: ModelProto, step: TargetStep) => void | Promise<void>;
}

/** A pruned model timed against the original by interleaved rounds. */
export interface SpeedupCheck {
  /** The original's median over the rounds (ms). */
  originalMs: number;
  /** The pruned model's median over the rounds (ms). */
  prunedMs: number;
  /** Median of the rounds' speed-ups. */
  speedup: number;
  /** The lowest round's speed-up (with `high`: the timing noise). */
  low: number;
  /** The highest round's speed-up. */
  high: number;
  /** Interleaved rounds timed. */
  rounds: number;
}

/** Estimated latency of a model, and the latency one unit of a group saves. */
export interface LatencyEstimator {
  /** Estimated latency (ms) of the model as it is. */
  estimate(model: ModelProto): Promise<number>;
  /** Per-unit savings for the next step, computed on `model`. */
  costs(model: ModelProto): Promise<RunOptions["latencyCost"]>;
  /** Times the blocks of these models exactly; later estimates near them use those timings.
   * With `near` (a model on the way to the goal, never the one to be estimated): that model is
   * timed against the original, the estimates fitted through the two; returns the original's
   * estimate then. */
  refine?(models: ModelProto[], near?: ModelProto): Promise<number | undefined>;
  /** Times `pruned` against the original (its bytes) by interleaved rounds. */
  compare?(original: Uint8Array, pruned: ModelProto): Promise<SpeedupCheck>;
}

/** One step of a target run. */
export interface TargetStep {
  /** Parameters after the step. */
  params: number;
  /** MACs after the step. */
  macs: number;
  /** Estimated latency after the step (ms), with a latency model. */
  latencyMs?: number;
  /** The last step done again after the measurement (its attempt: 1, 2, …). */
  correction?: number;
}

/** The report of a target run. */
export interface TargetReport {
  /** What the goal counts. */
  metric: Metric;
  /** Goal in the metric's unit (parameters, MACs, or estimated milliseconds; for a speed-up,
   * on the scale of the original's last timing: see `LatencyEstimator.refine`). */
  goal: number;
  /** Value reached (for latency: estimated), and whether the goal is met — for a speed-up, by
   * the measured median speed-up, never by the estimate. */
  reached: number;
  /** Whether the value reached is at or under the goal. */
  met: boolean;
  /** The original model's value. */
  before: number;
  /** Every step, in order. */
  steps: TargetStep[];
  /** A speed-up target: the speed-up asked for. */
  speedup?: number;
  /** A speed-up target: the final model timed against the original, and how many times the
   * last step was done again after such a timing. */
  measured?: SpeedupCheck & { corrections: number };
  /** What the run could not do as asked (one kind took the whole budget, floors reached). */
  warnings?: string[];
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

/** The original size of a kind in a group, from the original's group reports. */
function originalSize(
  groups: PruneReport["groups"],
  name: string,
  kind: UnitKind,
  kvGroupsPolicy: boolean,
): number | undefined {
  const g = groups.find((x) => x.name === name);
  if (!g) return undefined;
  switch (kind) {
    case "heads":
      return kvGroupsPolicy && g.size.kvHeads
        ? g.size.kvHeads
        : g.size.heads / (g.size.kvHeads ?? 1);
    case "dims":
    case "qk":
      return g.size.qkDim;
    case "v":
      return g.size.vDim;
    default:
      return g.size.channels;
  }
}

/** Kinds the run may prune, and those it did, in words. */
function kindsTaken(
  options: RunOptions,
  before: BlockReport[],
  after: BlockReport[],
): { allowed: string[]; taken: string[] } {
  const allowed: string[] = [], taken = new Set<string>();
  if (options.pruneMlp !== false) allowed.push("MLP channels");
  if (options.pruneNumHeads) allowed.push("heads");
  if (options.pruneHeadDims) {
    allowed.push(...(options.separateQkV ? ["Q/K dims", "V dims"] : ["head dims"]));
  }
  if (options.pruneEmbedding) allowed.push("embedding channels");
  for (const b of after) {
    const a = before.find((x) => x.kind === b.kind && x.name === b.name);
    if (b.kind === "attention" && a?.kind === "attention") {
      if (b.heads.after < a.heads.before) taken.add("heads");
      const dims = options.separateQkV ? "Q/K dims" : "head dims";
      if (b.headDim.after < a.headDim.before) taken.add(dims);
      const v = b.vHeadDim ?? b.headDim, v0 = a.vHeadDim ?? a.headDim;
      if (options.separateQkV && v.after < v0.before) taken.add("V dims");
    } else if (b.kind !== "attention" && a && a.kind !== "attention") {
      if (b.channels.after < a.channels.before) {
        taken.add(b.kind === "mlp" ? "MLP channels" : "embedding channels");
      }
    }
  }
  return { allowed, taken: allowed.filter((k) => taken.has(k)) };
}

/**
 * Prunes `model` until the target is met (or nothing more can go). `options` says what may be
 * pruned (head flags, `pruneEmbedding`), the criterion, calibration and ranking
 * (`allocation`, default "global"); ratios are ignored. A speed-up target ranks units by
 * importance per millisecond saved (`perCost`) unless `latencyEta` is given.
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
  const minKeep = target.minKeep ?? DEFAULT_MIN_KEEP;
  if (!(minKeep >= 0 && minKeep < 1)) {
    throw new PruneError("bad-option", `minKeep must be in [0, 1), got ${minKeep}`);
  }
  const maxCorrections = target.corrections ?? 3;
  if (!Number.isInteger(maxCorrections) || maxCorrections < 0) {
    throw new PruneError(
      "bad-option",
      `corrections must be a whole number ≥ 0, got ${maxCorrections}`,
    );
  }
  if (searches(options)) {
    // Every candidate reaches the target in one step unless steps are given. An open floor is
    // searched under parameter and MAC targets; a latency model is timed down to one floor.
    const once = { ...target, steps: target.steps ?? 1 };
    const floors = target.minKeep === undefined && target.speedup === undefined
      ? SEARCHED_FLOORS
      : undefined;
    return await searchPrune(
      model,
      options,
      (m, o, c) =>
        pruneToTarget(m, {
          ...once,
          // A speed-up target's latency grid was timed down to its own floor.
          minKeep: target.speedup === undefined ? c.minKeep ?? once.minKeep : once.minKeep,
        }, o),
      { steps: once.steps, floors },
    );
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
    // Distilled once, after the last step, from the model as given; evaluated against it.
    const original = options.distill || options.evaluation
      ? originalAsBuffer(model, originalNeededBy(options))
      : undefined;
    // A dry look at the original for its size (and the latency model's estimate).
    const first = await pruneModel(model, { ...base, dryRun: true, budget: undefined });
    const metric: Metric = target.params !== undefined
      ? "params"
      : target.macs !== undefined
      ? "macs"
      : "latency";
    const latency = metric === "latency" ? target.latency! : undefined;
    const measure = async (m: ModelProto, r: PruneReport) =>
      metric === "params"
        ? r.params.after
        : metric === "macs"
        ? r.macs.after
        : await target.latency!.estimate(m);
    // The original's own size: a dry run's "after" is what its options would remove.
    let before = metric === "params"
      ? first.report.params.before
      : metric === "macs"
      ? first.report.macs.before
      : await target.latency!.estimate(model);
    let goal = metric === "params"
      ? goalOf(target.params, first.report.params.before, "target params")!
      : metric === "macs"
      ? goalOf(target.macs, first.report.macs.before, "target MACs")!
      : before / target.speedup!;
    // Floors in the original's sizes: a later step sees a pruned block, not what it had.
    const roundTo = options.roundTo ?? 1;
    const kvGroupsPolicy = options.gqaPolicy === "kv-groups";
    const minKept = (group: { name: string }, kind: UnitKind) => {
      const size = originalSize(first.report.groups, group.name, kind, kvGroupsPolicy);
      return size === undefined ? 0 : keptFloor(kind, size, minKeep, roundTo);
    };
    const perCost = options.perCost ??
      (metric === "latency" && options.latencyEta === undefined && base.allocation === "global");
    // The original's bytes, for the final measurement (pruning works on the model in place).
    const originalBytes = latency?.compare ? encodeModel(model) : undefined;

    let current = model, value = before, report = first.report;
    let blocks: BlockReport[] | undefined;
    const history: TargetStep[] = [];
    let stalled: { from: number; to: number } | undefined;
    /** The state before the last step, to do it again with another budget. */
    let last: { bytes: Uint8Array; amount: number; blocks?: BlockReport[] } | undefined;
    let refinements = 0;
    /** The model whose block shapes were last timed exactly. */
    let refined: ModelProto | undefined;
    const runStep = async (m: ModelProto, amount: number) => {
      const latencyCost = latency ? await latency.costs(m) : undefined;
      // Under the "kv-groups" policy a block down to one KV head keeps its query heads: the
      // next step no longer sees the groups and would remove query heads inside the last one.
      const lastKv = kvGroupsPolicy
        ? (blocks ?? []).filter((b) => b.kind === "attention" && b.kvHeads?.after === 1)
          .map((b) => b.name)
        : [];
      return await pruneModel(m, {
        ...base,
        keepHeads: [...(options.keepHeads ?? []), ...lastKv],
        budget: { metric, amount },
        latencyCost,
        perCost,
        minKept,
      });
    };
    // A few extra steps mend the estimate's misses; a step that removes nothing ends the run.
    for (let step = 0; step < steps + 3 && value > goal; step++) {
      const share = (value - goal) / Math.max(1, steps - step);
      const bytes = originalBytes ? encodeModel(current) : undefined;
      let amount = share;
      let result = await runStep(current, amount);
      let next = await measure(result.model, result.report);
      // Units are costed at the current shape; a step that removes many of them can save much
      // more or less than that sum says. A step whose estimate falls far from its share — the
      // last one: short of the goal, or more than 2% past it — is done again with its budget
      // scaled (three times at most); the closest attempt stays.
      const lastStep = steps - step <= 1;
      const off = (drop: number) =>
        lastStep
          ? (drop < share ? share - drop : Math.max(0, drop - share - 0.02 * goal))
          : (drop < 0.7 * share ? 0.7 * share - drop : Math.max(0, drop - 1.4 * share));
      let tried = { amount, drop: value - next };
      for (let redo = 0; bytes && redo < 3 && off(tried.drop) > 0; redo++) {
        // Aim inside the window: the share, or on the last step a little past it.
        const aim = lastStep ? share + 0.01 * goal : share;
        const scaled = tried.amount * aim / Math.max(tried.drop, 0.1 * share);
        if (Math.abs(scaled - tried.amount) < 1e-3 * tried.amount) break;
        const again = await runStep(decodeModel(bytes), scaled);
        const v = await measure(again.model, again.report);
        tried = { amount: scaled, drop: value - v };
        if (off(tried.drop) < off(value - next)) {
          result = again;
          next = v;
          amount = scaled;
        }
      }
      current = result.model;
      if (latency?.refine && bytes && next <= goal && refinements < 2) {
        // The step that reaches the goal: the shapes around it (before and after the step)
        // timed exactly, the model before it timed against the original, and the step's result
        // estimated again with them.
        const pre = decodeModel(bytes);
        const anchored = await latency.refine([pre, result.model], step > 0 ? pre : undefined);
        if (anchored !== undefined) {
          // The estimates are now on the scale of the original timed just now.
          before = anchored;
          goal = before / target.speedup!;
          value = await measure(pre, report);
        }
        refinements++;
        refined = result.model;
        next = await measure(result.model, result.report);
      }
      if (!(next < value)) {
        stalled = { from: value, to: next };
        // The step worked on the model in place: back to the model before it.
        if (bytes) current = decodeModel(bytes);
        break;
      }
      last = bytes ? { bytes, amount, blocks } : undefined;
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

    if (latency?.refine && originalBytes && refined !== current) {
      // Stopped short of the goal (no step reached it, or the last one stalled): the final
      // shapes timed exactly too, and the model before the last step against the original.
      const anchored = await latency.refine([current], last ? decodeModel(last.bytes) : undefined);
      if (anchored !== undefined) {
        before = anchored;
        goal = before / target.speedup!;
      }
      value = await measure(current, report);
      history[history.length - 1] = { ...history[history.length - 1], latencyMs: value };
    }
    let measured: TargetReport["measured"];
    if (originalBytes && latency?.compare) {
      const speedup = target.speedup!;
      type Attempt = {
        amount: number;
        model: ModelProto;
        value: number;
        report: PruneReport;
        check: SpeedupCheck;
      };
      // Met, and not past the goal by more than the rounds' spread.
      const good = (c: SpeedupCheck) => c.speedup >= speedup && c.low <= speedup;
      const attempts: Attempt[] = [{
        amount: last?.amount ?? 0,
        model: current,
        value,
        report,
        check: await latency.compare(originalBytes, current),
      }];
      let missed = -Infinity, passed = Infinity; // budgets known to miss / to overshoot
      let tries = 0;
      while (
        last && !good(attempts.at(-1)!.check) && attempts.length <= maxCorrections &&
        tries++ < 2 * maxCorrections
      ) {
        const a = attempts.at(-1)!;
        if (a.check.speedup < speedup) missed = Math.max(missed, a.amount);
        else passed = Math.min(passed, a.amount);
        // The measured miss in milliseconds, on the estimate's scale (the original's estimate
        // against its measurement now): positive means prune more, negative put back.
        const missMs = a.check.prunedMs - a.check.originalMs / speedup;
        let amount = a.amount + missMs * (before / a.check.originalMs);
        if (!(amount > missed && amount < passed)) {
          amount = Number.isFinite(missed) && Number.isFinite(passed)
            ? (missed + passed) / 2
            : Number.isFinite(passed)
            ? passed * 0.9
            : missed * 1.1;
        }
        // Only the last step is done again: at most all of it is put back (but a sliver).
        amount = Math.max(amount, 0.05 * last.amount);
        if (Math.abs(amount - a.amount) < 1e-3 * before) break;
        const redo = await runStep(decodeModel(last.bytes), amount);
        const v = await measure(redo.model, redo.report);
        if (attempts.some((x) => x.value === v)) {
          // The same model as an earlier attempt (a floor, or rounding): timing it again says
          // nothing new. More budget for the same model: nothing more can go.
          if (amount > a.amount && v === a.value) break;
          if (amount > a.amount) missed = Math.max(missed, amount);
          else passed = Math.min(passed, amount);
          if (passed - missed < 1e-3 * before) break;
          continue;
        }
        attempts.push({
          amount,
          model: redo.model,
          value: v,
          report: redo.report,
          check: await latency.compare(originalBytes, redo.model),
        });
      }
      // The attempt that meets the goal with the least to spare, else the fastest.
      const meeting = attempts.filter((x) => x.check.speedup >= speedup)
        .sort((x, y) => x.check.speedup - y.check.speedup);
      const best = meeting[0] ??
        [...attempts].sort((x, y) => y.check.speedup - x.check.speedup)[0];
      const index = attempts.indexOf(best);
      if (index > 0) {
        current = best.model;
        value = best.value;
        report = best.report;
        blocks = last!.blocks ? compose(last!.blocks, best.report.blocks) : best.report.blocks;
        const done: TargetStep = {
          params: best.report.params.after,
          macs: best.report.macs.after,
          latencyMs: best.value,
          correction: index,
        };
        history[history.length - 1] = done;
        await target.onStep?.(current, done);
      }
      measured = { ...best.check, corrections: attempts.length - 1 };
    }

    const warnings: string[] = [];
    const finalBlocks = blocks ?? report.blocks;
    const { allowed, taken } = kindsTaken(options, first.report.blocks, finalBlocks);
    if (allowed.length > 1 && taken.length === 1) {
      const unit = metric === "latency" ? "millisecond" : metric === "macs" ? "MAC" : "parameter";
      warnings.push(
        `${taken[0]} took the whole budget: ${allowed.filter((k) => k !== taken[0]).join(", ")} ` +
          `took no part` +
          (perCost
            ? ` (everywhere they cost more importance per ${unit} saved)`
            : ` (their scores ranked higher everywhere)`),
      );
    }
    const atFloor = finalBlocks.filter((b) =>
      b.kind === "mlp" &&
      b.channels.after <= minKept(b, b.kind === "mlp" ? "channels" : "embedding")
    );
    const reached = measured ? measured.speedup >= target.speedup! : value <= goal;
    if (atFloor.length && !reached) {
      warnings.push(
        `${atFloor.length} of ${finalBlocks.filter((b) => b.kind === "mlp").length} MLP ` +
          `blocks are at their floor (${minKeep} of their channels, minKeep): the goal is out of ` +
          `reach without pruning further into them` +
          (options.pruneNumHeads || options.pruneHeadDims ? "" : " or pruning attention"),
      );
    }
    // Attention can hold a target short too (heads, or dims, at their floor in every block).
    const attention = finalBlocks.filter((b) => b.kind === "attention");
    const attentionAtFloor = new Set<string>();
    let attentionBlocksAtFloor = 0;
    for (const b of attention) {
      if (b.kind !== "attention") continue;
      const kinds: string[] = [];
      if (options.pruneNumHeads && !b.kvHeads && b.heads.after <= minKept(b, "heads")) {
        kinds.push("heads");
      }
      if (options.pruneHeadDims) {
        const v = b.vHeadDim ?? b.headDim;
        if (options.separateQkV) {
          if (b.headDim.after <= minKept(b, "qk")) kinds.push("Q/K dims");
          if (v.after <= minKept(b, "v")) kinds.push("V dims");
        } else if (b.headDim.after <= minKept(b, "dims")) kinds.push("head dims");
      }
      kinds.forEach((k) => attentionAtFloor.add(k));
      if (kinds.length) attentionBlocksAtFloor++;
    }
    if (attentionBlocksAtFloor && !reached) {
      warnings.push(
        `${attentionBlocksAtFloor} of ${attention.length} attention blocks are at their floor ` +
          `for ${[...attentionAtFloor].join(", ")} (${minKeep} of them, minKeep): the goal may ` +
          `be out of reach without pruning further into them`,
      );
    }
    const final: PruneReport = {
      ...report,
      params: { before: first.report.params.before, after: report.params.after },
      macs: { ...first.report.macs, after: report.macs.after },
      blocks: finalBlocks,
      notes: [
        // What one step's allocation spent its budget on is said for the whole run (warnings).
        ...report.notes.filter((n) => !n.startsWith("the budget went to")),
        `pruned in ${history.length} step${history.length > 1 ? "s" : ""} to a ${metric} target` +
        (measured?.corrections
          ? `, the last step corrected ${measured.corrections} time${
            measured.corrections > 1 ? "s" : ""
          } after timing it`
          : ""),
      ],
    };
    if (options.distill) {
      final.distill = await distillModel(
        current,
        original!,
        await readBatches(options.calibration),
        options.distill,
      );
    }
    if (options.evaluation) {
      final.fidelity = await fidelity(original!, encodeModel(current), options.evaluation);
    }
    return {
      model: current,
      report: final,
      stats: { tensorsSliced: 0, shapeValuesRewritten: 0, scalarsFrozen: 0 },
      target: {
        metric,
        goal,
        reached: value,
        // A speed-up is met only by the measurement.
        met: metric === "latency"
          ? !!measured && measured.speedup >= target.speedup!
          : value <= goal,
        before,
        steps: history,
        ...(metric === "latency" ? { speedup: target.speedup } : {}),
        ...(measured ? { measured } : {}),
        ...(warnings.length ? { warnings } : {}),
      },
    };
  } finally {
    if (!options.core) core.dispose();
  }
}
