/**
 * Pruning to a target (params, MACs, speed-up) and the latency model behind speed-up targets:
 * the block model, the grid table (monotone, cached), multilinear interpolation.
 */
import assert from "node:assert/strict";
import { pruneToTarget } from "../src/target.ts";
import { pruneModel } from "../src/prune.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { tensorToFloat32 } from "../src/onnx/tensor.ts";
import { createCore } from "../src/core/mod.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";
import { blockModel } from "../src/latency/block.ts";
import {
  AXES,
  gridAxes,
  interpolate,
  type LatencyTable,
  profileBlock,
  refineTable,
} from "../src/latency/table.ts";
import {
  compareLatency,
  createLatencyModel,
  measureLatency,
  modelBlocks,
  scopeReach,
  targetScope,
} from "../src/latency/model.ts";
import { fitTable } from "../src/latency/fit.ts";
import type { BlockShape } from "../src/latency/block.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { keptFloor, type LatencyEstimator, type SpeedupCheck } from "../src/target.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
type Shape = Record<string, number>;
const core = await createCore({ backend: "cpu" });
const vit = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));

Deno.test("pruning to a parameter or MAC target meets it in steps, kept indices in the original numbering", async () => {
  for (const target of [{ params: 0.6 }, { macs: 4_000_000, steps: 3 }]) {
    const r = await pruneToTarget(decodeModel(vit), target, {
      pruneHeadDims: true,
      roundTo: 4,
      core,
    });
    const t = r.target;
    assert.ok(t.met, JSON.stringify(t));
    assert.ok(t.reached <= t.goal && t.reached > 0.8 * t.goal, JSON.stringify(t));
    assert.equal(t.metric, "params" in target ? "params" : "macs");
    assert.ok(t.steps.length >= 1 && t.steps.length <= (target.steps ?? 4) + 3);
    const reported = "params" in target ? r.report.params.after : r.report.macs.after;
    assert.equal(reported, t.reached);
    for (const b of r.report.blocks) {
      const kept = b.kind === "attention" ? b.keptHeads : b.keptChannels;
      const before = b.kind === "attention" ? b.heads.before : b.channels.before;
      assert.deepEqual(kept, [...new Set(kept)].sort((x, y) => x - y), b.name);
      assert.ok(kept.every((k) => k >= 0 && k < before), b.name);
      if (b.kind === "mlp") assert.equal(b.channels.after % 4, 0, `${b.name} rounded to 4`);
    }
    // The result runs and is smaller.
    const session = await createSession(encodeModel(r.model));
    assert.ok(session.outputNames.length > 0);
  }
});

Deno.test("a MAC target with Q/K and V dims ranked as separate kinds (NViT's design space)", async () => {
  const r = await pruneToTarget(decodeModel(vit), { macs: 0.75, steps: 3 }, {
    pruneHeadDims: true,
    separateQkV: true,
    // V dims ranked first, so that every step removes some: kept indices compose across steps.
    kindScale: { v: 1e3 },
    core,
  });
  assert.ok(r.target.steps.length >= 2, JSON.stringify(r.target));
  assert.ok(r.target.met, JSON.stringify(r.target));
  const attention = r.report.blocks.filter((b) => b.kind === "attention");
  const qk = attention.map((b) => b.kind === "attention" ? b.headDim.after : 0);
  const v = attention.map((b) => b.kind === "attention" ? b.vHeadDim?.after ?? b.headDim.after : 0);
  assert.notDeepEqual(qk, v, "Q/K and V dims pruned by their own ranking");
  // Kept dims across steps are in the original numbering: one list per kept head, sized as
  // reported, distinct, inside the original head.
  for (const b of attention) {
    if (b.kind !== "attention") continue;
    for (const [lists, size] of [[b.keptDims, b.headDim], [b.keptVDims, b.vHeadDim]] as const) {
      if (!lists || !size) continue;
      assert.equal(lists.length, b.keptHeads.length, b.name);
      for (const d of lists) {
        assert.equal(d.length, size.after, b.name);
        assert.equal(new Set(d).size, d.length, b.name);
        assert.ok(d.every((j) => j >= 0 && j < size.before), b.name);
      }
    }
  }
  // The output projections of the pruned model read exactly the original rows of the kept
  // (head, V dim) pairs, in order — whatever step removed them.
  const rows = (m: ReturnType<typeof decodeModel>, block: number) => {
    const node = m.graph!.node!.find((n) => n.name === `/blocks/blocks.${block}/attn/proj/MatMul`)!;
    const w = m.graph!.initializer!.find((t) => t.name === node.input![1])!;
    const [cin, cout] = w.dims!.map(Number);
    const values = tensorToFloat32(w);
    return Array.from({ length: cin }, (_, i) => values.subarray(i * cout, (i + 1) * cout));
  };
  const original = decodeModel(vit);
  attention.forEach((b, block) => {
    if (b.kind !== "attention") return;
    const width = b.vHeadDim?.before ?? b.headDim.before;
    const vDims = b.keptVDims ?? b.keptDims ??
      b.keptHeads.map(() => [...Array(width).keys()]);
    const expected = b.keptHeads.flatMap((h, i) => vDims[i].map((j) => h * width + j));
    const before = rows(original, block), after = rows(r.model, block);
    assert.equal(after.length, expected.length, `block ${block}`);
    expected.forEach((row, k) =>
      assert.deepEqual(after[k], before[row], `block ${block} row ${k}`)
    );
  });
});

