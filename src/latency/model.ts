/**
 * Latency of a whole model from the block table: the sum of its blocks' interpolated latencies,
 * times the factor a block costs more inside the model than alone, plus what the rest of the
 * model (patch embedding, head) costs — both fitted to two measurements, taken by interleaved
 * rounds: the original, and the original with every MLP halved. What one unit of a block (a
 * head, a per-head dim, an MLP channel, an embedding channel of every block) saves is the
 * difference of the table between the block's shape and the same shape one unit smaller. The
 * same module times a pruned model against the original (interleaved rounds, medians, the
 * spread of the rounds as the noise) — the measurement a speed-up target is judged by.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { decodeModel, encodeModel } from "../onnx/model_io.ts";
import { pruneModel } from "../prune.ts";
import { Graph, type GraphProto } from "../graph/graph.ts";
import { probeTensors } from "../runtime/probe.ts";
import { ORT_ELEMENT_TYPES, type OrtSession, type OrtTensor } from "../runtime/ort.ts";
import { traceGraph } from "../analysis/trace.ts";
import { findGroups, type Group } from "../analysis/groups.ts";
import type { UnitKind } from "../allocate.ts";
import type { RunOptions } from "../prune.ts";
import {
  DEFAULT_MIN_KEEP,
  keptFloor,
  type LatencyEstimator,
  type SpeedupCheck,
} from "../target.ts";
import type { BlockShape } from "./block.ts";
import {
  type GridReach,
  interpolate,
  type LatencyTable,
  profileBlock,
  type ProfileOptions,
  refineTable,
} from "./table.ts";
import { type BlockFit, fitTable } from "./fit.ts";
import {
  type LatencyClock,
  type LatencyRuntime,
  medianRun,
  type TimingRuntime,
  timingRuntime,
} from "./runtime.ts";

/** The transformer blocks of a model: the k-th attention block with the k-th MLP. */
export interface ModelBlocks {
  shapes: BlockShape[];
  /** Group names of each block's attention and MLP, and of the embedding width. */
  attention: string[];
  mlp: string[];
  embedding?: string;
  /** Tokens per sample. */
  tokens: number;
  /** Whether some block's per-head dims cannot be pruned (RoPE): heads go there instead. */
  dimsBlocked: boolean;
}

/** Reads the block shapes of a model (one probe run at batch 1). */
export async function modelBlocks(model: ModelProto): Promise<ModelBlocks> {
  const probed = await probeTensors(model);
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx");
  const trace = traceGraph(
    new Graph(model.graph as GraphProto),
    probed,
    Number(opset?.version ?? 17),
  );
  const { groups } = findGroups(trace);
  const attention = groups.filter((g) => g.kind === "attention");
  const mlp = groups.filter((g) => g.kind === "mlp");
  const embedding = groups.find((g) => g.kind === "embedding");
  if (attention.length === 0 || attention.length !== mlp.length) {
    throw new PruneError(
      "unsupported-graph",
      `the latency model needs transformer blocks (attention + MLP); found ${attention.length} ` +
        `attention and ${mlp.length} MLP blocks`,
    );
  }
  const grouped = attention.find((a) => a.kind === "attention" && a.kvGroups);
  if (grouped) {
    // The profiled block is multi-head attention; its K/V projections would be too wide here.
    throw new PruneError(
      "unsupported-graph",
      `the latency model profiles multi-head attention blocks; "${grouped.name}" uses ` +
        `grouped-query attention (use --target-params or --target-macs)`,
    );
  }
  let tokens = 0;
  const shapes = attention.map((a, i) => {
    const m = mlp[i];
    if (a.kind !== "attention" || m.kind !== "mlp") throw new Error("unreachable");
    const q = a.members.find((t) => t.role === "weight-out" && t.linear)!;
    const out = probed.get(q.linear!.output[0])?.dims ?? [];
    tokens ||= out.slice(0, -1).reduce((x, y) => x * y, 1);
    const emb = embedding?.kind === "embedding"
      ? embedding.channels.size
      : Number(q.ref.tensor.dims?.[0] ?? 0);
    return {
      emb,
      heads: a.heads.size,
      qk: a.qkDim.size,
      v: a.vDim.size,
      mlp: m.channels.size,
    };
  });
  return {
    shapes,
    attention: attention.map((g) => g.name),
    mlp: mlp.map((g) => g.name),
    embedding: embedding?.name,
    tokens,
    dimsBlocked: attention.some((a) => a.kind === "attention" && !!a.dimsBlocked),
  };
}

