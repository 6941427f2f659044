/**
 * Compensation without retraining, applied to the layers that read removed channels:
 * - "bias" (FLAP): the mean contribution of the removed inputs is folded into the bias,
 *   b' = b + Σⱼ∈removed E[xⱼ]·Wⱼ,:, so the layer's output keeps its mean;
 * - "reweight" (least squares, APMA's reweighting without training): the kept rows and the bias
 *   are refitted so that X_kept·W' + b' best matches X·W + b over the calibration data,
 *   [W'; b'] = argmin E‖xW + b − x_K W' − b'‖² + λ‖W'‖², from the Gram matrix E[xᵀx].
 * Both are computed from the original weights before the rewrite and written after it.
 *
 * @module
 */
import type { Graph, Use } from "./graph/graph.ts";
import { writeConstant } from "./graph/graph.ts";
import type { Trace } from "./analysis/trace.ts";
import type { ChannelStats } from "./calibration/stats.ts";
import { keptAxisIndices, type Plan, sizeRatio } from "./plan.ts";
import { float32ToTensorBytes, makeTensor, tensorDims, tensorToFloat32 } from "./onnx/tensor.ts";

/** How the layers that read removed channels make up for them: not at all, through their bias
 * (FLAP: the removed channels' mean input), or by least squares over the kept ones (APMA). */
export type Compensation = "none" | "bias" | "reweight";

/** A consumer layer to update once the graph is rewritten. */
export interface PendingUpdate {
  /** The MatMul whose weight (input 1) and bias get the new values. */
  node: string;
  weight?: Float32Array;
  biasNode?: string;
  biasIndex?: number;
  bias?: Float32Array;
}

/** The consumers of pruned channels that can be compensated, with their statistics. */
export function compensable(trace: Trace, plan: Plan, stats: Map<string, ChannelStats>) {
  const out = [];
  for (const touch of trace.tensorTouches) {
    const linear = touch.linear;
    if (touch.role !== "weight-in" || !linear || linear.opType !== "MatMul") continue;
    if (touch.use.node !== linear || touch.axis !== 0) continue; // [in, out] stored as is
    const kept = keptAxisIndices(plan, touch.factors);
    const x = stats.get(linear.input[0]);
    if (!kept || !x) continue;
    // The layer's own outputs must keep their width (its bias is then not sliced).
    const own = trace.linears.find((l) => l.node === linear);
    if (!own || sizeRatio(plan, [own.out]).num !== sizeRatio(plan, [own.out]).den) continue;
    out.push({ touch, linear, kept, x });
  }
  return out;
}

function biasOf(graph: Graph, linear: { output: string[] }, width: number) {
  for (const use of graph.consumers(linear.output[0])) {
    if (use.node.opType !== "Add") continue;
    const other = 1 - use.inputIndex;
    const ref = graph.constant(use.node.input[other]);
    if (ref && tensorToFloat32(ref.tensor).length === width) {
      return { node: use.node, index: other, ref };
    }
  }
  return undefined;
}

/** Computes the new weights and biases of the compensable consumers (original model). */
export function planCompensation(
  trace: Trace,
  plan: Plan,
  stats: Map<string, ChannelStats>,
  mode: Compensation,
  ridge: number,
): PendingUpdate[] {
  if (mode === "none") return [];
  const updates: PendingUpdate[] = [];
  for (const { touch, linear, kept, x } of compensable(trace, plan, stats)) {
    const w = tensorToFloat32(touch.ref.tensor);
    const [cin, cout] = tensorDims(touch.ref.tensor);
    const bias = biasOf(trace.graph, linear, cout);
    const b = bias ? tensorToFloat32(bias.ref.tensor) : new Float32Array(cout);
    const keep = new Set(kept);
    const update: PendingUpdate = { node: linear.name || linear.output[0] };
    if (mode === "bias" || !x.gram) {
      if (!bias) continue;
      const nb = Float32Array.from(b);
      for (let j = 0; j < cin; j++) {
        if (keep.has(j)) continue;
        const m = x.mean(j);
        for (let o = 0; o < cout; o++) nb[o] += m * w[j * cout + o];
      }
      Object.assign(update, { bias: nb, biasNode: bias.node.name, biasIndex: bias.index });
    } else {
      const fit = leastSquares(w, b, cin, cout, kept, x, ridge, !!bias);
      update.weight = fit.weight;
      if (bias) {
        Object.assign(update, { bias: fit.bias, biasNode: bias.node.name, biasIndex: bias.index });
      }
    }
    updates.push(update);
  }
  return updates;
}