Deno.test("targets: one at a time, below the original, and a speed-up needs a latency model", async () => {
  const m = () => decodeModel(vit);
  await assert.rejects(() => pruneToTarget(m(), { params: 0.5, macs: 0.5 }), /exactly one target/);
  await assert.rejects(() => pruneToTarget(m(), { params: 2e9 }), /not less than the model's/);
  await assert.rejects(() => pruneToTarget(m(), { speedup: 2 }), /needs a latency model/);
  await assert.rejects(() => pruneToTarget(m(), { speedup: 0.5 }), /speed-up must be above 1/);
  await assert.rejects(() => pruneToTarget(m(), { params: 0.5, steps: 0 }), /steps must be/);
});

Deno.test("a parameter target under grouped-query attention keeps KV heads counted from the original", async () => {
  const llama = await Deno.readFile(new URL("more/llama_gqa.onnx", FIXTURES));
  const r = await pruneToTarget(decodeModel(llama), { params: 0.85, steps: 2 }, {
    pruneNumHeads: true,
    gqaPolicy: "kv-groups",
    kindScale: { heads: 1e6 },
    core,
  });
  assert.ok(r.target.met, JSON.stringify(r.target));
  const attention = r.report.blocks.filter((b) => b.kind === "attention");
  assert.ok(attention.some((b) => b.heads.after < b.heads.before));
  for (const b of attention) {
    if (b.kind !== "attention") continue;
    assert.deepEqual(b.heads.before, 4);
    assert.deepEqual(b.kvHeads?.before, 2);
    assert.equal(b.keptHeads.length, b.heads.after);
    assert.equal(b.heads.after, 2 * b.kvHeads!.after);
  }
  await createSession(encodeModel(r.model));
  await assert.rejects(
    () => modelBlocks(decodeModel(llama)),
    /latency model profiles multi-head attention blocks; "[^"]+" uses grouped-query attention/,
  );
});

Deno.test("the latency block model runs in onnxruntime with any shape", async () => {
  const ort = await loadOrt();
  const shape = { emb: 24, heads: 3, qk: 5, v: 7, mlp: 40 };
  const session = await createSession(encodeModel(blockModel(shape, 2, 9)));
  const x = new ort.Tensor("float32", new Float32Array(2 * 9 * 24).fill(0.5), [2, 9, 24]);
  const y = (await session.run({ x })).y;
  assert.deepEqual([...y.dims], [2, 9, 24]);
  assert.ok((y.data as Float32Array).every(Number.isFinite));

  // Heads of different sizes, one at a time: the weights of their dims and no more.
  const unaligned = blockModel({ emb: 24, headDims: [2, 5, 9], mlp: 40 }, 2, 9);
  const numel = (m: typeof unaligned, re: RegExp) =>
    m.graph!.initializer!.filter((t) => re.test(t.name!))
      .reduce((a, t) => a + t.dims!.reduce((p, d) => p * Number(d), 1), 0);
  assert.equal(numel(unaligned, /^[qkv]\d\.w$/), 3 * 24 * 16);
  assert.equal(numel(unaligned, /^proj\.w$/), 16 * 24);
  const out = (await (await createSession(encodeModel(unaligned))).run({ x })).y;
  assert.deepEqual([...out.dims], [2, 9, 24]);
  assert.ok((out.data as Float32Array).every(Number.isFinite));
});

/** A table over `axes` whose timings come from `f`, laid out as profileBlock lays them out. */
function formulaTable(axes: LatencyTable["axes"], f: (s: Shape) => number): LatencyTable {
  const sizes = AXES.map((a) => axes[a].length);
  const ms: number[] = [];
  const total = sizes.reduce((a, b) => a * b, 1);
  for (let i = 0; i < total; i++) {
    let rest = i;
    const s: Shape = {};
    for (let a = AXES.length - 1; a >= 0; a--) {
      s[AXES[a]] = axes[AXES[a]][rest % sizes[a]];
      rest = Math.floor(rest / sizes[a]);
    }
    ms.push(f(s));
  }
  return { axes, ms } as unknown as LatencyTable;
}