/** How to measure a whole model. */
export interface MeasureOptions {
  batch?: number;
  /** Timed runs (median; default 15). */
  runs?: number;
  threads?: number;
  runtime?: LatencyRuntime;
  /** The clock runs are timed on (default "wall"; see runtime.ts). */
  clock?: LatencyClock;
}

/** Inputs of a model at `batch` (symbolic dims other than the first: 1), synthesised. */
function syntheticFeeds(ort: TimingRuntime["ort"], model: ModelProto, batch: number) {
  const init = new Set((model.graph!.initializer ?? []).map((t) => t.name));
  const feeds: Record<string, OrtTensor> = {};
  for (const input of model.graph!.input ?? []) {
    if (init.has(input.name!)) continue;
    const tt = input.type?.tensorType;
    const dims = (tt?.shape?.dim ?? []).map((d, i) =>
      Number(d.dimValue ?? 0) || (i === 0 ? batch : 1)
    );
    const n = dims.reduce((a, b) => a * b, 1);
    const type = ORT_ELEMENT_TYPES[tt?.elemType ?? 0];
    feeds[input.name!] = type === "float32"
      ? new ort.Tensor("float32", new Float32Array(n).fill(0.1), dims)
      : type === "int64"
      ? new ort.Tensor("int64", new BigInt64Array(n), dims)
      : (() => {
        throw new PruneError("unsupported-graph", `latency: input "${input.name}" is ${type}`);
      })();
  }
  return feeds;
}

/** Median latency (ms) of a whole model at `batch` on a runtime, inputs synthesised. */
export async function measureLatency(
  model: ModelProto,
  options: MeasureOptions = {},
): Promise<number> {
  const batch = options.batch ?? 1, runs = options.runs ?? 15;
  const rt = await timingRuntime(options.runtime, options.threads, options.clock);
  const session = await rt.open(encodeModel(model));
  try {
    // A whole model is timed once or twice, not over a grid: worth a longer warm-up.
    return await medianRun(session, syntheticFeeds(rt.ort, model, batch), runs, 200, rt.now);
  } finally {
    await session.release?.();
  }
}

/** Timings of several models by interleaved rounds. */
export interface InterleavedTimings {
  /** Per model, the median over rounds (ms). */
  medians: number[];
  /** Per round, per model: the median of that round's runs (ms). */
  rounds: number[][];
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Times models by interleaved rounds: every round times each model (the median of `runs` runs),
 * every other round in reverse order, so that a change of load weighs on all of them alike;
 * each model's latency is the median of its rounds. Sessions stay open across rounds.
 */
export async function measureInterleaved(
  models: (ModelProto | Uint8Array)[],
  options: MeasureOptions & { rounds?: number } = {},
): Promise<InterleavedTimings> {
  const batch = options.batch ?? 1, runs = options.runs ?? 5, rounds = options.rounds ?? 7;
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new PruneError("bad-option", `timing rounds must be a positive integer, got ${rounds}`);
  }
  const rt = await timingRuntime(options.runtime, options.threads, options.clock);
  const sessions: { session: OrtSession; feeds: Record<string, OrtTensor> }[] = [];
  try {
    for (const m of models) {
      const bytes = m instanceof Uint8Array ? m : encodeModel(m);
      const proto = m instanceof Uint8Array ? decodeModel(m) : m;
      const session = await rt.open(bytes);
      sessions.push({ session, feeds: syntheticFeeds(rt.ort, proto, batch) });
      // Warm-up: caches, thread pools and the JIT's optimised code in place before round one.
      await medianRun(session, sessions.at(-1)!.feeds, 1, 200, rt.now);
    }
    const perRound: number[][] = [];
    for (let r = 0; r < rounds; r++) {
      const times = new Array<number>(sessions.length);
      const order = sessions.map((_, i) => i);
      if (r % 2) order.reverse();
      for (const i of order) {
        times[i] = await medianRun(sessions[i].session, sessions[i].feeds, runs, 0, rt.now);
      }
      perRound.push(times);
    }
    return { medians: sessions.map((_, i) => median(perRound.map((t) => t[i]))), rounds: perRound };
  } finally {
    for (const { session } of sessions) await session.release?.();
  }
}

