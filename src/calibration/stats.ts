/**
 * Activation statistics from calibration data: the original model runs in onnxruntime with the
 * inputs of the pruned layers exposed as outputs, and every channel of those tensors (their last
 * axis) is reduced over all other positions, batch after batch, so memory stays bounded: sums,
 * sums of squares, and — for the layers to be reconstructed — the Gram matrix XᵀX.
 *
 * @module
 */
import type { ModelProto } from "../onnx/proto.ts";
import { onnx } from "../onnx/proto.ts";
import { createModelSession } from "../runtime/model_session.ts";
import type { OrtTensor } from "../runtime/ort.ts";
import { PruneError } from "../errors.ts";
import { gramNow } from "../core/mod.ts";
import { GramRows } from "./gram.ts";
import { hasHalfFloats } from "../distill/float32.ts";
import { planSegments, runSegments, sessionWeightBytes } from "../runtime/segmented.ts";

/** Per-channel statistics of one tensor over every calibration position (token, sample). */
export class ChannelStats {
  readonly channels: number;
  /** Positions seen (rows of the [positions, channels] view). */
  count = 0;
  readonly sum: Float64Array;
  readonly sumSquares: Float64Array;
  /** Σ xᵀx, channels × channels, row-major (only when asked for; undefined once released).
   * One float32 copy: onnxruntime computes each batch's block in float32, and the compensation
   * solved from it in float32 matches the float64 solve (bench/RESULTS.md). */
  gram?: Float32Array;
  /** Whether `gram` is another's, read through a view of these statistics (a search's candidates
   * share one): read, never handed over to a solver. */
  gramShared = false;
  /** Positions summed into `gram` (every `gramStride`-th position when subsampled), and their
   * per-channel sum: means used with the Gram matrix come from the same positions, so that
   * E[xxᵀ] − E[x]E[x]ᵀ stays positive semi-definite. */
  gramCount = 0;
  readonly gramSum?: Float64Array;
  /** The Gram's rows themselves instead of `gram` (blocks of [rows, channels], row-major,
   * gramCount rows in all), while they take no more memory than twice the Gram would and all
   * tensors' held rows together no more than their Gram matrices would: a refit then multiplies
   * only what it reads (the kept channels' columns, once the plan is known) instead of XᵀX. */
  rows?: Float32Array[];
  /** Whether rows are gathered for `rows` (see `gram: "rows"` below) rather than a Gram matrix. */
  holdingRows = false;

  /** `gram`: collect a Gram matrix; "rows": hold its rows instead while they are few (the
   * tensor's Gram is then only read through a refit, which can use them). */
  constructor(channels: number, gram: boolean | "rows") {
    this.channels = channels;
    this.sum = new Float64Array(channels);
    this.sumSquares = new Float64Array(channels);
    if (gram) {
      if (gram === "rows") this.holdingRows = true;
      else this.gram = new Float32Array(channels * channels);
      this.gramSum = new Float64Array(channels);
    }
  }

  /** Whether a Gram matrix, or the rows it is made of, is at hand. */
  get hasGram(): boolean {
    return this.gram !== undefined || this.rows !== undefined || this.holdingRows;
  }

  /** Drops the Gram matrix (C² values), or its rows, once nothing needs it any more. */
  releaseGram(): void {
    this.gram = undefined;
    this.rows = undefined;
  }

  /** Adds per-channel sums of x and x² over `rows` positions computed elsewhere. */
  addSums(sum: ArrayLike<number>, squares: ArrayLike<number>, rows: number): void {
    for (let j = 0; j < this.channels; j++) {
      this.sum[j] += sum[j];
      this.sumSquares[j] += squares[j];
    }
    this.count += rows;
  }

  /** Adds a Gram block computed elsewhere (xᵀx of `rows` positions, Σx of them; a block
   * already added in place is left out). */
  addGram(block: ArrayLike<number> | undefined, sum: ArrayLike<number>, rows: number): void {
    const g = this.gram!;
    if (block) { for (let i = 0; i < g.length; i++) g[i] += block[i]; }
    for (let j = 0; j < this.channels; j++) this.gramSum![j] += sum[j];
    this.gramCount += rows;
  }

  /** Mean of channel j over the positions of the Gram matrix. */
  gramMean(j: number): number {
    return this.gramCount ? this.gramSum![j] / this.gramCount : 0;
  }

