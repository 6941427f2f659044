/**
 * One pruning run, as one straight line:
 * bytes → ModelProto → probe shapes → trace channels → groups → importance + plan → rewrite
 * → verify with onnxruntime → bytes + report.
 *
 * @module
 */
import { originalAsBuffer, originalNeededBy } from "./runtime/model_session.ts";
import { loadCheckSkipped } from "./runtime/load_check.ts";
import { checkAttributes } from "./graph/check_attributes.ts";
import { PruneError } from "./errors.ts";
import type { PruneOptions } from "./options.ts";
import type { BlockReport, GroupReport, PruneReport } from "./report.ts";
import type { ModelProto } from "./onnx/proto.ts";
import { DECODED_FROM, decodeModel, encodeModel } from "./onnx/model_io.ts";
import { structuralCopy } from "./onnx/structural_copy.ts";
import {
  allTensors,
  deferredRawData,
  hasExternalData,
  tensorDataSize,
} from "./onnx/external_data.ts";
import { createSession, ortIsLoaded } from "./runtime/ort.ts";
import { skeleton } from "./runtime/skeleton.ts";
import { symbolicDimSizes } from "./runtime/symbolic_dims.ts";
import { tensorDims, tensorRawBytes } from "./onnx/tensor.ts";
import { Graph, type GraphProto } from "./graph/graph.ts";
import { type ProbedTensor, probeTensors } from "./runtime/probe.ts";
import { type Trace, traceGraph } from "./analysis/trace.ts";
import { findGroups, type Group } from "./analysis/groups.ts";
import { interfaceChanges } from "./analysis/interfaces.ts";
import { subgraphHint } from "./analysis/subgraphs.ts";
import type { Factor } from "./analysis/factors.ts";
import { uniqueScopeNames } from "./graph/scopes.ts";
import { type GroupDecision, makePlan, type Plan } from "./plan.ts";
import { applyPlan, type ApplyStats, maskPlan } from "./apply.ts";
import { unfuseQkv } from "./rewrite/unfuse_qkv.ts";
import {
  applyCompensation,
  type Compensation,
  type PendingUpdate,
  planCompensation,
} from "./compensate.ts";
import { type Evaluation, fidelity } from "./evaluate.ts";
import { type ChannelStats, collectStats } from "./calibration/stats.ts";
import { sessionWeightBytes } from "./runtime/segmented.ts";
import type { CollectedStats, SharedStatistics, StatsNeed } from "./search/shared.ts";
import { searches, type SearchOptions, searchPrune } from "./search/mod.ts";
import { channelCells, type Criterion } from "./importance.ts";
import { buildGradientModel } from "./autodiff/backward.ts";
import { gateReader } from "./calibration/gradients.ts";
import type { OrtTensor } from "./runtime/ort.ts";
import { type ComputeCore, createCore } from "./core/mod.ts";
import { countMacs, countParams } from "./metrics.ts";
import { headUnits, type Metric, type UnitKind } from "./allocate.ts";
import { distillModel, type DistillOptions, readBatches } from "./distill/mod.ts";

/** Calibration batches: feeds by graph input name, one record per batch. */
export type Batches =
  | AsyncIterable<Record<string, OrtTensor>>
  | Iterable<Record<string, OrtTensor>>;

/** A group of coupled channels by kind and name, as in {@link GroupReport}. */
export type GroupRef = Pick<GroupReport, "kind" | "name">;

