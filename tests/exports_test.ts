/**
 * The masking oracle over more exporter graphs (`fixtures/more/`, made by
 * `scripts/fixtures/make_fixtures_more.py`): distilled DeiT, Swin (TorchScript and dynamo), BERT
 * (TorchScript, dynamo, and onnxruntime's transformer optimizer with SkipLayerNormalization and
 * BiasGelu), Llama with grouped-query attention and RoPE, decomposed LayerNorm (opset 14), tanh
 * GELU, the Gelu op (opset 20).
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import type { RunOptions } from "../src/prune.ts";
import { maskingCheck, syntheticFeeds } from "../src/verify.ts";
import { unfuseQkv } from "../src/rewrite/unfuse_qkv.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { createSession } from "../src/runtime/ort.ts";
import { pruneModel } from "../src/prune.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";

const MORE = new URL("./fixtures/more/", import.meta.url);
const index = JSON.parse(await Deno.readTextFile(new URL("index.json", MORE)));
const files: string[] = Object.values(index.fixtures ?? index)
  .map((f) => (f as { file?: string }).file)
  .filter((f): f is string => !!f && f.endsWith(".onnx"));

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

/** Cells the tool refuses, with the reason it gives: RoPE rotates pairs of dims of every head. */
const REFUSED: Record<string, RegExp> = {
  "llama_gqa.onnx dims": /no attention block can be pruned \(rotary position embedding \(RoPE/,
  "llama_gqa_dynamo.onnx dims":
    /no attention block can be pruned \(rotary position embedding \(RoPE/,
};

const core = await createCore({ backend: "cpu" });

for (const file of files) {
  for (const [mode, options] of Object.entries(MODES)) {
    const cell = `${file} ${mode}`;
    Deno.test(`${cell}: pruned ≡ masked`, async () => {
      const bytes = await Deno.readFile(new URL(file, MORE));
      if (REFUSED[cell]) {
        await assert.rejects(() => maskingCheck(bytes, { ...options, core }), REFUSED[cell]);
        return;
      }
      const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
      assert.ok(effect > 1e-5, "masking changed nothing: vacuous");
      assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
      assert.ok(pruned.report.params.after < pruned.report.params.before);
    });
  }
}

for (const file of ["llama_gqa.onnx", "llama_gqa_dynamo.onnx"]) {
  Deno.test(`${file}: grouped-query attention, both policies`, async () => {
    const bytes = await Deno.readFile(new URL(file, MORE));
    for (const gqaPolicy of ["query-heads", "kv-groups"] as const) {
      const { difference, effect, pruned } = await maskingCheck(bytes, {
        pruneNumHeads: true,
        headPruningRatio: 0.5,
        gqaPolicy,
        core,
      });
      assert.ok(effect > 1e-5 && difference <= 1e-4, `${gqaPolicy}: differs by ${difference}`);
      for (const block of pruned.report.blocks) {
        if (block.kind !== "attention") continue;
        assert.deepEqual(block.heads, { before: 4, after: 2 });
        // query-heads keeps both KV heads (2 query heads each → 1); kv-groups keeps one KV head.
        assert.deepEqual(block.kvHeads, {
          before: 2,
          after: gqaPolicy === "kv-groups" ? 1 : 2,
        });
      }
    }
  });
}

Deno.test("bert_dynamo: one computed Reshape target shared by every layer, heads pruned per layer", async () => {
  // The dynamo export builds q/k/v's Reshape target once for all layers: different head counts
  // per layer need private copies of that shape computation.
  const bytes = await Deno.readFile(new URL("bert_dynamo.onnx", MORE));
  const { difference, effect, pruned } = await maskingCheck(bytes, {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    layerRatios: { node_MatMul_124: 0.25 },
    core,
  });
  assert.ok(effect > 1e-5 && difference <= 1e-4, `differs by ${difference}`);
  const heads = pruned.report.blocks.flatMap((b) => b.kind === "attention" ? [b.heads.after] : []);
  assert.deepEqual(heads, [2, 3]);
});

/** The embedding width: pruned (onnxruntime runs it; exact logits against Torch-Pruning are in
 * anchor_test.ts) or refused with the node that stops it. */
const EMBEDDING: [string, RegExp | null][] = [
  ["../timm_vit_dynamo.onnx", null],
  ["../torchvision_vit.onnx", null],
  ["deit_distilled.onnx", null],
  ["timm_vit_gelu_op20.onnx", null],
  ["timm_vit_opset14.onnx", null], // LayerNorm written out as ReduceMean/Sub/Pow/Sqrt/Div
  ["vit_ort_optimized.onnx", null], // SkipLayerNormalization
  ["llama_gqa.onnx", null], // RMSNorm written out, token embedding table, untied lm_head
  ["swin.onnx", null], // every stage, through patch merging (four copies of the channels)
  ["swin_unfolded.onnx", null],
  ["bert.onnx", /reaches graph output "last_hidden_state"/],
  ["bert_ort_optimized.onnx", /reaches graph output "last_hidden_state"/],
];

for (const [file, refused] of EMBEDDING) {
  Deno.test(`${file.replace("../", "")} embedding width: ${refused ? "refused" : "pruned"}`, async () => {
    const bytes = await Deno.readFile(new URL(file, MORE));
    const options = { embeddingPruningRatio: 0.25, core };
    if (refused) {
      await assert.rejects(() => pruneModel(decodeModel(bytes), options), refused);
      return;
    }
    const { report } = await pruneModel(decodeModel(bytes), options);
    const embedding = report.blocks.filter((b) => b.kind === "embedding");
    assert.ok(embedding.length >= 1);
    for (const b of embedding) {
      if (b.kind === "embedding") assert.equal(b.channels.after, b.channels.before * 3 / 4);
    }
    assert.ok(report.params.after < report.params.before * 0.9);
  });
}

Deno.test("Q/K and V dims pruned separately (NViT), fused qkv split into q, k, v", async () => {
  // Separate projections (HF, BERT, Llama) and fused ones (timm's qkv, TorchScript and dynamo
  // exports, DeiT distilled, Swin, torchvision's in_proj), which the tool splits first.
  const files = [
    "../hf_vit.onnx",
    "bert.onnx",
    "llama_gqa.onnx",
    "../timm_vit.onnx",
    "../timm_vit_dynamo.onnx",
    "deit_distilled.onnx",
    "swin.onnx",
    "swin_dynamo.onnx",
    "swin_unfolded.onnx",
    "../torchvision_vit.onnx",
    "bert_dynamo.onnx",
    "bert_ort_optimized.onnx",
    "llama_gqa_dynamo.onnx",
    "timm_vit_opset14.onnx",
    "timm_vit_gelu_tanh.onnx",
    "timm_vit_gelu_op20.onnx",
  ];
  for (const file of files) {
    const bytes = await Deno.readFile(new URL(file, MORE));
    // Llama's RoPE fixes the Q/K dims: only its V dims go.
    const rope = file.startsWith("llama");
    const { difference, effect, pruned } = await maskingCheck(bytes, {
      pruneHeadDims: true,
      qkPruningRatio: rope ? 0 : 0.5,
      vPruningRatio: 0.25,
      core,
    });
    assert.ok(effect > 1e-5 && difference <= 1e-4, `${file}: differs by ${difference}`);
    assert.equal(
      pruned.report.params.before,
      (await pruneModel(decodeModel(bytes), { core }))
        .report.params.before,
    );
    for (const block of pruned.report.blocks) {
      if (block.kind !== "attention") continue;
      assert.deepEqual(block.headDim, { before: 16, after: rope ? 16 : 8 }, file);
      assert.deepEqual(block.vHeadDim, { before: 16, after: 12 }, file);
    }
  }
});

Deno.test("separate Q/K and V dims are refused where q/k/v are split before their permute", async () => {
  // onnxruntime's optimizer moves the Split ahead of the per-head Transpose in timm graphs.
  const bytes = await Deno.readFile(new URL("vit_ort_optimized.onnx", MORE));
  await assert.rejects(
    () => maskingCheck(bytes, { pruneHeadDims: true, qkPruningRatio: 0.5, core }),
    /one fused layer whose head dims are shared/,
  );
});

Deno.test("a head ratio without a mode: head dims, or whole heads where RoPE fixes the dims", async () => {
  const llama = await Deno.readFile(new URL("llama_gqa.onnx", MORE));
  const byHeads = await pruneModel(decodeModel(llama), { headPruningRatio: 0.5, core });
  assert.match(byHeads.report.notes[0], /removing whole heads/);
  assert.ok(byHeads.report.blocks.some((b) => b.kind === "attention" && b.heads.after === 2));
  const vit = await Deno.readFile(new URL("../timm_vit.onnx", MORE));
  const byDims = await pruneModel(decodeModel(vit), { headPruningRatio: 0.5, core });
  assert.match(byDims.report.notes[0], /removing head dims/);
  assert.ok(byDims.report.blocks.some((b) => b.kind === "attention" && b.headDim.after === 8));
});

Deno.test("splitting a fused qkv alone changes no output", async () => {
  // The masking oracle cannot see a wrong split (both of its sides are split): compare the split
  // model with the original. The edge case keeps its qkv bias as a computed Concat (BEiT).
  const files = [
    "../timm_vit.onnx",
    "../timm_vit_dynamo.onnx",
    "../torchvision_vit.onnx",
    "deit_distilled.onnx",
    "swin.onnx",
    "swin_unfolded.onnx",
    "../edge/a7_qkv_bias_computed.onnx",
  ];
  for (const file of files) {
    const bytes = await Deno.readFile(new URL(file, MORE));
    const model = decodeModel(bytes);
    const split = await unfuseQkv(core, model, await probeTensors(model));
    const expected = file.includes("a7_") ? 0 : undefined;
    if (expected !== undefined) assert.equal(split, expected, `${file}: left alone`);
    else assert.ok(split > 0, `${file}: split`);
    const feeds = await syntheticFeeds(decodeModel(bytes));
    const run = async (b: Uint8Array) => {
      const session = await createSession(b);
      const out = await session.run(feeds);
      return out[session.outputNames[0]].data as Float32Array;
    };
    const [a, b] = [await run(bytes), await run(encodeModel(model))];
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    assert.ok(d <= 1e-6, `${file}: split model differs by ${d}`);
  }
});