  /** Adds the rows of a [positions, channels] block (and their Gram, computed in the compute
   * core, unless `withGram` is off). */
  add(data: ArrayLike<number>, withGram = true): void {
    const c = this.channels, rows = data.length / c;
    for (let r = 0; r < rows; r++) {
      const base = r * c;
      for (let j = 0; j < c; j++) {
        const v = data[base + j];
        this.sum[j] += v;
        this.sumSquares[j] += v * v;
      }
    }
    this.count += rows;
    if (withGram && this.gram) {
      const x = data instanceof Float32Array ? data : Float32Array.from(data);
      const g = this.gram, block = gramNow(x, rows, c);
      for (let i = 0; i < g.length; i++) g[i] += block[i];
      this.gramCount += rows;
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < c; j++) this.gramSum![j] += data[r * c + j];
      }
    }
  }

  mean(j: number): number {
    return this.count ? this.sum[j] / this.count : 0;
  }

  /** Population variance of channel j. */
  variance(j: number): number {
    if (!this.count) return 0;
    const m = this.sum[j] / this.count;
    return Math.max(0, this.sumSquares[j] / this.count - m * m);
  }

  /** ‖x_j‖₂ over all positions. */
  norm(j: number): number {
    return Math.sqrt(this.sumSquares[j]);
  }
}

/** Statistics on NaN or infinite activations would rank channels, or refit weights, on
 * nothing: refused, naming the batch (1-based) and the tensor. */
function checkFinite(tensor: string, batch: number, ...arrays: ArrayLike<number>[]): void {
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i])) {
        throw new PruneError(
          "bad-calibration",
          `calibration batch ${batch}: the activations at "${tensor}" are not finite (NaN or ` +
            `infinite; their ${i === 0 ? "first" : `${i + 1}th`} statistic is ${a[i]}): ` +
            `check the calibration data for NaN, infinite or huge values`,
        );
      }
    }
  }
}

/** More outputs of the same run, read batch by batch (gradients, in the same pass). */
export interface BatchReader {
  outputs: string[];
  read(outputs: Record<string, OrtTensor>): void;
}

/** What {@link collectStats} collects besides per-channel sums, and how it runs. */
export interface CollectOptions {
  /** Tensors whose Gram matrix is also collected. */
  gram?: Set<string>;
  /** Further outputs of the same runs (gradients). */
  also?: BatchReader;
  /** The Gram matrices are summed over every `gramStride`-th position (default 1). */
  gramStride?: number;
  /** Of the `gram` tensors, those whose rows are held instead while they are few. */
  holdRows?: Set<string>;
  /** Memory for the model's weights in onnxruntime (half floats counted widened, as its CPU
   * provider holds them): a model whose weights take more runs a segment at a time
   * (runtime/segmented.ts), each segment's weights at most half of it — the other half is left
   * to what the segment computes and to the statistics summed from it. Default: one session
   * whatever the size. Not with `also`. */
  sessionMemory?: number;
  /** Told how many segments the model runs in, when it is segmented. */
  onSegments?: (segments: number, bytesEach: number) => void;
  /** Called when a segment has run on every batch, with the (complete) statistics of the
   * tensors it computes; awaited before the next segment runs. Only when segmented. */
  onSegmentDone?: (done: Map<string, ChannelStats>) => Promise<void>;
  /** Told of each segment's run on a batch (done of segments × batches), when segmented. */
  onSegmentProgress?: (done: number, total: number) => void;
}

/**
 * Runs `model` on every batch and returns the statistics of `tensors` (float tensors whose last
 * axis holds the channels). `gram` names the tensors whose Gram matrix is also collected, from
 * every `gramStride`-th position (a Gram matrix costs C² per position, more than the layer
 * itself for an MLP's hidden width; a regular subsample keeps it within budget); of those in
 * `holdRows` the rows are kept instead while they are few (`ChannelStats.rows`: only a refit
 * reads them); `also` reads further outputs of the same runs. A model whose weights pass
 * `sessionMemory` runs a segment at a time over all batches (the batches are then held in
 * memory, and no rows are held).
 *
 * @example
 * ```ts
 * import { decodeModel } from "../onnx/model_io.ts";
 * const model = decodeModel(await Deno.readFile("vit.onnx"));
 * const feeds = [{ pixel_values: images }];
 * const stats = await collectStats(model, ["fc2_input"], feeds, { gram: new Set(["fc2_input"]) });
 * console.log(stats.get("fc2_input")!.norm(0));
 * ```
 */