/** Writes planned updates into the rewritten graph (weights are the kept rows by now). */
export function applyCompensation(graph: Graph, updates: PendingUpdate[]): number {
  let done = 0;
  for (const u of updates) {
    const node = graph.nodes.find((n) => (n.name || n.output[0]) === u.node);
    if (!node) continue;
    if (u.weight) replace(graph, { node, inputIndex: 1 }, u.weight);
    const add = u.bias ? graph.nodes.find((n) => n.name === u.biasNode) : undefined;
    if (add && u.bias) replace(graph, { node: add, inputIndex: u.biasIndex! }, u.bias);
    done++;
  }
  return done;
}

/** New values for the constant read at `use`: in place, or a copy when others read it too. */
function replace(graph: Graph, use: Use, values: Float32Array) {
  const ref = graph.constant(use.node.input[use.inputIndex]);
  if (!ref) return;
  const dims = tensorDims(ref.tensor);
  if (dims.reduce((a, c) => a * c, 1) !== values.length) {
    throw new Error(`compensation: "${ref.name}" holds ${dims} values, not ${values.length}`);
  }
  const bytes = float32ToTensorBytes(values, ref.tensor.dataType!);
  if (graph.constantUseCount(ref) === 1) return writeConstant(ref, bytes, dims);
  const copy = makeTensor(`${ref.name}_compensated`, ref.tensor.dataType!, dims, bytes);
  graph.rewire(use, graph.addInitializer(copy));
}

/**
 * [W'; b'] minimising E‖xW + b − x_K W' − b'‖² + λ‖W'‖² (λ relative to the mean diagonal of
 * E[x_K x_Kᵀ]); without a bias the intercept row is left out.
 */
function leastSquares(
  w: Float32Array,
  b: Float32Array,
  cin: number,
  cout: number,
  kept: number[],
  x: ChannelStats,
  ridge: number,
  withBias: boolean,
): { weight: Float32Array; bias: Float32Array } {
  const n = x.gramCount, g = x.gram!, k = kept.length, size = k + (withBias ? 1 : 0);
  const a = new Float64Array(size * size);
  let diag = 0;
  for (let r = 0; r < k; r++) diag += g[kept[r] * cin + kept[r]] / n;
  const lambda = ridge * (diag / k);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) a[r * size + c] = g[kept[r] * cin + kept[c]] / n;
    a[r * size + r] += lambda;
    if (withBias) {
      a[r * size + k] = a[k * size + r] = x.gramMean(kept[r]);
    }
  }
  if (withBias) a[k * size + k] = 1;
  // Right-hand side: E[z (xW + b)] for z = [x_K, 1].
  const rhs = new Float64Array(size * cout);
  for (let r = 0; r < k; r++) {
    const row = kept[r] * cin;
    for (let j = 0; j < cin; j++) {
      const gj = g[row + j] / n;
      if (gj === 0) continue;
      for (let o = 0; o < cout; o++) rhs[r * cout + o] += gj * w[j * cout + o];
    }
    if (withBias) {
      for (let o = 0; o < cout; o++) rhs[r * cout + o] += x.gramMean(kept[r]) * b[o];
    }
  }
  if (withBias) {
    for (let j = 0; j < cin; j++) {
      const m = x.gramMean(j);
      for (let o = 0; o < cout; o++) rhs[k * cout + o] += m * w[j * cout + o];
    }
    for (let o = 0; o < cout; o++) rhs[k * cout + o] += b[o];
  }
  const theta = solveSpd(a, size, rhs, cout);
  return {
    weight: Float32Array.from(theta.subarray(0, k * cout)),
    bias: withBias ? Float32Array.from(theta.subarray(k * cout)) : Float32Array.from(b),
  };
}

/** Solves A·X = B for symmetric positive definite A (n×n) by Cholesky; B is n×m. */
function solveSpd(a: Float64Array, n: number, b: Float64Array, m: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) l[i * n + i] = Math.sqrt(Math.max(s, 1e-12));
      else l[i * n + j] = s / l[j * n + j];
    }
  }
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < m; c++) {
      let s = b[i * m + c];
      for (let k = 0; k < i; k++) s -= l[i * n + k] * y[k * m + c];
      y[i * m + c] = s / l[i * n + i];
    }
  }
  const out = new Float64Array(n * m);
  for (let i = n - 1; i >= 0; i--) {
    for (let c = 0; c < m; c++) {
      let s = y[i * m + c];
      for (let k = i + 1; k < n; k++) s -= l[k * n + i] * out[k * m + c];
      out[i * m + c] = s / l[i * n + i];
    }
  }
  return out;
}
