/**
 * A smooth, monotone model of a block's latency fitted to the grid table: non-negative weights
 * on the work a block does — a constant, LayerNorms and residuals (EMB), softmax (H), the
 * attention products (H·QK, H·V), the projections (EMB·H·QK, EMB·H·V) and the MLP (MLP,
 * EMB·MLP). Timing noise makes neighbouring grid points disagree; a unit's saving read off the
 * raw grid then swings from nothing to several times its worth. Read off this fit (where every
 * weight is ≥ 0, so no unit ever costs time) it is smooth, and ranking and budgets follow it.
 *
 * @module
 */
import type { BlockShape } from "./block.ts";
import { freeAxes, type LatencyTable } from "./table.ts";

/** The work terms of a block shape. */
function terms(s: BlockShape): number[] {
  return [
    1,
    s.emb,
    s.heads,
    s.heads * s.qk,
    s.heads * s.v,
    s.emb * s.heads * s.qk,
    s.emb * s.heads * s.v,
    s.mlp,
    s.emb * s.mlp,
  ];
}

/** A fitted block latency: `predict(shape)` in ms. */
export interface BlockFit {
  weights: number[];
  predict(shape: BlockShape): number;
  /** Root mean square of the relative residuals over the grid. */
  relativeError: number;
}

/**
 * Non-negative least squares by coordinate descent on the normal equations (a handful of
 * unknowns; duplicated or constant terms only make the solution non-unique, not the fit).
 */
function nnls(rows: number[][], y: number[], weights: number[]): number[] {
  const n = rows[0].length;
  const h = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const g = new Array<number>(n).fill(0);
  rows.forEach((r, k) => {
    for (let i = 0; i < n; i++) {
      g[i] += weights[k] * r[i] * y[k];
      for (let j = 0; j < n; j++) h[i][j] += weights[k] * r[i] * r[j];
    }
  });
  const x = new Array<number>(n).fill(0);
  for (let sweep = 0; sweep < 5000; sweep++) {
    let moved = 0;
    for (let i = 0; i < n; i++) {
      if (h[i][i] <= 0) continue;
      let grad = -g[i];
      for (let j = 0; j < n; j++) grad += h[i][j] * x[j];
      const next = Math.max(0, x[i] - grad / h[i][i]);
      moved = Math.max(moved, Math.abs(next - x[i]) * Math.sqrt(h[i][i]));
      x[i] = next;
    }
    if (moved < 1e-12) break;
  }
  return x;
}

/** Fits the work terms to every point of the table (relative errors weigh alike). */
export function fitTable(table: LatencyTable): BlockFit {
  const free = freeAxes(table);
  const sizes = free.map((a) => table.axes[a].length);
  const shapes: BlockShape[] = table.ms.map((_, i) => {
    const shape = {} as BlockShape;
    let rest = i;
    for (let k = free.length - 1; k >= 0; k--) {
      shape[free[k]] = table.axes[free[k]][rest % sizes[k]];
      rest = Math.floor(rest / sizes[k]);
    }
    if (table.tiedV) shape.v = shape.qk;
    return shape;
  });
  const raw = shapes.map(terms);
  // Terms scaled to at most 1 over the grid: the descent sees comparable unknowns.
  const scale = raw[0].map((_, j) => Math.max(...raw.map((r) => Math.abs(r[j]))) || 1);
  const rows = raw.map((r) => r.map((v, j) => v / scale[j]));
  const floor = Math.max(1e-6, Math.max(...table.ms) * 1e-3);
  const w = table.ms.map((m) => 1 / Math.max(m, floor) ** 2);
  const x = nnls(rows, table.ms, w).map((v, j) => v / scale[j]);
  const predict = (s: BlockShape) => terms(s).reduce((sum, t, j) => sum + t * x[j], 0);
  const relativeError = Math.sqrt(
    shapes.reduce((e, s, i) => e + ((predict(s) - table.ms[i]) * Math.sqrt(w[i])) ** 2, 0) /
      shapes.length,
  );
  return { weights: x, predict, relativeError };
}