/** Options of {@link pruneModel} beyond the pruning options. */
export interface RunOptions extends PruneOptions {
  /** Sizes of symbolic input dims other than the batch (e.g. `{ sequence: 128 }`). */
  dimValues?: Record<string, number>;
  /** Report only: analyse and plan, leave the model unchanged. */
  dryRun?: boolean;
  /** Zero the removed channels instead of removing them (same shapes; the equivalence oracle). */
  mask?: boolean;
  /** Calibration batches (feeds by graph input name), for data-aware criteria and compensation;
   * or a function that opens them afresh (pruning to a target passes over them at every step). */
  calibration?: Batches | (() => Batches);
  /** Compensation of the layers that read removed channels. Default "none". */
  compensation?: Compensation;
  /** Ridge of the "reweight" least squares, relative to the mean input energy. Default 0.01. */
  ridge?: number;
  /** The "reweight" Gram matrices are summed over 1 in this many positions (their cost grows
   * with the square of the width). Default 4. */
  gramStride?: number;
  /** Memory for the model's weights in onnxruntime during the statistics pass (half floats
   * counted widened to float32, as its CPU provider holds them): a model whose weights take
   * more runs a segment of its graph at a time, each segment's weights at most half of it (the
   * other half left to its activations and statistics); when its reweighting Gram matrices also
   * take more, they are summed segment by segment after the plan. Default 512 MiB; Infinity: one
   * session whatever the size. */
  sessionMemory?: number;
  /** Told of each run of a segment on a batch when the statistics pass runs in segments. */
  onSegmentProgress?: (done: number, total: number) => void;
  /** Held-out batches (and labels) to measure the pruned model against the original. */
  evaluation?: Evaluation;
  /** A compute core to use (and keep) instead of creating one for this run. */
  core?: ComputeCore;
  /** Global allocation: spend this much of a metric instead of the ratios' parameters (the
   * ratios are then ignored; heads and dims follow the head flags). */
  budget?: { metric: Metric; amount: number };
  /** With a budget: prune MLP channels (default true) and the embedding width (default false). */
  pruneMlp?: boolean;
  /** With a budget: prune the embedding width too (default false). */
  pruneEmbedding?: boolean;
  /** Score divisors per kind in the "global" ranking (default NViT's: heads 6, embedding the
   * number of blocks). */
  kindScale?: Partial<Record<UnitKind, number>>;
  /** Estimated latency saved per unit (latency budgets; from a latency model). Called with
   * the analysis' own group record, of which `kind` and `name` are the public part (a method
   * signature, so a model's cost function may take the full record). */
  latencyCost?(group: GroupRef, kind: UnitKind): number;
  /** With a budget: Q/K dims and V dims as two kinds of units (q, k and v are first split into
   * separate projections where one fused layer computes them). */
  separateQkV?: boolean;
  /** Latency-aware ranking (NViT Eq. 6): a unit's score minus η × the latency it saves (ms). */
  latencyEta?: number;
  /** With a budget and the "global" ranking: units ranked by their whole score per unit of the
   * budget they save (NViT's I − η·ΔLatency with η set from the data; see allocate.ts). */
  perCost?: boolean;
  /** With a budget: units of a kind a group keeps at least (a floor per block), by the group's
   * name. */
  minKept?: (group: { name: string }, kind: UnitKind) => number;
  /** false: leave out the onnxruntime load check where onnxruntime cannot run (a browser page,
   * a service without file access); the shapes are still worked out from the graph, and a note
   * says so. Default true. */
  loadCheck?: boolean;
  /** After pruning, train the pruned model's weights to match the original's outputs on the
   * calibration data (knowledge distillation; see distill/mod.ts). */
  distill?: DistillOptions;
  /** Choose what the options leave open of the criterion, compensation and allocation: each
   * candidate setting prunes on part of the calibration data and is scored by its fidelity to
   * the original on the rest (held out); the best one's model is the result, and the report's
   * `search` lists every candidate. Needs `calibration`; `true` for the defaults. Under a
   * parameter or MAC target without `minKeep`, each block's floor is searched too.
   *
   * @example
   * ```ts
   * import { type Batches, prune } from "@prune/vit";
   * declare const batches: Batches; // feeds by input name, e.g. [{ input: tensor }]
   * const { report } = await prune(await Deno.readFile("vit.onnx"), {
   *   pruneHeadDims: true,
   *   headPruningRatio: 0.5,
   *   pruningRatio: 0.5,
   *   calibration: batches,
   *   search: { holdout: 0.25, seed: 0 },
   * });
   * const chosen = report.search!.candidates[report.search!.chosen];
   * console.log(chosen.criterion, chosen.compensation, chosen.allocation);
   * ```
   */
  search?: boolean | SearchOptions;
  /** Statistics shared by the runs of a search (set by the search itself).
   * @ignore */
  shared?: SharedStatistics;
}

/** Result of {@link pruneModel}. */
export interface PruneResult {
  /** The pruned model (the object given, changed in place). */
  model: ModelProto;
  /** What the run did. */
  report: PruneReport;
  /** What the rewrite changed. */
  stats: ApplyStats;
}

/**
 * Prunes an ONNX model given as bytes and returns the pruned model's bytes. No file system.
 *
 * Magnitude criteria need no permission at all; calibration, evaluation and `verifyRun` run
 * onnxruntime (see the README for the flags each feature needs).
 *
 * @example
 * ```ts
 * import { prune } from "@prune/vit";
 * const input = await Deno.readFile("vit.onnx");
 * const { bytes, report } = await prune(input, { pruneNumHeads: true, headPruningRatio: 0.5 });
 * console.log(report.params.before, "→", report.params.after);
 * await Deno.writeFile("vit.pruned.onnx", bytes);
 * ```
 */
export async function prune(
  bytes: Uint8Array,
  options: RunOptions = {},
): Promise<{ bytes: Uint8Array; report: PruneReport }> {
  const model = decodeModel(bytes);
  const result = await pruneModel(model, options);
  return { bytes: encodeModel(result.model), report: result.report };
}

function checkRatio(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isFinite(value) || value < 0 || value >= 1) {
    throw new PruneError("bad-option", `${name} must be in [0, 1), got ${value}`);
  }
  return value;
}

function matches(name: string, patterns: string[]): boolean {
  return patterns.some((p) => name === p || name.startsWith(p));
}

/**
 * Prunes a decoded model in place and returns it with the report; with `dryRun`, only the
 * report (what the options would remove), the model unchanged.
 *
 * @example
 * ```ts
 * import { decodeModel, encodeModel, pruneModel } from "@prune/vit";
 * const model = decodeModel(await Deno.readFile("vit.onnx"), "vit.onnx");
 * const { report } = await pruneModel(model, { pruneNumHeads: true, headPruningRatio: 0.5 });
 * console.log(report.macs.before, "→", report.macs.after);
 * await Deno.writeFile("vit.pruned.onnx", encodeModel(model));
 * ```
 */
