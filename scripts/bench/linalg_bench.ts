/**
 * The compute core's linear algebra against the TypeScript it replaced, side by side: the
 * reweight compensation's ridge least squares for ViT-B's layers (an MLP's fc2, 3072 → 768, and
 * an attention projection, 768 → 768, half their inputs kept; with a bias) in float32 and float64
 * in wasm and in the former float64 TypeScript (an unblocked Cholesky of the (k + 1)-square
 * system), and APMA's dissimilarity of 3072 channels. The Gram matrices are those of random
 * correlated activations (rank 1024, plus a diagonal).
 *
 *   deno bench -A scripts/bench/linalg_bench.ts
 */
import { dissimilarityNow, gramNow, ridgeRefitNow } from "../../src/core/mod.ts";
import { referenceLeastSquares } from "../../tests/helpers/reference_least_squares.ts";
import { mulberry32 } from "../../tests/seeded_random.ts";

function layer(cin: number, cout: number) {
  const random = mulberry32(cin);
  const rows = 1024;
  const x = Float32Array.from({ length: rows * cin }, () => random() - 0.4);
  const gram = gramNow(x, rows, cin);
  for (let i = 0; i < cin; i++) gram[i * cin + i] += rows * 0.01;
  // The input's mean over the same rows as the Gram matrix (a mean from other data can make the
  // bias-augmented system indefinite).
  const mean = new Float64Array(cin);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cin; j++) mean[j] += x[r * cin + j] / rows;
  return {
    gram,
    count: rows,
    weight: Float32Array.from({ length: cin * cout }, () => random() - 0.5),
    bias: Float32Array.from({ length: cout }, () => random() - 0.5),
    mean,
    cin,
    cout,
    kept: Uint32Array.from({ length: cin / 2 }, (_, i) => 2 * i),
  };
}

for (const [name, cin, cout] of [["fc2 3072 → 768", 3072, 768], ["proj 768 → 768", 768, 768]]) {
  const l = layer(cin as number, cout as number);
  const problem = {
    gram: l.gram,
    count: l.count,
    weight: l.weight,
    cin: l.cin,
    cout: l.cout,
    kept: l.kept,
    ridge: 0.01,
    bias: { values: l.bias, mean: l.mean },
  };
  const group = `refit ${name}`;
  Deno.bench(`${name}: core, float32`, { group, baseline: true, n: 3, warmup: 1 }, () => {
    ridgeRefitNow({ ...problem, precision: 32 });
  });
  Deno.bench(`${name}: core, float64`, { group, n: 3, warmup: 1 }, () => {
    ridgeRefitNow({ ...problem, precision: 64 });
  });
  Deno.bench(`${name}: TypeScript float64 (before)`, { group, n: 1, warmup: 0 }, () => {
    const x = { gram: l.gram, gramCount: l.count, gramMean: (j: number) => l.mean[j] };
    referenceLeastSquares(l.weight, l.bias, l.cin, l.cout, [...l.kept], x, 0.01, true);
  });
}

const c = 3072, g = layer(c, 1).gram;
Deno.bench("dissimilarity 3072: core", { group: "dissimilarity", baseline: true }, () => {
  dissimilarityNow(g, c);
});
Deno.bench("dissimilarity 3072: TypeScript (before)", { group: "dissimilarity", n: 3 }, () => {
  const out = new Float64Array(c);
  for (let i = 0; i < c; i++) {
    let most = 0;
    for (let j = 0; j < c; j++) {
      if (j === i) continue;
      const den = Math.sqrt(g[i * c + i] * g[j * c + j]);
      if (den > 0) most = Math.max(most, Math.abs(g[i * c + j]) / den);
    }
    out[i] = Math.max(0, 1 - most);
  }
});