/** Times `pruned` against `original` by interleaved rounds: the speed-up is the median of the
 * rounds' ratios, their range the timing noise. */
export async function compareLatency(
  original: ModelProto | Uint8Array,
  pruned: ModelProto | Uint8Array,
  options: MeasureOptions & { rounds?: number } = {},
): Promise<SpeedupCheck> {
  return speedupOf(await measureInterleaved([original, pruned], options));
}

/** The speed-up of the second model over the first from their interleaved timings. */
function speedupOf(t: InterleavedTimings): SpeedupCheck {
  const ratios = t.rounds.map(([a, b]) => a / b).sort((a, b) => a - b);
  return {
    originalMs: t.medians[0],
    prunedMs: t.medians[1],
    speedup: median(ratios),
    low: ratios[0],
    high: ratios[ratios.length - 1],
    rounds: ratios.length,
  };
}

/** A latency model for pruning `original` at `batch`: its table, and estimates of any model. */
export interface LatencyModel extends Required<LatencyEstimator> {
  table: LatencyTable;
  /** Measured latency of the original (ms) and the part outside the blocks (after a refit: the
   * intercept of the line through the two models timed, which may be below 0). */
  originalMs: number;
  restMs: number;
  /** Factor on the table's block timings: how much more (or less) a block costs inside the
   * model than alone. */
  blockScale: number;
  /** Whether `blockScale` was fitted from the original and the probe (else: noise too large). */
  fitted: boolean;
  /** Measured latency of the probe (the original with every MLP halved), ms. */
  probeMs: number;
  /** After {@link LatencyModel.refine} with a model near the goal: the original and that model
   * timed against each other (ms), through which `restMs` and `blockScale` were fitted again. */
  refit?: { originalMs: number; nearMs: number };
  /** The smooth fit of the table that unit savings are read from. */
  fit: BlockFit;
}

/** What a pruning run may prune, for the grid to span every size it can reach. */
export interface PruneScope {
  heads?: boolean;
  dims?: boolean;
  /** Attention without a head flag: head dims, or whole heads where dims cannot go. */
  attention?: boolean;
  /** Q/K dims and V dims pruned apart. */
  separate?: boolean;
  /** MLP channels (default true). */
  mlp?: boolean;
  embedding?: boolean;
  /** Share of each kind every block keeps at least (default {@link DEFAULT_MIN_KEEP}). */
  minKeep?: number;
  roundTo?: number;
}

/**
 * What a target run with `options` may prune: its flags, and attention where no head flag says
 * which and the head ratio is not 0 (a target may take head dims of its own accord).
 */
export function targetScope(options: RunOptions, minKeep?: number): PruneScope {
  const flagged = !!options.pruneNumHeads || !!options.pruneHeadDims;
  return {
    heads: !!options.pruneNumHeads,
    dims: !!options.pruneHeadDims,
    attention: !flagged && options.headPruningRatio !== 0,
    separate: !!options.separateQkV,
    mlp: options.pruneMlp !== false,
    embedding: !!options.pruneEmbedding,
    ...(minKeep !== undefined ? { minKeep } : {}),
    ...(options.roundTo !== undefined ? { roundTo: options.roundTo } : {}),
  };
}