export async function pruneModel(
  model: ModelProto,
  options: RunOptions = {},
): Promise<PruneResult> {
  if (options.dryRun) {
    // The real run on a copy sharing the weights' bytes (their cuts deferred, never made): the
    // report gives the sizes, shapes and checks of the run it stands for.
    const copy = structuralCopy(model);
    const dry = { ...options, dryRun: false, evaluation: undefined };
    const { report, stats } = await pruneModel(copy, dry);
    return { model, report, stats };
  }
  if (searches(options)) return await searchPrune(model, options, pruneModel);
  const pruningRatio = checkRatio("pruningRatio", options.pruningRatio);
  const headPruningRatio = checkRatio(
    "headPruningRatio",
    options.headPruningRatio ?? options.pruningRatio,
  );
  if (options.pruneNumHeads && options.pruneHeadDims) {
    throw new PruneError("bad-option", "choose one of pruneNumHeads and pruneHeadDims");
  }
  const embeddingPruningRatio = checkRatio("embeddingPruningRatio", options.embeddingPruningRatio);
  const roundTo = options.roundTo ?? 1;
  if (!Number.isInteger(roundTo) || roundTo < 1) {
    throw new PruneError("bad-option", `roundTo must be a positive integer, got ${roundTo}`);
  }
  for (const [name, r] of Object.entries(options.layerRatios ?? {})) {
    checkRatio(`ratio of "${name}"`, r);
  }
  if (!model.graph) throw new PruneError("not-onnx", "the model has no graph");
  checkAttributes(model.graph);

  // Data that does not fill its dims is an invalid model, said with the tensor's name (the
  // shape rules read dims only and would not notice).
  for (const t of model.graph.initializer ?? []) {
    // Tensors read lazily (from a data file, or a one-file model's skeleton) were measured
    // against their dims when opened.
    if (deferredRawData(t)) continue;
    if (t.rawData?.length) tensorRawBytes(t);
  }
  // Distillation passes over the calibration data again: it is read once and kept.
  const healing = options.distill && !options.dryRun && !options.mask;
  if (healing) options = { ...options, calibration: await readBatches(options.calibration) };
  const original = options.evaluation || healing
    ? originalAsBuffer(
      model,
      originalNeededBy({ distill: healing, evaluation: options.evaluation }),
    )
    : undefined;
  // The analysis keys tensors by name: a name the bodies of control flow reuse is made unique.
  uniqueScopeNames(model.graph as GraphProto);
  const before = await probeTensors(model, { dimValues: options.dimValues });
  const params0 = countParams(model);
  const macs0 = countMacs(model, shapeMap(model, before));
  const core = options.core ??
    await createCore({ backend: options.backend ?? "auto", largestBytes: largestTensor(model) });
  try {
    const result = await pruneWithCore(model, options, core, before, params0, macs0, {
      pruningRatio,
      headPruningRatio,
      embeddingPruningRatio,
      roundTo,
    });
    if (healing) {
      result.report.distill = await distillModel(
        result.model,
        original!,
        options.calibration as Iterable<Record<string, OrtTensor>>,
        options.distill!,
      );
    }
    if (original && options.evaluation) {
      result.report.fidelity = await fidelity(
        original,
        encodeModel(result.model),
        options.evaluation,
      );
    }
    return result;
  } finally {
    if (!options.core) core.dispose();
  }
}