Deno.test("multilinear interpolation is exact on multilinear latencies and never extrapolates", () => {
  const axes = { emb: [8, 16], heads: [1, 2, 4], qk: [4, 8], v: [4, 8], mlp: [16, 32, 64] };
  const f = (s: Shape) =>
    1 + 0.01 * s.emb + 0.2 * s.heads * s.qk / 8 + 0.1 * s.heads * s.v / 8 +
    0.003 * s.mlp * s.emb / 8;
  const table = formulaTable(axes, f);
  for (
    const s of [
      { emb: 12, heads: 3, qk: 5, v: 7, mlp: 40 },
      { emb: 16, heads: 4, qk: 8, v: 8, mlp: 64 },
      { emb: 8, heads: 1, qk: 4, v: 4, mlp: 16 },
    ]
  ) {
    assert.ok(Math.abs(interpolate(table, s) - f(s)) < 1e-9, JSON.stringify(s));
  }
  // Below the grid (or above it) there is no measurement: refused, naming the axis.
  assert.throws(
    () => interpolate(table, { emb: 8, heads: 1, qk: 2, v: 4, mlp: 16 }),
    /outside the measured range of the latency table \(qk 2 not in 4…8\)/,
  );
  assert.throws(() => interpolate(table, { emb: 8, heads: 1, qk: 4, v: 4, mlp: 65 }), /mlp 65/);
});

