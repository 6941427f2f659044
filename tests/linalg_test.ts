/**
 * The compute core's dense linear algebra against the TypeScript it replaced: the reweight
 * compensation's least squares (blocked Cholesky in wasm, float32 and float64) against the
 * float64 reference solver, on synthetic layers and on the trained Fashion-MNIST ViT's real
 * calibration statistics; Gram matrices and APMA's dissimilarity against direct loops.
 */
import assert from "node:assert/strict";
import {
  createCore,
  dissimilarityNow,
  gramNow,
  type RefitProblem,
  ridgeRefitNow,
} from "../src/core/mod.ts";
import { ChannelStats, collectStats } from "../src/calibration/stats.ts";
import { GramRows } from "../src/calibration/gram.ts";
import { HeldRowsRefit } from "../src/calibration/held_rows.ts";
import { loadOrt } from "../src/runtime/ort.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import { tensorToFloat32 } from "../src/onnx/tensor.ts";
import { referenceLeastSquares } from "./helpers/reference_least_squares.ts";
import { mulberry32 as seededRandom } from "./seeded_random.ts";

/** Largest |a − b| over the largest |b|. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Rows of correlated activations with a non-zero mean: x = z·M + μ. */
function activations(rows: number, channels: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const mix = Float32Array.from({ length: channels * channels }, () => random() - 0.5);
  const mean = Float32Array.from({ length: channels }, () => random());
  const x = new Float32Array(rows * channels);
  const z = new Float32Array(channels);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < channels; i++) z[i] = random() - 0.5;
    for (let j = 0; j < channels; j++) {
      let v = mean[j];
      for (let i = 0; i < channels; i++) v += z[i] * mix[i * channels + j];
      x[r * channels + j] = v;
    }
  }
  return x;
}

function statsOf(x: Float32Array, channels: number): ChannelStats {
  const s = new ChannelStats(channels, true);
  s.add(x);
  return s;
}

Deno.test("core: Gram matrix equals the sum of outer products", () => {
  const x = activations(37, 19, 1);
  const g = gramNow(x, 37, 19);
  for (let i = 0; i < 19; i++) {
    for (let j = 0; j < 19; j++) {
      let want = 0;
      for (let r = 0; r < 37; r++) want += x[r * 19 + i] * x[r * 19 + j];
      assert.ok(Math.abs(g[i * 19 + j] - want) < 1e-4 * (1 + Math.abs(want)), `${i},${j}`);
    }
  }
  assert.deepEqual([...gramNow(Float32Array.of(1, 2, 3, 4), 2, 2)], [10, 14, 14, 20]);
});

Deno.test("Gram rows gathered over runs: the Gram matrix of all rows, in column blocks", async () => {
  for (const channels of [5, 600]) {
    const rows = [3, 40, 3600, 1, 200].map((r, i) => activations(r, channels, 10 + i));
    const stats = new ChannelStats(channels, true);
    const grams = new GramRows();
    try {
      for (const x of rows) await grams.add(stats, x, x.length / channels);
      await grams.flush();
    } finally {
      await grams.release();
    }
    const all = new Float32Array(rows.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of rows) all.set(x, at), at += x.length;
    const want = gramNow(all, all.length / channels, channels);
    assert.ok(relativeError(stats.gram!, want) < 1e-5, `${channels} channels`);
    assert.equal(stats.gramCount, all.length / channels);
    for (let j = 0; j < channels; j += 7) {
      let sum = 0;
      for (let r = 0; r < all.length / channels; r++) sum += all[r * channels + j];
      assert.ok(Math.abs(stats.gramMean(j) - sum / stats.gramCount) < 1e-5);
    }
  }
});

Deno.test("core: ridge refit equals the float64 reference solver (blocks, bias, precision)", () => {
  const random = seededRandom(7);
  for (const [cin, cout, rows] of [[6, 3, 40], [300, 70, 900]]) {
    const x = activations(rows, cin, cin);
    const stats = statsOf(x, cin);
    const w = Float32Array.from({ length: cin * cout }, () => random() - 0.5);
    const b = Float32Array.from({ length: cout }, () => random() - 0.5);
    const kept = [...Array(cin).keys()].filter((j) => j % 3 !== 1);
    for (const withBias of [true, false]) {
      const want = referenceLeastSquares(w, b, cin, cout, kept, stats, 0.01, withBias);
      for (const precision of [64, 32] as const) {
        const problem: RefitProblem = {
          gram: stats.gram!,
          count: stats.gramCount,
          weight: w,
          cin,
          cout,
          kept: Uint32Array.from(kept),
          ridge: 0.01,
          bias: withBias
            ? { values: b, mean: Float64Array.from({ length: cin }, (_, j) => stats.gramMean(j)) }
            : undefined,
          precision,
        };
        const got = ridgeRefitNow(problem);
        const tolerance = precision === 64 ? 1e-6 : 2e-3;
        const what = `${cin}×${cout}, bias ${withBias}, ${precision} bits`;
        assert.ok(relativeError(got.weight, want.weight) < tolerance, `weight, ${what}`);
        if (withBias) {
          assert.ok(relativeError(got.bias!, want.bias) < tolerance, `bias, ${what}`);
        } else assert.equal(got.bias, undefined);
      }
    }
  }
});

