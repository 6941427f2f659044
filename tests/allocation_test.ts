/**
 * Global allocation: the per-block ratios' parameter budget spent across blocks where scores are
 * lowest ("global"), or on scores standardised per kind ("flap").
 */
import assert from "node:assert/strict";
import { prune, pruneModel } from "../src/prune.ts";
import { maskingCheck } from "../src/verify.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { createCore } from "../src/core/mod.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";
import type { BlockReport } from "../src/report.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const core = await createCore({ backend: "cpu" });
const ort = await loadOrt();
const vit = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));

const sizes = (blocks: BlockReport[]) =>
  blocks.map((b) => b.kind === "attention" ? b.headDim.after : b.channels.after);

Deno.test("global allocation spends the local parameter budget unevenly across blocks", async () => {
  const options = { pruneHeadDims: true, headPruningRatio: 0.25, pruningRatio: 0.5, core };
  const local = await prune(vit, options);
  for (const allocation of ["global", "flap"] as const) {
    const { report } = await prune(vit, { ...options, allocation });
    const removedLocal = local.report.params.before - local.report.params.after;
    const removed = report.params.before - report.params.after;
    // The same budget, give or take the largest unit (a dim of all 3 heads: 3·(4·96 + 3)).
    assert.ok(
      Math.abs(removed - removedLocal) < 3 * (4 * 96 + 3),
      `${allocation}: removed ${removed}, local ${removedLocal}`,
    );
    const s = sizes(report.blocks);
    assert.notDeepEqual(s, sizes(local.report.blocks), `${allocation}: same as local`);
    for (const [i, b] of report.blocks.entries()) {
      assert.ok(s[i] >= 1, `${allocation}: block ${b.name} emptied`);
    }
  }
});

Deno.test("global allocation prunes to a model equal to masking the same channels", async () => {
  const x = new Float32Array(4 * 784).map((_, i) => Math.sin(i * 0.37));
  const feeds = { input: new ort.Tensor("float32", x, [4, 1, 28, 28]) };
  for (const allocation of ["global", "flap"] as const) {
    const options = {
      pruneNumHeads: true,
      headPruningRatio: 0.34,
      pruningRatio: 0.4,
      allocation,
      roundTo: 8,
      core,
    };
    const pruned = await pruneModel(decodeModel(vit), options);
    const masked = await pruneModel(decodeModel(vit), { ...options, mask: true });
    assert.deepEqual(pruned.report.blocks, masked.report.blocks);
    for (const b of pruned.report.blocks) {
      if (b.kind === "mlp") assert.equal(b.channels.after % 8, 0, `${b.name}: ${b.channels.after}`);
      if (b.kind === "attention") assert.ok(b.heads.after >= 1);
    }
    const [a, m] = [
      await createSession(encodeModel(pruned.model)),
      await createSession(encodeModel(masked.model)),
    ];
    const ya = (await a.run(feeds))[a.outputNames[0]].data as Float32Array;
    const ym = (await m.run(feeds))[m.outputNames[0]].data as Float32Array;
    const diff = ya.reduce((d, v, i) => Math.max(d, Math.abs(v - ym[i])), 0);
    assert.ok(diff < 1e-4, `${allocation}: ${diff}`);
  }
});

Deno.test("global allocation: Q/K and V dims as two kinds", async () => {
  const local = await prune(vit, {
    pruneHeadDims: true,
    qkPruningRatio: 0.5,
    vPruningRatio: 0.25,
    pruningRatio: 0.3,
    core,
  });
  const { report } = await prune(vit, {
    pruneHeadDims: true,
    qkPruningRatio: 0.5,
    vPruningRatio: 0.25,
    pruningRatio: 0.3,
    allocation: "global",
    // Q/K and V dims made cheap to rank first, so that both kinds are seen to go.
    kindScale: { qk: 1e6, v: 1e6 },
    core,
  });
  const removed = (r: typeof report) => r.params.before - r.params.after;
  assert.ok(Math.abs(removed(report) - removed(local.report)) < 4 * 96 * 3, `${removed(report)}`);
  const attention = report.blocks.filter((b) => b.kind === "attention");
  assert.ok(attention.every((b) => b.kind === "attention" && b.headDim.after < 32));
  assert.ok(attention.every((b) => b.kind === "attention" && b.vHeadDim!.after < 32));
});

Deno.test("global allocation under grouped-query attention, both policies, equals masking", async () => {
  const llama = await Deno.readFile(new URL("more/llama_gqa.onnx", FIXTURES));
  for (const gqaPolicy of ["query-heads", "kv-groups"] as const) {
    const options = {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      pruningRatio: 0.5,
      allocation: "global" as const,
      gqaPolicy,
      // Head units made cheap to rank first, so that heads are seen to go under both policies.
      kindScale: { heads: 1e6 },
      core,
    };
    const { difference, effect, pruned } = await maskingCheck(llama, options);
    assert.ok(effect > 1e-5 && difference <= 1e-4, `${gqaPolicy}: differs by ${difference}`);
    const local = await prune(llama, { ...options, allocation: "local" });
    const removed = (r: typeof local.report) => r.params.before - r.params.after;
    // The same budget, give or take the largest unit: a KV head with its 2 query heads of 16
    // dims in a 64 wide model (Q, K, V and output weights: 6 × 16 × 64).
    const largest = 6 * 16 * 64;
    assert.ok(
      Math.abs(removed(pruned.report) - removed(local.report)) <= largest,
      `${gqaPolicy}: removed ${removed(pruned.report)}, local ${removed(local.report)}`,
    );
    const attention = pruned.report.blocks.filter((b) => b.kind === "attention");
    assert.ok(attention.some((b) => b.heads.after < b.heads.before), gqaPolicy);
    for (const b of attention) {
      if (b.kind !== "attention") continue;
      assert.ok(b.kvHeads && b.heads.after >= 1);
      // Query heads stay evenly spread over the KV heads kept (dense GQA).
      assert.equal(b.heads.after % b.kvHeads.after, 0, JSON.stringify(b.heads));
      if (gqaPolicy === "query-heads") assert.equal(b.kvHeads.after, b.kvHeads.before);
      else assert.equal(b.heads.after / b.kvHeads.after, b.heads.before / b.kvHeads.before);
    }
  }
});

Deno.test("keepHeads leaves every head of the named block, locally and globally", async () => {
  const options = { pruneNumHeads: true, headPruningRatio: 0.34, core };
  const plain = await prune(vit, options);
  const first = plain.report.blocks.find((b) => b.kind === "attention")!;
  for (const allocation of ["local", "global"] as const) {
    const { report } = await prune(vit, { ...options, allocation, keepHeads: [first.name] });
    for (const b of report.blocks) {
      if (b.kind !== "attention") continue;
      if (b.name === first.name) assert.equal(b.heads.after, b.heads.before, allocation);
    }
    assert.ok(
      report.blocks.some((b) => b.kind === "attention" && b.heads.after < b.heads.before),
      allocation,
    );
  }
  await assert.rejects(
    () => prune(vit, { ...options, keepHeads: ["no_such_node"] }),
    /keep-heads: no node or initializer named "no_such_node"/,
  );
});
