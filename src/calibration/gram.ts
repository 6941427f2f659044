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

/** A model computing g = xᵀx for x of any [rows, channels]. */
function gramModel(): Uint8Array {
  const dim = (dimParam: string) => onnx.TensorShapeProto.Dimension.create({ dimParam });
  const value = (name: string, dims: string[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: onnx.TypeProto.create({
        tensorType: onnx.TypeProto.Tensor.create({
          elemType: 1,
          shape: onnx.TensorShapeProto.create({ dim: dims.map(dim) }),
        }),
      }),
    });
  return encodeModel(onnx.ModelProto.create({
    irVersion: 7,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: 13 })],
    graph: onnx.GraphProto.create({
      name: "gram",
      node: [
        onnx.NodeProto.create({
          opType: "Gemm",
          input: ["x", "x"],
          output: ["g"],
          attribute: [onnx.AttributeProto.create({ name: "transA", type: 2, i: 1 })],
        }),
      ],
      input: [value("x", ["rows", "channels"])],
      output: [value("g", ["channels", "channels"])],
    }),
  }));
}

/** Buffers rows per tensor and adds their Gram matrix to its statistics, chunk by chunk. */
export class GramRows {
  #session?: Promise<OrtSession>;
  #pending = new Map<ChannelStats, { chunks: Float32Array[]; rows: number }>();

  /** Adds `rows` rows of `stats.channels` values (row-major) to `stats`' Gram matrix. */
  async add(stats: ChannelStats, data: Float32Array, rows: number): Promise<void> {
    if (rows === 0) return;
    let p = this.#pending.get(stats);
    if (!p) this.#pending.set(stats, p = { chunks: [], rows: 0 });
    p.chunks.push(data);
    p.rows += rows;
    if (p.rows * stats.channels * 4 >= FLUSH_BYTES) await this.#flush(stats);
  }

  /** Adds every buffered row. */
  async flush(): Promise<void> {
    for (const stats of [...this.#pending.keys()]) await this.#flush(stats);
  }

  async release(): Promise<void> {
    this.#pending.clear();
    const session = await this.#session?.catch(() => undefined);
    this.#session = undefined;
    await session?.release?.();
  }

  async #flush(stats: ChannelStats): Promise<void> {
    const p = this.#pending.get(stats);
    this.#pending.delete(stats);
    if (!p || p.rows === 0 || !stats.gram) return;
    const c = stats.channels;
    let x = p.chunks[0];
    if (p.chunks.length > 1) {
      x = new Float32Array(p.rows * c);
      let at = 0;
      for (const chunk of p.chunks) {
        x.set(chunk, at);
        at += chunk.length;
      }
    }
    p.chunks.length = 0;
    const sum = new Float64Array(c);
    for (let r = 0; r < p.rows; r++) {
      for (let j = 0; j < c; j++) sum[j] += x[r * c + j];
    }
    const ort = await loadOrt();
    this.#session ??= createSession(gramModel());
    const session = await this.#session;
    const out = await session.run({ x: new ort.Tensor("float32", x, [p.rows, c]) }, ["g"]);
    stats.addGram(out.g.data as Float32Array, sum, p.rows);
  }
}
