/**
 * Per-head terms of the attention scores computed at run time from parameters (zoo exports made
 * by `scripts/fixtures/zoo/score_terms.py`): relative-position bias tables (BEiT, Data2Vec, the
 * Hugging Face export resizing the table at run time), SwinV2's logit scale and position-bias
 * MLP under cosine attention, ConViT's gates, XCiT's temperatures. Heads prune exactly
 * (pruned ≡ masked), with the term's parameters sliced; what cannot be pruned exactly is refused
 * with the node named.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { tensorDims } from "../src/onnx/tensor.ts";
import type { RunOptions } from "../src/prune.ts";
import { pruneModel } from "../src/prune.ts";
import type { AttentionBlockReport } from "../src/report.ts";
import { maskingCheck } from "../src/verify.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

/** Export → modes refused, with the reason the tool must give. */
const FILES: Record<string, Partial<Record<keyof typeof MODES, RegExp>>> = {
  "terms_beit_timm.onnx": {},
  "terms_beit_hf.onnx": {},
  "terms_data2vec_hf.onnx": {},
  "terms_data2vec_hf_dynamo.onnx": {},
  // Cosine attention: q and k are divided by their L2 norm over the head dims, to which a removed
  // (zeroed) dim adds nothing: head dims prune too.
  "terms_swinv2_timm.onnx": {},
  "terms_swinv2_timm_dynamo.onnx": {},
  "terms_swinv2_hf.onnx": {},
  "terms_convit_timm.onnx": {},
  "terms_convit_timm_dynamo.onnx": {},
  "terms_xcit_timm.onnx": {},
  "terms_xcit_timm_dynamo.onnx": {},
  // The bias is a softmax over the heads of its table: removing a head changes the others.
  "terms_mixed_heads.onnx": { heads: /Softmax node "\/Softmax": channels along the normalised/ },
  // The table goes through CumSum, which no rule follows: the refusal says so.
  "terms_unfollowed.onnx": {
    heads: /computed from parameters through CumSum node "\/CumSum", which no rule follows/,
  },
};

async function read(file: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(file, ZOO));
}

for (const [file, refused] of Object.entries(FILES)) {
  for (const [mode, options] of Object.entries(MODES)) {
    const reason = refused[mode as keyof typeof MODES];
    Deno.test(`${file} ${mode}: ${reason ? "refused with the node named" : "pruned ≡ masked"}`, async () => {
      const bytes = await read(file);
      if (reason) {
        await assert.rejects(() => maskingCheck(bytes, { ...options, core }), reason);
        return;
      }
      const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
      assert.ok(effect > 1e-5, `masking changed nothing (${effect}): the check would be vacuous`);
      assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
      if (mode === "heads") {
        // Every attention block loses half its heads: none was skipped for its score terms.
        const blocks = pruned.report.blocks.filter((b) => b.kind === "attention");
        const groups = pruned.report.groups.filter((g) => g.kind === "attention");
        assert.equal(blocks.length, groups.length, JSON.stringify(pruned.report.skipped));
        for (const b of blocks as AttentionBlockReport[]) {
          assert.equal(b.heads.after, b.heads.before / 2, b.name);
        }
      }
    });
  }
}

/** Dims of a stored constant (initializer or Constant node) by name. */
function constantDims(model: ModelProto, name: string): number[] | undefined {
  const graph = model.graph!;
  const init = graph.initializer?.find((t) => t.name === name);
  if (init) return tensorDims(init);
  for (const node of graph.node ?? []) {
    if (node.opType === "Constant" && node.output?.[0] === name) {
      return tensorDims(node.attribute![0].t!);
    }
  }
  return undefined;
}

Deno.test("SwinV2: the logit scale and the position-bias MLP's last layer lose the pruned heads", async () => {
  const model = decodeModel(await read("terms_swinv2_timm.onnx"));
  const names = (model.graph!.initializer ?? []).map((t) => t.name!);
  const scales = names.filter((n) => n.endsWith("attn.logit_scale"));
  assert.equal(scales.length, 2);
  for (const n of scales) assert.deepEqual(constantDims(model, n), [4, 1, 1]);
  const { report, model: pruned } = await pruneModel(model, { ...MODES.heads, core });
  for (const n of scales) assert.deepEqual(constantDims(pruned, n), [2, 1, 1], n);
  // The MLP producing [table, H] from constant coordinates: its last layer has H outputs.
  const attention = report.groups.filter((g) => g.kind === "attention");
  for (const g of attention) {
    const bias = g.tensors.filter((t) => t.role === "weight-out");
    assert.equal(bias.length, 2, `qkv and the position-bias MLP's last layer in ${g.name}`);
  }
});

Deno.test("BEiT (Hugging Face): the bias table resized at run time is sliced, and its size rewritten", async () => {
  const model = decodeModel(await read("terms_beit_hf.onnx"));
  const { report, model: pruned } = await pruneModel(model, { ...MODES.heads, core });
  const group = report.groups.find((g) => g.kind === "attention")!;
  const operands = group.tensors.filter((t) => t.role === "operand" && t.axis === 1);
  // The [1, H, h, w] table before Resize and the [3, H] rows for the class token after it.
  assert.equal(operands.length, 2, JSON.stringify(group.tensors));
  const resize = pruned.graph!.node!.find((n) => n.opType === "Resize")!;
  assert.equal(constantDims(pruned, resize.input![0])?.[1], 2);
});

Deno.test("ConViT (dynamo): a class token folded to a constant and concatenated follows the embedding width", async () => {
  const model = decodeModel(await read("terms_convit_timm_dynamo.onnx"));
  const concat = model.graph!.node!.find((n) => n.opType === "Concat" && n.name === "node_cat")!;
  const token = concat.input!.find((n) => constantDims(model, n))!;
  assert.deepEqual(constantDims(model, token), [1, 1, 32]);
  const { model: pruned } = await pruneModel(model, {
    embeddingPruningRatio: 0.25,
    verifyRun: true,
    core,
  });
  const after = pruned.graph!.node!.find((n) => n.name === "node_cat")!;
  const kept = after.input!.map((n) => constantDims(pruned, n)).find((d) => d);
  assert.deepEqual(kept, [1, 1, 24]);
});