Deno.test("core: ridge refit through createCore, and its argument checks", async () => {
  const core = await createCore({ backend: "cpu" });
  const x = activations(20, 4, 3);
  const stats = statsOf(x, 4);
  const w = Float32Array.from({ length: 8 }, (_, i) => i - 4);
  const problem = {
    gram: stats.gram!,
    count: stats.gramCount,
    weight: w,
    cin: 4,
    cout: 2,
    kept: Uint32Array.of(0, 2, 3),
    ridge: 0.01,
  };
  const got = await core.ridgeRefit(problem);
  const want = referenceLeastSquares(w, new Float32Array(2), 4, 2, [0, 2, 3], stats, 0.01, false);
  assert.ok(relativeError(got.weight, want.weight) < 1e-4);
  await assert.rejects(() => core.ridgeRefit({ ...problem, kept: Uint32Array.of(0, 4) }), /kept/);
  await assert.rejects(() => core.ridgeRefit({ ...problem, cout: 3 }), /do not match/);
  await assert.rejects(() => core.ridgeRefit({ ...problem, count: 0 }), /no positions/);
  // Nothing removed: only the ridge moves the weights.
  const all = await core.ridgeRefit({ ...problem, kept: Uint32Array.of(0, 1, 2, 3) });
  const same = referenceLeastSquares(
    w,
    new Float32Array(2),
    4,
    2,
    [0, 1, 2, 3],
    stats,
    0.01,
    false,
  );
  assert.ok(relativeError(all.weight, same.weight) < 1e-4);
});

/** The Fashion-MNIST ViT with `batches` batches of 64 test images, and its block 0's fc2 (the
 * MLP's hidden channels) and attention projection (the heads' channels): nodes, input tensors,
 * bias names. */
async function fmnistBlock0(batches: number) {
  const ort = await loadOrt();
  const fixtures = new URL("./fixtures/", import.meta.url);
  const model = decodeModel(await Deno.readFile(new URL("fmnist_vit.onnx", fixtures)));
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", fixtures));
  const px = 784;
  const images = Float32Array.from(
    data.subarray(16, 16 + batches * 64 * px),
    (p) => (p / 255 - 0.286) / 0.353,
  );
  const feeds = Array.from({ length: batches }, (_, b) => ({
    input: new ort.Tensor("float32", images.slice(b * 64 * px, (b + 1) * 64 * px), [64, 1, 28, 28]),
  }));
  const layers = [
    ["/blocks/blocks.0/mlp/fc2/MatMul", "blocks.0.mlp.fc2.bias"],
    ["/blocks/blocks.0/attn/proj/MatMul", "blocks.0.attn.proj.bias"],
  ];
  const nodes = layers.map(([name]) => model.graph!.node!.find((n) => n.name === name)!);
  const inputs = nodes.map((n) => n.input![0]);
  const init = (name: string) =>
    tensorToFloat32(model.graph!.initializer!.find((t) => t.name === name)!);
  return { model, feeds, layers, nodes, inputs, init };
}

Deno.test("core: refit on the Fashion-MNIST ViT's calibration statistics, float32 as float64", async () => {
  const { model, feeds, layers, nodes, inputs, init } = await fmnistBlock0(4);
  const stats = await collectStats(model, inputs, feeds, { gram: new Set(inputs), gramStride: 4 });
  for (const [i, node] of nodes.entries()) {
    const x = stats.get(inputs[i])!, w = init(node.input![1]), b = init(layers[i][1]);
    const cin = x.channels, cout = b.length;
    const kept = [...Array(cin).keys()].filter((j) => j % 2 === 0);
    const want = referenceLeastSquares(w, b, cin, cout, kept, x, 0.01, true);
    for (const precision of [32, 64] as const) {
      const got = ridgeRefitNow({
        gram: x.gram!,
        count: x.gramCount,
        weight: w,
        cin,
        cout,
        kept: Uint32Array.from(kept),
        ridge: 0.01,
        bias: { values: b, mean: Float64Array.from({ length: cin }, (_, j) => x.gramMean(j)) },
        precision,
      });
      const tolerance = precision === 64 ? 1e-6 : 1e-4;
      assert.ok(relativeError(got.weight, want.weight) < tolerance, `${node.name} ${precision}`);
      assert.ok(relativeError(got.bias!, want.bias) < tolerance, `${node.name} bias ${precision}`);
    }
  }
});