async function pruneWithCore(
  model: ModelProto,
  options: RunOptions,
  core: ComputeCore,
  probed: Map<string, ProbedTensor>,
  params0: number,
  macs0: number,
  ratios: {
    pruningRatio: number;
    headPruningRatio: number;
    embeddingPruningRatio: number;
    roundTo: number;
  },
): Promise<PruneResult> {
  const { pruningRatio, headPruningRatio, embeddingPruningRatio, roundTo } = ratios;
  let before = probed;
  // Names the options refer to are those of the model as given.
  checkNamedNodes(new Graph(model.graph as GraphProto), options);
  // Separate Q/K and V dims need q, k and v as separate projections (a dry run works on a copy).
  const separate = options.separateQkV || options.qkPruningRatio !== undefined ||
    options.vPruningRatio !== undefined;
  if (options.pruneHeadDims && separate) {
    if (await unfuseQkv(core, model, before)) {
      before = await probeTensors(model, { dimValues: options.dimValues });
    }
  }

  const graph = new Graph(model.graph as GraphProto);
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const trace = traceGraph(graph, before, Number(opset?.version ?? 17));
  const ignore = options.ignore ?? [];
  for (const linear of trace.linears) {
    const weight = linear.weight.ref.name;
    if (matches(linear.node.name ?? "", ignore) || matches(weight, ignore)) {
      linear.out.block(`ignored by option (${linear.node.name})`);
    }
  }
  const { groups, problems } = findGroups(trace);

  // Q/K and V heads of different sizes have no common dim grid: each loses the ratio of its own.
  const unequal = groups.some((g) =>
    g.kind === "attention" && g.qkDim.size !== g.vDim.size && !g.qkBlocked && !g.vBlocked
  );
  if (options.pruneHeadDims && !separate && unequal && headPruningRatio > 0) {
    const result = await pruneWithCore(
      model,
      {
        ...options,
        qkPruningRatio: headPruningRatio,
        vPruningRatio: headPruningRatio,
      },
      core,
      probed,
      params0,
      macs0,
      ratios,
    );
    result.report.notes.unshift(
      "Q/K and V heads have different sizes: Q/K dims and V dims each lose the head ratio",
    );
    return result;
  }
  const notes: string[] = [];
  options = chooseHeadMode(groups, options, notes);
  checkSomethingToPrune(trace, groups, problems, options, headPruningRatio, pruningRatio);
  if (embeddingPruningRatio > 0) {
    const embedding = groups.filter((g) => g.kind === "embedding");
    const open = embedding.filter((g) => !(g.kind === "embedding" && g.blocked));
    if (open.length === 0) {
      const reasons = embedding.map((g) => g.kind === "embedding" ? g.blocked : null);
      throw new PruneError(
        "unsupported-graph",
        embedding.length === 0
          ? "no embedding width (residual stream from a patch or token embedding) was recognised"
          : `the embedding width cannot be pruned (${reasons.slice(0, 2).join("; ")})`,
      );
    }
  }
  checkNumHeads(groups, options.numHeads ?? {});

  const { stats, gates, segments, gramAfterPlan } = await calibrationStats(model, groups, options);
  if (segments) {
    const mib = segments.bytes / 2 ** 20;
    notes.push(
      `the statistics pass ran the model in ${segments.count} segments of at most ${
        mib >= 10 ? Math.round(mib) : Number(mib.toPrecision(2))
      } MiB of weights each in onnxruntime (half of --session-memory)`,
    );
  }
  const criterion: Criterion = options.criterion === "wanda" || options.criterion === "flap" ||
      options.criterion === "apma"
    ? { kind: options.criterion, stats: stats! }
    : gates && GRADIENT_CRITERIA.has(options.criterion ?? "")
    ? { kind: options.criterion as "taylor" | "fisher" | "michel", gates }
    : (options.criterion as "l1" | "l2" | undefined) ?? "l2";
  const { plan, decisions } = await makePlan(core, groups, {
    pruningRatio,
    headPruningRatio,
    pruneNumHeads: !!options.pruneNumHeads,
    pruneHeadDims: !!options.pruneHeadDims,
    roundTo,
    criterion,
    gqaPolicy: options.gqaPolicy ?? "query-heads",
    allocation: options.allocation ?? "local",
    separateDims: !!options.separateQkV,
    kindScale: options.kindScale,
    budget: options.budget,
    pruneMlp: options.budget ? options.pruneMlp ?? true : undefined,
    pruneEmbedding: options.budget ? !!options.pruneEmbedding : undefined,
    shapes: before,
    latencyCost: options.latencyCost,
    latencyEta: options.latencyEta,
    perCost: options.perCost,
    minKept: options.minKept,
    onNote: (note) => notes.push(note),
    embeddingPruningRatio,
    qkRatio: options.qkPruningRatio === undefined
      ? undefined
      : checkRatio("qkPruningRatio", options.qkPruningRatio),
    vRatio: options.vPruningRatio === undefined
      ? undefined
      : checkRatio("vPruningRatio", options.vPruningRatio),
    headsFixed: (g) => g.linears.some((l) => matches(l.name ?? "", options.keepHeads ?? [])),
    ratioFor: (g) => {
      const key = Object.keys(options.layerRatios ?? {}).find((k) =>
        g.linears.some((l) => matches(l.name ?? "", [k]))
      );
      return key === undefined ? undefined : options.layerRatios![key];
    },
  });
  if (![...plan].some(([factor, kept]) => kept.length < factor.size)) {
    notes.push(nothingPruned(options));
  }
  const updates = !stats
    ? []
    : gramAfterPlan
    ? await refitBySegment(model, core, trace, plan, stats, gramAfterPlan, options)
    : await planCompensation(
      core,
      trace,
      plan,
      stats,
      options.compensation ?? "none",
      options.ridge ?? 0.01,
    );
  if (gramAfterPlan) {
    notes.push(
      `the Gram matrices (${
        (gramBytes(model, gramAfterPlan.tensors) / 2 ** 30).toFixed(2)
      } GiB in all) were summed in a second pass once the plan was made, a segment at a ` +
        `time, each segment's layers refitted before the next segment ran`,
    );
  }
  // Read before the rewrite changes the declared shapes.
  const interfaces = interfaceChanges(trace, plan);
  const applied = options.mask
    ? await maskPlan(core, trace, plan, headFactors(groups))
    : await applyPlan(core, trace, plan).catch((e) => {
      if (e instanceof PruneError) throw e;
      // The trace accepted something the rewrite cannot express: refuse, nothing is written.
      throw new PruneError("unsupported-graph", `cannot rewrite the graph: ${e.message ?? e}`);
    });
  if (applied.requantized?.length) {
    notes.push(
      `re-quantized (kept input channels are not whole blocks; not exact): ` +
        applied.requantized.join(", "),
    );
  }
  if (!options.mask && updates.length) {
    const compensated = applyCompensation(graph, updates);
    notes.push(`compensated ${compensated} layers (${options.compensation})`);
  }
  const after = await verify(
    model,
    options,
    () => {
      const given = (model as ModelProto & { [DECODED_FROM]?: Uint8Array })[DECODED_FROM];
      return given && !hasExternalData(model) ? given : undefined;
    },
    before,
    notes,
  );
  const report: PruneReport = {
    params: { before: params0, after: countParams(model) },
    macs: {
      before: macs0,
      after: countMacs(model, shapeMap(model, after)),
      ...sizedAt(symbolicDimSizes(model, before)),
    },
    backend: core.backend,
    blocks: decisions.map(blockReport),
    skipped: skippedGroups(groups, options),
    notes: [...notes, ...decisions.flatMap((d) => d.note ? [d.note] : [])],
    groups: groups.map((g) => groupReport(g, trace)),
    ...(interfaces.length ? { interfaces } : {}),
    ...(problems.length ? { problems } : {}),
  };
  return { model, report, stats: applied };
}

/** MACs of a model with symbolic input dims hold at the sizes they were counted at. */
function sizedAt(sizes: Record<string, number>): { at?: Record<string, number> } {
  return Object.keys(sizes).length ? { at: sizes } : {};
}

/** How the note of a run that removes nothing begins. */
export const NOTHING_PRUNED = "nothing was pruned";

/** Why a run removes nothing (its output is the input unchanged), as a note. */
function nothingPruned(options: RunOptions): string {
  const ratios = [
    options.pruningRatio,
    options.headPruningRatio,
    options.embeddingPruningRatio,
    options.qkPruningRatio,
    options.vPruningRatio,
    ...Object.values(options.layerRatios ?? {}),
  ];
  const why = options.budget || ratios.some((r) => (r ?? 0) > 0)
    ? "the options keep every head, dim and channel (--keep-heads, --ignore, or groups left " +
      "alone: see the report)"
    : "no ratio or target was given (--pruning-ratio, --head-pruning-ratio, " +
      "--embedding-pruning-ratio, --target-params, --target-macs, --target-speedup)";
  return `${NOTHING_PRUNED}: ${why}; the model is unchanged`;
}

/** The (query and KV) head factors of the attention groups. */
function headFactors(groups: Group[]): Set<Factor> {
  return new Set(
    groups.flatMap((g) => g.kind === "attention" ? [g.heads, g.kvGroups ?? g.heads] : []),
  );
}