/** The smallest size on each axis a run with `scope` can reach in these blocks. */
export function scopeReach(blocks: BlockShape[], scope: PruneScope): GridReach {
  const minKeep = scope.minKeep ?? DEFAULT_MIN_KEEP, roundTo = scope.roundTo ?? 1;
  const lowest = (kind: "heads" | "dims" | "channels" | "embedding", axis: keyof BlockShape) =>
    Math.min(...blocks.map((b) => keptFloor(kind, b[axis], minKeep, roundTo)));
  return {
    ...(scope.embedding ? { emb: lowest("embedding", "emb") } : {}),
    ...(scope.heads ? { heads: lowest("heads", "heads") } : {}),
    ...(scope.dims ? { qk: lowest("dims", "qk"), v: lowest("dims", "v") } : {}),
    ...(scope.mlp ?? true ? { mlp: lowest("channels", "mlp") } : {}),
    tiedDims: !!scope.dims && !scope.separate,
  };
}

const one = (shape: BlockShape, kind: UnitKind): BlockShape => {
  switch (kind) {
    case "heads":
      return { ...shape, heads: shape.heads - 1 };
    case "dims":
      return { ...shape, qk: shape.qk - 1, v: shape.v - 1 };
    case "qk":
      return { ...shape, qk: shape.qk - 1 };
    case "v":
      return { ...shape, v: shape.v - 1 };
    case "channels":
      return { ...shape, mlp: shape.mlp - 1 };
    case "embedding":
      return { ...shape, emb: shape.emb - 1 };
  }
};

/** How to build a latency model. */
export interface LatencyModelOptions extends Omit<ProfileOptions, "tokens"> {
  /** What the run may prune (the grid spans it down to the floors); default: every kind. */
  scope?: PruneScope;
  /** Interleaved rounds of the final check of a pruned model against the original (default
   * 7). */
  rounds?: number;
  /** Timed runs per model and round (median; default 5). */
  roundRuns?: number;
  /** Times whole models instead of {@link measureInterleaved} on the runtime (the original
   * first): for the fit of the table to the model, and the final check. */
  measure?: (models: (ModelProto | Uint8Array)[]) => Promise<InterleavedTimings>;
}

