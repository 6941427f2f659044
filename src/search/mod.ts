/**
 * Choosing the criterion, compensation and allocation of a run on held-out calibration data.
 * A share of the calibration samples is held out (a seeded split); the model is pruned once
 * per candidate setting on the rest — the candidates share one pass of statistics (and gate
 * gradients) over it — and each candidate is scored by its fidelity to the original model on
 * the held-out samples: mean KL divergence for classifiers, mean cosine similarity otherwise.
 * The best candidate's model is the result. Whatever the options fix is not searched.
 *
 * Default candidates (from bench/RESULTS.md: reweighting and the global ranking win on the
 * benchmarks; FLAP's standardised ranking loses): criteria l2, taylor, fisher for classifiers
 * and wanda, flap, apma otherwise; "reweight" compensation, and "bias" too for models that are
 * not classifiers (on the sentence-embedding benchmark FLAP's bias beats reweighting when a
 * quarter of the heads go, ranked across blocks; it reads the same pass of statistics); local
 * and global allocation for ratio runs, global for targets (a target always ranks across
 * blocks).
 *
 * @module
 */
import { originalAsBuffer, originalNeededBy } from "../runtime/model_session.ts";
import type { ModelProto } from "../onnx/proto.ts";
import type { PruneOptions } from "../options.ts";
import type { Compensation } from "../compensate.ts";
import {
  largestTensor,
  type PruneResult,
  type RunOptions,
  taylorNeedsClassifier,
} from "../prune.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { structuralCopy } from "../onnx/structural_copy.ts";
import { createCore } from "../core/mod.ts";
import { distillModel, readBatches } from "../distill/mod.ts";
import { fidelity } from "../evaluate.ts";
import { PruneError } from "../errors.ts";
import { SharedStatistics } from "./shared.ts";
import { isClassifierOutput } from "../graph/output_kind.ts";
import { splitBatches } from "./split.ts";
import { type CandidateFidelity, candidateFidelity, reference } from "./score.ts";

/** One setting the search tries. */
export interface SearchCandidate {
  /** Channel importance (as the `criterion` option). */
  criterion: NonNullable<PruneOptions["criterion"]>;
  /** Compensation (as the `compensation` option). */
  compensation: Compensation;
  /** How the ratios or the target are spent (as the `allocation` option). */
  allocation: NonNullable<PruneOptions["allocation"]>;
  /** Each block's floor under a target (as the target's `minKeep`; absent: the run's own). */
  minKeep?: number;
}

/** How the search runs (the `search` option of a run). */
export interface SearchOptions {
  /** Share of the calibration samples held out to score the candidates (default 0.25). */
  holdout?: number;
  /** Seed of the held-out split (default 0). */
  seed?: number;
  /** The settings to try instead of the default ones (see the module). */
  candidates?: SearchCandidate[];
}

/** One candidate as the report gives it. */
export interface SearchCandidateReport extends SearchCandidate {
  /** Fidelity to the original on the held-out samples (absent where the candidate failed). */
  fidelity?: CandidateFidelity;
  /** Parameters of the candidate's model. */
  params?: number;
  /** MACs of the candidate's model. */
  macs?: number;
  /** Seconds spent on the candidate (pruning and scoring). */
  seconds: number;
  /** Why the candidate could not be pruned. */
  error?: string;
}

/** What the search did: the candidates, their held-out fidelity and the one chosen. */
export interface SearchReport {
  /** What chose: "kl" (lowest mean KL; classifiers) or "cosine" (highest mean cosine). */
  metric: "kl" | "cosine";
  /** Calibration samples that pruned the candidates, and those held out to score them. */
  samples: { fit: number; heldOut: number };
  /** Seed of the split. */
  seed: number;
  /** The choices searched; the others were fixed by the options. */
  searched: ("criterion" | "compensation" | "allocation" | "minKeep")[];
  /** Every candidate, in the order tried. */
  candidates: SearchCandidateReport[];
  /** Index of the chosen candidate in `candidates`. */
  chosen: number;
  /** Passes of onnxruntime over the calibration data for statistics (shared by candidates). */
  passes: number;
  /** Steps each candidate took towards a target (targets only). */
  steps?: number;
  /** Seconds of the whole search. */
  seconds: number;
}

const GRADIENT = new Set(["taylor", "fisher", "michel"]);

/**
 * The candidate settings: what the options fix, crossed with the defaults for the rest, and
 * with `floors` (each block's floor under a target) when the target leaves the floor open.
 */
export function candidateSettings(
  options: Pick<RunOptions, "criterion" | "compensation" | "allocation">,
  classifier: boolean,
  target: boolean,
  floors?: readonly number[],
): SearchCandidate[] {
  const criteria = options.criterion
    ? [options.criterion]
    : classifier
    ? (["l2", "taylor", "fisher"] as const)
    : (["wanda", "flap", "apma"] as const);
  const compensations = options.compensation
    ? [options.compensation]
    : classifier
    ? ["reweight" as const]
    : (["reweight", "bias"] as const);
  const allocations = options.allocation
    ? [options.allocation]
    : target
    ? ["global" as const]
    : (["local", "global"] as const);
  return criteria.flatMap((criterion) =>
    compensations.flatMap((compensation) =>
      allocations.flatMap((allocation) =>
        floors?.length
          ? floors.map((minKeep) => ({ criterion, compensation, allocation, minKeep }))
          : [{ criterion, compensation, allocation }]
      )
    )
  );
}

/** Whether a run with these options searches: asked to, with calibration data and at least one
 * choice left open. */
