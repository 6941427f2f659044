/**
 * A one-head attention block among blocks of several heads (`fixtures/zoo/one_head_*`, from
 * `scripts/fixtures/zoo/one_head.py`): removing heads keeps that block's head, says so in the
 * report's notes, and prunes the other blocks; its head dims and MLP are pruned as asked.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import type { AttentionBlockReport, MlpBlockReport } from "../src/report.ts";
import { maskingCheck } from "../src/verify.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });
// Heads of each block, in graph order.
const HEADS: Record<string, number[]> = {
  one_head_vit: [4, 1, 4],
  one_head_vit_dynamo: [4, 1, 4],
  one_head_bert: [4, 1],
};

const attention = (blocks: { kind: string }[]) =>
  blocks.filter((b) => b.kind === "attention") as AttentionBlockReport[];

for (const [name, heads] of Object.entries(HEADS)) {
  const read = () => Deno.readFile(new URL(`${name}.onnx`, ZOO));

  Deno.test(`${name}: heads and MLP pruned ≡ masked, the one-head block keeps its head`, async () => {
    const options: RunOptions = { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 };
    const { difference, effect, pruned } = await maskingCheck(await read(), { ...options, core });
    assert.ok(effect > 1e-5, "vacuous");
    assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
    const blocks = attention(pruned.report.blocks);
    assert.deepEqual(blocks.map((b) => b.heads.before), heads);
    assert.deepEqual(blocks.map((b) => b.heads.after), heads.map((h) => h === 1 ? 1 : h / 2));
    const one = blocks[heads.indexOf(1)];
    const note = pruned.report.notes.find((n) => n.includes(one.name));
    assert.match(note ?? "", /has one head, which stays/);
    const mlp = pruned.report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
    assert.equal(mlp.length, heads.length);
    for (const m of mlp) assert.equal(m.channels.after, m.channels.before / 2);
  });

  Deno.test(`${name}: head dims pruned ≡ masked in every block, the one-head block too`, async () => {
    const options: RunOptions = { pruneHeadDims: true, headPruningRatio: 0.5 };
    const { difference, effect, pruned } = await maskingCheck(await read(), { ...options, core });
    assert.ok(effect > 1e-5, "vacuous");
    assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
    for (const b of attention(pruned.report.blocks)) {
      assert.equal(b.headDim.after, b.headDim.before / 2, b.name);
    }
  });
}

Deno.test("a model whose every block has one head: removing heads is refused, naming a block", async () => {
  // The ViT with its heads pruned down to one per block, then asked for heads again.
  const first = await pruneModel(
    decodeModel(await Deno.readFile(new URL("one_head_vit.onnx", ZOO))),
    {
      pruneNumHeads: true,
      headPruningRatio: 0.75,
      core,
    },
  );
  assert.deepEqual(attention(first.report.blocks).map((b) => b.heads.after), [1, 1, 1]);
  await assert.rejects(
    () => pruneModel(first.model, { pruneNumHeads: true, headPruningRatio: 0.5, core }),
    /no attention block can be pruned \("[^"]+" has one head/,
  );
});