Deno.test("core: APMA's dissimilarity equals the direct loop over channel pairs", () => {
  const channels = 40;
  const g = gramNow(activations(60, channels, 5), 60, channels);
  g[3 * channels + 3] = 0; // a dead channel: no cosine with it
  const heads = Int32Array.from({ length: channels }, (_, i) => (i * 7) % 5);
  for (const h of [undefined, heads]) {
    const got = dissimilarityNow(g, channels, h);
    for (let i = 0; i < channels; i++) {
      let most = 0;
      for (let j = 0; j < channels; j++) {
        if (j === i || (h && h[j] !== h[i])) continue;
        const den = Math.sqrt(g[i * channels + i] * g[j * channels + j]);
        if (den > 0) most = Math.max(most, Math.abs(g[i * channels + j]) / den);
      }
      assert.ok(Math.abs(got[i] - Math.max(0, 1 - most)) < 1e-6, `channel ${i}`);
    }
  }
});

Deno.test("core: a refit from held Gram rows equals the refit from the whole Gram matrix", async () => {
  const { model, feeds, layers, nodes, inputs, init } = await fmnistBlock0(1);
  const gram = new Set(inputs);
  // 64 images × 17 tokens, every 4th: 272 rows — held for fc2 (384 wide: within the 384² + 96²
  // values both Gram matrices would take), too many for the 96-wide projection (over 2 × 96),
  // whose Gram matrix is summed as before.
  const held = await collectStats(model, inputs, feeds, { gram, gramStride: 4, holdRows: gram });
  const whole = await collectStats(model, inputs, feeds, { gram, gramStride: 4 });
  const [fc2, proj] = inputs.map((name) => held.get(name)!);
  assert.ok(fc2.rows && !fc2.gram && fc2.gramCount === 272);
  assert.ok(proj.gram && !proj.rows);
  const x = whole.get(inputs[0])!;
  assert.equal(x.gramCount, fc2.gramCount);
  const w = init(nodes[0].input![1]), b = init(layers[0][1]);
  const cin = fc2.channels, cout = b.length;
  const refit = new HeldRowsRefit();
  try {
    const every = [...Array(cin).keys()];
    for (const kept of [every.filter((j) => j % 3 !== 1), every.slice(0, 5), every]) {
      for (const withBias of [true, false]) {
        const want = referenceLeastSquares(w, b, cin, cout, kept, x, 0.01, withBias);
        const problem = await refit.problem(fc2, w, cout, kept, 0.01, withBias ? b : undefined);
        const got = ridgeRefitNow({ ...problem, precision: 64 });
        const what = `${kept.length} kept, ${withBias ? "with" : "without"} bias`;
        assert.ok(relativeError(got.weight, want.weight) < 1e-4, what);
        if (withBias) assert.ok(relativeError(got.bias!, want.bias) < 1e-4, what);
      }
    }
  } finally {
    await refit.release();
  }
});

Deno.test("core: held rows in several blocks are summed as one (600 kept channels: four column blocks)", async () => {
  const cin = 700, cout = 7, rows = [500, 300, 400];
  const blocks = rows.map((n, i) => activations(n, cin, 11 + i));
  const whole = new ChannelStats(cin, true);
  const held = new ChannelStats(cin, "rows");
  held.rows = blocks;
  for (const [i, block] of blocks.entries()) {
    whole.add(block);
    const sum = new Float64Array(cin);
    block.forEach((v, at) => sum[at % cin] += v);
    held.addGram(undefined, sum, rows[i]);
  }
  const random = seededRandom(5);
  const w = Float32Array.from({ length: cin * cout }, () => random() - 0.5);
  const b = Float32Array.from({ length: cout }, () => random() - 0.5);
  const kept = [...Array(cin).keys()].filter((j) => j % 7 !== 3);
  const want = referenceLeastSquares(w, b, cin, cout, kept, whole, 0.01, true);
  const refit = new HeldRowsRefit();
  try {
    const got = ridgeRefitNow({
      ...(await refit.problem(held, w, cout, kept, 0.01, b)),
      precision: 64,
    });
    assert.ok(relativeError(got.weight, want.weight) < 1e-4);
    assert.ok(relativeError(got.bias!, want.bias) < 1e-4);
  } finally {
    await refit.release();
  }
});

