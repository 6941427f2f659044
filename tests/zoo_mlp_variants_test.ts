/**
 * MLPs that are not linear → activation → linear (zoo exports made by
 * `scripts/fixtures/zoo/mlp_variants.py`): PVTv2's depthwise 3×3 convolution between fc1 and fc2,
 * LeViT's Linear + BatchNorm with Hardswish, and Paddle-style MLPs with BatchNormalization and
 * HardSwish / HardSigmoid over tokens or as 1×1 convolutions over NCHW maps. MLP channels prune
 * exactly (pruned ≡ masked), with the depthwise filters, BatchNorm statistics and the `group`
 * attribute following them.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import { tensorDims } from "../src/onnx/tensor.ts";
import type { RunOptions } from "../src/prune.ts";
import { pruneModel } from "../src/prune.ts";
import type { MlpBlockReport } from "../src/report.ts";
import { maskingCheck } from "../src/verify.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

/** Export → its MLP blocks, and the modes refused with the reason the tool gives. */
const FILES: Record<string, { mlps: number; refused?: Partial<Record<string, RegExp>> }> = {
  "mlp_pvt_v2_timm.onnx": { mlps: 2 },
  "mlp_pvt_v2_timm_dynamo.onnx": { mlps: 2 },
  // q, k and v of every head are split out of one per-head axis (sizes 8, 8, 16): segments of
  // it. Heads prune; head dims too, Q/K dims and V dims each by the ratio.
  "mlp_levit_timm.onnx": { mlps: 2 },
  "mlp_levit_timm_dynamo.onnx": { mlps: 2 },
  "mlp_bn_hardswish.onnx": { mlps: 2 },
  "mlp_bn_hardswish_dynamo.onnx": { mlps: 2 },
  "mlp_conv_hardsigmoid.onnx": { mlps: 2 },
  "mlp_conv_hardsigmoid_dynamo.onnx": { mlps: 2 },
  "mlp_conv_bn_hardsigmoid.onnx": { mlps: 2 },
  // Two depthwise filters per hidden channel: fc2 reads [channels, 2].
  "mlp_dwconv_multiplier.onnx": { mlps: 2 },
};

async function read(file: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(file, ZOO));
}

for (const [file, { mlps, refused }] of Object.entries(FILES)) {
  for (const [mode, options] of Object.entries(MODES)) {
    const reason = refused?.[mode];
    Deno.test(`${file} ${mode}: ${reason ? "refused" : "pruned ≡ masked"}`, async () => {
      const bytes = await read(file);
      if (reason) {
        await assert.rejects(() => maskingCheck(bytes, { ...options, core }), reason);
        return;
      }
      const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
      assert.ok(effect > 1e-5, `masking changed nothing (${effect}): the check would be vacuous`);
      assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
      if (mode === "mlp") {
        const blocks = pruned.report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
        assert.equal(blocks.length, mlps, JSON.stringify(pruned.report.skipped));
        for (const b of blocks) assert.equal(b.channels.after, b.channels.before / 2, b.name);
      }
    });
  }
}

Deno.test("PVTv2: the depthwise convolution keeps one filter per kept channel, group rewritten", async () => {
  const model = decodeModel(await read("mlp_pvt_v2_timm.onnx"));
  const depthwise = () =>
    model.graph!.node!.filter((n) =>
      n.opType === "Conv" && n.attribute!.some((a) => a.name === "group" && Number(a.i) > 1)
    );
  const before = depthwise().map((n) => Number(n.attribute!.find((a) => a.name === "group")!.i));
  assert.deepEqual(before, [64, 64]);
  await pruneModel(model, { ...MODES.mlp, core });
  const weights = new Map(model.graph!.initializer!.map((t) => [t.name!, tensorDims(t)]));
  for (const node of depthwise()) {
    const group = Number(node.attribute!.find((a) => a.name === "group")!.i);
    assert.equal(group, 32, node.name!);
    assert.deepEqual(weights.get(node.input![1])?.slice(0, 2), [32, 1], node.name!);
    assert.deepEqual(weights.get(node.input![2]), [32], node.name!);
  }
});

Deno.test("BatchNormalization in the MLP: scale, bias, mean and variance follow the channels", async () => {
  const model = decodeModel(await read("mlp_bn_hardswish.onnx"));
  const { model: pruned } = await pruneModel(model, { ...MODES.mlp, core });
  const weights = new Map(pruned.graph!.initializer!.map((t) => [t.name!, tensorDims(t)]));
  const norms = pruned.graph!.node!.filter((n) => n.opType === "BatchNormalization");
  assert.equal(norms.length, 2);
  for (const node of norms) {
    for (const name of node.input!.slice(1)) assert.deepEqual(weights.get(name), [32], name);
  }
});