/** Profiles the block table of `original` (or reads it from the cache) and measures it. */
export async function createLatencyModel(
  original: ModelProto,
  options: LatencyModelOptions = {},
): Promise<LatencyModel> {
  const batch = options.batch ?? 1;
  const blocks = await modelBlocks(original);
  const scope = {
    ...(options.scope ?? { heads: true, dims: true, separate: true, embedding: true }),
  };
  if (scope.attention) {
    scope.heads ||= blocks.dimsBlocked;
    scope.dims ||= !blocks.dimsBlocked;
  }
  const profile = { ...options, batch, tokens: blocks.tokens };
  let table = await profileBlock(blocks.shapes, {
    ...profile,
    reach: scopeReach(blocks.shapes, scope),
  });
  const smallest = table.ms[0], largest = table.ms[table.ms.length - 1];
  if (!(smallest < 0.9 * largest)) {
    throw new PruneError(
      "unsupported-graph",
      `latency: on this runtime the smallest block of the grid takes ${smallest.toFixed(3)} ms ` +
        `and the full one ${largest.toFixed(3)} ms — timing overhead hides what pruning saves, ` +
        `so no speed-up can be planned (use --target-params or --target-macs, or a larger ` +
        `--latency-batch)`,
    );
  }
  const sum = (b: ModelBlocks) => b.shapes.reduce((s, x) => s + interpolate(table, x), 0);
  // A block timed alone need not cost what it costs inside the model (caches, memory traffic,
  // the runtime's per-run work): the table is fitted to the model by a second measurement, of
  // the model with every MLP halved — model ≈ rest + scale × Σ blocks through both points. The
  // two are timed by interleaved rounds: load that comes and goes weighs on both alike.
  const measuring = {
    batch,
    threads: options.threads,
    runtime: options.runtime,
    clock: options.clock,
    rounds: options.rounds ?? 7,
    runs: options.roundRuns ?? 5,
  };
  const time = options.measure ?? ((models) => measureInterleaved(models, measuring));
  let originalMs: number, probeMs = NaN, b1 = NaN;
  const b0 = sum(blocks);
  const probe = decodeModel(encodeModel(original));
  try {
    await pruneModel(probe, { pruningRatio: 0.5, roundTo: 8, backend: "cpu" });
    b1 = sum(await modelBlocks(probe));
    [originalMs, probeMs] = (await time([original, probe])).medians;
  } catch {
    // no probe (its MLPs cannot be halved, or the halved MLP is off the grid): the fallback
    originalMs = (await time([original])).medians[0];
  }
  let blockScale = (originalMs - probeMs) / (b0 - b1);
  let fitted = true;
  if (!(blockScale > 0.2 && blockScale < 5 && originalMs - blockScale * b0 >= 0)) {
    // Timing noise larger than what halving the MLPs saves: the table as timed, scaled down
    // only where the blocks alone add up to more than the whole model.
    blockScale = b0 > originalMs ? originalMs / b0 : 1;
    fitted = false;
  }
  let restMs = Math.max(0, originalMs - blockScale * b0); // not -1e-16 from rounding
  let refit: LatencyModel["refit"];
  const fit = fitTable(table);
  // Kept as bytes: the run prunes the original in place.
  const originalBytes = encodeModel(original);
  return {
    get table() {
      return table;
    },
    fit,
    get originalMs() {
      return refit?.originalMs ?? originalMs;
    },
    get restMs() {
      return restMs;
    },
    get blockScale() {
      return blockScale;
    },
    get fitted() {
      return fitted;
    },
    get refit() {
      return refit;
    },
    probeMs,
    async estimate(model: ModelProto) {
      return restMs + blockScale * sum(await modelBlocks(model));
    },
    async costs(model: ModelProto) {
      const b = await modelBlocks(model);
      // Read off the smooth fit of the grid (see fit.ts), not the raw grid: timing noise would
      // make one unit look free and the next one worth several.
      const saved = (shape: BlockShape, kind: UnitKind) =>
        Math.max(0, fit.predict(shape) - fit.predict(one(shape, kind)));
      return (group: Group, kind: UnitKind) => {
        if (kind === "embedding") {
          return blockScale * b.shapes.reduce((s, x) => s + saved(x, kind), 0);
        }
        const i = (group.kind === "mlp" ? b.mlp : b.attention).indexOf(group.name);
        return i < 0 ? 0 : blockScale * saved(b.shapes[i], kind);
      };
    },
    async refine(models: ModelProto[], near?: ModelProto) {
      const shapes = [];
      for (const m of models) shapes.push(...(await modelBlocks(m)).shapes);
      table = await refineTable(table, shapes, profile);
      if (!near) return undefined;
      // The original and a model near the goal timed against each other now: the fit of the
      // table to the model goes through them, so load since the start and the way blocks cost
      // inside a smaller model do not carry into the estimates near the goal.
      const [o, c] = (await time([originalBytes, near])).medians;
      const s0 = sum(blocks), s1 = sum(await modelBlocks(near));
      const scale = (o - c) / (s0 - s1);
      // A line through two points near each other: its intercept may fall below 0 (blocks that
      // cost less inside a smaller model), what matters is the slope between them.
      if (scale > 0.2 && scale < 5) {
        blockScale = scale;
        restMs = o - scale * s0;
        fitted = true;
        refit = { originalMs: o, nearMs: c };
      }
      return restMs + blockScale * s0;
    },
    async compare(before: Uint8Array, after: ModelProto) {
      return speedupOf(await time([before, after]));
    },
  };
}
