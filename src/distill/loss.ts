/**
 * Distillation losses, twice: the value in float64 (for the progress bar and the held-out split)
 * and its gradient with respect to the student's output, written as ONNX nodes that start the
 * backward graph. A row is a vector along the output's last axis (a sample's logits, a token's
 * embedding); every loss is a mean over rows.
 *
 * - `kl`: T² · KL(softmax(t/T) ‖ softmax(s/T)) (Hinton et al.; the T² keeps the gradient's scale
 *   at every temperature); with labels, (1 − α) of it plus α · the cross-entropy of softmax(s)
 *   against the labels.
 * - `mse`: the mean of (s − t)² over every element.
 * - `cosine`: 1 − cos(s, t) per row.
 * - `pooled`: 1 − cos(s̄, t̄) per sample, s̄ the mean of its rows along axis 1 (the tokens of a
 *   [batch, tokens, width] output; weighted by the attention mask, so padding is left out): the
 *   mean pooling of sentence-transformers' embedding models, the embedding itself compared.
 *
 * With row weights (a text model's attention mask over the tokens of a [batch, tokens, width]
 * output), the mean is weighted: Σ w·loss / Σ w, so padding tokens (w = 0) count for nothing and
 * a padded batch has the loss of its samples unpadded.
 *
 * @module
 */
import type { GradientSeed } from "../autodiff/backward.ts";

/** Which loss compares the student's output with the teacher's. */
export type LossKind = "kl" | "mse" | "cosine" | "pooled";

/** Every loss, for option checks. */
export const LOSS_KINDS: readonly LossKind[] = ["kl", "cosine", "mse", "pooled"];

/** A loss and its settings. */
export interface LossSpec {
  kind: LossKind;
  /** Softmax temperature of `kl`. */
  temperature: number;
  /** With labels (`kl` only): the cross-entropy's share α of the loss. */
  labelWeight: number;
  /** Whether labels are fed (one per row). */
  labels: boolean;
  /** `pooled`: rows (tokens) per sample. */
  tokens?: number;
}

/** Guards the norms of all-zero rows in `cosine`. */
const EPS = 1e-12;

/**
 * Sum over the rows of `student` (rows of `width`) of the per-row loss, and the row count (with
 * `weights`, one per row: the weighted sum and the sum of the weights): sums of batches add up
 * to the loss of their union.
 */
export function lossSum(
  spec: LossSpec,
  student: Float32Array,
  teacher: Float32Array,
  width: number,
  labels?: ArrayLike<number>,
  weights?: ArrayLike<number>,
): { sum: number; rows: number } {
  const count = student.length / width;
  let sum = 0, rows = 0;
  if (spec.kind === "pooled") {
    const tokens = spec.tokens ?? 1;
    for (let n = 0; n < count / tokens; n++) {
      const [s, t] = [new Float64Array(width), new Float64Array(width)];
      let total = 0;
      for (let r = n * tokens; r < (n + 1) * tokens; r++) {
        const w = weights ? weights[r] : 1;
        if (w === 0) continue;
        total += w;
        for (let i = 0; i < width; i++) {
          s[i] += w * student[r * width + i];
          t[i] += w * teacher[r * width + i];
        }
      }
      // The mean's scale leaves the cosine unchanged.
      if (total > 0) sum += cosineLoss(s, t, width);
      rows++;
    }
    return { sum, rows };
  }
  for (let r = 0; r < count; r++) {
    const w = weights ? weights[r] : 1;
    if (w === 0) continue;
    rows += w;
    sum += w * rowLoss(spec, student, teacher, width, r, labels);
  }
  return { sum, rows };
}

function rowLoss(
  spec: LossSpec,
  student: Float32Array,
  teacher: Float32Array,
  width: number,
  r: number,
  labels?: ArrayLike<number>,
): number {
  const s = student.subarray(r * width, (r + 1) * width);
  const t = teacher.subarray(r * width, (r + 1) * width);
  if (spec.kind === "mse") {
    let sum = 0;
    for (let i = 0; i < width; i++) sum += (s[i] - t[i]) ** 2;
    return sum / width;
  }
  if (spec.kind === "cosine") return cosineLoss(s, t, width);
  const T = spec.temperature;
  const logP = logSoftmax(t, T), logQ = logSoftmax(s, T);
  let kl = 0;
  for (let i = 0; i < width; i++) kl += Math.exp(logP[i]) * (logP[i] - logQ[i]);
  const alpha = spec.labels ? spec.labelWeight : 0;
  let loss = (1 - alpha) * T * T * kl;
  if (spec.labels && labels) loss -= alpha * logSoftmax(s, 1)[labels[r]];
  return loss;
}

