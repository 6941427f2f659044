/**
 * Gram matrices XᵀX of activation rows gathered over many calibration runs. A run with one
 * sample gives a few dozen rows per layer; a Gram block per run would cost C² values written,
 * copied back and added per layer and run (38 MB for a 3072-wide MLP layer) for C·rows of work.
 * So the rows come back as they are, are buffered per tensor, and every few MB of them one
 * product XᵀX over all buffered rows runs in onnxruntime (its optimised multi-threaded GEMM,
 * far faster than a JavaScript or wasm loop at these sizes) and is added to the tensor's Gram.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { createSession, loadOrt, type OrtSession } from "../runtime/ort.ts";
import type { ChannelStats } from "./stats.ts";

/** Rows buffered per tensor before their product runs (bytes of float32 rows). */
const FLUSH_BYTES = 8 * 2 ** 20;

/** Rows held instead of a Gram matrix, at most this many per channel (twice the Gram's memory;
 * all held rows together stay within what their Gram matrices would take, see GramRows). */
const HELD_ROWS_PER_CHANNEL = 2;

/** Column blocks of a Gram matrix: only the blocks on and below the diagonal are computed
 * (XᵢᵀXⱼ, i ≥ j), 10 products of 16 for 4 blocks, and the rest mirrored once at the end. */
export function columnBlocks(channels: number): number[] {
  const count = channels >= 512 ? 4 : 1;
  const base = Math.floor(channels / count);
  return Array.from({ length: count }, (_, i) => i < count - 1 ? base : channels - base * i);
}

/** A graph input or output of element type `elemType` (1: float, 7: int64); dimensions by size
 * or by name. */
export function valueInfo(name: string, elemType: number, dims: (string | number)[]) {
  const dim = (d: string | number) =>
    onnx.TensorShapeProto.Dimension.create(
      typeof d === "string" ? { dimParam: d } : { dimValue: d },
    );
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({ dim: dims.map(dim) }),
      }),
    }),
  });
}

/** A model computing the lower blocks gᵢⱼ = xᵢᵀxⱼ of xᵀx for x of any [rows, channels]. */
function gramModel(channels: number): { bytes: Uint8Array; outputs: string[] } {
  const blocks = columnBlocks(channels);
  const value = (name: string, dims: (string | number)[]) => valueInfo(name, 1, dims);
  const parts = blocks.map((_, i) => `x${i}`);
  const node: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const outputs: string[] = [];
  if (blocks.length > 1) {
    node.push(onnx.NodeProto.create({
      opType: "Split",
      input: ["x", "sizes"],
      output: parts,
      attribute: [onnx.AttributeProto.create({ name: "axis", type: 2, i: 1 })],
    }));
  } else parts[0] = "x";
  for (let i = 0; i < blocks.length; i++) {
    for (let j = 0; j <= i; j++) {
      outputs.push(`g${i}_${j}`);
      node.push(onnx.NodeProto.create({
        opType: "Gemm",
        input: [parts[i], parts[j]],
        output: [`g${i}_${j}`],
        attribute: [onnx.AttributeProto.create({ name: "transA", type: 2, i: 1 })],
      }));
    }
  }
  const bytes = encodeModel(onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 13 })],
    graph: onnx.GraphProto.create({
      name: "gram",
      node,
      initializer: blocks.length > 1
        ? [
          onnx.TensorProto.create({
            name: "sizes",
            dataType: 7,
            dims: [blocks.length],
            int64Data: blocks,
          }),
        ]
        : [],
      input: [value("x", ["rows", channels])],
      output: outputs.map((o) => {
        const [i, j] = o.slice(1).split("_").map(Number);
        return value(o, [blocks[i], blocks[j]]);
      }),
    }),
  }));
  return { bytes, outputs };
}

/** Buffers rows per tensor and adds their Gram matrix to its statistics, chunk by chunk. */
export class GramRows {
  /** One session per width. */
  #sessions = new Map<number, Promise<{ session: OrtSession; outputs: string[] }>>();
  #pending = new Map<ChannelStats, { chunks: Float32Array[]; rows: number }>();
  /** Rows held (bytes) by every tensor holding rows, and what their Gram matrices would take: the
   * held rows together never take more than that, so holding them never raises the peak memory
   * above that of summing every Gram matrix from the start. */
  #heldBytes = 0;
  #budget = 0;
  /** Tensors whose Gram holds only its lower blocks so far. */
  #lower = new Set<ChannelStats>();

  /** Counts the Gram matrix of a tensor that may hold rows, before any rows arrive. */
  reserve(channels: number): void {
    this.#budget += channels * channels * 4;
  }