/**
 * Checks the rewritten model: every tensor's shape worked out again from the graph (each op's
 * rules must hold — inner dims, reshape sizes, broadcasts); with `verifyRun` one onnxruntime run.
 * Where the run has loaded onnxruntime anyway (calibration, an op without a shape rule), a model
 * protobuf can hold inline is also loaded by it (its checker and type inference); a magnitude
 * prune loads nothing it does not need (no download, no permission). When the result does not
 * load, the input is tried too: a model onnxruntime rejects as given is refused as such;
 * otherwise it is a bug of ours, said plainly. Nothing is written either way.
 */
async function verify(
  model: ModelProto,
  options: RunOptions,
  input: () => Uint8Array | undefined,
  before: Map<string, ProbedTensor>,
  notes: string[],
): Promise<Map<string, ProbedTensor>> {
  const method = options.verifyRun ? "run" : "auto";
  let shapes: Map<string, ProbedTensor>;
  try {
    shapes = await probeTensors(model, { dimValues: options.dimValues, method });
    // An If branch whose shapes were worked out before must still work out.
    for (const body of new Graph(model.graph as GraphProto).bodies) {
      for (const node of body.nodes) {
        const lost = node.output.find((o) => before.has(o) && !shapes.has(o));
        if (lost) throw new Error(`the ${body.attribute} of "${body.owner.name}" no longer runs`);
      }
    }
    if (!options.verifyRun) {
      const skipped = options.loadCheck === false
        ? "onnxruntime load check left out (onnxruntime is not loaded here); the pruned " +
          "model's shapes were worked out again from the graph"
        : ortIsLoaded()
        ? loadCheckSkipped(model)
        : undefined;
      if (skipped) notes.push(skipped);
      else if (options.loadCheck !== false && ortIsLoaded()) await loads(model);
    }
  } catch (e) {
    if (e instanceof PruneError && e.code === "permission") throw e;
    const why = e instanceof Error ? e.message : String(e);
    const given = ortIsLoaded() ? input() : undefined;
    const rejected = given ? await loads(given).then(() => undefined, (f) => String(f)) : undefined;
    if (rejected) {
      throw new PruneError("invalid-model", `onnxruntime rejects the model as given: ${rejected}`);
    }
    throw new PruneError(
      "internal",
      `the pruned model failed verification (${why}); no output was written. ` +
        `Please report this with the model's exporter and options.`,
    );
  }
  return shapes;
}

/** Whether onnxruntime loads the model: the pruned one as a skeleton (weights left out), the
 * input as given. */
async function loads(model: ModelProto | Uint8Array): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = model instanceof Uint8Array ? model : encodeModel(skeleton(model));
  } catch {
    return; // not encodable as one protobuf: the shape check alone
  }
  const open = (level: "disabled" | "basic") =>
    createSession(bytes, { graphOptimizationLevel: level }).catch((e) => {
      throw new Error((e instanceof Error ? e.message : String(e)).split("\n")[0]);
    });
  // With optimisations off, onnxruntime 1.30 mis-types a float16 → float16 Cast whose input it
  // computes in float32 (the float16 converter writes such Casts); its basic level removes them
  // first, as every session a user opens does.
  const session = await open("disabled").catch((e) => open("basic").catch(() => Promise.reject(e)));
  await session.release?.();
}

function shapeMap(model: ModelProto, probed: Map<string, ProbedTensor>): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const t of model.graph!.initializer ?? []) shapes.set(t.name!, tensorDims(t));
  for (const [name, p] of probed) shapes.set(name, p.dims);
  return shapes;
}

function checkNamedNodes(graph: Graph, options: RunOptions) {
  const known = new Set<string>();
  for (const n of graph.nodes) if (n.name) known.add(n.name);
  for (const t of graph.proto.initializer ?? []) known.add(t.name!);
  const names = [
    ...(options.ignore ?? []).map((n) => ["ignore", n]),
    ...(options.keepHeads ?? []).map((n) => ["keep-heads", n]),
    ...Object.keys(options.layerRatios ?? {}).map((n) => ["layer ratio", n]),
    ...Object.keys(options.numHeads ?? {}).map((n) => ["num-heads", n]),
  ];
  for (const [what, name] of names) {
    if (![...known].some((k) => k === name || k.startsWith(name))) {
      throw new PruneError("bad-option", `${what}: no node or initializer named "${name}"`);
    }
  }
}

/**
 * A head ratio — or a budget (a target) — given without saying what to remove: head dims,
 * Torch-Pruning's default — or whole heads where the dims cannot go (RoPE rotates pairs of dims
 * inside each head). With a budget, attention takes part unless the head ratio is set to 0.
 */
function chooseHeadMode(groups: Group[], options: RunOptions, notes: string[]): RunOptions {
  const wanted = options.budget ? options.headPruningRatio !== 0 : options.headPruningRatio! > 0;
  if (options.pruneNumHeads || options.pruneHeadDims || !wanted) return options;
  const attention = groups.filter((g) => g.kind === "attention");
  if (attention.length === 0) return options;
  const dimsFixed = attention.find((g) => g.kind === "attention" && g.dimsBlocked);
  if (dimsFixed && dimsFixed.kind === "attention") {
    notes.push(
      `no head mode given: removing whole heads, since head dims cannot go (${dimsFixed.dimsBlocked})`,
    );
    return { ...options, pruneNumHeads: true };
  }
  notes.push("no head mode given: removing head dims (Torch-Pruning's default)");
  return { ...options, pruneHeadDims: true };
}

const GRADIENT_CRITERIA = new Set(["taylor", "fisher", "michel"]);