function cosineLoss(s: ArrayLike<number>, t: ArrayLike<number>, width: number): number {
  let st = 0, ss = 0, tt = 0;
  for (let i = 0; i < width; i++) {
    st += s[i] * t[i];
    ss += s[i] * s[i];
    tt += t[i] * t[i];
  }
  return 1 - st / (Math.sqrt(ss + EPS) * Math.sqrt(tt + EPS));
}

function logSoftmax(row: Float32Array, temperature: number): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v / temperature);
  let total = 0;
  for (const v of row) total += Math.exp(v / temperature - max);
  const lse = max + Math.log(total);
  return Float64Array.from(row, (v) => v / temperature - lse);
}

/**
 * Appends ∂L/∂`output` to the backward graph; `teacher` is a graph input holding the teacher's
 * output (same shape), `labels` one of int64 class indices per row (`kl` with labels), `weights`
 * one of float row weights (the output's shape without its last axis).
 */
export function seedLoss(
  spec: LossSpec,
  b: GradientSeed,
  output: string,
  width: number,
  teacher: string,
  labels?: string,
  weights?: string,
): string {
  const last = b.constInts([-1]);
  const dot = (u: string, v: string) =>
    b.op("ReduceSum", [b.op("Mul", [u, v]), last], { keepdims: 1 });
  const norm = (u: string) => b.op("Sqrt", [b.op("Add", [dot(u, u), b.constFloat(EPS)])]);
  /** ∂(1 − cos(s, t))/∂s = cos·s/|s|² − t/(|s||t|), per row. */
  const cosineGrad = (s: string, t: string) => {
    const [ns, nt] = [norm(s), norm(t)];
    const both = b.op("Mul", [ns, nt]);
    const cos = b.op("Div", [dot(s, t), both]);
    return b.op("Sub", [
      b.op("Mul", [b.op("Div", [cos, b.op("Mul", [ns, ns])]), s]),
      b.op("Div", [t, both]),
    ]);
  };
  if (spec.kind === "pooled") {
    // s̄ = Σ w·s / Σ w over axis 1; ∂L/∂s = w/Σw · ∂L/∂s̄, divided by the samples.
    const tokens = b.constInts([1]);
    const w = weights ? b.op("Unsqueeze", [weights, last]) : b.op("Add", [
      b.op("Mul", [b.op("ReduceSum", [output, last], { keepdims: 1 }), b.constFloat(0)]),
      b.constFloat(1),
    ]);
    const total = b.op("ReduceSum", [w, tokens], { keepdims: 1 });
    const pool = (x: string) =>
      b.op("Div", [b.op("ReduceSum", [b.op("Mul", [x, w]), tokens], { keepdims: 1 }), total]);
    const dPooled = cosineGrad(pool(output), pool(teacher));
    const samples = b.op("Cast", [
      b.op("Gather", [b.op("Shape", [output]), b.constInts([0])], { axis: 0 }),
    ], { to: 1 });
    return b.op("Div", [b.op("Mul", [dPooled, b.op("Div", [w, total])]), samples]);
  }
  // The per-row gradient, then weighted and divided by the rows (Σ w with weights).
  let d: string;
  if (spec.kind === "mse") {
    d = b.op("Mul", [b.op("Sub", [output, teacher]), b.constFloat(2 / width)]);
  } else if (spec.kind === "cosine") {
    d = cosineGrad(output, teacher);
  } else {
    const T = spec.temperature;
    const alpha = labels ? spec.labelWeight : 0;
    const soft = (x: string) =>
      b.op("Softmax", [T === 1 ? x : b.op("Div", [x, b.constFloat(T)])], { axis: -1 });
    // ∂(T²·KL)/∂s = T·(softmax(s/T) − softmax(t/T))
    d = b.op("Mul", [b.op("Sub", [soft(output), soft(teacher)]), b.constFloat((1 - alpha) * T)]);
    if (labels) {
      const onOff = b.op("Cast", [b.constInts([0, 1])], { to: 1 });
      const oneHot = b.op("OneHot", [labels, b.constInts([width], true), onOff], { axis: -1 });
      const ce = b.op("Sub", [b.op("Softmax", [output], { axis: -1 }), oneHot]);
      d = b.op("Add", [d, b.op("Mul", [ce, b.constFloat(alpha)])]);
    }
  }
  if (weights) {
    const w = b.op("Unsqueeze", [weights, last]);
    return b.op("Div", [b.op("Mul", [d, w]), b.op("ReduceSum", [weights], { keepdims: 0 })]);
  }
  const size = b.op("Cast", [b.op("Size", [output])], { to: 1 });
  return b.op("Div", [d, b.op("Div", [size, b.constFloat(width)])]);
}