Deno.test("the grid spans every size the search can reach: floors, every head count, tied dims", () => {
  const blocks = [
    { emb: 384, heads: 6, qk: 64, v: 64, mlp: 1536 },
    { emb: 384, heads: 6, qk: 64, v: 64, mlp: 1536 },
  ];
  // MLP channels only: one point on every other axis, the MLP from its floor up.
  const floors = scopeReach(blocks, { roundTo: 8 });
  assert.equal(floors.mlp, keptFloor("channels", 1536, 0.125, 8));
  assert.equal(floors.mlp, 192);
  const mlpOnly = gridAxes(blocks, floors, 5);
  assert.deepEqual(mlpOnly.axes.mlp, [192, 528, 864, 1200, 1536]);
  assert.deepEqual([mlpOnly.axes.emb, mlpOnly.axes.heads, mlpOnly.axes.qk], [[384], [6], [64]]);
  assert.ok(mlpOnly.tiedV);
  // Head dims (Q/K and V together) and heads: V tied to Q/K, every head count from one.
  const reach = scopeReach(blocks, { heads: true, dims: true, roundTo: 8, minKeep: 0 });
  assert.equal(reach.mlp, 8);
  assert.equal(reach.qk, 8);
  const g = gridAxes(blocks, reach, 4);
  assert.ok(g.tiedV);
  assert.deepEqual(g.axes.heads, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(g.axes.qk, [8, 27, 45, 64]);
  assert.deepEqual(g.axes.v, g.axes.qk);
  assert.deepEqual(g.axes.mlp, [8, 517, 1027, 1536]);
  // Q/K and V apart: two axes.
  const apart = gridAxes(blocks, scopeReach(blocks, { dims: true, separate: true }), 3);
  assert.ok(!apart.tiedV);
  assert.deepEqual(apart.axes.v, [8, 36, 64]);
  // Blocks of other sizes keep theirs on an axis the run does not prune.
  const mixed = gridAxes([...blocks, { ...blocks[0], heads: 3, mlp: 768 }], {}, 4);
  assert.deepEqual([mixed.axes.heads, mixed.axes.mlp], [[3, 6], [768, 1536]]);
  // Floors: a share rounded up to roundTo, never below one head or two channels.
  assert.deepEqual(
    [
      keptFloor("heads", 6, 0.125),
      keptFloor("heads", 12, 0.25),
      keptFloor("dims", 64, 0.125, 8),
      keptFloor("channels", 100, 0.1, 8),
      keptFloor("channels", 100, 0),
      keptFloor("channels", 4, 0.5, 8),
    ],
    [1, 3, 8, 16, 2, 4],
  );
});

Deno.test("exactly timed block shapes correct the table near them, and only there", async () => {
  const axes = { emb: [16], heads: [2], qk: [4, 8], v: [4, 8], mlp: [16, 32, 64] };
  const table = { ...formulaTable(axes, (s) => s.qk + s.mlp / 8), batch: 1, tokens: 3 };
  const at = { emb: 16, heads: 2, qk: 6, v: 8, mlp: 24 };
  const grid = interpolate(table, at);
  assert.equal(grid, 6 + 3);
  // The real block takes 2 ms more there than the grid says (timed at the grid's speed: the
  // full block times what the grid holds for it).
  const timer = {
    name: "test",
    time: (s: BlockShape) =>
      Promise.resolve(s.qk + s.mlp / 8 + (s.qk === 6 && s.mlp === 24 ? 2 : 0)),
  };
  const refined = await refineTable(table, [at, at, { ...at, mlp: 99 }], { tokens: 3, timer });
  assert.equal(refined.points?.length, 1, "one distinct shape inside the grid");
  assert.ok(Math.abs(interpolate(refined, at) - (grid + 2)) < 1e-9);
  assert.equal(interpolate(refined, at, { exact: false }), grid);
  // Half a cell away part of the error is corrected; a whole cell away none.
  const near = interpolate(refined, { ...at, mlp: 32 });
  assert.ok(near > 6 + 4 && near < 6 + 4 + 2, String(near));
  assert.equal(interpolate(refined, { ...at, mlp: 64 }), 6 + 8);
  // The correction fades with the distance in cells, over all axes.
  const corrections = [{ qk: 8, mlp: 24 }, { qk: 8, mlp: 32 }, { qk: 8, mlp: 64 }].map((d) =>
    interpolate(refined, { ...at, ...d }) - interpolate(table, { ...at, ...d })
  );
  assert.deepEqual(corrections.map((c) => c > 0), [true, true, false]);
  assert.ok(corrections[0] > corrections[1], String(corrections));
});

Deno.test("the smooth fit of a table recovers the work a block does, with non-negative weights", () => {
  const axes = { emb: [32, 64], heads: [1, 2, 4], qk: [8, 16], v: [8, 16], mlp: [32, 96, 128] };
  const f = (s: Shape) => 0.5 + 0.002 * s.emb * s.heads * (s.qk + s.v) + 0.001 * s.emb * s.mlp;
  const fit = fitTable(formulaTable(axes, f));
  assert.ok(fit.weights.every((w) => w >= 0));
  assert.ok(fit.relativeError < 1e-3, String(fit.relativeError));
  const s = { emb: 48, heads: 3, qk: 12, v: 10, mlp: 64 };
  assert.ok(Math.abs(fit.predict(s) - f(s)) / f(s) < 1e-3);
  // Noise that makes the grid non-monotone leaves the fit monotone: no unit ever costs time.
  let seed = 7;
  const noisy = formulaTable(
    axes,
    (x) => f(x) * (1 + ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 0.4),
  );
  const n = fitTable(noisy);
  assert.ok(n.weights.every((w) => w >= 0));
  assert.ok(n.predict(s) > n.predict({ ...s, mlp: 63 }));
});

Deno.test("profiling a block in onnxruntime: a monotone grid table from the floors up", async () => {
  const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
  let calls = 0;
  const options = {
    tokens: 5,
    levels: 2,
    runs: 3,
    passes: 2,
    cacheDir: null,
    reach: { emb: 16, heads: 1, qk: 4, v: 4, mlp: 8 },
    onProgress: () => calls++,
  };
  const table = await profileBlock(full, options);
  assert.equal(table.ms.length, 2 ** 5);
  assert.equal(table.passes, 2);
  assert.equal(calls, 2 * 32, "every point timed in every pass");
  assert.deepEqual(table.axes.emb, [16, 32]);
  assert.deepEqual(table.axes.mlp, [8, 64]);
  // Shrinking any dimension never costs more.
  assert.ok(table.ms[0] <= table.ms[table.ms.length - 1]);
  for (let i = 0; i < 32; i++) {
    for (let bit = 0; bit < 5; bit++) {
      if (i & (1 << bit)) assert.ok(table.ms[i - (1 << bit)] <= table.ms[i]);
    }
  }
});

Deno.test("the latency table cache: keyed by runtime and grid, trusted only under the same load", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_latency_" });
  try {
    const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
    // A deterministic runtime whose speed the test sets: `load` scales every timing.
    let load = 1, timed = 0;
    const timer = (s: typeof full) => {
      timed++;
      return Promise.resolve(load * (s.emb * (s.heads * (s.qk + s.v) + s.mlp)) / 1000);
    };
    const options = {
      tokens: 5,
      levels: 2,
      passes: 1,
      cacheDir: dir,
      reach: { emb: 16, heads: 1, qk: 4, v: 4, mlp: 8 },
      timer: { name: "test", time: timer },
    };
    const table = await profileBlock(full, options);
    assert.equal(table.note, undefined);
    assert.equal(table.fullMs, table.ms.at(-1));
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(files, [`${table.key}.json`]);
    // Another grid (another reach) is another table.
    const other = await profileBlock(full, { ...options, reach: { mlp: 8 } });
    assert.notEqual(other.key, table.key);
    assert.equal(other.ms.length, 2);

    timed = 0;
    const again = await profileBlock(full, options);
    assert.ok(again.fromCache);
    assert.deepEqual(again.ms, table.ms);
    assert.equal(again.note, undefined);
    assert.equal(timed, 2, "only the full block timed to check the cache");

    // 20% slower now: within the tolerance, the cached table rescaled to today's speed.
    load = 1.2;
    const slower = await profileBlock(full, options);
    assert.ok(slower.fromCache);
    slower.ms.forEach((m, i) => assert.ok(Math.abs(m - 1.2 * table.ms[i]) < 1e-9));
    assert.match(slower.note ?? "", /rescaled ×1\.20/);

    // The same table under twice the load: profiled again, said so, and the cache replaced.
    load = 2;
    const fresh = await profileBlock(full, options);
    assert.ok(!fresh.fromCache);
    assert.match(fresh.note ?? "", /cached table timed the full block at [\d.]+ ms, [\d.]+ ms now/);
    assert.deepEqual(fresh.ms, table.ms.map((m) => 2 * m));
    const cached = JSON.parse(await Deno.readTextFile(`${dir}/${table.key}.json`));
    assert.deepEqual(cached.ms, fresh.ms);

    // The load changes while the grid is timed: said so, and nothing cached.
    const elsewhere = { ...options, cacheDir: await Deno.makeTempDir({ dir }) };
    timed = 0;
    load = 1;
    const drifting = await profileBlock(full, {
      ...elsewhere,
      timer: { name: "test", time: (s) => (load = ++timed > 20 ? 3 : 1, timer(s)) },
    });
    assert.match(drifting.note ?? "", /load changed while the table was timed/);
    assert.deepEqual([...Deno.readDirSync(elsewhere.cacheDir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Block timings from a formula (MAC-like: `attention` and `mlp` weigh the two halves), so that
 * what pruning saves does not hang on this machine's timing noise. */
const formulaTimer = (attention: number, mlp: number) => ({
  name: `formula ${attention} ${mlp}`,
  time: (s: BlockShape) =>
    Promise.resolve(
      s.emb * (attention * s.heads * (2 * s.qk + 2 * s.v) + mlp * 2 * s.mlp) * 17 / 2e6,
    ),
});

Deno.test("latency model: block shapes read from exports, estimates that fall as the model shrinks", async () => {
  const blocks = await modelBlocks(decodeModel(vit));
  assert.equal(blocks.shapes.length, 6);
  assert.deepEqual(blocks.shapes[0], { emb: 96, heads: 3, qk: 32, v: 32, mlp: 384 });
  assert.equal(blocks.tokens, 17);
  const timm = await modelBlocks(
    decodeModel(await Deno.readFile(new URL("timm_vit.onnx", FIXTURES))),
  );
  assert.ok(timm.shapes.length >= 1 && timm.tokens > 1);

  const dir = await Deno.makeTempDir({ prefix: "prune_vit_latency_" });
  try {
    const lm = await createLatencyModel(decodeModel(vit), {
      levels: 3,
      timer: formulaTimer(1, 1),
      cacheDir: dir,
      scope: { dims: true, roundTo: 4 },
      rounds: 3,
    });
    assert.ok(lm.originalMs > 0);
    assert.ok(lm.table.tiedV, "Q/K and V dims pruned together: one axis");
    assert.deepEqual(lm.table.axes.qk, [4, 18, 32]);
    assert.deepEqual(lm.table.axes.mlp, [48, 216, 384]);
    // Fitted (or capped) so that rest + scale × blocks gives the original its measured time.
    assert.ok(lm.restMs >= 0 && lm.blockScale > 0, JSON.stringify(lm));
    assert.ok(Math.abs((await lm.estimate(decodeModel(vit))) - lm.originalMs) < 1e-6);
    const r = await pruneToTarget(decodeModel(vit), { speedup: 1.3, latency: lm, steps: 2 }, {
      pruneHeadDims: true,
      roundTo: 4,
      core,
    });
    assert.equal(r.target.metric, "latency");
    assert.ok(r.target.reached < lm.originalMs);
    assert.ok(r.target.steps.every((s, i, all) => i === 0 || s.latencyMs! < all[i - 1].latencyMs!));
    assert.ok(r.report.params.after < r.report.params.before);
    // Judged by a measurement of the two models, never by the estimate.
    const m = r.target.measured!;
    assert.ok(m.rounds === 3 && m.low <= m.speedup && m.speedup <= m.high, JSON.stringify(m));
    assert.equal(r.target.met, m.speedup >= 1.3);
    // The step that reached the goal had the shapes around it timed exactly.
    assert.ok(lm.table.points?.length, "refined");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The latency model of the fixture on a formula timer — whole models timed as the sum of their
 * blocks plus 0.2 ms — judged by a made-up measurement that is `bias` × the estimated speed-up
 * (±1%). */
async function biased(bias: number, timer = formulaTimer(1, 1)) {
  const modelMs = async (m: ModelProto | Uint8Array) => {
    const b = await modelBlocks(m instanceof Uint8Array ? decodeModel(m) : m);
    let sum = 0.2;
    for (const s of b.shapes) sum += await timer.time(s);
    return sum;
  };
  const lm = await createLatencyModel(decodeModel(vit), {
    levels: 3,
    timer,
    cacheDir: null,
    scope: { heads: true, dims: true, roundTo: 4 },
    async measure(models) {
      const ms = [];
      for (const m of models) ms.push(await modelMs(m));
      return { medians: ms, rounds: [ms] };
    },
  });
  assert.ok(lm.fitted && Math.abs(lm.blockScale - 1) < 1e-6 && Math.abs(lm.restMs - 0.2) < 1e-6);
  const compares: number[] = [];
  const estimator: LatencyEstimator = {
    estimate: lm.estimate,
    costs: lm.costs,
    refine: lm.refine,
    async compare(_original: Uint8Array, pruned): Promise<SpeedupCheck> {
      const s = (lm.originalMs / await lm.estimate(pruned)) * bias;
      compares.push(s);
      return {
        originalMs: lm.originalMs,
        prunedMs: lm.originalMs / s,
        speedup: s,
        low: s * 0.99,
        high: s * 1.01,
        rounds: 5,
      };
    },
  };
  return { lm, estimator, compares };
}

Deno.test("a speed-up target is judged by the measurement: an overshoot puts units back, a miss prunes more", async () => {
  for (const bias of [1.15, 0.85]) {
    const { lm, estimator, compares } = await biased(bias);
    const r = await pruneToTarget(decodeModel(vit), {
      speedup: 1.5,
      latency: estimator,
      steps: 2,
    }, { pruneHeadDims: true, roundTo: 4, core });
    const m = r.target.measured!;
    assert.ok(m.corrections >= 1, `bias ${bias}: ${JSON.stringify(r.target)}`);
    assert.equal(compares.length, m.corrections + 1);
    // The first measurement was off by more than the noise; the kept one is within it.
    assert.ok(Math.abs(compares[0] - 1.5) > 0.015 * 1.5, String(compares));
    assert.ok(m.speedup >= 1.5 && m.low <= 1.5, `bias ${bias}: ${JSON.stringify(m)}`);
    assert.ok(r.target.met);
    assert.equal(r.target.steps.at(-1)!.correction, compares.indexOf(m.speedup));
    assert.match(r.report.notes.join("\n"), /the last step corrected \d times? after timing it/);
    // The model returned is the one measured (the made-up measurement follows its estimate).
    const kept = lm.originalMs / await estimator.estimate(r.model) * bias;
    assert.ok(Math.abs(kept - m.speedup) < 1e-9, `${kept} against ${m.speedup}`);
  }
  // Without a measurement a speed-up is never reported met.
  const { lm } = await biased(1);
  const unmeasured = await pruneToTarget(decodeModel(vit), {
    speedup: 1.2,
    latency: { estimate: lm.estimate, costs: lm.costs },
    steps: 1,
  }, { pruneHeadDims: true, roundTo: 4, core });
  assert.ok(unmeasured.target.reached <= unmeasured.target.goal);
  assert.equal(unmeasured.target.met, false);
  assert.equal(unmeasured.target.measured, undefined);
});

Deno.test("speed-up targets rank units by importance per millisecond: attention goes where it is the cheaper way", async () => {
  const kinds = (r: Awaited<ReturnType<typeof pruneToTarget>>) => {
    const attention = r.report.blocks.filter((b) => b.kind === "attention");
    const mlp = r.report.blocks.filter((b) => b.kind === "mlp");
    return {
      dims: attention.some((b) => b.kind === "attention" && b.headDim.after < b.headDim.before),
      mlp: mlp.some((b) => b.kind === "mlp" && b.channels.after < b.channels.before),
    };
  };
  // Attention costing 30× what the MLP costs per MAC: head dims are the cheaper way.
  const costly = await biased(1, formulaTimer(30, 1));
  const a = await pruneToTarget(decodeModel(vit), { speedup: 1.5, latency: costly.estimator }, {
    pruneHeadDims: true,
    roundTo: 4,
    core,
  });
  assert.ok(kinds(a).dims, "head dims pruned where attention is slow");
  // Attention nearly free: the MLP takes everything, and the report warns.
  const free = await biased(1, formulaTimer(0.001, 1));
  const b = await pruneToTarget(decodeModel(vit), { speedup: 1.5, latency: free.estimator }, {
    pruneHeadDims: true,
    roundTo: 4,
    core,
  });
  assert.deepEqual(kinds(b), { dims: false, mlp: true });
  assert.match(
    (b.target.warnings ?? []).join("\n"),
    /MLP channels took the whole budget: head dims took no part \(everywhere they cost more importance per millisecond saved\)/,
  );
});

Deno.test("refining near the goal: block shapes timed exactly, the fit through the original and a nearby model", async () => {
  const timer = formulaTimer(1, 1);
  // Blocks cost less inside a smaller model than alone (a block of full size: as alone).
  let load = 1;
  const modelMs = async (m: ModelProto | Uint8Array) => {
    const b = await modelBlocks(m instanceof Uint8Array ? decodeModel(m) : m);
    let sum = 0;
    for (const s of b.shapes) sum += (await timer.time(s)) * (0.7 + 0.3 * s.mlp / 384);
    return load * (0.2 + sum);
  };
  const lm = await createLatencyModel(decodeModel(vit), {
    levels: 3,
    timer,
    cacheDir: null,
    scope: { dims: true, roundTo: 4 },
    async measure(models) {
      const ms = [];
      for (const m of models) ms.push(await modelMs(m));
      return { medians: ms, rounds: [ms] };
    },
  });
  const near = decodeModel(vit);
  await pruneModel(near, { pruningRatio: 0.75, roundTo: 4, core });
  const far = await lm.estimate(near) - await modelMs(near);
  assert.ok(far > 0.01, `the fit at half the MLPs misses a quarter: ${far}`);
  const scale = lm.blockScale;
  // Without a nearby model only block shapes are timed: the fit stays.
  assert.equal(await lm.refine([near]), undefined);
  assert.equal(lm.blockScale, scale);
  // With one — and the machine 10% slower now — the estimates go through it and the original.
  load = 1.1;
  const original = await lm.refine([near], near);
  assert.ok(Math.abs(original! - await modelMs(encodeModel(decodeModel(vit)))) < 1e-9);
  assert.ok(Math.abs(await lm.estimate(near) - await modelMs(near)) < 1e-9);
  assert.equal(lm.originalMs, original);
  assert.deepEqual(lm.refit, { originalMs: original, nearMs: await modelMs(near) });
});

Deno.test("the latency grid follows what the run may prune: head flags, or attention of its own accord", async () => {
  const timer = formulaTimer(1, 1);
  const measure = (models: unknown[]) =>
    Promise.resolve({ medians: models.map(() => 1), rounds: [models.map(() => 1)] });
  const axes = async (options: Parameters<typeof targetScope>[0]) =>
    (await createLatencyModel(decodeModel(vit), {
      levels: 2,
      timer,
      cacheDir: null,
      measure,
      scope: targetScope({ ...options, roundTo: 4 }),
    })).table.axes;
  // No head flag: a target may take head dims (heads where dims cannot go) — on the grid.
  const free = await axes({});
  assert.deepEqual([free.heads, free.qk, free.mlp], [[3], [4, 32], [48, 384]]);
  // A head ratio of 0 keeps attention out: Q/K and V dims stay at the model's.
  const mlpOnly = await axes({ headPruningRatio: 0 });
  assert.deepEqual([mlpOnly.heads, mlpOnly.qk, mlpOnly.mlp], [[3], [32], [48, 384]]);
  const heads = await axes({ pruneNumHeads: true, pruneMlp: false });
  assert.deepEqual([heads.heads, heads.qk, heads.mlp], [[1, 2, 3], [32], [384]]);
  const apart = await axes({ pruneHeadDims: true, separateQkV: true, pruneEmbedding: true });
  assert.ok(
    !(await createLatencyModel(decodeModel(vit), {
      levels: 2,
      timer,
      cacheDir: null,
      measure,
      scope: targetScope({ pruneHeadDims: true, separateQkV: true }),
    })).table.tiedV,
  );
  assert.deepEqual([apart.emb, apart.v], [[12, 96], [4, 32]]);
});

Deno.test("a floor per block: no target empties a block unless asked", async () => {
  const mlpSizes = (r: Awaited<ReturnType<typeof pruneToTarget>>) =>
    r.report.blocks.filter((b) => b.kind === "mlp").map((b) =>
      b.kind === "mlp" ? b.channels.after : 0
    );
  // 60% of the parameters from MLP channels only (a head ratio of 0 keeps attention out): more
  // than the MLPs hold above a quarter of their channels.
  const floored = await pruneToTarget(decodeModel(vit), { params: 0.4, minKeep: 0.25 }, {
    headPruningRatio: 0,
    roundTo: 4,
    core,
  });
  assert.ok(mlpSizes(floored).every((c) => c >= 96), String(mlpSizes(floored)));
  assert.ok(!floored.target.met, JSON.stringify(floored.target));
  // Asked for: down to the structural floor.
  const bare = await pruneToTarget(decodeModel(vit), { params: 0.4, minKeep: 0 }, {
    headPruningRatio: 0,
    roundTo: 4,
    core,
  });
  assert.ok(mlpSizes(bare).some((c) => c < 96), String(mlpSizes(bare)));
  assert.ok(mlpSizes(bare).every((c) => c >= 4));
  await assert.rejects(
    () => pruneToTarget(decodeModel(vit), { params: 0.5, minKeep: 1 }),
    /minKeep must be in \[0, 1\)/,
  );
});

Deno.test("a target held short by attention's floor says so", async () => {
  // Head dims only, each block keeping at least half of them: 30% of the MACs is out of reach.
  const short = await pruneToTarget(decodeModel(vit), { macs: 0.3, minKeep: 0.5 }, {
    pruneHeadDims: true,
    pruneMlp: false,
    core,
  });
  assert.ok(!short.target.met, JSON.stringify(short.target));
  const warnings = short.target.warnings ?? [];
  assert.ok(
    warnings.some((w) => /attention blocks are at their floor for head dims/.test(w)),
    JSON.stringify(warnings),
  );
});

Deno.test("interleaved timing of two models: medians of rounds and their spread, wall or CPU time", async () => {
  const m = decodeModel(vit);
  for (const clock of ["wall", "cpu"] as const) {
    const c = await compareLatency(m, encodeModel(m), {
      rounds: 3,
      runs: 2,
      batch: 4,
      threads: 1,
      clock,
    });
    assert.equal(c.rounds, 3);
    assert.ok(c.originalMs > 0 && c.prunedMs > 0, `${clock}: ${JSON.stringify(c)}`);
    assert.ok(c.low <= c.speedup && c.speedup <= c.high);
  }
  await assert.rejects(() => compareLatency(m, m, { rounds: 0 }), /rounds must be a positive/);
  // CPU time adds up over threads: latency only with one.
  await assert.rejects(
    () => compareLatency(m, m, { clock: "cpu" }),
    /latency clock cpu needs one thread/,
  );
  await assert.rejects(
    () => compareLatency(m, m, { clock: "cpu", runtime: "webgpu" }),
    /WebGPU work is not CPU time/,
  );
});

Deno.test("latency on onnxruntime-web: wasm, and webgpu where an adapter exists (refused where not)", async () => {
  const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
  const options = {
    tokens: 5,
    levels: 2,
    runs: 1,
    passes: 1,
    cacheDir: null,
    reach: { emb: 16, heads: 1, qk: 4, v: 4, mlp: 8 },
  };
  const cpu = await profileBlock(full, options);
  const wasm = await profileBlock(full, { ...options, runtime: "wasm" });
  assert.match(String(wasm.description.runtime), /^onnxruntime-web wasm /);
  assert.notEqual(wasm.key, cpu.key, "each runtime has its own cached table");
  assert.ok(wasm.ms.every((m) => m >= 0) && wasm.ms.at(-1)! > 0);
  const model = decodeModel(vit);
  assert.ok(await measureLatency(model, { runtime: "wasm", runs: 3 }) > 0);
  const c = await compareLatency(model, model, { runtime: "wasm", rounds: 1, runs: 1 });
  assert.ok(c.speedup > 0);

  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  if (adapter) {
    assert.ok(await measureLatency(model, { runtime: "webgpu", runs: 1 }) > 0);
  } else {
    await assert.rejects(
      () => measureLatency(model, { runtime: "webgpu" }),
      /latency runtime webgpu: no WebGPU adapter/,
    );
  }
});

Deno.test("a target run without a search reports the evaluation asked for", async () => {
  const ort = await loadOrt();
  const x = new ort.Tensor(
    "float32",
    Float32Array.from({ length: 8 * 28 * 28 }, (_, i) => Math.sin(i * 0.1)),
    [8, 1, 28, 28],
  );
  const input = decodeModel(vit).graph!.input![0].name!;
  const r = await pruneToTarget(decodeModel(vit), { macs: 0.6 }, {
    pruneHeadDims: true,
    core,
    evaluation: { batches: [{ [input]: x }] },
  });
  const f = r.report.fidelity;
  assert.ok(f, "fidelity reported");
  assert.ok(f.top1Agreement > 0 && f.top1Agreement <= 1, JSON.stringify(f));
});
