/**
 * Latency of a whole model from the block table: the sum of its blocks' interpolated latencies,
 * times the factor a block costs more inside the model than alone, plus what the rest of the
 * model (patch embedding, head) costs — both fitted to two measurements: the original, and the
 * original with every MLP halved. What one unit of a block (a head, a
 * per-head dim, an MLP channel, an embedding channel of every block) saves is the difference of
 * the table between the block's shape and the same shape one unit smaller.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { decodeModel, encodeModel } from "../onnx/model_io.ts";
import { pruneModel } from "../prune.ts";
import { Graph, type GraphProto } from "../graph/graph.ts";
import { probeTensors } from "../runtime/probe.ts";
import { ORT_ELEMENT_TYPES, type OrtTensor } from "../runtime/ort.ts";
import { traceGraph } from "../analysis/trace.ts";
import { findGroups, type Group } from "../analysis/groups.ts";
import type { UnitKind } from "../allocate.ts";
import type { LatencyEstimator } from "../target.ts";
import type { BlockShape } from "./block.ts";
import { interpolate, type LatencyTable, profileBlock, type ProfileOptions } from "./table.ts";
import { type LatencyRuntime, medianRun, timingRuntime } from "./runtime.ts";

/** The transformer blocks of a model: the k-th attention block with the k-th MLP. */
export interface ModelBlocks {
  shapes: BlockShape[];
  /** Group names of each block's attention and MLP, and of the embedding width. */
  attention: string[];
  mlp: string[];
  embedding?: string;
  /** Tokens per sample. */
  tokens: number;
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
  };
}

/** How to measure a whole model. */
export interface MeasureOptions {
  batch?: number;
  /** Timed runs (median; default 15). */
  runs?: number;
  threads?: number;
  runtime?: LatencyRuntime;
}

/** Median latency (ms) of a whole model at `batch` on a runtime, inputs synthesised. */
export async function measureLatency(
  model: ModelProto,
  options: MeasureOptions = {},
): Promise<number> {
  const batch = options.batch ?? 1, runs = options.runs ?? 15;
  const rt = await timingRuntime(options.runtime, options.threads);
  const ort = rt.ort;
  const session = await rt.open(encodeModel(model));
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
  try {
    // A whole model is timed once or twice, not over a grid: worth a longer warm-up.
    return await medianRun(session, feeds, runs, 200);
  } finally {
    await session.release?.();
  }
}

/** A latency model for pruning `original` at `batch`: its table, and estimates of any model. */
export interface LatencyModel extends LatencyEstimator {
  table: LatencyTable;
  /** Measured latency of the original (ms) and the part outside the blocks. */
  originalMs: number;
  restMs: number;
  /** Factor on the table's block timings: how much more (or less) a block costs inside the
   * model than alone. */
  blockScale: number;
  /** Whether `blockScale` was fitted from the original and the probe (else: noise too large). */
  fitted: boolean;
  /** Measured latency of the probe (the original with every MLP halved), ms. */
  probeMs: number;
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

/** Profiles the block table of `original` (or reads it from the cache) and measures it. */
export async function createLatencyModel(
  original: ModelProto,
  options: Omit<ProfileOptions, "tokens"> = {},
): Promise<LatencyModel> {
  const batch = options.batch ?? 1;
  const blocks = await modelBlocks(original);
  const full = Object.fromEntries(
    (["emb", "heads", "qk", "v", "mlp"] as const).map((a) => [
      a,
      Math.max(...blocks.shapes.map((s) => s[a])),
    ]),
  ) as unknown as BlockShape;
  const table = await profileBlock(full, { ...options, batch, tokens: blocks.tokens });
  const originalMs = await measureLatency(original, {
    batch,
    threads: options.threads,
    runtime: options.runtime,
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
  // the model with every MLP halved — model ≈ rest + scale × Σ blocks through both points.
  const measuring = { batch, threads: options.threads, runtime: options.runtime };
  let probeMs = NaN, b1 = NaN;
  const b0 = sum(blocks);
  try {
    const probe = decodeModel(encodeModel(original));
    await pruneModel(probe, { pruningRatio: 0.5, roundTo: 8, backend: "cpu" });
    probeMs = await measureLatency(probe, measuring);
    b1 = sum(await modelBlocks(probe));
  } catch {
    // no probe (its MLPs cannot be halved): the fallback below
  }
  let blockScale = (originalMs - probeMs) / (b0 - b1);
  let fitted = true;
  if (!(blockScale > 0.2 && blockScale < 5 && originalMs - blockScale * b0 >= 0)) {
    // Timing noise larger than what halving the MLPs saves: the table as timed, scaled down
    // only where the blocks alone add up to more than the whole model.
    blockScale = b0 > originalMs ? originalMs / b0 : 1;
    fitted = false;
  }
  const blocksMs = (b: ModelBlocks) => blockScale * sum(b);
  const restMs = Math.max(0, originalMs - blocksMs(blocks)); // not -1e-16 from rounding
  return {
    table,
    originalMs,
    restMs,
    blockScale,
    fitted,
    probeMs,
    async estimate(model: ModelProto) {
      return restMs + blocksMs(await modelBlocks(model));
    },
    async costs(model: ModelProto) {
      const b = await modelBlocks(model);
      // The table's slope at the shape; where timing noise flattened it, the slope down to the
      // smallest grid point instead (a unit never saves nothing on a real runtime).
      const saved = (shape: BlockShape, kind: UnitKind) => {
        const here = interpolate(table, shape);
        const local = here - interpolate(table, one(shape, kind));
        if (local > 0) return local;
        const axis = kind === "heads"
          ? "heads"
          : kind === "channels"
          ? "mlp"
          : kind === "embedding"
          ? "emb"
          : kind === "v"
          ? "v"
          : "qk";
        const low = table.axes[axis][0];
        const span = shape[axis] - low;
        const lower = { ...shape, [axis]: low, ...(kind === "dims" ? { v: table.axes.v[0] } : {}) };
        const slope = span > 0 ? (here - interpolate(table, lower)) / span : 0;
        return slope > 0 ? slope : 1e-6;
      };
      return (group: Group, kind: UnitKind) => {
        if (kind === "embedding") {
          return blockScale * b.shapes.reduce((s, x) => s + saved(x, kind), 0);
        }
        const i = (group.kind === "mlp" ? b.mlp : b.attention).indexOf(group.name);
        return i < 0 ? 0 : blockScale * saved(b.shapes[i], kind);
      };
    },
  };
}