/** The error for `taylor` on a model whose first output is not a classifier's. */
export function taylorNeedsClassifier(model: ModelProto): PruneError {
  const output = model.graph?.output?.[0]?.name ?? "";
  return new PruneError(
    "bad-option",
    `criterion "taylor" needs a classifier: the first graph output "${output}" is not ` +
      `[batch, classes], and the first-order change of the distance to the original output ` +
      `is zero; use fisher or michel`,
  );
}

/**
 * Statistics of the inputs of the layers that read prunable channels, from the calibration
 * batches — when a data-aware criterion or compensation asks for them — and, for gradient
 * criteria, the gate gradients at the same tensors, all in one pass of onnxruntime.
 */
async function calibrationStats(
  model: ModelProto,
  groups: Group[],
  options: RunOptions,
): Promise<CollectedStats & { gramAfterPlan?: GramAfterPlan }> {
  const gradient = GRADIENT_CRITERIA.has(options.criterion ?? "");
  const apma = options.criterion === "apma";
  const dataCriterion = options.criterion === "wanda" || options.criterion === "flap" || apma ||
    gradient;
  const compensation = (options.compensation ?? "none") !== "none";
  if (!dataCriterion && !compensation) return {};
  if (!options.calibration) {
    throw new PruneError(
      "bad-option",
      `${
        dataCriterion ? `criterion "${options.criterion}"` : "compensation"
      } needs calibration data`,
    );
  }
  const tensors = new Set<string>(), gram = new Set<string>();
  for (const g of groups) {
    for (const t of g.members) {
      if (t.role !== "weight-in" || !t.linear) continue;
      if (t.linear.opType !== "MatMul" && t.linear.opType !== "Gemm") continue;
      tensors.add(t.linear.input[0]);
      if ((options.compensation === "reweight" && g.kind !== "embedding") || apma) {
        gram.add(t.linear.input[0]);
      }
    }
  }
  // APMA scores read the whole Gram matrix; otherwise only the refit does.
  const holdRows = apma ? new Set<string>() : gram;
  const sessionMemory = options.sessionMemory ?? DEFAULT_SESSION_MEMORY;
  if (
    !options.shared && !apma && !gradient && gram.size > 0 &&
    sessionWeightBytes(model) > sessionMemory && gramBytes(model, gram) > sessionMemory
  ) {
    // A segmented model whose Gram matrices would take more than a session: the plan is made
    // from the sums alone, then a second pass sums each segment's Gram matrices and refits its
    // layers before the next segment's run (refitBySegment).
    const batches: Record<string, OrtTensor>[] = [];
    const source = typeof options.calibration === "function"
      ? options.calibration()
      : options.calibration;
    for await (const feeds of source) batches.push(feeds);
    const first = await collectCalibration(model, groups, { ...options, calibration: batches }, {
      tensors: [...tensors],
      gram: new Set(),
      gradient: false,
    });
    return { ...first, gramAfterPlan: { tensors: gram, batches } };
  }
  const need: StatsNeed = { tensors: [...tensors], gram, gradient };
  if (!options.shared) need.holdRows = holdRows;
  if (options.shared) {
    // The same layers at the same widths: the same model for the statistics.
    const key = JSON.stringify([
      need.tensors,
      groups.map((g) =>
        g.kind === "attention"
          ? [g.name, g.heads.size, g.qkDim.size, g.vDim.size, g.kvGroups?.size ?? 0]
          : [g.name, g.channels.size]
      ),
    ]);
    return await options.shared.get(
      key,
      need,
      (n) => collectCalibration(model, groups, options, n),
    );
  }
  return await collectCalibration(model, groups, options, need);
}

/** Tensors whose Gram matrices are summed after the plan, segment by segment, over these
 * batches (the calibration data held in memory). */
interface GramAfterPlan {
  tensors: Set<string>;
  batches: Record<string, OrtTensor>[];
}

/** Bytes of the float32 Gram matrices of the inputs of the MatMuls reading `tensors`. */
function gramBytes(model: ModelProto, tensors: Set<string>): number {
  const constants = new Map((model.graph?.initializer ?? []).map((t) => [t.name, t]));
  const widths = new Map<string, number>();
  for (const node of model.graph?.node ?? []) {
    if (node.opType !== "MatMul" || !tensors.has(node.input?.[0] ?? "")) continue;
    const w = constants.get(node.input![1]);
    if (w) widths.set(node.input![0], tensorDims(w)[0]);
  }
  return [...widths.values()].reduce((sum, c) => sum + c * c * 4, 0);
}

/**
 * The reweighting of a model whose Gram matrices would not fit beside a segment's session:
 * the calibration batches run through the model again, a segment at a time, each segment's Gram
 * matrices summed and its layers refitted (and the matrices let go) before the next segment
 * runs; layers reading tensors without a Gram matrix get the bias compensation from `stats`.
 */
async function refitBySegment(
  model: ModelProto,
  core: ComputeCore,
  trace: Trace,
  plan: Plan,
  stats: Map<string, ChannelStats>,
  after: GramAfterPlan,
  options: RunOptions,
): Promise<PendingUpdate[]> {
  const ridge = options.ridge ?? 0.01;
  const rest = new Map([...stats].filter(([t]) => !after.tensors.has(t)));
  const updates = await planCompensation(core, trace, plan, rest, "reweight", ridge);
  await collectStats(model, [...after.tensors], after.batches, {
    gram: after.tensors,
    gramStride: options.gramStride ?? 4,
    sessionMemory: options.sessionMemory ?? DEFAULT_SESSION_MEMORY,
    onSegmentProgress: options.onSegmentProgress,
    onSegmentDone: async (done) => {
      updates.push(...await planCompensation(core, trace, plan, done, "reweight", ridge));
    },
  });
  return updates;
}