Deno.test("core: a given removed contribution needs every input kept and its mean with a bias", () => {
  // x = [1, 1] at every position (E[xxᵀ] = 2I after centring-free counting), W = [1, 1]ᵀ.
  const problem = {
    gram: Float32Array.of(2, 0, 0, 2),
    count: 1,
    weight: Float32Array.of(1, 1),
    cin: 2,
    cout: 1,
    kept: Uint32Array.of(0, 1),
    ridge: 0.01,
    removed: { cross: Float32Array.of(1, 1) },
  };
  // W' = W + (2I + λI)⁻¹ (cross − λW), λ = 0.01 · 2: 1 + (1 − 0.02) / 2.02 each.
  const got = ridgeRefitNow({ ...problem, precision: 64 }).weight;
  for (const v of got) assert.ok(Math.abs(v - (1 + 0.98 / 2.02)) < 1e-6, `${v}`);
  assert.throws(
    () =>
      ridgeRefitNow({
        ...problem,
        kept: Uint32Array.of(0),
        removed: { cross: Float32Array.of(1) },
      }),
    /every input kept/,
  );
  assert.throws(
    () => ridgeRefitNow({ ...problem, removed: { cross: Float32Array.of(1) } }),
    /needs 2 × 1 values/,
  );
  assert.throws(
    () =>
      ridgeRefitNow({
        ...problem,
        bias: { values: Float32Array.of(0), mean: new Float64Array(2) },
      }),
    /exactly when there is a bias/,
  );
});

Deno.test("core: rows held past twice the channels fall back to the Gram matrix of every row", async () => {
  // 1100 channels: blocks of 1907 rows pass the 8 MiB at which rows are kept as one block; the
  // second block crosses 2 × 1100 rows, so the first is multiplied into the Gram matrix then.
  const c = 1100, rows = 1907;
  const random = seededRandom(3);
  const blocks = [0, 1].map(() => Float32Array.from({ length: rows * c }, () => random() - 0.5));
  const held = new ChannelStats(c, "rows"), grams = new GramRows();
  for (let i = 0; i < 4; i++) grams.reserve(c); // as if other tensors' Gram matrices were counted
  try {
    await grams.add(held, blocks[0], rows);
    assert.equal(held.rows?.length, 1);
    assert.ok(!held.gram);
    await grams.add(held, blocks[1], rows);
    await grams.flush();
  } finally {
    await grams.release();
  }
  assert.ok(held.gram && !held.rows);
  assert.equal(held.gramCount, 2 * rows);
  const both = new Float32Array(2 * rows * c);
  blocks.forEach((b, i) => both.set(b, i * rows * c));
  assert.ok(relativeError(held.gram, gramNow(both, 2 * rows, c)) < 1e-5);
  const sum = new Float64Array(c);
  both.forEach((v, i) => sum[i % c] += v);
  assert.ok(relativeError(held.gramSum!, sum) < 1e-9);
});

Deno.test("core: rows held by all tensors together stay within what their Gram matrices take", async () => {
  // Two 1100-channel tensors: 1000 rows each fit (8.8 of 9.68 MB for both Gram matrices); 300
  // more for the first would pass that, though under its own 2 × 1100 rows: it falls back.
  const c = 1100;
  const random = seededRandom(4);
  const rows = (n: number) => Float32Array.from({ length: n * c }, () => random() - 0.5);
  const [a, b] = [new ChannelStats(c, "rows"), new ChannelStats(c, "rows")];
  const grams = new GramRows();
  grams.reserve(c);
  grams.reserve(c);
  try {
    await grams.add(a, rows(1000), 1000);
    await grams.add(b, rows(1000), 1000);
    assert.ok(a.holdingRows && b.holdingRows);
    await grams.add(a, rows(300), 300);
    assert.ok(!a.holdingRows && a.gram, "the first falls back to its Gram matrix");
    await grams.add(b, rows(300), 300);
    assert.ok(b.holdingRows, "the second holds on: the first's rows are gone");
    await grams.flush();
  } finally {
    await grams.release();
  }
  assert.equal(a.gramCount, 1300);
  assert.ok(b.rows && !b.gram && b.gramCount === 1300);
});