export async function collectStats(
  model: ModelProto,
  tensors: string[],
  batches: AsyncIterable<Record<string, OrtTensor>> | Iterable<Record<string, OrtTensor>>,
  options: CollectOptions = {},
): Promise<Map<string, ChannelStats>> {
  const { gram = new Set<string>(), also, gramStride = 1 } = options;
  let holdRows = options.holdRows ?? new Set<string>();
  if (!Number.isInteger(gramStride) || gramStride < 1) {
    throw new PruneError("bad-option", `gramStride must be a positive integer, got ${gramStride}`);
  }
  const graph = model.graph!;
  const declared = new Set((graph.output ?? []).map((o) => o.name));
  const opset = Number(
    (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx")?.version ?? 0,
  );
  // The reductions run inside onnxruntime (Flatten to [positions, C], ReduceSum of x and x²):
  // only C numbers per tensor come back, and for a Gram matrix the (subsampled) rows, whose
  // product runs over many batches at once (gram.ts). Before opset 11 the tensors themselves
  // come back and are reduced here.
  const inGraph = opset >= 11;
  const extra: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const initializers: ReturnType<typeof onnx.TensorProto.create>[] = [];
  const outputs = [...(graph.output ?? [])];
  const names = new Map<
    string,
    { sum: string; squares: string; rows: string; gram?: string }
  >();
  const fetch: string[] = [];
  const node = (opType: string, input: string[], output: string, attribute: unknown[] = []) =>
    extra.push(onnx.NodeProto.create({ opType, input, output: [output], attribute } as never));
  const ints = (name: string, i: number) => onnx.AttributeProto.create({ name, type: 2, i });
  if (inGraph) {
    const half = hasHalfFloats(model);
    const axes = "prune_vit_stats_axis0";
    if (opset >= 13) {
      initializers.push(
        onnx.TensorProto.create({ name: axes, dataType: 7, dims: [1], int64Data: [0] }),
      );
    }
    const reduceSum = (input: string, output: string) =>
      opset >= 13
        ? node("ReduceSum", [input, axes], output, [ints("keepdims", 0)])
        : node("ReduceSum", [input], output, [
          ints("keepdims", 0),
          onnx.AttributeProto.create({ name: "axes", type: 7, ints: [0] }),
        ]);
    tensors.forEach((name, i) => {
      const p = `prune_vit_stats_${i}`;
      const out = { sum: `${p}_sum`, squares: `${p}_squares`, rows: `${p}_shape` } as {
        sum: string;
        squares: string;
        rows: string;
        gram?: string;
      };
      node("Flatten", [name], `${p}_rows`, [ints("axis", -1)]);
      // Half-float activations are summed in float32: a float16 sum of squares over thousands
      // of positions overflows, and its rounding swamps a Gram matrix.
      const x = half ? `${p}_rows_float32` : `${p}_rows`;
      if (half) node("Cast", [`${p}_rows`], x, [ints("to", 1)]);
      reduceSum(x, out.sum);
      node("Mul", [x, x], `${p}_rows_squared`);
      reduceSum(`${p}_rows_squared`, out.squares);
      node("Shape", [x], out.rows);
      if (gram.has(name)) {
        let rows = x;
        if (gramStride > 1) {
          const [start, end, axis, step] = ["start", "end", "axis", "step"].map((k) =>
            `${p}_gram_${k}`
          );
          initializers.push(
            ...[[start, 0], [end, Number.MAX_SAFE_INTEGER], [axis, 0], [step, gramStride]].map((
              [n, v],
            ) =>
              onnx.TensorProto.create({ name: n as string, dataType: 7, dims: [1], int64Data: [v] })
            ),
          );
          rows = `${p}_gram_rows`;
          node("Slice", [x, start, end, axis, step], rows);
        }
        // The rows themselves: their Gram matrix is computed over many runs at once (gram.ts).
        out.gram = rows;
      }
      for (const o of Object.values(out)) {
        if (!o) continue;
        outputs.push(onnx.ValueInfoProto.create({ name: o }));
        fetch.push(o);
      }
      names.set(name, out);
    });
  } else {
    for (const t of tensors) {
      if (!declared.has(t)) outputs.push(onnx.ValueInfoProto.create({ name: t }));
      fetch.push(t);
    }
  }
  for (const o of also?.outputs ?? []) {
    if (!declared.has(o)) outputs.push(onnx.ValueInfoProto.create({ name: o }));
    fetch.push(o);
  }
  const copy = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...graph,
      node: [...(graph.node ?? []), ...extra],
      initializer: [...(graph.initializer ?? []), ...initializers],
      output: outputs,
    }),
  });
  const stats = new Map<string, ChannelStats>();
  const grams = new GramRows();
  const memory = options.sessionMemory ?? Infinity;
  const segmented = !also && sessionWeightBytes(copy) > memory;
  // Segment by segment, a tensor's first batch comes when its segment runs, not with the first
  // run: rows could not be counted against every Gram matrix before any are held.
  if (segmented) holdRows = new Set();

  /** Adds one run's outputs (those of one segment, when segmented) for batch `batch` (1-based). */
  const absorb = async (out: Record<string, OrtTensor>, batch: number) => {
    if (batch === 1 && !segmented) {
      // Every tensor that may hold rows counts its Gram matrix before any rows are added.
      for (const name of tensors) {
        const n = names.get(name);
        if (!n || !gram.has(name) || !holdRows.has(name)) continue;
        const dims = out[n.sum].dims;
        grams.reserve(Number(dims[dims.length - 1]));
      }
    }
    for (const name of tensors) {
      const n = names.get(name);
      const first = out[n ? n.sum : name];
      if (!first) continue; // computed in another segment
      const data = first.data as Float32Array;
      const dims = [...first.dims].map(Number);
      const channels = dims[dims.length - 1];
      let s = stats.get(name);
      if (!s) {
        // Rows are held only where they come back as rows (reduced inside onnxruntime).
        const kind = gram.has(name) && (n && holdRows.has(name) ? "rows" : true);
        stats.set(name, s = new ChannelStats(channels, kind));
      }
      if (s.channels !== channels) {
        throw new PruneError("bad-calibration", `tensor "${name}" changed width between batches`);
      }
      if (!n) {
        checkFinite(name, batch, data);
        s.add(data);
        continue;
      }
      const rows = Number((out[n.rows].data as BigInt64Array)[0]);
      const squares = out[n.squares].data as Float32Array;
      checkFinite(name, batch, data, squares);
      s.addSums(data, squares, rows);
      if (n.gram && (s.gram || s.holdingRows)) {
        const x = out[n.gram];
        checkFinite(name, batch, x.data as Float32Array);
        await grams.add(s, x.data as Float32Array, Number(x.dims[0]));
      }
    }
  };

  let runs = 0;
  try {
    if (segmented) {
      const all: Record<string, OrtTensor>[] = [];
      for await (const feeds of batches) all.push(feeds);
      runs = all.length;
      if (runs === 0) {
        throw new PruneError("bad-calibration", "the calibration data holds no batch");
      }
      const segments = planSegments(copy, fetch, memory / 2);
      options.onSegments?.(segments.length, memory / 2);
      let done = 0;
      for await (
        const { batch, outputs, last } of runSegments(copy, segments, all, "calibration")
      ) {
        await absorb(outputs, batch + 1);
        options.onSegmentProgress?.(++done, segments.length * runs);
        if (!last || !options.onSegmentDone) continue;
        await grams.flush();
        const here = tensors.filter((t) => outputs[names.get(t)?.sum ?? t]);
        await options.onSegmentDone(new Map(here.map((t) => [t, stats.get(t)!])));
      }
    } else {
      const session = await createModelSession(copy, {}, "calibration");
      try {
        for await (const feeds of batches) {
          const out = await session.run(feeds, fetch);
          runs++;
          also?.read(out);
          await absorb(out, runs);
        }
      } finally {
        await session.release?.();
      }
    }
    await grams.flush();
  } finally {
    await grams.release();
  }
  if (runs === 0) {
    throw new PruneError("bad-calibration", "the calibration data holds no batch");
  }
  return stats;
}
