/**
 * Pruning to a target (params, MACs, speed-up) and the latency model behind speed-up targets:
 * the block model, the grid table (monotone, cached), multilinear interpolation.
 */
import assert from "node:assert/strict";
import { pruneToTarget } from "../src/target.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { tensorToFloat32 } from "../src/onnx/tensor.ts";
import { createCore } from "../src/core/mod.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";
import { blockModel } from "../src/latency/block.ts";
import { AXES, interpolate, type LatencyTable, profileBlock } from "../src/latency/table.ts";
import { createLatencyModel, measureLatency, modelBlocks } from "../src/latency/model.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
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

Deno.test("multilinear interpolation is exact on multilinear latencies and extrapolates linearly", () => {
  const axes = { emb: [8, 16], heads: [1, 2, 4], qk: [4, 8], v: [4, 8], mlp: [16, 32, 64] };
  const f = (s: Record<string, number>) =>
    1 + 0.01 * s.emb + 0.2 * s.heads * s.qk / 8 + 0.1 * s.heads * s.v / 8 +
    0.003 * s.mlp * s.emb / 8;
  const sizes = AXES.map((a) => axes[a].length);
  const ms: number[] = [];
  const total = sizes.reduce((a, b) => a * b, 1);
  for (let i = 0; i < total; i++) {
    let rest = i;
    const s: Record<string, number> = {};
    for (let a = AXES.length - 1; a >= 0; a--) {
      s[AXES[a]] = axes[AXES[a]][rest % sizes[a]];
      rest = Math.floor(rest / sizes[a]);
    }
    ms.push(f(s));
  }
  const table = { axes, ms } as unknown as LatencyTable;
  for (
    const s of [
      { emb: 12, heads: 3, qk: 5, v: 7, mlp: 40 },
      { emb: 16, heads: 4, qk: 8, v: 8, mlp: 64 },
      { emb: 4, heads: 1, qk: 2, v: 3, mlp: 8 }, // below the grid
    ]
  ) {
    assert.ok(Math.abs(interpolate(table, s) - f(s)) < 1e-9, JSON.stringify(s));
  }
});

Deno.test("profiling a block in onnxruntime: a monotone grid table", async () => {
  const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
  let calls = 0;
  const options = { tokens: 5, levels: 2, runs: 3, cacheDir: null, onProgress: () => calls++ };
  const table = await profileBlock(full, options);
  assert.equal(table.ms.length, 2 ** 5);
  assert.equal(calls, 32);
  assert.deepEqual(table.axes.emb, [16, 32]);
  assert.equal(table.axes.heads.length, 2);
  // Shrinking any dimension never costs more.
  assert.ok(table.ms[0] <= table.ms[table.ms.length - 1]);
  for (let i = 0; i < 32; i++) {
    for (let bit = 0; bit < 5; bit++) {
      if (i & (1 << bit)) assert.ok(table.ms[i - (1 << bit)] <= table.ms[i]);
    }
  }
});

Deno.test("the latency table cache: keyed by runtime and shape, trusted only under the same load", async () => {
  const dir = await Deno.makeTempDir({ prefix: "prune_vit_latency_" });
  try {
    const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
    // A deterministic runtime whose speed the test sets: `load` scales every timing.
    let load = 1, timed = 0;
    const timer = (s: typeof full) => {
      timed++;
      return Promise.resolve(load * (s.emb * (s.heads * (s.qk + s.v) + s.mlp)) / 1000);
    };
    const options = { tokens: 5, levels: 2, cacheDir: dir, timer: { name: "test", time: timer } };
    const table = await profileBlock(full, options);
    assert.equal(table.note, undefined);
    assert.equal(table.fullMs, table.ms.at(-1));
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(files, [`${table.key}.json`]);

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
    const other = { ...options, cacheDir: await Deno.makeTempDir({ dir }) };
    timed = 0;
    load = 1;
    const drifting = await profileBlock(full, {
      ...other,
      timer: { name: "test", time: (s) => (load = ++timed > 20 ? 3 : 1, timer(s)) },
    });
    assert.match(drifting.note ?? "", /load changed while the table was timed/);
    assert.deepEqual([...Deno.readDirSync(other.cacheDir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
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
    // Block timings from a formula (MAC-like), so that what pruning saves does not hang on this
    // machine's timing noise; the whole model is measured for real.
    const timer = {
      name: "formula",
      time: (s: { emb: number; heads: number; qk: number; v: number; mlp: number }) =>
        Promise.resolve(s.emb * (s.heads * (2 * s.qk + 2 * s.v) + 2 * s.mlp) * 17 / 2e6),
    };
    const lm = await createLatencyModel(decodeModel(vit), { levels: 2, timer, cacheDir: dir });
    assert.ok(lm.originalMs > 0);
    // Fitted (or capped) so that rest + scale × blocks gives the original its measured time.
    assert.ok(lm.restMs >= 0 && lm.blockScale > 0, JSON.stringify(lm));
    assert.ok(Math.abs((await lm.estimate(decodeModel(vit))) - lm.originalMs) < 1e-6);
    const r = await pruneToTarget(decodeModel(vit), { speedup: 1.3, latency: lm, steps: 2 }, {
      pruneHeadDims: true,
      core,
    });
    assert.equal(r.target.metric, "latency");
    assert.ok(r.target.reached < lm.originalMs);
    assert.ok(r.target.steps.every((s, i, all) => i === 0 || s.latencyMs! < all[i - 1].latencyMs!));
    assert.ok(r.report.params.after < r.report.params.before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latency on onnxruntime-web: wasm, and webgpu where an adapter exists (refused where not)", async () => {
  const full = { emb: 32, heads: 2, qk: 8, v: 8, mlp: 64 };
  const options = { tokens: 5, levels: 2, runs: 1, cacheDir: null };
  const cpu = await profileBlock(full, options);
  const wasm = await profileBlock(full, { ...options, runtime: "wasm" });
  assert.match(String(wasm.description.runtime), /^onnxruntime-web wasm /);
  assert.notEqual(wasm.key, cpu.key, "each runtime has its own cached table");
  assert.ok(wasm.ms.every((m) => m >= 0) && wasm.ms.at(-1)! > 0);
  const model = decodeModel(vit);
  assert.ok(await measureLatency(model, { runtime: "wasm", runs: 3 }) > 0);

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
