/**
 * Compensation without retraining, applied to the layers that read removed channels:
 * - "bias" (FLAP): the mean contribution of the removed inputs is folded into the bias,
 *   b' = b + Σⱼ∈removed E[xⱼ]·Wⱼ,:, so the layer's output keeps its mean;
 * - "reweight" (least squares, APMA's reweighting without training): the kept rows and the bias
 *   are refitted so that X_kept·W' + b' best matches X·W + b over the calibration data,
 *   [W'; b'] = argmin E‖xW + b − x_K W' − b'‖² + λ‖W'‖², from the Gram matrix E[xᵀx] (solved in
 *   the compute core: `ComputeCore.ridgeRefit`).
 * Both are computed from the original weights before the rewrite and written after it.
 *
 * @module
 */
import type { Graph, Use } from "./graph/graph.ts";
import { writeConstant } from "./graph/graph.ts";
import type { Trace } from "./analysis/trace.ts";
import type { ChannelStats } from "./calibration/stats.ts";
import { HeldRowsRefit } from "./calibration/held_rows.ts";
import type { ComputeCore, RefitProblem } from "./core/mod.ts";
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

/**
 * Computes the new weights and biases of the compensable consumers (original model). The least
 * squares run in the compute core, as many layers at once as it has threads, in waves; each
 * Gram matrix is handed to the solver with the last layer reading its tensor. Where the
 * statistics hold the Gram's rows instead, the products the refit reads are formed from them
 * first (calibration/held_rows.ts).
 */
export async function planCompensation(
  core: ComputeCore,
  trace: Trace,
  plan: Plan,
  stats: Map<string, ChannelStats>,
  mode: Compensation,
  ridge: number,
): Promise<PendingUpdate[]> {
  if (mode === "none") return [];
  const updates: PendingUpdate[] = [];
  const layers = compensable(trace, plan, stats);
  const readers = new Map<ChannelStats, number>();
  for (const { x } of layers) readers.set(x, (readers.get(x) ?? 0) + 1);
  // Problems in waves: first a wave's problems (the products from held rows run in onnxruntime,
  // on all cores), then its solves (in the core's workers) — run together the two only slow each
  // other down. A wave ends after a few problems posed from held rows or once its problems' own
  // arrays (weights, products) pass WAVE_BYTES: that bounds the memory they take.
  const wave: Refit[] = [];
  let heldInWave = 0, waveBytes = 0;
  const held = new HeldRowsRefit();
  // Not `using`: the page's bundle keeps the syntax, which not every browser parses yet.
  const letWorkersGo = core.holdRefitWorkers?.();
  try {
    try {
      for (const { touch, linear, kept, x } of layers) {
        const left = readers.get(x)! - 1;
        readers.set(x, left);
        const w = tensorToFloat32(touch.ref.tensor);
        const [cin, cout] = tensorDims(touch.ref.tensor);
        const bias = biasOf(trace.graph, linear, cout);
        const b = bias ? tensorToFloat32(bias.ref.tensor) : new Float32Array(cout);
        const keep = new Set(kept);
        const update: PendingUpdate = { node: linear.name || linear.output[0] };
        const biasAt = bias && { biasNode: bias.node.name, biasIndex: bias.index };
        if (mode === "bias" || !x.hasGram) {
          if (!bias) continue;
          const nb = Float32Array.from(b);
          for (let j = 0; j < cin; j++) {
            if (keep.has(j)) continue;
            const m = x.mean(j);
            for (let o = 0; o < cout; o++) nb[o] += m * w[j * cout + o];
          }
          Object.assign(update, { bias: nb, ...biasAt });
        } else {
          const problem: RefitProblem = x.gram
            ? {
              gram: x.gram,
              giveGram: left === 0 && !x.gramShared,
              count: x.gramCount,
              weight: w,
              cin,
              cout,
              kept: Uint32Array.from(kept),
              ridge,
              bias: bias
                ? { values: b, mean: Float64Array.from({ length: cin }, (_, j) => x.gramMean(j)) }
                : undefined,
            }
            : await held.problem(x, w, cout, kept, ridge, bias ? b : undefined);
          if (!x.gram) heldInWave++;
          waveBytes += problem.weight.byteLength + (problem.removed?.cross.byteLength ?? 0) +
            (x.gram ? 0 : problem.gram.byteLength);
          if (left === 0) x.releaseGram();
          wave.push({ problem, update, biasAt });
          if (heldInWave >= 2 * core.threads || waveBytes >= WAVE_BYTES) {
            await solve(core, wave.splice(0));
            heldInWave = waveBytes = 0;
          }
        }
        updates.push(update);
      }
    } finally {
      await held.release();
    }
    await solve(core, wave);
  } finally {
    letWorkersGo?.();
  }
  return updates;
}

/** The arrays a wave's problems may hold before they are solved (bytes). */
const WAVE_BYTES = 256 * 2 ** 20;

/** Where a layer's bias is read: the Add node and its input index. */
type BiasAt = { biasNode: string; biasIndex: number };

/** A refit to solve and the update it fills in. */
interface Refit {
  problem: RefitProblem;
  update: PendingUpdate;
  biasAt?: BiasAt;
}

/** Solves the refits, as many at once as the core has threads. */
async function solve(core: ComputeCore, refits: Refit[]): Promise<void> {
  const running = new Set<Promise<void>>();
  try {
    for (const { problem, update, biasAt } of refits) {
      const job = core.ridgeRefit(problem).then((fit) => {
        update.weight = fit.weight;
        if (biasAt) Object.assign(update, { bias: fit.bias, ...biasAt });
      });
      running.add(job);
      job.finally(() => running.delete(job)).catch(() => {});
      if (running.size >= core.threads) await Promise.race(running);
    }
    await Promise.all(running);
  } finally {
    await Promise.allSettled(running);
  }
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