/** Weight bytes of one statistics session before a model runs in segments. */
export const DEFAULT_SESSION_MEMORY = 512 * 2 ** 20;

/** One pass over the calibration data for the statistics (and gate gradients) `need` names. */
async function collectCalibration(
  model: ModelProto,
  groups: Group[],
  options: RunOptions,
  { tensors, gram, gradient, holdRows }: StatsNeed,
): Promise<CollectedStats> {
  const stride = options.gramStride ?? 4;
  const batches = typeof options.calibration === "function"
    ? options.calibration()
    : options.calibration!;
  if (!gradient) {
    let segments: CollectedStats["segments"];
    const stats = await collectStats(model, tensors, batches, {
      gram,
      gramStride: stride,
      holdRows,
      sessionMemory: options.sessionMemory ?? DEFAULT_SESSION_MEMORY,
      onSegments: (n, bytes) => segments = { count: n, bytes },
      onSegmentProgress: options.onSegmentProgress,
    });
    return { stats, segments };
  }
  // Heads' channels at the attention output projections, for head-level gate sums.
  const cells = new Map<string, Int32Array>();
  for (const g of groups) {
    if (g.kind !== "attention") continue;
    for (const t of g.members) {
      if (t.role !== "weight-in" || !t.linear) continue;
      const where = channelCells(t, [...(g.kvGroups ? [[g.kvGroups]] : []), [g.heads]]);
      if (where) cells.set(t.linear.input[0], where);
    }
  }
  const shapes = await probeTensors(model, { batch: 2, dimValues: options.dimValues });
  const backward = buildGradientModel(model, shapes, tensors, { batch: 2 });
  if (!backward.classifier && options.criterion === "taylor") throw taylorNeedsClassifier(model);
  const reader = gateReader(backward.gates, cells);
  const stats = await collectStats(backward.model, tensors, batches, {
    gram,
    also: reader,
    gramStride: stride,
    holdRows,
  });
  return { stats, gates: reader.stats };
}

/** Fused attention ops (onnxruntime's contrib ops, ONNX's Attention from opset 23); those the
 * trace reads are attention blocks (analysis/rules/fused_attention.ts). */
const FUSED_ATTENTION = new Set([
  "Attention",
  "MultiHeadAttention",
  "GroupQueryAttention",
  "PackedAttention",
  "PackedMultiHeadAttention",
]);

/** The candidate MatMuls the analysis saw and what stopped each: the first few, and a count. */
function seen(problems: string[]): string {
  if (problems.length === 0) {
    return ": no MatMul of two activations computed from linear layers was found";
  }
  const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
  return `. ${problems.length} candidate${problems.length === 1 ? "" : "s"} seen: ` +
    problems.slice(0, 3).join("; ") + more;
}

/** Asking for a kind of pruning the graph has no room for is an error, with the reasons. */
function checkSomethingToPrune(
  trace: Trace,
  groups: Group[],
  problems: string[],
  options: RunOptions,
  headRatio: number,
  mlpRatio: number,
) {
  const attention = groups.filter((g) => g.kind === "attention");
  const why = (reasons: (string | null)[]) => {
    const list = [...new Set(reasons.filter((r) => r))].slice(0, 3);
    return list.length ? ` (${list.join("; ")})` : "";
  };
  const separate = options.pruneHeadDims &&
    (options.qkPruningRatio !== undefined || options.vPruningRatio !== undefined);
  const wanted = separate
    ? (options.qkPruningRatio ?? 0) > 0 || (options.vPruningRatio ?? 0) > 0
    : headRatio > 0;
  if ((options.pruneNumHeads || options.pruneHeadDims) && wanted) {
    if (attention.length === 0) {
      const read = new Set(trace.fusedAttention.map((a) => a.node));
      const fused = trace.graph.nodes.find((n) => FUSED_ATTENTION.has(n.opType) && !read.has(n));
      const refused = trace.fusedAttention.flatMap((a) => "refused" in a ? [a.refused] : []);
      throw new PruneError(
        "unsupported-graph",
        refused.length
          ? `no attention block can be pruned${why(refused)}`
          : fused
          ? `attention is fused into an ${fused.opType} op (node "${fused.name}"), which this ` +
            `version does not prune: export or optimize the model without attention fusion`
          : "no attention block was recognised in this graph (looked for Q·Kᵀ and P·V MatMuls " +
            `fed by linear layers), so heads cannot be pruned${seen(problems)}${
              subgraphHint(trace.graph)
            }`,
      );
    }
    const blocked = attention.map((g) => {
      if (g.kind !== "attention") return null;
      if (options.pruneNumHeads) {
        const one = headUnits(g, options.gqaPolicy ?? "query-heads").factor.size === 1;
        return headsBlockedUnder(g, options) ?? (one ? `"${g.name}" has one head` : null);
      }
      if (!separate) return g.dimsBlocked;
      const qk = (options.qkPruningRatio ?? 0) > 0 ? g.qkBlocked : "not asked";
      const v = (options.vPruningRatio ?? 0) > 0 ? g.vBlocked : "not asked";
      return qk && v ? [qk, v].filter((r) => r !== "not asked").join("; ") : null;
    });
    if (blocked.every((b) => b)) {
      throw new PruneError(
        "unsupported-graph",
        `no attention block can be pruned${why(blocked)}`,
      );
    }
  }
  const mlp = groups.filter((g) => g.kind === "mlp");
  if (mlpRatio > 0 && mlp.length > 0 && mlp.every((g) => g.kind === "mlp" && g.blocked)) {
    throw new PruneError(
      "unsupported-graph",
      `no MLP block can be pruned${why(mlp.map((g) => g.kind === "mlp" ? g.blocked : null))}`,
    );
  }
  if (mlpRatio > 0 && mlp.length === 0 && !(options.pruneNumHeads || options.pruneHeadDims)) {
    throw new PruneError(
      "unsupported-graph",
      `no MLP block (linear → activation → linear) was recognised in this graph${
        subgraphHint(trace.graph)
      }`,
    );
  }
}

