/**
 * The reweight compensation's least squares as first written in TypeScript (float64, an
 * unblocked Cholesky on the (k + 1)-square system with the intercept row): the reference the
 * compute core's solver is tested against.
 *
 * @module
 */

/**
 * [W'; b'] minimising E‖xW + b − x_K W' − b'‖² + λ‖W'‖² (λ relative to the mean diagonal of
 * E[x_K x_Kᵀ]); without a bias the intercept row is left out.
 */
export function referenceLeastSquares(
  w: Float32Array,
  b: Float32Array,
  cin: number,
  cout: number,
  kept: number[],
  x: { gram?: ArrayLike<number>; gramCount: number; gramMean(j: number): number },
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
