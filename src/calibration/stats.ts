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
import { encodeModel } from "../onnx/model_io.ts";
import { createSession, type OrtTensor } from "../runtime/ort.ts";
import { PruneError } from "../errors.ts";

/** Per-channel statistics of one tensor over every calibration position (token, sample). */
export class ChannelStats {
  readonly channels: number;
  /** Positions seen (rows of the [positions, channels] view). */
  count = 0;
  readonly sum: Float64Array;
  readonly sumSquares: Float64Array;
  /** Σ xᵀx, channels × channels, row-major (only when asked for). */
  readonly gram?: Float64Array;

  constructor(channels: number, gram: boolean) {
    this.channels = channels;
    this.sum = new Float64Array(channels);
    this.sumSquares = new Float64Array(channels);
    if (gram) this.gram = new Float64Array(channels * channels);
  }

  /** Adds a Gram block computed elsewhere (onnxruntime: MatMul(xᵀ, x) of the same rows). */
  addGram(block: ArrayLike<number>): void {
    const g = this.gram!;
    for (let i = 0; i < g.length; i++) g[i] += block[i];
  }

  /** Adds the rows of a [positions, channels] block (and their Gram, unless `withGram` is off). */
  add(data: ArrayLike<number>, withGram = true): void {
    const c = this.channels, rows = data.length / c;
    for (let r = 0; r < rows; r++) {
      const base = r * c;
      for (let j = 0; j < c; j++) {
        const v = data[base + j];
        this.sum[j] += v;
        this.sumSquares[j] += v * v;
      }
      const g = withGram ? this.gram : undefined;
      if (g) {
        for (let i = 0; i < c; i++) {
          const vi = data[base + i];
          if (vi === 0) continue;
          const row = i * c;
          for (let j = 0; j < c; j++) g[row + j] += vi * data[base + j];
        }
      }
    }
    this.count += rows;
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

/**
 * Runs `model` on every batch and returns the statistics of `tensors` (float tensors whose last
 * axis holds the channels). `gram` names the tensors whose Gram matrix is also collected.
 */
export async function collectStats(
  model: ModelProto,
  tensors: string[],
  batches: AsyncIterable<Record<string, OrtTensor>> | Iterable<Record<string, OrtTensor>>,
  gram: Set<string> = new Set(),
): Promise<Map<string, ChannelStats>> {
  const graph = model.graph!;
  const declared = new Set((graph.output ?? []).map((o) => o.name));
  const outputs = [
    ...(graph.output ?? []),
    ...tensors.filter((t) => !declared.has(t)).map((name) => onnx.ValueInfoProto.create({ name })),
  ];
  // Gram matrices are computed by onnxruntime itself: Flatten to [positions, C], then xᵀ·x.
  const opset = Number(
    (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx")?.version ?? 0,
  );
  const gramInGraph = opset >= 11;
  const extra: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const gramOutput = new Map<string, string>();
  if (gramInGraph) {
    [...gram].forEach((name, i) => {
      const flat = `prune_vit_stats_${i}_rows`, t = `prune_vit_stats_${i}_rows_t`;
      const out = `prune_vit_stats_${i}_gram`;
      extra.push(
        onnx.NodeProto.create({
          opType: "Flatten",
          input: [name],
          output: [flat],
          attribute: [onnx.AttributeProto.create({ name: "axis", type: 2, i: -1 })],
        }),
        onnx.NodeProto.create({
          opType: "Transpose",
          input: [flat],
          output: [t],
          attribute: [onnx.AttributeProto.create({ name: "perm", type: 7, ints: [1, 0] })],
        }),
        onnx.NodeProto.create({ opType: "MatMul", input: [t, flat], output: [out] }),
      );
      outputs.push(onnx.ValueInfoProto.create({ name: out }));
      gramOutput.set(name, out);
    });
  }
  const copy = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...graph,
      node: [...(graph.node ?? []), ...extra],
      output: outputs,
    }),
  });
  const session = await createSession(encodeModel(copy));
  const stats = new Map<string, ChannelStats>();
  try {
    for await (const feeds of batches) {
      const out = await session.run(feeds, [...tensors, ...gramOutput.values()]);
      for (const name of tensors) {
        const t = out[name];
        const dims = [...t.dims].map(Number);
        const channels = dims[dims.length - 1];
        let s = stats.get(name);
        if (!s) stats.set(name, s = new ChannelStats(channels, gram.has(name)));
        if (s.channels !== channels) {
          throw new PruneError("bad-calibration", `tensor "${name}" changed width between batches`);
        }
        const g = gramOutput.get(name);
        s.add(t.data as Float32Array, !g);
        if (g && s.gram) s.addGram(out[g].data as Float32Array);
      }
    }
  } finally {
    await session.release?.();
  }
  if (stats.size === 0) {
    throw new PruneError("bad-calibration", "the calibration data holds no batch");
  }
  return stats;
}