function checkNumHeads(groups: Group[], numHeads: Record<string, number>) {
  for (const [name, heads] of Object.entries(numHeads)) {
    if (!Number.isInteger(heads) || heads < 1) {
      throw new PruneError("bad-option", `num-heads for "${name}" must be a positive integer`);
    }
    const group = groups.find((g) =>
      g.kind === "attention" && g.linears.some((l) => matches(l.name ?? "", [name]))
    );
    if (!group || group.kind !== "attention") {
      throw new PruneError("bad-option", `num-heads: "${name}" is not part of an attention block`);
    }
    if (group.heads.size !== heads) {
      throw new PruneError(
        "bad-option",
        `num-heads: attention block "${group.name}" has ${group.heads.size} heads in the graph ` +
          `(its Reshape splits ${group.heads.size}×${group.qkDim.size}), not ${heads}`,
      );
    }
  }
}

function blockReport(d: GroupDecision): BlockReport {
  const g = d.group;
  if (g.kind === "attention") {
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    const r = g.heads.size, groups = g.kvGroups?.size ?? 1;
    const keptR = d.keptHeads ?? range(r);
    const keptG = d.keptKvGroups ?? range(groups);
    // Query heads in the original numbering: KV group major, query head within the group minor.
    const heads = keptG.flatMap((kg) => keptR.map((kr) => kg * r + kr));
    const dims = d.keptDims;
    return {
      kind: "attention",
      name: g.name,
      heads: { before: groups * r, after: heads.length },
      ...(g.kvGroups ? { kvHeads: { before: groups, after: keptG.length } } : {}),
      headDim: { before: g.qkDim.size, after: dims?.length ?? g.qkDim.size },
      ...(d.keptVDims || (d.keptDims && g.vDim !== g.qkDim && g.vDim.size !== dims?.length)
        ? { vHeadDim: { before: g.vDim.size, after: d.keptVDims?.length ?? g.vDim.size } }
        : {}),
      keptHeads: heads,
      ...(dims ? { keptDims: heads.map(() => dims) } : {}),
      ...(d.keptVDims ? { keptVDims: heads.map(() => d.keptVDims!) } : {}),
    };
  }
  const kept = d.keptChannels ?? Array.from({ length: g.channels.size }, (_, i) => i);
  return {
    kind: g.kind,
    name: g.name,
    channels: { before: g.channels.size, after: kept.length },
    keptChannels: kept,
  };
}

function groupReport(g: Group, trace: Trace): GroupReport {
  const factors = g.kind === "attention"
    ? [g.heads, g.qkDim, g.vDim, ...(g.kvGroups ? [g.kvGroups] : [])]
    : [g.channels];
  const tensors: GroupReport["tensors"] = [];
  for (const t of trace.tensorTouches) {
    if (!t.factors.flatMap((f) => f.atoms()).some((l) => factors.includes(l))) continue;
    if (tensors.some((x) => x.name === t.ref.name && x.axis === t.axis)) continue;
    tensors.push({ name: t.ref.name, axis: t.axis, role: t.role });
  }
  if (g.kind === "attention") {
    const blocked = g.headsBlocked;
    return {
      kind: "attention",
      name: g.name,
      size: {
        ...(g.kvGroups ? { kvHeads: g.kvGroups.size } : {}),
        heads: g.heads.size * (g.kvGroups?.size ?? 1),
        qkDim: g.qkDim.size,
        vDim: g.vDim.size,
      },
      tensors,
      ...(blocked ? { blocked } : {}),
      ...(g.dimsBlocked ? { dimsBlocked: g.dimsBlocked } : {}),
    };
  }
  return {
    kind: g.kind,
    name: g.name,
    size: { channels: g.channels.size },
    tensors,
    ...(g.blocked ? { blocked: g.blocked } : {}),
    ...(g.kind === "embedding" && g.normalized
      ? { note: "LayerNorm statistics change when these channels go (not mask-exact)" }
      : {}),
  };
}

function skippedGroups(groups: Group[], options: RunOptions): { name: string; reason: string }[] {
  const out: { name: string; reason: string }[] = [];
  for (const g of groups) {
    if (g.kind === "mlp" && g.blocked && (options.pruningRatio ?? 0) > 0) {
      out.push({ name: g.name, reason: g.blocked });
    }
    if (g.kind === "embedding" && g.blocked && (options.embeddingPruningRatio ?? 0) > 0) {
      out.push({ name: g.name, reason: g.blocked });
    }
    if (g.kind === "attention") {
      const headsBlocked = headsBlockedUnder(g, options);
      if (options.pruneNumHeads && headsBlocked) out.push({ name: g.name, reason: headsBlocked });
      if (options.pruneHeadDims && g.dimsBlocked) out.push({ name: g.name, reason: g.dimsBlocked });
    }
  }
  return out;
}

/** Why the heads a run would remove cannot go: whole KV heads under the "kv-groups" policy. */
function headsBlockedUnder(g: Group, options: RunOptions): string | null {
  if (g.kind !== "attention") return null;
  if (options.gqaPolicy === "kv-groups" && g.kvGroups) {
    return g.kvGroupsBlocked && `KV heads: ${g.kvGroupsBlocked}`;
  }
  return g.headsBlocked;
}

/** Bytes of the model's largest tensor (read from no file: lazily read tensors are measured). */
export function largestTensor(model: ModelProto): number {
  let most = 0;
  for (const t of allTensors(model)) most = Math.max(most, tensorDataSize(t));
  return most;
}
