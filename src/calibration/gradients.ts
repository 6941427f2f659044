/**
 * Gradient statistics of channel gates from calibration data. For a channel j of a tensor x read
 * by a layer, a gate ξⱼ (xⱼ ← ξⱼ·xⱼ) has gradient sⱼ = Σ_positions xⱼ·∂L/∂xⱼ per sample — the
 * first-order change of the loss when the channel is removed (ξⱼ: 1 → 0), and Σᵢ wᵢ·∂L/∂wᵢ over
 * the column of the reading layer's weight. Summed over samples per channel: Σ s (first-order
 * Taylor), Σ s² (the diagonal of the gates' Fisher information, an estimate of their Hessian)
 * and Σ |s|; for heads (cells of channels) Σ_samples |Σ_{j∈head} sⱼ|, Michel et al.'s head
 * importance, and Σ_samples (Σ_{j∈head} sⱼ)², the Fisher of the head's gate (Kwon et al.). The
 * per-sample gate gradients come from the backward graph (autodiff/backward.ts) run by
 * onnxruntime in the statistics pass.
 *
 * @module
 */
import type { OrtTensor } from "../runtime/ort.ts";
import type { BatchReader } from "./stats.ts";
import { PruneError } from "../errors.ts";

/** Accumulated gate gradients of one tensor's channels. */
export class GateStats {
  readonly channels: number;
  /** Samples seen (0 when the tensor's rows are not samples: sums only). */
  samples = 0;
  /** Σ s: first-order Taylor of each channel's gate. */
  readonly sum: Float64Array;
  /** Σ s²: diagonal Fisher of each channel's gate. */
  readonly squares: Float64Array;
  /** Σ |s|. */
  readonly absolute: Float64Array;
  /** Cell (head) of each channel, and Σ_samples |Σ_{channels of the cell} s| per cell. */
  readonly cellOf?: Int32Array;
  readonly cellAbsolute?: Float64Array;
  /** Σ_samples (Σ_{channels of the cell} s)² per cell: the Fisher of the cell's gate (Kwon et
   * al.'s head mask), cross terms between its channels included. */
  readonly cellSquares?: Float64Array;

  constructor(channels: number, cellOf?: Int32Array) {
    this.channels = channels;
    this.sum = new Float64Array(channels);
    this.squares = new Float64Array(channels);
    this.absolute = new Float64Array(channels);
    if (cellOf && cellOf.length === channels) {
      this.cellOf = cellOf;
      this.cellAbsolute = new Float64Array(Math.max(0, ...cellOf) + 1);
      this.cellSquares = new Float64Array(this.cellAbsolute.length);
    }
  }

  /** Adds a [rows, channels] block of per-sample gate gradients. */
  add(block: ArrayLike<number>, perSample: boolean): void {
    const c = this.channels, rows = block.length / c;
    const cell = this.cellAbsolute ? new Float64Array(this.cellAbsolute.length) : undefined;
    for (let r = 0; r < rows; r++) {
      cell?.fill(0);
      for (let j = 0; j < c; j++) {
        const v = block[r * c + j];
        this.sum[j] += v;
        if (!perSample) continue;
        this.squares[j] += v * v;
        this.absolute[j] += Math.abs(v);
        if (cell) cell[this.cellOf![j]] += v;
      }
      if (cell && perSample) {
        for (let k = 0; k < cell.length; k++) {
          this.cellAbsolute![k] += Math.abs(cell[k]);
          this.cellSquares![k] += cell[k] * cell[k];
        }
      }
    }
    if (perSample) this.samples += rows;
  }
}

/**
 * Reads the gate outputs of the backward graph batch by batch. `gates` maps tensor → output
 * (from buildGradientModel); `cells` maps tensor → the head of each channel, where head-level
 * sums are wanted.
 */
export function gateReader(
  gates: Map<string, { output: string; perSample: boolean }>,
  cells: Map<string, Int32Array>,
): BatchReader & { stats: Map<string, GateStats> } {
  const stats = new Map<string, GateStats>();
  return {
    stats,
    outputs: [...gates.values()].map((g) => g.output),
    read(out: Record<string, OrtTensor>) {
      for (const [tensor, gate] of gates) {
        const t = out[gate.output];
        const channels = Number(t.dims[t.dims.length - 1]);
        let s = stats.get(tensor);
        if (!s) stats.set(tensor, s = new GateStats(channels, cells.get(tensor)));
        if (s.channels !== channels) {
          throw new PruneError(
            "bad-calibration",
            `tensor "${tensor}" changed width between batches`,
          );
        }
        const data = t.data as Float32Array;
        for (let i = 0; i < data.length; i++) {
          if (!Number.isFinite(data[i])) {
            throw new PruneError(
              "bad-calibration",
              `the gradient at "${tensor}" is not finite on this calibration data`,
            );
          }
        }
        s.add(data, gate.perSample);
      }
    },
  };
}
