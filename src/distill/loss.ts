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
 *
 * @module
 */
import type { GradientSeed } from "../autodiff/backward.ts";

/** Which loss compares the student's output with the teacher's. */
export type LossKind = "kl" | "mse" | "cosine";

/** A loss and its settings. */
export interface LossSpec {
  kind: LossKind;
  /** Softmax temperature of `kl`. */
  temperature: number;
  /** With labels (`kl` only): the cross-entropy's share α of the loss. */
  labelWeight: number;
  /** Whether labels are fed (one per row). */
  labels: boolean;
}

/** Guards the norms of all-zero rows in `cosine`. */
const EPS = 1e-12;

/**
 * Sum over the rows of `student` (rows of `width`) of the per-row loss, and the row count: sums
 * of batches add up to the loss of their union.
 */
export function lossSum(
  spec: LossSpec,
  student: Float32Array,
  teacher: Float32Array,
  width: number,
  labels?: ArrayLike<number>,
): { sum: number; rows: number } {
  const rows = student.length / width;
  let sum = 0;
  if (spec.kind === "mse") {
    for (let i = 0; i < student.length; i++) {
      const d = student[i] - teacher[i];
      sum += d * d;
    }
    return { sum: sum / width, rows };
  }
  for (let r = 0; r < rows; r++) {
    const s = student.subarray(r * width, (r + 1) * width);
    const t = teacher.subarray(r * width, (r + 1) * width);
    if (spec.kind === "cosine") {
      let st = 0, ss = 0, tt = 0;
      for (let i = 0; i < width; i++) {
        st += s[i] * t[i];
        ss += s[i] * s[i];
        tt += t[i] * t[i];
      }
      sum += 1 - st / (Math.sqrt(ss + EPS) * Math.sqrt(tt + EPS));
      continue;
    }
    const T = spec.temperature;
    const logP = logSoftmax(t, T), logQ = logSoftmax(s, T);
    let kl = 0;
    for (let i = 0; i < width; i++) kl += Math.exp(logP[i]) * (logP[i] - logQ[i]);
    const alpha = spec.labels ? spec.labelWeight : 0;
    sum += (1 - alpha) * T * T * kl;
    if (spec.labels && labels) sum -= alpha * logSoftmax(s, 1)[labels[r]];
  }
  return { sum, rows };
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
 * output (same shape), `labels` one of int64 class indices per row (`kl` with labels).
 */
export function seedLoss(
  spec: LossSpec,
  b: GradientSeed,
  output: string,
  width: number,
  teacher: string,
  labels?: string,
): string {
  const size = b.op("Cast", [b.op("Size", [output])], { to: 1 });
  const rows = b.op("Div", [size, b.constFloat(width)]);
  if (spec.kind === "mse") {
    return b.op("Div", [b.op("Mul", [b.op("Sub", [output, teacher]), b.constFloat(2)]), size]);
  }
  const last = b.constInts([-1]);
  if (spec.kind === "cosine") {
    const dot = (u: string, v: string) =>
      b.op("ReduceSum", [b.op("Mul", [u, v]), last], { keepdims: 1 });
    const norm = (u: string) => b.op("Sqrt", [b.op("Add", [dot(u, u), b.constFloat(EPS)])]);
    const [ns, nt] = [norm(output), norm(teacher)];
    const both = b.op("Mul", [ns, nt]);
    const cos = b.op("Div", [dot(output, teacher), both]);
    // ∂cos/∂s = t/(|s||t|) − cos·s/|s|²
    const dcos = b.op("Sub", [
      b.op("Div", [teacher, both]),
      b.op("Mul", [b.op("Div", [cos, b.op("Mul", [ns, ns])]), output]),
    ]);
    return b.op("Div", [b.op("Neg", [dcos]), rows]);
  }
  const T = spec.temperature;
  const alpha = labels ? spec.labelWeight : 0;
  const soft = (x: string) =>
    b.op("Softmax", [T === 1 ? x : b.op("Div", [x, b.constFloat(T)])], { axis: -1 });
  // ∂(T²·KL)/∂s = T·(softmax(s/T) − softmax(t/T))
  let d = b.op("Mul", [b.op("Sub", [soft(output), soft(teacher)]), b.constFloat((1 - alpha) * T)]);
  if (labels) {
    const onOff = b.op("Cast", [b.constInts([0, 1])], { to: 1 });
    const oneHot = b.op("OneHot", [labels, b.constInts([width], true), onOff], { axis: -1 });
    const ce = b.op("Sub", [b.op("Softmax", [output], { axis: -1 }), oneHot]);
    d = b.op("Add", [d, b.op("Mul", [ce, b.constFloat(alpha)])]);
  }
  return b.op("Div", [d, rows]);
}