  /** Adds `rows` rows of `stats.channels` values (row-major) to `stats`' Gram matrix (or to
   * the rows it holds, see `ChannelStats.rows`). */
  async add(stats: ChannelStats, data: Float32Array, rows: number): Promise<void> {
    if (rows === 0) return;
    const c = stats.channels;
    if (stats.holdingRows) {
      const held = stats.gramCount + this.#buffered(stats);
      if (
        held + rows > HELD_ROWS_PER_CHANNEL * c ||
        this.#heldBytes + rows * c * 4 > this.#budget
      ) {
        // Too many to hold: the Gram matrix after all, from every row so far.
        this.#heldBytes -= held * c * 4;
        stats.holdingRows = false;
        stats.gram = new Float32Array(c * c);
        for (const block of stats.rows ?? []) await this.#product(stats, block, block.length / c);
        stats.rows = undefined;
      } else this.#heldBytes += rows * c * 4;
    }
    if (stats.holdingRows && data.length * 4 >= FLUSH_BYTES) return this.#keep(stats, data, rows);
    let p = this.#pending.get(stats);
    if (!p) this.#pending.set(stats, p = { chunks: [], rows: 0 });
    p.chunks.push(data);
    p.rows += rows;
    if (p.rows * c * 4 < FLUSH_BYTES) return;
    if (stats.holdingRows) this.#keep(stats, ...this.#take(stats)!);
    else await this.#flush(stats);
  }

  /** Adds every buffered row and completes each Gram matrix (its upper blocks mirrored); the
   * rows of a tensor still holding them are all in its `rows` from now on. */
  async flush(): Promise<void> {
    for (const stats of [...this.#pending.keys()]) {
      if (stats.holdingRows) this.#keep(stats, ...this.#take(stats)!);
      else await this.#flush(stats);
    }
    for (const stats of this.#lower) mirrorLower(stats.gram, stats.channels);
    this.#lower.clear();
  }

  async release(): Promise<void> {
    this.#pending.clear();
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) await (await s.catch(() => undefined))?.session.release?.();
  }

  #buffered(stats: ChannelStats): number {
    return this.#pending.get(stats)?.rows ?? 0;
  }

  /** The buffered rows of `stats` as one array. */
  #take(stats: ChannelStats): [Float32Array, number] | undefined {
    const p = this.#pending.get(stats);
    this.#pending.delete(stats);
    if (!p || p.rows === 0) return undefined;
    if (p.chunks.length === 1) return [p.chunks[0], p.rows];
    const x = new Float32Array(p.rows * stats.channels);
    let at = 0;
    for (const chunk of p.chunks) {
      x.set(chunk, at);
      at += chunk.length;
    }
    return [x, p.rows];
  }

  /** Holds a block of rows in `stats.rows` (their sums counted now). */
  #keep(stats: ChannelStats, x?: Float32Array, rows = 0): void {
    if (!x) return;
    (stats.rows ??= []).push(x);
    stats.addGram(undefined, columnSums(x, rows, stats.channels), rows);
  }

  async #flush(stats: ChannelStats): Promise<void> {
    const taken = this.#take(stats);
    if (!taken || !stats.gram) return;
    await this.#product(stats, ...taken);
    stats.addGram(undefined, columnSums(...taken, stats.channels), taken[1]);
  }

  /** Adds XᵀX of `rows` rows to `stats.gram` (its blocks below the diagonal; sums not counted). */
  async #product(stats: ChannelStats, x: Float32Array, rows: number): Promise<void> {
    const c = stats.channels;
    const ort = await loadOrt();
    let made = this.#sessions.get(c);
    if (!made) {
      const { bytes, outputs } = gramModel(c);
      made = createSession(bytes).then((session) => ({ session, outputs }));
      this.#sessions.set(c, made);
    }
    const { session, outputs } = await made;
    const out = await session.run({ x: new ort.Tensor("float32", x, [rows, c]) }, outputs);
    const starts = [0];
    for (const size of columnBlocks(c)) starts.push(starts.at(-1)! + size);
    const g = stats.gram!;
    for (const name of outputs) {
      const [i, j] = name.slice(1).split("_").map(Number);
      const block = out[name].data as Float32Array;
      const w = starts[j + 1] - starts[j];
      for (let r = starts[i]; r < starts[i + 1]; r++) {
        const from = (r - starts[i]) * w, to = r * c + starts[j];
        for (let k = 0; k < w; k++) g[to + k] += block[from + k];
      }
    }
    this.#lower.add(stats);
  }
}

/** Per-channel sums of `rows` rows of `channels` values. */
function columnSums(x: Float32Array, rows: number, channels: number): Float64Array {
  const sum = new Float64Array(channels);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < channels; j++) sum[j] += x[r * channels + j];
  }
  return sum;
}

/** Copies the blocks below the diagonal into those above (the blocks on it are whole). */
function mirrorLower(g: Float32Array | undefined, c: number): void {
  if (!g) return;
  const starts = [0];
  for (const size of columnBlocks(c)) starts.push(starts.at(-1)! + size);
  for (let b = 1; b < starts.length - 1; b++) {
    for (let r = starts[b]; r < c; r++) {
      for (let k = starts[b - 1]; k < starts[b]; k++) g[k * c + r] = g[r * c + k];
    }
  }
}