export function searches(options: RunOptions): boolean {
  if (!options.search || !options.calibration || options.shared) return false;
  const given = typeof options.search === "object" ? options.search.candidates : undefined;
  return !!given?.length ||
    !(options.criterion && options.compensation && options.allocation);
}

function better(metric: "kl" | "cosine", a: CandidateFidelity, b: CandidateFidelity): boolean {
  if (metric === "cosine") return a.cosine > b.cosine;
  return a.kl < b.kl || (a.kl === b.kl && a.top1Agreement > b.top1Agreement);
}

/** How a target run is searched: its steps per candidate, and the floors to try (none: the
 * target's own floor for every candidate). */
export interface TargetSearch {
  steps: number;
  floors?: readonly number[];
}

/**
 * Prunes `model` (in place, as `run` does) with every candidate setting on the fitting part of
 * the calibration data, and keeps the one most faithful to the original on the held-out part;
 * `run` is one pruning run (a ratio run, or a run to a target, which reads the candidate's
 * floor). Distillation and evaluation, when asked, follow on the chosen model, as in a single
 * run.
 */
export async function searchPrune<R extends PruneResult>(
  model: ModelProto,
  options: RunOptions,
  run: (model: ModelProto, options: RunOptions, candidate: SearchCandidate) => Promise<R>,
  target?: TargetSearch,
): Promise<R> {
  const steps = target?.steps;
  const start = performance.now();
  const search: SearchOptions = typeof options.search === "object" ? options.search : {};
  const share = search.holdout ?? 0.25;
  if (!(share > 0 && share < 1)) {
    throw new PruneError("bad-option", `search holdout must be in (0, 1), got ${share}`);
  }
  const seed = search.seed ?? 0;
  const batches = await readBatches(options.calibration);
  const split = await splitBatches(batches, share, seed);
  if (split.samples.fit < 1 || split.samples.heldOut < 1) {
    throw new PruneError(
      "bad-option",
      "the search needs at least two calibration samples (one to prune with, one to score)",
    );
  }
  // The original's bytes, for distillation and evaluation after the choice (the model given is
  // replaced in place by then).
  const original = options.distill || options.evaluation
    ? originalAsBuffer(model, originalNeededBy(options))
    : undefined;
  const ref = await reference(model, split.heldOut);
  const classifier = ref.rank === 2 && isClassifierOutput(model, [2, ref.width]);
  const metric = classifier ? "kl" : "cosine";
  const settings = search.candidates?.length
    ? search.candidates
    : candidateSettings(options, classifier, target !== undefined, target?.floors);
  // Candidates share the first one's gate gradients: taylor is refused before any is made.
  if (!classifier && settings.some((c) => c.criterion === "taylor")) {
    throw taylorNeedsClassifier(model);
  }
  const shared = new SharedStatistics({
    gradient: settings.some((c) => GRADIENT.has(c.criterion)),
  });
  const core = options.core ??
    await createCore({ backend: options.backend ?? "auto", largestBytes: largestTensor(model) });
  const reports: SearchCandidateReport[] = [];
  let best: { index: number; result: R; fidelity: CandidateFidelity } | undefined;
  let firstError: unknown;
  try {
    for (const setting of settings) {
      const t0 = performance.now();
      try {
        const result = await run(structuralCopy(model), {
          ...options,
          ...setting,
          search: undefined,
          shared,
          core,
          calibration: split.fit,
          evaluation: undefined,
          distill: undefined,
          dryRun: false,
        }, setting);
        const f = await candidateFidelity(result.model, split.heldOut, ref);
        reports.push({
          ...setting,
          fidelity: f,
          params: result.report.params.after,
          macs: result.report.macs.after,
          seconds: (performance.now() - t0) / 1000,
        });
        if (!best || better(metric, f, best.fidelity)) {
          best = { index: reports.length - 1, result, fidelity: f };
        }
      } catch (e) {
        firstError ??= e;
        reports.push({
          ...setting,
          seconds: (performance.now() - t0) / 1000,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  } finally {
    if (!options.core) core.dispose();
  }
  if (!best) throw firstError;
  const chosen = best.result;
  // The result is the model given, changed in place, as after a single run.
  for (const key of Object.keys(model) as (keyof ModelProto)[]) delete model[key];
  Object.assign(model, chosen.model);
  chosen.model = model;
  const c = settings[best.index];
  const searched: SearchReport["searched"] = (["criterion", "compensation", "allocation"] as const)
    .filter((k) => !options[k] || !!search.candidates?.length);
  if (new Set(settings.map((s) => s.minKeep)).size > 1) searched.push("minKeep");
  chosen.report.search = {
    metric,
    samples: split.samples,
    seed,
    searched,
    candidates: reports,
    chosen: best.index,
    passes: shared.passes,
    ...(steps !== undefined ? { steps } : {}),
    seconds: (performance.now() - start) / 1000,
  };
  const floor = c.minKeep === undefined ? "" : `, floor ${c.minKeep}`;
  chosen.report.notes.push(
    `chose ${c.criterion}, ${c.compensation}, ${c.allocation}${floor} among ${settings.length} ` +
      `candidates by ${metric === "kl" ? "KL divergence" : "cosine similarity"} on ` +
      `${split.samples.heldOut} held-out calibration samples (pruned on the other ` +
      `${split.samples.fit})`,
  );
  if (options.distill && !options.mask) {
    chosen.report.distill = await distillModel(model, original!, batches, options.distill);
  }
  if (options.evaluation) {
    chosen.report.fidelity = await fidelity(original!, encodeModel(model), options.evaluation);
  }
  return chosen;
}
