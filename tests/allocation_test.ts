/**
 * Global allocation: the per-block ratios' parameter budget spent across blocks where scores are
 * lowest ("global"), or on scores standardised per kind ("flap").
 */
import assert from "node:assert/strict";
import { prune, pruneModel } from "../src/prune.ts";
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

Deno.test("global allocation: Q/K and V dims as two kinds; GQA refused with the reason", async () => {
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
  const llama = await Deno.readFile(new URL("more/llama_gqa.onnx", FIXTURES));
  await assert.rejects(
    () => prune(llama, { pruneNumHeads: true, headPruningRatio: 0.5, allocation: "flap", core }),
    /global allocation does not handle grouped-query attention yet \(block "[^"]+"\)/,
  );
});
